//! `cargo xtask fuzz`: replay the saved crash inputs, then fuzz each
//! target for a while (cargo-fuzz, on the nightly toolchain).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::Failure;
use crate::workspace::workspace_root;

/// The fuzz targets in `fuzz/fuzz_targets`.
pub const TARGETS: [&str; 6] = [
    "frame_decoder",
    "address_parse",
    "codec_decode",
    "shm_ring",
    "shm_blob",
    "shm_segment",
];

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"]).current_dir(fuzz_dir);
    cmd
}

/// Runs the targets (all if `targets` is empty) for `seconds` each.
pub fn run(seconds: u64, targets: &[String]) -> Result<u8, Failure> {
    for t in targets {
        if !TARGETS.contains(&t.as_str()) {
            return Err(Failure::Input(format!(
                "unknown fuzz target `{t}`; known: {}",
                TARGETS.join(", ")
            )));
        }
    }
    let fuzz_dir = workspace_root().join("fuzz");
    let available = cargo_fuzz(&fuzz_dir)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        return Err(Failure::Error(
            "cargo-fuzz on nightly is not available: `rustup toolchain install nightly` and \
             `cargo install cargo-fuzz --locked`"
                .into(),
        ));
    }
    let chosen: Vec<&str> = if targets.is_empty() {
        TARGETS.to_vec()
    } else {
        targets.iter().map(String::as_str).collect()
    };
    let mut failed = Vec::new();
    for target in chosen {
        let regressions = fuzz_dir.join("regressions").join(target);
        let saved: Vec<_> = std::fs::read_dir(&regressions)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if !saved.is_empty() {
            eprintln!("{target}: replaying {} saved input(s)", saved.len());
            let ok = cargo_fuzz(&fuzz_dir)
                .args(["run", target])
                .args(&saved)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                failed.push(format!("{target} (a saved regression input)"));
                continue;
            }
        }
        eprintln!("{target}: fuzzing for {seconds} s");
        let out = cargo_fuzz(&fuzz_dir)
            .args([
                "run",
                target,
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
            ])
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Failure::Error(format!("running cargo fuzz: {e}")))?;
        let log = String::from_utf8_lossy(&out.stderr);
        match log.lines().find(|l| l.starts_with("Done ")) {
            Some(done) if out.status.success() => println!("{target}: {done}"),
            _ => {
                eprintln!("{log}");
                failed.push(target.to_owned());
            }
        }
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "fuzzing failed: {}; inputs are in fuzz/artifacts (copy them to fuzz/regressions/<target>/ \
             and add a test once fixed)",
            failed.join(", ")
        );
        Ok(1)
    }
}
