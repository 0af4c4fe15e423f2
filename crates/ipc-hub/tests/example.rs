//! The hub example (`examples/hub.rs`), run as a user runs it, over every
//! transport its address can pick.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/hub`, built by `cargo test` beside this test.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    profile_dir.join("examples").join("hub")
}

fn run(address: &str) -> String {
    let start = Instant::now();
    let program = example();
    assert!(
        program.exists(),
        "{} is missing: `cargo test` builds it",
        program.display()
    );
    let mut command = Command::new(program);
    if !address.is_empty() {
        command.arg(address);
    }
    let out = command.output().expect("run the example");
    assert!(
        out.status.success(),
        "{address}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{address} took {:?}",
        start.elapsed()
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_example_tells_answers_crashes_and_hangs_apart_on_every_transport() {
    let dir = tempfile::tempdir().unwrap();
    let uds = format!("uds:{}", dir.path().join("hub.sock").display());
    let shm = format!("shm:example-{}", std::process::id());
    for address in [
        "",
        uds.as_str(),
        shm.as_str(),
        "zenoh:example@tcp/127.0.0.1:0",
    ] {
        let out = run(address);
        let line = |agent: &str| {
            out.lines()
                .find(|l| l.contains(&format!(" {agent}-agent ")))
                .unwrap_or_else(|| panic!("{address}: no line for {agent} in\n{out}"))
        };
        assert!(
            line("search").ends_with(r#"Ok("search ran search on \"shared memory\"")"#),
            "{out}"
        );
        assert!(line("summarize").contains("Ok("), "{out}");
        assert!(line("crash").contains("Err(PeerGone("), "{out}");
        assert!(line("hang").contains("Err(Timeout)"), "{out}");
        assert!(
            out.contains("every process the hub started is reaped"),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the socket file is gone"
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/ipc-{}", &shm[4..])).exists());
}
