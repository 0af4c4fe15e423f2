//! Several agent processes at once: fan-out, fan-in, broadcast, pipeline
//! and all-to-all. Every message is a verified payload.

use std::time::{Duration, Instant};

use ipc_core::{Address, FrameReceiver, FrameSender, payload};

use serde::{Deserialize, Serialize};

use crate::block::{Block, Cell, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::pin::PinGuard;
use crate::plan::{Group, Plan};
use crate::scenarios::{Scenario, part};
use crate::schema::{PatternResult, Regime, RunResults};
use crate::stats::Recorder;
use crate::task::{AgentReport, AgentTask, Role};
use crate::transport::ConnectionExt;
use crate::transport::{
    Agent, AnyConnection, AnyListener, Large, Transport, Variant, address_for, connect_retrying,
    parent, spawn_agent, spawn_agents, spawn_detached, unique_name,
};
use ipc_core::Listener as _;

/// The patterns group: each pattern at each agent count, every
/// transport interleaved; then 1 MiB results to the most agents.
pub(crate) struct Patterns;

impl Scenario for Patterns {
    fn group(&self) -> Group {
        Group::Patterns
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let group = Group::Patterns;
        let window = Duration::from_millis(p.pattern_window_ms);
        let pin = p.pin;
        let mut blocks = Vec::new();
        let patterns: [(Regime, PatternFn); 5] = [
            (Regime::FanOut, fan_out),
            (Regime::FanIn, fan_in),
            (Regime::Broadcast, broadcast),
            (Regime::Pipeline, pipeline),
            (Regime::AllToAll, all_to_all),
        ];
        for (pattern, run) in patterns {
            for &agents in &p.agent_counts {
                if pattern == Regime::AllToAll && agents < 2 {
                    continue;
                }
                let needs_addresses = matches!(pattern, Regime::Pipeline | Regime::AllToAll);
                let messages = p.pattern_messages;
                let cells: Vec<Cell> = p
                    .transports
                    .iter()
                    .filter(|t| !needs_addresses || t.has_addresses())
                    .map(|&t| {
                        let label = format!("{} {t} x{agents}", pattern.name());
                        let variant = Variant::of(t);
                        let one = PatternRun {
                            run,
                            variant,
                            agents,
                            messages,
                            window,
                            pin,
                        };
                        one.cell(label, 1.5)
                    })
                    .collect();
                if !cells.is_empty() {
                    blocks.push(Block { group, cells });
                }
            }
        }
        // 1 MiB results to the most agents: copied to each, or (shm-blob)
        // written once and shared by all.
        let agents = *p.agent_counts.iter().max().expect("validated");
        let messages = (p.pattern_messages / 100).max(4);
        let mut variants: Vec<Variant> = p.transports.iter().map(|&t| Variant::of(t)).collect();
        if p.transports.contains(&Transport::Shm) {
            variants.push(Variant::shm_large(Large::Blob));
        }
        let cells = variants
            .into_iter()
            .map(|variant| {
                let label = format!("bulk-broadcast {} x{agents}", variant.label());
                let one = PatternRun {
                    run: bulk_broadcast,
                    variant,
                    agents,
                    messages,
                    window,
                    pin,
                };
                one.cell(label, 2.0)
            })
            .collect();
        blocks.push(Block { group, cells });
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for p in &r.patterns {
            let base = FigureId {
                group: Group::Patterns,
                subject: Subject::Transport(p.variant),
                regime: p.pattern,
                size: Some(p.size),
                agents: Some(p.agents),
                statistic: Statistic::Rate,
            };
            g.put(base, Unit::PerS, Better::Higher, p.trial, p.msgs_per_s);
            if let Some(l) = &p.latency {
                let p50 = FigureId {
                    statistic: Statistic::P50,
                    ..base
                };
                g.percentiles(p50, p.trial, l);
            }
        }
    }

    fn agent(&self, task: serde_json::Value, t: &AgentTask) -> Result<()> {
        let v = &t.variant;
        match part(task)? {
            Part::Relay { listen, downstream } => relay(v, &listen, &downstream),
            Part::Mesh(mesh) => mesh_member(v, &mesh, &mut parent(v)?),
        }
    }
}

/// The agent parts of the patterns.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Part {
    /// Pipeline stage: forward every frame from upstream to downstream.
    Relay {
        /// Where this stage accepts its upstream.
        listen: String,
        /// Where its downstream listens.
        downstream: String,
    },
    /// All-to-all member: exchange with every other member.
    Mesh(MeshTask),
}

/// One member of an all-to-all mesh.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeshTask {
    /// This member's index.
    index: usize,
    /// Members in all.
    members: usize,
    /// Exchange rounds (one message to and from every other member each).
    rounds: u64,
    /// Name stem of the pair addresses.
    run: String,
    /// The key of every pair's zenoh listener (made by the parent, so
    /// both members of a pair know it).
    #[serde(default)]
    key: Option<String>,
}

/// A pattern's measurement.
type PatternFn = fn(Variant, usize, u64, bool) -> Result<PatternResult>;

/// One pattern over one variant, as a cell runs it every trial.
#[derive(Clone, Copy)]
struct PatternRun {
    run: PatternFn,
    variant: Variant,
    agents: usize,
    /// Messages of the pilot run.
    messages: u64,
    /// The shortest window worth measuring.
    window: Duration,
    pin: bool,
}

impl PatternRun {
    /// Its cell, labelled `label`, of relative cost `weight`.
    fn cell(self, label: String, weight: f64) -> Cell {
        cell(label, weight, move |r, trial| {
            let mut out = self.calibrated()?;
            out.trial = trial;
            r.patterns.push(out);
            Ok(())
        })
    }

    /// Runs the pattern with enough messages for a window of at least
    /// `window`: a pilot run with `messages` tells the rate, and a
    /// shorter-than-window run is followed by one with proportionally
    /// more (until the window is reached, at most [`MAX_PATTERN_SCALE`]
    /// times the messages). Fast transports would otherwise give windows
    /// of a few milliseconds, too short to mean anything on a shared host.
    fn calibrated(self) -> Result<PatternResult> {
        let most = self.messages.saturating_mul(MAX_PATTERN_SCALE);
        let mut count = self.messages;
        loop {
            let out = (self.run)(self.variant, self.agents, count, self.pin)?;
            // Fixed costs (spawning, connecting) make a short run look
            // slower than it is, so aim past the window and look again.
            let short_by = self.window.as_secs_f64() / out.seconds.max(1e-9);
            if short_by <= 1.0 || count >= most {
                return Ok(out);
            }
            count = ((count as f64 * short_by * 1.5).ceil() as u64).min(most);
        }
    }
}

/// Most a pattern's message count is scaled up to reach its window.
const MAX_PATTERN_SCALE: u64 = 256;

/// How long agents wait for siblings to appear.
const PATIENCE: Duration = Duration::from_secs(30);

/// Message size in the patterns.
pub const PATTERN_SIZE: usize = 256;

/// Where a pinned pattern runs: the parent on the first CPU (until the
/// guard drops), every agent on the second. Unpinned, the scheduler
/// placed agents beside the parent or apart from trial to trial, and the
/// rates moved 1.4x (median range over trials) on a 2-CPU guest.
fn place(pin: bool) -> (PinGuard, Option<usize>) {
    match crate::pin::cpus().filter(|_| pin) {
        Some((parent, agents)) => (PinGuard::new(Some(parent)), Some(agents)),
        None => (PinGuard::new(None), None),
    }
}

/// `agents` agents doing `role`, all on one address (uds, shm).
fn spawn_all(
    variant: Variant,
    agents: usize,
    role: Role,
    cpu: Option<usize>,
) -> Result<Vec<Agent>> {
    spawn_agents(&AgentTask { cpu, role, variant }, agents)
}

fn result(
    pattern: Regime,
    variant: Variant,
    agents: usize,
    messages: u64,
    seconds: f64,
) -> PatternResult {
    PatternResult {
        pattern,
        variant,
        trial: 0,
        agents,
        messages,
        size: PATTERN_SIZE,
        seconds,
        msgs_per_s: messages as f64 / seconds,
        latency: None,
    }
}

fn collect_reports(agents: &mut [Agent], expected: u64) -> Result<()> {
    for agent in agents {
        let report: AgentReport = serde_json::from_slice(&agent.conn().recv()?)?;
        report.check(Some(expected))?;
    }
    Ok(())
}

/// 1 -> N: the parent deals `messages` out round-robin to N sinks; then the
/// latency of a round (one message to each agent, every echo back).
pub fn fan_out(variant: Variant, agents: usize, messages: u64, pin: bool) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    let per_agent = messages / agents as u64;
    let mut sinks = spawn_all(
        variant,
        agents,
        Role::Sink {
            count: Some(per_agent),
            in_place: false,
        },
        agent_cpu,
    )?;
    let mut msg = vec![0; PATTERN_SIZE];
    let start = Instant::now();
    for seq in 0..per_agent {
        payload::fill(seq, &mut msg);
        for sink in &mut sinks {
            sink.conn().send(&msg)?;
        }
    }
    collect_reports(&mut sinks, per_agent)?;
    let seconds = start.elapsed().as_secs_f64();
    drop(sinks);

    let mut echoes = spawn_all(variant, agents, Role::Echo, agent_cpu)?;
    let mut rounds = Recorder::new();
    for seq in 0..(per_agent / 10).max(10) {
        payload::fill(seq, &mut msg);
        let start = Instant::now();
        for echo in &mut echoes {
            echo.conn().send(&msg)?;
        }
        for echo in &mut echoes {
            payload::verify(seq, &echo.conn().recv()?)?;
        }
        rounds.record(start.elapsed());
    }
    let mut out = result(
        Regime::FanOut,
        variant,
        agents,
        per_agent * agents as u64,
        seconds,
    );
    out.latency = Some(rounds.summary());
    Ok(out)
}

/// N -> 1: N sources stream to the parent, which receives on one thread per
/// connection and verifies each source's sequence.
pub fn fan_in(variant: Variant, agents: usize, messages: u64, pin: bool) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    let per_agent = messages / agents as u64;
    let mut sources = spawn_all(
        variant,
        agents,
        Role::Source {
            count: per_agent,
            size: PATTERN_SIZE,
        },
        agent_cpu,
    )?;
    let conns: Vec<AnyConnection> = sources.iter_mut().map(Agent::take_conn).collect();
    let start = Instant::now();
    let receivers: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            std::thread::spawn(move || -> Result<()> {
                conn.send(b"go")?;
                for seq in 0..per_agent {
                    payload::verify(seq, &conn.recv()?)?;
                }
                Ok(())
            })
        })
        .collect();
    for receiver in receivers {
        receiver
            .join()
            .map_err(|_| HarnessError::Agent("receiver thread panicked".into()))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(result(
        Regime::FanIn,
        variant,
        agents,
        per_agent * agents as u64,
        seconds,
    ))
}

/// 1 -> all: every message goes to every one of N sinks.
pub fn broadcast(
    variant: Variant,
    agents: usize,
    messages: u64,
    pin: bool,
) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    broadcast_sized(
        variant,
        agents,
        messages,
        PATTERN_SIZE,
        Regime::Broadcast,
        agent_cpu,
    )
}

/// Size of each result in the bulk broadcast.
pub const BULK_PATTERN_SIZE: usize = 1 << 20;

/// 1 -> all, 1 MiB results: every result goes to every one of N sinks.
/// `shm-blob` writes each result once into a sealed blob and sends that
/// same memory to every agent; the others send (copy) it to each.
pub fn bulk_broadcast(
    variant: Variant,
    agents: usize,
    messages: u64,
    pin: bool,
) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    broadcast_sized(
        variant,
        agents,
        messages,
        BULK_PATTERN_SIZE,
        Regime::BulkBroadcast,
        agent_cpu,
    )
}

fn broadcast_sized(
    variant: Variant,
    agents: usize,
    messages: u64,
    size: usize,
    regime: Regime,
    agent_cpu: Option<usize>,
) -> Result<PatternResult> {
    let mut sinks = spawn_all(
        variant,
        agents,
        Role::Sink {
            count: Some(messages),
            in_place: false,
        },
        agent_cpu,
    )?;
    let mut msg = vec![0; size];
    let start = Instant::now();
    for seq in 0..messages {
        if variant.large == Large::Blob {
            let mut blob = ipc_shm::BlobBuf::new(size)?;
            payload::fill(seq, &mut blob);
            let blob = blob.seal()?;
            for sink in &mut sinks {
                let shm = sink.conn().as_shm().ok_or_else(|| {
                    HarnessError::Invalid("a sealed blob needs shared memory".into())
                })?;
                shm.send_sealed(&blob)?;
            }
            continue;
        }
        payload::fill(seq, &mut msg);
        for sink in &mut sinks {
            sink.conn().send(&msg)?;
        }
    }
    collect_reports(&mut sinks, messages)?;
    let seconds = start.elapsed().as_secs_f64();
    let mut out = result(regime, variant, agents, messages * agents as u64, seconds);
    out.size = size;
    Ok(out)
}

fn parse(address: &str) -> Result<Address> {
    address
        .parse()
        .map_err(|e| HarnessError::Invalid(format!("{e}")))
}

fn listen(variant: &Variant, address: &str) -> Result<AnyListener> {
    crate::transport::bind(variant, &parse(address)?)
}

/// Kills and reaps pipeline stages that outlive the scenario.
struct Stages(Vec<std::process::Child>);

impl Drop for Stages {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        for child in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A chain of N relay agents: parent -> a1 -> ... -> aN -> parent.
/// Round-trip latency through the chain, then streaming throughput.
pub fn pipeline(
    variant: Variant,
    agents: usize,
    messages: u64,
    pin: bool,
) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    if !variant.transport.has_addresses() {
        return Err(HarnessError::Invalid(
            "pipeline needs agents to reach each other; pipes only join a parent and its child"
                .into(),
        ));
    }
    let run = unique_name();
    let addresses: Vec<String> = (0..=agents)
        .map(|i| address_for(variant.transport, &format!("{run}-{i}")))
        .collect::<Result<_>>()?;
    // The parent listens at the end of the chain (the last address).
    let mut tail = listen(&variant, &addresses[agents])?;
    let mut stages = Stages(Vec::new());
    for i in 0..agents {
        stages.0.push(spawn_detached(&AgentTask {
            cpu: agent_cpu,
            role: Role::part(
                Group::Patterns,
                &Part::Relay {
                    listen: addresses[i].clone(),
                    downstream: addresses[i + 1].clone(),
                },
            )?,
            variant,
        })?);
    }
    let mut head = connect_retrying(&variant, &parse(&addresses[0])?, PATIENCE)?;
    let mut tail = tail.accept_timeout(PATIENCE)?;

    let mut msg = vec![0; PATTERN_SIZE];
    let mut rounds = Recorder::new();
    let round_trips = (messages / 10).max(10);
    for seq in 0..round_trips {
        payload::fill(seq, &mut msg);
        let start = Instant::now();
        head.send(&msg)?;
        payload::verify(seq, &tail.recv()?)?;
        rounds.record(start.elapsed());
    }
    let start = Instant::now();
    let sender = std::thread::spawn(move || -> Result<AnyConnection> {
        let mut msg = vec![0; PATTERN_SIZE];
        for seq in round_trips..round_trips + messages {
            payload::fill(seq, &mut msg);
            head.send(&msg)?;
        }
        Ok(head)
    });
    for seq in round_trips..round_trips + messages {
        payload::verify(seq, &tail.recv()?)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let head = sender
        .join()
        .map_err(|_| HarnessError::Agent("sender thread panicked".into()))??;
    drop(head);
    drop(tail);
    drop(stages);
    let mut out = result(Regime::Pipeline, variant, agents, messages, seconds);
    out.latency = Some(rounds.summary());
    Ok(out)
}

/// A pipeline stage (agent side): accept upstream at `listen`, connect to
/// `downstream`, forward until upstream leaves.
fn relay(variant: &Variant, listen_at: &str, downstream: &str) -> Result<()> {
    let mut listener = listen(variant, listen_at)?;
    let mut down = connect_retrying(variant, &parse(downstream)?, PATIENCE)?;
    let mut up = listener.accept_timeout(PATIENCE)?;
    drop(listener);
    loop {
        match up.recv() {
            Ok(frame) => down.send(&frame)?,
            Err(ipc_core::RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The address of the link between members `low` and `high`, which both
/// compute on their own: for zenoh, a port from the run's name and the
/// pair (below the ephemeral range, one per pair of the run).
fn pair_address(variant: &Variant, task: &MeshTask, low: usize, high: usize) -> Result<String> {
    let run = &task.run;
    let name = format!("{run}-{low}-{high}");
    if variant.transport == Transport::Zenoh {
        let base = 20_000
            + run
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
                % 8_000;
        let port = base as usize + low * 64 + high;
        let key = task
            .key
            .as_deref()
            .map_or(String::new(), |k| format!(":{k}"));
        return Ok(format!("zenoh:{name}{key}@tcp/127.0.0.1:{port}"));
    }
    address_for(variant.transport, &name)
}

/// N agents, each connected to every other; in each round every member
/// sends one message to every other and receives one from each.
pub fn all_to_all(
    variant: Variant,
    agents: usize,
    messages: u64,
    pin: bool,
) -> Result<PatternResult> {
    let (_parent, agent_cpu) = place(pin);
    if !variant.transport.has_addresses() {
        return Err(HarnessError::Invalid(
            "all-to-all needs agents to reach each other; pipes only join a parent and its child"
                .into(),
        ));
    }
    let run = unique_name();
    let key = match variant.transport {
        Transport::Zenoh => Some(ipc_zenoh::new_key()?),
        _ => None,
    };
    let pairs = (agents * (agents - 1)) as u64;
    let rounds = (messages / pairs.max(1)).max(1);
    let mut members: Vec<Agent> = (0..agents)
        .map(|index| {
            spawn_agent(&AgentTask {
                cpu: agent_cpu,
                role: Role::part(
                    Group::Patterns,
                    &Part::Mesh(MeshTask {
                        index,
                        members: agents,
                        rounds,
                        run: run.clone(),
                        key: key.clone(),
                    }),
                )?,
                variant,
            })
        })
        .collect::<Result<_>>()?;
    for member in &mut members {
        member.conn().recv()?; // ready: its links are up
    }
    let start = Instant::now();
    for member in &mut members {
        member.conn().send(b"go")?;
    }
    collect_reports(&mut members, rounds * (agents as u64 - 1))?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(result(
        Regime::AllToAll,
        variant,
        agents,
        rounds * pairs,
        seconds,
    ))
}

/// A mesh member (agent side).
fn mesh_member(variant: &Variant, task: &MeshTask, parent: &mut AnyConnection) -> Result<()> {
    let mut listeners = Vec::new();
    for other in task.index + 1..task.members {
        listeners.push(listen(
            variant,
            &pair_address(variant, task, task.index, other)?,
        )?);
    }
    let mut links = Vec::new();
    for other in 0..task.index {
        let address = parse(&pair_address(variant, task, other, task.index)?)?;
        links.push(connect_retrying(variant, &address, PATIENCE)?);
    }
    for listener in &mut listeners {
        links.push(listener.accept_timeout(PATIENCE)?);
    }
    drop(listeners);
    parent.send(b"ready")?;
    parent.recv()?;
    let start = Instant::now();
    let mut report = AgentReport::default();
    let mut msg = vec![0; PATTERN_SIZE];
    for round in 0..task.rounds {
        payload::fill(round, &mut msg);
        for link in &mut links {
            link.send(&msg)?;
        }
        for link in &mut links {
            let frame = link.recv()?;
            report.received += 1;
            report.bytes += frame.len() as u64;
            if let Err(e) = payload::verify(round, &frame) {
                report.errors += 1;
                report.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    report.elapsed_ns = start.elapsed().as_nanos() as u64;
    parent.send(&serde_json::to_vec(&report)?)?;
    crate::transport::wait_for_parent_to_leave(parent)
}
