//! How a hub's cost grows with its agents: one `ipc-hub` hub takes `n`
//! agent processes (each serving typed calls, as in the hub group) and
//! reports its threads, its memory per agent, how long they took to join,
//! how long a `call_each` to all of them takes, and the CPU the whole
//! system (hub and agents) uses while they are connected and idle.

use std::time::{Duration, Instant};

use ipc_core::{ADDRESS_ENV, Address, payload};
use ipc_hub::{Hub, HubConfig};

use crate::block::{Block, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::Scenario;
use crate::scenarios::echoing::Reaped;
use crate::scenarios::hub::{self, Probe};
use crate::schema::{Regime, RunResults, ScaleResult};
use crate::stats::Recorder;
use crate::task::AgentTask;
use crate::transport::{Transport, Variant, agent_command, unique_name};

/// The scale group: per agent count, one hub per transport (uds, shm),
/// interleaved.
pub(crate) struct Scale;

impl Scenario for Scale {
    fn group(&self) -> Group {
        Group::Scale
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let window = Duration::from_millis(p.idle_window_ms);
        p.scale_agents
            .iter()
            .map(|&agents| Block {
                group: Group::Scale,
                cells: transports(&p.transports)
                    .into_iter()
                    .map(|t| {
                        let variant = Variant::of(t);
                        cell(
                            format!("{} hub with {agents} agents", variant.label()),
                            1.0 + agents as f64 / 16.0,
                            move |r, trial| {
                                r.scale.push(measure(variant, agents, window, trial)?);
                                Ok(())
                            },
                        )
                    })
                    .collect(),
            })
            .collect()
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for s in &r.scale {
            let base = FigureId {
                group: Group::Scale,
                subject: Subject::Transport(s.variant),
                regime: Regime::Scale,
                size: None,
                agents: Some(s.agents),
                statistic: Statistic::P50,
            };
            g.percentiles(base, s.trial, &s.call_each);
            for (statistic, unit, v) in [
                (Statistic::Time, Unit::Ns, s.join_ns as f64),
                (Statistic::Threads, Unit::Count, s.hub_threads as f64),
                (Statistic::Rss, Unit::Kib, s.hub_kib_per_agent),
                (Statistic::CpuPercent, Unit::PercentCore, s.idle_cpu_percent),
            ] {
                let fid = FigureId { statistic, ..base };
                g.put(fid, unit, Better::Lower, s.trial, v);
            }
        }
    }
}

/// `call_each` rounds recorded per figure (after one warm-up round).
const ROUNDS: u64 = 5;
/// How long a thousand agents may take to join on two CPUs, and more.
const JOIN_LIMIT: Duration = Duration::from_secs(120);
const CALL_LIMIT: Duration = Duration::from_secs(60);

/// The transports the scale group measures: those a hub listens on for
/// local agents.
pub fn transports(plan: &[Transport]) -> Vec<Transport> {
    plan.iter()
        .copied()
        .filter(|t| matches!(t, Transport::Uds | Transport::Shm))
        .collect()
}

/// Threads of this process now.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// One hub with `agents` agents over `variant`; idle CPU measured over
/// `idle_window`.
pub fn measure(
    variant: Variant,
    agents: usize,
    idle_window: Duration,
    trial: u32,
) -> Result<ScaleResult> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(variant, agents, idle_window, trial))
}

async fn run(
    variant: Variant,
    agents: usize,
    idle_window: Duration,
    trial: u32,
) -> Result<ScaleResult> {
    let config = variant.config();
    let mut hub = Hub::new(HubConfig::default())
        .map_err(|e| HarnessError::Invalid(format!("hub config: {e}")))?;
    let name = unique_name();
    let address = match variant.transport {
        Transport::Uds => {
            let address = Address::Uds(std::env::temp_dir().join(format!("{name}.sock")));
            if let Address::Uds(path) = &address {
                hub.listen(ipc_uds::AsyncUdsListener::bind_path(path, &config)?)?;
            }
            address
        }
        Transport::Shm => {
            let address = Address::Shm(name);
            hub.listen(ipc_shm::AsyncShmListener::bind(&address, &config)?)?;
            address
        }
        other => {
            return Err(HarnessError::Invalid(format!(
                "the scale group measures uds and shm, not {other}"
            )));
        }
    };
    let self_rss = || procfs::rss_kib(std::process::id()).unwrap_or(0);
    let rss_before = self_rss();
    let task = AgentTask {
        cpu: None,
        role: hub::Part::Echo.role()?,
        variant,
    };
    let started = Instant::now();
    let mut children = Vec::with_capacity(agents);
    for _ in 0..agents {
        let mut cmd = agent_command(&task)?;
        cmd.env(ADDRESS_ENV, address.to_string());
        children.push(Reaped(cmd.spawn()?));
    }
    let peers = hub
        .wait_for_peers(agents, JOIN_LIMIT)
        .await
        .map_err(|e| HarnessError::Agent(format!("agents did not join: {e}")))?;
    let join_ns = started.elapsed().as_nanos() as u64;
    let mut probe = Probe::new(64);
    let mut recorder = Recorder::new();
    for round in 0..=ROUNDS {
        probe.refill(round);
        let started = Instant::now();
        let answers: Vec<std::result::Result<Probe, _>> =
            hub.call_each(&peers, &probe, CALL_LIMIT).await;
        let took = started.elapsed();
        for answer in answers {
            let answer =
                answer.map_err(|e| HarnessError::Agent(format!("call_each failed: {e}")))?;
            probe.check(&answer)?;
        }
        if round > 0 {
            recorder.record(took);
        }
    }
    let hub_threads = threads();
    let rss_after = self_rss();
    // Idle: every agent parked, past the point where idle connections
    // give their memory back (a one-time cost); then the whole system's
    // CPU over the window.
    tokio::time::sleep(ipc_shm::IDLE_RELEASE + Duration::from_millis(300)).await;
    // The agents are read outside the hub's own window, so reading a
    // thousand /proc files is not counted as the hub's idle CPU.
    let agents_cpu = || children.iter().map(Reaped::cpu_ns).sum::<u64>();
    let agents_start = agents_cpu();
    let (hub_start, idle_start) = (procfs::self_cpu_ns(), Instant::now());
    tokio::time::sleep(idle_window).await;
    let (hub_end, window) = (procfs::self_cpu_ns(), idle_start.elapsed());
    let used = hub_end.saturating_sub(hub_start) + agents_cpu().saturating_sub(agents_start);
    let idle_cpu_percent = used as f64 / window.as_nanos() as f64 * 100.0;
    hub.shutdown(Duration::from_secs(10)).await;
    drop(children);
    Ok(ScaleResult {
        variant,
        trial,
        agents,
        join_ns,
        call_each: recorder.summary(),
        hub_threads,
        hub_kib_per_agent: rss_after.saturating_sub(rss_before) as f64 / agents.max(1) as f64,
        idle_cpu_percent,
    })
}

impl Probe {
    fn new(size: usize) -> Self {
        Probe {
            seq: 0,
            body: vec![0; size],
        }
    }

    fn refill(&mut self, seq: u64) {
        self.seq = seq;
        payload::fill(seq, &mut self.body);
    }

    /// Checks an answer is this probe, echoed.
    fn check(&self, answer: &Probe) -> Result<()> {
        if answer.seq != self.seq || answer.body.len() != self.body.len() {
            return Err(HarnessError::Agent(format!(
                "probe {} answered as {} ({} bytes)",
                self.seq,
                answer.seq,
                answer.body.len()
            )));
        }
        payload::verify(self.seq, &answer.body)?;
        Ok(())
    }
}
