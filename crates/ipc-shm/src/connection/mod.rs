//! `ShmConnection`: one end of a segment, sending on one ring and
//! receiving on the other.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipc_core::{
    Capabilities, Config, ConnectError, Connection, PeerCredentials, RecvError, SendError,
};

use crate::CAPABILITIES;
use crate::bell::Bell;
use crate::blob::{self, PeerSlots, Slot};
use crate::ring::{Consumer, Producer, Record, Reservation, kind};
use crate::segment::{Segment, Side};
use crate::wait::SpinBudget;
use ipc_sys::process::PeerWatch;

pub(crate) use blocking::Wait;

mod blocking;
mod large;
mod steps;

/// How long a connection waits for data before it gives back the memory
/// it holds and does not use (see [`ShmConnection::release_idle_memory`]).
pub const IDLE_RELEASE: Duration = Duration::from_secs(1);

/// Messages larger than this go as blobs by default (see
/// [`ShmConnection::set_blob_threshold`]); docs/BENCHMARKS.md shows the
/// measurement behind it.
pub const DEFAULT_BLOB_THRESHOLD: usize = 128 << 10;

/// Why an operation did not complete.
#[derive(Debug)]
pub(crate) enum Fail {
    WouldBlock,
    Timeout,
    Gone,
    Corrupt(String),
    TooLarge {
        len: usize,
        max: usize,
    },
    /// Waiting itself failed (no runtime to wait on).
    Io(std::io::Error),
}

impl From<Fail> for SendError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::WouldBlock => SendError::Full,
            Fail::Timeout => SendError::Timeout,
            Fail::Gone => SendError::Disconnected,
            Fail::Corrupt(m) => SendError::Corrupted(m),
            Fail::TooLarge { len, max } => SendError::FrameTooLarge { len, max },
            Fail::Io(e) => SendError::Io(e),
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
            Fail::Io(e) => RecvError::Io(e),
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
    seg: Arc<Segment>,
    /// This side's end of each ring's doorbell, by ring (`bell.rs`).
    bells: Arc<[Bell; 2]>,
    tx: Producer,
    rx: Consumer,
    tx_ring: usize,
    rx_ring: usize,
    config: Config,
    assembly: Option<Assembly>,
    /// The rest of a committed chunked message that ran out of time.
    pending: Vec<u8>,
    gone: bool,
    peer: Arc<PeerWatch>,
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
    spin: [SpinBudget; 2],
    /// When a non-blocking step last asked the OS whether the peer lives.
    last_peer_check: Option<Instant>,
    /// Non-blocking steps that found nothing since the clock was last
    /// read for them (a loop of them reads it every
    /// [`CLOCK_EVERY`](crate::wait::CLOCK_EVERY)).
    idle_steps: u32,
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
            idle_steps: 0,
        })
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
}

/// A message found for an in-place receive: a record still in the ring,
/// or a chunked message assembled into an owned buffer.
pub(crate) enum InPlace {
    Record(Record),
    Owned(Bytes),
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
