//! Parking across processes, and the wait strategies.
//!
//! A side that must wait first re-checks its condition in a loop whose
//! shape is the [`WaitStrategy`](ipc_core::WaitStrategy): spinning,
//! yielding, or parking. Parking waits on the direction's doorbell
//! (`bell.rs`), announced in the ring's `waiting` word so the other side
//! knows to ring it after publishing (see `ring.rs` for why no wake-up is
//! lost). Ringing is one non-blocking send and never waits on anything:
//! whatever the peer writes into the shared words, a side's deadline and
//! drop hold (there is no lock in the segment that a peer could hold). A
//! park also ends when the peer's process does (its doorbell ends close,
//! and its pidfd turns readable); without a pidfd it lasts at most
//! [`PARK_SLICE`], after which the caller re-checks the peer through
//! `/proc`.

use std::time::{Duration, Instant};

use std::os::fd::BorrowedFd;

use ipc_core::WaitStrategy;

use crate::bell::Bell;
use crate::ring::Signal;
use crate::sync::{Ordering, fence};

/// Longest single park where the peer's process has no pidfd; bounds how
/// late a dead peer is noticed then (the design bound is 100 ms).
pub(crate) const PARK_SLICE: Duration = Duration::from_millis(50);

/// The shortest spin phase of a
/// [`WaitStrategy::Adaptive`](ipc_core::WaitStrategy::Adaptive) wait
/// (first purely, then yielding the CPU between checks) before it parks.
/// A kernel wake-up costs about 40-50 us round trip on the machines we
/// measure (docs/ARCHITECTURE.md); spinning about as long catches a peer
/// that answers fast, and parking after it caps the CPU an idle wait
/// burns. Yielding matters when both processes share a CPU: a pure spin
/// would only delay the peer it waits for.
pub(crate) const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

/// The longest spin phase an adaptive wait learns (see [`SpinBudget`]):
/// a side whose peer answers within this keeps spinning through its
/// waits, as `Spin` would, instead of paying a kernel wake-up each time
/// (a 1 MiB round trip waits longer than [`ADAPTIVE_SPIN`] for its
/// answer).
pub(crate) const ADAPTIVE_SPIN_MAX: Duration = Duration::from_micros(250);

/// How long a side's adaptive waits spin before parking, learned from its
/// last waits, one budget per direction (data, space).
///
/// A wait that ended within [`ADAPTIVE_SPIN_MAX`] raises the budget to
/// twice its length (so the next one like it is caught spinning); a wait
/// longer than that (the peer was idle or slow: spinning was wasted)
/// halves it, down to [`ADAPTIVE_SPIN`]. Short waits leave it alone: a
/// spin that ends early costs nothing more for a larger budget. So an
/// idle side spins [`ADAPTIVE_SPIN`] per wait as before, and a side in a
/// steady exchange spins up to [`ADAPTIVE_SPIN_MAX`] per wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpinBudget(Duration);

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget(ADAPTIVE_SPIN)
    }
}

impl SpinBudget {
    /// The spin phase of the next adaptive wait.
    pub(crate) fn get(self) -> Duration {
        self.0
    }

    /// Learns from a wait that lasted `waited` and got what it waited for.
    pub(crate) fn learn(&mut self, waited: Duration) {
        self.0 = if waited <= ADAPTIVE_SPIN_MAX {
            self.0.max((waited * 2).min(ADAPTIVE_SPIN_MAX))
        } else {
            (self.0 / 2).max(ADAPTIVE_SPIN)
        };
    }
}

/// Pure spins at the start of an adaptive wait, before it spins with
/// `sched_yield` (about a microsecond: an answer from a peer running on
/// another CPU usually comes within it).
pub(crate) const ADAPTIVE_PURE_SPINS: u32 = 64;

/// Spins before `SpinYield` starts yielding.
pub(crate) const SPINS_BEFORE_YIELD: u32 = 128;

/// How often a spinning wait looks at the clock, in spins: the clock
/// read, the deadline and the peer checks cost more than a spin, and a
/// few spins late is a few hundred nanoseconds.
pub(crate) const CLOCK_EVERY: u32 = 32;

/// How often a spinning wait polls the peer's pidfd (about a microsecond
/// each), so a spinning side notices a dead peer within about this long.
pub(crate) const SPIN_CHECK: Duration = Duration::from_millis(1);

/// What a waiting side does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Spin,
    Yield,
    Park,
}

/// A look at the clock during a wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tick {
    /// Now, when the clock was read this round (deadlines are checked
    /// only then).
    pub(crate) now: Option<Instant>,
    /// Whether to check the peer's process (its pidfd, a system call):
    /// after a park, and every [`SPIN_CHECK`] of spinning. The cheap
    /// checks (closed flag, lifeline) go with every clock read.
    pub(crate) check_peer: bool,
}

/// The one wait engine: the pace of every wait, blocking or async (the
/// async helper thread runs it too), as its [`WaitStrategy`] says. The
/// caller's loop is: attempt; [`tick`](Self::tick) (check the deadline
/// and the peer when it says); [`step`](Self::step); spin, yield or park.
#[derive(Debug)]
pub(crate) struct Pacer {
    strategy: WaitStrategy,
    /// Adaptive: spin this long before parking.
    budget: Duration,
    spins: u32,
    started: Option<Instant>,
    /// The last clock read.
    last_now: Option<Instant>,
    /// This wait has parked.
    parked: bool,
    last_check: Option<Instant>,
    /// Adaptive: the spinning phase is over, park from now on.
    spun_out: bool,
    /// A park just ended: check the peer's process at the next tick.
    check_next: bool,
    /// The last step was a yield or a park: read the clock next round.
    slow: bool,
}

impl Pacer {
    /// A wait paced as `strategy` says; an adaptive one spins for
    /// `budget` (see [`SpinBudget`]) before it parks.
    pub(crate) fn new(strategy: WaitStrategy, budget: SpinBudget) -> Self {
        Pacer {
            strategy,
            budget: budget.get(),
            spins: 0,
            started: None,
            last_now: None,
            parked: false,
            last_check: None,
            spun_out: false,
            check_next: false,
            slow: false,
        }
    }

    /// After a failed attempt: reads the clock on the first, then every
    /// [`CLOCK_EVERY`] spins and after every yield or park.
    pub(crate) fn tick(&mut self) -> Tick {
        if !self.slow && !self.spins.is_multiple_of(CLOCK_EVERY) {
            return Tick {
                now: None,
                check_peer: false,
            };
        }
        let now = Instant::now();
        let started = *self.started.get_or_insert(now);
        self.last_now = Some(now);
        if now.duration_since(started) >= self.budget {
            self.spun_out = true;
        }
        // Not at once: a wait that ends within a millisecond (nearly
        // all of them when spinning) never pays the system call.
        let check_peer = self.check_next
            || self
                .last_check
                .is_some_and(|t| now.duration_since(t) >= SPIN_CHECK);
        if check_peer || self.last_check.is_none() {
            self.last_check = Some(now);
        }
        self.check_next = false;
        Tick {
            now: Some(now),
            check_peer,
        }
    }

    /// What to do before the next attempt. Parks only in a round whose
    /// [`tick`](Self::tick) read the clock (so the park knows its
    /// deadline).
    pub(crate) fn step(&mut self, tick: Tick) -> Step {
        self.spins = self.spins.wrapping_add(1);
        let step = match self.strategy {
            WaitStrategy::Spin => Step::Spin,
            WaitStrategy::SpinYield if self.spins < SPINS_BEFORE_YIELD => Step::Spin,
            WaitStrategy::SpinYield => Step::Yield,
            // Blocking parks at once: no spinning, no CPU while waiting.
            WaitStrategy::Blocking => Step::Park,
            _ if self.spins < ADAPTIVE_PURE_SPINS => Step::Spin,
            // A peer on our own CPU cannot answer while we spin: yield so
            // it runs (a no-op when no one else is ready).
            _ if !self.spun_out => Step::Yield,
            _ => Step::Park,
        };
        let step = match (step, tick.now) {
            (Step::Park, None) => Step::Spin,
            (step, _) => step,
        };
        self.slow = step != Step::Spin;
        if step == Step::Park {
            // After a park, look at the peer's process at once.
            self.check_next = true;
            self.parked = true;
        }
        step
    }

    /// Once the attempt succeeded: teaches `budget` how long this wait
    /// lasted (nothing if it never had to wait).
    pub(crate) fn teach(&self, budget: &mut SpinBudget) {
        if let Some(waited) = self.waited() {
            budget.learn(waited);
        }
    }

    /// How long this wait has lasted: `None` if it never had to wait.
    /// Without a park, the last clock read stands in for the end (at most
    /// a few spins early: the hot path reads no clock for this); after
    /// one, the clock is read again.
    fn waited(&self) -> Option<Duration> {
        let started = self.started?;
        let end = match self.parked {
            true => Instant::now(),
            false => self.last_now?,
        };
        Some(end.saturating_duration_since(started))
    }
}

/// Parks on `bell` for at most `timeout`, unless `still_waiting` turns
/// false once the park is announced in `signal`. Also wakes when the
/// peer's process ends (`process`, its pidfd; without one, parks last at
/// most [`PARK_SLICE`] so the caller can look at `/proc`). Returns early
/// on a ring, a signal, or spuriously; the caller re-checks either way.
pub(crate) fn park(
    signal: &Signal,
    bell: &Bell,
    timeout: Duration,
    process: Option<BorrowedFd<'_>>,
    still_waiting: impl FnOnce() -> bool,
) {
    signal.waiting.store(1, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    if still_waiting() {
        let timeout = match process {
            Some(_) => timeout,
            None => timeout.min(PARK_SLICE),
        };
        bell.wait(timeout, process);
    }
    signal.waiting.store(0, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a pacer for `rounds` failed attempts, sleeping `pause` after
    /// each, and returns its steps.
    fn steps(strategy: WaitStrategy, rounds: usize, pause: Duration) -> Vec<Step> {
        let mut pacer = Pacer::new(strategy, SpinBudget::default());
        (0..rounds)
            .map(|_| {
                let tick = pacer.tick();
                let step = pacer.step(tick);
                std::thread::sleep(pause);
                step
            })
            .collect()
    }

    #[test]
    fn each_strategy_paces_as_documented() {
        let quick = Duration::ZERO;
        assert!(
            steps(WaitStrategy::Spin, 1000, quick)
                .iter()
                .all(|s| *s == Step::Spin)
        );
        assert_eq!(steps(WaitStrategy::Blocking, 3, quick), [Step::Park; 3]);
        let spin_yield = steps(WaitStrategy::SpinYield, 200, quick);
        assert!(
            spin_yield[..SPINS_BEFORE_YIELD as usize - 1]
                .iter()
                .all(|s| *s == Step::Spin)
        );
        assert!(
            spin_yield[SPINS_BEFORE_YIELD as usize..]
                .iter()
                .all(|s| *s == Step::Yield)
        );
        // Adaptive: pure spins, then yields while the spin phase lasts,
        // then parks (each round here takes longer than the whole phase
        // once the pure spins are done).
        let adaptive = steps(
            WaitStrategy::Adaptive,
            ADAPTIVE_PURE_SPINS as usize + 3,
            quick,
        );
        assert!(
            adaptive[..ADAPTIVE_PURE_SPINS as usize - 1]
                .iter()
                .all(|s| *s == Step::Spin)
        );
        let slow = steps(
            WaitStrategy::Adaptive,
            ADAPTIVE_PURE_SPINS as usize + 3,
            ADAPTIVE_SPIN,
        );
        assert_eq!(slow.last(), Some(&Step::Park));
    }

    #[test]
    fn the_clock_is_read_every_few_spins_and_after_every_park() {
        let mut pacer = Pacer::new(WaitStrategy::Spin, SpinBudget::default());
        let reads = (0..CLOCK_EVERY * 4)
            .filter(|_| {
                let tick = pacer.tick();
                pacer.step(tick);
                tick.now.is_some()
            })
            .count();
        assert_eq!(reads, 4);
        let mut pacer = Pacer::new(WaitStrategy::Blocking, SpinBudget::default());
        for round in 0..3 {
            let tick = pacer.tick();
            assert!(tick.now.is_some());
            // The first look is cheap; every look after a park is full.
            assert_eq!(tick.check_peer, round > 0, "round {round}");
            assert_eq!(pacer.step(tick), Step::Park);
        }
        // Spinning, the process is checked once per SPIN_CHECK, not at once.
        let mut pacer = Pacer::new(WaitStrategy::Spin, SpinBudget::default());
        let first = pacer.tick();
        assert!(!first.check_peer);
        pacer.step(first);
        std::thread::sleep(SPIN_CHECK);
        let checks = (0..CLOCK_EVERY * 2)
            .filter(|_| {
                let tick = pacer.tick();
                pacer.step(tick);
                tick.check_peer
            })
            .count();
        assert_eq!(checks, 1);
    }

    #[test]
    fn the_spin_budget_grows_to_catch_steady_waits_and_shrinks_when_idle() {
        let us = Duration::from_micros;
        let mut budget = SpinBudget::default();
        assert_eq!(budget.get(), ADAPTIVE_SPIN);
        // A 100 us answer: spin twice that next time.
        budget.learn(us(100));
        assert_eq!(budget.get(), us(200));
        // Short waits cost nothing more for a larger budget: kept.
        budget.learn(us(1));
        assert_eq!(budget.get(), us(200));
        // Never beyond the cap.
        budget.learn(ADAPTIVE_SPIN_MAX);
        assert_eq!(budget.get(), ADAPTIVE_SPIN_MAX);
        // Long waits (an idle peer) halve it, down to the floor.
        budget.learn(Duration::from_secs(1));
        assert_eq!(budget.get(), ADAPTIVE_SPIN_MAX / 2);
        for _ in 0..8 {
            budget.learn(Duration::from_secs(1));
        }
        assert_eq!(budget.get(), ADAPTIVE_SPIN);
    }

    #[test]
    fn an_adaptive_wait_spins_for_its_budget_then_parks() {
        for budget in [ADAPTIVE_SPIN, ADAPTIVE_SPIN_MAX] {
            let mut learned = SpinBudget::default();
            learned.learn(budget / 2);
            assert_eq!(learned.get(), budget);
            let start = Instant::now();
            let mut pacer = Pacer::new(WaitStrategy::Adaptive, learned);
            let parked_at = loop {
                let tick = pacer.tick();
                if pacer.step(tick) == Step::Park {
                    break start.elapsed();
                }
                std::thread::sleep(Duration::from_micros(10));
            };
            // Not before the budget is spent (the pacer's clock started
            // after ours), and it did end.
            assert!(parked_at >= budget, "{budget:?}: parked at {parked_at:?}");
            let waited = pacer.waited().expect("it waited");
            assert!(waited >= budget && waited <= start.elapsed(), "{waited:?}");
        }
        // A wait whose first attempt succeeded did not wait.
        let pacer = Pacer::new(WaitStrategy::Adaptive, SpinBudget::default());
        assert_eq!(pacer.waited(), None);
    }
}
