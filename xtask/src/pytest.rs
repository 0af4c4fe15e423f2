//! `cargo xtask test`: the README's test command. Cargo's tests, then the
//! Python package's: a virtual environment with pinned maturin and pytest
//! from the package registry, the `ipc_agent` wheel built and installed
//! into it, and pytest against the Rust hub driver.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Failure;
use crate::workspace::workspace_root;

/// What the Python tests need, pinned.
pub const PINNED: [&str; 2] = ["maturin==1.16.0", "pytest==9.2.0"];

/// Runs the tests: cargo's (unless `python_only`), then pytest with
/// `pytest_args`. Exit 0 when all pass, 1 otherwise.
pub fn run(python_only: bool, pytest_args: &[String]) -> Result<u8, Failure> {
    let root = workspace_root();
    if !python_only {
        step("cargo test --workspace");
        if !status(
            Command::new(cargo())
                .args(["test", "--workspace"])
                .current_dir(&root),
        )? {
            return Ok(1);
        }
    }
    let venv = root.join("target").join("python-venv");
    let python = prepare_venv(&venv)?;

    step("cargo build -p ipc-python --bin ipc-hub-driver (the hub pytest drives)");
    let mut built = Command::new(cargo());
    built
        .args(["build", "-p", "ipc-python", "--bin", "ipc-hub-driver"])
        .current_dir(&root);
    if !status(&mut built)? {
        return Ok(1);
    }

    step("maturin build: the ipc_agent wheel (abi3, CPython 3.9+)");
    let wheels = root.join("target").join("wheels");
    // Only this build's wheel is installed next.
    let _ = std::fs::remove_dir_all(&wheels);
    let manifest = root.join("crates/ipc-python/Cargo.toml");
    let mut maturin = Command::new(venv.join("bin/maturin"));
    maturin
        .arg("build")
        .arg("-m")
        .arg(&manifest)
        .arg("-o")
        .arg(&wheels)
        .arg("--interpreter")
        .arg(&python)
        .current_dir(&root);
    if !status(&mut maturin)? {
        return Ok(1);
    }
    if let Err(e) = install_wheel(&python, &wheels) {
        eprintln!("{e:?}");
        return Ok(1);
    }

    step("pytest crates/ipc-python/tests");
    let driver = root.join("target/debug/ipc-hub-driver");
    let mut pytest = Command::new(&python);
    pytest
        .args(["-m", "pytest", "-q"])
        .arg(root.join("crates/ipc-python/tests"))
        .args(pytest_args)
        .env("IPC_HUB_DRIVER", driver)
        .current_dir(&root);
    Ok(if status(&mut pytest)? { 0 } else { 1 })
}

/// For `cargo xtask bench`: the venv's interpreter with the release
/// `ipc_agent` wheel installed, for the hub group's Python agent; `None`
/// (saying why) when it cannot be made here, and the run goes on without
/// the Python figures.
pub fn bench_python(root: &Path) -> Option<PathBuf> {
    let venv = root.join("target").join("python-venv");
    let made = (|| {
        let python = prepare_venv(&venv)?;
        eprintln!("building the ipc_agent wheel (release) for the Python agent's figures...");
        let wheels = root.join("target").join("wheels-release");
        let _ = std::fs::remove_dir_all(&wheels);
        let mut maturin = Command::new(venv.join("bin/maturin"));
        maturin
            .args(["build", "--release", "--quiet", "-m"])
            .arg(root.join("crates/ipc-python/Cargo.toml"))
            .arg("-o")
            .arg(&wheels)
            .arg("--interpreter")
            .arg(&python)
            .current_dir(root);
        if !status(&mut maturin)? {
            return Err(Failure::Error("maturin build failed".into()));
        }
        install_wheel(&python, &wheels)?;
        Ok::<_, Failure>(python)
    })();
    match made {
        Ok(python) => Some(python),
        Err(Failure::Error(why) | Failure::Input(why)) => {
            eprintln!("no Python agent figures this run: {why}");
            None
        }
    }
}

/// Installs the one wheel in `wheels` into the venv of `python`.
fn install_wheel(python: &Path, wheels: &Path) -> Result<(), Failure> {
    let wheel = std::fs::read_dir(wheels)
        .map_err(|e| Failure::Error(format!("{}: {e}", wheels.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Failure::Error("maturin wrote no wheel".into()))?;
    let mut install = Command::new(python);
    install
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--force-reinstall",
            "--no-deps",
        ])
        .arg(&wheel);
    if !status(&mut install)? {
        return Err(Failure::Error("pip install of the wheel failed".into()));
    }
    Ok(())
}

/// The venv's interpreter, the venv made (with [`PINNED`] installed) if
/// it is not there yet or was made with other pins.
fn prepare_venv(venv: &Path) -> Result<PathBuf, Failure> {
    let python = venv.join("bin/python");
    let stamp = venv.join("ipc-pinned.txt");
    let wanted = PINNED.join("\n");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let system = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    step(&format!(
        "{system} -m venv {} (then pip install {})",
        venv.display(),
        PINNED.join(" ")
    ));
    let mut made = Command::new(&system);
    made.args(["-m", "venv", "--clear"]).arg(venv);
    if !status(&mut made).map_err(|_| {
        Failure::Error(format!(
            "the Python tests need CPython 3.9+ with venv as `{system}` (or set PYTHON)"
        ))
    })? {
        return Err(Failure::Error(format!("{system} -m venv failed")));
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(PINNED);
    if !status(&mut pip)? {
        return Err(Failure::Error(
            "pip install of the pinned tools failed".into(),
        ));
    }
    std::fs::write(&stamp, wanted).map_err(|e| Failure::Error(e.to_string()))?;
    Ok(python)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn step(what: &str) {
    println!("== {what}");
}

fn status(command: &mut Command) -> Result<bool, Failure> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .status()
        .map(|s| s.success())
        .map_err(|e| Failure::Error(format!("could not run {program}: {e}")))
}
