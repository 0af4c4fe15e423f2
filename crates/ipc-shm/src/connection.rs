//! `ShmConnection`: one end of a segment, sending on one ring and
//! receiving on the other.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipc_core::{
    Capabilities, Config, ConnectError, Connection, FrameReceiver, FrameSender, PeerCredentials,
    RecvError, SendError,
};

use crate::CAPABILITIES;
use crate::bell::Bell;
use crate::blob::{self, Blob, BlobBuf, MAX_SLOTS, POOL_LIMIT, PeerSlots, SealedBlob, Slot};
use crate::handoff;
use crate::ring::{Consumer, Corrupt, Producer, Record, Reservation, kind};
use crate::segment::{Segment, Side};
use crate::sync::spin_loop;
use crate::wait::{self, Pacer, SpinBudget, Step};
use ipc_sys::process::PeerWatch;

/// How long dropping a connection waits to push out the rest of a
/// committed message.
const DROP_LINGER: Duration = Duration::from_secs(1);

/// How long a connection waits for data before it gives back the memory
/// it holds and does not use (see [`ShmConnection::release_idle_memory`]).
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// Messages larger than this go as blobs by default (see
/// [`ShmConnection::set_blob_threshold`]); docs/BENCHMARKS.md shows the
/// measurement behind it.
pub const DEFAULT_BLOB_THRESHOLD: usize = 128 << 10;

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
    fn until(self) -> Option<Instant> {
        match self {
            Wait::Until(at) => Some(at),
            _ => None,
        }
    }

    /// The deadline, fixed from `now` the first time it is asked for.
    fn deadline(&mut self, now: Instant) -> Option<Instant> {
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

/// Why an operation did not complete.
#[derive(Debug)]
pub(crate) enum Fail {
    WouldBlock,
    Timeout,
    Gone,
    Corrupt(String),
    TooLarge { len: usize, max: usize },
}

impl From<Fail> for SendError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::WouldBlock => SendError::Full,
            Fail::Timeout => SendError::Timeout,
            Fail::Gone => SendError::Disconnected,
            Fail::Corrupt(m) => SendError::Corrupted(m),
            Fail::TooLarge { len, max } => SendError::FrameTooLarge { len, max },
        }
    }
}

impl From<Fail> for RecvError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::WouldBlock => RecvError::Empty,
            Fail::Timeout => RecvError::Timeout,
            Fail::Gone => RecvError::Disconnected,
            Fail::Corrupt(m) => RecvError::Corrupted(m),
            Fail::TooLarge { len, max } => RecvError::FrameTooLarge { len, max },
        }
    }
}

/// Which way a wait looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// For data on the receive ring.
    Data,
    /// For space on the send ring.
    Space,
}

/// A chunked message being received.
#[derive(Debug)]
enum Assembly {
    Building {
        buf: BytesMut,
        total: usize,
    },
    /// An oversized message whose chunks are dropped until its last.
    Skipping,
}

/// One end of a shared-memory connection. See the [crate docs](crate).
#[derive(Debug)]
pub struct ShmConnection {
    pub(crate) seg: Arc<Segment>,
    /// This side's end of each ring's doorbell, by ring (`bell.rs`).
    pub(crate) bells: Arc<[Bell; 2]>,
    pub(crate) tx: Producer,
    pub(crate) rx: Consumer,
    pub(crate) tx_ring: usize,
    pub(crate) rx_ring: usize,
    config: Config,
    assembly: Option<Assembly>,
    /// The rest of a committed chunked message that ran out of time.
    pending: Vec<u8>,
    pub(crate) gone: bool,
    pub(crate) peer: Arc<PeerWatch>,
    broken: Option<String>,
    /// The socket the segment came over: blobs' descriptors travel on it.
    link: Option<OwnedFd>,
    /// Messages larger than this go as blobs (`None`: never).
    blob_threshold: Option<usize>,
    /// Blob bookkeeping (boxed: off the hot path).
    blobs: Box<Blobs>,
    /// The send ring's position when its pages were last given back.
    ring_released_at: Option<u64>,
    /// The send ring is backed and mapped (see [`Segment::populate_ring`]):
    /// from the first send, until its pages are given back.
    tx_populated: bool,
    /// The receive ring is mapped here: from the first record received.
    rx_populated: bool,
    /// How long adaptive waits spin, learned per direction ([`Dir`] as index).
    pub(crate) spin: [SpinBudget; 2],
    /// When a non-blocking step last asked the OS whether the peer lives.
    last_peer_check: Option<Instant>,
}

/// What a connection keeps about blobs.
#[derive(Debug, Default)]
struct Blobs {
    /// Blobs sent whose records the peer has not taken yet: (end of the
    /// record in the ring, bytes).
    in_flight: VecDeque<(u64, u64)>,
    bytes_in_flight: u64,
    /// This side's reusable blob slots (sending).
    pool: Vec<Slot>,
    /// The peer's slots this side has mapped (receiving).
    peer_slots: PeerSlots,
    /// Bytes of received blobs never written, held by messages now.
    unwritten: Arc<blob::Unwritten>,
}

// SAFETY: the raw pointers inside `tx` and `rx` point into the mapping that
// `seg` (an `Arc`, moved along) keeps alive; nothing is thread-local, and
// `&mut self` on every operation keeps this the ring's only producer and
// only consumer.
unsafe impl Send for ShmConnection {}

impl ShmConnection {
    /// The connection over `seg`, once both sides are attached. The
    /// attach word is the peer's to write: anything but "attached" is
    /// `Corrupted`, never a panic.
    pub(crate) fn new(
        seg: Segment,
        config: Config,
        link: Option<OwnedFd>,
        bells: [Bell; 2],
    ) -> Result<Self, ConnectError> {
        let (tx_ring, rx_ring) = match seg.side() {
            Side::Owner => (0, 1),
            Side::Peer => (1, 0),
        };
        let other = seg.other().ok_or_else(|| {
            ConnectError::Corrupted("the peer's attach word changed after it attached".into())
        })?;
        // SAFETY: each side produces on one ring and consumes the other, so
        // these are the only producer and consumer of their rings; the
        // memory lives as long as `seg`, which the connection owns.
        let (tx, rx): (Producer, Consumer) = unsafe {
            (
                Producer::new(seg.ring(tx_ring)),
                Consumer::new(seg.ring(rx_ring)),
            )
        };
        let max_record = tx.max_record();
        let unwritten_limit = 2 * config.max_message_size as u64;
        Ok(ShmConnection {
            seg: Arc::new(seg),
            bells: Arc::new(bells),
            tx,
            rx,
            tx_ring,
            rx_ring,
            config,
            assembly: None,
            pending: Vec::new(),
            gone: false,
            peer: Arc::new(PeerWatch::new(other)),
            broken: None,
            blob_threshold: link
                .as_ref()
                .map(|_| DEFAULT_BLOB_THRESHOLD.max(max_record)),
            link,
            blobs: Box::new(Blobs {
                unwritten: blob::Unwritten::new(unwritten_limit),
                ..Blobs::default()
            }),
            ring_released_at: None,
            tx_populated: false,
            rx_populated: false,
            spin: Default::default(),
            last_peer_check: None,
        })
    }

    /// Messages larger than `bytes` are sent as blobs (handed over by
    /// reference, read in place by the peer: see [`BlobBuf`]); `None`
    /// sends every message through the ring, in chunks when it is larger
    /// than a record. The default is [`DEFAULT_BLOB_THRESHOLD`]. Messages
    /// up to [`max_record`](Self::max_record) always go through the ring.
    pub fn set_blob_threshold(&mut self, bytes: Option<usize>) {
        self.blob_threshold = bytes.map(|b| b.max(self.max_record()));
    }

    /// Sends `blob` by reference: the peer receives a view of the very
    /// memory filled here, with no copy on either side. Waits for room as
    /// [`send`](FrameSender::send) does; blobs sent and not yet taken by
    /// the peer are limited to twice [`Config::max_message_size`] in
    /// bytes, so a peer that stops reading holds back the sender, not an
    /// unbounded pile of memory.
    ///
    /// Errors: [`SendError::FrameTooLarge`] (more than
    /// `max_message_size`), and those of `send`.
    pub fn send_blob(&mut self, blob: BlobBuf) -> Result<(), SendError> {
        let blob = self.seal_blob(blob)?;
        let mut wait = self.send_wait();
        self.flush_pending(&mut wait)?;
        Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob))?)
    }

    /// Sends a sealed blob by reference (see [`Blob`]): the peer maps the
    /// same memory as every other peer it was sent to. Waits and fails as
    /// [`send_blob`](Self::send_blob) does.
    pub fn send_sealed(&mut self, blob: &Blob) -> Result<(), SendError> {
        self.check_blob(blob.len())?;
        let mut wait = self.send_wait();
        self.flush_pending(&mut wait)?;
        Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob.0))?)
    }

    /// Checks and seals a blob about to be sent.
    pub(crate) fn seal_blob(&mut self, blob: BlobBuf) -> Result<SealedBlob, SendError> {
        self.check_blob(blob.len())?;
        Ok(blob.seal_inner()?)
    }

    /// Whether a blob of `len` bytes can go on this connection now.
    pub(crate) fn check_blob(&mut self, len: usize) -> Result<(), SendError> {
        self.check_sendable()?;
        let max = self.config.max_message_size;
        if len > max {
            return Err(SendError::FrameTooLarge { len, max });
        }
        if self.link.is_none() {
            return Err(SendError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this connection has no socket to hand blobs over",
            )));
        }
        Ok(())
    }

    /// Whether this connection can hand memory files over (it has a
    /// socket to pass them on).
    pub(crate) fn passes_blobs(&self) -> bool {
        self.link.is_some()
    }

    /// Whether a message of `len` bytes goes as a blob.
    pub(crate) fn goes_as_blob(&self, len: usize) -> bool {
        self.blob_threshold.is_some_and(|t| len > t)
    }

    /// The slot a message of `len` bytes goes in: a free one that fits,
    /// or a new one while the pool is under [`POOL_LIMIT`] and
    /// [`MAX_SLOTS`]; `None` if neither (the message then goes through the
    /// ring, or as a blob of its own when no slot could ever hold it).
    pub(crate) fn pick_slot(&mut self, len: usize) -> Result<Option<usize>, SendError> {
        if len > POOL_LIMIT {
            return Ok(None);
        }
        let free = self
            .blobs
            .pool
            .iter()
            .enumerate()
            .filter(|(_, s)| s.capacity() >= len && s.is_free())
            .min_by_key(|(_, s)| s.capacity())
            .map(|(i, _)| i);
        if free.is_some() {
            return Ok(free);
        }
        let held: usize = self.blobs.pool.iter().map(Slot::capacity).sum();
        if held + len.next_power_of_two() > POOL_LIMIT || self.blobs.pool.len() >= MAX_SLOTS {
            return Ok(None);
        }
        let id = u32::try_from(self.blobs.pool.len()).unwrap_or(u32::MAX);
        self.blobs.pool.push(Slot::create(id, len)?);
        Ok(Some(self.blobs.pool.len() - 1))
    }

    /// Copies `frame` into slot `index` and publishes it, if the ring and
    /// the socket have room now. A slot's descriptor goes with its first
    /// message, before the record.
    pub(crate) fn try_write_slot(
        &mut self,
        index: usize,
        frame: &[u8],
    ) -> Result<Option<()>, Fail> {
        let Some(reservation) = self.tx.try_reserve(16).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let link = self.link.as_ref().ok_or(Fail::Gone)?;
        let slot = &mut self.blobs.pool[index];
        if !slot.passed {
            match handoff::send_fd(link.as_fd(), b"S", slot.fd()) {
                Ok(()) => slot.passed = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(_) => return Err(Fail::Gone),
            }
        }
        slot.fill(frame);
        let record = blob::slot_record(slot.id, frame.len() as u64);
        self.tx.payload_mut(&reservation).copy_from_slice(&record);
        if self.tx.commit(reservation, kind::SLOT) {
            self.wake_consumer();
        }
        Ok(Some(()))
    }

    /// The message a `SLOT` record announces: in a slot this side maps
    /// already, or in a new one whose descriptor is next on the socket.
    fn take_slot(&mut self, payload: &[u8]) -> Result<Bytes, Fail> {
        let (id, len) = blob::parse_slot_record(payload).map_err(Fail::Corrupt)?;
        let max = self.config.max_message_size;
        if !self.blobs.peer_slots.knows(id) {
            let fd = self.recv_memory(b'S')?;
            self.blobs
                .peer_slots
                .add(id, fd, max)
                .map_err(Fail::Corrupt)?;
        }
        if len > max as u64 {
            return Err(Fail::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            });
        }
        self.blobs
            .peer_slots
            .message(id, len)
            .map_err(Fail::Corrupt)
    }

    /// The next descriptor on the socket, sent with `marker`.
    fn recv_memory(&mut self, marker: u8) -> Result<OwnedFd, Fail> {
        let corrupt = |what: String| Fail::Corrupt(format!("blob: {what}"));
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| corrupt("a blob on a connection without a socket".into()))?;
        let mut got = [0u8; 1];
        match handoff::recv_fd(link.as_fd(), &mut got) {
            Ok((1, Some(fd))) if got[0] == marker => Ok(fd),
            Ok(_) => Err(corrupt("the record came without its memory".into())),
            // The sender passes the memory before it publishes the record.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(corrupt("the record came without its memory".into()))
            }
            Err(e) => Err(corrupt(format!("receiving its memory: {e}"))),
        }
    }

    /// Hands over `blob` if the ring, the socket and the in-flight budget
    /// have room now. The descriptor goes first, then the record: by the
    /// time the peer sees the record, the descriptor is in its socket.
    pub(crate) fn try_write_blob(&mut self, blob: &SealedBlob) -> Result<Option<()>, Fail> {
        let tail = self.tx.refresh_tail().map_err(|c| self.corrupt(c))?;
        while let Some(&(end, bytes)) = self.blobs.in_flight.front()
            && end <= tail
        {
            self.blobs.in_flight.pop_front();
            self.blobs.bytes_in_flight -= bytes;
        }
        let budget = 2 * self.config.max_message_size as u64;
        if self.blobs.bytes_in_flight > 0 && self.blobs.bytes_in_flight + blob.len > budget {
            return Ok(None);
        }
        let Some(reservation) = self.tx.try_reserve(8).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let link = self.link.as_ref().ok_or(Fail::Gone)?;
        match handoff::send_fd(link.as_fd(), b"B", blob.fd.as_fd()) {
            Ok(()) => {}
            // The peer's socket is full: it drains as the peer takes
            // records, as the ring does.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(_) => return Err(Fail::Gone),
        }
        self.tx
            .payload_mut(&reservation)
            .copy_from_slice(&blob.len.to_le_bytes());
        if self.tx.commit(reservation, kind::BLOB) {
            self.wake_consumer();
        }
        self.blobs.in_flight.push_back((self.tx.head(), blob.len));
        self.blobs.bytes_in_flight += blob.len;
        Ok(Some(()))
    }

    /// The blob a `BLOB` record of `payload` announces, from the socket.
    fn take_blob(&mut self, payload: &[u8]) -> Result<Bytes, Fail> {
        let len = blob::record_len(payload).map_err(Fail::Corrupt)?;
        let fd = self.recv_memory(b'B')?;
        let max = self.config.max_message_size;
        if len > max as u64 {
            // Dropped with its record and descriptor; the next message follows.
            return Err(Fail::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            });
        }
        blob::open_received(fd, len, &self.blobs.unwritten).map_err(Fail::Corrupt)
    }

    /// Shared memory this connection holds now: the pages of its segment
    /// and of this side's blob slots that the kernel backs (pages are
    /// backed as traffic first reaches them, and given back after
    /// [`IDLE_RELEASE`] of waiting, see
    /// [`release_idle_memory`](Self::release_idle_memory)).
    pub fn shared_memory_bytes(&self) -> u64 {
        let slots: u64 = self.blobs.pool.iter().map(Slot::resident_bytes).sum();
        self.seg.resident_bytes() + slots
    }

    /// Gives the kernel back the shared memory this side holds and does not
    /// use now: its send ring's pages once the peer has taken everything in
    /// it, and the pages of its free blob slots. They are backed again when
    /// next used (zeroed by the kernel, a small cost on the first messages
    /// after). Called by every receive that has waited [`IDLE_RELEASE`]
    /// for data, so an idle agent and the hub side of it hold little more
    /// than their control pages.
    pub fn release_idle_memory(&mut self) {
        if self.pending.is_empty()
            && let Ok(tail) = self.tx.refresh_tail()
            && tail == self.tx.head()
            && self.ring_released_at != Some(tail)
            && self.seg.release_ring(self.tx_ring).is_ok()
        {
            self.ring_released_at = Some(tail);
            self.tx_populated = false;
        }
        for slot in &mut self.blobs.pool {
            slot.release_memory();
        }
    }

    /// A second descriptor of this connection's segment, for fault tests
    /// that play a hostile peer scribbling on it.
    #[doc(hidden)]
    pub fn segment_file(&self) -> std::io::Result<std::fs::File> {
        Ok(std::fs::File::from(self.seg.fd().try_clone_to_owned()?))
    }

    /// The peer process: the pid it wrote into the segment when it
    /// attached (checked against its start time, like every liveness
    /// check) and the uid `/proc` gives for that process. A peer can write
    /// any pid; it cannot make another process's start time match, so a
    /// lie shows as a peer that is not alive (uid `None`).
    pub fn peer_credentials(&self) -> PeerCredentials {
        let id = self.peer.id();
        PeerCredentials {
            pid: Some(id.pid),
            uid: id.uid(),
            holds_key: false,
        }
    }

    /// Pushes out the rest of a committed chunked message, waiting a
    /// bounded time (as dropping the connection does).
    pub(crate) fn linger(&mut self) {
        let _ = self.flush_pending(&mut Wait::from_timeout(Some(DROP_LINGER)));
    }

    /// Bytes of each ring.
    pub fn ring_capacity(&self) -> usize {
        self.seg.capacity() as usize
    }

    /// The largest message that travels as one record, and so the largest
    /// [`reserve`](Self::reserve) and in-place receive: half the ring less
    /// a record header. Larger messages are chunked through the ring.
    pub fn max_record(&self) -> usize {
        self.tx.max_record()
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Reserves `len` bytes in the ring for a message to be written in
    /// place: fill the returned slot and [`commit`](SendSlot::commit) it;
    /// dropping it uncommitted sends nothing. Waits for room as `send`
    /// does. `len` may be at most [`max_record`](Self::max_record)
    /// ([`SendError::FrameTooLarge`] otherwise).
    ///
    /// ```no_run
    /// # fn demo(conn: &mut ipc_shm::ShmConnection) -> Result<(), ipc_core::SendError> {
    /// let mut slot = conn.reserve(4096)?;
    /// slot.fill(7); // write the message straight into shared memory
    /// slot.commit();
    /// # Ok(()) }
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<SendSlot<'_>, SendError> {
        self.check_sendable()?;
        let max = self.config.max_message_size.min(self.max_record());
        if len > max {
            return Err(SendError::FrameTooLarge { len, max });
        }
        let mut wait = self.send_wait();
        self.flush_pending(&mut wait)?;
        let reservation = self.wait_until(Dir::Space, &mut wait, |c| {
            c.tx.try_reserve(len).map_err(|e| c.corrupt(e))
        })?;
        Ok(self.slot(reservation))
    }

    /// Receives the next message in place: the view borrows the ring and
    /// releases the space when dropped. A message that was chunked (larger
    /// than [`max_record`](Self::max_record)) is assembled into an owned
    /// buffer instead. Waits as `recv` does.
    pub fn recv_in_place(&mut self) -> Result<RecvView<'_>, RecvError> {
        self.check_receivable()?;
        let mut wait = Wait::from_timeout(self.config.recv_timeout);
        let found = self.wait_until(Dir::Data, &mut wait, |c| c.try_peek_in_place())?;
        Ok(self.view(found))
    }

    /// Space for `len` bytes if there is room now (the async `reserve`);
    /// `Fail::WouldBlock` when the ring is full.
    #[cfg(feature = "tokio")]
    pub(crate) fn reservation_now(&mut self, len: usize) -> Result<Reservation, Fail> {
        self.check_sendable().map_err(|e| match e {
            SendError::Corrupted(m) => Fail::Corrupt(m),
            _ => Fail::Gone,
        })?;
        let max = self.config.max_message_size.min(self.max_record());
        if len > max {
            return Err(Fail::TooLarge { len, max });
        }
        self.flush_pending(&mut Wait::Never)?;
        self.wait_until(Dir::Space, &mut Wait::Never, |c| {
            c.tx.try_reserve(len).map_err(|e| c.corrupt(e))
        })
    }

    /// The slot for a reservation from [`reservation_now`](Self::reservation_now).
    pub(crate) fn slot(&mut self, reservation: Reservation) -> SendSlot<'_> {
        SendSlot {
            conn: self,
            reservation,
        }
    }

    /// The next message for an in-place receive if one is there now (the
    /// async `recv_in_place`); `RecvError::Empty` when there is none.
    #[cfg(feature = "tokio")]
    pub(crate) fn in_place_now(&mut self) -> Result<InPlace, RecvError> {
        self.check_receivable()?;
        match self.wait_until(Dir::Data, &mut Wait::Never, |c| c.try_peek_in_place()) {
            Ok(found) => Ok(found),
            Err(Fail::Gone) if self.assembly.take().is_some() => Err(RecvError::Corrupted(
                "peer went away inside a chunked message".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The view of a message from [`in_place_now`](Self::in_place_now).
    pub(crate) fn view(&mut self, found: InPlace) -> RecvView<'_> {
        match found {
            InPlace::Record(record) => RecvView {
                conn: self,
                record: Some(record),
                owned: None,
            },
            InPlace::Owned(bytes) => RecvView {
                conn: self,
                record: None,
                owned: Some(bytes),
            },
        }
    }

    fn send_wait(&self) -> Wait {
        match self.config.backpressure {
            ipc_core::Backpressure::Block => Wait::from_timeout(self.config.send_timeout),
            ipc_core::Backpressure::Fail => Wait::Never,
        }
    }

    /// Whether a send may start; backs the send ring first if it is not.
    fn check_sendable(&mut self) -> Result<(), SendError> {
        if let Some(m) = &self.broken {
            return Err(SendError::Corrupted(m.clone()));
        }
        if self.gone || self.seg.other_closed() {
            self.gone = true;
            return Err(SendError::Disconnected);
        }
        if !self.tx_populated {
            self.seg.populate_ring(self.tx_ring);
            self.tx_populated = true;
        }
        Ok(())
    }

    /// Maps the receive ring here once its first record arrives (the
    /// producer backed it when it first sent).
    fn note_received(&mut self) {
        if !self.rx_populated {
            self.seg.populate_ring(self.rx_ring);
            self.rx_populated = true;
        }
    }

    fn check_receivable(&self) -> Result<(), RecvError> {
        match &self.broken {
            Some(m) => Err(RecvError::Corrupted(m.clone())),
            None => Ok(()),
        }
    }

    fn corrupt(&mut self, c: Corrupt) -> Fail {
        self.broken = Some(c.0.clone());
        Fail::Corrupt(c.0)
    }

    /// Rings the peer's consumer (the ring said it parks).
    pub(crate) fn wake_consumer(&self) {
        self.bells[self.tx_ring].ring();
    }

    /// Rings the peer's producer (the ring said it parks).
    pub(crate) fn wake_producer(&self) {
        self.bells[self.rx_ring].ring();
    }

    /// Marks this side closed and wakes the peer wherever it parks (the
    /// write half of a split connection does this when it drops; the rest
    /// when the connection drops and its doorbells close).
    pub(crate) fn close(&self) {
        self.seg.close();
        for bell in self.bells.iter() {
            bell.ring();
        }
    }

    /// True once the peer is known to have gone: closed cleanly (a flag in
    /// the segment, always read), its end of a doorbell closed (seen by
    /// the last drain), or died (when `check_process`: the data doorbell
    /// drained and the pidfd polled).
    pub(crate) fn peer_gone(&mut self, check_process: bool) -> bool {
        if !self.gone {
            if check_process {
                self.bells[self.rx_ring].drain();
            }
            self.gone = self.seg.other_closed()
                || self.bells.iter().any(Bell::hung_up)
                || (check_process && !self.peer.is_alive());
        }
        self.gone
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
                // death that soon without a system call per step.
                // Whatever the peer published before it went is still ours.
                let now = Instant::now();
                let check_process = self
                    .last_peer_check
                    .is_none_or(|t| now.duration_since(t) >= wait::SPIN_CHECK);
                if check_process {
                    self.last_peer_check = Some(now);
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
    fn park(&self, dir: Dir, wait: Wait, now: Instant, until: Option<Instant>) {
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

    /// Writes one record if it fits now.
    fn try_write(&mut self, kind: u32, parts: &[&[u8]]) -> Result<Option<()>, Fail> {
        match self.tx.try_write(kind, parts) {
            Ok(Some(wake)) => {
                if wake {
                    self.wake_consumer();
                }
                Ok(Some(()))
            }
            Ok(None) => Ok(None),
            Err(c) => Err(self.corrupt(c)),
        }
    }

    /// Writes the next chunk of a message's remainder `rest`; returns the
    /// bytes of `rest` it took.
    fn try_write_continuation(&mut self, rest: &[u8]) -> Result<Option<usize>, Fail> {
        let max = crate::ring::chunk_payload(self.seg.capacity());
        let (kind, n) = if rest.len() <= max {
            (kind::LAST, rest.len())
        } else {
            (kind::MORE, max)
        };
        Ok(self.try_write(kind, &[&rest[..n]])?.map(|()| n))
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

    fn try_push_pending(&mut self) -> Result<Option<usize>, Fail> {
        let rest = std::mem::take(&mut self.pending);
        let result = self.try_write_continuation(&rest);
        self.pending = rest;
        result
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Nothing to receive yet and the peer still open: a data wait may
    /// park.
    pub(crate) fn data_absent(&self) -> bool {
        !self.rx.has_record() && !self.seg.other_closed()
    }

    /// The consumer has freed nothing since the tail `seen` and the peer
    /// is still open: a space wait may park.
    pub(crate) fn space_unchanged(&self, seen: u64) -> bool {
        self.tx.observed_tail() == seen && !self.seg.other_closed()
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

    /// Takes the next complete message out of the ring, if there is one.
    fn try_take(&mut self) -> Result<Option<Bytes>, Fail> {
        if !self.pending.is_empty()
            && let Ok(Some(n)) = self.try_push_pending()
        {
            self.pending.drain(..n);
        }
        loop {
            let record = match self.rx.peek() {
                Ok(Some(record)) => {
                    self.note_received();
                    record
                }
                Ok(None) => {
                    if self.rx.take_wake() {
                        self.wake_producer();
                    }
                    return Ok(None);
                }
                Err(c) => return Err(self.corrupt(c)),
            };
            let outcome = self.take_record(&record);
            if self.rx.release(record) {
                self.wake_producer();
            }
            match outcome {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(Fail::Corrupt(m)) => return Err(self.corrupt(Corrupt(m))),
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies one record to the message being assembled.
    fn take_record(&mut self, record: &Record) -> Result<Option<Bytes>, Fail> {
        let payload = self.rx.payload(record);
        let corrupt = |what: &str| Err(Fail::Corrupt(format!("chunked message: {what}")));
        match (record.kind, self.assembly.take()) {
            (kind::BLOB, None) => {
                let payload = payload.to_vec();
                self.take_blob(&payload).map(Some)
            }
            (kind::SLOT, None) => {
                let payload = payload.to_vec();
                self.take_slot(&payload).map(Some)
            }
            (kind::WHOLE, None) => {
                let max = self.config.max_message_size;
                if payload.len() > max {
                    // Dropped with its record; the next message follows.
                    return Err(Fail::TooLarge {
                        len: payload.len(),
                        max,
                    });
                }
                Ok(Some(Bytes::copy_from_slice(payload)))
            }
            (kind::FIRST, None) => {
                let Some((total, chunk)) = payload.split_first_chunk::<8>() else {
                    return corrupt("first chunk too short");
                };
                let total = u64::from_le_bytes(*total);
                if total <= self.tx.max_record() as u64 || chunk.len() as u64 >= total {
                    return corrupt("length does not need chunking");
                }
                let max = self.config.max_message_size;
                if total > max as u64 {
                    self.assembly = Some(Assembly::Skipping);
                    return Err(Fail::TooLarge {
                        len: usize::try_from(total).unwrap_or(usize::MAX),
                        max,
                    });
                }
                let mut buf = BytesMut::with_capacity(total as usize);
                buf.extend_from_slice(chunk);
                self.assembly = Some(Assembly::Building {
                    buf,
                    total: total as usize,
                });
                Ok(None)
            }
            (kind::MORE | kind::LAST, Some(Assembly::Skipping)) => {
                if record.kind == kind::MORE {
                    self.assembly = Some(Assembly::Skipping);
                }
                Ok(None)
            }
            (kind::MORE | kind::LAST, Some(Assembly::Building { mut buf, total })) => {
                if buf.len() + payload.len() > total {
                    return corrupt("chunks exceed the announced length");
                }
                buf.extend_from_slice(payload);
                match (record.kind == kind::LAST, buf.len() == total) {
                    (true, true) => Ok(Some(buf.freeze())),
                    (false, false) => {
                        self.assembly = Some(Assembly::Building { buf, total });
                        Ok(None)
                    }
                    _ => corrupt("last chunk does not end the message"),
                }
            }
            (kind, Some(_)) => corrupt(&format!("record kind {kind} inside a chunked message")),
            (_, None) => corrupt("continuation without a first chunk"),
        }
    }

    fn try_peek_in_place(&mut self) -> Result<Option<InPlace>, Fail> {
        if self.assembly.is_none() && self.pending.is_empty() {
            match self.rx.peek() {
                Ok(Some(record)) if record.kind == kind::WHOLE => {
                    self.note_received();
                    return Ok(Some(InPlace::Record(record)));
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if self.rx.take_wake() {
                        self.wake_producer();
                    }
                    return Ok(None);
                }
                Err(c) => return Err(self.corrupt(c)),
            }
        }
        Ok(self.try_take()?.map(InPlace::Owned))
    }
}

/// A message found for an in-place receive: a record still in the ring,
/// or a chunked message assembled into an owned buffer.
pub(crate) enum InPlace {
    Record(Record),
    Owned(Bytes),
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

impl Connection for ShmConnection {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }
}

impl Drop for ShmConnection {
    fn drop(&mut self) {
        // A committed message's rest gets a bounded chance to leave.
        self.linger();
        // Closed in the segment, and the peer woken wherever it parks;
        // our doorbell ends close after this, when the last reference
        // (this, or an async side's) drops.
        self.close();
    }
}

/// Space reserved in the ring by [`ShmConnection::reserve`]; dereferences
/// to the message bytes. Nothing is sent until [`commit`](Self::commit).
#[derive(Debug)]
pub struct SendSlot<'a> {
    conn: &'a mut ShmConnection,
    reservation: Reservation,
}

impl SendSlot<'_> {
    /// Publishes the message to the peer.
    pub fn commit(self) {
        if self.conn.tx.commit(self.reservation, kind::WHOLE) {
            self.conn.wake_consumer();
        }
    }
}

impl std::ops::Deref for SendSlot<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.conn.tx.payload(&self.reservation)
    }
}

impl std::ops::DerefMut for SendSlot<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.conn.tx.payload_mut(&self.reservation)
    }
}

/// A message received in place by [`ShmConnection::recv_in_place`];
/// dereferences to its bytes and frees its ring space when dropped.
#[derive(Debug)]
pub struct RecvView<'a> {
    conn: &'a mut ShmConnection,
    record: Option<Record>,
    owned: Option<Bytes>,
}

impl RecvView<'_> {
    /// True if the bytes are read straight from shared memory (no copy).
    pub fn is_in_place(&self) -> bool {
        self.record.is_some()
    }
}

impl std::ops::Deref for RecvView<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match (&self.record, &self.owned) {
            (Some(record), _) => self.conn.rx.payload(record),
            (None, Some(bytes)) => bytes,
            (None, None) => &[],
        }
    }
}

impl Drop for RecvView<'_> {
    fn drop(&mut self) {
        if let Some(record) = self.record.take()
            && self.conn.rx.release(record)
        {
            self.conn.wake_producer();
        }
    }
}
