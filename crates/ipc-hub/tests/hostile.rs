//! Hostile processes against a hub, across real processes: a connection
//! flood must not keep a good agent out (uds, shm), frames begun and
//! never finished must not hold the hub's memory (uds), and an agent that
//! never stops talking is still removed when the hub says so (shm, uds).
//!
//! `harness = false`: this binary re-runs itself as the flooder, the
//! slow sender, the chatterer or the good agent (the role in
//! `ROLE_ENV`).

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_core::{Address, AsyncConnector, Config, FrameBudget};
use ipc_hub::{Agent, AgentEvent, Hub, HubConfig, HubEvent};
use libtest_mimic::{Arguments, Failed, Trial};

const ROLE_ENV: &str = "IPC_HUB_HOSTILE_ROLE";
const TARGET_ENV: &str = "IPC_HUB_HOSTILE_TARGET";

/// Generous: bounds waits that should end much sooner.
const LONG: Duration = Duration::from_secs(20);

/// Connections a flooder keeps open at once (the attack run's flooder
/// held about 190).
const FLOOD_HELD: usize = 400;

/// Slow senders, each with one maximum-size frame but its last byte.
const SLOW_FRAMES: usize = 8;

/// The deadline of a call to the agent that sends stray replies.
const STRAY_CALL: Duration = Duration::from_millis(300);

/// A frame of the hub's protocol: a hello from an agent named `x`.
const HELLO: [u8; 12] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'x'];

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Uds,
    Shm,
}

/// A hub listening over `via`, and the processes started against it
/// (killed and reaped when it goes).
struct Setup {
    hub: Hub,
    target: String,
    _dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Setup {
    fn new(via: Via, config: &Config) -> Result<Setup, Failed> {
        let hub = Hub::new(HubConfig::default())?;
        let dir = tempfile::tempdir()?;
        let target = match via {
            Via::Uds => {
                let path = dir.path().join("hub.sock");
                hub.listen(ipc_uds::AsyncUdsListener::bind_path(&path, config)?)?;
                format!("uds:{}", path.display())
            }
            Via::Shm => {
                let name = format!("hostile-{}", std::process::id());
                hub.listen(ipc_shm::AsyncShmListener::bind_name(&name, config)?)?;
                format!("shm:{name}")
            }
        };
        Ok(Setup {
            hub,
            target,
            _dir: dir,
            children: Vec::new(),
        })
    }

    fn spawn(&mut self, role: &str) -> Result<(), Failed> {
        let child = Command::new(std::env::current_exe()?)
            .env(ROLE_ENV, role)
            .env(TARGET_ENV, &self.target)
            .stdout(Stdio::null())
            .spawn()?;
        self.children.push(child);
        Ok(())
    }

    /// Starts a good agent and times it from spawn to its first answer.
    async fn good_agent_answers(&mut self, n: u64) -> Result<Duration, Failed> {
        let started = Instant::now();
        self.spawn("good")?;
        let peer = loop {
            match tokio::time::timeout_at((started + LONG).into(), self.hub.next()).await {
                Ok(HubEvent::Joined(peer)) if peer.name == "good" => break peer,
                Ok(_) => {}
                Err(_) => return Err(format!("good agent {n} did not join within {LONG:?}").into()),
            }
        };
        let answer: u64 = self.hub.call(peer.id, &n, LONG).await?;
        ensure(answer == n + 1, || format!("answered {answer}"))?;
        Ok(started.elapsed())
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- the tests ----

/// One process keeps about 400 connections open, silent, with half a
/// hello, or (shm) asking for a segment and never attaching, opening new
/// ones as fast as it can; good agents started meanwhile join and are
/// answered within a second (before: not within 25 s).
fn a_flood_does_not_keep_agents_out(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, &Config::default())?;
        s.spawn("flood")?;
        // Let the flood fill every queue first.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut took = Vec::new();
        for n in 0..5 {
            took.push(s.good_agent_answers(n).await?);
        }
        took.sort();
        let median = took[took.len() / 2];
        eprintln!("{via:?}: good agents answered after {took:?} under the flood");
        ensure(median < Duration::from_secs(1), || {
            format!("good agents took {took:?} (median {median:?}) while one process flooded")
        })
    })
}

/// An agent sends messages as fast as it can, for ever, while the hub
/// reads them: `remove` ends it within the bound all the same (a reader
/// that always finds the next frame waiting still looks at its stop
/// signal).
fn a_chattering_agent_is_removed_when_told(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, &Config::default())?;
        s.spawn("chatter")?;
        let deadline = Instant::now() + LONG;
        let peer = loop {
            if let HubEvent::Joined(peer) = next_by(&mut s.hub, deadline).await? {
                break peer;
            }
        };
        let mut heard = 0u64;
        while heard < 10_000 {
            if let HubEvent::Message { peer: from, .. } = next_by(&mut s.hub, deadline).await?
                && from == peer.id
            {
                heard += 1;
            }
        }
        let told = Instant::now();
        ensure(s.hub.remove(peer.id), || {
            "the chatterer was not there".into()
        })?;
        loop {
            match next_by(&mut s.hub, deadline).await {
                Ok(HubEvent::Left { peer: left, reason }) if left.id == peer.id => {
                    eprintln!("{via:?}: removed {:?} after being told", told.elapsed());
                    return ensure(reason == ipc_hub::LeaveReason::Removed, || {
                        format!("it left as {reason:?}")
                    });
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "a chattering agent was still there {LONG:?} after `remove` \
                         ({heard} messages read before)"
                    )
                    .into());
                }
            }
        }
    })
}

/// An agent answers no call and sends replies to calls never made, as
/// fast as it can: a call to it still fails at its deadline (the caller,
/// reading the connection itself while it waits, lets its deadline be
/// looked at between frames), and its peer is removed when told.
fn a_call_ends_at_its_deadline_among_stray_replies(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via, &Config::default())?;
        s.spawn("stray")?;
        let deadline = Instant::now() + LONG;
        let peer = loop {
            if let HubEvent::Joined(peer) = next_by(&mut s.hub, deadline).await? {
                break peer;
            }
        };
        // From a task of its own, so that a call which never gives way
        // is seen here (and removed) rather than hanging this test.
        let hub = s.hub.handle();
        let call = tokio::spawn(async move {
            let started = Instant::now();
            let answer = hub.call::<_, u64>(peer.id, &1u64, STRAY_CALL).await;
            (answer, started.elapsed())
        });
        let watched = tokio::time::timeout(LONG, call).await;
        if watched.is_err() {
            s.hub.remove(peer.id);
            return Err(format!(
                "a call with a {STRAY_CALL:?} deadline had not ended after {LONG:?}"
            )
            .into());
        }
        let (answer, took) = watched?.map_err(|e| e.to_string())?;
        eprintln!("{via:?}: the call ended after {took:?} as {answer:?}");
        ensure(matches!(answer, Err(ipc_hub::CallError::Timeout)), || {
            format!("the call ended as {answer:?}")
        })?;
        let bound = STRAY_CALL + Duration::from_secs(1);
        ensure(took < bound, || {
            format!("a call with a {STRAY_CALL:?} deadline ended after {took:?}")
        })?;
        ensure(s.hub.remove(peer.id), || {
            "the stray agent was not there".into()
        })
    })
}

/// The hub's next event, if one comes before `deadline`.
async fn next_by(hub: &mut Hub, deadline: Instant) -> Result<HubEvent, Failed> {
    tokio::time::timeout_at(deadline.into(), hub.next())
        .await
        .map_err(|_| Failed::from("no event within the bound"))
}

/// Eight connections each send all of a 16 MiB frame but its last byte
/// and wait: the hub holds about 128 MiB until the frame deadline (the
/// default, 5 s), then drops them and its memory comes back.
fn slow_frames_are_cut_off_at_the_deadline() -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(Via::Uds, &Config::default())?;
        let before = rss_mib();
        s.spawn("slow")?;
        let started = Instant::now();
        let mut left = 0;
        let mut peak = before;
        while left < SLOW_FRAMES {
            let event = tokio::time::timeout(Duration::from_millis(100), s.hub.next()).await;
            peak = peak.max(rss_mib());
            match event {
                Ok(HubEvent::Left { reason, .. }) => {
                    ensure(reason.to_string().contains("frame deadline"), || {
                        format!("left for {reason:?}")
                    })?;
                    left += 1;
                }
                Ok(_) => {}
                Err(_) => ensure(started.elapsed() < LONG, || {
                    format!("{left} of {SLOW_FRAMES} slow senders were cut off within {LONG:?}")
                })?,
            }
        }
        let cut_after = started.elapsed();
        ensure(peak - before > 64.0, || {
            format!("the attack never took hold: RSS {before:.0} -> peak {peak:.0} MiB")
        })?;
        // The frees reach the OS at once (large buffers are mapped).
        let after = rss_mib();
        eprintln!(
            "RSS {before:.0} MiB -> peak {peak:.0} -> {after:.0} after the cut at {cut_after:.1?}"
        );
        ensure(after - before < 24.0, || {
            format!("RSS {before:.0} MiB -> peak {peak:.0} -> {after:.0} after the cut")
        })?;
        ensure(cut_after >= ipc_core::DEFAULT_FRAME_DEADLINE, || {
            format!("cut off after {cut_after:?}, before the deadline")
        })?;
        // The hub goes on serving.
        s.good_agent_answers(1).await?;
        Ok(())
    })
}

/// With a 48 MiB budget for unfinished frames, the same eight slow frames
/// never hold more than it; the frames that wait for budget are cut off
/// in their turn, and a good agent is answered meanwhile.
fn unfinished_frames_stay_within_the_budget() -> Result<(), Failed> {
    runtime().block_on(async {
        let budget = FrameBudget::new(48 << 20);
        let config = Config::default()
            .with_frame_budget(budget.clone())
            .with_frame_deadline(Some(Duration::from_secs(1)));
        let mut s = Setup::new(Via::Uds, &config)?;
        let before = rss_mib();
        s.spawn("slow")?;
        let started = Instant::now();
        let (mut left, mut peak, mut most) = (0, before, 0);
        while left < SLOW_FRAMES {
            let event = tokio::time::timeout(Duration::from_millis(50), s.hub.next()).await;
            peak = peak.max(rss_mib());
            most = most.max(budget.in_use());
            match event {
                Ok(HubEvent::Left { .. }) => left += 1,
                Ok(_) => {}
                Err(_) => ensure(started.elapsed() < LONG, || {
                    format!("{left} of {SLOW_FRAMES} cut off within {LONG:?}")
                })?,
            }
        }
        eprintln!(
            "budget 48 MiB: at most {} MiB held, RSS {before:.0} -> peak {peak:.0} MiB",
            most >> 20
        );
        ensure(most <= budget.limit() && most > 16 << 20, || {
            format!(
                "unfinished frames held {most} bytes, budget {}",
                budget.limit()
            )
        })?;
        ensure(peak - before < 48.0 + 16.0, || {
            format!("RSS {before:.0} -> peak {peak:.0} MiB over a 48 MiB budget")
        })?;
        ensure(budget.in_use() == 0, || {
            format!("{} bytes still charged", budget.in_use())
        })?;
        s.good_agent_answers(1).await?;
        Ok(())
    })
}

/// The size of the large reply.
const LARGE: usize = 64 << 20;

/// An agent answers with 64 MiB over uds: once the hub has dropped the
/// reply and read on, its memory is back within 8 MiB of where it was
/// (before: the read buffer's tail kept the whole 64 MiB allocation alive
/// for as long as the connection lived).
fn a_large_frame_leaves_no_memory_behind() -> Result<(), Failed> {
    runtime().block_on(async {
        let config = Config::default().with_max_message_size(LARGE + (1 << 20));
        let mut s = Setup::new(Via::Uds, &config)?;
        s.spawn("large")?;
        let peer = loop {
            match tokio::time::timeout(LONG, s.hub.next()).await? {
                HubEvent::Joined(peer) => break peer,
                _ => continue,
            }
        };
        // Warm: small calls first, so the start counts the hub's own memory.
        for n in 1..4u64 {
            let _: u64 = s.hub.call(peer.id, &n, LONG).await?;
        }
        let before = rss_mib();
        let reply = s.hub.call_bytes(peer.id, &0u64, LONG).await?;
        ensure(reply.len() == LARGE && reply[LARGE - 1] == 7, || {
            format!("a reply of {} bytes", reply.len())
        })?;
        let peak = rss_mib();
        drop(reply);
        for n in 1..4u64 {
            let _: u64 = s.hub.call(peer.id, &n, LONG).await?;
        }
        let after = rss_mib();
        eprintln!("RSS {before:.0} MiB -> {peak:.0} with the 64 MiB reply -> {after:.0} after");
        ensure(after - before < 8.0, || {
            format!("RSS {before:.0} MiB -> {peak:.0} -> {after:.0} after the reply was dropped")
        })
    })
}

// ---- the other processes ----

fn target() -> Address {
    std::env::var(TARGET_ENV)
        .expect("target")
        .parse()
        .expect("address")
}

/// Opens connections as fast as it can and keeps the newest
/// [`FLOOD_HELD`]: silent, half a hello, and (shm) a segment asked for
/// and never attached.
fn flood() -> ! {
    raise_nofile();
    let path = match target() {
        Address::Uds(path) => path,
        Address::Shm(name) => format!("/dev/shm/ipc-{name}").into(),
        other => panic!("cannot flood {other}"),
    };
    let shm_ask = {
        let mut hello = *b"IPCSHM\0\0";
        hello[6..].copy_from_slice(&(ipc_shm::LAYOUT_VERSION as u16).to_le_bytes());
        hello
    };
    let mut held = VecDeque::new();
    for n in 0u64.. {
        let Some(mut sock) = connect_nonblocking(&path) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let _ = match n % 3 {
            0 => Ok(()),
            1 => sock.write(&HELLO[..5]).map(drop),
            _ if path.starts_with("/dev/shm") => sock.write(&shm_ask).map(drop),
            _ => sock
                .write(&ipc_core::frame::encode_header(HELLO.len())[..6])
                .map(drop),
        };
        held.push_back(sock);
        if held.len() > FLOOD_HELD {
            held.pop_front();
        }
    }
    unreachable!()
}

/// A connect that fails instead of waiting when the listener's queue is
/// full.
fn connect_nonblocking(path: &std::path::Path) -> Option<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .ok()?;
    rustix::net::connect(&fd, &SocketAddrUnix::new(path).ok()?).ok()?;
    Some(UnixStream::from(fd))
}

fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

/// Joins eight times, then sends on each connection all of a 16 MiB frame
/// but its last byte, and waits.
fn slow() -> ! {
    let Address::Uds(path) = target() else {
        panic!("slow frames go over uds")
    };
    let max = ipc_core::DEFAULT_MAX_MESSAGE_SIZE;
    let body = vec![7u8; max - 1];
    let mut conns = Vec::new();
    for _ in 0..SLOW_FRAMES {
        let mut sock = UnixStream::connect(&path).expect("connect");
        sock.write_all(&ipc_core::frame::encode_header(HELLO.len()))
            .expect("hello");
        sock.write_all(&HELLO).expect("hello");
        conns.push(sock);
    }
    // Each on a thread: a write blocks while the hub has not read.
    let writers: Vec<_> = conns
        .into_iter()
        .map(|mut sock| {
            let body = body.clone();
            std::thread::spawn(move || {
                let _ = sock.write_all(&ipc_core::frame::encode_header(max));
                let _ = sock.write_all(&body);
                sock
            })
        })
        .collect();
    let _held: Vec<_> = writers.into_iter().filter_map(|w| w.join().ok()).collect();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Joins and answers each call `n` with `n + 1` (as `large`: call 0 with
/// 64 MiB).
fn good(large: bool) -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let config = Config::default().with_max_message_size(LARGE + (1 << 20));
            let mut agent = join("good", &config).await?;
            while let Some(event) = agent.next().await {
                if let AgentEvent::Call(request) = event {
                    let n: u64 = request.decode()?;
                    if large && n == 0 {
                        request.reply_bytes(&vec![7u8; LARGE]).await?;
                    } else {
                        request.reply(&(n + 1)).await?;
                    }
                }
            }
            Ok(())
        })
}

/// Joins the hub at the target as `name`.
async fn join(name: &str, config: &Config) -> Result<Agent, Box<dyn std::error::Error>> {
    Ok(match target() {
        Address::Uds(path) => {
            let conn = ipc_uds::AsyncUds
                .connect(&Address::Uds(path), config)
                .await?;
            Agent::join(conn, name, HubConfig::default()).await?
        }
        address => {
            let conn = ipc_shm::AsyncShm.connect(&address, config).await?;
            Agent::join(conn, name, HubConfig::default()).await?
        }
    })
}

/// Joins and sends messages as fast as it can until the hub is gone.
fn chatter() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let agent = join("chatter", &Config::default()).await?;
            let mut n = 0u64;
            while agent.send(&n).await.is_ok() {
                n += 1;
            }
            Ok(())
        })
}

/// Joins by hand (the hub's protocol: `[kind][id u64 LE][body]`), then
/// sends replies to calls never made, as fast as it can, until the hub
/// is gone.
fn stray() -> Result<(), Box<dyn std::error::Error>> {
    use ipc_core::{AsyncFrameReceiver, AsyncFrameSender};
    async fn run<C: AsyncFrameSender + AsyncFrameReceiver>(
        mut conn: C,
    ) -> Result<(), Box<dyn std::error::Error>> {
        conn.send(&HELLO).await?;
        let _welcome = conn.recv().await?;
        let mut reply = [5u8, 0, 0, 0, 0, 0, 0, 0, 0];
        for id in (1u64 << 40).. {
            reply[1..].copy_from_slice(&id.to_le_bytes());
            if conn.send(&reply).await.is_err() {
                break;
            }
        }
        Ok(())
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let config = Config::default();
            match target() {
                address @ Address::Uds(_) => {
                    run(ipc_uds::AsyncUds.connect(&address, &config).await?).await
                }
                address => run(ipc_shm::AsyncShm.connect(&address, &config).await?).await,
            }
        })
}

/// A hostile case run over one transport.
type Case = fn(Via) -> Result<(), Failed>;

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("flood") => flood(),
        Ok("slow") => slow(),
        Ok("chatter") => {
            let _ = chatter();
            return;
        }
        Ok("stray") => {
            let _ = stray();
            return;
        }
        Ok(role @ ("good" | "large")) => {
            if let Err(e) = good(role == "large") {
                eprintln!("good agent: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let mut tests = Vec::new();
    // The cases run over each transport a hub listens on.
    let over_each: [(&str, Case); 3] = [
        (
            "a_flood_does_not_keep_agents_out",
            a_flood_does_not_keep_agents_out,
        ),
        (
            "a_chattering_agent_is_removed_when_told",
            a_chattering_agent_is_removed_when_told,
        ),
        (
            "a_call_ends_at_its_deadline_among_stray_replies",
            a_call_ends_at_its_deadline_among_stray_replies,
        ),
    ];
    for (case, run) in over_each {
        for via in [Via::Uds, Via::Shm] {
            let name = format!("{case}::{}", format!("{via:?}").to_lowercase());
            tests.push(Trial::test(name, move || run(via)));
        }
    }
    tests.push(Trial::test(
        "slow_frames_are_cut_off_at_the_deadline::uds",
        slow_frames_are_cut_off_at_the_deadline,
    ));
    tests.push(Trial::test(
        "unfinished_frames_stay_within_the_budget::uds",
        unfinished_frames_stay_within_the_budget,
    ));
    tests.push(Trial::test(
        "a_large_frame_leaves_no_memory_behind::uds",
        a_large_frame_leaves_no_memory_behind,
    ));
    // One at a time: each measures memory and time of this process.
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, tests).exit();
}
