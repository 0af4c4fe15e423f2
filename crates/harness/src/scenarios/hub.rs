//! The path a runtime takes: each transport's round trip through its
//! async API (on a current-thread and on a multi-thread runtime,
//! unpinned, and pinned as the blocking one) and a typed call through
//! `ipc-hub` (unpinned, as a runtime runs, from `block_on` and from a
//! task, and pinned),
//! each measured in the same block as the transport's blocking round trip
//! and paired with it per trial.
//!
//! Both ends are what a runtime and its agents run: the parent drives the
//! async connection (or a [`Hub`]) on a tokio runtime, the agent echoes
//! with the async API (or serves the call with [`ipc_hub::Agent::serve`])
//! on a current-thread runtime of its own.

use std::time::{Duration, Instant};

use ipc_core::{
    ADDRESS_ENV, Address, AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener,
    RecvError, payload,
};
use ipc_hub::{Agent, Hub, HubConfig};
use serde::{Deserialize, Serialize};

use crate::block::{Block, bytes_label, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject};
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::echoing::Reaped;
use crate::scenarios::{Scenario, latency, part};
use crate::schema::{LatencyResult, Regime, RunResults};
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::transport::{Transport, Variant, agent_command, unique_name};

/// The hub group, at the smallest size: per transport, the blocking round
/// trip (pinned, as in the latency group: the floor) beside the async
/// round trips and the hub calls, so each pairs with it per trial.
pub(crate) struct HubCalls;

impl Scenario for HubCalls {
    fn group(&self) -> Group {
        Group::Hub
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let size = p.sizes[0];
        let samples = (p.latency_warmup, p.latency_samples_at(size));
        let pin = p.pin;
        let mut cells = Vec::new();
        for &t in &p.transports {
            let variant = Variant::of(t);
            cells.push(cell(
                format!("{} {size} B blocking (hub group)", variant.label()),
                1.0,
                move |r, trial| {
                    r.hub
                        .push(latency::back_to_back(variant, size, samples, pin, trial)?);
                    Ok(())
                },
            ));
            // The same, unpinned: what the async round trip adds where
            // both run as a runtime does (a transport whose own threads
            // cross CPUs unpinned pays that in both).
            cells.push(cell(
                format!(
                    "{} {size} B blocking, unpinned (hub group)",
                    variant.label()
                ),
                1.0,
                move |r, trial| {
                    let mut unpinned = latency::back_to_back(variant, size, samples, false, trial)?;
                    unpinned.regime = Regime::BackToBackUnpinned;
                    r.hub.push(unpinned);
                    Ok(())
                },
            ));
            let with_python = python().is_some() && t != Transport::Zenoh;
            let paths = PATHS
                .into_iter()
                .chain(with_python.then_some(Regime::HubCallPython));
            for path in paths {
                cells.push(cell(
                    format!("{} {size} B {}", variant.label(), path.name()),
                    1.0,
                    move |r, trial| {
                        r.hub.push(measure(variant, size, path, samples, trial)?);
                        Ok(())
                    },
                ));
            }
            // A large result handed to the hub over shared memory, by a
            // Rust agent and (when there is one) a Python agent.
            if t == Transport::Shm {
                let regimes = [Regime::BulkReply]
                    .into_iter()
                    .chain(python().is_some().then_some(Regime::BulkReplyPython));
                for regime in regimes {
                    let label = bytes_label(LARGE_RESULT);
                    cells.push(cell(
                        format!("{} {label} {}", variant.label(), regime.name()),
                        1.0,
                        move |r, trial| {
                            let m = measure(variant, LARGE_RESULT, regime, BULK_CALLS, trial)?;
                            r.hub.push(m);
                            Ok(())
                        },
                    ));
                }
            }
        }
        vec![Block {
            group: Group::Hub,
            cells,
        }]
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        g.latency_results(Group::Hub, &r.hub);
    }

    /// Each path over the same transport's blocking round trip, the hub
    /// call over the bare async one (pinned over pinned, unpinned over
    /// unpinned, and from `block_on` over the multi-thread runtime's),
    /// a Python agent's over a Rust
    /// agent's, and shared memory's hub call over the same call over
    /// Unix sockets.
    fn ratios(&self, ids: &[FigureId]) -> Vec<Pair> {
        let uds = Subject::Transport(Variant::of(Transport::Uds));
        let mut pairs = Vec::new();
        for &fid in ids {
            let (Group::Hub, Statistic::P50, Subject::Transport(v)) =
                (fid.group, fid.statistic, fid.subject)
            else {
                continue;
            };
            let mut unders = Vec::new();
            if fid.regime != Regime::BackToBack {
                unders.push(FigureId {
                    regime: Regime::BackToBack,
                    ..fid
                });
            }
            if fid.regime == Regime::Async {
                unders.push(FigureId {
                    regime: Regime::BackToBackUnpinned,
                    ..fid
                });
            }
            if matches!(fid.regime, Regime::HubCall | Regime::HubCallTask) {
                unders.push(FigureId {
                    regime: Regime::Async,
                    ..fid
                });
            }
            // Like with like: the call from `block_on` over the round
            // trip from `block_on` on the same kind of runtime (on a
            // current-thread one the two ends can share one CPU, which no
            // multi-thread runtime's caller does).
            if fid.regime == Regime::HubCall {
                unders.push(FigureId {
                    regime: Regime::AsyncMultiThread,
                    ..fid
                });
            }
            // Like with like: unpinned, the async round trip and the hub
            // call can land on one CPU or across both, apart.
            if fid.regime == Regime::HubCallPinned {
                unders.push(FigureId {
                    regime: Regime::AsyncPinned,
                    ..fid
                });
            }
            // What Python costs: its agent against the Rust one, same
            // call, same trial.
            let rust = match fid.regime {
                Regime::HubCallPython => Some(Regime::HubCall),
                Regime::BulkReplyPython => Some(Regime::BulkReply),
                _ => None,
            };
            if let Some(regime) = rust {
                unders.push(FigureId { regime, ..fid });
            }
            if matches!(
                fid.regime,
                Regime::HubCall | Regime::HubCallTask | Regime::HubCallPinned
            ) && v == Variant::of(Transport::Shm)
            {
                unders.push(FigureId {
                    subject: uds,
                    ..fid
                });
            }
            pairs.extend(unders.into_iter().map(|under| (fid, under, Better::Lower)));
        }
        pairs
    }

    fn agent(&self, task: serde_json::Value, t: &AgentTask) -> Result<()> {
        match part(task)? {
            Part::AsyncEcho => async_echo(&t.variant),
            Part::Echo => hub_echo(&t.variant),
            Part::Bulk { size } => hub_bulk(&t.variant, size),
        }
    }
}

/// The agent parts of the hub group (and of the scale group's agents).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Part {
    /// Send every frame back through the async API.
    AsyncEcho,
    /// Join a hub and answer every call with its request.
    Echo,
    /// Join a hub over shared memory and answer every call with `size`
    /// bytes written into a loan.
    Bulk {
        /// Bytes each answer.
        size: usize,
    },
}

impl Part {
    /// The role of an agent playing this part.
    pub(crate) fn role(&self) -> Result<Role> {
        Role::part(Group::Hub, self)
    }
}

/// The ways the hub group drives a round trip, beside the blocking one
/// ([`Regime::BackToBack`]).
pub const PATHS: [Regime; 6] = [
    Regime::Async,
    Regime::AsyncMultiThread,
    Regime::AsyncPinned,
    Regime::HubCall,
    Regime::HubCallTask,
    Regime::HubCallPinned,
];

/// The Python figures (a call answered by a Python agent, a large result
/// handed over by one) run when this names an interpreter with
/// `ipc_agent` installed: `cargo xtask bench` prepares one and sets it;
/// without it they are left out, and the summary says so.
pub const PYTHON_ENV: &str = "IPC_BENCH_PYTHON";

/// The interpreter of [`PYTHON_ENV`], if set.
pub fn python() -> Option<std::path::PathBuf> {
    std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .map(Into::into)
}

/// The size of the large result of [`Regime::BulkReply`].
pub const LARGE_RESULT: usize = 64 << 20;
/// The largest frame the bulk cells' connections carry.
const BULK_MAX: usize = 2 * LARGE_RESULT;
/// Calls per bulk cell: warm-up, then recorded (each moves 64 MiB).
pub const BULK_CALLS: (u64, u64) = (1, 5);

/// The Python agent: joins the hub in `IPC_ADDRESS` and answers each
/// [`Probe`] with itself (decoded into Python values and encoded back),
/// or, given `IPC_BENCH_BULK` bytes, each call with a result of that
/// size made once beforehand (`i % 251`).
const PYTHON_AGENT: &str = r#"
import os, ipc_agent
bulk = int(os.environ.get("IPC_BENCH_BULK", "0"))
agent = ipc_agent.Agent.join("echo-py", max_message_size=int(os.environ["IPC_BENCH_MAX"]))
if bulk:
    result = (bytes(range(251)) * (bulk // 251 + 1))[:bulk]
    agent.serve(lambda body: result, raw=True)
else:
    agent.serve(lambda probe: probe)
"#;

/// Who answers the hub's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answerer {
    Rust,
    Python,
}

impl Answerer {
    fn of(regime: Regime) -> Answerer {
        match regime {
            Regime::HubCallPython | Regime::BulkReplyPython => Answerer::Python,
            _ => Answerer::Rust,
        }
    }

    /// The agent process for `task`, told nothing yet of where to connect.
    fn command(self, task: &AgentTask, bulk: usize) -> Result<std::process::Command> {
        match self {
            Answerer::Rust => agent_command(task),
            Answerer::Python => {
                let python = python().ok_or_else(|| {
                    HarnessError::Invalid(format!("no Python agent: {PYTHON_ENV} is not set"))
                })?;
                let mut cmd = std::process::Command::new(python);
                cmd.args(["-c", PYTHON_AGENT])
                    .env("IPC_BENCH_BULK", bulk.to_string())
                    .env(
                        "IPC_BENCH_MAX",
                        BULK_MAX
                            .max(task.variant.config().max_message_size)
                            .to_string(),
                    )
                    // A pipe agent's address (uds and shm get theirs).
                    .env(ADDRESS_ENV, Address::Stdio.to_string())
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null());
                Ok(cmd)
            }
        }
    }
}

/// How long one round trip may take before the scenario fails.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// How long an agent may take to connect.
const JOIN_LIMIT: Duration = Duration::from_secs(30);

/// The typed call of the hub figures: a sequence number and a verified
/// payload, answered with itself.
#[derive(Debug, Serialize, Deserialize)]
pub struct Probe {
    pub(crate) seq: u64,
    #[serde(with = "serde_bytes")]
    pub(crate) body: Vec<u8>,
}

/// Measures `samples` round trips of `size` bytes after `warmup` over
/// `variant`, driven as `regime` (one of [`PATHS`]). The CPU of both
/// processes over the recorded window is reported per round trip.
pub fn measure(
    variant: Variant,
    size: usize,
    regime: Regime,
    (warmup, samples): (u64, u64),
    trial: u32,
) -> Result<LatencyResult> {
    let cpus = matches!(regime, Regime::HubCallPinned | Regime::AsyncPinned)
        .then(crate::pin::cpus)
        .flatten();
    // Pins this thread before the runtime starts: its workers inherit it.
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    let mut builder = match regime {
        Regime::Async | Regime::AsyncPinned => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = builder.enable_all().build()?;
    let role = match regime {
        Regime::Async | Regime::AsyncMultiThread | Regime::AsyncPinned => Part::AsyncEcho,
        Regime::BulkReply | Regime::BulkReplyPython => Part::Bulk { size },
        _ => Part::Echo,
    }
    .role()?;
    let task = AgentTask {
        cpu: cpus.map(|c| c.1),
        role,
        variant,
    };
    let run = Window {
        size,
        warmup,
        samples,
    };
    let who = Answerer::of(regime);
    let (stats, cpu_ns_per_op) = runtime.block_on(async {
        match regime {
            Regime::Async | Regime::AsyncMultiThread | Regime::AsyncPinned => {
                bounce(&task, run).await
            }
            Regime::BulkReply | Regime::BulkReplyPython => bulk(&task, run, who).await,
            _ => call(&task, run, who, regime == Regime::HubCallTask).await,
        }
    })?;
    Ok(LatencyResult {
        variant,
        trial,
        size,
        regime,
        pinned: cpus.is_some(),
        cpu_ns_per_op,
        stats,
    })
}

/// What one cell measures.
#[derive(Debug, Clone, Copy)]
struct Window {
    size: usize,
    warmup: u64,
    samples: u64,
}

/// The figures of a cell: samples after the warm-up, and the CPU of this
/// process and the agent over them.
type Measured = (crate::stats::LatencyStats, f64);

/// Records a window's round trips as they come.
struct Samples {
    window: Window,
    agent: u32,
    recorder: Recorder,
    cpu_start: u64,
}

impl Samples {
    fn new(window: Window, agent: u32) -> Self {
        let mut samples = Samples {
            window,
            agent,
            recorder: Recorder::new(),
            cpu_start: 0,
        };
        samples.cpu_start = samples.cpu();
        samples
    }

    /// The sequence numbers to run, warm-up first.
    fn seqs(&self) -> std::ops::Range<u64> {
        0..self.window.warmup + self.window.samples
    }

    fn cpu(&self) -> u64 {
        procfs::self_cpu_ns() + procfs::cpu_ns(self.agent).unwrap_or(0)
    }

    /// Round trip `seq` took `took` (recorded once the warm-up is over).
    fn took(&mut self, seq: u64, took: Duration) {
        if seq + 1 == self.window.warmup {
            // The recorded window starts now.
            self.cpu_start = self.cpu();
        }
        if seq >= self.window.warmup {
            self.recorder.record(took);
        }
    }

    fn finish(self) -> Measured {
        let per_op =
            self.cpu().saturating_sub(self.cpu_start) as f64 / self.window.samples.max(1) as f64;
        (self.recorder.summary(), per_op)
    }
}

/// A fresh address of `transport` for the parent to listen on.
fn fresh_address(transport: Transport) -> Address {
    let name = unique_name();
    match transport {
        Transport::Uds => Address::Uds(std::env::temp_dir().join(format!("{name}.sock"))),
        Transport::Shm => Address::Shm(name),
        Transport::Zenoh => Address::Zenoh {
            name,
            key: None,
            endpoints: vec!["tcp/127.0.0.1:0".into()],
        },
        Transport::Pipe => Address::Stdio,
    }
}

fn unsupported(address: &Address) -> HarnessError {
    HarnessError::Invalid(format!("the hub group has no way to serve {address}"))
}

/// Starts the agent of `task` told to connect to `address`.
fn start_agent(task: &AgentTask, address: &Address) -> Result<Reaped> {
    start(agent_command(task)?, address)
}

/// Starts `cmd` told to connect to `address`.
fn start(mut cmd: std::process::Command, address: &Address) -> Result<Reaped> {
    cmd.env(ADDRESS_ENV, address.to_string());
    Ok(Reaped(cmd.spawn()?))
}

/// Accepts the agent of `task` on `listener`, within [`JOIN_LIMIT`].
async fn accept_agent<L: AsyncListener>(
    mut listener: L,
    task: &AgentTask,
) -> Result<(L::Connection, Reaped)> {
    let child = start_agent(task, listener.address())?;
    let conn = tokio::time::timeout(JOIN_LIMIT, listener.accept())
        .await
        .map_err(|_| HarnessError::Agent("the agent did not connect within 30 s".into()))??;
    Ok((conn, child))
}

/// What a cell does on an async connection to its agent.
pub(crate) trait OnConnection {
    /// What it measured.
    type Output;

    /// Runs on `conn`, whose other end is the agent of pid `agent`.
    async fn run<C: AsyncFrameSender + AsyncFrameReceiver>(
        self,
        conn: &mut C,
        agent: u32,
    ) -> Result<Self::Output>;
}

/// Starts the agent of `task` and runs `work` on an async connection to
/// it, of its transport's own type (a pipe agent is spawned with its
/// stdio; the others connect to a listener of this process). The
/// connection is closed before the agent is reaped.
pub(crate) async fn with_async_agent<W: OnConnection>(
    task: &AgentTask,
    work: W,
) -> Result<W::Output> {
    let config = task.variant.config();
    let address = fresh_address(task.variant.transport);
    match &address {
        Address::Stdio => {
            let mut conn = ipc_pipe::spawn_async(agent_command(task)?, &config).await?;
            let pid = conn.id().unwrap_or(0);
            work.run(&mut conn, pid).await
        }
        Address::Uds(path) => {
            let listener = ipc_uds::AsyncUdsListener::bind_path(path, &config)?;
            on_accepted(listener, task, work).await
        }
        Address::Shm(_) => {
            let listener = ipc_shm::AsyncShmListener::bind(&address, &config)?;
            on_accepted(listener, task, work).await
        }
        Address::Zenoh { .. } => {
            let listener = ipc_zenoh::AsyncZenohListener::bind(&address, &config)?;
            on_accepted(listener, task, work).await
        }
        other => Err(unsupported(other)),
    }
}

/// Runs `work` on the connection of the agent of `task`, accepted on
/// `listener`.
async fn on_accepted<L: AsyncListener, W: OnConnection>(
    listener: L,
    task: &AgentTask,
    work: W,
) -> Result<W::Output> {
    let (mut conn, child) = accept_agent(listener, task).await?;
    let done = work.run(&mut conn, child.0.id()).await;
    // Hang up first: the agent exits when its parent leaves, so reaping
    // it then takes no wait (the other order waited out the reaper's 2 s).
    drop(conn);
    drop(child);
    done
}

/// Bare async round trips: the parent's async connection against an
/// agent echoing with its own.
async fn bounce(task: &AgentTask, run: Window) -> Result<Measured> {
    with_async_agent(task, Bounce(run)).await
}

/// The round trips of [`bounce`].
struct Bounce(Window);

impl OnConnection for Bounce {
    type Output = Measured;

    async fn run<C: AsyncFrameSender + AsyncFrameReceiver>(
        self,
        conn: &mut C,
        agent: u32,
    ) -> Result<Measured> {
        bounce_on(conn, agent, self.0).await
    }
}

async fn bounce_on<C: AsyncFrameSender + AsyncFrameReceiver>(
    conn: &mut C,
    agent: u32,
    run: Window,
) -> Result<Measured> {
    let mut msg = vec![0u8; run.size];
    let mut samples = Samples::new(run, agent);
    for seq in samples.seqs() {
        payload::fill(seq, &mut msg);
        let start = Instant::now();
        conn.send(&msg).await?;
        let echo = conn.recv().await?;
        let took = start.elapsed();
        check_echo(seq, msg.len(), &echo)?;
        samples.took(seq, took);
    }
    Ok(samples.finish())
}

fn check_echo(seq: u64, len: usize, echo: &[u8]) -> Result<()> {
    if echo.len() != len {
        return Err(HarnessError::Agent(format!(
            "echo of {len} bytes came back as {}",
            echo.len()
        )));
    }
    payload::verify(seq, echo)?;
    Ok(())
}

/// A hub listening on a fresh address of `task`'s transport (with room
/// for a bulk result), and the agent `cmd` joined to it.
async fn hub_with_agent(
    task: &AgentTask,
    cmd: std::process::Command,
    bulk: bool,
) -> Result<(Hub, ipc_hub::PeerInfo, Vec<Reaped>)> {
    let mut config = task.variant.config();
    if bulk {
        config = config.with_max_message_size(BULK_MAX);
    }
    let hub_config = HubConfig::default().with_send_timeout(CALL_LIMIT);
    let mut hub =
        Hub::new(hub_config).map_err(|e| HarnessError::Invalid(format!("hub config: {e}")))?;
    let address = fresh_address(task.variant.transport);
    let mut children = Vec::new();
    match &address {
        Address::Stdio => {
            let conn = ipc_pipe::spawn_async(cmd, &config).await?;
            hub.add(conn)
                .await
                .map_err(|e| HarnessError::Agent(format!("the agent did not join: {e}")))?;
        }
        Address::Uds(path) => {
            hub.listen(ipc_uds::AsyncUdsListener::bind_path(path, &config)?)?;
            children.push(start(cmd, &address)?);
        }
        Address::Shm(_) => {
            hub.listen(ipc_shm::AsyncShmListener::bind(&address, &config)?)?;
            children.push(start(cmd, &address)?);
        }
        Address::Zenoh { .. } => {
            let listener = ipc_zenoh::AsyncZenohListener::bind(&address, &config)?;
            let address = listener.address().clone();
            hub.listen(listener)?;
            children.push(start(cmd, &address)?);
        }
        other => return Err(unsupported(other)),
    }
    let peer = hub
        .wait_for_peers(1, JOIN_LIMIT)
        .await
        .map_err(|e| HarnessError::Agent(format!("the agent did not join: {e}")))?
        .remove(0);
    Ok((hub, peer, children))
}

/// Shuts the hub down, reaps its agents, and passes `result` on.
async fn ended<T>(hub: Hub, children: Vec<Reaped>, result: Result<T>) -> Result<T> {
    hub.shutdown(Duration::from_secs(1)).await;
    drop(children);
    result
}

/// Calls an agent that answers each with a large result written where
/// the hub reads it (on shared memory, a memory file passed, not copied):
/// the time from the call to the whole result in the hub's hands.
async fn bulk(task: &AgentTask, run: Window, who: Answerer) -> Result<Measured> {
    let (hub, peer, children) = hub_with_agent(task, who.command(task, run.size)?, true).await?;
    let handle = hub.handle();
    let calls = async {
        let mut samples = Samples::new(run, peer.credentials.pid.unwrap_or(0));
        for seq in samples.seqs() {
            let start = Instant::now();
            let result = handle
                .call_raw(peer.id, &[], CALL_LIMIT)
                .await
                .map_err(|e| HarnessError::Agent(format!("call failed: {e}")))?;
            let took = start.elapsed();
            let whole = result.len() == run.size
                && (0..run.size)
                    .step_by(4093)
                    .all(|i| result[i] == (i % 251) as u8);
            if !whole {
                return Err(HarnessError::Agent(format!(
                    "a bulk result of {} bytes is not the {} written",
                    result.len(),
                    run.size
                )));
            }
            samples.took(seq, took);
        }
        Ok(samples.finish())
    };
    ended(hub, children, calls.await).await
}

/// Typed calls through a [`Hub`] to one agent serving them, from the
/// runtime's main future or (`from_task`) from a task spawned on it.
async fn call(task: &AgentTask, run: Window, who: Answerer, from_task: bool) -> Result<Measured> {
    let (hub, peer, children) = hub_with_agent(task, who.command(task, 0)?, false).await?;
    let agent_pid = peer.credentials.pid.unwrap_or(0);
    let handle = hub.handle();
    let mut probe = Probe {
        seq: 0,
        body: vec![0; run.size],
    };
    let calls = async move {
        let mut samples = Samples::new(run, agent_pid);
        for seq in samples.seqs() {
            probe.seq = seq;
            payload::fill(seq, &mut probe.body);
            let start = Instant::now();
            let answer: Probe = handle
                .call(peer.id, &probe, CALL_LIMIT)
                .await
                .map_err(|e| HarnessError::Agent(format!("call failed: {e}")))?;
            let took = start.elapsed();
            if answer.seq != seq {
                return Err(HarnessError::Agent(format!(
                    "call {seq} answered as {}",
                    answer.seq
                )));
            }
            check_echo(seq, probe.body.len(), &answer.body)?;
            samples.took(seq, took);
        }
        Ok(samples.finish())
    };
    let measured = match from_task {
        true => tokio::spawn(calls)
            .await
            .unwrap_or_else(|e| Err(HarnessError::Agent(format!("the calling task failed: {e}")))),
        false => calls.await,
    };
    ended(hub, children, measured).await
}

/// The agent of [`Part::AsyncEcho`]: echoes every frame with the async
/// API until the parent leaves.
fn async_echo(variant: &Variant) -> Result<()> {
    agent_runtime()?.block_on(async {
        let config = variant.config();
        match Address::from_env().unwrap_or(Address::Stdio) {
            Address::Stdio => echo_on(ipc_pipe::connect_stdio_async(&config)?).await,
            a @ Address::Uds(_) => echo_on(ipc_uds::AsyncUds.connect(&a, &config).await?).await,
            a @ Address::Shm(_) => echo_on(ipc_shm::AsyncShm.connect(&a, &config).await?).await,
            a @ Address::Zenoh { .. } => {
                echo_on(ipc_zenoh::AsyncZenoh.connect(&a, &config).await?).await
            }
            other => Err(unsupported(&other)),
        }
    })
}

async fn echo_on<C: AsyncFrameSender + AsyncFrameReceiver>(mut conn: C) -> Result<()> {
    loop {
        match conn.recv().await {
            Ok(frame) => conn.send(&frame).await?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The agent of [`Part::Echo`]: joins the hub and answers every
/// [`Probe`] with itself until the hub says goodbye or leaves.
fn hub_echo(variant: &Variant) -> Result<()> {
    agent_runtime()?.block_on(async {
        let config = variant.config();
        let hub = HubConfig::default().with_send_timeout(CALL_LIMIT);
        let joined = |e: ipc_hub::JoinError| HarnessError::Agent(format!("join: {e}"));
        match Address::from_env().unwrap_or(Address::Stdio) {
            Address::Stdio => {
                let conn = ipc_pipe::connect_stdio_async(&config)?;
                serve(Agent::join(conn, "echo", hub).await.map_err(joined)?).await
            }
            a @ Address::Uds(_) => {
                let conn = ipc_uds::AsyncUds.connect(&a, &config).await?;
                serve(Agent::join(conn, "echo", hub).await.map_err(joined)?).await
            }
            a @ Address::Shm(_) => {
                let conn = ipc_shm::AsyncShm.connect(&a, &config).await?;
                serve(Agent::join(conn, "echo", hub).await.map_err(joined)?).await
            }
            a @ Address::Zenoh { .. } => {
                let conn = ipc_zenoh::AsyncZenoh.connect(&a, &config).await?;
                serve(Agent::join(conn, "echo", hub).await.map_err(joined)?).await
            }
            other => Err(unsupported(&other)),
        }
    })
}

/// The agent of [`Part::Bulk`]: joins the hub over shared memory and
/// answers every call with `size` bytes (`i % 251`, made once) copied
/// into a loan, as a tool hands over a result it holds.
fn hub_bulk(variant: &Variant, size: usize) -> Result<()> {
    agent_runtime()?.block_on(async {
        let config = variant.config().with_max_message_size(BULK_MAX);
        let address = Address::from_env().unwrap_or(Address::Stdio);
        let Address::Shm(_) = address else {
            return Err(unsupported(&address));
        };
        let conn = ipc_shm::AsyncShm.connect(&address, &config).await?;
        let hub = HubConfig::default().with_send_timeout(CALL_LIMIT);
        let mut agent = Agent::join(conn, "bulk", hub)
            .await
            .map_err(|e| HarnessError::Agent(format!("join: {e}")))?;
        let result: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        while let Some(event) = agent.next().await {
            match event {
                ipc_hub::AgentEvent::Call(request) => {
                    let mut loan = request.loan(size)?;
                    loan.copy_from_slice(&result);
                    let _ = request.reply_loan(loan).await;
                }
                ipc_hub::AgentEvent::Message(_) => {}
                _ => break,
            }
        }
        agent.close("done", Duration::from_secs(1)).await;
        Ok(())
    })
}

async fn serve(agent: Agent) -> Result<()> {
    agent
        .serve(|probe: Probe| async move { Ok::<_, String>(probe) })
        .await;
    Ok(())
}

/// An agent's runtime: current-thread, as a small agent runs.
pub(crate) fn agent_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
