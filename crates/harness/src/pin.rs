//! CPU placement for two-process scenarios.
//!
//! On a two-CPU machine the scheduler sometimes puts both processes of a
//! ping-pong on one CPU and sometimes on two; the round trip then differs
//! by 20x between runs (a context switch against a cache-line hand-off).
//! Pinning the parent to one CPU and its agent to another makes the regime
//! fixed and stated; results say whether they were pinned.

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The CPUs a pinned scenario uses: (parent, agent), if the machine has two.
pub fn cpus() -> Option<(usize, usize)> {
    let allowed = sched_getaffinity(None).ok()?;
    let mut cpus = (0..CpuSet::MAX_CPU).filter(|&c| allowed.is_set(c));
    Some((cpus.next()?, cpus.next()?))
}

/// Pins the calling thread to `cpu`; best effort.
pub fn pin_current_thread(cpu: usize) -> bool {
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set).is_ok()
}

/// Pins the calling thread to a CPU until dropped, then restores its
/// previous CPU set.
#[derive(Debug)]
pub struct PinGuard {
    previous: Option<CpuSet>,
}

impl PinGuard {
    /// Pins to `cpu` (no-op for `None`).
    pub fn new(cpu: Option<usize>) -> Self {
        let previous = cpu.and_then(|cpu| {
            let previous = sched_getaffinity(None).ok()?;
            pin_current_thread(cpu).then_some(previous)
        });
        PinGuard { previous }
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            let _ = sched_setaffinity(None, previous);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_is_applied_and_restored() {
        let before = sched_getaffinity(None).unwrap();
        if let Some((parent, _)) = cpus() {
            let guard = PinGuard::new(Some(parent));
            let now = sched_getaffinity(None).unwrap();
            assert!(now.is_set(parent));
            assert_eq!((0..CpuSet::MAX_CPU).filter(|&c| now.is_set(c)).count(), 1);
            drop(guard);
        }
        let after = sched_getaffinity(None).unwrap();
        assert!((0..CpuSet::MAX_CPU).all(|c| after.is_set(c) == before.is_set(c)));
    }
}
