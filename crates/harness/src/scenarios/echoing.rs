//! What the baselines, the peers and the hub scenarios share: an agent
//! process reaped on drop, and timed, verified round trips against it.

use std::process::Child;
use std::time::{Duration, Instant};

use ipc_core::payload;

use crate::error::Result;
use crate::procfs;
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::variant::{Transport, Variant};

/// An agent waiting this long with no change gives up (its parent died).
pub(crate) const ABANDONED: Duration = Duration::from_secs(10);

pub(crate) fn task(role: Role, cpu: Option<usize>) -> AgentTask {
    AgentTask {
        role,
        variant: Variant::of(Transport::Pipe),
        cpu,
    }
}

/// Runs `measure` with the parent pinned (and hands it the agent's CPU),
/// if `pin` and the machine has two CPUs.
pub(crate) fn placed<T>(
    pin: bool,
    measure: impl FnOnce(Option<usize>) -> Result<T>,
) -> Result<(T, bool)> {
    let cpus = pin.then(crate::pin::cpus).flatten();
    let _pinned = crate::pin::PinGuard::new(cpus.map(|c| c.0));
    Ok((measure(cpus.map(|c| c.1))?, cpus.is_some()))
}

/// Reaps a baseline agent, killing it if it does not exit soon.
#[derive(Debug)]
pub(crate) struct Reaped(pub(crate) Child);

impl Reaped {
    pub(crate) fn cpu_ns(&self) -> u64 {
        procfs::cpu_ns(self.0.id()).unwrap_or(0)
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A round-trip mechanism with a child on the other side.
pub trait Echoing {
    /// One round trip of the current payload: timed part only.
    fn round_trip(&mut self) -> Result<Duration>;
    /// The payload buffer to fill before, and the echo to verify after.
    fn buffers(&mut self) -> (&mut [u8], &[u8]);
    /// CPU time the child has used so far, nanoseconds.
    fn child_cpu_ns(&self) -> u64;

    /// One round trip of the current payload (for benches).
    fn once(&mut self) -> Result<Duration> {
        self.round_trip()
    }
}

/// Warm-up, then `samples` timed round trips (with `gap` before each),
/// every payload filled before and verified after the timed part. Also
/// the CPU both processes used over the recorded window, per round trip.
pub(crate) fn record_round_trips<M: Echoing>(
    m: &mut M,
    warmup: u64,
    samples: u64,
    gap: Duration,
) -> Result<(Recorder, f64)> {
    let mut seq = 0u64;
    let mut once = |m: &mut M| -> Result<Duration> {
        payload::fill(seq, m.buffers().0);
        let took = m.round_trip()?;
        payload::verify(seq, m.buffers().1)?;
        seq += 1;
        Ok(took)
    };
    for _ in 0..warmup {
        once(m)?;
    }
    let cpu_start = procfs::self_cpu_ns() + m.child_cpu_ns();
    let mut recorder = Recorder::new();
    for _ in 0..samples {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        recorder.record(once(m)?);
    }
    let cpu = (procfs::self_cpu_ns() + m.child_cpu_ns()).saturating_sub(cpu_start);
    Ok((recorder, cpu as f64 / samples.max(1) as f64))
}
