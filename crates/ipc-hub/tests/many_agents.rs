//! A thousand agents on one hub, across real processes: over Unix sockets
//! and over shared memory, every one answers a `call_each` within its
//! deadline, and the hub's thread count does not grow with its agents
//! (shared memory costs no thread per connection).
//!
//! `harness = false`: this binary re-runs itself as the agents
//! (`ROLE_ENV`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_core::{ADDRESS_ENV, Address, AsyncConnector, Config};
use ipc_hub::{Agent, Hub, HubConfig};
use libtest_mimic::{Arguments, Failed, Trial};

const ROLE_ENV: &str = "IPC_HUB_MANY_ROLE";
const MANY: usize = 1000;
const FEW: usize = 10;
/// Joining a thousand processes on two CPUs takes seconds, not this.
const JOIN_LIMIT: Duration = Duration::from_secs(120);
const CALL_LIMIT: Duration = Duration::from_secs(30);

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

/// The agents' config: patient connects (a thousand arrive at once).
fn config() -> Config {
    Config::default().with_connect_timeout(Some(JOIN_LIMIT))
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Agent processes; killed and reaped when dropped, if still running.
struct Agents(Vec<Child>);

impl Agents {
    fn spawn(address: &Address, n: usize, into: &mut Agents) -> Result<(), Failed> {
        for _ in 0..n {
            let child = Command::new(std::env::current_exe()?)
                .env(ROLE_ENV, "agent")
                .env(ADDRESS_ENV, address.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?;
            into.0.push(child);
        }
        Ok(())
    }

    /// Waits for every agent to exit on its own (they leave when the hub
    /// says goodbye); true if all did within `limit`.
    fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        self.0.retain_mut(|child| {
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
                if Instant::now() >= deadline {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        self.0.is_empty()
    }
}

impl Drop for Agents {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A hub listening on `address` takes `MANY` agents (`FEW` first, to
/// count its threads), calls each of them once, and shuts down.
async fn many_agents(address: Address) -> Result<(), Failed> {
    let mut hub = Hub::new(HubConfig::default())?;
    let _bound = match &address {
        Address::Uds(path) => hub.listen(ipc_uds::AsyncUdsListener::bind_path(path, &config())?)?,
        Address::Shm(_) => hub.listen(ipc_shm::AsyncShmListener::bind(&address, &config())?)?,
        other => return Err(format!("no listener for {other}").into()),
    };
    let mut agents = Agents(Vec::new());
    Agents::spawn(&address, FEW, &mut agents)?;
    let mut peers = hub.wait_for_peers(FEW, JOIN_LIMIT).await?;
    // A call to each wakes every connection's tasks at least once.
    let warm: Vec<Result<u64, _>> = hub.call_each(&peers, &1u64, CALL_LIMIT).await;
    ensure(
        warm.iter().all(|a| a.as_ref().is_ok_and(|n| *n == 2)),
        || format!("{FEW} agents: {warm:?}"),
    )?;
    let threads_few = threads();
    let started = Instant::now();
    Agents::spawn(&address, MANY - FEW, &mut agents)?;
    peers.extend(hub.wait_for_peers(MANY - FEW, JOIN_LIMIT).await?);
    let joined_in = started.elapsed();
    let started = Instant::now();
    let answers: Vec<Result<u64, _>> = hub.call_each(&peers, &41u64, CALL_LIMIT).await;
    let answered_in = started.elapsed();
    let wrong: Vec<_> = answers
        .iter()
        .enumerate()
        .filter(|(_, a)| !a.as_ref().is_ok_and(|n| *n == 42))
        .take(5)
        .collect();
    ensure(wrong.is_empty(), || {
        format!(
            "{address}: {} of {MANY} did not answer, e.g. {wrong:?}",
            wrong.len()
        )
    })?;
    let threads_many = threads();
    eprintln!(
        "{address}: {MANY} agents joined in {joined_in:?}, call_each answered in \
         {answered_in:?}; hub threads {threads_few} with {FEW} agents, {threads_many} with {MANY}"
    );
    ensure(threads_many <= threads_few, || {
        format!("hub threads grew from {threads_few} ({FEW} agents) to {threads_many} ({MANY})")
    })?;
    hub.shutdown(Duration::from_secs(10)).await;
    ensure(agents.exited_within(Duration::from_secs(30)), || {
        format!(
            "{} agents still running after the hub's goodbye",
            agents.0.len()
        )
    })
}

fn run(address: Address) -> Result<(), Failed> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(many_agents(address))
}

fn over_uds() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    run(Address::Uds(dir.path().join("hub.sock")))
}

fn over_shm() -> Result<(), Failed> {
    run(Address::Shm(format!("hub-many-{}", std::process::id())))
}

/// An agent: joins and answers `n` with `n + 1` until the hub leaves.
fn agent_main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (config, hub) = (config(), HubConfig::default());
        let agent = match Address::from_env()? {
            shm @ Address::Shm(_) => {
                Agent::join(ipc_shm::AsyncShm.connect(&shm, &config).await?, "n", hub).await?
            }
            uds => Agent::join(ipc_uds::AsyncUds.connect(&uds, &config).await?, "n", hub).await?,
        };
        agent
            .serve(|n: u64| async move { Ok::<_, String>(n + 1) })
            .await;
        Ok(())
    })
}

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        if let Err(e) = agent_main() {
            eprintln!("agent {}: {e}", std::process::id());
            std::process::exit(1);
        }
        return;
    }
    let tests = vec![
        Trial::test("a_thousand_agents_over_uds_answer_call_each", over_uds),
        Trial::test(
            "a_thousand_agents_over_shm_answer_call_each_with_flat_threads",
            over_shm,
        ),
    ];
    libtest_mimic::run(&Arguments::from_args(), tests).exit();
}
