//! One connection's engine, the same on both sides of a hub: a writer task
//! that drains a bounded queue into the connection, a reader task that
//! matches replies to waiting calls and hands everything else to the owner
//! (the hub or the agent), and the table of calls waiting for replies.
//!
//! A call avoids the two hops between threads that cost most on a
//! multi-thread runtime (waking a parked thread costs tens of
//! microseconds on the machines we measure): when nothing is queued and
//! the writer is idle, the caller writes its frame itself, and it watches
//! for its reply for a short while ([`REPLY_SPIN`]) before it sleeps.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{AsyncFrameReceiver, AsyncFrameSender, RecvError, SendError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::codec::PeerCodec;
use crate::wire::{self, Kind};
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

/// The connection's sending half, shared by the writer task and the
/// callers that write inline; taken (and so closed) when the writer ends.
type SharedWrite<W> = Arc<tokio::sync::Mutex<Option<W>>>;

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

/// Starts an inline write of a frame, if the sending half is free now.
struct TryInline(Box<dyn Fn(Bytes) -> Option<Inline> + Send + Sync>);

impl std::fmt::Debug for TryInline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TryInline")
    }
}

/// How long one write attempt waits for room before trying again (and
/// looking at the stop signal, which also interrupts it).
const WRITE_SLICE: Duration = Duration::from_secs(1);
/// Longest back-off between attempts on a transport that fails when full.
const MAX_PAUSE: Duration = Duration::from_millis(50);

type Waiting = oneshot::Sender<Result<Bytes, CallError>>;

#[derive(Debug, Default)]
struct Calls {
    waiting: HashMap<u64, Waiting>,
    left: Option<LeaveReason>,
    /// The peer said goodbye and closed its side: no reply can come, but
    /// this side may still send until its owner closes (see
    /// [`Reader::keep_writing_after_goodbye`]).
    replies_ended: Option<LeaveReason>,
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: PeerId,
    out: mpsc::Sender<Out>,
    /// Frames queued and not yet written (a call writes inline only at 0,
    /// so frames keep their order).
    queued: AtomicUsize,
    try_inline: TryInline,
    /// How long a caller spins for its reply ([`REPLY_SPIN`] or none).
    reply_spin: Duration,
    calls: Mutex<Calls>,
    next_call: AtomicU64,
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
    tasks: Mutex<Vec<AbortHandle>>,
    writer_done: watch::Sender<bool>,
    reader_done: watch::Sender<bool>,
}

/// The reader, built but not yet running: the owner starts it once it has
/// announced the peer, so nothing from the peer comes before its join.
pub(crate) struct Reader<R> {
    link: Arc<Link>,
    read: R,
    inbound: mpsc::Sender<Inbound>,
    /// The peer's share of the owner's queue, in bytes.
    budget: Arc<tokio::sync::Semaphore>,
    budget_bytes: usize,
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
        let write: SharedWrite<W> = Arc::new(tokio::sync::Mutex::new(Some(write)));
        let inline_write = Arc::clone(&write);
        let link = Arc::new_cyclic(|weak: &std::sync::Weak<Link>| {
            let weak = weak.clone();
            let try_inline = TryInline(Box::new(move |frame: Bytes| {
                let mut half = Arc::clone(&inline_write).try_lock_owned().ok()?;
                let link = weak.upgrade()?;
                match half.as_mut()?.try_send(&frame) {
                    Ok(()) => return Some(Inline::Done),
                    // Nothing of it sent: written the usual way, below.
                    Err(SendError::Full) => {}
                    Err(e) => {
                        link.broken(e);
                        return Some(Inline::Done);
                    }
                }
                Some(Inline::Started(Box::pin(async move {
                    if let Some(half) = half.as_mut() {
                        write_frame(&link, half, &frame).await;
                    }
                })))
            }));
            Link {
                peer,
                out,
                queued: AtomicUsize::new(0),
                try_inline,
                reply_spin: if receive_spins {
                    Duration::ZERO
                } else {
                    REPLY_SPIN
                },
                calls: Mutex::default(),
                next_call: AtomicU64::new(1),
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
        let writer = tokio::spawn(run_writer(Arc::clone(&link), write, queue));
        lock(&link.tasks).push(writer.abort_handle());
        let reader = Reader {
            link: Arc::clone(&link),
            read,
            inbound,
            budget: Arc::new(tokio::sync::Semaphore::new(config.peer_backlog_bytes)),
            budget_bytes: config.peer_backlog_bytes,
            half_close: false,
            receive_spins,
        };
        (link, reader)
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
            std::mem::take(&mut calls.waiting)
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
            std::mem::take(&mut calls.waiting)
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

    /// Stops both tasks now.
    pub(crate) fn abort(&self) {
        self.leave(LeaveReason::Removed);
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    fn gone(&self) -> SendToError {
        SendToError::PeerGone(self.left().unwrap_or(LeaveReason::Removed))
    }

    /// Refuses a frame the connection would not take.
    fn check_size(&self, frame: &Bytes) -> Result<(), SendToError> {
        if frame.len() > self.max_frame {
            return Err(SendToError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        Ok(())
    }

    /// Queues a frame, waiting up to the send timeout for room.
    pub(crate) async fn post(&self, frame: Bytes, timeout: Duration) -> Result<(), SendToError> {
        if self.left().is_some() {
            return Err(self.gone());
        }
        self.check_size(&frame)?;
        let frame = match self.write_inline(frame) {
            Ok(()) => return self.left().map_or(Ok(()), |_| Err(self.gone())),
            Err(frame) => frame,
        };
        match tokio::time::timeout(timeout, self.enqueue(Out::Frame(frame))).await {
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
    pub(crate) async fn post_default(&self, frame: Bytes) -> Result<(), SendToError> {
        self.post(frame, self.send_timeout).await
    }

    /// Queues a frame if there is room now.
    pub(crate) fn try_post(&self, frame: Bytes) -> Result<(), SendToError> {
        if self.left().is_some() {
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
        encode: impl FnOnce(u64) -> Result<Bytes, CallError>,
        deadline: Instant,
    ) -> Result<Bytes, CallError> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id)?;
        if frame.len() > self.max_frame {
            return Err(CallError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(reason) = calls.left.as_ref().or(calls.replies_ended.as_ref()) {
                return Err(CallError::PeerGone(reason.clone()));
            }
            calls.waiting.insert(id, tx);
        }
        // Whatever happens from here (deadline, cancellation), the entry
        // must not outlive the call.
        let _forget = Forget { link: self, id };
        let peer_gone = || CallError::PeerGone(self.left().unwrap_or(LeaveReason::Removed));
        if let Err(frame) = self.write_inline(frame) {
            let queued = tokio::time::timeout_at(deadline, self.enqueue(Out::Frame(frame))).await;
            match queued {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(peer_gone()),
                Err(_) => return Err(CallError::Timeout),
            }
        }
        let mut rx = rx;
        // A fast peer answers within the spin: no thread goes to sleep.
        let spin_until = std::time::Instant::now() + self.reply_spin;
        loop {
            match rx.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(peer_gone()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if std::time::Instant::now() >= spin_until {
                break;
            }
            tokio::task::yield_now().await;
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(peer_gone()),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Starts writing `frame` on the caller's task if nothing is queued
    /// before it and the sending half is free: one hop to the writer task
    /// less. Polled once here; a write that has to wait (for room) goes on
    /// in a task of its own, still holding the half, so frames queued
    /// after it cannot pass it. `Err`: not started, queue it.
    fn write_inline(&self, frame: Bytes) -> Result<(), Bytes> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return Err(frame);
        }
        let mut write = match (self.try_inline.0)(frame.clone()) {
            None => return Err(frame),
            Some(Inline::Done) => return Ok(()),
            Some(Inline::Started(write)) => write,
        };
        let mut cx = Context::from_waker(Waker::noop());
        if write.as_mut().poll(&mut cx).is_pending() {
            tokio::spawn(write);
        }
        Ok(())
    }

    /// Hands a reply to its caller; true if one was waiting.
    fn complete(&self, id: u64, result: Result<Bytes, CallError>) -> bool {
        // A reply to a call that timed out (or was never made) finds no
        // entry and is dropped: its caller already has its answer.
        let waiting = lock(&self.calls).waiting.remove(&id);
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

struct Forget<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.link.calls).waiting.remove(&self.id);
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
        let task = tokio::spawn(self.run());
        lock(&link.tasks).push(task.abort_handle());
    }

    async fn run(mut self) {
        let link = Arc::clone(&self.link);
        let peer = link.peer;
        let mut stop = link.stop.subscribe();
        let mut goodbye: Option<String> = None;
        // Messages, calls, logs and goodbyes read but not yet in the
        // owner's queue, in order. Each message, call and log holds its
        // share of the peer's backlog, so reading on past them to the
        // replies behind costs no more memory than the backlog allows.
        let mut pending: VecDeque<Inbound> = VecDeque::new();
        // Something was just handed to a task that may run on this thread.
        let mut delivered = false;
        let reason = 'read: loop {
            let ready = match std::mem::take(&mut delivered) && self.receive_spins {
                // A receive that spins would hold this thread while the
                // task it just woke (the agent's handler, a caller) waits
                // for it: let that task run first, unless the next frame
                // is already here (a stream is read without a yield per
                // frame; the stop signal is still looked at for each).
                // Measured: docs/BENCHMARKS.md, the runtime's path.
                true if *stop.borrow() => break LeaveReason::Removed,
                true => match self.read.try_recv() {
                    Err(RecvError::Empty) => {
                        tokio::task::yield_now().await;
                        None
                    }
                    received => Some(received),
                },
                false => None,
            };
            let received = if let Some(received) = ready {
                received
            } else {
                tokio::select! {
                    biased;
                    // `recv` and `reserve` are cancel-safe: a frame is never
                    // half taken, an event never half sent.
                    _ = stop.wait_for(|stop| *stop) => break LeaveReason::Removed,
                    room = self.inbound.reserve(), if !pending.is_empty() => {
                        match room {
                            Ok(room) => room.send(pending.pop_front().expect("not empty")),
                            // The owner has gone.
                            Err(_) => break LeaveReason::Removed,
                        }
                        delivered = true;
                        continue;
                    }
                    received = self.read.recv() => received,
                }
            };
            let frame = match received {
                Ok(frame) => frame,
                Err(RecvError::Disconnected) => {
                    break match goodbye.take() {
                        Some(reason) => LeaveReason::Closed(reason),
                        None => LeaveReason::Disconnected,
                    };
                }
                // A receive timeout in the connection's config: keep going.
                Err(RecvError::Timeout) => continue,
                Err(RecvError::FrameTooLarge { len, max }) => {
                    break LeaveReason::Protocol(format!(
                        "frame of {len} bytes over the limit of {max}"
                    ));
                }
                Err(e) => break LeaveReason::Failed(e.to_string()),
            };
            let envelope = match wire::decode(frame) {
                Ok(envelope) => envelope,
                Err(e) => break LeaveReason::Protocol(e.to_string()),
            };
            let body = envelope.body;
            let kind = envelope.kind;
            match kind {
                // Replies complete their callers at once, whatever waits
                // in the owner's queue.
                Kind::Reply => delivered = link.complete(envelope.id, Ok(body)),
                Kind::Fail => {
                    delivered =
                        link.complete(envelope.id, Err(CallError::Failed(wire::reason(&body))))
                }
                Kind::Bye => {
                    let reason = wire::reason(&body);
                    // Told once: a peer repeating its goodbye adds nothing
                    // that waits (only what holds backlog may pile up).
                    if goodbye.is_none() {
                        pending.push_back(Inbound::Bye(reason.clone()));
                    }
                    goodbye = Some(reason);
                }
                Kind::Hello | Kind::Welcome => {
                    break LeaveReason::Protocol("a handshake frame after the handshake".into());
                }
                Kind::Message | Kind::Call | Kind::Log => {
                    // Its share of the backlog (a frame over the whole
                    // budget takes all of it). While the backlog is full,
                    // this peer is not read (its transport pushes back),
                    // but what was read still goes to the owner.
                    let weight = (body.len() + FRAME_WEIGHT).min(self.budget_bytes) as u32;
                    let held = loop {
                        if let Ok(held) = Arc::clone(&self.budget).try_acquire_many_owned(weight) {
                            break held;
                        }
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|stop| *stop) => break 'read LeaveReason::Removed,
                            room = self.inbound.reserve(), if !pending.is_empty() => match room {
                                Ok(room) => room.send(pending.pop_front().expect("not empty")),
                                Err(_) => break 'read LeaveReason::Removed,
                            },
                            held = Arc::clone(&self.budget).acquire_many_owned(weight) => match held {
                                Ok(held) => break held,
                                Err(_) => break 'read LeaveReason::Removed,
                            },
                        }
                    };
                    pending.push_back(match kind {
                        Kind::Message => Inbound::Message(peer, body, link.codec, held),
                        Kind::Call => {
                            Inbound::Call(peer, envelope.id, body, Arc::clone(&link), held)
                        }
                        _ => Inbound::Log(peer, body, held),
                    });
                }
            }
            // Into the owner's queue now if it has room (the `select`
            // above waits for room when it has none).
            while !pending.is_empty() {
                match self.inbound.try_reserve() {
                    Ok(room) => room.send(pending.pop_front().expect("not empty")),
                    Err(mpsc::error::TrySendError::Full(())) => break,
                    Err(mpsc::error::TrySendError::Closed(())) => break 'read LeaveReason::Removed,
                }
                delivered = true;
            }
        };
        let reason = match reason {
            LeaveReason::Closed(_) if self.half_close => {
                link.end_replies(reason.clone());
                reason
            }
            reason => link.leave(reason),
        };
        // What the peer sent before it left comes before its `Left`.
        for event in pending {
            if self.inbound.send(event).await.is_err() {
                break;
            }
        }
        let _ = self.inbound.send(Inbound::Left(peer, reason)).await;
        link.reader_done.send_replace(true);
    }
}

async fn run_writer<W: AsyncFrameSender>(
    link: Arc<Link>,
    write: SharedWrite<W>,
    mut queue: mpsc::Receiver<Out>,
) {
    let mut stop = link.stop.subscribe();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            next = queue.recv() => next,
        };
        // Waits for an inline write to finish; holds the half while this
        // frame is written, so frames queued after it cannot pass it.
        let mut guard = write.lock().await;
        let Some(half) = guard.as_mut() else { break };
        let frame = match next {
            Some(Out::Frame(frame)) => frame,
            Some(Out::Close) | None => {
                let _ = tokio::time::timeout(link.send_timeout, half.flush()).await;
                link.queued.fetch_sub(1, Ordering::AcqRel);
                break;
            }
        };
        write_frame(&link, half, &frame).await;
        drop(guard);
        link.queued.fetch_sub(1, Ordering::AcqRel);
    }
    // Closes the sending half (waiting for an inline write to finish).
    drop(write.lock().await.take());
    link.writer_done.send_replace(true);
}

/// Writes one frame, as the writer task (or an inline write) does: waits
/// for room in slices (watching the stop signal between them), backs off
/// on a transport that fails at once when full, and ends the link if the
/// connection fails.
async fn write_frame<W: AsyncFrameSender>(link: &Link, half: &mut W, frame: &[u8]) {
    let mut stop = link.stop.subscribe();
    let mut pause = Duration::from_millis(1);
    loop {
        // `send` is cancel-safe: stopping mid-frame never cuts one.
        let sent = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => None,
            sent = half.send_timeout(frame, WRITE_SLICE) => Some(sent),
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
