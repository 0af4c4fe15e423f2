//! ipc-shm beyond the conformance kit: a million mixed messages, peers
//! killed mid-send, mid-receive and while the other side is parked (in
//! every wait strategy), corrupted segments, version mismatches, stale and
//! live segments, permissions, and the zero-copy API across processes.
//!
//! `harness = false`: the binary re-runs itself as the peer (`ROLE_ENV`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ipc_core::{
    ADDRESS_ENV, Address, Config, ConnectError, Connector, FrameReceiver, FrameSender, Listener,
    RecvError, SendError, WaitStrategy, payload,
};
use ipc_shm::{Shm, ShmConnection, ShmListener};
use libtest_mimic::{Arguments, Failed, Trial};

const ROLE_ENV: &str = "IPC_SHM_FAULT_ROLE";
const STRATEGY_ENV: &str = "IPC_SHM_FAULT_STRATEGY";
const STRATEGIES: [(&str, WaitStrategy); 4] = [
    ("adaptive", WaitStrategy::Adaptive),
    ("blocking", WaitStrategy::Blocking),
    ("spin_yield", WaitStrategy::SpinYield),
    ("spin", WaitStrategy::Spin),
];
/// The design bound for noticing a dead peer.
const DEATH_BOUND: Duration = Duration::from_millis(100);
/// Kills per fault case; the median must meet the bound (one slow run on a
/// noisy machine is not a failure), and every one must end (no hang).
const KILL_RUNS: usize = 5;
const MILLION: u64 = 1_000_000;

type CaseResult = Result<(), Failed>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "ft-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn config(strategy: WaitStrategy) -> Config {
    Config::default()
        .with_wait_strategy(strategy)
        .with_recv_timeout(Some(Duration::from_secs(30)))
        .with_send_timeout(Some(Duration::from_secs(30)))
}

fn strategy_named(name: &str) -> WaitStrategy {
    STRATEGIES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(WaitStrategy::Adaptive, |s| s.1)
}

/// Sizes for the million-message case: mostly small, every 101st up to
/// 64 KiB, every 997th 1 MiB (chunked through the 256 KiB ring).
fn mixed_size(seq: u64) -> usize {
    if seq.is_multiple_of(997) {
        1 << 20
    } else if seq.is_multiple_of(101) {
        4096 + (seq as usize * 7919) % (60 * 1024)
    } else {
        (seq as usize * 31) % 2048
    }
}

/// A peer process in `role`, connected to a fresh listener.
struct PeerProcess {
    conn: ShmConnection,
    child: Child,
}

impl PeerProcess {
    fn start(role: &str, strategy: (&str, WaitStrategy)) -> Result<Self, Failed> {
        let name = name();
        let mut listener = ShmListener::bind_name(&name, &config(strategy.1))?;
        let child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, role)
            .env(STRATEGY_ENV, strategy.0)
            .env(ADDRESS_ENV, listener.address().to_string())
            .stdin(Stdio::null())
            .spawn()?;
        let conn = listener.accept_timeout(Duration::from_secs(30))?;
        Ok(PeerProcess { conn, child })
    }

    /// The segment, as a file a hostile peer holding it can write.
    fn segment_file(&self) -> std::io::Result<std::fs::File> {
        self.conn.segment_file()
    }

    /// SIGKILLs the peer; returns when the signal was sent.
    fn kill(&mut self) -> Instant {
        let _ = self.child.kill();
        Instant::now()
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn check_death_times(what: &str, times: Vec<Duration>) -> CaseResult {
    let worst = *times.iter().max().expect("runs");
    let median = median(times);
    println!("    {what}: Disconnected after median {median:?}, worst {worst:?}");
    ensure(median < DEATH_BOUND, || {
        format!("{what}: median {median:?} exceeds {DEATH_BOUND:?}")
    })
}

// ---- cases ----

fn million_mixed_messages() -> CaseResult {
    let mut peer = PeerProcess::start(&format!("mixed:{MILLION}"), STRATEGIES[0])?;
    let mut bytes = 0u64;
    for seq in 0..MILLION {
        let frame = peer.conn.recv()?;
        ensure(frame.len() == mixed_size(seq), || {
            format!(
                "message {seq}: {} bytes, expected {}",
                frame.len(),
                mixed_size(seq)
            )
        })?;
        payload::verify(seq, &frame)?;
        bytes += frame.len() as u64;
    }
    println!("    {MILLION} messages, {bytes} bytes, all verified");
    let extra = peer.conn.recv_timeout(Duration::from_millis(20));
    ensure(matches!(extra, Err(RecvError::Timeout)), || {
        "a message after the last".into()
    })
}

fn killed_mid_send(strategy: (&str, WaitStrategy)) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..KILL_RUNS {
        let mut peer = PeerProcess::start("stream", strategy)?;
        for _ in 0..100 {
            peer.conn.recv()?;
        }
        let killed = peer.kill();
        loop {
            match peer.conn.recv() {
                Ok(_) => {}
                Err(RecvError::Disconnected) => break,
                Err(e) => return Err(format!("receiving from a killed peer gave {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
    }
    check_death_times(&format!("{}: killed mid-send", strategy.0), times)
}

fn killed_mid_receive(strategy: (&str, WaitStrategy)) -> CaseResult {
    let mut times = Vec::new();
    let msg = vec![5u8; 4096];
    for _ in 0..KILL_RUNS {
        let mut peer = PeerProcess::start("sink", strategy)?;
        for _ in 0..100 {
            peer.conn.send(&msg)?;
        }
        let killed = peer.kill();
        loop {
            match peer.conn.send(&msg) {
                Ok(()) => {}
                Err(SendError::Disconnected) => break,
                Err(e) => return Err(format!("sending to a killed peer gave {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
    }
    check_death_times(&format!("{}: killed mid-receive", strategy.0), times)
}

fn killed_while_parked(strategy: (&str, WaitStrategy)) -> CaseResult {
    killed_while_parked_as("idle", strategy, "killed while the other side waits")
}

/// A peer that overwrites the words of the segment naming it (its pid
/// and start time: now those of the listener, alive) and is then killed:
/// nothing in the segment decides liveness (the doorbell ends the kernel
/// closes, and the pidfd taken at the handshake, do), so its death is seen
/// within the same bound. (With the old lifeline words, a forged word
/// delayed it to the 1 s fallback.)
fn forged_liveness_does_not_delay_death(strategy: (&str, WaitStrategy)) -> CaseResult {
    killed_while_parked_as(
        "forge-then-idle",
        strategy,
        "forged its liveness, killed while the other side waits",
    )
}

fn killed_while_parked_as(role: &str, strategy: (&str, WaitStrategy), what: &str) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..KILL_RUNS {
        let mut peer = PeerProcess::start(role, strategy)?;
        if role == "forge-then-idle" {
            // Once the handshake is done: forging earlier fails it.
            peer.conn.send(b"forge")?;
            let said = peer.conn.recv()?;
            ensure(&said[..] == b"forged", || "the peer did not forge".into())?;
        }
        let pid = peer.child.id() as i32;
        let killer = std::thread::spawn(move || {
            // Mid-way through a park slice, not on its boundary.
            std::thread::sleep(Duration::from_millis(175));
            let pid = rustix::process::Pid::from_raw(pid).expect("child pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            Instant::now()
        });
        let result = peer.conn.recv();
        let returned = Instant::now();
        let killed = killer.join().map_err(|_| "killer thread panicked")?;
        ensure(matches!(result, Err(RecvError::Disconnected)), || {
            format!(
                "parked recv on a killed peer gave {:?}",
                result.map(|b| b.len())
            )
        })?;
        times.push(returned.saturating_duration_since(killed));
    }
    check_death_times(&format!("{}: {what}", strategy.0), times)
}

fn zero_copy_round_trip() -> CaseResult {
    let mut peer = PeerProcess::start("echo-in-place", STRATEGIES[0])?;
    let max = peer.conn.max_record();
    for (seq, size) in [0, 64, 4096, max].into_iter().enumerate() {
        let mut slot = peer.conn.reserve(size)?;
        payload::fill(seq as u64, &mut slot);
        slot.commit();
        let view = peer.conn.recv_in_place()?;
        ensure(view.is_in_place(), || {
            format!("{size} bytes not received in place")
        })?;
        payload::verify(seq as u64, &view)?;
    }
    // Larger than a record: sent chunked, received assembled.
    let mut big = vec![0; 3 << 20];
    payload::fill(9, &mut big);
    peer.conn.send(&big)?;
    let view = peer.conn.recv_in_place()?;
    ensure(!view.is_in_place(), || {
        "a chunked message claimed to be in place".into()
    })?;
    payload::verify(9, &view)?;
    drop(view);
    let err = peer.conn.reserve(max + 1).err();
    ensure(matches!(err, Some(SendError::FrameTooLarge { .. })), || {
        format!("reserving more than a record gave {err:?}")
    })
}

/// The zero-copy API on the async connection, on a current-thread
/// runtime (where `block_in_place` would panic): reserve/commit and
/// receive in place against an agent that echoes in place.
fn async_zero_copy_round_trip() -> CaseResult {
    let name = name();
    let strategy = STRATEGIES[0];
    let mut listener = ShmListener::bind_name(&name, &config(strategy.1))?;
    let child = Command::new(std::env::current_exe()?)
        .env(ROLE_ENV, "echo-in-place")
        .env(STRATEGY_ENV, strategy.0)
        .env(ADDRESS_ENV, listener.address().to_string())
        .stdin(Stdio::null())
        .spawn()?;
    // Killed and reaped however the case ends.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Reap(child);
    let conn = listener.accept_timeout(Duration::from_secs(30))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut conn = ipc_shm::AsyncShmConnection::new(conn)?;
        let max = conn.get_mut().max_record();
        for (seq, size) in [0, 64, 4096, max].into_iter().enumerate() {
            let mut slot = conn.reserve(size).await?;
            payload::fill(seq as u64, &mut slot);
            slot.commit();
            let view = conn.recv_in_place().await?;
            ensure(view.is_in_place(), || {
                format!("{size} bytes not received in place")
            })?;
            payload::verify(seq as u64, &view)?;
        }
        // More in flight than one ring holds (but fewer than both rings
        // together, so the echo always has room): reserve waits for room,
        // asynchronously, while the echo drains our ring.
        let per_ring = (conn.get_mut().ring_capacity() / 4096) as u64;
        let window = per_ring * 3 / 2;
        let count = 4 * per_ring;
        let mut received = 0;
        for seq in 0..count {
            let mut slot = conn.reserve(4096).await?;
            payload::fill(seq, &mut slot);
            slot.commit();
            while received + window <= seq {
                let view = conn.recv_in_place().await?;
                payload::verify(received, &view)?;
                received += 1;
            }
        }
        while received < count {
            let view = conn.recv_in_place().await?;
            payload::verify(received, &view)?;
            received += 1;
        }
        let err = conn.reserve(max + 1).await.err();
        ensure(matches!(err, Some(SendError::FrameTooLarge { .. })), || {
            format!("reserving more than a record gave {err:?}")
        })
    })
}

/// A connected pair in this process, for scribbling on its segment.
fn local_pair() -> Result<(ShmConnection, ShmConnection, std::fs::File), Failed> {
    let name = name();
    let cfg = config(WaitStrategy::Adaptive).with_recv_timeout(Some(Duration::from_millis(20)));
    let mut listener = ShmListener::bind_name(&name, &cfg)?;
    let peer = Shm.connect(listener.address(), &cfg)?;
    let owner = listener.accept()?;
    let file = owner.segment_file()?;
    Ok((owner, peer, file))
}

/// Offsets in the segment (docs: segment.rs).
const RING1_CTL: u64 = 2 * 4096;
const RING0_CTL: u64 = 4096;
const RING0_DATA: u64 = 3 * 4096;

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A Blocking receiver parks: it uses no CPU while it waits (raw_sync's
/// timed wait, used before, returned EINVAL at once during the last 50 ms
/// of every second and so spun 5 % of the time), and its deadline holds.
fn blocking_receiver_uses_no_cpu() -> CaseResult {
    let mut peer = PeerProcess::start("idle", ("blocking", WaitStrategy::Blocking))?;
    let wait = Duration::from_millis(2500);
    let before = thread_cpu();
    let start = Instant::now();
    let got = peer.conn.recv_timeout(wait);
    let took = start.elapsed();
    let used = thread_cpu() - before;
    println!("    parked {took:?}, used {used:?} of CPU");
    ensure(matches!(got, Err(RecvError::Timeout)), || {
        format!("an idle peer gave {:?}", got.map(|b| b.len()))
    })?;
    ensure(took >= wait && took < wait + Duration::from_secs(2), || {
        format!("a {wait:?} deadline returned after {took:?}")
    })?;
    ensure(used < Duration::from_millis(25), || {
        format!("a parked Blocking receiver used {used:?} of CPU in {took:?}")
    })
}

/// A peer that writes "someone is parked, in the old pthread-event mode"
/// into every wait word, and fills the areas where the pthread events
/// used to live with a locked-looking pattern, cannot make this side wait
/// past its deadlines or hang on drop, in any strategy: waking never
/// takes a lock.
fn hostile_wait_words_cannot_hang(strategy: (&str, WaitStrategy)) -> CaseResult {
    let peer = PeerProcess::start("stall", strategy)?;
    let file = peer.segment_file()?;
    for ctl in [RING0_CTL, RING1_CTL] {
        // Signal::waiting of the data and space signals (cache lines 1, 2).
        for signal in [64, 128] {
            file.write_at(&2u32.to_le_bytes(), ctl + signal + 4)?;
        }
        file.write_at(&[1u8; 1024], ctl + 1024)?;
        file.write_at(&[1u8; 1024], ctl + 2048)?;
    }
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut peer = peer;
        let msg = vec![9u8; 4096];
        let timeout = Duration::from_millis(100);
        // The idle peer never reads: fill the ring, waking at every send.
        let start = Instant::now();
        let full = loop {
            if let Err(e) = peer.conn.send_timeout(&msg, timeout) {
                break e;
            }
            if start.elapsed() > Duration::from_secs(10) {
                break SendError::Io(std::io::Error::other("never full"));
            }
        };
        let t = Instant::now();
        let recv = peer.conn.recv_timeout(timeout);
        let recv_took = t.elapsed();
        let t = Instant::now();
        drop(peer);
        let _ = done.send((full, recv.map(|b| b.len()), recv_took, t.elapsed()));
    });
    let (full, recv, recv_took, drop_took) = outcome
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| format!("{}: hung (no answer in 30 s)", strategy.0))?;
    ensure(matches!(full, SendError::Timeout), || {
        format!("filling gave {full:?}")
    })?;
    ensure(matches!(recv, Err(RecvError::Timeout)), || {
        format!("receiving gave {recv:?}")
    })?;
    ensure(recv_took < Duration::from_secs(2), || {
        format!("a 100 ms receive took {recv_took:?}")
    })?;
    ensure(drop_took < Duration::from_secs(5), || {
        format!("dropping took {drop_took:?}")
    })
}

fn corrupted_segment_is_corrupted() -> CaseResult {
    // The peer's incoming ring (0) gets a record header claiming more
    // than the ring holds where no record was sent.
    let (_owner, mut peer, file) = local_pair()?;
    let mut header = (1u32 << 30).to_le_bytes().to_vec();
    header.extend_from_slice(&1u32.to_le_bytes());
    file.write_at(&header, RING0_DATA)?;
    let got = peer.recv();
    ensure(matches!(got, Err(RecvError::Corrupted(_))), || {
        format!("wild record gave {:?}", got.map(|b| b.len()))
    })?;
    ensure(matches!(peer.recv(), Err(RecvError::Corrupted(_))), || {
        "corruption is not final".into()
    })?;

    // A published record whose header is garbage.
    let (mut owner, mut peer, file) = local_pair()?;
    owner.send(b"hello")?;
    file.write_at(&[0xff; 8], RING0_DATA)?;
    let got = peer.recv();
    ensure(matches!(got, Err(RecvError::Corrupted(_))), || {
        format!("bad record gave {:?}", got.map(|b| b.len()))
    })?;

    // The owner's outgoing ring gets a tail its consumer never published.
    // The producer reads the tail only when the tail it saw last leaves no
    // room: the wild value is refused then, before the ring can overrun.
    let (mut owner, _peer, file) = local_pair()?;
    file.write_at(&u64::MAX.to_le_bytes(), RING0_CTL)?;
    let most = owner.ring_capacity() / 16 + 1;
    let sent = (0..most)
        .map(|_| owner.try_send(b"x"))
        .find(|sent| sent.is_err())
        .unwrap_or(Ok(()));
    ensure(matches!(sent, Err(SendError::Corrupted(_))), || {
        format!("wild tail gave {sent:?}")
    })?;
    let _ = RING1_CTL;
    Ok(())
}

fn random_scribbles_never_panic_or_hang() -> CaseResult {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut outcomes = [0usize; 3];
    for _ in 0..100 {
        let (mut owner, mut peer, file) = local_pair()?;
        for i in 0..20u64 {
            owner.send(&i.to_le_bytes().repeat((i as usize % 7) + 1))?;
        }
        // Scribble over control pages and the start of the data.
        let mut junk = vec![0u8; 64 + (next() % 512) as usize];
        junk.iter_mut().for_each(|b| *b = next() as u8);
        let at = RING0_CTL + next() % (3 * 4096);
        file.write_at(&junk, at)?;
        let start = Instant::now();
        for _ in 0..30 {
            match peer.recv() {
                Ok(_) => outcomes[0] += 1,
                Err(RecvError::Corrupted(_)) => {
                    outcomes[1] += 1;
                    break;
                }
                Err(_) => {
                    outcomes[2] += 1;
                    break;
                }
            }
        }
        let _ = owner.try_send(b"after");
        ensure(start.elapsed() < Duration::from_secs(10), || {
            "a scribbled ring hung".into()
        })?;
    }
    println!(
        "    frames {}, corrupted {}, other errors {}",
        outcomes[0], outcomes[1], outcomes[2]
    );
    ensure(outcomes[1] > 0, || {
        "no scribble was detected as corruption".into()
    })
}

/// Dropping an async connection whose helper thread is parked (a receive
/// was cancelled) returns at once: it used to wait for the helper's
/// one-second park to end, blocking the runtime thread.
fn dropping_a_parked_async_connection_is_prompt() -> CaseResult {
    let name = name();
    let mut listener = ShmListener::bind_name(&name, &config(WaitStrategy::Adaptive))?;
    let _peer = Shm.connect(listener.address(), &config(WaitStrategy::Adaptive))?;
    let owner = listener.accept()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let took = runtime.block_on(async {
        let mut conn = ipc_shm::AsyncShmConnection::new(owner)?;
        let cancelled = tokio::time::timeout(
            Duration::from_millis(200),
            ipc_core::AsyncFrameReceiver::recv(&mut conn),
        )
        .await;
        ensure(cancelled.is_err(), || {
            "a receive from a silent peer ended".into()
        })?;
        let start = Instant::now();
        drop(conn);
        Ok::<_, Failed>(start.elapsed())
    })?;
    println!("    dropped in {took:?}");
    ensure(took < Duration::from_millis(250), || {
        format!("dropping a parked async connection took {took:?}")
    })
}

/// An agent in another PID namespace (sharing /dev/shm, as two containers
/// of one pod do) gets a clear `Incompatible` error saying why, not a
/// "segment left by a dead process".
fn another_pid_namespace_is_refused_clearly() -> CaseResult {
    if !rustix::process::geteuid().is_root() {
        println!("    skipped: a new PID namespace needs root");
        return Ok(());
    }
    let name = name();
    let _listener = ShmListener::bind_name(&name, &Config::default())?;
    let out = match Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(std::env::current_exe()?)
        .env(ROLE_ENV, "connect-from-another-pid-namespace")
        .env(ADDRESS_ENV, format!("shm:{name}"))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("    skipped: unshare: {e}");
            return Ok(());
        }
    };
    let said = String::from_utf8_lossy(&out.stdout);
    println!("    {}", said.trim());
    ensure(out.status.success(), || {
        format!(
            "the agent in another PID namespace: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A listener killed with agents connected leaves nothing of any segment
/// behind (they are anonymous memory); its socket file stays until the
/// next bind of the name replaces it. Binders racing for a stale name
/// have exactly one winner, and agents find that winner.
fn stale_listener_is_replaced() -> CaseResult {
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let name = name();
        let mut child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, format!("own-and-wait:{name}"))
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
        ensure(line.trim() == "ready", || format!("owner said {line:?}"))?;
        // A live listener's name is not taken.
        let live = ShmListener::bind_name(&name, &Config::default()).err();
        ensure(matches!(live, Some(ConnectError::AddrInUse(_))), || {
            format!("live listener: {live:?}")
        })?;
        child.kill()?;
        child.wait()?;
        let path = format!("/dev/shm/ipc-{name}");
        ensure(std::path::Path::new(&path).exists(), || {
            "a killed listener left no socket file".into()
        })?;
        let err = Shm
            .connect(&format!("shm:{name}").parse()?, &Config::default())
            .err();
        ensure(matches!(err, Some(ConnectError::NotFound(_))), || {
            format!("connecting to a dead listener: {err:?}")
        })?;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let binders: Vec<_> = (0..2)
            .map(|_| {
                let (name, barrier) = (name.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    ShmListener::bind_name(&name, &Config::default())
                })
            })
            .collect();
        let results: Vec<_> = binders
            .into_iter()
            .map(|b| b.join().expect("binder thread"))
            .collect();
        let winners = results.iter().filter(|r| r.is_ok()).count();
        ensure(winners == 1, || {
            format!(
                "round {round}: {winners} binders won: {:?}",
                results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>()
            )
        })?;
        let mut winner = results.into_iter().find_map(Result::ok).expect("a winner");
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        ensure(mode == 0o600, || format!("socket mode {mode:o}"))?;
        let mut agent = Shm.connect(winner.address(), &Config::default())?;
        let mut conn = winner.accept_timeout(Duration::from_secs(5))?;
        agent.send(b"found")?;
        ensure(&conn.recv()?[..] == b"found", || "wrong listener".into())?;
        drop((agent, conn, winner));
        ensure(!std::path::Path::new(&path).exists(), || {
            "socket file not removed on drop".into()
        })?;
    }
    Ok(())
}

fn bad_input_is_refused_clearly() -> CaseResult {
    let missing = Shm
        .connect(&"shm:no-such-listener".parse()?, &Config::default())
        .err();
    ensure(matches!(missing, Some(ConnectError::NotFound(_))), || {
        format!("missing: {missing:?}")
    })?;
    let wrong = Shm
        .connect(&"uds:/tmp/x".parse()?, &Config::default())
        .err();
    ensure(
        matches!(wrong, Some(ConnectError::WrongTransport { .. })),
        || format!("{wrong:?}"),
    )?;
    let bad_name = ShmListener::bind_name("a/b", &Config::default()).err();
    ensure(
        matches!(bad_name, Some(ConnectError::InvalidAddress(_))),
        || format!("{bad_name:?}"),
    )?;
    for size in [0, 1 << 31] {
        let cfg = Config::default().with_buffer_size(Some(size));
        let err = ShmListener::bind_name(&name(), &cfg).err();
        ensure(matches!(err, Some(ConnectError::InvalidConfig(_))), || {
            format!("ring {size}: {err:?}")
        })?;
    }
    let timeout = ShmListener::bind_name(&name(), &Config::default())?
        .accept_timeout(Duration::from_millis(20))
        .err();
    ensure(matches!(timeout, Some(ConnectError::Timeout)), || {
        format!("{timeout:?}")
    })
}

// ---- the peer side ----

fn run_peer(role: &str) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(name) = role.strip_prefix("own-and-wait:") {
        let _listener = ShmListener::bind_name(name, &Config::default())?;
        println!("ready");
        std::thread::sleep(Duration::from_secs(60));
        return Ok(());
    }
    if role == "connect-from-another-pid-namespace" {
        // Exit 0 only for the clear refusal.
        return match Shm.connect(&Address::from_env()?, &Config::default()) {
            Err(ConnectError::Incompatible(why)) if why.contains("PID namespace") => {
                println!("{why}");
                Ok(())
            }
            other => Err(format!("got {:?}", other.map(|_| "a connection")).into()),
        };
    }
    let strategy = strategy_named(&std::env::var(STRATEGY_ENV).unwrap_or_default());
    let cfg = Config::default().with_wait_strategy(strategy);
    let mut conn = Shm.connect(&Address::from_env()?, &cfg)?;
    let leave = |conn: &mut ShmConnection| match conn.recv() {
        Err(RecvError::Disconnected) => Ok(()),
        other => Err(format!(
            "expected the parent to leave, got {:?}",
            other.map(|b| b.len())
        )),
    };
    match role.split_once(':').unwrap_or((role, "")) {
        ("mixed", n) => {
            let mut buf = vec![0; 1 << 20];
            for seq in 0..n.parse::<u64>()? {
                let msg = &mut buf[..mixed_size(seq)];
                payload::fill(seq, msg);
                conn.send(msg)?;
            }
            conn.flush()?;
            leave(&mut conn)?;
        }
        ("stream", _) => {
            let msg = vec![1u8; 4096];
            while conn.send(&msg).is_ok() {}
        }
        ("sink", _) => while conn.recv().is_ok() {},
        ("idle", _) => leave(&mut conn)?,
        ("forge-then-idle", _) => {
            use std::os::unix::fs::FileExt;
            conn.recv()?;
            // SegmentHeader: peer_pid at 40, the peer's start time at 48.
            let parent = std::os::unix::process::parent_id();
            let stat = std::fs::read_to_string(format!("/proc/{parent}/stat"))?;
            let rest = &stat[stat.rfind(')').ok_or("stat")? + 1..];
            let start: u64 = rest
                .split_ascii_whitespace()
                .nth(19)
                .ok_or("stat")?
                .parse()?;
            let segment = conn.segment_file()?;
            segment.write_at(&parent.to_le_bytes(), 40)?;
            segment.write_at(&start.to_le_bytes(), 48)?;
            conn.send(b"forged")?;
            leave(&mut conn)?;
        }
        // Connected, never reads, never writes: until killed.
        ("stall", _) => std::thread::sleep(Duration::from_secs(120)),
        ("echo-in-place", _) => loop {
            let frame = match conn.recv_in_place() {
                Ok(view) => view.to_vec(),
                Err(RecvError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if frame.len() <= conn.max_record() {
                let mut slot = conn.reserve(frame.len())?;
                slot.copy_from_slice(&frame);
                slot.commit();
            } else {
                conn.send(&frame)?;
            }
        },
        _ => return Err(format!("unknown role {role}").into()),
    }
    Ok(())
}

fn leftover_segments() -> Vec<String> {
    let prefix = format!("ipc-ft-{}-", std::process::id());
    std::fs::read_dir("/dev/shm")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        if let Err(e) = run_peer(&role) {
            eprintln!("peer {role}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut trials = vec![
        Trial::test("million_mixed_messages", million_mixed_messages),
        Trial::test("zero_copy_round_trip", zero_copy_round_trip),
        Trial::test("async_zero_copy_round_trip", async_zero_copy_round_trip),
        Trial::test(
            "corrupted_segment_is_corrupted",
            corrupted_segment_is_corrupted,
        ),
        Trial::test(
            "random_scribbles_never_panic_or_hang",
            random_scribbles_never_panic_or_hang,
        ),
        Trial::test("stale_listener_is_replaced", stale_listener_is_replaced),
        Trial::test(
            "dropping_a_parked_async_connection_is_prompt",
            dropping_a_parked_async_connection_is_prompt,
        ),
        Trial::test(
            "another_pid_namespace_is_refused_clearly",
            another_pid_namespace_is_refused_clearly,
        ),
        Trial::test(
            "blocking_receiver_uses_no_cpu",
            blocking_receiver_uses_no_cpu,
        ),
        Trial::test("bad_input_is_refused_clearly", bad_input_is_refused_clearly),
    ];
    for strategy in STRATEGIES {
        let (label, _) = strategy;
        trials.push(Trial::test(
            format!("{label}::killed_mid_send"),
            move || killed_mid_send(strategy),
        ));
        trials.push(Trial::test(
            format!("{label}::killed_mid_receive"),
            move || killed_mid_receive(strategy),
        ));
        trials.push(Trial::test(
            format!("{label}::forged_liveness_does_not_delay_death"),
            move || forged_liveness_does_not_delay_death(strategy),
        ));
        trials.push(Trial::test(
            format!("{label}::killed_while_parked"),
            move || killed_while_parked(strategy),
        ));
        trials.push(Trial::test(
            format!("{label}::hostile_wait_words_cannot_hang"),
            move || hostile_wait_words_cannot_hang(strategy),
        ));
    }
    let conclusion = libtest_mimic::run(&Arguments::from_args(), trials);
    let leftovers = leftover_segments();
    if !leftovers.is_empty() {
        eprintln!("segments left in /dev/shm: {leftovers:?}");
        std::process::exit(101);
    }
    conclusion.exit();
}
