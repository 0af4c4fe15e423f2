//! Parking and waking across processes, and the wait strategies.
//!
//! A side that must wait first re-checks its condition in a loop whose
//! shape is the [`WaitStrategy`](ipc_core::WaitStrategy): spinning,
//! yielding, or parking. Parking is always a futex wait on the direction's
//! [`Signal`], announced in its `waiting` word so the other side knows to
//! wake it after publishing (see `ring.rs` for why no wake-up is lost).
//! Waking is one `FUTEX_WAKE` and never waits on anything: whatever the
//! peer writes into the shared words, a side's deadline and drop hold
//! (there is no lock in the segment that a peer could hold). A park lasts
//! at most [`ARMED_SLICE`] while the peer's lifeline is armed (its death
//! wakes us at once) and [`PARK_SLICE`] otherwise, after which the caller
//! re-checks its condition and the peer's liveness.

use std::time::Duration;

use rustix::thread::futex;

use crate::lifeline::{self, Lifeline};
use crate::ring::Signal;
use crate::sync::{AtomicU32, Ordering, fence};

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

/// Wakes whoever is parked on `signal`. The `waiting` word is only a
/// hint that saves the system call when no one parks: a peer that writes
/// garbage there costs us one needless `FUTEX_WAKE`, nothing more.
pub(crate) fn wake(signal: &Signal) {
    signal.seq.fetch_add(1, Ordering::Release);
    if signal.waiting.load(Ordering::Relaxed) != 0 {
        // Shared (not PRIVATE) futex: the waiter is another process.
        let _ = futex::wake(&signal.seq, futex::Flags::empty(), u32::MAX);
    }
}

/// Longest park on the futex while the peer's lifeline is armed: its death
/// wakes us, so this is only a safety net (one wake-up a second).
pub(crate) const ARMED_SLICE: Duration = Duration::from_secs(1);

/// Parks on `signal` for at most `timeout` (and at most a slice), unless
/// `still_waiting` turns false once the park is announced. With a futex,
/// also wakes when the peer's `lifeline` owner dies. Returns early on a
/// wake-up, a signal, or spuriously; the caller re-checks either way.
pub(crate) fn park(
    signal: &Signal,
    timeout: Duration,
    lifeline: &AtomicU32,
    still_waiting: impl FnOnce() -> bool,
) {
    let seq = signal.seq.load(Ordering::Acquire);
    signal.waiting.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if still_waiting() {
        match lifeline::arm(lifeline) {
            Lifeline::Dead => {}
            Lifeline::Armed(alive) => {
                wait_either(&signal.seq, seq, lifeline, alive, timeout.min(ARMED_SLICE));
            }
            Lifeline::Unarmed => {
                let timeout =
                    futex::Timespec::try_from(timeout.min(PARK_SLICE)).unwrap_or(futex::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    });
                // EAGAIN (seq moved on), ETIMEDOUT and EINTR all mean: look again.
                let _ = futex::wait(&signal.seq, futex::Flags::empty(), seq, Some(&timeout));
            }
        }
    }
    signal.waiting.store(0, Ordering::Relaxed);
}

/// `futex_waitv` on the data word and the peer's lifeline at once.
fn wait_either(data: &AtomicU32, seq: u32, lifeline: &AtomicU32, alive: u32, timeout: Duration) {
    let mut waiters = [futex::Wait::new(), futex::Wait::new()];
    for (w, (word, value)) in waiters.iter_mut().zip([(data, seq), (lifeline, alive)]) {
        w.uaddr = futex::WaitPtr::new(word as *const AtomicU32 as *mut _);
        w.val = u64::from(value);
        // Shared (not PRIVATE): the other side is another process.
        w.flags = futex::WaitFlags::SIZE_U32;
    }
    // futex_waitv takes an absolute deadline.
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let mut deadline = futex::Timespec {
        tv_sec: now.tv_sec + timeout.as_secs() as i64,
        tv_nsec: now.tv_nsec + i64::from(timeout.subsec_nanos()),
    };
    if deadline.tv_nsec >= 1_000_000_000 {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1_000_000_000;
    }
    // EAGAIN (a word moved on), ETIMEDOUT and EINTR all mean: look again.
    let _ = futex::waitv(
        &waiters,
        futex::WaitvFlags::empty(),
        Some(&deadline),
        futex::ClockId::Monotonic,
    );
}
