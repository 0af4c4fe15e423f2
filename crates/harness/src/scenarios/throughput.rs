//! One-way streaming throughput: the parent streams verified payloads to a
//! sink agent, which checks every one and reports.

use std::time::Instant;

use ipc_core::{FrameReceiver, FrameSender, payload};

use crate::block::{Block, Cell, cell};
use crate::error::Result;
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::Scenario;
use crate::scenarios::baselines::{BULK_SIZE, copy_stream_cell};
use crate::scenarios::latency::zenoh_variants;
use crate::schema::{Mechanism, Regime, RunResults, ThroughputResult};
use crate::task::{AgentReport, AgentTask, Role};
use crate::transport::ConnectionExt;
use crate::transport::{Agent, Large, Variant, spawn_agent};
use crate::variant::Transport;

/// The throughput group: per size, every transport's variants streaming
/// one way, bulk sizes beside the cross-process copy stream; then
/// shared memory's ways of moving large messages at the blob sizes.
pub(crate) struct Throughput;

impl Scenario for Throughput {
    fn group(&self) -> Group {
        Group::Throughput
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let group = Group::Throughput;
        let with_shm = p.transports.contains(&Transport::Shm);
        let mut blocks = Vec::new();
        for &size in &p.sizes {
            let mut cells = Vec::new();
            if size >= BULK_SIZE && with_shm {
                cells.push(copy_stream_cell(p, size));
            }
            for &t in &p.transports {
                for variant in variants(t, size, p) {
                    cells.push(throughput_cell(p, variant, size));
                }
            }
            blocks.push(Block { group, cells });
        }
        if with_shm {
            for size in BLOB_SIZES.into_iter().filter(|s| !p.sizes.contains(s)) {
                let mut cells = vec![copy_stream_cell(p, size)];
                cells.extend(
                    [Large::Default, Large::Copy, Large::Blob]
                        .map(|large| throughput_cell(p, Variant::shm_large(large), size)),
                );
                blocks.push(Block { group, cells });
            }
        }
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for t in &r.throughput {
            let base = FigureId {
                group: Group::Throughput,
                subject: Subject::Transport(t.variant),
                regime: Regime::OneWay,
                size: Some(t.size),
                agents: None,
                statistic: Statistic::Rate,
            };
            g.put(base, Unit::PerS, Better::Higher, t.trial, t.msgs_per_s);
            let bw = FigureId {
                statistic: Statistic::Bandwidth,
                ..base
            };
            g.put(bw, Unit::BytesPerS, Better::Higher, t.trial, t.bytes_per_s);
            let cpu = FigureId {
                statistic: Statistic::CpuPerOp,
                ..base
            };
            g.put(cpu, Unit::Ns, Better::Lower, t.trial, t.cpu_ns_per_msg);
        }
    }

    /// Shared memory's bandwidth at bulk sizes over the copy stream
    /// measured beside it.
    fn ratios(&self, ids: &[FigureId]) -> Vec<Pair> {
        ids.iter()
            .filter(|f| {
                f.group == Group::Throughput
                    && f.statistic == Statistic::Bandwidth
                    && f.size >= Some(BULK_SIZE)
                    && matches!(f.subject, Subject::Transport(v) if v.transport == Transport::Shm)
            })
            .map(|&fid| {
                let under = FigureId {
                    group: Group::Baselines,
                    subject: Subject::Mechanism(Mechanism::SharedBuffer),
                    ..fid
                };
                (fid, under, Better::Higher)
            })
            .collect()
    }
}

/// The throughput variants of `transport` at `size`: shared memory also
/// with zero copy, and with other ring sizes at the smallest and largest
/// message size (why the default ring is what it is).
fn variants(transport: Transport, size: usize, plan: &Plan) -> Vec<Variant> {
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

/// The cell streaming `variant` at `size`.
fn throughput_cell(plan: &Plan, variant: Variant, size: usize) -> Cell {
    let (count, pin) = (plan.throughput_messages(size), plan.pin);
    let label = format!("{} {size} B x {count}", variant.label());
    cell(label, 1.0, move |r, trial| {
        r.throughput
            .push(measure(variant, size, count, pin, trial)?);
        Ok(())
    })
}

/// A sink agent and the sending side, for benches that time sends alone.
#[derive(Debug)]
pub struct Stream {
    agent: Agent,
    msg: Vec<u8>,
    seq: u64,
    zero_copy: bool,
    large: Large,
    label: crate::handicap::Label,
}

impl Stream {
    /// Spawns a sink over `variant` that verifies `count` messages (or any
    /// number, if `None`).
    pub fn start(variant: Variant, size: usize, count: Option<u64>) -> Result<Self> {
        Self::start_on(variant, size, count, None)
    }

    /// Like [`start`](Self::start), with the sink pinned to `cpu`.
    pub fn start_on(
        variant: Variant,
        size: usize,
        count: Option<u64>,
        cpu: Option<usize>,
    ) -> Result<Self> {
        let agent = spawn_agent(&AgentTask {
            cpu,
            role: Role::Sink {
                count,
                in_place: variant.zero_copy,
            },
            variant,
        })?;
        Ok(Stream {
            agent,
            msg: vec![0; size],
            seq: 0,
            zero_copy: variant.zero_copy,
            large: variant.large,
            label: crate::handicap::Label::of(&variant),
        })
    }

    /// Writes and sends the next message. With zero copy (shared memory,
    /// messages up to one record), the payload is written straight into the
    /// ring.
    pub fn send_one(&mut self) -> Result<()> {
        crate::handicap::delay(self.label);
        let seq = self.seq;
        self.seq += 1;
        let size = self.msg.len();
        let conn = self.agent.conn();
        if self.large == Large::Blob
            && let Some(shm) = conn.as_shm()
        {
            let mut blob = ipc_shm::BlobBuf::new(size)?;
            payload::fill(seq, &mut blob);
            shm.send_blob(blob)?;
            return Ok(());
        }
        if self.zero_copy
            && let Some(shm) = conn.as_shm()
            && size <= shm.max_record()
        {
            let mut slot = shm.reserve(size)?;
            payload::fill(seq, &mut slot);
            slot.commit();
            return Ok(());
        }
        payload::fill(seq, &mut self.msg);
        conn.send(&self.msg)?;
        Ok(())
    }

    /// Waits for the sink's report.
    pub fn finish(&mut self) -> Result<AgentReport> {
        let frame = self.agent.conn().recv()?;
        Ok(serde_json::from_slice(&frame)?)
    }
}

/// Streams `count` messages of `size` bytes and times it to the report,
/// with the two processes on two CPUs if `pin`.
pub fn measure(
    variant: Variant,
    size: usize,
    count: u64,
    pin: bool,
    trial: u32,
) -> Result<ThroughputResult> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    let mut stream = Stream::start_on(variant, size, Some(count), cpus.map(|c| c.1))?;
    // Both processes' CPU over the same window (first send to the
    // report): the agent's start-up and connecting are not counted.
    let agent = stream.agent.pid();
    let cpu = || procfs::self_cpu_ns() + procfs::cpu_ns(agent).unwrap_or(0);
    let cpu_start = cpu();
    let start = Instant::now();
    for _ in 0..count {
        stream.send_one()?;
    }
    let report = stream.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let window_cpu = cpu().saturating_sub(cpu_start);
    report.check(Some(count))?;
    Ok(ThroughputResult {
        variant,
        trial,
        size,
        messages: count,
        seconds,
        msgs_per_s: count as f64 / seconds,
        bytes_per_s: (count * size as u64) as f64 / seconds,
        cpu_ns_per_msg: window_cpu as f64 / count as f64,
        pinned: cpus.is_some(),
    })
}
