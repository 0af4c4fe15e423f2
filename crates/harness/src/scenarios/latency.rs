//! Round-trip latency: send a verified payload to an echoing agent and
//! time until it is back.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender, payload};

use crate::error::{HarnessError, Result};
use crate::procfs;
use crate::schema::{LatencyResult, Regime};
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::transport::{Agent, Variant, spawn_agent};

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
