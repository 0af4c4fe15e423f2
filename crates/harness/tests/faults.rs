//! The fault matrix: every transport, a real agent process, and each way
//! it can fail. The surviving side must return a specific error within the
//! bound (100 ms for a death), never hang or panic, and leak no file
//! descriptor, child process, socket file or shared-memory segment. Kill
//! cases repeat to catch races. Also: stale resources after repeated
//! SIGKILLs, and access by another user (when run as root).
//!
//! `harness = false`: this binary is also the agent it spawns.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::task::{AgentTask, Role};
use harness::transport::{
    AnyListener, Transport, Variant, agent_command, spawn_agent, unique_name,
};
use ipc_core::{Address, FrameReceiver, FrameSender, RecvError, SendError, payload};
use libtest_mimic::{Arguments, Failed, Trial};

/// Design bound for noticing a dead peer.
const DEATH_BOUND: Duration = Duration::from_millis(100);
/// Repetitions of each kill case (the median must meet the bound, every
/// one must end).
const REPEATS: usize = 30;
/// Cycles of create-then-SIGKILL in the stale-resource case.
const STALE_CYCLES: usize = 100;

type CaseResult = Result<(), Failed>;

fn ensure(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn task(role: Role, transport: Transport) -> AgentTask {
    AgentTask {
        role,
        variant: Variant::of(transport),
        cpu: None,
    }
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
                    stat.rfind(')')
                        .and_then(|i| {
                            stat[i + 1..]
                                .split_whitespace()
                                .nth(1)
                                .map(|ppid| ppid == me)
                        })
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0);
    let prefix = format!("ipc-h-{me}-");
    let mut files: Vec<String> = [std::env::temp_dir(), "/dev/shm".into()]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with(&prefix) || n.starts_with(&format!("ipc-{prefix}")))
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

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn within_bound(what: &str, times: Vec<Duration>) -> CaseResult {
    let worst = *times.iter().max().expect("repeats");
    let median = median(times);
    println!("    {what}: median {median:?}, worst {worst:?}");
    ensure(median <= DEATH_BOUND, || {
        format!("{what}: median {median:?} exceeds {DEATH_BOUND:?}")
    })
}

fn is_disconnect(e: &RecvError) -> bool {
    // A stream cut inside a frame is Corrupted; between frames, Disconnected.
    matches!(e, RecvError::Disconnected | RecvError::Corrupted(_))
}

fn killed_before_connect(t: Transport) -> CaseResult {
    leak_checked(|| {
        for _ in 0..REPEATS {
            if t == Transport::Pipe {
                let mut cmd = agent_command(&task(Role::Idle, t))?;
                let (mut conn, mut child) =
                    ipc_pipe::spawn(&mut cmd, &Variant::of(t).config())?.into_parts();
                child.kill()?;
                let got = conn.recv();
                child.wait()?;
                ensure(matches!(got, Err(RecvError::Disconnected)), || {
                    format!("{got:?}")
                })?;
            } else {
                let mut listener = AnyListener::bind_unique(&Variant::of(t))?;
                let mut child = agent_command(&task(Role::Idle, t))?
                    .env(ipc_core::ADDRESS_ENV, listener.address().to_string())
                    .spawn()?;
                child.kill()?;
                child.wait()?;
                // Either it died before connecting (nothing to accept), or its
                // connection made it into the queue and reads as gone.
                match listener.accept_timeout(Duration::from_millis(100)) {
                    Err(ipc_core::ConnectError::Timeout) => {}
                    Ok(mut conn) => {
                        let got = conn.recv_timeout(Duration::from_secs(10));
                        ensure(matches!(got, Err(RecvError::Disconnected)), || {
                            format!(
                                "a dead agent's queued connection gave {:?}",
                                got.map(|b| b.len())
                            )
                        })?;
                    }
                    Err(e) => return Err(format!("accept after the agent died: {e}").into()),
                }
            }
        }
        Ok(())
    })
}

fn killed_mid_send(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut times = Vec::new();
        for _ in 0..REPEATS {
            let mut agent = spawn_agent(&task(
                Role::Source {
                    count: u64::MAX,
                    size: 256,
                },
                t,
            ))?;
            agent.conn().send(b"go")?;
            for seq in 0..100 {
                payload::verify(seq, &agent.conn().recv()?)?;
            }
            let killed = kill(agent.pid());
            loop {
                match agent.conn().recv() {
                    Ok(_) => {}
                    Err(e) if is_disconnect(&e) => break,
                    Err(e) => return Err(format!("receiving from a killed agent: {e:?}").into()),
                }
            }
            times.push(killed.elapsed());
        }
        within_bound(&format!("{t}: killed mid-send"), times)
    })
}

fn killed_mid_receive(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut times = Vec::new();
        let msg = vec![3u8; 4096];
        for _ in 0..REPEATS {
            let mut agent = spawn_agent(&task(
                Role::Sink {
                    count: None,
                    in_place: false,
                },
                t,
            ))?;
            for seq in 0..100u64 {
                let mut m = msg.clone();
                payload::fill(seq, &mut m);
                agent.conn().send(&m)?;
            }
            let killed = kill(agent.pid());
            loop {
                match agent.conn().send(&msg) {
                    Ok(()) => {}
                    Err(SendError::Disconnected) => break,
                    Err(e) => return Err(format!("sending to a killed agent: {e:?}").into()),
                }
            }
            times.push(killed.elapsed());
        }
        within_bound(&format!("{t}: killed mid-receive"), times)
    })
}

fn killed_while_blocked(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut times = Vec::new();
        for _ in 0..REPEATS {
            let mut agent = spawn_agent(&task(Role::Idle, t))?;
            let pid = agent.pid();
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(75));
                kill(pid)
            });
            let got = agent.conn().recv_timeout(Duration::from_secs(30));
            let returned = Instant::now();
            let killed = killer.join().map_err(|_| "killer panicked")?;
            ensure(matches!(got, Err(RecvError::Disconnected)), || {
                format!("{:?}", got.map(|b| b.len()))
            })?;
            times.push(returned.saturating_duration_since(killed));
        }
        within_bound(&format!("{t}: killed while the parent is blocked"), times)
    })
}

fn killed_holding_half_a_frame(t: Transport) -> CaseResult {
    leak_checked(|| {
        for _ in 0..REPEATS.min(3) {
            let mut agent = spawn_agent(&task(Role::HalfFrame, t))?;
            std::thread::sleep(Duration::from_millis(100));
            // Half a frame is no frame: the receive times out, it does not
            // hang or hand out a partial message.
            let waited = agent.conn().recv_timeout(Duration::from_millis(200));
            ensure(matches!(waited, Err(RecvError::Timeout)), || {
                format!("half a frame gave {:?}", waited.map(|b| b.len()))
            })?;
            let killed = kill(agent.pid());
            let got = agent.conn().recv_timeout(Duration::from_secs(10));
            ensure(matches!(got, Err(RecvError::Corrupted(_))), || {
                format!("a frame cut by death gave {:?}", got.map(|b| b.len()))
            })?;
            ensure(killed.elapsed() < Duration::from_secs(1), || {
                format!("took {:?}", killed.elapsed())
            })?;
        }
        Ok(())
    })
}

fn hung_consumer(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut agent = spawn_agent(&task(Role::Stall, t))?;
        let chunk = vec![1u8; 64 * 1024];
        let mut full = false;
        for _ in 0..10_000 {
            match agent.conn().try_send(&chunk) {
                Ok(()) => {}
                Err(SendError::Full) => {
                    full = true;
                    break;
                }
                Err(e) => return Err(format!("try_send to a hung consumer: {e:?}").into()),
            }
        }
        ensure(full, || "try_send never reported Full".into())?;
        let start = Instant::now();
        let timed = agent
            .conn()
            .send_timeout(&chunk, Duration::from_millis(100));
        ensure(matches!(timed, Err(SendError::Timeout)), || {
            format!("{timed:?}")
        })?;
        ensure(start.elapsed() < Duration::from_secs(5), || {
            "send_timeout overran".into()
        })?;
        kill(agent.pid());
        Ok(())
    })
}

fn clean_close_mid_stream(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut agent = spawn_agent(&task(Role::Burst { count: 1000 }, t))?;
        for seq in 0..1000 {
            payload::verify(seq, &agent.conn().recv()?)?;
        }
        let got = agent.conn().recv_timeout(Duration::from_secs(10));
        ensure(matches!(got, Err(RecvError::Disconnected)), || {
            format!("after a clean close: {:?}", got.map(|b| b.len()))
        })
    })
}

fn stale_resources_are_reclaimed(t: Transport) -> CaseResult {
    leak_checked(|| {
        let variant = Variant::of(t);
        let name = unique_name();
        let address: Address = match t {
            Transport::Shm => format!("shm:{name}"),
            _ => format!(
                "uds:{}",
                std::env::temp_dir().join(format!("{name}.sock")).display()
            ),
        }
        .parse()?;
        for cycle in 0..STALE_CYCLES {
            let mut child = agent_command(&task(
                Role::OwnAndWait {
                    address: address.to_string(),
                },
                t,
            ))?
            .stdout(Stdio::piped())
            .spawn()?;
            let mut line = String::new();
            BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
            ensure(line.trim() == "ready", || {
                format!("cycle {cycle}: owner said {line:?}")
            })?;
            child.kill()?;
            child.wait()?;
            // The killed owner left its files; a new bind must take them over.
            let listener = AnyListener::bind(&variant, &address)
                .map_err(|e| format!("cycle {cycle}: bind after a SIGKILLed owner: {e}"))?;
            drop(listener);
        }
        Ok(())
    })
}

fn short_soak() -> CaseResult {
    leak_checked(|| {
        let report = harness::scenarios::soak::soak(&Transport::ALL, 2, Duration::from_secs(3))?;
        println!(
            "    {} round trips, {} bytes, {} errors, RSS {} -> {} KiB, fds {} -> {}",
            report.messages,
            report.bytes,
            report.errors,
            report.rss_start_kib,
            report.rss_end_kib,
            report.fds_start,
            report.fds_end
        );
        ensure(report.passed && report.messages > 0, || {
            format!("{report:?}")
        })
    })
}

fn short_backpressure(t: Transport) -> CaseResult {
    leak_checked(|| {
        let report = harness::scenarios::soak::backpressure(
            t,
            Duration::from_secs(2),
            Duration::from_millis(1),
        )?;
        println!(
            "    {t}: {} committed, {} timed out, {} delivered, RSS {} -> peak {} KiB",
            report.committed,
            report.timed_out,
            report.delivered,
            report.rss_start_kib,
            report.rss_peak_kib
        );
        ensure(report.passed, || format!("{report:?}"))
    })
}

/// The async API under the same faults: an async connection of any
/// transport to a spawned agent.
mod asynchronous {
    use super::*;
    use ipc_core::{
        ADDRESS_ENV, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, Bytes, Config, Listener,
    };

    pub enum Conn {
        Pipe(ipc_pipe::AsyncAgentConnection),
        Uds(ipc_uds::AsyncUdsConnection),
        Shm(ipc_shm::AsyncShmConnection),
        Zenoh(ipc_zenoh::AsyncZenohConnection),
    }

    impl Conn {
        pub async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
            match self {
                Conn::Pipe(c) => c.send(frame).await,
                Conn::Uds(c) => c.send(frame).await,
                Conn::Shm(c) => c.send(frame).await,
                Conn::Zenoh(c) => c.send(frame).await,
            }
        }

        pub async fn recv(&mut self) -> Result<Bytes, RecvError> {
            match self {
                Conn::Pipe(c) => c.recv().await,
                Conn::Uds(c) => c.recv().await,
                Conn::Shm(c) => c.recv().await,
                Conn::Zenoh(c) => c.recv().await,
            }
        }

        pub async fn recv_timeout(&mut self, t: Duration) -> Result<Bytes, RecvError> {
            match self {
                Conn::Pipe(c) => c.recv_timeout(t).await,
                Conn::Uds(c) => c.recv_timeout(t).await,
                Conn::Shm(c) => c.recv_timeout(t).await,
                Conn::Zenoh(c) => c.recv_timeout(t).await,
            }
        }

        pub async fn send_timeout(&mut self, frame: &[u8], t: Duration) -> Result<(), SendError> {
            match self {
                Conn::Pipe(c) => c.send_timeout(frame, t).await,
                Conn::Uds(c) => c.send_timeout(frame, t).await,
                Conn::Shm(c) => c.send_timeout(frame, t).await,
                Conn::Zenoh(c) => c.send_timeout(frame, t).await,
            }
        }
    }

    /// An agent process, killed and reaped on drop.
    pub struct Agent {
        pub conn: Conn,
        pub pid: u32,
        reap: Box<dyn FnMut()>,
    }

    impl Drop for Agent {
        fn drop(&mut self) {
            kill(self.pid);
            (self.reap)();
        }
    }

    pub async fn spawn(role: Role, t: Transport) -> Result<Agent, Failed> {
        let config: Config = Variant::of(t).config();
        let mut cmd = agent_command(&task(role, t))?;
        Ok(match t {
            Transport::Pipe => {
                let (conn, mut child) = ipc_pipe::spawn_async(cmd, &config).await?.into_parts();
                let pid = child.id().ok_or("agent already gone")?;
                Agent {
                    conn: Conn::Pipe(conn),
                    pid,
                    reap: Box::new(move || {
                        let _ = child.start_kill();
                        let deadline = Instant::now() + Duration::from_secs(5);
                        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }),
                }
            }
            Transport::Uds => {
                let path = std::env::temp_dir().join(format!("{}.sock", unique_name()));
                let mut listener = ipc_uds::AsyncUdsListener::bind(&path, &config)?;
                let mut child = cmd
                    .env(ADDRESS_ENV, listener.address().to_string())
                    .spawn()?;
                let conn =
                    tokio::time::timeout(Duration::from_secs(30), listener.accept()).await??;
                Agent {
                    conn: Conn::Uds(conn),
                    pid: child.id(),
                    reap: Box::new(move || {
                        let _ = child.kill();
                        let _ = child.wait();
                    }),
                }
            }
            Transport::Shm => {
                let mut listener = ipc_shm::ShmListener::bind(&unique_name(), &config)?;
                let mut child = cmd
                    .env(ADDRESS_ENV, listener.address().to_string())
                    .spawn()?;
                let conn = listener.accept_timeout(Duration::from_secs(30))?;
                Agent {
                    conn: Conn::Shm(ipc_shm::AsyncShmConnection::new(conn)?),
                    pid: child.id(),
                    reap: Box::new(move || {
                        let _ = child.kill();
                        let _ = child.wait();
                    }),
                }
            }
            Transport::Zenoh => {
                let address: Address =
                    harness::transport::address_for(t, &unique_name())?.parse()?;
                let mut listener = ipc_zenoh::AsyncZenohListener::bind(&address, &config)?;
                let mut child = cmd
                    .env(ADDRESS_ENV, listener.address().to_string())
                    .spawn()?;
                let conn =
                    tokio::time::timeout(Duration::from_secs(30), listener.accept()).await??;
                Agent {
                    conn: Conn::Zenoh(conn),
                    pid: child.id(),
                    reap: Box::new(move || {
                        let _ = child.kill();
                        let _ = child.wait();
                    }),
                }
            }
        })
    }

    fn block_on(case: impl std::future::Future<Output = CaseResult>) -> CaseResult {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(case)
    }

    pub fn killed_mid_send(t: Transport) -> CaseResult {
        leak_checked(|| {
            block_on(async {
                let mut times = Vec::new();
                for _ in 0..REPEATS {
                    let mut agent = spawn(
                        Role::Source {
                            count: u64::MAX,
                            size: 256,
                        },
                        t,
                    )
                    .await?;
                    agent.conn.send(b"go").await?;
                    for seq in 0..100 {
                        payload::verify(seq, &agent.conn.recv().await?)?;
                    }
                    let killed = kill(agent.pid);
                    loop {
                        match agent.conn.recv().await {
                            Ok(_) => {}
                            Err(e) if is_disconnect(&e) => break,
                            Err(e) => {
                                return Err(
                                    format!("async receive from a killed agent: {e:?}").into()
                                );
                            }
                        }
                    }
                    times.push(killed.elapsed());
                }
                within_bound(&format!("{t}: async, killed mid-send"), times)
            })
        })
    }

    pub fn killed_mid_receive(t: Transport) -> CaseResult {
        leak_checked(|| {
            block_on(async {
                let mut times = Vec::new();
                let msg = vec![3u8; 4096];
                for _ in 0..REPEATS {
                    let mut agent = spawn(
                        Role::Sink {
                            count: None,
                            in_place: false,
                        },
                        t,
                    )
                    .await?;
                    for seq in 0..100u64 {
                        let mut m = msg.clone();
                        payload::fill(seq, &mut m);
                        agent.conn.send(&m).await?;
                    }
                    let killed = kill(agent.pid);
                    loop {
                        match agent.conn.send(&msg).await {
                            Ok(()) => {}
                            Err(SendError::Disconnected) => break,
                            Err(e) => {
                                return Err(format!("async send to a killed agent: {e:?}").into());
                            }
                        }
                    }
                    times.push(killed.elapsed());
                }
                within_bound(&format!("{t}: async, killed mid-receive"), times)
            })
        })
    }

    pub fn killed_while_awaiting(t: Transport) -> CaseResult {
        leak_checked(|| {
            block_on(async {
                let mut times = Vec::new();
                for _ in 0..REPEATS {
                    let mut agent = spawn(Role::Idle, t).await?;
                    let pid = agent.pid;
                    let killer = std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(75));
                        kill(pid)
                    });
                    let got = agent.conn.recv().await;
                    let returned = Instant::now();
                    let killed = killer.join().map_err(|_| "killer panicked")?;
                    ensure(matches!(got, Err(RecvError::Disconnected)), || {
                        format!("{:?}", got.map(|b| b.len()))
                    })?;
                    times.push(returned.saturating_duration_since(killed));
                }
                within_bound(&format!("{t}: async, killed while awaited"), times)
            })
        })
    }

    /// The async twin of [`super::silent_half_closed_peer`].
    pub fn silent_half_closed_peer(t: Transport) -> CaseResult {
        leak_checked(|| {
            block_on(async {
                let mut agent = spawn(Role::ShutRead, t).await?;
                let big = vec![3u8; 4 << 20];
                let sent = agent
                    .conn
                    .send_timeout(&big, Duration::from_millis(100))
                    .await;
                ensure(sent.is_ok(), || format!("a started frame: {sent:?}"))?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let before = thread_cpu();
                let start = Instant::now();
                let got = agent.conn.recv_timeout(HALF_CLOSED_WAIT).await;
                super::check_half_closed_wait(t, got.map(|b| b.len()), start, before)
            })
        })
    }

    pub fn hung_consumer_and_clean_close(t: Transport) -> CaseResult {
        leak_checked(|| {
            block_on(async {
                let mut agent = spawn(Role::Stall, t).await?;
                let chunk = vec![1u8; 64 * 1024];
                let mut timed_out = false;
                for _ in 0..10_000 {
                    match agent
                        .conn
                        .send_timeout(&chunk, Duration::from_millis(50))
                        .await
                    {
                        Ok(()) => {}
                        Err(SendError::Timeout) => {
                            timed_out = true;
                            break;
                        }
                        Err(e) => {
                            return Err(format!("async send to a hung consumer: {e:?}").into());
                        }
                    }
                }
                ensure(timed_out, || "async send_timeout never timed out".into())?;
                drop(agent);
                let mut agent = spawn(Role::Burst { count: 1000 }, t).await?;
                for seq in 0..1000 {
                    payload::verify(seq, &agent.conn.recv().await?)?;
                }
                let got = agent.conn.recv().await;
                ensure(matches!(got, Err(RecvError::Disconnected)), || {
                    format!("{:?}", got.map(|b| b.len()))
                })
            })
        })
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// How long the half-closed cases wait for a frame that never comes.
const HALF_CLOSED_WAIT: Duration = Duration::from_secs(1);

/// A receive under a silent half-closed peer ended in time, as a
/// timeout, without burning CPU.
fn check_half_closed_wait(
    t: Transport,
    got: Result<usize, RecvError>,
    start: Instant,
    cpu_before: Duration,
) -> CaseResult {
    let took = start.elapsed();
    let cpu = thread_cpu() - cpu_before;
    println!("    {t}: waited {took:?}, used {cpu:?} of CPU");
    ensure(matches!(got, Err(RecvError::Timeout)), || {
        format!("{t}: a silent peer gave {got:?}")
    })?;
    ensure(took < HALF_CLOSED_WAIT + Duration::from_secs(2), || {
        format!("{t}: a {HALF_CLOSED_WAIT:?} receive returned after {took:?}")
    })?;
    ensure(cpu < HALF_CLOSED_WAIT / 4, || {
        format!("{t}: waiting {took:?} used {cpu:?} of CPU (a busy loop)")
    })
}

/// A send ran out of time after its frame started (the tail is held
/// back), then the peer stopped reading for good but stayed alive: the
/// next receive still honours its deadline and sleeps while it waits.
fn silent_half_closed_peer(t: Transport) -> CaseResult {
    leak_checked(|| {
        let mut agent = spawn_agent(&task(Role::ShutRead, t))?;
        let big = vec![3u8; 4 << 20];
        let sent = agent.conn().send_timeout(&big, Duration::from_millis(100));
        ensure(sent.is_ok(), || format!("a started frame: {sent:?}"))?;
        std::thread::sleep(Duration::from_millis(500));
        let before = thread_cpu();
        let start = Instant::now();
        let got = agent.conn().recv_timeout(HALF_CLOSED_WAIT);
        check_half_closed_wait(t, got.map(|b| b.len()), start, before)?;
        kill(agent.pid());
        Ok(())
    })
}

fn kill(pid: u32) -> Instant {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    Instant::now()
}

/// The second user's name.
const OTHER_USER: &str = "ipc-test-other";

/// The uid and gid of a second, unprivileged user, created if missing
/// (then `true`: the caller removes it again).
fn other_user() -> Result<(u32, u32, bool), String> {
    const NAME: &str = OTHER_USER;
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, NAME]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    let created = id("-u").is_none();
    if created {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                NAME,
            ])
            .status()
            .map_err(|e| format!("useradd: {e}"))?;
        if !status.success() {
            return Err(format!("useradd failed: {status}"));
        }
    }
    Ok((
        id("-u").ok_or("no uid")?,
        id("-g").ok_or("no gid")?,
        created,
    ))
}

fn another_user_cannot_connect(t: Transport) -> CaseResult {
    if !rustix::process::geteuid().is_root() {
        println!("    skipped: creating a second user needs root");
        return Ok(());
    }
    let (uid, gid, created) = match other_user() {
        Ok(ids) => ids,
        Err(e) => {
            println!("    skipped: {e}");
            return Ok(());
        }
    };
    let outcome = leak_checked(|| {
        let listener = AnyListener::bind_unique(&Variant::of(t))?;
        let status = std::os::unix::process::CommandExt::gid(
            std::os::unix::process::CommandExt::uid(
                &mut agent_command(&task(
                    Role::ConnectAs {
                        address: listener.address().to_string(),
                    },
                    t,
                ))?,
                uid,
            ),
            gid,
        )
        .status()?;
        match status.code() {
            Some(0) => Ok(()),
            Some(2) => Err(format!("{t}: another user connected to {}", listener.address()).into()),
            // 126/127: the binary itself is not reachable by that user.
            Some(126 | 127) | None => {
                println!(
                    "    skipped: the test binary is not executable by another user ({status})"
                );
                Ok(())
            }
            _ => Err(format!("{t}: the other user's attempt failed oddly ({status})").into()),
        }
    });
    if created {
        let _ = Command::new("userdel").arg(OTHER_USER).status();
    }
    outcome
}

/// Another user squats the address an agent is told to connect to (a
/// listener of theirs, bound first): the agent's connect refuses it,
/// before sending anything, though root could open the 0600 endpoint.
fn squatted_endpoint_is_refused(t: Transport) -> CaseResult {
    if !rustix::process::geteuid().is_root() {
        println!("    skipped: creating a second user needs root");
        return Ok(());
    }
    let (uid, gid, created) = match other_user() {
        Ok(ids) => ids,
        Err(e) => {
            println!("    skipped: {e}");
            return Ok(());
        }
    };
    let outcome = leak_checked(|| {
        let name = unique_name();
        let address: Address = match t {
            Transport::Uds => format!(
                "uds:{}",
                std::env::temp_dir().join(format!("{name}.sock")).display()
            ),
            _ => format!("shm:{name}"),
        }
        .parse()?;
        let mut cmd = agent_command(&task(
            Role::OwnAndWait {
                address: address.to_string(),
            },
            t,
        ))?;
        std::os::unix::process::CommandExt::uid(&mut cmd, uid);
        std::os::unix::process::CommandExt::gid(&mut cmd, gid);
        let mut squatter = cmd.stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        if let Some(out) = squatter.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let result = if line.trim() != "ready" {
            let status = squatter.wait()?;
            println!("    skipped: the other user's listener did not start ({status})");
            Ok(())
        } else {
            let got = harness::transport::connect(&Variant::of(t), &address);
            match got {
                Err(ipc_core::ConnectError::PermissionDenied(why))
                    if why.contains(&format!("uid {uid}")) =>
                {
                    Ok(())
                }
                other => Err(format!(
                    "{t}: connecting to another user's endpoint gave {:?}",
                    other.map(|_| "a connection")
                )
                .into()),
            }
        };
        let _ = squatter.kill();
        let _ = squatter.wait();
        // The killed squatter's files.
        match &address {
            Address::Uds(path) => {
                let _ = std::fs::remove_file(path);
                let mut lock = path.as_os_str().to_owned();
                lock.push(".lock");
                let _ = std::fs::remove_file(lock);
            }
            _ => {
                // The rendezvous socket and its lock file.
                let _ = std::fs::remove_file(format!("/dev/shm/ipc-{name}"));
                let _ = std::fs::remove_file(format!("/dev/shm/ipc-{name}.lock"));
            }
        }
        result
    });
    if created {
        let _ = Command::new("userdel").arg(OTHER_USER).status();
    }
    outcome
}

/// One zenoh connection made and closed, so that zenoh's runtimes exist
/// before the first leak check counts descriptors.
fn warm_up_zenoh() {
    use ipc_core::{Connector, Listener};
    let config = ipc_core::Config::default();
    let Ok(mut listener) =
        ipc_zenoh::ZenohListener::bind(&"zenoh:warm-up".parse().expect("valid"), &config)
    else {
        return;
    };
    let address = listener.address().clone();
    let agent = std::thread::spawn(move || {
        ipc_zenoh::Zenoh.connect(&address, &ipc_core::Config::default())
    });
    let hub_side = listener.accept_timeout(Duration::from_secs(10));
    drop(agent.join());
    drop(hub_side);
}

fn main() {
    harness::agent_main_if_requested();
    type Case = (
        &'static str,
        fn(Transport) -> CaseResult,
        &'static [Transport],
    );
    const ALL: &[Transport] = &Transport::ALL;
    const LOCAL: &[Transport] = &[Transport::Pipe, Transport::Uds, Transport::Shm];
    const ADDRESSED: &[Transport] = &[Transport::Uds, Transport::Shm];
    const STREAMS: &[Transport] = &[Transport::Pipe, Transport::Uds];
    let cases: [Case; 12] = [
        (
            "squatted_endpoint_is_refused",
            squatted_endpoint_is_refused,
            ADDRESSED,
        ),
        ("killed_before_connect", killed_before_connect, ALL),
        ("killed_mid_send", killed_mid_send, ALL),
        ("killed_mid_receive", killed_mid_receive, ALL),
        ("killed_while_blocked", killed_while_blocked, ALL),
        // Zenoh hands over whole messages or none (ipc-zenoh's own
        // `killed_mid_stream` checks a stream cut by death).
        (
            "killed_holding_half_a_frame",
            killed_holding_half_a_frame,
            LOCAL,
        ),
        ("hung_consumer", hung_consumer, ALL),
        ("clean_close_mid_stream", clean_close_mid_stream, ALL),
        (
            "stale_resources_are_reclaimed",
            stale_resources_are_reclaimed,
            ADDRESSED,
        ),
        (
            "another_user_cannot_connect",
            another_user_cannot_connect,
            ADDRESSED,
        ),
        ("short_backpressure", short_backpressure, ALL),
        ("silent_half_closed_peer", silent_half_closed_peer, STREAMS),
    ];
    let mut trials = vec![Trial::test("short_soak", short_soak)];
    type AsyncCase = (&'static str, fn(Transport) -> CaseResult);
    let async_cases: [AsyncCase; 4] = [
        ("async_killed_mid_send", asynchronous::killed_mid_send),
        ("async_killed_mid_receive", asynchronous::killed_mid_receive),
        (
            "async_killed_while_awaiting",
            asynchronous::killed_while_awaiting,
        ),
        (
            "async_hung_consumer_and_clean_close",
            asynchronous::hung_consumer_and_clean_close,
        ),
    ];
    for (name, case) in async_cases {
        for t in Transport::ALL {
            trials.push(Trial::test(format!("{t}::{name}"), move || case(t)));
        }
    }
    for t in [Transport::Pipe, Transport::Uds] {
        trials.push(Trial::test(
            format!("{t}::async_silent_half_closed_peer"),
            move || asynchronous::silent_half_closed_peer(t),
        ));
    }
    for (name, case, transports) in cases {
        for &t in transports {
            trials.push(Trial::test(format!("{t}::{name}"), move || case(t)));
        }
    }
    // Zenoh starts its runtimes (threads, epoll descriptors) once per
    // process and keeps them: start them now, for the same reason.
    warm_up_zenoh();
    // tokio's process support opens its SIGCHLD pipe once per process and
    // keeps it: open it now, so the first async case is not charged for it.
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        let _ = rt.block_on(async { tokio::process::Command::new("true").status().await });
    }
    // Leak checks count this process's descriptors and children: one case
    // at a time.
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit();
}
