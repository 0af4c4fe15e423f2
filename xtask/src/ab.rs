//! The old side of an A/B run (`cargo xtask bench --against REF`): the
//! runner built from a git revision in a worktree of its own, cached by
//! commit so that a second run against the same revision does not build
//! again, or a runner named by path.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;

/// The runner an A/B run measures as the old build.
#[derive(Debug, Clone)]
pub struct OldBuild {
    /// What was asked (`origin/main`, `HEAD~1`, a path).
    pub reference: String,
    /// The commit it resolved to (`None` for a runner given by path).
    pub commit: Option<String>,
    /// The runner.
    pub runner: PathBuf,
}

impl OldBuild {
    /// `REF (commit abcdef123456)`, for reports.
    pub fn describe(&self) -> String {
        match &self.commit {
            Some(c) => format!("{} (commit {})", self.reference, &c[..c.len().min(12)]),
            None => self.reference.clone(),
        }
    }
}

fn git(root: &Path, args: &[&str]) -> Result<String, Failure> {
    let out = Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|e| Failure::Error(format!("running git: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(Failure::Error(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The programs a runner needs beside it (it spawns itself and these).
fn runner_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n == "ipc-bench" || (n.starts_with("ipc-idle-") && !n.contains('.'))
                })
        })
        .collect();
    files.sort();
    files
}

/// Resolves `reference` (a runner's path, or a git revision of the
/// workspace at `root`) to a runner, building and caching it under
/// `target` if need be.
pub fn old_build(root: &Path, target: &Path, reference: &str) -> Result<OldBuild, Failure> {
    let as_path = Path::new(reference);
    if as_path.is_file() {
        let runner = as_path
            .canonicalize()
            .map_err(|e| Failure::Input(format!("{reference}: {e}")))?;
        check_serves(&runner, reference)?;
        return Ok(OldBuild {
            reference: reference.to_owned(),
            commit: None,
            runner,
        });
    }
    let commit = git(
        root,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{reference}^{{commit}}"),
        ],
    )
    .map_err(|_| {
        Failure::Input(format!(
            "--against {reference}: neither a runner's path nor a git revision of this checkout"
        ))
    })?;
    let cache = target.join("ab").join(&commit);
    let runner = cache.join("ipc-bench");
    if cache.join(".complete").exists() && runner.is_file() {
        eprintln!(
            "the runner of {reference} ({}) is cached in {}",
            &commit[..12],
            cache.display()
        );
    } else {
        build(root, target, &commit, &cache)?;
    }
    check_serves(&runner, reference)?;
    Ok(OldBuild {
        reference: reference.to_owned(),
        commit: Some(commit),
        runner,
    })
}

/// Builds the runner of `commit` in a temporary worktree and copies it
/// (with the idle agents) into `cache`.
fn build(root: &Path, target: &Path, commit: &str, cache: &Path) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| Failure::Error(format!("{what}: {e}"));
    let tree = target
        .join("ab")
        .join(format!("worktree-{}", &commit[..12]));
    if tree.exists() {
        // Left by an interrupted build.
        let _ = git(
            root,
            &["worktree", "remove", "--force", &tree.to_string_lossy()],
        );
        let _ = std::fs::remove_dir_all(&tree);
        let _ = git(root, &["worktree", "prune"]);
    }
    eprintln!(
        "building the runner of commit {} (release, in {}; cached afterwards)...",
        &commit[..12],
        tree.display()
    );
    git(
        root,
        &[
            "worktree",
            "add",
            "--detach",
            &tree.to_string_lossy(),
            commit,
        ],
    )?;
    // One target directory for every old build: dependencies are built
    // once, only the workspace's own crates again for another commit.
    let build_dir = target.join("ab").join("target");
    let status = crate::workspace::runner_build(&tree)
        .arg("--target-dir")
        .arg(&build_dir)
        .env_remove("CARGO_TARGET_DIR")
        // The worktree's own toolchain file decides, as for a checkout.
        .env_remove("RUSTUP_TOOLCHAIN")
        .status();
    let _ = git(
        root,
        &["worktree", "remove", "--force", &tree.to_string_lossy()],
    );
    let status = status.map_err(|e| io("running cargo", e))?;
    if !status.success() {
        return Err(Failure::Error(format!(
            "building the runner of commit {commit} failed"
        )));
    }
    std::fs::create_dir_all(cache).map_err(|e| io(&cache.display().to_string(), e))?;
    let files = runner_files(&build_dir.join("release"));
    if files.is_empty() {
        return Err(Failure::Error(format!(
            "commit {commit} built no ipc-bench runner"
        )));
    }
    for f in files {
        let to = cache.join(f.file_name().expect("a file"));
        std::fs::copy(&f, &to).map_err(|e| io(&to.display().to_string(), e))?;
    }
    std::fs::write(cache.join(".complete"), commit).map_err(|e| io("writing the cache", e))?;
    Ok(())
}

/// Fails if `runner` has no serve mode (it was built before A/B mode).
fn check_serves(runner: &Path, reference: &str) -> Result<(), Failure> {
    let help = Command::new(runner)
        .arg("--help")
        .output()
        .map_err(|e| Failure::Error(format!("running {}: {e}", runner.display())))?;
    if String::from_utf8_lossy(&help.stdout).contains("--serve") {
        Ok(())
    } else {
        Err(Failure::Input(format!(
            "the runner of {reference} has no serve mode (it predates A/B runs): compare against a \
             later revision, or compare two stored records with `cargo xtask compare`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_neither_a_runner_nor_a_revision() {
        let root = crate::workspace::workspace_root();
        let target = tempfile::tempdir().unwrap();
        let e = old_build(&root, target.path(), "no-such-revision-xyz").unwrap_err();
        assert!(
            matches!(&e, Failure::Input(m) if m.contains("neither a runner's path nor a git revision")),
            "{e:?}"
        );
        // A file that is not a runner with serve mode.
        let fake = target.path().join("fake");
        std::fs::write(&fake, "#!/bin/sh\necho usage\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = old_build(&root, target.path(), &fake.to_string_lossy()).unwrap_err();
        assert!(
            matches!(&e, Failure::Input(m) if m.contains("no serve mode")),
            "{e:?}"
        );
    }

    #[test]
    fn picks_the_runner_and_its_idle_agents() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["ipc-bench", "ipc-idle-shm", "ipc-idle-shm.d", "other"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let names: Vec<String> = runner_files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ipc-bench", "ipc-idle-shm"]);
    }
}
