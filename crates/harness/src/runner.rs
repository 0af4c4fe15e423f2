//! Runs a [`Plan`]: its scenarios as *blocks* of cells, each block repeated
//! for every trial with its cells interleaved (A B C, A B C, ...), so that
//! host drift hits every variant of a block alike; and each bare mechanism
//! sits in the block of the transports compared with it, next to them, so
//! that per-trial ratios pair measurements taken moments apart. Progress is
//! reported after each cell; a failing cell is recorded in
//! [`RunResults::failures`] and the run goes on.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use ipc_core::{Bincode, Json, Postcard};

use crate::error::Result;
use crate::figures::BULK_SIZE;
use crate::plan::{Group, Plan};
use crate::scenarios::{
    baselines, hub, latency, logging, patterns, resources, scale, serialization, throughput,
};
use crate::schema::{
    CodecKind, Failure, Mechanism, PatternResult, Regime, RunResults, SCHEMA_VERSION,
};
use crate::transport::{Large, Strategy, Transport, Variant};

/// Where a run is, after a cell.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Cells run, including this one.
    pub done: usize,
    /// Cells in the run (every trial of every block).
    pub total: usize,
    /// The group of the cell.
    pub group: Group,
    /// What the cell measured.
    pub label: &'a str,
    /// Its trial (from 1) and the number of trials.
    pub trial: (u32, u32),
    /// Whether it failed (and why).
    pub error: Option<&'a str>,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Estimated time left, from the pace so far.
    pub remaining: Duration,
}

impl std::fmt::Display for Progress<'_> {
    /// One line: `[  12/300] latency  shm 64 B back-to-back  trial 2/5 ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:>4}/{}] {:<13} {:<50} trial {}/{} {:>4.0}s elapsed, ~{:.0}s left",
            self.done,
            self.total,
            self.group.name(),
            self.label,
            self.trial.0,
            self.trial.1,
            self.elapsed.as_secs_f64(),
            self.remaining.as_secs_f64(),
        )?;
        match self.error {
            Some(e) => write!(f, "  FAILED: {e}"),
            None => Ok(()),
        }
    }
}

type Action = Box<dyn Fn(&mut RunResults, u32) -> Result<()>>;

/// One scenario with fresh processes: run once per trial.
struct Cell {
    label: String,
    /// Relative cost, for the time-left estimate.
    weight: f64,
    action: Action,
}

/// Cells whose trials are interleaved with each other.
struct Block {
    group: Group,
    cells: Vec<Cell>,
}

fn cell(
    label: String,
    weight: f64,
    action: impl Fn(&mut RunResults, u32) -> Result<()> + 'static,
) -> Cell {
    Cell {
        label,
        weight,
        action: Box::new(action),
    }
}

/// The latency variants of `transport` at `size`, back to back.
fn latency_variants(transport: Transport, size: usize, smallest: usize) -> Vec<Variant> {
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
fn zenoh_variants() -> Vec<Variant> {
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

/// The throughput variants of `transport` at `size`: shared memory also
/// with zero copy, and with other ring sizes at the smallest and largest
/// message size (why the default ring is what it is).
fn throughput_variants(transport: Transport, size: usize, plan: &Plan) -> Vec<Variant> {
    match transport {
        Transport::Shm => {
            let mut out = vec![Variant::of(Transport::Shm), Variant::shm_zero_copy()];
            if size > LARGE_FROM {
                out.extend([Large::Copy, Large::Blob].map(Variant::shm_large));
            }
            let ends = [plan.sizes[0], *plan.sizes.last().expect("validated")];
            if ends.contains(&size) {
                out.extend(RING_SIZES_KIB.map(Variant::shm_ring));
            }
            out
        }
        Transport::Zenoh => zenoh_variants(),
        t => vec![Variant::of(t)],
    }
}

/// Above this a message no longer fits a record of the default ring: it
/// goes as a blob or in chunks, and both ways are measured.
const LARGE_FROM: usize = ipc_shm::DEFAULT_RING_SIZE / 2;

/// Sizes at which shared memory's blobs and copies are also compared,
/// beside the plan's sizes.
const BLOB_SIZES: [usize; 3] = [256 << 10, 4 << 20, 16 << 20];

/// Ring sizes compared (at the largest and smallest message size) to show
/// why the default is what it is.
const RING_SIZES_KIB: [u32; 3] = [256, 1024, 4096];

fn throughput_cell(plan: &Plan, variant: Variant, size: usize) -> Cell {
    let (count, pin) = (plan.throughput_messages(size), plan.pin);
    let label = format!("{} {size} B x {count}", variant.label());
    cell(label, 1.0, move |r, trial| {
        r.throughput
            .push(throughput::measure(variant, size, count, pin, trial)?);
        Ok(())
    })
}

fn mechanism_cell(plan: &Plan, mechanism: Mechanism, size: usize) -> Cell {
    let (w, n, pin) = (plan.latency_warmup, plan.latency_samples_at(size), plan.pin);
    cell(
        format!("{} round trip {size} B", mechanism.name()),
        1.0,
        move |r, trial| {
            r.baselines
                .latency
                .push(baselines::back_to_back(mechanism, size, w, n, pin, trial)?);
            Ok(())
        },
    )
}

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
            r.latency.push(latency::measure(
                variant, size, regime, gap, samples, pin, trial,
            )?);
            Ok(())
        },
    )
}

fn parked_mechanism_cell(plan: &Plan, size: usize) -> Cell {
    let (w, n, pin) = (plan.latency_warmup / 10, plan.parked_samples, plan.pin);
    let gap = Duration::from_micros(plan.parked_gap_us);
    cell(
        format!("futex round trip {size} B parked"),
        1.0,
        move |r, trial| {
            r.baselines
                .latency
                .push(baselines::parked(size, gap, w, n, pin, trial)?);
            Ok(())
        },
    )
}

fn copy_stream_cell(plan: &Plan, size: usize) -> Cell {
    let (blocks, pin) = (plan.throughput_messages(size), plan.pin);
    cell(
        format!("shared-buffer copy stream {size} B x {blocks}"),
        1.0,
        move |r, trial| {
            r.baselines
                .bandwidth
                .push(baselines::copy_stream(size, blocks, pin, trial)?);
            Ok(())
        },
    )
}

/// One cell per transport of the plan, in the plan's order.
fn per_transport(plan: &Plan, make: impl Fn(Transport) -> Cell) -> Vec<Cell> {
    plan.transports.iter().map(|&t| make(t)).collect()
}

/// The mechanism of `transport` back to back.
fn mechanism_of(transport: Transport) -> Mechanism {
    crate::figures::mechanism_of(Variant::of(transport), Regime::BackToBack)
}

/// Round-trip blocks: per size, each transport's mechanism beside its
/// variants; then the parked regime beside its mechanism. Without
/// `with_transports`, the mechanisms alone (the baselines group).
fn round_trip_blocks(p: &Plan, group: Group, with_transports: bool) -> Vec<Block> {
    let smallest = p.sizes[0];
    let mut blocks = Vec::new();
    for &size in &p.sizes {
        let mut cells = Vec::new();
        for &t in &p.transports {
            cells.push(mechanism_cell(p, mechanism_of(t), size));
            if with_transports {
                for v in latency_variants(t, size, smallest) {
                    cells.push(latency_cell(p, v, size, Regime::BackToBack));
                }
            }
        }
        blocks.push(Block { group, cells });
    }
    let mut cells = vec![parked_mechanism_cell(p, smallest)];
    if with_transports {
        for &t in &p.transports {
            for v in parked_variants(t) {
                cells.push(latency_cell(p, v, smallest, Regime::Parked));
            }
        }
    }
    blocks.push(Block { group, cells });
    blocks
}

/// The hub group at the smallest size: per transport, the blocking round
/// trip (pinned, as in the latency group: the floor) beside the async
/// round trips and the hub calls, so each pairs with it per trial.
fn runtime_path_block(p: &Plan) -> Block {
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
        let python = hub::python().is_some() && t != Transport::Zenoh;
        let paths = hub::PATHS
            .into_iter()
            .chain(python.then_some(Regime::HubCallPython));
        for path in paths {
            cells.push(cell(
                format!("{} {size} B {}", variant.label(), path.name()),
                1.0,
                move |r, trial| {
                    r.hub
                        .push(hub::measure(variant, size, path, samples, trial)?);
                    Ok(())
                },
            ));
        }
        // A large result handed to the hub over shared memory, by a Rust
        // agent and (when there is one) a Python agent.
        if t == Transport::Shm {
            let bulk = hub::LARGE_RESULT;
            let regimes = [Regime::BulkReply]
                .into_iter()
                .chain(hub::python().is_some().then_some(Regime::BulkReplyPython));
            for regime in regimes {
                cells.push(cell(
                    format!(
                        "{} {} {}",
                        variant.label(),
                        bytes_label(bulk),
                        regime.name()
                    ),
                    1.0,
                    move |r, trial| {
                        r.hub
                            .push(hub::measure(variant, bulk, regime, hub::BULK_CALLS, trial)?);
                        Ok(())
                    },
                ));
            }
        }
    }
    Block {
        group: Group::Hub,
        cells,
    }
}

fn bytes_label(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} B")
    }
}

/// The scale group: per agent count, one hub per transport (uds, shm),
/// interleaved.
fn scale_blocks(p: &Plan) -> Vec<Block> {
    let window = Duration::from_millis(p.idle_window_ms);
    p.scale_agents
        .iter()
        .map(|&agents| Block {
            group: Group::Scale,
            cells: scale::transports(&p.transports)
                .into_iter()
                .map(|t| {
                    let variant = Variant::of(t);
                    cell(
                        format!("{} hub with {agents} agents", variant.label()),
                        1.0 + agents as f64 / 16.0,
                        move |r, trial| {
                            r.scale
                                .push(scale::measure(variant, agents, window, trial)?);
                            Ok(())
                        },
                    )
                })
                .collect(),
        })
        .collect()
}

fn plan_blocks(plan: &Plan) -> Vec<Block> {
    let p = plan.clone();
    let has = |g: Group| plan.groups.contains(&g);
    let mut blocks = Vec::new();
    for &group in &plan.groups {
        match group {
            Group::Baselines => {
                // With latency (or throughput) in the run, the mechanisms
                // are measured inside those groups' blocks, beside the
                // transports; alone, they get blocks of their own.
                if !has(Group::Latency) {
                    blocks.extend(round_trip_blocks(&p, group, false));
                }
                if !has(Group::Throughput) {
                    let cells = p
                        .sizes
                        .iter()
                        .filter(|&&s| s >= BULK_SIZE)
                        .map(|&s| copy_stream_cell(&p, s))
                        .collect();
                    blocks.push(Block { group, cells });
                }
                let budget = p.throughput_bytes;
                let memcpy = cell("memcpy bandwidth".into(), 0.5, move |r, trial| {
                    for size in [64, 4096, 64 << 10, 1 << 20, 64 << 20] {
                        r.baselines
                            .bandwidth
                            .push(baselines::memcpy(size, budget, trial));
                    }
                    Ok(())
                });
                blocks.push(Block {
                    group,
                    cells: vec![memcpy],
                });
            }
            Group::Latency => blocks.extend(round_trip_blocks(&p, group, true)),
            Group::Hub => blocks.push(runtime_path_block(&p)),
            Group::Scale => blocks.extend(scale_blocks(&p)),
            Group::Peers if p.transports.contains(&Transport::Shm) => {
                if !crate::scenarios::peers::AVAILABLE {
                    eprintln!(
                        "peers: not measured, the runner was built without the `peers` feature"
                    );
                    continue;
                }
                // Per size: iceoryx2 beside shm, trial by trial, and the
                // bare shared buffer doing the same copies (the floor).
                for &size in &p.sizes {
                    let (w, n, pin) = (p.latency_warmup, p.latency_samples_at(size), p.pin);
                    let theirs = cell(
                        format!("iceoryx2 round trip {size} B"),
                        1.0,
                        move |r, trial| {
                            let rt = baselines::back_to_back(
                                Mechanism::Iceoryx2,
                                size,
                                w,
                                n,
                                pin,
                                trial,
                            )?;
                            r.peers.others.push(rt);
                            Ok(())
                        },
                    );
                    let variant = Variant::of(Transport::Shm);
                    let ours = cell(
                        format!("shm round trip {size} B (peers)"),
                        1.0,
                        move |r, trial| {
                            let rt = latency::back_to_back(variant, size, (w, n), pin, trial)?;
                            r.peers.ours.push(rt);
                            Ok(())
                        },
                    );
                    let floor = cell(
                        format!("shared buffer round trip {size} B (peers)"),
                        1.0,
                        move |r, trial| {
                            let rt = baselines::back_to_back(
                                Mechanism::SharedBuffer,
                                size,
                                w,
                                n,
                                pin,
                                trial,
                            )?;
                            r.peers.floor.push(rt);
                            Ok(())
                        },
                    );
                    blocks.push(Block {
                        group,
                        cells: vec![theirs, ours, floor],
                    });
                }
            }
            // Without shm there is nothing to set beside the peers.
            Group::Peers => {}
            Group::Throughput => {
                for &size in &p.sizes {
                    let mut cells = Vec::new();
                    if size >= BULK_SIZE && p.transports.contains(&Transport::Shm) {
                        cells.push(copy_stream_cell(&p, size));
                    }
                    for &t in &p.transports {
                        for variant in throughput_variants(t, size, &p) {
                            cells.push(throughput_cell(&p, variant, size));
                        }
                    }
                    blocks.push(Block { group, cells });
                }
                if p.transports.contains(&Transport::Shm) {
                    for size in BLOB_SIZES.into_iter().filter(|s| !p.sizes.contains(s)) {
                        let mut cells = vec![copy_stream_cell(&p, size)];
                        cells.extend(
                            [Large::Default, Large::Copy, Large::Blob]
                                .map(|large| throughput_cell(&p, Variant::shm_large(large), size)),
                        );
                        blocks.push(Block { group, cells });
                    }
                }
            }
            Group::Serialization => {
                let batches = p.codec_batches;
                let codecs = cell("codecs".into(), 2.0, move |r, trial| {
                    r.serialization
                        .extend(serialization::codecs(batches, trial)?);
                    Ok(())
                });
                blocks.push(Block {
                    group,
                    cells: vec![codecs],
                });
                let cells = p
                    .transports
                    .iter()
                    .map(|&t| {
                        let variant = Variant::of(t);
                        let n = (p.latency_warmup / 4, p.latency_samples / 4);
                        let pin = p.pin;
                        cell(
                            format!("typed round trips over {t}"),
                            1.5,
                            move |r, trial| {
                                use serialization::typed_round_trip;
                                let rt = &mut r.typed_round_trips;
                                rt.push(typed_round_trip(
                                    variant,
                                    Postcard,
                                    CodecKind::Postcard,
                                    n,
                                    pin,
                                    trial,
                                )?);
                                rt.push(typed_round_trip(
                                    variant,
                                    Bincode,
                                    CodecKind::Bincode,
                                    n,
                                    pin,
                                    trial,
                                )?);
                                rt.push(typed_round_trip(
                                    variant,
                                    Json,
                                    CodecKind::Json,
                                    n,
                                    pin,
                                    trial,
                                )?);
                                Ok(())
                            },
                        )
                    })
                    .collect();
                blocks.push(Block { group, cells });
            }
            Group::Resources => {
                let window = Duration::from_millis(p.idle_window_ms);
                for &agents in &p.idle_agents {
                    let weight = 1.0 + window.as_secs_f64() * 4.0;
                    let cells = per_transport(&p, |t| {
                        let variant = Variant::of(t);
                        cell(
                            format!("{t}: {agents} idle agents"),
                            weight,
                            move |r, trial| {
                                let mut idle = resources::idle(variant, agents, window)?;
                                idle.trial = trial;
                                r.idle.push(idle);
                                Ok(())
                            },
                        )
                    });
                    blocks.push(Block { group, cells });
                }
                let cycles = p.churn_cycles;
                let cells = per_transport(&p, |t| {
                    let variant = Variant::of(t);
                    cell(
                        format!("{t}: {cycles} connect/disconnect cycles"),
                        3.0,
                        move |r, trial| {
                            let mut churn = resources::churn(variant, cycles)?;
                            churn.trial = trial;
                            r.churn.push(churn);
                            Ok(())
                        },
                    )
                });
                blocks.push(Block { group, cells });
            }
            Group::Patterns => {
                type PatternFn = fn(Variant, usize, u64, bool) -> Result<PatternResult>;
                let patterns: [(Regime, PatternFn); 5] = [
                    (Regime::FanOut, patterns::fan_out),
                    (Regime::FanIn, patterns::fan_in),
                    (Regime::Broadcast, patterns::broadcast),
                    (Regime::Pipeline, patterns::pipeline),
                    (Regime::AllToAll, patterns::all_to_all),
                ];
                for (pattern, run) in patterns {
                    for &agents in &p.agent_counts {
                        if pattern == Regime::AllToAll && agents < 2 {
                            continue;
                        }
                        let needs_addresses =
                            matches!(pattern, Regime::Pipeline | Regime::AllToAll);
                        let messages = p.pattern_messages;
                        let window = Duration::from_millis(p.pattern_window_ms);
                        let pin = p.pin;
                        let cells: Vec<Cell> = p
                            .transports
                            .iter()
                            .filter(|t| !needs_addresses || t.has_addresses())
                            .map(|&t| {
                                let variant = Variant::of(t);
                                cell(
                                    format!("{} {t} x{agents}", pattern.name()),
                                    1.5,
                                    move |r, trial| {
                                        let mut out = calibrated(
                                            run, variant, agents, messages, window, pin,
                                        )?;
                                        out.trial = trial;
                                        r.patterns.push(out);
                                        Ok(())
                                    },
                                )
                            })
                            .collect();
                        if !cells.is_empty() {
                            blocks.push(Block { group, cells });
                        }
                    }
                }
                // 1 MiB results to the most agents: copied to each, or
                // (shm-blob) written once and shared by all.
                let agents = *p.agent_counts.iter().max().expect("validated");
                let messages = (p.pattern_messages / 100).max(4);
                let window = Duration::from_millis(p.pattern_window_ms);
                let pin = p.pin;
                let mut variants: Vec<Variant> =
                    p.transports.iter().map(|&t| Variant::of(t)).collect();
                if p.transports.contains(&Transport::Shm) {
                    variants.push(Variant::shm_large(Large::Blob));
                }
                let cells = variants
                    .into_iter()
                    .map(|variant| {
                        cell(
                            format!("bulk-broadcast {} x{agents}", variant.label()),
                            2.0,
                            move |r, trial| {
                                let mut out = calibrated(
                                    patterns::bulk_broadcast,
                                    variant,
                                    agents,
                                    messages,
                                    window,
                                    pin,
                                )?;
                                out.trial = trial;
                                r.patterns.push(out);
                                Ok(())
                            },
                        )
                    })
                    .collect();
                blocks.push(Block { group, cells });
            }
            Group::Logging => {
                let events = p.log_events;
                // Paced events are 1 ms apart: a fiftieth of the burst keeps
                // their window near a second in the full preset.
                let paced = (events / 50).max(10);
                for (count, interval, weight) in [
                    (events, Duration::ZERO, 1.0),
                    (paced, Duration::from_millis(1), 2.0),
                ] {
                    let what = if interval.is_zero() {
                        "burst"
                    } else {
                        "1 ms apart"
                    };
                    let cells = per_transport(&p, |t| {
                        let variant = Variant::of(t);
                        cell(
                            format!("{t}: {count} events, {what}"),
                            weight,
                            move |r, trial| {
                                let mut out = logging::collect(variant, count, interval)?;
                                out.trial = trial;
                                r.logging.push(out);
                                Ok(())
                            },
                        )
                    });
                    blocks.push(Block { group, cells });
                }
            }
        }
    }
    blocks
}

/// Runs a pattern with enough messages for a window of at least `window`:
/// a pilot run with `messages` tells the rate, and a shorter-than-window
/// run is followed by one with proportionally more (until the window is
/// reached, at most [`MAX_PATTERN_SCALE`] times the messages). Fast transports would otherwise give windows of a few
/// milliseconds, too short to mean anything on a shared host.
fn calibrated(
    run: fn(Variant, usize, u64, bool) -> Result<PatternResult>,
    variant: Variant,
    agents: usize,
    messages: u64,
    window: Duration,
    pin: bool,
) -> Result<PatternResult> {
    let most = messages.saturating_mul(MAX_PATTERN_SCALE);
    let mut count = messages;
    loop {
        let out = run(variant, agents, count, pin)?;
        // Fixed costs (spawning, connecting) make a short run look
        // slower than it is, so aim past the window and look again.
        let short_by = window.as_secs_f64() / out.seconds.max(1e-9);
        if short_by <= 1.0 || count >= most {
            return Ok(out);
        }
        count = ((count as f64 * short_by * 1.5).ceil() as u64).min(most);
    }
}

/// Most a pattern's message count is scaled up to reach its window.
const MAX_PATTERN_SCALE: u64 = 256;

/// Holds the run's veth namespace (see [`crate::transport::veth`]).
struct VethGuard(bool);

impl VethGuard {
    fn start(plan: &Plan) -> Self {
        let wanted = plan.transports.contains(&Transport::Zenoh)
            && (plan.groups.contains(&Group::Latency) || plan.groups.contains(&Group::Throughput));
        if !wanted {
            return VethGuard(false);
        }
        match crate::transport::veth::start() {
            Ok(()) => VethGuard(true),
            Err(why) => {
                eprintln!("zenoh-veth not measured: {why}");
                VethGuard(false)
            }
        }
    }
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        if self.0 {
            crate::transport::veth::stop();
        }
    }
}

/// What a block holds, for a driver that runs cells one at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Its group.
    pub group: Group,
    /// Its cells' labels, in the order they interleave.
    pub cells: Vec<String>,
    /// Their relative costs (for estimates of time left).
    pub weights: Vec<f64>,
}

/// A run taken one cell at a time: [`run`] steps through every trial of
/// every block; a driver (`ipc-bench --serve`, which `cargo xtask bench`
/// uses to interleave two builds cell by cell, and to add trials where a
/// figure is still too noisy) chooses the order itself.
pub struct Session {
    blocks: Vec<Block>,
    results: RunResults,
    start: Instant,
    // The namespace `zenoh-veth` is measured through, if one can be made;
    // removed when the session ends, however it ends.
    _veth: VethGuard,
}

impl Session {
    /// Validates `plan` and prepares its blocks (nothing is measured yet).
    pub fn new(plan: &Plan) -> Result<Self> {
        plan.validate()?;
        let results = RunResults {
            schema_version: SCHEMA_VERSION,
            plan: plan.clone(),
            ..RunResults::default()
        };
        let veth = VethGuard::start(plan);
        let blocks = plan_blocks(plan);
        crate::handicap::set(plan.handicap.clone());
        Ok(Session {
            blocks,
            results,
            start: Instant::now(),
            _veth: veth,
        })
    }

    /// The blocks and their cells.
    pub fn schedule(&self) -> Vec<BlockInfo> {
        self.blocks
            .iter()
            .map(|b| BlockInfo {
                group: b.group,
                cells: b.cells.iter().map(|c| c.label.clone()).collect(),
                weights: b.cells.iter().map(|c| c.weight).collect(),
            })
            .collect()
    }

    /// Runs one trial of one cell. `Ok(Some(why))` if the cell failed (it
    /// is recorded in the results' failures and the run goes on); `Err` if
    /// there is no such cell.
    pub fn run_cell(&mut self, block: usize, cell: usize, trial: u32) -> Result<Option<String>> {
        let b = self.blocks.get(block).ok_or_else(|| {
            crate::HarnessError::Invalid(format!("no block {block} in this plan"))
        })?;
        let c = b.cells.get(cell).ok_or_else(|| {
            crate::HarnessError::Invalid(format!("no cell {cell} in block {block}"))
        })?;
        let error = (c.action)(&mut self.results, trial)
            .err()
            .map(|e| e.to_string());
        if let Some(e) = &error {
            self.results.failures.push(Failure {
                group: b.group.name().into(),
                scenario: c.label.clone(),
                trial,
                error: e.clone(),
            });
        }
        Ok(error)
    }

    /// The figures of what has run so far.
    pub fn figures(&self) -> Vec<crate::Figure> {
        crate::figures::figures(&self.results)
    }

    /// The results, with their figures.
    pub fn finish(mut self) -> RunResults {
        self.results.figures = crate::figures::figures(&self.results);
        self.results.duration_s = self.start.elapsed().as_secs_f64();
        self.results
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("blocks", &self.blocks.len())
            .field("elapsed", &self.start.elapsed())
            .finish_non_exhaustive()
    }
}

/// Runs `plan`, calling `on_step` after every cell.
pub fn run(plan: &Plan, mut on_step: impl FnMut(&Progress<'_>)) -> Result<RunResults> {
    let mut session = Session::new(plan)?;
    let schedule = session.schedule();
    let trials = plan.trials;
    let total: usize = schedule.iter().map(|b| b.cells.len()).sum::<usize>() * trials as usize;
    let total_weight: f64 =
        schedule.iter().flat_map(|b| &b.weights).sum::<f64>() * f64::from(trials);
    let mut done_weight = 0.0;
    let mut done = 0;
    let start = Instant::now();
    for (b, block) in schedule.iter().enumerate() {
        for trial in 0..trials {
            for (c, label) in block.cells.iter().enumerate() {
                let error = session.run_cell(b, c, trial)?;
                done += 1;
                done_weight += block.weights[c];
                let elapsed = start.elapsed();
                let pace = elapsed.as_secs_f64() / done_weight;
                on_step(&Progress {
                    done,
                    total,
                    group: block.group,
                    label,
                    trial: (trial + 1, trials),
                    error: error.as_deref(),
                    elapsed,
                    remaining: Duration::from_secs_f64(
                        pace * (total_weight - done_weight).max(0.0),
                    ),
                });
            }
        }
    }
    Ok(session.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_interleave_transports_with_their_mechanisms() {
        let plan = Plan::quick();
        let blocks = plan_blocks(&plan);
        let first = blocks
            .iter()
            .find(|b| b.cells.iter().any(|c| c.label == "pipe 64 B back-to-back"))
            .expect("a 64 B round-trip block");
        let labels: Vec<&str> = first.cells.iter().map(|c| c.label.as_str()).collect();
        // The pipe mechanism right before pipe, socketpair before uds,
        // the shared buffer before shm, all at the same size.
        let at = |l: &str| labels.iter().position(|x| *x == l).unwrap();
        assert_eq!(at("pipe 64 B back-to-back"), at("pipe round trip 64 B") + 1);
        assert_eq!(
            at("uds 64 B back-to-back"),
            at("socketpair round trip 64 B") + 1
        );
        assert_eq!(
            at("shm 64 B back-to-back"),
            at("shared-buffer round trip 64 B") + 1
        );
        // The parked regime has its mechanism in its block.
        assert!(blocks.iter().any(|b| {
            b.cells
                .iter()
                .any(|c| c.label == "futex round trip 64 B parked")
                && b.cells.iter().any(|c| c.label == "shm 64 B parked")
        }));
        // Bulk throughput sits beside the cross-process copy baseline.
        assert!(blocks.iter().any(|b| {
            b.cells
                .iter()
                .any(|c| c.label.starts_with("shared-buffer copy stream 1048576 B"))
                && b.cells.iter().any(|c| c.label.starts_with("shm 1048576 B"))
        }));
    }
}
