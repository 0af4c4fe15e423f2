//! Where the workspace is and how its runner is built: what the bench,
//! A/B, soak, fuzz and test commands share.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;

/// The workspace root (xtask lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// `cargo build` of the runner in the workspace at `root`.
pub fn runner_build(root: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--package",
            "harness",
            // The runner and the idle agents (one per transport).
            "--bins",
            // The peers group (iceoryx2) is part of every run.
            "--features",
            "peers",
        ])
        .current_dir(root);
    command
}

pub fn build_runner(root: &Path) -> Result<PathBuf, Failure> {
    eprintln!("building the benchmark runner (release)...");
    let status = runner_build(root)
        .status()
        .map_err(|e| Failure::Error(format!("running cargo: {e}")))?;
    if !status.success() {
        return Err(Failure::Error("building the runner failed".into()));
    }
    Ok(target_dir(root).join("release").join("ipc-bench"))
}

/// Cargo's target directory for the workspace at `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}
