//! One-way streaming throughput: the parent streams verified payloads to a
//! sink agent, which checks every one and reports.

use std::time::Instant;

use ipc_core::{FrameReceiver, FrameSender, payload};

use crate::error::Result;
use crate::procfs;
use crate::schema::ThroughputResult;
use crate::task::{AgentReport, AgentTask, Role};
use crate::transport::ConnectionExt;
use crate::transport::{Agent, Large, Variant, spawn_agent};

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
