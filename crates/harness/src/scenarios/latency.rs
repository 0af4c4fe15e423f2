//! Round-trip latency: send a verified payload to an echoing agent and
//! time until it is back.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender, payload};

use crate::block::{Block, Cell, cell};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject};
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::Scenario;
use crate::scenarios::baselines::{mechanism_cell, parked_mechanism_cell};
use crate::schema::{LatencyResult, Regime, RunResults};
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::transport::{Agent, Variant, spawn_agent};
use crate::variant::{Strategy, Transport};

/// The latency group: per size, each transport's variants back to back,
/// each beside the bare mechanism it rides on; then the parked regime
/// beside its mechanism (the futex).
pub(crate) struct Latency;

impl Scenario for Latency {
    fn group(&self) -> Group {
        Group::Latency
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let (group, smallest) = (Group::Latency, p.sizes[0]);
        let mut blocks = Vec::new();
        for &size in &p.sizes {
            let mut cells = Vec::new();
            for &t in &p.transports {
                let mechanism = Variant::of(t).mechanism(Regime::BackToBack);
                cells.push(mechanism_cell(p, mechanism, size));
                for v in variants(t, size, smallest) {
                    cells.push(latency_cell(p, v, size, Regime::BackToBack));
                }
            }
            blocks.push(Block { group, cells });
        }
        let mut cells = vec![parked_mechanism_cell(p, smallest)];
        for &t in &p.transports {
            for v in parked_variants(t) {
                cells.push(latency_cell(p, v, smallest, Regime::Parked));
            }
        }
        blocks.push(Block { group, cells });
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        g.latency_results(Group::Latency, &r.latency);
    }

    /// Each round trip over its mechanism; and the default wait strategy
    /// over spinning, measured in the same blocks: what waiting
    /// adaptively costs at each size.
    fn ratios(&self, ids: &[FigureId]) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for &fid in ids {
            let (Subject::Transport(v), Group::Latency, Statistic::P50) =
                (fid.subject, fid.group, fid.statistic)
            else {
                continue;
            };
            pairs.push((
                fid,
                FigureId {
                    group: Group::Baselines,
                    subject: Subject::Mechanism(v.mechanism(fid.regime)),
                    ..fid
                },
                Better::Lower,
            ));
            if v == Variant::of(Transport::Shm) && fid.regime == Regime::BackToBack {
                let spin = Subject::Transport(Variant::shm(Strategy::Spin));
                pairs.push((
                    fid,
                    FigureId {
                        subject: spin,
                        ..fid
                    },
                    Better::Lower,
                ));
            }
        }
        pairs
    }
}

/// The latency variants of `transport` at `size`, back to back.
fn variants(transport: Transport, size: usize, smallest: usize) -> Vec<Variant> {
    match transport {
        Transport::Shm if size == smallest => vec![
            Variant::shm(Strategy::Adaptive),
            Variant::shm(Strategy::Spin),
            Variant::shm(Strategy::SpinYield),
            Variant::shm(Strategy::Blocking),
        ],
        Transport::Shm => vec![
            Variant::shm(Strategy::Adaptive),
            Variant::shm(Strategy::Spin),
        ],
        Transport::Zenoh => zenoh_variants(),
        t => vec![Variant::of(t)],
    }
}

/// Zenoh on loopback, and through a veth pair when the run has made one.
pub(crate) fn zenoh_variants() -> Vec<Variant> {
    let mut out = vec![Variant::of(Transport::Zenoh)];
    if crate::transport::veth::ready() {
        out.push(Variant::zenoh_veth());
    }
    out
}

/// The variants measured in the parked regime.
fn parked_variants(transport: Transport) -> Vec<Variant> {
    match transport {
        Transport::Shm => vec![
            Variant::shm(Strategy::Adaptive),
            Variant::shm(Strategy::Blocking),
        ],
        t => vec![Variant::of(t)],
    }
}

/// The cell of `variant`'s round trips at `size` in `regime`.
fn latency_cell(plan: &Plan, variant: Variant, size: usize, regime: Regime) -> Cell {
    let (samples, gap) = match regime {
        Regime::Parked => (
            (plan.latency_warmup / 10, plan.parked_samples),
            Duration::from_micros(plan.parked_gap_us),
        ),
        _ => (
            (plan.latency_warmup, plan.latency_samples_at(size)),
            Duration::ZERO,
        ),
    };
    let pin = plan.pin;
    cell(
        format!("{} {size} B {}", variant.label(), regime.name()),
        1.0,
        move |r, trial| {
            r.latency
                .push(measure(variant, size, regime, gap, samples, pin, trial)?);
            Ok(())
        },
    )
}

/// An echoing agent and a message to bounce off it.
#[derive(Debug)]
pub struct RoundTrip {
    agent: Agent,
    msg: Vec<u8>,
    seq: u64,
    label: crate::handicap::Label,
}

impl RoundTrip {
    /// Spawns an echo agent over `variant` for `size`-byte messages.
    pub fn start(variant: Variant, size: usize) -> Result<Self> {
        Self::start_on(variant, size, None)
    }

    /// Like [`start`](Self::start), with the agent pinned to `cpu`.
    pub fn start_on(variant: Variant, size: usize, cpu: Option<usize>) -> Result<Self> {
        Ok(RoundTrip {
            agent: spawn_agent(&AgentTask {
                cpu,
                role: Role::Echo,
                variant,
            })?,
            msg: vec![0; size],
            seq: 0,
            label: crate::handicap::Label::of(&variant),
        })
    }

    /// One round trip: the time from send to receipt of the echo, which
    /// is then verified (outside the timed part).
    pub fn once(&mut self) -> Result<Duration> {
        payload::fill(self.seq, &mut self.msg);
        let conn = self.agent.conn();
        let start = Instant::now();
        crate::handicap::delay(self.label);
        conn.send(&self.msg)?;
        let echo = conn.recv()?;
        let took = start.elapsed();
        if echo.len() != self.msg.len() {
            return Err(HarnessError::Agent(format!(
                "echo of {} bytes came back as {}",
                self.msg.len(),
                echo.len()
            )));
        }
        payload::verify(self.seq, &echo)?;
        self.seq += 1;
        Ok(took)
    }
}

/// The blocking round trip back to back, as the latency group measures
/// it (beside which other groups pair their figures).
pub fn back_to_back(
    variant: Variant,
    size: usize,
    samples: (u64, u64),
    pin: bool,
    trial: u32,
) -> Result<LatencyResult> {
    measure(
        variant,
        size,
        Regime::BackToBack,
        Duration::ZERO,
        samples,
        pin,
        trial,
    )
}

/// Measures `samples` round trips of `size` bytes after `warmup`, with
/// `gap` before each (the parked regime) and the two processes pinned to
/// two CPUs if `pin` (and there are two). Also records the CPU both
/// processes used over the recorded window, per round trip.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    variant: Variant,
    size: usize,
    regime: Regime,
    gap: Duration,
    (warmup, samples): (u64, u64),
    pin: bool,
    trial: u32,
) -> Result<LatencyResult> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    let mut rt = RoundTrip::start_on(variant, size, cpus.map(|c| c.1))?;
    for _ in 0..warmup {
        rt.once()?;
    }
    let agent = rt.agent.pid();
    let cpu = || procfs::self_cpu_ns() + procfs::cpu_ns(agent).unwrap_or(0);
    let cpu_start = cpu();
    let mut recorder = Recorder::new();
    for _ in 0..samples {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        recorder.record(rt.once()?);
    }
    let cpu_ns_per_op = cpu().saturating_sub(cpu_start) as f64 / samples.max(1) as f64;
    Ok(LatencyResult {
        variant,
        trial,
        size,
        regime,
        pinned: cpus.is_some(),
        cpu_ns_per_op,
        stats: recorder.summary(),
    })
}
