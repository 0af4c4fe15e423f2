//! Supervision across real processes, over pipes, a Unix socket and shared
//! memory: a crashed agent is restarted (and told of), one that said
//! goodbye is not; a crash loop is given up beyond its intensity; no
//! process the hub started is left running or unreaped after
//! `stop_agent` or `shutdown`.
//!
//! `harness = false`: this binary re-runs itself as the agents (the role
//! in `ROLE_ENV`).

use std::process::Command;
use std::time::Duration;

use ipc_core::{Address, AsyncConnector, Config};
use ipc_hub::{Agent, AgentEvent, AgentNotice, AgentSpec, Hub, HubConfig, HubEvent, Restart};
use libtest_mimic::{Arguments, Failed, Trial};

const ROLE_ENV: &str = "IPC_HUB_SUPERVISE_ROLE";
const NAME_ENV: &str = "IPC_HUB_SUPERVISE_NAME";
const LONG: Duration = Duration::from_secs(20);

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Pipe,
    Uds,
    Shm,
}

/// A hub listening as `via` needs, and how to make specs for it.
struct Setup {
    hub: Hub,
    address: Option<Address>,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(via: Via) -> Result<Setup, Failed> {
        let hub = Hub::new(HubConfig::default())?;
        let dir = tempfile::tempdir()?;
        let address = match via {
            Via::Pipe => None,
            Via::Uds => {
                let path = dir.path().join("hub.sock");
                hub.listen(ipc_uds::AsyncUdsListener::bind_path(
                    &path,
                    &Config::default(),
                )?)?;
                Some(Address::Uds(path))
            }
            Via::Shm => {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let name = format!("supervise-{}-{n}", std::process::id());
                hub.listen(ipc_shm::AsyncShmListener::bind_name(
                    &name,
                    &Config::default(),
                )?)?;
                Some(Address::Shm(name))
            }
        };
        Ok(Setup {
            hub,
            address,
            _dir: dir,
        })
    }

    fn spec(&self, name: &str, role: &str) -> Result<AgentSpec, Failed> {
        let mut command = Command::new(std::env::current_exe()?);
        command.env(ROLE_ENV, role).env(NAME_ENV, name);
        Ok(match &self.address {
            None => AgentSpec::pipe(name, command),
            Some(address) => AgentSpec::connecting(name, command, address.clone()),
        }
        .with_backoff(Duration::from_millis(20)))
    }

    /// The next supervision notice (skipping joins and leaves).
    async fn next_exit(&mut self) -> Result<AgentNotice, Failed> {
        loop {
            if let HubEvent::Agent(notice) = tokio::time::timeout(LONG, self.hub.next()).await? {
                return Ok(notice);
            }
        }
    }
}

/// True once the process is gone and reaped (no /proc entry, not even a
/// zombie's), waiting up to `LONG`.
async fn reaped(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + LONG;
    while tokio::time::Instant::now() < deadline {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- the tests ----

fn restarts_a_crash_not_a_goodbye(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via)?;
        s.hub.supervise(s.spec("worker", "worker")?)?;
        let first = s.hub.wait_for_agent("worker", LONG).await?;
        let n: u64 = s.hub.call(first.id, &5u64, LONG).await?;
        ensure(n == 6, || format!("{n}"))?;
        // Asked to crash (exit 3): told, and restarted.
        let _ = s.hub.call::<_, u64>(first.id, &0u64, LONG).await;
        match s.next_exit().await? {
            AgentNotice::Exited {
                name,
                pid,
                status,
                restart: Some(_),
            } if name == "worker" && Some(pid) == first.credentials.pid => {
                ensure(status.code() == Some(3), || format!("{status}"))?;
            }
            other => return Err(format!("after the crash: {other:?}").into()),
        }
        let second = s.hub.wait_for_agent("worker", LONG).await?;
        ensure(second.credentials.pid != first.credentials.pid, || {
            "the same process after a restart".into()
        })?;
        ensure(reaped(first.credentials.pid.unwrap_or(0)).await, || {
            "the crashed process was not reaped".into()
        })?;
        let n: u64 = s.hub.call(second.id, &7u64, LONG).await?;
        ensure(n == 8, || format!("{n}"))?;
        // Asked to leave: it says goodbye and exits 0; not restarted.
        let _ = s.hub.call::<_, u64>(second.id, &1u64, LONG).await;
        match s.next_exit().await? {
            AgentNotice::Exited {
                status,
                restart: None,
                ..
            } if status.success() => {}
            other => return Err(format!("after the goodbye: {other:?}").into()),
        }
        let again = s
            .hub
            .wait_for_agent("worker", Duration::from_millis(500))
            .await;
        ensure(again.is_err(), || {
            format!("restarted after a goodbye: {again:?}")
        })?;
        ensure(reaped(second.credentials.pid.unwrap_or(0)).await, || {
            "the process that left was not reaped".into()
        })
    })
}

fn gives_up_beyond_its_intensity(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let mut s = Setup::new(via)?;
        let spec = s
            .spec("looper", "crash-at-start")?
            .with_restart(Restart::Always)
            .with_intensity(2, Duration::from_secs(60));
        s.hub.supervise(spec)?;
        let mut restarts = 0;
        loop {
            match s.next_exit().await? {
                AgentNotice::Exited {
                    restart: Some(_), ..
                } => restarts += 1,
                AgentNotice::Exited { restart: None, .. } => {}
                AgentNotice::GaveUp {
                    name,
                    restarts: told,
                } => {
                    ensure(name == "looper" && told == 2 && restarts == 2, || {
                        format!("gave up after {restarts} restarts, told {told}")
                    })?;
                    return Ok(());
                }
                other => return Err(format!("{other:?}").into()),
            }
        }
    })
}

fn leaves_no_process_behind(via: Via) -> Result<(), Failed> {
    runtime().block_on(async {
        let s = Setup::new(via)?;
        for (name, role) in [("a", "worker"), ("b", "worker"), ("c", "stubborn")] {
            s.hub.supervise(s.spec(name, role)?)?;
        }
        let mut pids = Vec::new();
        for name in ["a", "b", "c"] {
            let peer = s.hub.wait_for_agent(name, LONG).await?;
            pids.push(peer.credentials.pid.ok_or("no pid")?);
        }
        let taken = s.hub.supervise(s.spec("a", "worker")?);
        ensure(taken.is_err(), || "a second agent named `a`".into())?;
        ensure(s.hub.stop_agent("a").await, || {
            "`a` was not supervised".into()
        })?;
        ensure(reaped(pids[0]).await, || "`a` left behind".into())?;
        ensure(!s.hub.stop_agent("a").await, || "`a` stopped twice".into())?;
        // `b` closes when told; `c` ignores the goodbye and is killed.
        let closed = s.hub.shutdown(LONG).await;
        ensure(closed.closed >= 1, || format!("{} closed", closed.closed))?;
        for (name, pid) in ["b", "c"].iter().zip(&pids[1..]) {
            ensure(reaped(*pid).await, || {
                format!("`{name}` left behind after shutdown")
            })?;
        }
        Ok(())
    })
}

// ---- the agents ----

/// Joins as `$NAME`; answers `n` with `n + 1`; on 0 exits 3, on 1 says
/// goodbye and exits 0; closes on the hub's goodbye. `stubborn` ignores
/// the goodbye.
fn worker(stubborn: bool) -> Result<(), Box<dyn std::error::Error>> {
    runtime().block_on(async {
        let name = std::env::var(NAME_ENV)?;
        let config = Config::default();
        let mut agent = match Address::from_env()? {
            Address::Stdio => {
                Agent::join(
                    ipc_pipe::connect_stdio_async(&config)?,
                    &name,
                    HubConfig::default(),
                )
                .await?
            }
            Address::Uds(path) => {
                let conn = ipc_uds::AsyncUds
                    .connect(&Address::Uds(path), &config)
                    .await?;
                Agent::join(conn, &name, HubConfig::default()).await?
            }
            address => {
                let conn = ipc_shm::AsyncShm.connect(&address, &config).await?;
                Agent::join(conn, &name, HubConfig::default()).await?
            }
        };
        while let Some(event) = agent.next().await {
            match event {
                AgentEvent::Call(request) => match request.decode::<u64>()? {
                    0 => std::process::exit(3),
                    1 => {
                        drop(request);
                        agent.close("done", LONG).await;
                        return Ok(());
                    }
                    n => request.reply(&(n + 1)).await?,
                },
                AgentEvent::Shutdown(_) if !stubborn => break,
                _ => {}
            }
        }
        if stubborn {
            std::thread::sleep(Duration::from_secs(3600));
        }
        agent.close("done", LONG).await;
        Ok(())
    })
}

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("crash-at-start") => std::process::exit(3),
        Ok(role @ ("worker" | "stubborn")) => {
            if let Err(e) = worker(role == "stubborn") {
                eprintln!("agent: {e}");
                std::process::exit(1);
            }
            return;
        }
        _ => {}
    }
    let mut tests = Vec::new();
    for via in [Via::Pipe, Via::Uds, Via::Shm] {
        let name = |test: &str| format!("{test}::{}", format!("{via:?}").to_lowercase());
        tests.push(Trial::test(
            name("restarts_a_crash_not_a_goodbye"),
            move || restarts_a_crash_not_a_goodbye(via),
        ));
        tests.push(Trial::test(
            name("gives_up_beyond_its_intensity"),
            move || gives_up_beyond_its_intensity(via),
        ));
        tests.push(Trial::test(name("leaves_no_process_behind"), move || {
            leaves_no_process_behind(via)
        }));
    }
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}
