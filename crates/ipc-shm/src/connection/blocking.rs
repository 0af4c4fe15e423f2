//! The blocking driver: waiting between the non-blocking steps as the
//! wait strategy says (`wait::Pacer`: spin, yield, park on the doorbell
//! and the peer's pidfd), and the blocking send and receive built on it.
//! The tokio driver (`asynchronous.rs`) paces the same steps on the
//! reactor instead.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ipc_core::{FrameReceiver, FrameSender, RecvError, SendError};

use super::{Dir, Fail, IDLE_RELEASE, ShmConnection};
use crate::blob::{POOL_LIMIT, SealedBlob};
use crate::ring::kind;
use crate::sync::spin_loop;
use crate::wait::{Pacer, Step};
use crate::{blob, wait};

/// How long dropping a connection waits to push out the rest of a
/// committed message.
const DROP_LINGER: Duration = Duration::from_secs(1);

/// How long an operation may wait.
///
/// A timeout becomes a deadline only when an operation first has to wait
/// (`Within` turns into `Until`), so an operation that succeeds at once
/// never reads the clock; the operations of one call share that deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    Never,
    Within(Duration),
    Until(Instant),
    Forever,
}

impl Wait {
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Self {
        match timeout {
            Some(t) => Wait::Within(t),
            None => Wait::Forever,
        }
    }

    /// The deadline, if it is fixed already.
    pub(super) fn until(self) -> Option<Instant> {
        match self {
            Wait::Until(at) => Some(at),
            _ => None,
        }
    }

    /// The deadline, fixed from `now` the first time it is asked for.
    pub(super) fn deadline(&mut self, now: Instant) -> Option<Instant> {
        match *self {
            Wait::Within(t) => {
                *self = now.checked_add(t).map_or(Wait::Forever, Wait::Until);
                self.deadline(now)
            }
            Wait::Until(at) => Some(at),
            Wait::Never | Wait::Forever => None,
        }
    }
}

impl ShmConnection {
    /// Pushes out the rest of a committed chunked message, waiting a
    /// bounded time (as dropping the connection does).
    pub(crate) fn linger(&mut self) {
        let _ = self.flush_pending(&mut Wait::from_timeout(Some(DROP_LINGER)));
    }

    pub(super) fn send_wait(&self) -> Wait {
        match self.config.backpressure {
            ipc_core::Backpressure::Block => Wait::from_timeout(self.config.send_timeout),
            ipc_core::Backpressure::Fail => Wait::Never,
        }
    }

    /// Runs `attempt` until it yields a value, waiting between tries as the
    /// wait strategy says ([`Pacer`]), until `wait` runs out or the peer is
    /// gone. The closed flag and the lifeline are looked at with every
    /// clock read; the peer's process (pidfd) after every park and every
    /// [`SPIN_CHECK`](wait::SPIN_CHECK) while spinning.
    pub(crate) fn wait_until<T>(
        &mut self,
        dir: Dir,
        wait: &mut Wait,
        mut attempt: impl FnMut(&mut Self) -> Result<Option<T>, Fail>,
    ) -> Result<T, Fail> {
        let mut pacer = Pacer::new(self.config.wait_strategy, self.spin[dir as usize]);
        // When this wait started parking for data; memory is released once
        // it has lasted IDLE_RELEASE.
        let (mut idle_since, mut released) = (None, false);
        loop {
            if let Some(value) = attempt(self)? {
                pacer.teach(&mut self.spin[dir as usize]);
                return Ok(value);
            }
            if let Wait::Never = *wait {
                // The closed flag and the doorbells' state are plain
                // loads; the OS is asked (two system calls) at most every
                // SPIN_CHECK, so a loop of non-blocking steps learns of a
                // death that soon without a system call per step. The
                // clock is read for that every CLOCK_EVERY steps, as a
                // spinning wait reads it: a step is a few loads, a clock
                // read costs more than all of them.
                // Whatever the peer published before it went is still ours.
                self.idle_steps = self.idle_steps.wrapping_add(1);
                let check_process = match self.last_peer_check {
                    None => true,
                    Some(_) if !self.idle_steps.is_multiple_of(wait::CLOCK_EVERY) => false,
                    Some(t) => t.elapsed() >= wait::SPIN_CHECK,
                };
                if check_process {
                    self.last_peer_check = Some(Instant::now());
                }
                return match self.peer_gone(check_process) {
                    true => attempt(self)?.ok_or(Fail::Gone),
                    false => Err(Fail::WouldBlock),
                };
            }
            let tick = pacer.tick();
            if let Some(now) = tick.now {
                if self.peer_gone(tick.check_peer) {
                    return attempt(self)?.ok_or(Fail::Gone);
                }
                if wait.deadline(now).is_some_and(|deadline| now >= deadline) {
                    return Err(Fail::Timeout);
                }
            }
            match pacer.step(tick) {
                Step::Spin => spin_loop(),
                Step::Yield => std::thread::yield_now(),
                Step::Park => {
                    let now = tick.now.unwrap_or_else(Instant::now);
                    // Parks end at the release point once, so an idle
                    // side gives its memory back without a timer after.
                    let mut release_at = None;
                    if dir == Dir::Data && !released {
                        let since: Instant = *idle_since.get_or_insert(now);
                        if now.duration_since(since) >= IDLE_RELEASE {
                            self.release_idle_memory();
                            released = true;
                        } else {
                            release_at = Some(since + IDLE_RELEASE);
                        }
                    }
                    self.park(dir, *wait, now, release_at)
                }
            }
        }
    }

    /// Parks until the doorbell of `dir` rings, the peer goes, or `until`
    /// (if any) passes.
    pub(super) fn park(&self, dir: Dir, wait: Wait, now: Instant, until: Option<Instant>) {
        // `wait::park` caps this at its slice for the way it parks.
        let mut slice = Duration::MAX;
        if !self.pending.is_empty() {
            // Also pushing out a held-back message: look again soon.
            slice = Duration::from_millis(1);
        }
        for end in [until, wait.until()].into_iter().flatten() {
            slice = slice.min(end.saturating_duration_since(now));
        }
        let process = self.peer.pidfd();
        match dir {
            Dir::Data => {
                let bell = &self.bells[self.rx_ring];
                wait::park(self.rx.park_signal(), bell, slice, process, || {
                    self.data_absent()
                });
            }
            Dir::Space => {
                let seen = self.tx.seen_tail();
                let bell = &self.bells[self.tx_ring];
                wait::park(self.tx.park_signal(), bell, slice, process, || {
                    self.space_unchanged(seen)
                });
            }
        }
    }

    pub(crate) fn send_with(&mut self, frame: &[u8], mut wait: Wait) -> Result<(), SendError> {
        self.check_sendable()?;
        let max = self.config.max_message_size;
        if frame.len() > max {
            return Err(SendError::FrameTooLarge {
                len: frame.len(),
                max,
            });
        }
        self.flush_pending(&mut wait)?;
        if let Some(blob) = blob::lent_blob(frame)
            && self.passes_blobs()
        {
            // A frozen loan: its memory is passed, not copied.
            return Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob))?);
        }
        if self.goes_as_blob(frame.len()) {
            if let Some(slot) = self.pick_slot(frame.len())? {
                return Ok(
                    self.wait_until(Dir::Space, &mut wait, |c| c.try_write_slot(slot, frame))?
                );
            }
            // Beyond what slots hold: a blob of its own. Otherwise every
            // slot is held by the receiver: through the ring, which waits
            // for it as it should (fresh memory would cost more).
            if frame.len() > POOL_LIMIT {
                let blob = SealedBlob::copy_of(frame)?;
                return Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob))?);
            }
        }
        let max_record = self.tx.max_record();
        if frame.len() <= max_record {
            return Ok(self.wait_until(Dir::Space, &mut wait, |c| {
                c.try_write(kind::WHOLE, &[frame])
            })?);
        }
        // Chunked: the first chunk carries the total length. Once it is
        // in, the message is committed; what does not fit in time is kept
        // and sent before anything else.
        let chunk = crate::ring::chunk_payload(self.seg.capacity());
        let (first, mut rest) = frame.split_at(chunk - 8);
        let total = (frame.len() as u64).to_le_bytes();
        self.wait_until(Dir::Space, &mut wait, |c| {
            c.try_write(kind::FIRST, &[&total, first])
        })?;
        while !rest.is_empty() {
            match self.wait_until(Dir::Space, &mut wait, |c| c.try_write_continuation(rest)) {
                Ok(n) => rest = &rest[n..],
                Err(Fail::WouldBlock | Fail::Timeout) => {
                    self.pending.extend_from_slice(rest);
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends the held-back rest of a message, waiting as `wait` allows.
    pub(crate) fn flush_pending(&mut self, wait: &mut Wait) -> Result<(), Fail> {
        while !self.pending.is_empty() {
            let n = self.wait_until(Dir::Space, wait, |c| c.try_push_pending())?;
            self.pending.drain(..n);
        }
        Ok(())
    }

    pub(crate) fn recv_with(&mut self, mut wait: Wait) -> Result<Bytes, RecvError> {
        self.check_receivable()?;
        match self.wait_until(Dir::Data, &mut wait, |c| c.try_take()) {
            // Like a stream cut inside a frame: the peer went away part way
            // through a chunked message.
            Err(Fail::Gone) if self.assembly.take().is_some() => Err(RecvError::Corrupted(
                "peer went away inside a chunked message".into(),
            )),
            other => Ok(other?),
        }
    }
}

impl FrameSender for ShmConnection {
    /// Blobs of their own for loans of [`LEND_MIN`](crate::LEND_MIN) bytes
    /// or more: sent, they are passed, not copied.
    fn lender(&self) -> ipc_core::Lender {
        blob::lender()
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let wait = self.send_wait();
        self.send_with(frame, wait)
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.send_with(frame, Wait::Never)
    }

    fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.send_with(frame, Wait::from_timeout(Some(timeout)))
    }

    fn flush(&mut self) -> Result<(), SendError> {
        Ok(self.flush_pending(&mut self.send_wait())?)
    }
}

impl FrameReceiver for ShmConnection {
    fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::from_timeout(self.config.recv_timeout))
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::Never)
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::from_timeout(Some(timeout)))
    }
}
