//! What a stream receiver may hold of a frame that has begun to arrive and
//! is not complete: how long it waits for the rest ([`Config::frame_deadline`])
//! and how much memory all such frames of a process (or of the
//! connections sharing one [`FrameBudget`]) may hold meanwhile.
//!
//! Without both, a peer that sends all of a maximum-size frame but its
//! last byte holds that much of the receiver's memory for as long as it
//! likes, and a few such peers hold the receiver's memory hostage.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;

use crate::{Config, RecvError};

/// The default [`Config::frame_deadline`]: 5 s.
pub const DEFAULT_FRAME_DEADLINE: Duration = Duration::from_secs(5);

/// The limit of the process-wide [`FrameBudget`] every [`Config`] shares
/// unless it is given another: 256 MiB.
pub const DEFAULT_FRAME_BUDGET: usize = 256 << 20;

/// Bytes every receiver asks of the kernel in one go.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// What a receiver's buffer may hold uncharged: a frame below
/// [`READ_CHUNK`] never touches the shared count.
const UNCHARGED: usize = 2 * READ_CHUNK;

/// A read buffer is reserved for the length a header declares at once up
/// to this size; a larger frame is reserved this much first and its whole
/// length once this much of it has arrived: a peer must send a MiB before
/// its claim costs the budget more, and the buffer moves once at most.
/// (Growing in steps copied more, and the steps freed to the allocator
/// stayed resident: a 48 MiB budget let RSS grow by 91 MiB.)
const RESERVE_AT_ONCE: usize = 1 << 20;

/// How long a receiver waits before it looks at an exhausted budget again.
pub(crate) const BUDGET_SLICE: Duration = Duration::from_millis(5);

/// A cap on the bytes that frames begun and not finished may hold in the
/// receivers sharing it (clones share one count).
///
/// [`Config::default`] gives every connection the process-wide budget
/// ([`FrameBudget::process`], [`DEFAULT_FRAME_BUDGET`]); a hub that wants
/// its own gives its listeners' configs one [`FrameBudget::new`]. When
/// the budget is spent, a receiver that needs more for its frame stops
/// reading (its peer's sends wait, as when the buffer is full) until
/// other frames finish or are cut off at their deadline. That wait counts
/// against its own frame's deadline only if the frame already holds part
/// of the budget (else frames holding parts could wait for each other
/// forever).
///
/// ```
/// use ipc_core::{Config, FrameBudget};
/// let budget = FrameBudget::new(64 << 20);
/// let config = Config::default().with_frame_budget(budget.clone());
/// assert_eq!(config.frame_budget.limit(), 64 << 20);
/// assert_eq!(budget.in_use(), 0);
/// ```
#[derive(Clone)]
pub struct FrameBudget(Arc<Budget>);

struct Budget {
    limit: usize,
    used: AtomicUsize,
}

impl FrameBudget {
    /// A budget of `limit` bytes, shared by its clones.
    pub fn new(limit: usize) -> Self {
        FrameBudget(Arc::new(Budget {
            limit,
            used: AtomicUsize::new(0),
        }))
    }

    /// The process-wide budget ([`DEFAULT_FRAME_BUDGET`]).
    pub fn process() -> Self {
        static PROCESS: std::sync::OnceLock<FrameBudget> = std::sync::OnceLock::new();
        PROCESS
            .get_or_init(|| FrameBudget::new(DEFAULT_FRAME_BUDGET))
            .clone()
    }

    /// Its limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes unfinished frames hold now.
    pub fn in_use(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes if they fit under the limit.
    fn try_take(&self, n: usize) -> bool {
        self.0
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.0.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.0.used.fetch_sub(n, Ordering::AcqRel);
    }
}

impl PartialEq for FrameBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for FrameBudget {}

impl std::fmt::Debug for FrameBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .finish()
    }
}

/// One receiver's unfinished frame: its charge to the budget and the time
/// the receiver has waited for the rest of it.
#[derive(Debug)]
pub(crate) struct Assembly {
    budget: FrameBudget,
    deadline: Option<Duration>,
    /// Bytes charged to the budget.
    held: usize,
    /// Time spent waiting for bytes of the unfinished frame.
    waited: Duration,
    /// The frame deadline passed: the connection is finished.
    overdue: bool,
}

impl Assembly {
    pub(crate) fn new(config: &Config) -> Self {
        Assembly {
            budget: config.frame_budget.clone(),
            deadline: config.frame_deadline,
            held: 0,
            waited: Duration::ZERO,
            overdue: false,
        }
    }

    /// Makes room in `rbuf` for the next read, `wanted` being what the
    /// decoder still needs. False when the budget cannot cover the growth
    /// now: wait [`BUDGET_SLICE`] (or less) and try again.
    pub(crate) fn reserve(&mut self, rbuf: &mut BytesMut, wanted: usize) -> bool {
        let grow = if rbuf.len() + wanted <= RESERVE_AT_ONCE || rbuf.len() >= RESERVE_AT_ONCE {
            wanted
        } else {
            RESERVE_AT_ONCE - rbuf.len()
        }
        .max(READ_CHUNK);
        let need = (rbuf.len() + grow).saturating_sub(UNCHARGED);
        if need > self.held {
            if !self.budget.try_take(need - self.held) {
                return false;
            }
            self.held = need;
        }
        rbuf.reserve(grow);
        true
    }

    /// A frame of `len` bytes was taken: its memory is the caller's now,
    /// and the next frame has its own deadline. A buffer grown for a large
    /// frame is given up: the frame keeps the allocation it was read into
    /// (freed when the caller drops it), and whatever followed it is moved
    /// to a buffer of ordinary size. (Kept, the buffer's tail would hold
    /// the whole large allocation alive as long as the connection lives.)
    pub(crate) fn frame_done(&mut self, rbuf: &mut BytesMut, len: usize) {
        self.release();
        self.waited = Duration::ZERO;
        if (len > UNCHARGED || rbuf.capacity() > 4 * READ_CHUNK) && rbuf.len() <= READ_CHUNK {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK);
            fresh.extend_from_slice(rbuf);
            *rbuf = fresh;
        }
    }

    /// How much longer the receiver may wait for the unfinished frame
    /// (`None`: no deadline).
    pub(crate) fn time_left(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_sub(self.waited))
    }

    /// Counts time waited for the unfinished frame; true once that is
    /// past the deadline.
    pub(crate) fn waited(&mut self, waited: Duration) -> bool {
        self.waited = self.waited.saturating_add(waited);
        self.deadline.is_some_and(|d| self.waited >= d)
    }

    /// Counts time waited for budget: against the deadline only when this
    /// frame holds some already (frames that each hold part of the budget
    /// and wait for more would otherwise wait for each other forever); a
    /// frame that holds none waits for others without losing time.
    pub(crate) fn waited_for_budget(&mut self, waited: Duration) -> bool {
        self.held > 0 && self.waited(waited)
    }

    /// The frame deadline passed: frees what the frame held and fails the
    /// connection for good.
    pub(crate) fn give_up(&mut self, rbuf: &mut BytesMut) -> RecvError {
        self.overdue = true;
        *rbuf = BytesMut::new();
        self.release();
        self.error()
    }

    /// The error every receive returns once the deadline has passed.
    pub(crate) fn check(&self) -> Result<(), RecvError> {
        if self.overdue {
            return Err(self.error());
        }
        Ok(())
    }

    fn error(&self) -> RecvError {
        RecvError::Corrupted(format!(
            "the peer began a frame and did not finish it within the frame deadline ({:?})",
            self.deadline.unwrap_or_default()
        ))
    }

    fn release(&mut self) {
        if self.held > 0 {
            self.budget.give_back(self.held);
            self.held = 0;
        }
    }
}

impl Drop for Assembly {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assembly(budget: &FrameBudget, deadline: Option<Duration>) -> Assembly {
        let config = Config::default()
            .with_frame_budget(budget.clone())
            .with_frame_deadline(deadline);
        Assembly::new(&config)
    }

    #[test]
    fn small_frames_cost_the_budget_nothing() {
        let budget = FrameBudget::new(0);
        let mut a = assembly(&budget, None);
        let mut buf = BytesMut::new();
        assert!(a.reserve(&mut buf, 100));
        assert!(buf.capacity() >= READ_CHUNK);
        // Part of a frame below a chunk is buffered: still nothing.
        buf.resize(READ_CHUNK - 1, 0);
        assert!(a.reserve(&mut buf, 1));
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn a_large_claim_costs_a_mib_until_a_mib_came() {
        let budget = FrameBudget::new(1 << 30);
        let mut a = assembly(&budget, None);
        let mut buf = BytesMut::new();
        // A header declaring 16 MiB, and nothing after it.
        assert!(a.reserve(&mut buf, 16 << 20));
        assert!(buf.capacity() < 2 << 20, "{}", buf.capacity());
        assert!(budget.in_use() < 1 << 20);
        // Then its first MiB arrives: the whole frame is reserved.
        buf.resize(1 << 20, 0);
        assert!(a.reserve(&mut buf, 15 << 20));
        assert!(buf.capacity() >= 16 << 20, "{}", buf.capacity());
        assert!(budget.in_use() >= 15 << 20);
        // The frame is taken, a few bytes of the next one follow it.
        buf.resize((16 << 20) + 10, 0);
        let frame = buf.split_to(16 << 20).freeze();
        a.frame_done(&mut buf, frame.len());
        assert_eq!(budget.in_use(), 0);
        assert!(buf.capacity() <= 2 * READ_CHUNK, "kept {}", buf.capacity());
    }

    #[test]
    fn a_spent_budget_refuses_growth_until_released_and_drop_releases() {
        let budget = FrameBudget::new(4 << 20);
        let mut first = assembly(&budget, None);
        let mut second = assembly(&budget, None);
        let (mut b1, mut b2) = (BytesMut::new(), BytesMut::new());
        b1.resize(3 << 20, 0);
        assert!(first.reserve(&mut b1, 1 << 20));
        assert!(budget.in_use() > 3 << 20);
        b2.resize(3 << 20, 0);
        assert!(!second.reserve(&mut b2, 1 << 20), "over the budget");
        drop(first);
        assert_eq!(budget.in_use(), 0);
        assert!(second.reserve(&mut b2, 1 << 20));
    }

    #[test]
    fn the_deadline_counts_only_waiting_and_fails_for_good() {
        let budget = FrameBudget::new(1 << 30);
        let mut a = assembly(&budget, Some(Duration::from_secs(5)));
        assert_eq!(a.time_left(), Some(Duration::from_secs(5)));
        assert!(!a.waited(Duration::from_secs(3)));
        assert_eq!(a.time_left(), Some(Duration::from_secs(2)));
        let mut buf = BytesMut::new();
        buf.resize(2 << 20, 1);
        assert!(a.reserve(&mut buf, 1 << 20));
        assert!(a.waited(Duration::from_secs(2)));
        assert!(matches!(a.give_up(&mut buf), RecvError::Corrupted(_)));
        assert_eq!(buf.capacity(), 0);
        assert_eq!(budget.in_use(), 0);
        assert!(a.check().is_err());
        // A finished frame starts the next one's clock afresh.
        let mut b = assembly(&budget, Some(Duration::from_secs(5)));
        b.waited(Duration::from_secs(4));
        b.frame_done(&mut BytesMut::new(), 0);
        assert_eq!(b.time_left(), Some(Duration::from_secs(5)));
    }
}
