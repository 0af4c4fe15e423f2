//! The fault cases: a real peer process fails in each way it can, and the
//! surviving side must return a specific error within the bound (100 ms
//! for a death), never hang or panic, and leak no descriptor, child
//! process or file. Kill cases repeat to catch races. They run one at a
//! time, after the contract cases (see `main`), because each counts this
//! process's descriptors, children and files before and after.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use super::peer::{UNSUPPORTED, message_size};
use super::{OtherUser, Peer, PeerMode, STOP_READING_AFTER, TransportUnderTest, peer_command};
use crate::{
    AsyncFrameReceiver, AsyncFrameSender, Config, ConnectError, DEFAULT_MAX_MESSAGE_SIZE,
    FrameReceiver, FrameSender, RecvError, SendError, payload,
};

/// Design bound for noticing a dead peer (the median of the repeats).
const DEATH_BOUND: Duration = Duration::from_millis(100);
/// Repetitions of each kill case (the median must meet the bound, every
/// one must end).
const REPEATS: usize = 30;
/// Cycles of bind-then-SIGKILL in the stale-files case.
const STALE_CYCLES: usize = 100;
/// How long the half-closed cases wait for a frame that never comes.
const HALF_CLOSED_WAIT: Duration = Duration::from_secs(1);
/// Upper bound on any wait, so a broken transport fails instead of hanging.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);
/// The second user of the other-user cases (created and removed by them
/// when the tests run as root).
const OTHER_USER: &str = "ipc-test-other";

type CaseResult = Result<(), Failed>;
type Case<T> = (&'static str, fn(&T) -> CaseResult);

pub(super) fn trials<T: TransportUnderTest>(transport: Arc<T>) -> Vec<Trial> {
    let cases: [Case<T>; 14] = [
        ("killed_before_connect", killed_before_connect),
        ("killed_mid_send", killed_mid_send),
        ("killed_mid_receive", killed_mid_receive),
        ("killed_while_blocked", killed_while_blocked),
        ("killed_holding_half_a_frame", killed_holding_half_a_frame),
        ("clean_close_mid_stream", clean_close_mid_stream),
        ("silent_half_closed_peer", silent_half_closed_peer),
        ("stale_files_are_reclaimed", stale_files_are_reclaimed),
        ("another_user_cannot_connect", another_user_cannot_connect),
        ("squatted_endpoint_is_refused", squatted_endpoint_is_refused),
        ("async_killed_mid_send", |t| {
            run_async(async_killed_mid_send(t))
        }),
        ("async_killed_mid_receive", |t| {
            run_async(async_killed_mid_receive(t))
        }),
        ("async_killed_while_awaiting", |t| {
            run_async(async_killed_while_awaiting(t))
        }),
        ("async_hung_consumer_and_clean_close", |t| {
            run_async(async_hung_and_clean_close(t))
        }),
    ];
    let name = transport.name();
    let mut trials: Vec<Trial> = cases
        .into_iter()
        .map(|(case_name, case)| {
            let transport = Arc::clone(&transport);
            Trial::test(format!("{name}::faults::{case_name}"), move || {
                leak_checked(|| case(&transport))
            })
        })
        .collect();
    let t = Arc::clone(&transport);
    trials.push(Trial::test(
        format!("{name}::faults::async_silent_half_closed_peer"),
        move || leak_checked(|| run_async(async_silent_half_closed_peer(t.as_ref()))),
    ));
    trials
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn config() -> Config {
    Config::default()
        .with_recv_timeout(Some(SAFETY_TIMEOUT))
        .with_send_timeout(Some(SAFETY_TIMEOUT))
}

fn peer(mode: PeerMode) -> Command {
    peer_command(&mode, DEFAULT_MAX_MESSAGE_SIZE)
}

fn run_async(case: impl std::future::Future<Output = CaseResult>) -> CaseResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(case)
}

fn skipped(why: &str) -> CaseResult {
    println!("    skipped: {why}");
    Ok(())
}

/// What a fault case might leak.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    fds: usize,
    children: usize,
    files: Vec<String>,
}

fn footprint() -> Footprint {
    let me = std::process::id().to_string();
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let children = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    // The parent pid is the second field after the name.
                    stat.rfind(')')
                        .and_then(|i| stat[i + 1..].split_whitespace().nth(1).map(|p| p == me))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0);
    // Names this process made hold its pid (see `fresh_address`).
    let mut files: Vec<String> = [std::env::temp_dir(), "/dev/shm".into()]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(&format!("-{me}-")))
        .collect();
    files.sort();
    Footprint {
        fds,
        children,
        files,
    }
}

/// Runs `case`, then checks nothing it made is left (allowing a moment for
/// the kernel to finish reaping).
fn leak_checked(case: impl FnOnce() -> CaseResult) -> CaseResult {
    let before = footprint();
    case()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let after = footprint();
        if after == before {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("leaked: before {before:?}, after {after:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process-wide things the first case would otherwise be charged
/// for, made now: tokio's SIGCHLD pipe (opened once per process and
/// kept), and whatever a transport starts once per process (zenoh's
/// runtime threads and descriptors), by one connection made and closed.
pub(super) fn warm_up<T: TransportUnderTest>(transports: &[Arc<T>]) {
    // tokio has no `process` module when built for loom model checking.
    #[cfg(not(loom))]
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        let _ = rt.block_on(async { tokio::process::Command::new("true").status().await });
    }
    for t in transports.iter().filter(|t| t.fault_cases()) {
        drop(t.spawn(peer(PeerMode::Echo), &config()));
    }
}

fn within_bound(what: &str, mut times: Vec<Duration>) -> CaseResult {
    times.sort();
    let (median, worst) = (times[times.len() / 2], times[times.len() - 1]);
    println!("    {what}: median {median:?}, worst {worst:?}");
    ensure(median <= DEATH_BOUND, || {
        format!("{what}: median {median:?} exceeds {DEATH_BOUND:?}")
    })
}

fn is_disconnect(e: &RecvError) -> bool {
    // A stream cut inside a frame is Corrupted; between frames, Disconnected.
    matches!(e, RecvError::Disconnected | RecvError::Corrupted(_))
}

/// A peer's pid, to kill it from another thread.
fn pid_of(peer: &Peer) -> Result<u32, Failed> {
    peer.id().ok_or_else(|| "the peer has no pid".into())
}

fn kill(pid: u32) -> Instant {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    Instant::now()
}

/// A payload frame of the mixed sizes the peers send.
fn message(seq: u64, size: usize) -> Vec<u8> {
    let mut msg = vec![0; size];
    payload::fill(seq, &mut msg);
    msg
}

// ---- blocking ----

fn killed_before_connect<T: TransportUnderTest>(t: &T) -> CaseResult {
    for _ in 0..REPEATS {
        // Either it died before connecting (nothing arrived), or its
        // connection arrived and reads as gone.
        if let Some(mut conn) = t.spawn_killed(peer(PeerMode::Silent), &config())? {
            let got = conn.recv_timeout(Duration::from_secs(10));
            ensure(matches!(got, Err(RecvError::Disconnected)), || {
                format!("a dead peer's connection gave {:?}", got.map(|b| b.len()))
            })?;
        }
    }
    Ok(())
}

fn killed_mid_send<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t.spawn(peer(PeerMode::Generate(u64::MAX)), &config())?;
        for seq in 0..100 {
            payload::verify(seq, &conn.recv()?)?;
        }
        let killed = kill(pid_of(&peer)?);
        loop {
            match conn.recv() {
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => break,
                Err(e) => return Err(format!("receiving from a killed peer: {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
        peer.kill();
    }
    within_bound(&format!("{}: killed mid-send", t.name()), times)
}

fn killed_mid_receive<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t.spawn(peer(PeerMode::Drain), &config())?;
        for seq in 0..100u64 {
            conn.send(&message(seq, 4096))?;
        }
        let killed = kill(pid_of(&peer)?);
        loop {
            match conn.send(&message(0, 4096)) {
                Ok(()) => {}
                Err(SendError::Disconnected) => break,
                Err(e) => return Err(format!("sending to a killed peer: {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
        peer.kill();
    }
    within_bound(&format!("{}: killed mid-receive", t.name()), times)
}

fn killed_while_blocked<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t.spawn(peer(PeerMode::Silent), &config())?;
        let pid = pid_of(&peer)?;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(75));
            kill(pid)
        });
        let got = conn.recv_timeout(SAFETY_TIMEOUT);
        let returned = Instant::now();
        let killed = killer.join().map_err(|_| "the killer thread panicked")?;
        ensure(matches!(got, Err(RecvError::Disconnected)), || {
            format!("{:?}", got.map(|b| b.len()))
        })?;
        times.push(returned.saturating_duration_since(killed));
        peer.kill();
    }
    within_bound(
        &format!("{}: killed while the parent is blocked", t.name()),
        times,
    )
}

/// Waits a moment for a hanging peer; true if it exited saying its
/// transport cannot do what its mode asks.
fn unsupported(peer: &mut Peer) -> bool {
    peer.wait_timeout(Duration::from_millis(200))
        .and_then(|s| s.code())
        == Some(UNSUPPORTED)
}

fn killed_holding_half_a_frame<T: TransportUnderTest>(t: &T) -> CaseResult {
    for _ in 0..3 {
        let (mut conn, mut peer) = t.spawn(peer(PeerMode::HalfFrame), &config())?;
        if unsupported(&mut peer) {
            return skipped("the transport hands over whole messages or none");
        }
        // Half a frame is no frame: the receive times out, it does not
        // hang or hand out a partial message.
        let waited = conn.recv_timeout(Duration::from_millis(200));
        ensure(matches!(waited, Err(RecvError::Timeout)), || {
            format!("half a frame gave {:?}", waited.map(|b| b.len()))
        })?;
        let killed = kill(pid_of(&peer)?);
        let got = conn.recv_timeout(Duration::from_secs(10));
        ensure(matches!(got, Err(RecvError::Corrupted(_))), || {
            format!("a frame cut by death gave {:?}", got.map(|b| b.len()))
        })?;
        ensure(killed.elapsed() < Duration::from_secs(1), || {
            format!("noticed after {:?}", killed.elapsed())
        })?;
        peer.kill();
    }
    Ok(())
}

fn clean_close_mid_stream<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Burst(1000)), &config())?;
    for seq in 0..1000 {
        let frame = conn.recv()?;
        ensure(frame.len() == message_size(seq), || {
            format!("frame {seq}: {} bytes", frame.len())
        })?;
        payload::verify(seq, &frame)?;
    }
    let got = conn.recv_timeout(Duration::from_secs(10));
    ensure(matches!(got, Err(RecvError::Disconnected)), || {
        format!("after a clean close: {:?}", got.map(|b| b.len()))
    })
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// A receive under a silent half-closed peer ended in time, as a timeout,
/// without burning CPU.
fn check_half_closed_wait(
    name: &str,
    got: Result<usize, RecvError>,
    start: Instant,
    cpu_before: Duration,
) -> CaseResult {
    let took = start.elapsed();
    let cpu = thread_cpu() - cpu_before;
    println!("    {name}: waited {took:?}, used {cpu:?} of CPU");
    ensure(matches!(got, Err(RecvError::Timeout)), || {
        format!("a silent peer gave {got:?}")
    })?;
    ensure(took < HALF_CLOSED_WAIT + Duration::from_secs(2), || {
        format!("a {HALF_CLOSED_WAIT:?} receive returned after {took:?}")
    })?;
    ensure(cpu < HALF_CLOSED_WAIT / 4, || {
        format!("waiting {took:?} used {cpu:?} of CPU (a busy loop)")
    })
}

/// A send ran out of time after its frame started (the tail is held back),
/// then the peer stopped reading for good but stayed alive: the next
/// receive still honours its deadline and sleeps while it waits.
fn silent_half_closed_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, mut peer) = t.spawn(peer(PeerMode::StopReading), &config())?;
    // Sent while the peer still reads (it stops after STOP_READING_AFTER).
    let sent = conn.send_timeout(&vec![3u8; 4 << 20], Duration::from_millis(100));
    if unsupported(&mut peer) {
        return skipped("the transport has no way for a peer to stop reading alone");
    }
    ensure(sent.is_ok(), || format!("a started frame: {sent:?}"))?;
    std::thread::sleep(STOP_READING_AFTER);
    let (before, start) = (thread_cpu(), Instant::now());
    let got = conn.recv_timeout(HALF_CLOSED_WAIT);
    check_half_closed_wait(&t.name(), got.map(|b| b.len()), start, before)
}

/// Starts `mode` as a peer that binds an address and says `ready`;
/// returns it once it has, or `None` if it exited first.
fn owner(mut command: Command) -> Result<Option<std::process::Child>, Failed> {
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() == "ready" {
        return Ok(Some(child));
    }
    let status = child.wait()?;
    println!("    the owner did not start ({status}): {line:?}");
    Ok(None)
}

fn stale_files_are_reclaimed<T: TransportUnderTest>(t: &T) -> CaseResult {
    let Some(address) = t.fresh_address() else {
        return skipped("the transport has no named listeners");
    };
    for cycle in 0..STALE_CYCLES {
        let mut child = owner(peer(PeerMode::Own(address.to_string())))?
            .ok_or_else(|| format!("cycle {cycle}: the owner did not bind"))?;
        child.kill()?;
        child.wait()?;
        // The killed owner left its files; a new bind must take them over.
        let listener = t
            .bind(&address, &config())
            .map_err(|e| format!("cycle {cycle}: bind after a SIGKILLed owner: {e}"))?;
        drop(listener);
    }
    Ok(())
}

/// Runs `case` with a second user's uid and gid, if this process is root
/// and can make one; the user is removed again if it was made here.
fn as_other_user(case: impl FnOnce(u32, u32) -> CaseResult) -> CaseResult {
    if !rustix::process::geteuid().is_root() {
        return skipped("a second user needs root");
    }
    match OtherUser::create(OTHER_USER) {
        Ok(user) => case(user.uid, user.gid),
        Err(e) => skipped(&e),
    }
}

fn another_user_cannot_connect<T: TransportUnderTest>(t: &T) -> CaseResult {
    let Some(address) = t.fresh_address() else {
        return skipped("the transport has no named listeners");
    };
    as_other_user(|uid, gid| {
        let _listener = t.bind(&address, &config())?;
        let mut command = peer(PeerMode::ConnectTo(address.to_string()));
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
        let status = command.status()?;
        match status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(format!("another user connected to {address}").into()),
            // 126/127: the binary itself is not reachable by that user.
            Some(126 | 127) | None => skipped(&format!(
                "the test binary is not executable by another user ({status})"
            )),
            _ => Err(format!("the other user's attempt failed oddly ({status})").into()),
        }
    })
}

/// Another user squats the address a peer is told to connect to (a
/// listener of theirs, bound first): connecting refuses it, before sending
/// anything, though root could open the owner-only endpoint.
fn squatted_endpoint_is_refused<T: TransportUnderTest>(t: &T) -> CaseResult {
    let Some(address) = t.fresh_address() else {
        return skipped("the transport has no named listeners");
    };
    as_other_user(|uid, gid| {
        let mut command = peer(PeerMode::Own(address.to_string()));
        std::os::unix::process::CommandExt::uid(&mut command, uid);
        std::os::unix::process::CommandExt::gid(&mut command, gid);
        let Some(mut squatter) = owner(command)? else {
            return skipped("the other user's listener did not start");
        };
        let got = t.connect(&address, &config());
        let _ = squatter.kill();
        let _ = squatter.wait();
        let result = match got {
            Err(ConnectError::PermissionDenied(why)) if why.contains(&format!("uid {uid}")) => {
                Ok(())
            }
            other => Err(format!(
                "connecting to another user's endpoint gave {:?}",
                other.map(|_| "a connection")
            )
            .into()),
        };
        // The dead squatter's files are stale now: binding takes them over
        // (and removes them when the listener goes).
        drop(
            t.bind(&address, &config())
                .map_err(|e| format!("bind after the squatter: {e}"))?,
        );
        result
    })
}

// ---- async ----

async fn async_killed_mid_send<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t
            .spawn_async(peer(PeerMode::Generate(u64::MAX)), &config())
            .await?;
        for seq in 0..100 {
            payload::verify(seq, &conn.recv().await?)?;
        }
        let killed = kill(pid_of(&peer)?);
        loop {
            match conn.recv().await {
                Ok(_) => {}
                Err(e) if is_disconnect(&e) => break,
                Err(e) => return Err(format!("async receive from a killed peer: {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
        peer.kill();
    }
    within_bound(&format!("{}: async, killed mid-send", t.name()), times)
}

async fn async_killed_mid_receive<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t.spawn_async(peer(PeerMode::Drain), &config()).await?;
        for seq in 0..100u64 {
            conn.send(&message(seq, 4096)).await?;
        }
        let killed = kill(pid_of(&peer)?);
        loop {
            match conn.send(&message(0, 4096)).await {
                Ok(()) => {}
                Err(SendError::Disconnected) => break,
                Err(e) => return Err(format!("async send to a killed peer: {e:?}").into()),
            }
        }
        times.push(killed.elapsed());
        peer.kill();
    }
    within_bound(&format!("{}: async, killed mid-receive", t.name()), times)
}

async fn async_killed_while_awaiting<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut times = Vec::new();
    for _ in 0..REPEATS {
        let (mut conn, mut peer) = t.spawn_async(peer(PeerMode::Silent), &config()).await?;
        let pid = pid_of(&peer)?;
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(75));
            kill(pid)
        });
        let got = conn.recv().await;
        let returned = Instant::now();
        let killed = killer.join().map_err(|_| "the killer thread panicked")?;
        ensure(matches!(got, Err(RecvError::Disconnected)), || {
            format!("{:?}", got.map(|b| b.len()))
        })?;
        times.push(returned.saturating_duration_since(killed));
        peer.kill();
    }
    within_bound(&format!("{}: async, killed while awaited", t.name()), times)
}

async fn async_hung_and_clean_close<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, peer_process) = t.spawn_async(peer(PeerMode::Stall), &config()).await?;
    let chunk = message(0, 64 * 1024);
    let mut timed_out = false;
    for _ in 0..10_000 {
        match conn.send_timeout(&chunk, Duration::from_millis(50)).await {
            Ok(()) => {}
            Err(SendError::Timeout) => {
                timed_out = true;
                break;
            }
            Err(e) => return Err(format!("async send to a hung consumer: {e:?}").into()),
        }
    }
    ensure(timed_out, || "async send_timeout never timed out".into())?;
    drop((conn, peer_process));
    let (mut conn, _peer) = t
        .spawn_async(peer(PeerMode::Burst(1000)), &config())
        .await?;
    for seq in 0..1000 {
        payload::verify(seq, &conn.recv().await?)?;
    }
    let got = conn.recv().await;
    ensure(matches!(got, Err(RecvError::Disconnected)), || {
        format!("{:?}", got.map(|b| b.len()))
    })
}

async fn async_silent_half_closed_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, mut peer) = t
        .spawn_async(peer(PeerMode::StopReading), &config())
        .await?;
    // Sent while the peer still reads (it stops after STOP_READING_AFTER).
    let sent = conn
        .send_timeout(&vec![3u8; 4 << 20], Duration::from_millis(100))
        .await;
    if unsupported(&mut peer) {
        return skipped("the transport has no way for a peer to stop reading alone");
    }
    ensure(sent.is_ok(), || format!("a started frame: {sent:?}"))?;
    tokio::time::sleep(STOP_READING_AFTER).await;
    let (before, start) = (thread_cpu(), Instant::now());
    let got = conn.recv_timeout(HALF_CLOSED_WAIT).await;
    check_half_closed_wait(&t.name(), got.map(|b| b.len()), start, before)
}
