//! Round-trip latency: send a verified payload to an echoing agent and
//! time until it is back.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender, payload};

use crate::agent::{AgentTask, Role};
use crate::error::{HarnessError, Result};
use crate::schema::LatencyResult;
use crate::stats::Recorder;
use crate::transport::{Agent, Variant, spawn_agent};

/// An echoing agent and a message to bounce off it.
#[derive(Debug)]
pub struct RoundTrip {
    agent: Agent,
    msg: Vec<u8>,
    seq: u64,
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
        })
    }

    /// One round trip: the time from send to receipt of the echo, which
    /// is then verified (outside the timed part).
    pub fn once(&mut self) -> Result<Duration> {
        payload::fill(self.seq, &mut self.msg);
        let conn = self.agent.conn();
        let start = Instant::now();
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

/// How round trips are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regime {
    /// One after another: the agent stays hot.
    BackToBack,
    /// With this pause between them: the agent parks (for shared memory,
    /// longer than its spin phase).
    Parked(Duration),
}

impl Regime {
    /// Its name in results.
    pub fn name(self) -> &'static str {
        match self {
            Regime::BackToBack => "back-to-back",
            Regime::Parked(_) => "parked",
        }
    }
}

/// Measures `samples` round trips of `size` bytes after `warmup`, with
/// the two processes pinned to two CPUs if `pin` (and there are two).
pub fn measure(
    variant: Variant,
    size: usize,
    regime: Regime,
    warmup: u64,
    samples: u64,
    pin: bool,
) -> Result<LatencyResult> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    let mut rt = RoundTrip::start_on(variant, size, cpus.map(|c| c.1))?;
    for _ in 0..warmup {
        rt.once()?;
    }
    let mut recorder = Recorder::new();
    for _ in 0..samples {
        if let Regime::Parked(gap) = regime {
            std::thread::sleep(gap);
        }
        recorder.record(rt.once()?);
    }
    Ok(LatencyResult {
        transport: variant.label(),
        size,
        regime: regime.name().into(),
        pinned: cpus.is_some(),
        stats: recorder.summary(),
    })
}
