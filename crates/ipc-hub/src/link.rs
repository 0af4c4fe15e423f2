//! One connection's engine, the same on both sides of a hub: a writer task
//! that drains a bounded queue into the connection, a reader task that
//! matches replies to waiting calls and hands everything else to the owner
//! (the hub or the agent), and the table of calls waiting for replies.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{AsyncFrameReceiver, AsyncFrameSender, RecvError, SendError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::wire::{self, Kind};
use crate::{CallError, LeaveReason, PeerId, SendToError};

/// Bytes of a peer's frames waiting to be read by the owner; released
/// when the owner takes the event.
pub(crate) type Held = tokio::sync::OwnedSemaphorePermit;

/// What a link hands its owner.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(PeerId, Bytes, Held),
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
}

/// What the writer task is asked to do.
#[derive(Debug)]
enum Out {
    Frame(Bytes),
    /// Flush and close the sending side (after a goodbye).
    Close,
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
}

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: PeerId,
    out: mpsc::Sender<Out>,
    calls: Mutex<Calls>,
    next_call: AtomicU64,
    send_timeout: Duration,
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
        read: R,
        write: W,
        config: &crate::HubConfig,
        inbound: mpsc::Sender<Inbound>,
    ) -> (Arc<Link>, Reader<R>)
    where
        R: AsyncFrameReceiver + 'static,
        W: AsyncFrameSender + 'static,
    {
        let (out, queue) = mpsc::channel(config.queue_len);
        let link = Arc::new(Link {
            peer,
            out,
            calls: Mutex::default(),
            next_call: AtomicU64::new(1),
            send_timeout: config.send_timeout,
            stop: watch::channel(false).0,
            tasks: Mutex::default(),
            writer_done: watch::channel(false).0,
            reader_done: watch::channel(false).0,
        });
        let writer = tokio::spawn(run_writer(Arc::clone(&link), write, queue));
        lock(&link.tasks).push(writer.abort_handle());
        let reader = Reader {
            link: Arc::clone(&link),
            read,
            inbound,
            budget: Arc::new(tokio::sync::Semaphore::new(config.peer_backlog_bytes)),
            budget_bytes: config.peer_backlog_bytes,
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

    /// Queues a frame, waiting up to the send timeout for room.
    pub(crate) async fn post(&self, frame: Bytes, timeout: Duration) -> Result<(), SendToError> {
        if self.left().is_some() {
            return Err(self.gone());
        }
        match tokio::time::timeout(timeout, self.out.send(Out::Frame(frame))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => Err(SendToError::Full),
        }
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
        self.out.try_send(Out::Frame(frame)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendToError::Full,
            mpsc::error::TrySendError::Closed(_) => self.gone(),
        })
    }

    /// Queues a goodbye and the close of the sending side, waiting for
    /// room until `deadline`.
    pub(crate) async fn say_goodbye_by(&self, reason: &str, deadline: Instant) -> bool {
        let bye = wire::encode(Kind::Bye, 0, reason.as_bytes());
        let queued = async {
            self.out.send(Out::Frame(bye)).await.is_ok() && self.out.send(Out::Close).await.is_ok()
        };
        tokio::time::timeout_at(deadline, queued)
            .await
            .unwrap_or(false)
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
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if let Some(reason) = &calls.left {
                return Err(CallError::PeerGone(reason.clone()));
            }
            calls.waiting.insert(id, tx);
        }
        // Whatever happens from here (deadline, cancellation), the entry
        // must not outlive the call.
        let _forget = Forget { link: self, id };
        let queued = tokio::time::timeout_at(deadline, self.out.send(Out::Frame(frame))).await;
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(CallError::PeerGone(
                    self.left().unwrap_or(LeaveReason::Removed),
                ));
            }
            Err(_) => return Err(CallError::Timeout),
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::PeerGone(
                self.left().unwrap_or(LeaveReason::Removed),
            )),
            Err(_) => Err(CallError::Timeout),
        }
    }

    fn complete(&self, id: u64, result: Result<Bytes, CallError>) {
        // A reply to a call that timed out (or was never made) finds no
        // entry and is dropped: its caller already has its answer.
        let waiting = lock(&self.calls).waiting.remove(&id);
        if let Some(call) = waiting {
            let _ = call.send(result);
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
        let reason = loop {
            let received = tokio::select! {
                biased;
                // `recv` is cancel-safe: a frame is never half taken.
                _ = stop.wait_for(|stop| *stop) => break LeaveReason::Removed,
                received = self.read.recv() => received,
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
            if matches!(kind, Kind::Message | Kind::Call | Kind::Log) {
                // Wait until the owner has read enough of this peer's
                // earlier frames (a frame over the whole budget waits for
                // all of them): unread frames of one peer hold at most
                // the budget (plus this frame).
                let weight = body.len().clamp(1, self.budget_bytes) as u32;
                let held = tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => break LeaveReason::Removed,
                    held = Arc::clone(&self.budget).acquire_many_owned(weight) => held,
                };
                let Ok(held) = held else {
                    break LeaveReason::Removed;
                };
                let inbound = match kind {
                    Kind::Message => Inbound::Message(peer, body, held),
                    Kind::Call => Inbound::Call(peer, envelope.id, body, Arc::clone(&link), held),
                    _ => Inbound::Log(peer, body, held),
                };
                if self.inbound.send(inbound).await.is_err() {
                    break LeaveReason::Removed;
                }
                continue;
            }
            let inbound = match kind {
                Kind::Reply => {
                    link.complete(envelope.id, Ok(body));
                    continue;
                }
                Kind::Fail => {
                    link.complete(envelope.id, Err(CallError::Failed(wire::reason(&body))));
                    continue;
                }
                // Handled above.
                Kind::Message | Kind::Call | Kind::Log => continue,
                Kind::Bye => {
                    let reason = wire::reason(&body);
                    goodbye = Some(reason.clone());
                    Inbound::Bye(reason)
                }
                Kind::Hello | Kind::Welcome => {
                    break LeaveReason::Protocol("a handshake frame after the handshake".into());
                }
            };
            if self.inbound.send(inbound).await.is_err() {
                // The owner has gone.
                break LeaveReason::Removed;
            }
        };
        let reason = link.leave(reason);
        let _ = self.inbound.send(Inbound::Left(peer, reason)).await;
        link.reader_done.send_replace(true);
    }
}

async fn run_writer<W: AsyncFrameSender>(
    link: Arc<Link>,
    mut write: W,
    mut queue: mpsc::Receiver<Out>,
) {
    let mut stop = link.stop.subscribe();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            next = queue.recv() => next,
        };
        let frame = match next {
            Some(Out::Frame(frame)) => frame,
            Some(Out::Close) | None => {
                let _ = tokio::time::timeout(link.send_timeout, write.flush()).await;
                break;
            }
        };
        let mut pause = Duration::from_millis(1);
        loop {
            // `send` is cancel-safe: stopping mid-frame never cuts one.
            let sent = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => None,
                sent = write.send_timeout(&frame, WRITE_SLICE) => Some(sent),
            };
            match sent {
                None | Some(Ok(())) => break,
                // The peer is slow, not gone. Keep the frame; the queue
                // behind it fills and senders see `Full`.
                Some(Err(SendError::Timeout)) => continue,
                // A transport that fails at once when full (`Backpressure::
                // Fail`): back off instead of spinning.
                Some(Err(SendError::Full)) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Some(Err(SendError::Disconnected)) => {
                    link.leave(LeaveReason::Disconnected);
                    break;
                }
                Some(Err(e)) => {
                    link.leave(LeaveReason::Failed(e.to_string()));
                    break;
                }
            }
        }
    }
    drop(write);
    link.writer_done.send_replace(true);
}
