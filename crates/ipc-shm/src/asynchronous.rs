//! The tokio API: `AsyncShmConnection`.
//!
//! An async connection waits where the blocking one parks: on the
//! doorbell of the direction it waits for (`bell.rs`), registered with
//! tokio's reactor, and on the peer's pidfd. So it costs no thread of its
//! own, and a hub waits for any number of connections on its runtime.
//! The data path (the non-blocking steps on the rings) runs on the task,
//! and a wait is paced like every other wait ([`Pacer`]): a short spin in
//! place, then yields to the runtime (its other tasks run) while the
//! learned spin budget lasts, then a park in the reactor.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{
    Address, AsyncConnection, AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener,
    AsyncSplit, Backpressure, Capabilities, Config, ConnectError, FrameReceiver, PeerCredentials,
    RecvError, SendError,
};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::CAPABILITIES;
use crate::bell::Bell;
use crate::blob::{BlobBuf, SealedBlob};
use crate::connect::{attach, connect_socket};
use crate::connection::{Dir, Fail, IDLE_RELEASE, RecvView, SendSlot, ShmConnection, Wait};
use crate::listener::{ACCEPT_QUEUE, Acceptor, Rendezvous, accept_thread_gone};
use crate::ring::Signal;
use crate::segment::Segment;
use crate::sync::{Ordering, fence, spin_loop};
use crate::wait::{PARK_SLICE, Pacer, Step};

/// Spins in place before a wait yields to the runtime whatever its
/// strategy: a task never holds its worker longer than this.
const SPINS_IN_PLACE: u32 = 64;

/// One end of a doorbell, as the reactor sees it.
#[derive(Debug)]
struct BellEnd {
    bells: Arc<[Bell; 2]>,
    ring: usize,
}

impl BellEnd {
    fn bell(&self) -> &Bell {
        &self.bells[self.ring]
    }
}

impl AsRawFd for BellEnd {
    fn as_raw_fd(&self) -> RawFd {
        self.bell().as_raw_fd()
    }
}

/// How a park ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woke {
    /// A ring, a time limit or nothing: look again.
    Look,
    /// The peer's process has exited.
    PeerExited,
    /// The runtime the watch is registered with has shut down: register
    /// again with the one waiting now.
    Unregistered,
}

/// What one direction of an async side waits on, in the reactor: its
/// doorbell end and the peer's process.
#[derive(Debug)]
struct Watch {
    segment: Arc<Segment>,
    dir: Dir,
    bell: AsyncFd<BellEnd>,
    /// A pidfd of the peer's own (each watch registers one).
    process: Option<AsyncFd<OwnedFd>>,
    /// The runtime whose reactor the two are registered with.
    runtime: tokio::runtime::Id,
}

impl Watch {
    fn new(conn: &ShmConnection, dir: Dir) -> io::Result<Watch> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(io::Error::other)?
            .id();
        let (bells, segment, peer) = conn.wait_handles();
        let end = BellEnd {
            bells,
            ring: conn.ring_of(dir),
        };
        let process = match peer.pidfd() {
            Some(fd) => {
                let fd = fd.try_clone_to_owned()?;
                // SAFETY: the `OwnedFd` moved in is open and is closed
                // only when the `AsyncFd` drops it.
                Some(
                    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                        .map_err(|e| e.into_parts().1)?,
                )
            }
            None => None,
        };
        // SAFETY: the end's descriptor is owned by the `Arc`ed bells the
        // `BellEnd` holds, so it stays open (and the same) as long as the
        // `AsyncFd` does; `as_raw_fd` always names the same bell.
        let bell = unsafe { AsyncFd::register_with_interest(end, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Watch {
            segment,
            dir,
            bell,
            process,
            runtime,
        })
    }

    /// The word this direction announces its parks in.
    fn signal(&self) -> &Signal {
        let ring = self.bell.get_ref().ring;
        // SAFETY: the control block is inside the mapping `segment` keeps
        // alive; it is all atomics, valid for any bytes.
        let ctl = unsafe { &*self.segment.ring(ring).ctl };
        match self.dir {
            Dir::Data => &ctl.data.0,
            Dir::Space => &ctl.space.0,
        }
    }

    /// Until the bell rings (or hangs up) or the peer's process exits.
    /// Readiness fails only when the reactor has shut down (the runtime
    /// registered with is gone), which says nothing about the peer.
    async fn rang(&self) -> Woke {
        let bell = async {
            match self.bell.readable().await {
                Ok(mut ready) => {
                    // Cleared before the drain: a ring after this sets it again.
                    ready.clear_ready();
                    Woke::Look
                }
                Err(_) => Woke::Unregistered,
            }
        };
        let exited = async {
            match &self.process {
                Some(fd) => match fd.readable().await {
                    Ok(_) => Woke::PeerExited,
                    Err(_) => Woke::Unregistered,
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            woke = bell => woke,
            woke = exited => woke,
        }
    }
}

/// A park announced in a ring's `waiting` word; withdrawn on drop, so a
/// cancelled wait does not leave the peer ringing.
struct Announced<'a>(&'a Signal);

impl<'a> Announced<'a> {
    fn new(signal: &'a Signal) -> Self {
        signal.waiting.store(1, Ordering::SeqCst);
        Announced(signal)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.0.waiting.store(0, Ordering::Relaxed);
    }
}

/// Parks on `first` (and `second`) until a ring, the peer's exit, or
/// `until`, unless `still_waiting` turns false once the park is announced
/// (see `ring.rs` for why no wake-up is lost).
async fn park(
    first: &Watch,
    second: Option<&Watch>,
    until: Option<Instant>,
    still_waiting: impl FnOnce() -> bool,
) -> Woke {
    let _announced = (
        Announced::new(first.signal()),
        second.map(|w| Announced::new(w.signal())),
    );
    fence(Ordering::SeqCst);
    if !still_waiting() {
        return Woke::Look;
    }
    // Without a pidfd the peer's process is looked at through /proc
    // after every slice.
    let until = match first.process {
        Some(_) => until,
        None => Some(until.map_or(Instant::now() + PARK_SLICE, |u| {
            u.min(Instant::now() + PARK_SLICE)
        })),
    };
    let second_rang = async {
        match second {
            Some(watch) => watch.rang().await,
            None => std::future::pending().await,
        }
    };
    let rang = async {
        tokio::select! {
            woke = first.rang() => woke,
            woke = second_rang => woke,
        }
    };
    let woke = match until {
        Some(at) => tokio::time::timeout_at(at, rang)
            .await
            .unwrap_or(Woke::Look),
        None => rang.await,
    };
    for watch in std::iter::once(first).chain(second) {
        watch.bell.get_ref().bell().drain();
    }
    woke
}

/// Access to the blocking connection underneath: owned by an unsplit
/// connection, shared (behind a lock held only for one non-blocking step)
/// by split halves.
trait Access: Send {
    fn with<T>(&mut self, f: impl FnOnce(&mut ShmConnection) -> T) -> T;
}

impl Access for ShmConnection {
    fn with<T>(&mut self, f: impl FnOnce(&mut ShmConnection) -> T) -> T {
        f(self)
    }
}

impl Access for Arc<Mutex<ShmConnection>> {
    fn with<T>(&mut self, f: impl FnOnce(&mut ShmConnection) -> T) -> T {
        f(&mut self.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// An error of a non-blocking step that says "wait and try again".
trait StepError {
    fn would_block(&self) -> bool;
    fn timeout() -> Self;
    fn io(e: io::Error) -> Self;
}

impl StepError for RecvError {
    fn would_block(&self) -> bool {
        matches!(self, RecvError::Empty)
    }
    fn timeout() -> Self {
        RecvError::Timeout
    }
    fn io(e: io::Error) -> Self {
        RecvError::Io(e)
    }
}

impl StepError for Fail {
    fn would_block(&self) -> bool {
        matches!(self, Fail::WouldBlock)
    }
    fn timeout() -> Self {
        Fail::Timeout
    }
    fn io(e: io::Error) -> Self {
        Fail::Io(e)
    }
}

/// The watches of an async side, by [`Dir`]: both for an unsplit
/// connection, one for each half. Each is registered with the runtime of
/// its first wait (so a connection can be made outside a runtime), and
/// again with the runtime of a park if that is another one (a reactor
/// not driven, or shut down, would never ring).
#[derive(Debug)]
struct Waiter {
    watches: [Option<Watch>; 2],
}

impl Waiter {
    fn new() -> Self {
        Waiter {
            watches: [None, None],
        }
    }

    /// The watch of `dir`, registered now if it is not yet.
    fn register(&mut self, conn: &mut impl Access, dir: Dir) -> io::Result<()> {
        if self.watches[dir as usize].is_none() {
            self.watches[dir as usize] = Some(conn.with(|c| Watch::new(c, dir))?);
        }
        Ok(())
    }

    /// The watch of `dir`, once [`register`](Self::register)ed.
    fn watch(&self, dir: Dir) -> io::Result<&Watch> {
        self.watches[dir as usize]
            .as_ref()
            .ok_or_else(|| io::Error::other("this half does not wait that way"))
    }

    /// Registers the watch of `dir` again, with the runtime running now,
    /// if it is registered with another (or `stale`: with one shut down).
    /// Only before a park: a wait that finds its frame at once costs no
    /// look at the runtime.
    fn on_this_runtime(&mut self, conn: &mut impl Access, dir: Dir, stale: bool) -> io::Result<()> {
        let here = tokio::runtime::Handle::try_current()
            .map_err(io::Error::other)?
            .id();
        let slot = &mut self.watches[dir as usize];
        if stale || slot.as_ref().is_none_or(|w| w.runtime != here) {
            // The old registration goes first (its reactor, if alive,
            // deregisters it), then the new one.
            *slot = None;
            *slot = Some(conn.with(|c| Watch::new(c, dir))?);
        }
        Ok(())
    }

    /// Runs `step` until it stops saying "wait", paced like every wait
    /// ([`Pacer`]), until `deadline`. Waits on the watch of `dir` (and,
    /// with `also_space`, for space too: an unsplit connection pushing out
    /// a held-back message while it receives); both are registered.
    async fn wait<A: Access, T, E: StepError>(
        &mut self,
        conn: &mut A,
        dir: Dir,
        also_space: bool,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut ShmConnection) -> Result<T, E>,
    ) -> Result<T, E> {
        // Set when a park found its runtime gone: the registration is
        // made again, once; a park that finds the new one gone too is an
        // error (the runtime waiting now is shutting down), not a loop.
        let mut stale = false;
        let mut registered_again = false;
        let (strategy, budget) = conn.with(|c| (c.config().wait_strategy, *c.spin_budget(dir)));
        let mut pacer = Pacer::new(strategy, budget);
        let (mut release_at, mut released) = (None, dir != Dir::Data);
        let mut spins = 0u32;
        loop {
            match conn.with(&mut step) {
                Err(e) if e.would_block() => {}
                done => {
                    conn.with(|c| pacer.teach(c.spin_budget(dir)));
                    return done;
                }
            }
            let tick = pacer.tick();
            if let Some(now) = tick.now
                && deadline.is_some_and(|d| Instant::from_std(now) >= d)
            {
                return Err(E::timeout());
            }
            match pacer.step(tick) {
                Step::Spin if spins < SPINS_IN_PLACE => {
                    spins += 1;
                    spin_loop();
                }
                // Yields to the runtime, not the OS: with sched_yield too,
                // round trips on a multi-thread runtime were bimodal (0.63
                // or 7.4 us p50 by trial, `ipc-bench --groups=hub`).
                Step::Spin | Step::Yield => {
                    spins = 0;
                    tokio::task::yield_now().await;
                }
                Step::Park => {
                    // After IDLE_RELEASE of waiting for data, give back
                    // unused memory once (under the lock, so never beside
                    // a step of the other half).
                    let now = Instant::now();
                    let mut until = deadline;
                    if !released {
                        let at = *release_at.get_or_insert(now + IDLE_RELEASE);
                        if now >= at {
                            conn.with(ShmConnection::release_idle_memory);
                            released = true;
                        } else {
                            until = Some(until.map_or(at, |d| d.min(at)));
                        }
                    }
                    let (seen, pending) = conn.with(|c| (c.seen_tail(), c.has_pending()));
                    let also_space = also_space && pending;
                    if stale && registered_again {
                        return Err(E::io(io::Error::other(
                            "the runtime this wait runs on is shutting down",
                        )));
                    }
                    self.on_this_runtime(conn, dir, stale).map_err(E::io)?;
                    if also_space {
                        self.on_this_runtime(conn, Dir::Space, stale)
                            .map_err(E::io)?;
                    }
                    registered_again |= std::mem::take(&mut stale);
                    let watch = self.watch(dir).map_err(E::io)?;
                    let space = match also_space {
                        true => Some(self.watch(Dir::Space).map_err(E::io)?),
                        false => None,
                    };
                    let still_waiting = || {
                        conn.with(|c| match dir {
                            Dir::Data => {
                                c.data_absent() && (space.is_none() || c.space_unchanged(seen))
                            }
                            Dir::Space => c.space_unchanged(seen),
                        })
                    };
                    match park(watch, space, until, still_waiting).await {
                        Woke::PeerExited => conn.with(ShmConnection::mark_gone),
                        Woke::Unregistered => stale = true,
                        Woke::Look => {}
                    }
                }
            }
        }
    }

    /// Runs a non-blocking receive step until it stops reporting
    /// `Empty`, waiting until `deadline`. `flush_too`: also push out the
    /// rest of a chunked message while waiting (an unsplit connection; a
    /// write half does that itself).
    async fn recv_until<A: Access, T>(
        &mut self,
        conn: &mut A,
        deadline: Option<Instant>,
        flush_too: bool,
        take: impl FnMut(&mut ShmConnection) -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        self.register(conn, Dir::Data)?;
        if flush_too {
            self.register(conn, Dir::Space)?;
        }
        self.wait(conn, Dir::Data, flush_too, deadline, take).await
    }

    /// Runs a non-blocking send step until it stops reporting a full ring.
    async fn until_room<A: Access, T>(
        &mut self,
        conn: &mut A,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut ShmConnection) -> Result<T, Fail>,
    ) -> Result<T, SendError> {
        if conn.with(|c| c.config().backpressure == Backpressure::Fail) {
            // Never waits: one step, and a full ring is `Full`.
            return conn.with(&mut step).map_err(SendError::from);
        }
        self.register(conn, Dir::Space)?;
        Ok(self.wait(conn, Dir::Space, false, deadline, step).await?)
    }

    async fn send_until(
        &mut self,
        conn: &mut impl Access,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        // The common case in one step under one lock: a frame copied into
        // the ring, with room for it now (a blob's copy is made outside
        // the lock, below).
        let at_once = conn.with(|c| {
            let (len, max) = (frame.len(), c.config().max_message_size);
            if len > max {
                // Whichever way it would go (ring, slot, blob).
                return Some(Err(SendError::FrameTooLarge { len, max }));
            }
            let copied = crate::blob::lent_blob(frame).is_none() && !c.goes_as_blob(len);
            copied.then(|| c.send_with(frame, Wait::Never))
        });
        match at_once {
            None | Some(Err(SendError::Full)) => {}
            Some(done) => return done,
        }
        self.until_room(conn, deadline, |c| c.flush_pending(&mut Wait::Never))
            .await?;
        if let Some(blob) = crate::blob::lent_blob(frame)
            && conn.with(|c| c.passes_blobs())
        {
            // A frozen loan: its memory is passed, not copied.
            conn.with(|c| c.check_blob(frame.len()))?;
            return self.send_blob_until(conn, &blob, deadline).await;
        }
        if conn.with(|c| c.goes_as_blob(frame.len())) {
            if let Some(slot) = conn.with(|c| c.pick_slot(frame.len()))? {
                return self
                    .until_room(conn, deadline, |c| {
                        c.try_write_slot(slot, frame)?.ok_or(Fail::WouldBlock)
                    })
                    .await;
            }
            if frame.len() > crate::blob::POOL_LIMIT {
                // Copied into a blob of its own once, outside the lock;
                // then handed over when there is room.
                let blob = SealedBlob::copy_of(frame)?;
                return self.send_blob_until(conn, &blob, deadline).await;
            }
            // Every slot is held by the receiver: through the ring.
        }
        self.until_room(conn, deadline, |c| match c.send_with(frame, Wait::Never) {
            Err(SendError::Full) => Err(Fail::WouldBlock),
            Err(SendError::Disconnected) => Err(Fail::Gone),
            Err(SendError::Timeout) => Err(Fail::Timeout),
            Err(SendError::FrameTooLarge { len, max }) => Err(Fail::TooLarge { len, max }),
            Err(SendError::Corrupted(m)) => Err(Fail::Corrupt(m)),
            Err(e) => Err(Fail::Corrupt(e.to_string())),
            Ok(()) => Ok(()),
        })
        .await
    }

    async fn send_blob_until(
        &mut self,
        conn: &mut impl Access,
        blob: &SealedBlob,
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.until_room(conn, deadline, |c| {
            c.flush_pending(&mut Wait::Never)?;
            c.try_write_blob(blob)?.ok_or(Fail::WouldBlock)
        })
        .await
    }
}

/// `try_send`: the blocking step, which leaves nothing of the frame sent
/// when it says `Full`; except for a frame that would be copied into a
/// blob of its own (over [`POOL_LIMIT`](crate::blob::POOL_LIMIT)), which
/// is `Full` here: `send` makes that copy outside the half's lock.
fn send_now(c: &mut ShmConnection, frame: &[u8]) -> Result<(), SendError> {
    let own_blob = frame.len() > crate::blob::POOL_LIMIT
        && c.goes_as_blob(frame.len())
        && crate::blob::lent_blob(frame).is_none();
    if own_blob {
        return Err(SendError::Full);
    }
    c.send_with(frame, Wait::Never)
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// An async shared-memory connection (either end). Build it from a
/// blocking one with [`AsyncShmConnection::new`] or connect with
/// [`AsyncShm`]. Must be used inside a tokio runtime.
#[derive(Debug)]
pub struct AsyncShmConnection {
    // Declared first: out of the reactor before the doorbells close.
    waiter: Waiter,
    inner: ShmConnection,
}

impl AsyncShmConnection {
    /// Wraps a blocking connection. No thread: its doorbells and the
    /// peer's pidfd are registered with the reactor of the runtime its
    /// first wait runs on (a wait outside a runtime is an `Io` error),
    /// and again with another's when a wait parks there, so the
    /// connection may move to another runtime, or outlive its first.
    pub fn new(inner: ShmConnection) -> Result<Self, ConnectError> {
        Ok(AsyncShmConnection {
            waiter: Waiter::new(),
            inner,
        })
    }

    /// The blocking connection inside.
    pub fn get_mut(&mut self) -> &mut ShmConnection {
        &mut self.inner
    }

    /// Zero copy, async: reserves `len` bytes in the ring, waiting for
    /// room as [`send`](AsyncFrameSender::send) does (without blocking the
    /// runtime; the current-thread runtime is fine). Fill the slot and
    /// [`commit`](SendSlot::commit) it; dropping it uncommitted sends
    /// nothing. At most [`ShmConnection::max_record`] bytes
    /// ([`SendError::FrameTooLarge`] otherwise). Cancel-safe: nothing is
    /// reserved until it returns.
    ///
    /// ```no_run
    /// # async fn demo(conn: &mut ipc_shm::AsyncShmConnection) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut slot = conn.reserve(4096).await?;
    /// slot.fill(7); // written straight into shared memory
    /// slot.commit();
    /// let view = conn.recv_in_place().await?; // read straight from it
    /// println!("{} bytes, in place: {}", view.len(), view.is_in_place());
    /// # Ok(()) }
    /// ```
    pub async fn reserve(&mut self, len: usize) -> Result<SendSlot<'_>, SendError> {
        let deadline = deadline_after(self.inner.config().send_timeout);
        let reservation = self
            .waiter
            .until_room(&mut self.inner, deadline, |c| c.reservation_now(len))
            .await?;
        Ok(self.inner.slot(reservation))
    }

    /// Sends `blob` by reference, async (see
    /// [`ShmConnection::send_blob`]): waits for room without blocking the
    /// runtime. Cancel-safe: a blob is sent whole or not at all.
    pub async fn send_blob(&mut self, blob: BlobBuf) -> Result<(), SendError> {
        let blob = self.inner.seal_blob(blob)?;
        let deadline = deadline_after(self.inner.config().send_timeout);
        self.waiter
            .send_blob_until(&mut self.inner, &blob, deadline)
            .await
    }

    /// Sends a sealed blob by reference, async (see
    /// [`ShmConnection::send_sealed`]). Cancel-safe.
    pub async fn send_sealed(&mut self, blob: &crate::Blob) -> Result<(), SendError> {
        self.inner.check_blob(blob.len())?;
        let deadline = deadline_after(self.inner.config().send_timeout);
        self.waiter
            .send_blob_until(&mut self.inner, &blob.0, deadline)
            .await
    }

    /// Zero copy, async: the next message read in place, waiting as
    /// [`recv`](AsyncFrameReceiver::recv) does; the space is released when
    /// the view drops. A chunked message (larger than a record) is
    /// assembled into an owned buffer instead. Cancel-safe: a message is
    /// taken only when the view is returned.
    pub async fn recv_in_place(&mut self) -> Result<RecvView<'_>, RecvError> {
        let deadline = deadline_after(self.inner.config().recv_timeout);
        let found = self
            .waiter
            .recv_until(&mut self.inner, deadline, true, ShmConnection::in_place_now)
            .await?;
        Ok(self.inner.view(found))
    }
}

impl AsyncFrameSender for AsyncShmConnection {
    /// Blobs of their own for loans of [`LEND_MIN`](crate::LEND_MIN) bytes
    /// or more: sent, they are passed, not copied.
    fn lender(&self) -> ipc_core::Lender {
        crate::blob::lender()
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let deadline = deadline_after(self.inner.config().send_timeout);
        self.waiter
            .send_until(&mut self.inner, frame, deadline)
            .await
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        send_now(&mut self.inner, frame)
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        let deadline = Some(Instant::now() + timeout);
        match self
            .waiter
            .send_until(&mut self.inner, frame, deadline)
            .await
        {
            Err(SendError::Full) => Err(SendError::Timeout),
            other => other,
        }
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        let deadline = deadline_after(self.inner.config().send_timeout);
        self.waiter
            .until_room(&mut self.inner, deadline, |c| {
                c.flush_pending(&mut Wait::Never)
            })
            .await
    }
}

impl AsyncFrameReceiver for AsyncShmConnection {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        let deadline = deadline_after(self.inner.config().recv_timeout);
        self.waiter
            .recv_until(&mut self.inner, deadline, true, FrameReceiver::try_recv)
            .await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        let deadline = Some(Instant::now() + timeout);
        self.waiter
            .recv_until(&mut self.inner, deadline, true, FrameReceiver::try_recv)
            .await
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        // One step, without the wait's spin.
        FrameReceiver::try_recv(&mut self.inner)
    }
}

impl AsyncConnection for AsyncShmConnection {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn max_message_size(&self) -> usize {
        self.inner.config().max_message_size
    }

    fn peer_credentials(&self) -> PeerCredentials {
        self.inner.peer_credentials()
    }
}

impl AsyncSplit for AsyncShmConnection {
    type ReadHalf = ShmReadHalf;
    type WriteHalf = ShmWriteHalf;

    /// Splits into halves that share the connection (each step takes a
    /// lock for a moment, never across a wait); each half waits on its
    /// own doorbell, so both can wait at once. The connection closes when
    /// both halves are gone; dropping the write half alone tells the peer
    /// this side is closing (its sends then fail, its receives drain what
    /// is left).
    fn into_split(self) -> (ShmReadHalf, ShmWriteHalf) {
        let AsyncShmConnection { mut waiter, inner } = self;
        let conn = Arc::new(Mutex::new(inner));
        (
            ShmReadHalf {
                waiter: Waiter {
                    watches: [waiter.watches[0].take(), None],
                },
                conn: Arc::clone(&conn),
            },
            ShmWriteHalf {
                waiter: Waiter {
                    watches: [None, waiter.watches[1].take()],
                },
                conn,
            },
        )
    }
}

/// The receiving half of a split [`AsyncShmConnection`].
#[derive(Debug)]
pub struct ShmReadHalf {
    waiter: Waiter,
    conn: Arc<Mutex<ShmConnection>>,
}

/// The sending half of a split [`AsyncShmConnection`].
#[derive(Debug)]
pub struct ShmWriteHalf {
    waiter: Waiter,
    conn: Arc<Mutex<ShmConnection>>,
}

impl ShmWriteHalf {
    fn config(&self) -> Config {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .config()
            .clone()
    }
}

impl AsyncFrameReceiver for ShmReadHalf {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        let timeout = self
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .config()
            .recv_timeout;
        self.waiter
            .recv_until(
                &mut self.conn,
                deadline_after(timeout),
                false,
                FrameReceiver::try_recv,
            )
            .await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        let deadline = Some(Instant::now() + timeout);
        self.waiter
            .recv_until(&mut self.conn, deadline, false, FrameReceiver::try_recv)
            .await
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.conn.with(FrameReceiver::try_recv)
    }
}

impl ShmWriteHalf {
    /// Sends `blob` by reference (see [`ShmConnection::send_blob`]).
    pub async fn send_blob(&mut self, blob: BlobBuf) -> Result<(), SendError> {
        let blob = self.conn.with(|c| c.seal_blob(blob))?;
        let deadline = deadline_after(self.config().send_timeout);
        self.waiter
            .send_blob_until(&mut self.conn, &blob, deadline)
            .await
    }

    async fn send_until(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.waiter
            .send_until(&mut self.conn, frame, deadline)
            .await
    }
}

impl AsyncFrameSender for ShmWriteHalf {
    /// As [`AsyncShmConnection`]'s.
    fn lender(&self) -> ipc_core::Lender {
        crate::blob::lender()
    }

    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let deadline = deadline_after(self.config().send_timeout);
        self.send_until(frame, deadline).await
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.conn.with(|c| send_now(c, frame))
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.send_until(frame, Some(Instant::now() + timeout)).await {
            Err(SendError::Full) => Err(SendError::Timeout),
            other => other,
        }
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        let deadline = deadline_after(self.config().send_timeout);
        self.waiter
            .until_room(&mut self.conn, deadline, |c| {
                c.flush_pending(&mut Wait::Never)
            })
            .await
    }
}

impl Drop for ShmWriteHalf {
    fn drop(&mut self) {
        // Push out the rest of a committed message, then tell the peer
        // this side is done (the read half still drains what the peer
        // sent).
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        conn.linger();
        conn.close();
    }
}

/// The shared-memory transport for async code:
/// `AsyncShm.connect(&address, &config).await`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncShm;

impl AsyncConnector for AsyncShm {
    type Connection = AsyncShmConnection;

    async fn connect(
        &self,
        address: &Address,
        config: &Config,
    ) -> Result<AsyncShmConnection, ConnectError> {
        let deadline = config.connect_timeout;
        let sock = connect_socket(address, config)?;
        // Waiting for the listener's hello is the only wait of a connect:
        // on the runtime, not on a thread.
        let stream = tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(sock))?;
        match deadline {
            Some(limit) => tokio::time::timeout(limit, stream.readable())
                .await
                .map_err(|_| ConnectError::Timeout)??,
            None => stream.readable().await?,
        }
        let sock = OwnedFd::from(stream.into_std()?);
        AsyncShmConnection::new(attach(sock, address, config)?)
    }
}

/// Accepts any number of agents under one `shm:NAME`, for async code: the
/// [`ShmListener`](crate::ShmListener) rendezvous, run by a helper thread
/// that hands finished handshakes to [`accept`](AsyncListener::accept).
/// `accept` is cancel-safe: an agent whose handshake finished waits in
/// the queue for the next call. Dropping the listener stops the thread and
/// removes the socket file before it returns.
///
/// ```
/// use ipc_core::{AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, Config};
/// use ipc_shm::{AsyncShm, AsyncShmListener};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let name = format!("doc-async-{}", std::process::id());
/// let mut listener = AsyncShmListener::bind_name(&name, &Config::default())?;
/// let address = listener.address().clone();
/// // Agents do this in their own processes:
/// let agents = tokio::spawn(async move {
///     let mut first = AsyncShm.connect(&address, &Config::default()).await?;
///     let mut second = AsyncShm.connect(&address, &Config::default()).await?;
///     first.send(b"one").await?;
///     second.send(b"two").await?;
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>((first, second))
/// });
/// let mut a = listener.accept().await?;
/// let mut b = listener.accept().await?;
/// let mut heard = vec![a.recv().await?, b.recv().await?];
/// heard.sort();
/// assert_eq!(heard, [&b"one"[..], &b"two"[..]]);
/// # agents.await??;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
/// ```
#[derive(Debug)]
pub struct AsyncShmListener {
    address: Address,
    accepted: tokio::sync::mpsc::Receiver<Result<ShmConnection, ConnectError>>,
    acceptor: Acceptor,
}

impl AsyncShmListener {
    /// Listens as `shm:NAME` (see [`ShmListener::bind_name`](crate::ShmListener::bind_name)).
    pub fn bind_name(name: &str, config: &Config) -> Result<Self, ConnectError> {
        let address: Address = format!("shm:{name}").parse()?;
        Self::bind(&address, config)
    }

    /// Listens on a `shm:` address. Every listener of the workspace binds
    /// this way (an `&Address` and a `Config`); `bind_name` takes the name.
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        let rendezvous = Rendezvous::bind(address, config)?;
        let (tx, accepted) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
        let acceptor = Acceptor::start(rendezvous, move |next| tx.blocking_send(next).is_ok())?;
        Ok(AsyncShmListener {
            address: address.clone(),
            accepted,
            acceptor,
        })
    }
}

impl AsyncListener for AsyncShmListener {
    type Connection = AsyncShmConnection;

    async fn accept(&mut self) -> Result<AsyncShmConnection, ConnectError> {
        match self.accepted.recv().await {
            Some(conn) => AsyncShmConnection::new(conn?),
            None => Err(accept_thread_gone()),
        }
    }

    fn address(&self) -> &Address {
        &self.address
    }
}

impl Drop for AsyncShmListener {
    fn drop(&mut self) {
        // Closing the queue ends a `blocking_send`; the eventfd ends a poll.
        self.accepted.close();
        self.acceptor.stop();
    }
}
