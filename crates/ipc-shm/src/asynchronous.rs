//! The tokio API: `AsyncShmConnection`.
//!
//! Shared memory has no file descriptor for tokio's reactor to watch, so
//! each async connection has one helper thread that parks on the segment
//! (the same futex or event the blocking API uses) when asked to, and
//! wakes the task through a `tokio::sync::Notify`. An idle connection's
//! helper sleeps on a condition variable: no polling, no `spawn_blocking`
//! per message. The data path itself (`try_send`/`try_recv` on the rings)
//! runs on the task.

use std::os::fd::OwnedFd;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{
    Address, AsyncConnection, AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener,
    AsyncSplit, Capabilities, Config, ConnectError, FrameReceiver, PeerCredentials, RecvError,
    SendError, WaitStrategy,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::CAPABILITIES;
use crate::blob::{BlobBuf, SealedBlob};
use crate::connection::{Fail, IDLE_RELEASE, RecvView, SendSlot, ShmConnection, Wait};
use crate::listener::{
    ACCEPT_QUEUE, Acceptor, Rendezvous, accept_thread_gone, attach, connect_socket,
};
use crate::liveness::PeerWatch;
use crate::ring::RingControl;
use crate::segment::Segment;
use crate::sync::{Ordering, spin_loop};
use crate::wait::{self, Pacer, SpinBudget, Step};

/// What the task wants the helper to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Nothing,
    /// The receive ring's head to move past this position (and, if set,
    /// the send ring's tail to move from this one).
    Data {
        position: u64,
        space_tail: Option<u64>,
    },
    /// The send ring's tail to move from this position.
    Space {
        tail: u64,
    },
    Stop,
}

#[derive(Debug)]
struct Shared {
    segment: Arc<Segment>,
    rx_ring: usize,
    tx_ring: usize,
    strategy: WaitStrategy,
    want: Mutex<Want>,
    wanted: Condvar,
    ready: Notify,
    peer: Arc<PeerWatch>,
    peer_gone: AtomicBool,
}

impl Shared {
    fn ctl(&self, ring: usize) -> &RingControl {
        // SAFETY: the control block is inside the mapping `segment` keeps
        // alive; it is all atomics, valid for any bytes.
        unsafe { &*self.segment.ring(ring).ctl }
    }

    fn request(&self, want: Want) {
        *self.want.lock().unwrap_or_else(|e| e.into_inner()) = want;
        self.wanted.notify_one();
        // The helper may be parked on the segment for up to a second for
        // an earlier want: wake it, so a new request (or Stop, on drop) is
        // seen at once. These are the words this side parks on; the peer
        // parks on the other two, so it sees nothing.
        wait::wake(&self.ctl(self.rx_ring).data.0);
        wait::wake(&self.ctl(self.tx_ring).space.0);
    }

    /// The helper thread's loop.
    fn run(&self) {
        // How long adaptive waits spin, learned per direction (data, space).
        let mut spin = [SpinBudget::default(); 2];
        loop {
            let want = {
                let mut guard = self.want.lock().unwrap_or_else(|e| e.into_inner());
                while *guard == Want::Nothing {
                    guard = self.wanted.wait(guard).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::replace(&mut *guard, Want::Nothing)
            };
            if want == Want::Stop {
                return;
            }
            let budget = &mut spin[matches!(want, Want::Space { .. }) as usize];
            self.wait_for(want, budget);
            self.ready.notify_one();
        }
    }

    fn changed(&self, want: Want) -> bool {
        let tx = self.ctl(self.tx_ring);
        match want {
            Want::Data {
                position,
                space_tail,
            } => {
                self.segment.ring(self.rx_ring).published(position)
                    || space_tail.is_some_and(|t| tx.tail.0.load(Ordering::Acquire) != t)
            }
            Want::Space { tail } => tx.tail.0.load(Ordering::Acquire) != tail,
            Want::Nothing | Want::Stop => true,
        }
    }

    fn peer_gone(&self) -> bool {
        let gone = self.segment.other_closed()
            || crate::lifeline::is_dead(self.segment.other_lifeline())
            || !self.peer.is_alive();
        if gone {
            self.peer_gone
                .store(true, std::sync::atomic::Ordering::Release);
        }
        gone
    }

    /// Waits, paced like every other wait ([`Pacer`]), until `want`
    /// changes, the peer goes, or a new request (such as `Stop`) arrives;
    /// a wait that saw its change teaches `budget` its length.
    fn wait_for(&self, want: Want, budget: &mut SpinBudget) {
        let (ring, space) = match want {
            Want::Space { .. } => (self.tx_ring, true),
            _ => (self.rx_ring, false),
        };
        let ctl = self.ctl(ring);
        let signal = if space { &ctl.space.0 } else { &ctl.data.0 };
        let slice = match want {
            // Also waiting for space it cannot park on: look often.
            Want::Data {
                space_tail: Some(_),
                ..
            } => Duration::from_millis(1),
            _ => Duration::MAX,
        };
        let mut pacer = Pacer::new(self.strategy, *budget);
        loop {
            if self.changed(want) {
                pacer.teach(budget);
                return;
            }
            let tick = pacer.tick();
            if tick.now.is_some() && (self.new_request() || (tick.check_peer && self.peer_gone())) {
                return;
            }
            match pacer.step(tick) {
                Step::Spin => spin_loop(),
                Step::Yield => std::thread::yield_now(),
                Step::Park => {
                    let lifeline = self.segment.other_lifeline();
                    wait::park(signal, slice, lifeline, || !self.changed(want));
                }
            }
        }
    }

    fn new_request(&self) -> bool {
        *self.want.lock().unwrap_or_else(|e| e.into_inner()) != Want::Nothing
    }
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

/// A helper thread and what it shares with the task it serves. Dropping
/// it stops and joins the thread.
#[derive(Debug)]
struct Waiter {
    shared: Arc<Shared>,
    helper: Option<JoinHandle<()>>,
}

impl Waiter {
    fn start(inner: &ShmConnection) -> Result<Waiter, ConnectError> {
        let shared = Arc::new(Shared {
            segment: Arc::clone(&inner.seg),
            rx_ring: inner.rx_ring,
            tx_ring: inner.tx_ring,
            strategy: inner.config().wait_strategy,
            want: Mutex::new(Want::Nothing),
            wanted: Condvar::new(),
            ready: Notify::new(),
            peer: Arc::clone(&inner.peer),
            peer_gone: AtomicBool::new(false),
        });
        let for_helper = Arc::clone(&shared);
        let helper = std::thread::Builder::new()
            .name("ipc-shm-waiter".into())
            .spawn(move || for_helper.run())?;
        Ok(Waiter {
            shared,
            helper: Some(helper),
        })
    }

    fn learn_peer_gone(&self, conn: &mut impl Access) {
        if self
            .shared
            .peer_gone
            .load(std::sync::atomic::Ordering::Acquire)
        {
            conn.with(|c| c.gone = true);
        }
    }

    /// Runs a non-blocking receive step until it stops reporting
    /// `Empty`, waiting until `deadline`. `flush_too`: also push out the
    /// rest of a chunked message while waiting (an unsplit connection; a
    /// write half does that itself).
    async fn recv_until<A: Access, T>(
        &self,
        conn: &mut A,
        deadline: Option<Instant>,
        flush_too: bool,
        mut take: impl FnMut(&mut ShmConnection) -> Result<T, RecvError>,
    ) -> Result<T, RecvError> {
        let mut released = false;
        loop {
            let notified = self.shared.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.learn_peer_gone(conn);
            let want = conn.with(|c| match take(c) {
                Err(RecvError::Empty) => Ok(Want::Data {
                    position: c.rx.position(),
                    space_tail: (flush_too && c.has_pending()).then(|| c.tx.seen_tail()),
                }),
                other => Err(other),
            });
            match want {
                Ok(want) => self.shared.request(want),
                Err(received) => return received,
            }
            // After IDLE_RELEASE of waiting, give back unused memory once
            // (under the lock, so never beside a step of the other half).
            let idle = Instant::now() + IDLE_RELEASE;
            if !released && deadline.is_none_or(|d| d > idle) {
                if tokio::time::timeout_at(idle, notified.as_mut())
                    .await
                    .is_ok()
                {
                    continue;
                }
                conn.with(ShmConnection::release_idle_memory);
                released = true;
            }
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(RecvError::Timeout);
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Runs a non-blocking send step until it stops reporting a full ring.
    async fn until_room<A: Access, T>(
        &self,
        conn: &mut A,
        deadline: Option<Instant>,
        mut step: impl FnMut(&mut ShmConnection) -> Result<T, Fail>,
    ) -> Result<T, SendError> {
        loop {
            let notified = self.shared.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.learn_peer_gone(conn);
            let attempt = conn.with(|c| match step(c) {
                Err(Fail::WouldBlock) => Ok((
                    c.config().backpressure == ipc_core::Backpressure::Fail,
                    c.tx.seen_tail(),
                )),
                other => Err(other.map_err(SendError::from)),
            });
            let (fail_when_full, tail) = match attempt {
                Ok(full) => full,
                Err(done) => return done,
            };
            if fail_when_full {
                return Err(SendError::Full);
            }
            self.shared.request(Want::Space { tail });
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(SendError::Timeout);
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn send_until(
        &self,
        conn: &mut impl Access,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.until_room(conn, deadline, |c| c.flush_pending(&mut Wait::Never))
            .await?;
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
}

impl Waiter {
    async fn send_blob_until(
        &self,
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

impl Drop for Waiter {
    fn drop(&mut self) {
        self.shared.request(Want::Stop);
        if let Some(helper) = self.helper.take() {
            // `request` woke the helper if it was parked: it sees Stop now.
            let _ = helper.join();
        }
    }
}

fn deadline_after(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

/// An async shared-memory connection (either end). Build it from a
/// blocking one with [`AsyncShmConnection::new`] or connect with
/// [`AsyncShm`]. Must be used inside a tokio runtime.
#[derive(Debug)]
pub struct AsyncShmConnection {
    // Declared first: the helper stops before the connection closes.
    waiter: Waiter,
    inner: ShmConnection,
}

impl AsyncShmConnection {
    /// Wraps a blocking connection; starts its helper thread.
    pub fn new(inner: ShmConnection) -> Result<Self, ConnectError> {
        Ok(AsyncShmConnection {
            waiter: Waiter::start(&inner)?,
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
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let deadline = deadline_after(self.inner.config().send_timeout);
        self.waiter
            .send_until(&mut self.inner, frame, deadline)
            .await
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
}

impl AsyncConnection for AsyncShmConnection {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn peer_credentials(&self) -> PeerCredentials {
        self.inner.peer_credentials()
    }
}

impl AsyncSplit for AsyncShmConnection {
    type ReadHalf = ShmReadHalf;
    type WriteHalf = ShmWriteHalf;

    /// Splits into halves that share the connection (each step takes a
    /// lock for a moment, never across a wait); the write half gets a
    /// helper thread of its own, so both can wait at once. The connection
    /// closes when both halves are gone; dropping the write half alone
    /// tells the peer this side is closing (its sends then fail, its
    /// receives drain what is left).
    fn into_split(self) -> (ShmReadHalf, ShmWriteHalf) {
        let AsyncShmConnection { waiter, inner } = self;
        // A second helper thread; if it cannot start, the write half waits
        // with the reader's helper by polling (never fails the split).
        let writer_waiter = Waiter::start(&inner).ok();
        let segment = Arc::clone(&inner.seg);
        let conn = Arc::new(Mutex::new(inner));
        (
            ShmReadHalf {
                waiter,
                conn: Arc::clone(&conn),
            },
            ShmWriteHalf {
                waiter: writer_waiter,
                conn,
                segment,
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
    waiter: Option<Waiter>,
    conn: Arc<Mutex<ShmConnection>>,
    segment: Arc<Segment>,
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
}

impl ShmWriteHalf {
    /// Sends `blob` by reference (see [`ShmConnection::send_blob`]).
    pub async fn send_blob(&mut self, blob: BlobBuf) -> Result<(), SendError> {
        let blob = self.conn.with(|c| c.seal_blob(blob))?;
        let deadline = deadline_after(self.config().send_timeout);
        match &self.waiter {
            Some(waiter) => {
                waiter
                    .send_blob_until(&mut self.conn, &blob, deadline)
                    .await
            }
            None => Err(SendError::Io(std::io::Error::other(
                "the write half's helper thread could not start",
            ))),
        }
    }

    async fn send_until(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        match &self.waiter {
            Some(waiter) => waiter.send_until(&mut self.conn, frame, deadline).await,
            None => Err(SendError::Io(std::io::Error::other(
                "the write half's helper thread could not start",
            ))),
        }
    }
}

impl AsyncFrameSender for ShmWriteHalf {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let deadline = deadline_after(self.config().send_timeout);
        self.send_until(frame, deadline).await
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.send_until(frame, Some(Instant::now() + timeout)).await {
            Err(SendError::Full) => Err(SendError::Timeout),
            other => other,
        }
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        let deadline = deadline_after(self.config().send_timeout);
        match &self.waiter {
            Some(waiter) => {
                waiter
                    .until_room(&mut self.conn, deadline, |c| {
                        c.flush_pending(&mut Wait::Never)
                    })
                    .await
            }
            None => Ok(()),
        }
    }
}

impl Drop for ShmWriteHalf {
    fn drop(&mut self) {
        // Stop this half's helper, push out the rest of a committed
        // message, then tell the peer this side is done (the read half
        // still drains what the peer sent).
        self.waiter.take();
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).linger();
        self.segment.close();
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
/// let mut listener = AsyncShmListener::bind(&name, &Config::default())?;
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
    /// Listens as `shm:NAME` (see [`ShmListener::bind`](crate::ShmListener::bind)).
    pub fn bind(name: &str, config: &Config) -> Result<Self, ConnectError> {
        let address: Address = format!("shm:{name}").parse()?;
        Self::bind_address(&address, config)
    }

    /// Listens on a `shm:` address.
    pub fn bind_address(address: &Address, config: &Config) -> Result<Self, ConnectError> {
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
