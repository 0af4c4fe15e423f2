//! An async connection can move to another runtime after it has waited
//! on one, whether the first is gone or only idle: a wait on the second
//! neither takes the peer for gone, nor spins in place, nor sleeps
//! through the frame (a reactor that no one drives never rings).

use std::time::{Duration, Instant};

use ipc_core::{AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, Config};
use ipc_shm::{AsyncShm, AsyncShmListener};

/// When the frame is sent: after the receiver's first park has ended (at
/// the idle release), so that only a ring can wake the next one.
const LATE: Duration = ipc_shm::IDLE_RELEASE.saturating_add(Duration::from_millis(500));

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// CPU time of this process so far, its exited threads' too (user and
/// system, in the kernel's USER_HZ ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // After the command's name in parentheses: state is field 3, utime 14.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a name") + 1..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

#[test]
fn a_connection_moved_from_a_runtime_gone_still_waits() {
    moved(false);
}

#[test]
fn a_connection_moved_from_an_idle_runtime_still_waits() {
    moved(true);
}

/// Connects on one runtime, waits there, and (with `keep_first`, the
/// first runtime kept, idle) receives on another.
fn moved(keep_first: bool) {
    let name = format!("ipc-rt-move-{keep_first}-{}", std::process::id());
    let first = runtime();
    let (mut hub_side, mut agent_side) = first.block_on(async {
        let mut listener = AsyncShmListener::bind_name(&name, &Config::default()).expect("bind");
        let address = listener.address().clone();
        let agent =
            tokio::spawn(async move { AsyncShm.connect(&address, &Config::default()).await });
        let hub_side = listener.accept().await.expect("accept");
        let agent_side = agent.await.expect("the agent task").expect("connect");
        (hub_side, agent_side)
    });
    // Both sides wait once on the first runtime (their doorbells and the
    // peer's pidfd are registered with it), then it is gone.
    first.block_on(async {
        let quiet = Duration::from_millis(20);
        assert!(tokio::time::timeout(quiet, hub_side.recv()).await.is_err());
        assert!(
            tokio::time::timeout(quiet, agent_side.recv())
                .await
                .is_err()
        );
    });
    let _idle = keep_first.then_some(first);

    let second = runtime();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let heard = second.block_on(async {
        let late = tokio::spawn(async move {
            tokio::time::sleep(LATE).await;
            agent_side.send(b"late").await.map(|()| agent_side)
        });
        let heard = tokio::time::timeout(Duration::from_secs(5), hub_side.recv()).await;
        let _agent_side = late.await.expect("the sending task").expect("send");
        heard
    });
    let waited = started.elapsed();
    let cpu = cpu_time() - cpu_before;
    let heard = heard.expect("the frame came within its deadline");
    assert_eq!(heard.expect("a frame, not an error"), &b"late"[..]);
    // A wait that parks costs a little CPU; one that spins in place
    // costs about all the time it waited.
    assert!(
        cpu < waited / 3,
        "waiting {waited:?} on the second runtime took {cpu:?} of CPU"
    );
}
