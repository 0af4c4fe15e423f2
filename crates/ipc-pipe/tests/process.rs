//! Process-level behaviour of the pipe transport: bad children, crashes,
//! reaping, and the agent side's stdio handling.
//!
//! `harness = false`: this binary re-runs itself as the agent (selected by
//! `AGENT_ENV`), and libtest's own output on stdout would corrupt the pipe.

use std::process::{Command, Stdio};
use std::time::Duration;

use ipc_core::frame::encode_header;
use ipc_core::{Config, ConnectError, FrameReceiver, FrameSender, RecvError};
use libtest_mimic::{Arguments, Failed, Trial};

const AGENT_ENV: &str = "IPC_PIPE_TEST_AGENT";

fn config() -> Config {
    Config::default()
        .with_recv_timeout(Some(Duration::from_secs(20)))
        .with_send_timeout(Some(Duration::from_secs(20)))
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn shell(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

fn agent(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.env(AGENT_ENV, role);
    cmd
}

/// `printf` escapes for raw bytes.
fn printf_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:03o}")).collect()
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn missing_program() -> Result<(), Failed> {
    let err = ipc_pipe::spawn(&mut Command::new("/nonexistent/agent"), &config()).unwrap_err();
    ensure(
        matches!(err, ConnectError::Io(ref e) if e.kind() == std::io::ErrorKind::NotFound),
        || format!("spawning a missing program gave {err:?}"),
    )
}

fn crash_is_disconnected_and_reaped() -> Result<(), Failed> {
    let mut agent = ipc_pipe::spawn(&mut shell("kill -9 $$"), &config())?;
    let pid = agent.id();
    let got = agent.recv();
    ensure(matches!(got, Err(RecvError::Disconnected)), || {
        format!("crash gave {got:?}")
    })?;
    drop(agent);
    ensure(!process_exists(pid), || {
        format!("agent {pid} was not reaped")
    })
}

fn garbage_from_child_is_corrupted() -> Result<(), Failed> {
    let mut agent = ipc_pipe::spawn(
        &mut shell("printf 'hello, world'; cat >/dev/null"),
        &config(),
    )?;
    let got = agent.recv();
    ensure(matches!(got, Err(RecvError::Corrupted(_))), || {
        format!("garbage gave {got:?}")
    })
}

fn exit_mid_frame_is_corrupted() -> Result<(), Failed> {
    let mut partial = encode_header(100).to_vec();
    partial.extend_from_slice(b"only ten b");
    let script = format!("printf '{}'", printf_bytes(&partial));
    let mut agent = ipc_pipe::spawn(&mut shell(&script), &config())?;
    let got = agent.recv();
    ensure(
        matches!(got, Err(RecvError::Corrupted(ref m)) if m.contains("inside a frame")),
        || format!("a frame cut short gave {got:?}"),
    )
}

fn shutdown_reports_exit_status() -> Result<(), Failed> {
    let agent = ipc_pipe::spawn(&mut shell("cat >/dev/null; exit 3"), &config())?;
    let status = agent.shutdown(Duration::from_secs(10))?;
    ensure(status.code() == Some(3), || {
        format!("exit status {status:?}")
    })
}

fn hung_agent_is_killed_on_shutdown() -> Result<(), Failed> {
    // Ignores stdin closing; shutdown must kill it after the grace period.
    let agent = ipc_pipe::spawn(&mut shell("exec sleep 30"), &config())?;
    let pid = agent.id();
    let status = agent.shutdown(Duration::from_millis(50))?;
    ensure(status.code().is_none(), || {
        format!("expected a kill, got {status:?}")
    })?;
    ensure(!process_exists(pid), || {
        format!("agent {pid} was not reaped")
    })
}

fn stray_print_does_not_corrupt_the_stream() -> Result<(), Failed> {
    let mut cmd = agent("stray-print");
    cmd.stderr(Stdio::piped());
    let mut agent = ipc_pipe::spawn(&mut cmd, &config())?;
    let frame = agent.recv()?;
    ensure(&frame[..] == b"frame", || format!("got {frame:?}"))?;
    let (conn, child) = agent.into_parts();
    drop(conn);
    let out = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(stderr.contains("stray line"), || {
        format!("stderr was {stderr:?}")
    })?;
    ensure(out.status.success(), || format!("agent failed: {stderr}"))
}

fn agent_without_pipes_gets_a_clear_error() -> Result<(), Failed> {
    let out = agent("not-a-pipe")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.success(), || format!("agent side: {stderr}"))
}

/// The agent-side roles this binary plays when re-run.
fn run_agent(role: &str) -> Result<(), String> {
    match role {
        "stray-print" => {
            let mut conn = ipc_pipe::connect_stdio(&config()).map_err(|e| e.to_string())?;
            println!("stray line");
            conn.send(b"frame").map_err(|e| e.to_string())?;
            let second = ipc_pipe::connect_stdio(&config());
            if !matches!(second, Err(ConnectError::AddrInUse(_))) {
                return Err(format!("second connect_stdio gave {second:?}"));
            }
            match conn.recv() {
                Err(RecvError::Disconnected) => Ok(()),
                other => Err(format!("expected the parent to leave, got {other:?}")),
            }
        }
        "not-a-pipe" => match ipc_pipe::connect_stdio(&config()) {
            Err(ConnectError::Incompatible(m)) if m.contains("not a pipe") => Ok(()),
            other => Err(format!("connect_stdio on /dev/null gave {other:?}")),
        },
        other => Err(format!("unknown agent role {other}")),
    }
}

/// A pipe size the kernel refuses (above what `F_SETPIPE_SZ` takes).
const REFUSED_PIPE_SIZE: usize = 1 << 40;

/// When setting up the pipes fails after the child started, the async
/// spawn kills and reaps it, as the blocking one does.
fn failed_async_spawn_leaves_no_child() -> Result<(), Failed> {
    let dir = tempfile_dir()?;
    let pid_file = dir.join("pid");
    let mut cmd = shell(&format!("echo $$ > {}; exec sleep 30", pid_file.display()));
    cmd.stdin(Stdio::null());
    let config = config().with_buffer_size(Some(REFUSED_PIPE_SIZE));
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ipc_pipe::spawn_async(cmd, &config));
    ensure(outcome.is_err(), || {
        "a pipe size of 1 TiB was accepted; the test needs one the kernel refuses".into()
    })?;
    // A child left running writes its pid within a second; one killed
    // at once may never have written it.
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut pid = read_pid();
    while pid.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        pid = read_pid();
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(pid) = pid {
        ensure(!process_exists(pid), || {
            format!("agent {pid} still runs after spawn_async failed")
        })?;
    }
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ipc-pipe-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn main() {
    if let Ok(role) = std::env::var(AGENT_ENV) {
        if let Err(e) = run_agent(&role) {
            eprintln!("agent {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    type Case = (&'static str, fn() -> Result<(), Failed>);
    let cases: [Case; 9] = [
        (
            "failed_async_spawn_leaves_no_child",
            failed_async_spawn_leaves_no_child,
        ),
        ("missing_program", missing_program),
        (
            "crash_is_disconnected_and_reaped",
            crash_is_disconnected_and_reaped,
        ),
        (
            "garbage_from_child_is_corrupted",
            garbage_from_child_is_corrupted,
        ),
        ("exit_mid_frame_is_corrupted", exit_mid_frame_is_corrupted),
        ("shutdown_reports_exit_status", shutdown_reports_exit_status),
        (
            "hung_agent_is_killed_on_shutdown",
            hung_agent_is_killed_on_shutdown,
        ),
        (
            "stray_print_does_not_corrupt_the_stream",
            stray_print_does_not_corrupt_the_stream,
        ),
        (
            "agent_without_pipes_gets_a_clear_error",
            agent_without_pipes_gets_a_clear_error,
        ),
    ];
    let trials = cases
        .into_iter()
        .map(|(name, case)| Trial::test(name, case))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit();
}
