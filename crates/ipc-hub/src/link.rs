//! One connection's engine, the same on both sides of a hub: a writer task
//! that drains a bounded queue into the connection, a reader task that
//! matches replies to waiting calls and hands everything else to the owner
//! (the hub or the agent), and the table of calls waiting for replies.
//!
//! A call avoids the hops between threads that cost most on a
//! multi-thread runtime (waking a parked thread costs tens of
//! microseconds on the machines we measure): when nothing is queued and
//! the writer is idle, the caller writes its frame itself. Over a
//! transport whose receive spins (shared memory), a task waiting for
//! something from the peer (a caller for its reply, an agent for its next
//! event) also reads the connection itself while no one else does
//! ([`Link::wait_for`]), so no task has to be woken to hand it over; the
//! reader task reads when no one waits, and alone waits for room in the
//! owner's queue and ends the link. Elsewhere the caller watches for its
//! reply for a short while ([`REPLY_SPIN`]) before it sleeps.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{AsyncFrameReceiver, AsyncFrameSender, RecvError, SendError};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::codec::PeerCodec;
use crate::wire::{self, Kind, Outgoing};
use crate::{CallError, LeaveReason, PeerId, SendToError};

/// What each message, call or log costs the peer's backlog beyond its
/// bytes: an event's own size, about, so that many empty frames cannot
/// hold more memory than the backlog says.
const FRAME_WEIGHT: usize = 64;

/// Bytes of a peer's frames waiting to be read by the owner; released
/// when the owner takes the event.
pub(crate) type Held = tokio::sync::OwnedSemaphorePermit;

/// What a link hands its owner.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(PeerId, Bytes, PeerCodec, Held),
    Call(PeerId, u64, Bytes, Arc<Link>, Held),
    Log(PeerId, Bytes, Held),
    /// The peer said goodbye (it may still send until it closes).
    Bye(String),
    /// The link ended; nothing more comes from it.
    Left(PeerId, LeaveReason),
    // Hub notices, on the same queue so they keep their order.
    Joined(crate::PeerInfo),
    Rejected(ipc_core::PeerCredentials, crate::AdmitError),
    AcceptFailed(ipc_core::ConnectError),
    /// A supervisor's notice.
    Agent(crate::AgentNotice),
}

/// What the writer task is asked to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    /// Flush and close the sending side (after a goodbye).
    Close,
}

/// How long closing waits for a link's aborted tasks to end (see
/// [`Link::reaped`]).
pub(crate) const REAP_LIMIT: Duration = Duration::from_millis(100);

/// How long a caller watches for its reply before it sleeps: about what
/// waking a sleeping thread costs here, the rule the transports' adaptive
/// waits follow. A reply within it costs no wake-up; a slower one costs
/// this much CPU more. Not over a transport whose receive spins itself
/// ([`Capabilities::receive_spins`](ipc_core::Capabilities)): the reader
/// sees the reply without a wake-up, and a third spinning thread on a
/// two-CPU machine only starves the two that do the work (measured: a
/// call over shared memory took 124 us with both spinning, 7.4 us with
/// the caller asleep; over a Unix socket 74 us without the caller's spin,
/// 11.7 us with it: `ipc-bench --groups=hub --quick`).
pub(crate) const REPLY_SPIN: Duration = Duration::from_micros(50);

/// How long the reader task, having given the read side to a caller,
/// waits before it looks at the side again unless it is rung. If calls
/// were made meanwhile (callers follow one another), it waits as long
/// again; if the side is still held by the same caller (a reply that
/// takes long), it sleeps until that caller puts the side down, which
/// then rings it. A caller putting the side down rings it only then, or
/// where it is owed (work only it does, calls waiting to be handed their
/// replies): so calls in a row wake no thread each, and cost at most a
/// look a grace (measured: docs/measurements/decisions.md, "The reader
/// is not woken after every call"). A frame that comes while no one
/// reads waits about this long at most.
pub(crate) const READER_GRACE: Duration = Duration::from_millis(1);

/// The connection's sending half, shared by the writer task and the
/// callers that write inline; taken (and so closed) when the writer ends.
/// (futures' lock: putting it down is one atomic when no one waits.)
type SharedWrite<W> = Arc<futures_util::lock::Mutex<Option<W>>>;

/// A frame's write the caller starts itself (holding the sending half).
type InlineWrite = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What became of a frame offered to the sending half.
enum Inline {
    /// Sent at once ([`AsyncFrameSender::try_send`]: no task, no timer),
    /// or failed, and the link has ended.
    Done,
    /// Its write has started and must be driven to its end.
    Started(InlineWrite),
}

/// Starts an inline write of a frame, if the sending half is free now
/// (the frame is copied only for a write that has to wait).
struct TryInline(Box<InlineStep>);

/// One try at writing a frame of the link on the caller's task.
type InlineStep = dyn Fn(&Link, &[u8]) -> Option<Inline> + Send + Sync;

impl std::fmt::Debug for TryInline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TryInline")
    }
}

/// How long one write attempt waits for room before trying again (and
/// looking at the stop signal, which also interrupts it).
pub(crate) const WRITE_SLICE: Duration = Duration::from_secs(1);
/// Longest back-off between attempts on a transport that fails when full.
const MAX_PAUSE: Duration = Duration::from_millis(50);

type Waiting = oneshot::Sender<Result<Bytes, CallError>>;

/// Bits of [`Link::ended`].
const LEFT: u8 = 1;
const NO_REPLIES: u8 = 2;

/// The hash of keys from this process's own counter (call ids, peer
/// ids): they need no keyed hash (a peer can only look them up, never add
/// one), and a multiply spreads them over a table at a fraction of
/// SipHash's cost.
#[derive(Debug, Default)]
pub(crate) struct CounterHasher(u64);

/// A map keyed by [`CounterHasher`].
pub(crate) type CounterMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<CounterHasher>>;

impl std::hash::Hasher for CounterHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Debug, Default)]
struct Calls {
    waiting: CounterMap<u64, Waiting>,
    left: Option<LeaveReason>,
    /// The peer said goodbye and closed its side: no reply can come, but
    /// this side may still send until its owner closes (see
    /// [`Reader::keep_writing_after_goodbye`]).
    replies_ended: Option<LeaveReason>,
}

impl Calls {
    /// Why no call can be answered any more, if so.
    fn refusing(&self) -> Option<&LeaveReason> {
        self.left.as_ref().or(self.replies_ended.as_ref())
    }

    // The table changes only through these, which keep `count` (the
    // link's `awaiting`, read without the lock) its size.

    fn insert(&mut self, id: u64, call: Waiting, count: &AtomicUsize) {
        self.waiting.insert(id, call);
        count.store(self.waiting.len(), Ordering::Release);
    }

    fn remove(&mut self, id: u64, count: &AtomicUsize) -> Option<Waiting> {
        let call = self.waiting.remove(&id);
        count.store(self.waiting.len(), Ordering::Release);
        call
    }

    fn take_all(&mut self, count: &AtomicUsize) -> CounterMap<u64, Waiting> {
        count.store(0, Ordering::Release);
        std::mem::take(&mut self.waiting)
    }
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: PeerId,
    out: mpsc::Sender<Out>,
    /// Frames queued and not yet written (a call writes inline only at 0,
    /// so frames keep their order).
    queued: AtomicUsize,
    try_inline: TryInline,
    /// The runtime the link's tasks run on (see [`Link::write_inline`]).
    runtime: tokio::runtime::Handle,
    /// Who reads the connection.
    reading: Arc<dyn Drive>,
    /// Whether a task waiting for something from the peer reads the
    /// connection itself (over a transport whose receive spins), rather
    /// than being woken by the reader task.
    waiters_read: bool,
    calls: Mutex<Calls>,
    /// How many calls [`Calls`] holds, read without the lock.
    awaiting: AtomicUsize,
    /// Whether [`Calls::left`] or [`Calls::replies_ended`] is set: looked
    /// at for every frame sent, without the lock.
    ended: AtomicU8,
    next_call: AtomicU64,
    /// The last call whose caller read the reply itself had it quickly,
    /// or the link has had no such call yet (see [`SPOT_PATIENCE`]).
    answers_quick: AtomicBool,
    send_timeout: Duration,
    /// Where memory for bodies written in place comes from (the
    /// connection's transport).
    pub(crate) lender: ipc_core::Lender,
    /// The codec of the peer's typed bodies.
    pub(crate) codec: PeerCodec,
    /// The largest frame the connection takes (its `max_message_size`):
    /// a larger one is refused to its sender, never handed to the writer
    /// (where it would end the connection).
    max_frame: usize,
    /// Set when the link ends: stops the writer even mid-send.
    stop: watch::Sender<bool>,
    /// Its reader and writer tasks, which own the connection's halves.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    writer_done: watch::Sender<bool>,
    reader_done: watch::Sender<bool>,
}

/// The reader task, built but not yet running: the owner starts it once
/// it has announced the peer, so nothing from the peer comes before its
/// join.
pub(crate) struct Reader<R> {
    link: Arc<Link>,
    reading: Arc<Reading<R>>,
    /// See [`Reader::keep_writing_after_goodbye`].
    half_close: bool,
    /// The transport's receive spins before it parks
    /// ([`Capabilities::receive_spins`](ipc_core::Capabilities)).
    receive_spins: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here panics while holding a lock; a poisoned lock still
    // holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Link {
    /// Starts the writer; returns the link and its reader, to be started
    /// with [`Reader::start`].
    pub(crate) fn new<R, W>(
        peer: PeerId,
        (read, write): (R, W),
        receive_spins: bool,
        codec: PeerCodec,
        max_frame: usize,
        config: &crate::HubConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> (Arc<Link>, Reader<R>)
    where
        R: AsyncFrameReceiver + 'static,
        W: AsyncFrameSender + 'static,
    {
        let (out, queue) = mpsc::channel(config.queue_len);
        let lender = write.lender();
        let write: SharedWrite<W> = Arc::new(futures_util::lock::Mutex::new(Some(write)));
        let inline_write = Arc::clone(&write);
        let mut concrete = None;
        let link = Arc::new_cyclic(|weak: &std::sync::Weak<Link>| {
            let reading = Arc::new(Reading {
                side: futures_util::lock::Mutex::new(ReadSide {
                    read,
                    link: weak.clone(),
                    inbound,
                    budget: Arc::new(tokio::sync::Semaphore::new(config.peer_backlog_bytes)),
                    budget_bytes: config.peer_backlog_bytes,
                    pending: VecDeque::new(),
                    stalled: None,
                    goodbye: None,
                    ended: None,
                }),
                reader_bell: Notify::new(),
                callers_bell: Notify::new(),
                want: Notify::new(),
                wanting: AtomicUsize::new(0),
                reader_asleep: AtomicBool::new(false),
                #[cfg(test)]
                rings: AtomicUsize::new(0),
            });
            concrete = Some(Arc::clone(&reading));
            let weak = weak.clone();
            let try_inline = TryInline(Box::new(move |link: &Link, frame: &[u8]| {
                // Borrowed for the one step (no count of the half or the
                // link to take and give back); owned only for a write that
                // has to wait.
                match inline_write.try_lock()?.as_mut()?.try_send(frame) {
                    Ok(()) => return Some(Inline::Done),
                    // Nothing of it sent: written the usual way, below.
                    Err(SendError::Full) => {}
                    Err(e) => {
                        link.broken(e);
                        return Some(Inline::Done);
                    }
                }
                // Taken by another in between: queued after it.
                let mut half = inline_write.try_lock_owned()?;
                let link = weak.upgrade()?;
                let frame = Bytes::copy_from_slice(frame);
                Some(Inline::Started(Box::pin(async move {
                    if let Some(half) = half.as_mut() {
                        put_out(&link, half, Write::Frame(&frame)).await;
                        put_out(&link, half, Write::Tail).await;
                    }
                })))
            }));
            Link {
                peer,
                out,
                queued: AtomicUsize::new(0),
                try_inline,
                runtime: tokio::runtime::Handle::current(),
                reading,
                waiters_read: receive_spins,
                calls: Mutex::default(),
                awaiting: AtomicUsize::new(0),
                ended: AtomicU8::new(0),
                next_call: AtomicU64::new(1),
                answers_quick: AtomicBool::new(true),
                send_timeout: config.send_timeout,
                lender,
                codec,
                max_frame,
                stop: watch::channel(false).0,
                tasks: Mutex::default(),
                writer_done: watch::channel(false).0,
                reader_done: watch::channel(false).0,
            }
        });
        let writer = link
            .runtime
            .spawn(run_writer(Arc::clone(&link), write, queue));
        lock(&link.tasks).push(writer);
        let reader = Reader {
            link: Arc::clone(&link),
            reading: concrete.expect("made with the link"),
            half_close: false,
            receive_spins,
        };
        (link, reader)
    }

    /// Calls waiting for their replies.
    #[cfg(test)]
    pub(crate) fn calls_waiting(&self) -> usize {
        lock(&self.calls).waiting.len()
    }

    /// Whether the next caller reading its reply waits on the spot a
    /// while on a multi-thread runtime ([`SPOT_PATIENCE`]).
    #[cfg(test)]
    pub(crate) fn answers_quick(&self) -> bool {
        self.answers_quick.load(Ordering::Relaxed)
    }

    /// How often a caller putting the read side down rang the reader.
    #[cfg(test)]
    pub(crate) fn reader_rings(&self) -> usize {
        self.reading.reader_rings()
    }

    /// Whether the link has ended (no lock).
    fn has_left(&self) -> bool {
        self.ended.load(Ordering::Acquire) & LEFT != 0
    }

    /// Why the link ended, if it has.
    pub(crate) fn left(&self) -> Option<LeaveReason> {
        lock(&self.calls).left.clone()
    }

    /// Ends the link: every waiting call fails with `reason`, the writer
    /// stops. The first reason wins.
    pub(crate) fn leave(&self, reason: LeaveReason) -> LeaveReason {
        let waiting = {
            let mut calls = lock(&self.calls);
            if let Some(first) = &calls.left {
                return first.clone();
            }
            calls.left = Some(reason.clone());
            self.ended.fetch_or(LEFT | NO_REPLIES, Ordering::AcqRel);
            calls.take_all(&self.awaiting)
        };
        for (_, call) in waiting {
            let _ = call.send(Err(CallError::PeerGone(reason.clone())));
        }
        self.stop.send_replace(true);
        reason
    }

    /// The peer closed after its goodbye: calls waiting for replies fail,
    /// new ones are refused, but the writer goes on until the owner
    /// closes or drops the link.
    fn end_replies(&self, reason: LeaveReason) {
        let waiting = {
            let mut calls = lock(&self.calls);
            calls.replies_ended = Some(reason.clone());
            self.ended.fetch_or(NO_REPLIES, Ordering::AcqRel);
            calls.take_all(&self.awaiting)
        };
        for (_, call) in waiting {
            let _ = call.send(Err(CallError::PeerGone(reason.clone())));
        }
    }

    /// Ends the link after a write failed.
    fn broken(&self, e: SendError) {
        self.leave(match e {
            SendError::Disconnected => LeaveReason::Disconnected,
            e => LeaveReason::Failed(e.to_string()),
        });
    }

    /// Stops both tasks now. Each drops its half of the connection the
    /// next time its runtime polls it: see [`reaped`](Self::reaped).
    pub(crate) fn abort(&self) {
        self.leave(LeaveReason::Removed);
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }

    /// Waits until the tasks [`abort`](Self::abort) stopped are gone, and
    /// with them the connection's halves, so the peer sees its end. On a
    /// current-thread runtime nothing else would poll them once the
    /// caller's `block_on` returns: the halves would stay open, the peer
    /// waiting, until the runtime is dropped.
    ///
    /// An aborted task ends at its next poll: [`REAP_LIMIT`] bounds only
    /// a runtime too busy (or not driven) to poll it.
    pub(crate) async fn reaped(&self) {
        let tasks: Vec<JoinHandle<()>> = lock(&self.tasks).drain(..).collect();
        // (Each ends as cancelled, or done if it ended first.)
        let _ = tokio::time::timeout(REAP_LIMIT, futures_util::future::join_all(tasks)).await;
    }

    fn gone(&self) -> SendToError {
        SendToError::PeerGone(self.left().unwrap_or(LeaveReason::Removed))
    }

    /// Refuses a frame the connection would not take.
    fn check_size(&self, frame: &[u8]) -> Result<(), SendToError> {
        if frame.len() > self.max_frame {
            return Err(SendToError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        Ok(())
    }

    /// Queues a frame, waiting up to the send timeout for room.
    pub(crate) async fn post(
        &self,
        frame: impl Into<Outgoing>,
        timeout: Duration,
    ) -> Result<(), SendToError> {
        let frame = frame.into();
        if self.has_left() {
            return Err(self.gone());
        }
        self.check_size(&frame)?;
        if self.write_inline(&frame) {
            // (A write that failed has ended the link.)
            return match self.has_left() {
                true => Err(self.gone()),
                false => Ok(()),
            };
        }
        let frame = Out::Frame(frame.into_bytes());
        match tokio::time::timeout(timeout, self.enqueue(frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(SendToError::Full),
        }
    }

    /// Puts `out` in the writer's queue, counting it until written.
    /// Cancel-safe: a send that times out or is dropped while it waits
    /// for room is not counted (else inline writes would stop for good).
    async fn enqueue(&self, out: Out) -> Result<(), mpsc::error::SendError<Out>> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        let mut uncount = Uncount(Some(&self.queued));
        let sent = self.out.send(out).await;
        if sent.is_ok() {
            uncount.0 = None;
        }
        sent
    }

    /// Queues a frame with the configured send timeout.
    pub(crate) async fn post_default(&self, frame: impl Into<Outgoing>) -> Result<(), SendToError> {
        self.post(frame, self.send_timeout).await
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_post(&self, frame: Bytes) -> Result<(), SendToError> {
        if self.has_left() {
            return Err(self.gone());
        }
        self.check_size(&frame)?;
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.out.try_send(Out::Frame(frame)).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => SendToError::Full,
                mpsc::error::TrySendError::Closed(_) => self.gone(),
            }
        })
    }

    /// Queues a goodbye, and with `close` the close of the sending side
    /// after it, waiting for room until `deadline`.
    pub(crate) async fn say_goodbye_by(
        &self,
        reason: &str,
        close: bool,
        deadline: Instant,
    ) -> bool {
        let bye = wire::encode(Kind::Bye, 0, reason.as_bytes());
        let queued = async {
            self.enqueue(Out::Frame(bye)).await.is_ok()
                && (!close || self.enqueue(Out::Close).await.is_ok())
        };
        tokio::time::timeout_at(deadline, queued)
            .await
            .unwrap_or(false)
    }

    /// Queues the close of the sending side (after what is queued),
    /// waiting for room until `deadline`; false if the writer has ended.
    pub(crate) async fn close_by(&self, deadline: Instant) -> bool {
        tokio::time::timeout_at(deadline, self.enqueue(Out::Close))
            .await
            .is_ok_and(|queued| queued.is_ok())
    }

    /// Waits until both tasks have ended, or `deadline`.
    pub(crate) async fn ended_by(&self, deadline: Instant) -> bool {
        let mut writer = self.writer_done.subscribe();
        let mut reader = self.reader_done.subscribe();
        let both = async {
            let _ = writer.wait_for(|done| *done).await;
            let _ = reader.wait_for(|done| *done).await;
        };
        tokio::time::timeout_at(deadline, both).await.is_ok()
    }

    /// Sends a call and waits for its reply until `deadline`.
    pub(crate) async fn call(
        &self,
        encode: impl FnOnce(u64) -> Result<Outgoing, CallError>,
        deadline: Instant,
    ) -> Result<Bytes, CallError> {
        self.call_waiting(encode, deadline, Wait::Reading).await
    }

    /// [`call`](Self::call), one of many a task waits for at once
    /// (`call_each`): the reader task hands the reply over, as one task
    /// cannot spin on many connections at once (measured: a `call_each`
    /// to 16 shm agents took 1.26x as long with each call reading,
    /// docs/measurements/hub/stop35-ab-all-*).
    pub(crate) async fn call_among_many(
        &self,
        encode: impl FnOnce(u64) -> Result<Outgoing, CallError>,
        deadline: Instant,
    ) -> Result<Bytes, CallError> {
        self.call_waiting(encode, deadline, Wait::HandedOver).await
    }

    async fn call_waiting(
        &self,
        encode: impl FnOnce(u64) -> Result<Outgoing, CallError>,
        deadline: Instant,
        wait: Wait,
    ) -> Result<Bytes, CallError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id)?;
        if frame.len() > self.max_frame {
            return Err(CallError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        // Where the caller reads its own reply, it first tries to hold the
        // read side before the call goes out: then no one else can read
        // the reply, and the call needs an entry in the table only if the
        // caller puts the side down before the reply has come.
        let by_itself = self.waiters_read && wait == Wait::Reading;
        let rx = match by_itself {
            true => match self.refusing_calls() {
                Some(reason) => return Err(CallError::PeerGone(reason)),
                None => None,
            },
            false => Some(self.register(id)?),
        };
        let mut reply = Reply {
            link: self,
            id,
            unsent: Some(frame),
            rx,
            got: None,
        };
        // Whatever happens from here (deadline, cancellation), no entry
        // may outlive the call.
        let mut forget = Forget {
            link: self,
            id,
            armed: true,
        };
        let peer_gone = || CallError::PeerGone(self.left().unwrap_or(LeaveReason::Removed));
        // Since when a caller reading its reply waits past the spot: its
        // answer's time is noted below (see `QUICK_ANSWER`).
        let mut waiting_since = None;
        if by_itself {
            // Sent by `Reply::held` if the side is free. A reply read on
            // the spot costs no timer (whose drop alone takes a lock of
            // the runtime's): as with `timeout_at`, an answer at hand
            // wins over the deadline.
            let mut on_the_spot = false;
            match self.reading.try_drive(self, &mut reply) {
                Driven::Reading(read) => {
                    waiting_since = Some(std::time::Instant::now());
                    if tokio::time::timeout_at(deadline, read).await.is_err() {
                        self.note_answer_time(false);
                        return Err(CallError::Timeout);
                    }
                }
                Driven::Read => on_the_spot = true,
                Driven::Busy => waiting_since = Some(std::time::Instant::now()),
            }
            // Read on the spot, or put down there for the reader's work.
            if on_the_spot {
                match reply.got.is_some() {
                    true => self.note_answer_time(true),
                    false => waiting_since = Some(std::time::Instant::now()),
                }
            }
        }
        let waited = match reply.arrived() {
            true => Ok(Ok(())),
            false => {
                tokio::time::timeout_at(deadline, async {
                    if let Some(frame) = reply.unsent.take() {
                        if reply.rx.is_none() {
                            reply.rx = Some(self.register(id)?);
                        }
                        if !self.write_inline(&frame) {
                            self.enqueue(Out::Frame(frame.into_bytes()))
                                .await
                                .map_err(|_| peer_gone())?;
                        }
                    }
                    // A fast peer answers within the spin: no thread goes
                    // to sleep. Not where waiters read: the receive spins
                    // already.
                    if !self.waiters_read {
                        let spin_until = std::time::Instant::now() + REPLY_SPIN;
                        while !reply.arrived() && std::time::Instant::now() < spin_until {
                            tokio::task::yield_now().await;
                        }
                    }
                    self.wait_for(&mut reply, wait).await;
                    Ok(())
                })
                .await
            }
        };
        forget.armed = reply.rx.is_some() && !reply.entry_taken();
        if let Some(since) = waiting_since {
            let answered = matches!(waited, Ok(Ok(()))) && matches!(reply.got, Some(Some(_)));
            self.note_answer_time(answered && since.elapsed() <= QUICK_ANSWER);
        }
        match waited {
            Ok(Ok(())) => reply.got.flatten().unwrap_or_else(|| Err(peer_gone())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Notes whether the last answer its caller read came quickly (see
    /// [`QUICK_ANSWER`]); written only when that changes, as callers on
    /// other threads read it.
    fn note_answer_time(&self, quick: bool) {
        if self.answers_quick.load(Ordering::Relaxed) != quick {
            self.answers_quick.store(quick, Ordering::Relaxed);
        }
    }

    /// Why no call can be answered any more, if so.
    fn refusing_calls(&self) -> Option<LeaveReason> {
        if self.ended.load(Ordering::Acquire) & NO_REPLIES == 0 {
            return None;
        }
        lock(&self.calls).refusing().cloned()
    }

    /// Puts a call's entry in the table, for its reply to be handed over.
    fn register(&self, id: u64) -> Result<oneshot::Receiver<Result<Bytes, CallError>>, CallError> {
        let (tx, rx) = oneshot::channel();
        let mut calls = lock(&self.calls);
        if let Some(reason) = calls.refusing() {
            return Err(CallError::PeerGone(reason.clone()));
        }
        calls.insert(id, tx, &self.awaiting);
        Ok(rx)
    }

    /// Waits until `awaited` has arrived. Where waiters read
    /// ([`Link::waiters_read`]), the waiting task reads the connection
    /// itself whenever no one else does, so nothing has to wake it; else
    /// the reader task hands it over. Cancel-safe. While it reads, the
    /// peer's other frames are read by this task: a future left unpolled
    /// after a wake-up (never done by `.await`, `select!` or a runtime)
    /// would hold them until it is polled or dropped.
    pub(crate) async fn wait_for(&self, awaited: &mut (impl Awaited + Send), wait: Wait) {
        // Counted as waiting to read from the first try that finds the
        // side held until this task holds it (then quietly: its own
        // put-down rings whom it owes) or returns without it (then the
        // reader is rung: no caller waits any more). Kept from a put-down
        // to the try after it: dropped between, it rang the reader, which
        // woke to find the side held by this task and took that for a
        // long call (see `READER_GRACE`).
        let mut wanting: Option<Wanting<'_>> = None;
        loop {
            if awaited.arrived() {
                return;
            }
            if !self.waiters_read || wait == Wait::HandedOver {
                return awaited.handed_over().await;
            }
            // Tried twice if held by another: first as is, then listening
            // and counted (a put-down after the count rings the bell
            // listened to).
            let put_down = self.reading.callers_bell().notified();
            tokio::pin!(put_down);
            let mut listening = false;
            loop {
                match self.reading.try_drive(self, &mut *awaited) {
                    Driven::Busy => {}
                    driven => {
                        if let Some(wanting) = wanting.take() {
                            wanting.quietly();
                        }
                        if let Driven::Reading(read) = driven {
                            read.await;
                        }
                        break;
                    }
                }
                if !listening {
                    put_down.as_mut().enable();
                    listening = true;
                    if wanting.is_none() {
                        wanting = Some(self.reading.want());
                    }
                    continue;
                }
                tokio::select! {
                    () = awaited.handed_over() => return,
                    _ = put_down.as_mut() => break,
                }
            }
        }
    }

    /// Starts writing `frame` on the caller's task if nothing is queued
    /// before it and the sending half is free: one hop to the writer task
    /// less. Polled once here; a write that has to wait (for room) goes on
    /// in a task of its own, still holding the half, so frames queued
    /// after it cannot pass it. False: not started, queue it.
    fn write_inline(&self, frame: &[u8]) -> bool {
        if self.queued.load(Ordering::Acquire) != 0 {
            return false;
        }
        let mut write = match (self.try_inline.0)(self, frame) {
            None => return false,
            Some(Inline::Done) => return true,
            Some(Inline::Started(write)) => write,
        };
        // The write is the link's, not the sender's: its timers, the
        // waits its connection registers and, if it has to wait, its task
        // belong to the link's runtime. A sender may wait on a runtime of
        // its own (a log shipper's), gone before the write ends.
        let _in_link_runtime = self.runtime.enter();
        let mut cx = Context::from_waker(Waker::noop());
        if write.as_mut().poll(&mut cx).is_pending() {
            self.runtime.spawn(write);
        }
        true
    }

    /// Hands a reply to its caller; true if one was waiting.
    fn complete(&self, id: u64, result: Result<Bytes, CallError>) -> bool {
        // A reply to a call that timed out (or was never made) finds no
        // entry and is dropped: its caller already has its answer.
        let waiting = lock(&self.calls).remove(id, &self.awaiting);
        waiting.is_some_and(|call| call.send(result).is_ok())
    }
}

/// Takes a frame back out of [`Link::queued`] unless it was queued.
struct Uncount<'a>(Option<&'a AtomicUsize>);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        if let Some(queued) = self.0 {
            queued.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Takes a call's entry out of the table when the call ends, unless its
/// answer came (and so the entry is gone already).
struct Forget<'a> {
    link: &'a Link,
    id: u64,
    armed: bool,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.link.calls).remove(self.id, &self.link.awaiting);
        }
    }
}

/// The connection's receiving half, and what was read from it but not yet
/// handed on. Whoever holds it reads: the reader task, or a task waiting
/// for something from the peer (a caller for its reply, an agent for its
/// next event), which so needs no wake-up from the reader. Taking a frame
/// is one synchronous step ([`ReadSide::take`]), so a reader dropped
/// between frames (a caller's deadline) leaves nothing half done.
struct ReadSide<R> {
    read: R,
    /// The link, for replies and for the calls it hands the owner (weak:
    /// the link holds this).
    link: std::sync::Weak<Link>,
    inbound: mpsc::Sender<Inbound>,
    /// The peer's share of the owner's queue, in bytes.
    budget: Arc<tokio::sync::Semaphore>,
    budget_bytes: usize,
    /// Messages, calls, logs and goodbyes read but not yet in the owner's
    /// queue, in order. Each message, call and log holds its share of the
    /// peer's backlog, so reading on past them to the replies behind
    /// costs no more memory than the backlog allows.
    pending: VecDeque<Inbound>,
    /// A message, call or log read while the backlog was full, with its
    /// weight: nothing more is read until it has its share (only the
    /// reader task waits for that).
    stalled: Option<(Kind, u64, Bytes, u32)>,
    goodbye: Option<String>,
    /// Why reading ended, if a caller saw it: the reader task ends the link.
    ended: Option<LeaveReason>,
}

impl<R> ReadSide<R> {
    /// Work only the reader task does: waiting for the backlog or the
    /// owner's queue, or ending the link.
    fn needs_reader(&self) -> bool {
        self.stalled.is_some() || self.ended.is_some() || !self.pending.is_empty()
    }
}

impl<R: AsyncFrameReceiver> ReadSide<R> {
    /// Takes one received frame: a reply completes its caller at once,
    /// whatever waits in the owner's queue; anything else goes to the
    /// owner in order. A waiter reading (`claim`) takes what it waits for
    /// straight from here: no table, queue or wake-up between. True if a
    /// task was woken (a caller, the owner).
    fn take(
        &mut self,
        received: Result<Bytes, RecvError>,
        claim: Option<&mut (dyn Claim + Send)>,
    ) -> Result<bool, LeaveReason> {
        let frame = match received {
            Ok(frame) => frame,
            Err(RecvError::Disconnected) => {
                return Err(match self.goodbye.take() {
                    Some(reason) => LeaveReason::Closed(reason),
                    None => LeaveReason::Disconnected,
                });
            }
            // A receive timeout in the connection's config: keep going.
            Err(RecvError::Timeout) => return Ok(false),
            Err(RecvError::FrameTooLarge { len, max }) => {
                return Err(LeaveReason::Protocol(format!(
                    "frame of {len} bytes over the limit of {max}"
                )));
            }
            Err(e) => return Err(LeaveReason::Failed(e.to_string())),
        };
        let mut envelope = wire::decode(frame).map_err(|e| LeaveReason::Protocol(e.to_string()))?;
        if let Some(claim) = claim {
            // In order: nothing read before it still waits for the owner
            // (the owner's queue has all its room, so it is empty).
            let in_order = self.pending.is_empty()
                && self.stalled.is_none()
                && self.inbound.capacity() == self.inbound.max_capacity();
            match claim.claim(envelope, in_order) {
                None => return Ok(false),
                Some(unclaimed) => envelope = unclaimed,
            }
        }
        let Some(link) = self.link.upgrade() else {
            return Err(LeaveReason::Removed);
        };
        let (kind, id, body) = (envelope.kind, envelope.id, envelope.body);
        let mut woke = false;
        match kind {
            Kind::Reply => woke = link.complete(id, Ok(body)),
            Kind::Fail => woke = link.complete(id, Err(CallError::Failed(wire::reason(&body)))),
            Kind::Bye => {
                let reason = wire::reason(&body);
                // Told once: a peer repeating its goodbye adds nothing
                // that waits (only what holds backlog may pile up).
                if self.goodbye.is_none() {
                    self.pending.push_back(Inbound::Bye(reason.clone()));
                }
                self.goodbye = Some(reason);
            }
            Kind::Hello | Kind::Welcome => {
                return Err(LeaveReason::Protocol(
                    "a handshake frame after the handshake".into(),
                ));
            }
            Kind::Message | Kind::Call | Kind::Log => {
                // Its share of the backlog (a frame over the whole budget
                // takes all of it). While the backlog is full, this peer
                // is not read (its transport pushes back), but what was
                // read still goes to the owner.
                let weight = (body.len() + FRAME_WEIGHT).min(self.budget_bytes) as u32;
                match Arc::clone(&self.budget).try_acquire_many_owned(weight) {
                    Ok(held) => self.pending.push_back(event(&link, kind, id, body, held)),
                    Err(_) => self.stalled = Some((kind, id, body, weight)),
                }
            }
        }
        Ok(self.deliver_ready()? || woke)
    }

    /// [`take`](Self::take) for a waiter reading: false when it must stop
    /// (the backlog is full or reading has ended), as only the reader
    /// task waits for the backlog and ends the link.
    fn take_for_waiter(
        &mut self,
        received: Result<Bytes, RecvError>,
        claim: &mut (dyn Claim + Send),
    ) -> bool {
        match self.take(received, Some(claim)) {
            Ok(_) => self.stalled.is_none(),
            Err(reason) => {
                self.ended = Some(reason);
                false
            }
        }
    }

    /// Puts what waits into the owner's queue while it has room; true if
    /// anything went.
    fn deliver_ready(&mut self) -> Result<bool, LeaveReason> {
        let mut delivered = false;
        while !self.pending.is_empty() {
            match self.inbound.try_reserve() {
                Ok(room) => room.send(self.pending.pop_front().expect("not empty")),
                Err(mpsc::error::TrySendError::Full(())) => break,
                // The owner has gone.
                Err(mpsc::error::TrySendError::Closed(())) => return Err(LeaveReason::Removed),
            }
            delivered = true;
        }
        Ok(delivered)
    }

    /// The stalled frame has its share of the backlog.
    fn unstall(&mut self, held: Held) -> Result<bool, LeaveReason> {
        let Some(link) = self.link.upgrade() else {
            return Err(LeaveReason::Removed);
        };
        if let Some((kind, id, body, _)) = self.stalled.take() {
            self.pending.push_back(event(&link, kind, id, body, held));
        }
        self.deliver_ready()
    }
}

/// The event a message, call or log becomes.
fn event(link: &Arc<Link>, kind: Kind, id: u64, body: Bytes, held: Held) -> Inbound {
    match kind {
        Kind::Message => Inbound::Message(link.peer, body, link.codec, held),
        Kind::Call => Inbound::Call(link.peer, id, body, Arc::clone(link), held),
        _ => Inbound::Log(link.peer, body, held),
    }
}

/// Who reads the connection: its [`ReadSide`] behind a lock that is only
/// ever tried, and the bells that say when it is free. Callers have the
/// first claim; the reader task reads when none waits, and does what only
/// it may ([`ReadSide::needs_reader`]).
struct Reading<R> {
    /// A lock that is only tried (the reader task waits for it once, at
    /// the end): futures' costs one atomic to take and one to put down
    /// when no one waits, where tokio's takes a lock to put down.
    side: futures_util::lock::Mutex<ReadSide<R>>,
    /// Rung (with a permit) when the side is put down or no caller waits
    /// for it any more.
    reader_bell: Notify,
    /// Rung for every waiting caller when the side is put down.
    callers_bell: Notify,
    /// Rung by a caller that found the side held: the reader task gives
    /// it up.
    want: Notify,
    /// Callers waiting to read.
    wanting: AtomicUsize,
    /// The reader task found the side held and waits to be rung when it
    /// is put down (else, in its grace, it looks again by itself).
    reader_asleep: AtomicBool,
    /// How often a put-down rang the reader.
    #[cfg(test)]
    rings: AtomicUsize,
}

/// What a [`Link`] needs of its [`Reading`], whatever its transport.
trait Drive: Send + Sync {
    /// Reads on the caller's task until what it waits for has arrived,
    /// if no one else reads now and nothing only the reader task may do
    /// waits. The future is cancel-safe: it is ready in the poll that
    /// claims a frame.
    fn try_drive<'a>(&'a self, link: &'a Link, awaited: &'a mut (dyn Claim + Send)) -> Driven<'a>;
    fn callers_bell(&self) -> &Notify;
    /// How often a caller's put-down rang the reader task.
    #[cfg(test)]
    fn reader_rings(&self) -> usize;
    /// Counts a caller as waiting to read, and asks the reader to give way.
    fn want(&self) -> Wanting<'_>;
}

/// What became of a [`Drive::try_drive`].
enum Driven<'a> {
    /// Someone else reads (or only the reader task may now).
    Busy,
    /// Read on the spot, and put down: look again at what is awaited.
    Read,
    /// Holding the side: reading goes on in this future.
    Reading(Pin<Box<dyn Future<Output = ()> + Send + 'a>>),
}

/// Steps a waiter takes on the spot, without a future, before it waits
/// in the receive: a peer answering within about a microsecond costs no
/// allocation and no listening for the stop signal (the same count as the
/// in-place spin of an async shared-memory wait).
const STEPS_ON_THE_SPOT: u32 = 64;

/// How long a caller on a multi-thread runtime goes on reading on the
/// spot, past [`STEPS_ON_THE_SPOT`], while the peer answers quickly
/// ([`QUICK_ANSWER`]). Its future yields to the runtime at every look: on
/// a worker, each yield puts the task in the queue, and a worker woken to
/// steal it takes a CPU the peer needs, which delays the next answer past
/// the spot too, and so on (measured: from a spawned task, the shm
/// call's p99 was bimodal by trial, about 3 or 40 us;
/// docs/measurements/decisions.md, "A caller waits on the spot on a
/// multi-thread runtime"). Well within tokio's advice for a task between
/// yields.
const SPOT_PATIENCE: Duration = Duration::from_micros(20);

/// An answer read within this of its call going out is quick: the next
/// caller waits on the spot for [`SPOT_PATIENCE`]. A slower one (a peer
/// that works on its answers) turns that off until an answer is quick
/// again, so calls to it do not hold a worker for nothing. As long as
/// the longest spin of an adaptive shared-memory wait.
const QUICK_ANSWER: Duration = Duration::from_micros(250);

impl std::fmt::Debug for dyn Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drive")
    }
}

/// A caller waiting to read; see [`Drive::want`].
struct Wanting<'a> {
    wanting: &'a AtomicUsize,
    reader_bell: &'a Notify,
}

impl Wanting<'_> {
    /// No longer waiting, without ringing the reader: for a caller that
    /// holds the side now (its put-down rings it).
    fn quietly(self) {
        self.wanting.fetch_sub(1, Ordering::AcqRel);
        std::mem::forget(self);
    }
}

impl Drop for Wanting<'_> {
    fn drop(&mut self) {
        if self.wanting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.reader_bell.notify_one();
        }
    }
}

/// The side, held. Its fields drop in order: the lock is released
/// before the bells ring, so a task they wake finds it free.
struct Holding<'a, R> {
    side: futures_util::lock::MutexGuard<'a, ReadSide<R>>,
    bells: Bells<'a>,
}

impl<R> Drop for Holding<'_, R> {
    fn drop(&mut self) {
        // Put down by a caller: the reader is owed a ring, whether it
        // asked or not, for work only it does, and for replies that other
        // calls wait to be handed (no one may read them for a while).
        if let Some(reader) = &mut self.bells.reader {
            reader.owed = self.side.needs_reader() || reader.calls.load(Ordering::Acquire) > 0;
        }
    }
}

/// Rung when a side is put down: for the callers waiting to read, and
/// for the reader where a caller put it down and the reader waits to be
/// rung ([`READER_GRACE`]).
struct Bells<'a> {
    reader: Option<ReaderBell<'a>>,
    callers: &'a Notify,
    wanting: &'a AtomicUsize,
}

/// The reader's bell, as a caller holding the side sees it.
struct ReaderBell<'a> {
    bell: &'a Notify,
    asleep: &'a AtomicBool,
    /// How many calls wait for replies on the link.
    calls: &'a AtomicUsize,
    /// Rung whether the reader asked or not (set as the side goes down).
    owed: bool,
    #[cfg(test)]
    rings: &'a AtomicUsize,
}

impl Drop for Bells<'_> {
    fn drop(&mut self) {
        // The side is free now (its lock went first). One fence for both
        // looks below: either a reader that went asleep, or a caller that
        // counted itself, did so before this looks (and is rung), or its
        // next try, after that, finds the side free (pairs with
        // `Reader::run` and `Drive::want`).
        std::sync::atomic::fence(Ordering::SeqCst);
        if let Some(reader) = &self.reader {
            let asleep = || {
                reader.asleep.load(Ordering::Relaxed) && reader.asleep.swap(false, Ordering::AcqRel)
            };
            if reader.owed || asleep() {
                #[cfg(test)]
                reader.rings.fetch_add(1, Ordering::Relaxed);
                reader.bell.notify_one();
            }
        }
        if self.wanting.load(Ordering::Relaxed) > 0 {
            self.callers.notify_waiters();
        }
    }
}

impl<R> Reading<R> {
    /// Holds the side; put down by a caller, it rings both bells, by the
    /// reader only the callers'.
    fn holding<'a>(
        &'a self,
        side: futures_util::lock::MutexGuard<'a, ReadSide<R>>,
        by_caller: Option<&'a Link>,
    ) -> Holding<'a, R> {
        Holding {
            side,
            bells: Bells {
                reader: by_caller.map(|link| ReaderBell {
                    bell: &self.reader_bell,
                    asleep: &self.reader_asleep,
                    calls: &link.awaiting,
                    owed: false,
                    #[cfg(test)]
                    rings: &self.rings,
                }),
                callers: &self.callers_bell,
                wanting: &self.wanting,
            },
        }
    }
}

impl<R: AsyncFrameReceiver + 'static> Drive for Reading<R> {
    fn try_drive<'a>(&'a self, link: &'a Link, awaited: &'a mut (dyn Claim + Send)) -> Driven<'a> {
        let Some(side) = self.side.try_lock() else {
            return Driven::Busy;
        };
        // Also once the link is stopping: the reader task ends it, and a
        // waiter that read on would find the stop signal at once, again
        // and again, never letting that task run.
        if side.needs_reader() || link.has_left() {
            drop(side);
            self.reader_bell.notify_one();
            return Driven::Busy;
        }
        let mut held = self.holding(side, Some(link));
        if !awaited.held() {
            return Driven::Busy;
        }
        // On the spot first: a bounded number of steps (and, for a caller
        // on a multi-thread runtime whose peer answers quickly, a bounded
        // time: `SPOT_PATIENCE`), so a peer that never pauses still leaves
        // this to the future below, which gives the runtime its turns.
        // What is awaited is looked at again only after a frame: while
        // this task holds the side, only a frame it takes brings it (the
        // end of the link, which may too, is seen once the steps are
        // done).
        if awaited.arrived() {
            return Driven::Read;
        }
        let (mut steps, mut until) = (0u32, None);
        loop {
            let side = &mut *held.side;
            match side.read.try_recv() {
                Err(RecvError::Empty) => std::hint::spin_loop(),
                received => {
                    if !side.take_for_waiter(received, awaited) {
                        awaited.putting_down();
                        return Driven::Read;
                    }
                    if awaited.arrived() {
                        return Driven::Read;
                    }
                }
            }
            steps += 1;
            if steps.is_multiple_of(STEPS_ON_THE_SPOT) {
                let now = std::time::Instant::now();
                if now >= *until.get_or_insert_with(|| now + awaited.patience()) {
                    break;
                }
            }
        }
        Driven::Reading(Box::pin(async move {
            // The whole of it, bells too (a field alone would be captured).
            let mut held = held;
            let mut stop = link.stop.subscribe();
            while !awaited.arrived() && !link.has_left() {
                let side = &mut *held.side;
                // The receive first: a frame already there (or spun for)
                // costs no listening for the stop signal, which is looked
                // at above for each frame.
                let received = tokio::select! {
                    biased;
                    received = side.read.recv() => received,
                    _ = stop.wait_for(|stop| *stop) => break,
                };
                if !side.take_for_waiter(received, awaited) || awaited.arrived() {
                    // Ready in the poll that took it: a claimed event
                    // lives only in this future until returned.
                    break;
                }
                // A peer that sends without pause must not keep this task
                // from its deadline (`timeout_at` looks at it only when
                // the task gives way): the runtime's budget makes it.
                tokio::task::coop::consume_budget().await;
            }
            if !awaited.arrived() {
                awaited.putting_down();
            }
        }))
    }

    fn callers_bell(&self) -> &Notify {
        &self.callers_bell
    }

    #[cfg(test)]
    fn reader_rings(&self) -> usize {
        self.rings.load(Ordering::Relaxed)
    }

    fn want(&self) -> Wanting<'_> {
        self.wanting.fetch_add(1, Ordering::AcqRel);
        // Pairs with the put-down's (`Bells`): see there.
        std::sync::atomic::fence(Ordering::SeqCst);
        self.want.notify_one();
        Wanting {
            wanting: &self.wanting,
            reader_bell: &self.reader_bell,
        }
    }
}

/// What the reader task's wait ended with.
enum Step {
    Received(Result<Bytes, RecvError>),
    /// An event went into the owner's queue (false: the owner has gone).
    Room(bool),
    /// The stalled frame's share of the backlog (`None`: closed).
    Backlog(Option<Held>),
}

/// How a task waits for something from the peer ([`Link::wait_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    /// It reads the connection itself while no one else does, where
    /// waiters read ([`Link::waiters_read`]).
    Reading,
    /// The reader task hands it over.
    HandedOver,
}

/// What a task waiting for something from the peer looks for, as it
/// reads the connection itself ([`Link::wait_for`]).
pub(crate) trait Claim {
    /// Whether it is here (or can never come); looks without waiting.
    fn arrived(&mut self) -> bool;
    /// Takes a frame this task read if it is what it waits for; else
    /// hands it back. `in_order`: nothing read before it still waits for
    /// the owner, so taking an event now keeps the peer's order.
    fn claim(&mut self, frame: wire::Envelope, in_order: bool) -> Option<wire::Envelope>;
    /// Told once the task holds the read side, before it reads; false:
    /// put it down at once.
    fn held(&mut self) -> bool {
        true
    }
    /// Told before the task puts the read side down without what it
    /// waits for (not when its future is dropped).
    fn putting_down(&mut self) {}
    /// How long the task may go on reading on the spot after its first
    /// [`STEPS_ON_THE_SPOT`] (see [`SPOT_PATIENCE`]).
    fn patience(&self) -> Duration {
        Duration::ZERO
    }
}

/// Something a task waits for from the peer: a call's reply, an agent's
/// next event. See [`Link::wait_for`].
pub(crate) trait Awaited: Claim {
    /// Waits for it to be handed over by whoever reads.
    fn handed_over(&mut self) -> impl Future<Output = ()> + Send + '_;
}

/// A call's reply.
struct Reply<'a> {
    link: &'a Link,
    id: u64,
    /// The call's frame until it is sent: by the caller once it holds the
    /// read side ([`Claim::held`]), else the usual way.
    unsent: Option<Outgoing>,
    /// The receiving end of its entry in the table, once it has one.
    rx: Option<oneshot::Receiver<Result<Bytes, CallError>>>,
    /// `Some(None)`: the link ended without it.
    got: Option<Option<Result<Bytes, CallError>>>,
}

impl Reply<'_> {
    /// Whoever handed the answer over took the entry out of the table
    /// (one the caller read itself is out and `rx` gone: see `claim`).
    fn entry_taken(&self) -> bool {
        matches!(self.got, Some(Some(_)))
    }
}

impl Claim for Reply<'_> {
    fn patience(&self) -> Duration {
        let multi_thread = || {
            tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        };
        match self.link.answers_quick.load(Ordering::Relaxed) && multi_thread() {
            true => SPOT_PATIENCE,
            false => Duration::ZERO,
        }
    }

    fn held(&mut self) -> bool {
        // Not written at once (queued behind others): sent the usual way,
        // with an entry.
        let sent = self
            .unsent
            .as_ref()
            .is_none_or(|frame| self.link.write_inline(frame));
        if sent {
            self.unsent = None;
        }
        sent
    }

    fn putting_down(&mut self) {
        // Sent while holding the side, with no entry yet: whoever reads
        // next must find one.
        if self.got.is_some() || self.rx.is_some() || self.unsent.is_some() {
            return;
        }
        match self.link.register(self.id) {
            Ok(rx) => self.rx = Some(rx),
            Err(gone) => self.got = Some(Some(Err(gone))),
        }
    }

    fn claim(&mut self, frame: wire::Envelope, _: bool) -> Option<wire::Envelope> {
        if frame.id != self.id || self.got.is_some() {
            return Some(frame);
        }
        let result = match frame.kind {
            Kind::Reply => Ok(frame.body),
            Kind::Fail => Err(CallError::Failed(wire::reason(&frame.body))),
            _ => return Some(frame),
        };
        self.got = Some(Some(result));
        // An entry it has goes now, before the side is put down: counted
        // there, it would ring the reader for a reply no one waits for.
        if self.rx.take().is_some() {
            lock(&self.link.calls).remove(self.id, &self.link.awaiting);
        }
        None
    }

    fn arrived(&mut self) -> bool {
        if let (None, Some(rx)) = (&self.got, &mut self.rx) {
            self.got = match rx.try_recv() {
                Ok(result) => Some(Some(result)),
                Err(oneshot::error::TryRecvError::Closed) => Some(None),
                Err(oneshot::error::TryRecvError::Empty) => None,
            };
        }
        self.got.is_some()
    }
}

impl Awaited for Reply<'_> {
    async fn handed_over(&mut self) {
        // A caller that does not hold the read side has its entry (see
        // `putting_down`), so `rx` is there.
        self.got = Some(match &mut self.rx {
            Some(rx) => rx.await.ok(),
            None => None,
        });
    }
}

impl<R: AsyncFrameReceiver + 'static> Reader<R> {
    /// When the peer says goodbye and closes its side, this side's writer
    /// goes on (an agent told the hub is shutting down still sends its
    /// last logs, then closes itself); by default the link ends.
    pub(crate) fn keep_writing_after_goodbye(mut self) -> Self {
        self.half_close = true;
        self
    }

    /// Runs the reader on its own task.
    pub(crate) fn start(self) {
        let link = Arc::clone(&self.link);
        let task = link.runtime.spawn(self.run());
        lock(&link.tasks).push(task);
    }

    async fn run(self) {
        let link = Arc::clone(&self.link);
        let reading = Arc::clone(&self.reading);
        let mut stop = link.stop.subscribe();
        // Given the side to a caller just now (see `READER_GRACE`).
        let mut gave_way = false;
        // In a grace, since the link had made this many calls.
        let mut grace_since: Option<u64> = None;
        let (reason, held) = loop {
            // Reads when no caller waits to, or when there is work only
            // this task does.
            let free = match reading.side.try_lock() {
                Some(side)
                    if side.needs_reader() || reading.wanting.load(Ordering::Acquire) == 0 =>
                {
                    Some(side)
                }
                Some(side) => {
                    drop(side);
                    reading.callers_bell.notify_waiters();
                    None
                }
                None => None,
            };
            let Some(side) = free else {
                // Calls made since the grace began: callers follow one
                // another (one waiting long for its reply has made none).
                let calls = link.next_call.load(Ordering::Relaxed);
                let streaming = grace_since.take().is_some_and(|seen| seen != calls);
                if std::mem::take(&mut gave_way) || streaming {
                    // A caller reads now, and callers often follow one
                    // another: look again in a while, unless rung (no
                    // thread is woken for each put-down).
                    grace_since = Some(calls);
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|stop| *stop) => break (LeaveReason::Removed, None),
                        _ = reading.reader_bell.notified() => {}
                        _ = tokio::time::sleep(READER_GRACE) => {}
                    }
                    continue;
                }
                // Asleep until rung: the next put-down rings. One that
                // came between the look above and this either is seen
                // below or sees this (pairs with `Bells`).
                reading.reader_asleep.store(true, Ordering::Release);
                std::sync::atomic::fence(Ordering::SeqCst);
                let takeable = reading.side.try_lock().is_some_and(|side| {
                    side.needs_reader() || reading.wanting.load(Ordering::Acquire) == 0
                });
                if takeable {
                    continue;
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => break (LeaveReason::Removed, None),
                    // Rung as the side went down: if a caller has it
                    // again by now, callers follow one another.
                    _ = reading.reader_bell.notified() => gave_way = true,
                }
                continue;
            };
            reading.reader_asleep.store(false, Ordering::Relaxed);
            grace_since = None;
            let mut held = reading.holding(side, None);
            if let Some(reason) = self.read_while_held(&mut *held.side, &mut stop).await {
                break (reason, Some(held));
            }
            // Given way to a caller (putting it down rings the callers).
            gave_way = true;
        };
        let reason = match reason {
            LeaveReason::Closed(_) if self.half_close => {
                link.end_replies(reason.clone());
                reason
            }
            reason => link.leave(reason),
        };
        // What the peer sent before it left comes before its `Left`. A
        // caller reading puts the side down on the stop signal.
        let mut held = match held {
            Some(held) => held,
            None => reading.holding(reading.side.lock().await, None),
        };
        let side = &mut *held.side;
        for event in side.pending.drain(..) {
            if side.inbound.send(event).await.is_err() {
                break;
            }
        }
        let _ = side.inbound.send(Inbound::Left(link.peer, reason)).await;
        drop(held);
        link.reader_done.send_replace(true);
    }

    /// Reads while holding the side, until the link ends (`Some`) or a
    /// caller waits to read (`None`).
    async fn read_while_held(
        &self,
        side: &mut ReadSide<R>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<LeaveReason> {
        let reading = &self.reading;
        let wanted = |side: &ReadSide<R>| {
            reading.wanting.load(Ordering::Acquire) > 0 && !side.needs_reader()
        };
        // Something was just handed to a task that may run on this thread.
        let mut delivered = false;
        loop {
            if let Some(reason) = side.ended.take() {
                return Some(reason);
            }
            let ready = match std::mem::take(&mut delivered) && self.receive_spins {
                // A receive that spins would hold this thread while the
                // task it just woke (the agent's handler, a caller) waits
                // for it: let that task run first, unless the next frame
                // is already here (a stream is read without a yield per
                // frame; the stop signal is still looked at for each).
                // Measured: docs/BENCHMARKS.md, the runtime's path.
                true if *stop.borrow() => return Some(LeaveReason::Removed),
                true => match side.read.try_recv() {
                    Err(RecvError::Empty) => {
                        tokio::task::yield_now().await;
                        None
                    }
                    received => Some(received),
                },
                false => None,
            };
            if ready.is_none() && wanted(side) {
                return None;
            }
            let received = if let Some(received) = ready {
                received
            } else {
                let weight = side.stalled.as_ref().map_or(0, |stalled| stalled.3);
                let needs_reader = side.needs_reader();
                let step = tokio::select! {
                    biased;
                    // `recv`, `reserve` and `acquire` are cancel-safe: a
                    // frame is never half taken, an event never half sent.
                    _ = stop.wait_for(|stop| *stop) => return Some(LeaveReason::Removed),
                    _ = reading.want.notified(), if !needs_reader => continue,
                    room = side.inbound.reserve(), if !side.pending.is_empty() => {
                        Step::Room(room.map(|room| room.send(side.pending.pop_front().expect("not empty"))).is_ok())
                    }
                    held = Arc::clone(&side.budget).acquire_many_owned(weight),
                        if side.stalled.is_some() => Step::Backlog(held.ok()),
                    received = side.read.recv(), if side.stalled.is_none() => Step::Received(received),
                };
                match step {
                    Step::Received(received) => received,
                    // The owner has gone.
                    Step::Room(false) | Step::Backlog(None) => return Some(LeaveReason::Removed),
                    Step::Room(true) => {
                        delivered = true;
                        continue;
                    }
                    Step::Backlog(Some(held)) => {
                        match side.unstall(held) {
                            Ok(woke) => delivered = woke,
                            Err(reason) => return Some(reason),
                        }
                        continue;
                    }
                }
            };
            match side.take(received, None) {
                Ok(woke) => delivered = woke,
                Err(reason) => return Some(reason),
            }
        }
    }
}

async fn run_writer<W: AsyncFrameSender>(
    link: Arc<Link>,
    write: SharedWrite<W>,
    mut queue: mpsc::Receiver<Out>,
) {
    let mut stop = link.stop.subscribe();
    // Taken from the queue all at once: their room is freed at once, so a
    // sender waiting for room is woken once per batch, not once per frame
    // (measured: a burst over shared memory, docs/measurements/decisions.md).
    // Until written they still count in `queued`: nothing passes them.
    // (Grown to the largest batch seen: an idle link's costs nothing.)
    let mut batch: Vec<Out> = Vec::new();
    loop {
        let taken = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            taken = queue.recv_many(&mut batch, link.out.max_capacity()) => taken,
        };
        if taken == 0 {
            // Every sender has gone.
            break;
        }
        // Waits for an inline write to finish; holds the half while the
        // batch is written, so frames queued after it cannot pass it.
        let mut guard = write.lock().await;
        let Some(half) = guard.as_mut() else { break };
        let mut frames = batch.drain(..);
        let mut closing = false;
        while let Some(out) = frames.next() {
            let Out::Frame(frame) = out else {
                let _ = tokio::time::timeout(link.send_timeout, half.flush()).await;
                link.queued.fetch_sub(1, Ordering::AcqRel);
                closing = true;
                break;
            };
            // While frames wait behind it, a small frame is held to go out
            // in one write with them, where the transport gathers (a
            // stream: one system call for many frames, not one each).
            // Held, it is committed ahead of anything later, so it counts
            // as written.
            let behind = frames.len() > 0 || !queue.is_empty();
            if !(behind && half.gather(&frame).is_ok()) {
                put_out(&link, half, Write::Frame(&frame)).await;
            }
            link.queued.fetch_sub(1, Ordering::AcqRel);
        }
        if closing {
            break;
        }
        if queue.is_empty() {
            put_out(&link, half, Write::Tail).await;
        }
        drop(guard);
    }
    // Closes the sending half (waiting for an inline write to finish).
    drop(write.lock().await.take());
    link.writer_done.send_replace(true);
}

/// What a write puts out: a frame, or the tail of one cut short.
#[derive(Clone, Copy)]
enum Write<'a> {
    Frame(&'a [u8]),
    /// A frame whose time slice ran out part way is committed, its tail
    /// held in the half until its next send or flush: pushed out when
    /// no frame follows at once, as the peer waits for it.
    Tail,
}

/// Writes, as the writer task (or an inline write) does: waits for room
/// in slices (watching the stop signal between them), backs off on a
/// transport that fails at once when full, and ends the link if the
/// connection fails.
async fn put_out<W: AsyncFrameSender>(link: &Link, half: &mut W, what: Write<'_>) {
    let mut stop = link.stop.subscribe();
    let mut pause = Duration::from_millis(1);
    loop {
        // `send` and `flush` are cancel-safe: stopping mid-frame never
        // cuts one.
        let sent = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => None,
            sent = attempt(half, what) => Some(sent),
        };
        match sent {
            None | Some(Ok(())) => return,
            // The peer is slow, not gone. Keep the frame; the queue
            // behind it fills and senders see `Full`.
            Some(Err(SendError::Timeout)) => continue,
            // A transport that fails at once when full (`Backpressure::
            // Fail`): back off instead of spinning.
            Some(Err(SendError::Full)) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            Some(Err(e)) => {
                link.broken(e);
                return;
            }
        }
    }
}

/// One slice of a [`put_out`].
async fn attempt<W: AsyncFrameSender>(half: &mut W, what: Write<'_>) -> Result<(), SendError> {
    match what {
        Write::Frame(frame) => half.send_timeout(frame, WRITE_SLICE).await,
        Write::Tail => tokio::time::timeout(WRITE_SLICE, half.flush())
            .await
            .unwrap_or(Err(SendError::Timeout)),
    }
}
