//! One-way streaming throughput: the parent streams verified payloads to a
//! sink agent, which checks every one and reports; at the smallest and
//! the largest size also through the async API, on a current-thread and
//! a multi-thread runtime.

use std::time::{Duration, Instant};

use ipc_core::{
    Address, AsyncFrameReceiver, AsyncFrameSender, FrameReceiver, FrameSender, RecvError, payload,
};
use serde::{Deserialize, Serialize};

use crate::block::{Block, Cell, cell};
use crate::error::Result;
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::procfs;
use crate::scenarios::baselines::{BULK_SIZE, copy_stream_cell};
use crate::scenarios::latency::zenoh_variants;
use crate::scenarios::{Scenario, hub, part};
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
        let ends = [p.sizes[0], *p.sizes.last().expect("validated")];
        for &size in &p.sizes {
            let mut cells = Vec::new();
            if size >= BULK_SIZE && with_shm {
                cells.push(copy_stream_cell(p, size));
            }
            for &t in &p.transports {
                for variant in variants(t, size, p) {
                    cells.push(throughput_cell(p, variant, size));
                }
                if ends.contains(&size) {
                    cells.extend(ASYNC.map(|regime| async_cell(p, Variant::of(t), size, regime)));
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
                regime: t.regime,
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
    /// measured beside it, and each async stream's rate over the same
    /// transport's blocking one.
    fn ratios(&self, ids: &[FigureId]) -> Vec<Pair> {
        let over_copy = ids
            .iter()
            .filter(|f| {
                f.group == Group::Throughput
                    && f.statistic == Statistic::Bandwidth
                    && f.regime == Regime::OneWay
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
            });
        let over_blocking = ids
            .iter()
            .filter(|f| {
                f.group == Group::Throughput
                    && f.statistic == Statistic::Rate
                    && ASYNC.contains(&f.regime)
            })
            .map(|&fid| {
                let under = FigureId {
                    regime: Regime::OneWay,
                    ..fid
                };
                (fid, under, Better::Higher)
            });
        over_copy.chain(over_blocking).collect()
    }

    fn agent(&self, task: serde_json::Value, t: &AgentTask) -> Result<()> {
        match part(task)? {
            Part::AsyncSink { count } => async_sink(&t.variant, count),
        }
    }
}

/// The streams through the async API, beside the blocking one at the
/// smallest and the largest size.
pub const ASYNC: [Regime; 2] = [Regime::OneWayAsync, Regime::OneWayAsyncMultiThread];

/// The agent parts of the throughput group.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Part {
    /// Receive and verify `count` payload messages through the async
    /// API, then send an [`AgentReport`] (as [`Role::Sink`] does).
    AsyncSink {
        /// Messages to expect.
        count: u64,
    },
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
        regime: Regime::OneWay,
    })
}

/// The cell streaming `variant` at `size` through the async API, the
/// parent on the runtime of `regime`.
fn async_cell(plan: &Plan, variant: Variant, size: usize, regime: Regime) -> Cell {
    let (count, pin) = (plan.throughput_messages(size), plan.pin);
    let label = format!("{} {size} B x {count} {}", variant.label(), regime.name());
    cell(label, 1.0, move |r, trial| {
        r.throughput
            .push(measure_async(variant, size, count, pin, regime, trial)?);
        Ok(())
    })
}

/// Streams `count` messages of `size` bytes through the async API (the
/// parent on a current-thread or, for
/// [`OneWayAsyncMultiThread`](Regime::OneWayAsyncMultiThread), a
/// multi-thread runtime; the agent on a current-thread one) and times it
/// to the agent's report, with the two processes on two CPUs if `pin`
/// (the runtime's threads inherit the parent's CPU).
pub fn measure_async(
    variant: Variant,
    size: usize,
    count: u64,
    pin: bool,
    regime: Regime,
    trial: u32,
) -> Result<ThroughputResult> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    let mut builder = match regime {
        Regime::OneWayAsyncMultiThread => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build()?;
    let task = AgentTask {
        cpu: cpus.map(|c| c.1),
        role: Role::part(Group::Throughput, &Part::AsyncSink { count })?,
        variant,
    };
    let streamed = runtime.block_on(hub::with_async_agent(&task, AsyncStream { size, count }))?;
    Ok(ThroughputResult {
        variant,
        trial,
        size,
        messages: count,
        seconds: streamed.seconds,
        msgs_per_s: count as f64 / streamed.seconds,
        bytes_per_s: (count * size as u64) as f64 / streamed.seconds,
        cpu_ns_per_msg: streamed.cpu_ns as f64 / count as f64,
        pinned: cpus.is_some(),
        regime,
    })
}

/// One async stream: `count` messages of `size` bytes, then the agent's
/// report.
struct AsyncStream {
    size: usize,
    count: u64,
}

/// What an async stream took: wall time from the first send to the
/// report, and the CPU of both processes over it.
struct Streamed {
    seconds: f64,
    cpu_ns: u64,
}

impl hub::OnConnection for AsyncStream {
    type Output = Streamed;

    async fn run<C: AsyncFrameSender + AsyncFrameReceiver>(
        self,
        conn: &mut C,
        agent: u32,
    ) -> Result<Streamed> {
        let mut msg = vec![0; self.size];
        let cpu = || procfs::self_cpu_ns() + procfs::cpu_ns(agent).unwrap_or(0);
        let cpu_start = cpu();
        let start = Instant::now();
        for seq in 0..self.count {
            payload::fill(seq, &mut msg);
            conn.send(&msg).await?;
        }
        let report: AgentReport = serde_json::from_slice(&conn.recv().await?)?;
        let seconds = start.elapsed().as_secs_f64();
        let cpu_ns = cpu().saturating_sub(cpu_start);
        report.check(Some(self.count))?;
        Ok(Streamed { seconds, cpu_ns })
    }
}

/// The agent of [`Part::AsyncSink`]: receives and verifies `count`
/// messages through the async API on a current-thread runtime, reports,
/// and stays until the parent leaves.
fn async_sink(variant: &Variant, count: u64) -> Result<()> {
    hub::agent_runtime()?.block_on(async {
        let address = Address::from_env().unwrap_or(Address::Stdio);
        let mut conn = ipc_any::connect_async(&address, &variant.config()).await?;
        let mut report = AgentReport::begin();
        let start = Instant::now();
        while report.received < count {
            let frame = conn.recv().await?;
            report.note(payload::verify(report.received, &frame), frame.len());
        }
        report.end(start);
        conn.send(&serde_json::to_vec(&report)?).await?;
        loop {
            match conn.recv_timeout(Duration::from_secs(3600)).await {
                Err(RecvError::Disconnected) => return Ok(()),
                Err(RecvError::Timeout) | Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    })
}
