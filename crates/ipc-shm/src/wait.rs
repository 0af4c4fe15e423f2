//! Parking and waking across processes, and the wait strategies.
//!
//! A side that must wait first re-checks its condition in a loop whose
//! shape is the [`WaitStrategy`](ipc_core::WaitStrategy): spinning,
//! yielding, or parking. Parking announces itself in the direction's
//! [`Signal`] (`waiting` = how it parks) so the other side knows to wake it
//! after publishing (see `ring.rs` for why no wake-up is lost). Every park
//! lasts at most [`PARK_SLICE`], after which the caller re-checks its
//! condition and the peer's liveness: a dead peer is noticed within a slice
//! even though it will never wake us.

use std::time::Duration;

use rustix::thread::futex;

use crate::ring::Signal;
use crate::segment::SharedEvent;
use crate::sync::{Ordering, fence};

/// Longest single park; bounds how late a dead peer is noticed (the
/// design bound is 100 ms). Each slice that ends without a wake-up costs a
/// futex call and a pidfd poll, a few microseconds: 20 per second for an
/// idle waiter.
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

/// How long [`WaitStrategy::Adaptive`](ipc_core::WaitStrategy::Adaptive)
/// spins (first purely, then yielding the CPU between checks) before
/// parking. A kernel wake-up costs about 40-50 us round trip on the
/// machines we measure (docs/ARCHITECTURE.md); spinning about as long
/// catches a peer that answers fast, and parking after it caps the CPU an
/// idle wait burns. Yielding matters when both processes share a CPU: a
/// pure spin would only delay the peer it waits for.
pub(crate) const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

/// Pure spins at the start of an adaptive wait, before it spins with
/// `sched_yield` (about a microsecond: an answer from a peer running on
/// another CPU usually comes within it).
pub(crate) const ADAPTIVE_PURE_SPINS: u32 = 64;

/// Spins before `SpinYield` starts yielding.
pub(crate) const SPINS_BEFORE_YIELD: u32 = 128;

/// How a parked side waits, as stored in `Signal::waiting`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ParkMode {
    /// `FUTEX_WAIT` on `Signal::seq`.
    Futex = 1,
    /// On the direction's `raw_sync` event.
    Event = 2,
}

/// Wakes whoever is parked on `signal`, however it parks.
pub(crate) fn wake(signal: &Signal, event: &SharedEvent) {
    signal.seq.fetch_add(1, Ordering::Release);
    match signal.waiting.load(Ordering::Relaxed) {
        w if w == ParkMode::Futex as u32 => {
            // Shared (not PRIVATE) futex: the waiter is another process.
            let _ = futex::wake(&signal.seq, futex::Flags::empty(), u32::MAX);
        }
        w if w == ParkMode::Event as u32 => event.set(),
        _ => {}
    }
}

/// Parks on `signal` for at most `timeout`, unless `still_waiting` turns
/// false once the park is announced. Returns early on a wake-up, a signal,
/// or spuriously; the caller re-checks its condition either way.
pub(crate) fn park(
    signal: &Signal,
    event: &SharedEvent,
    mode: ParkMode,
    timeout: Duration,
    still_waiting: impl FnOnce() -> bool,
) {
    let seq = signal.seq.load(Ordering::Acquire);
    signal.waiting.store(mode as u32, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if still_waiting() {
        match mode {
            ParkMode::Futex => {
                let timeout = rustix::thread::futex::Timespec::try_from(timeout).unwrap_or(
                    rustix::thread::futex::Timespec {
                        tv_sec: 1,
                        tv_nsec: 0,
                    },
                );
                // EAGAIN (seq moved on), ETIMEDOUT and EINTR all mean: look again.
                let _ = futex::wait(&signal.seq, futex::Flags::empty(), seq, Some(&timeout));
            }
            ParkMode::Event => event.wait(timeout),
        }
    }
    signal.waiting.store(0, Ordering::Relaxed);
}
