//! The hub: a set of peers over any transports, one event stream.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ipc_core::admission::Admission;
use ipc_core::{
    Address, AsyncConnection, AsyncFrameReceiver, AsyncListener, AsyncSplit, ConnectError,
    PeerCredentials, Postcard, RecvError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::codec::{BodyCodec, HubCodec, PeerCodec};
use crate::link::{CounterMap, Inbound, Link};
use crate::message::LoanedBody;
use crate::supervise::{AgentNotice, AgentSpec, NotUp, SuperviseError, Supervised};
use crate::wire::{self, Kind, encode_value as encode};
use crate::{
    AdmitError, Call, CallError, HubConfig, HubConfigError, LeaveReason, Payload, PeerId, PeerInfo,
    Request, SendToError,
};

/// Something that happened at the hub; see [`Hub::next`].
#[derive(Debug)]
#[non_exhaustive]
pub enum HubEvent<C = Postcard> {
    /// A peer completed the handshake. Nothing from it comes before this.
    Joined(PeerInfo),
    /// A one-way message from a peer.
    Message {
        /// The sender.
        peer: PeerId,
        /// What it sent.
        payload: Payload<C>,
    },
    /// A peer calls the hub; answer with [`Request::reply`].
    Call(Request<C>),
    /// A log record a peer's tracing layer shipped (decode it with
    /// `ipc_tracing::decode`).
    Log {
        /// The sender.
        peer: PeerId,
        /// The encoded record.
        record: Bytes,
    },
    /// A peer left; nothing more comes from it, its waiting calls have
    /// failed with [`CallError::PeerGone`].
    Left {
        /// Who it was.
        peer: PeerInfo,
        /// Why it left.
        reason: LeaveReason,
    },
    /// A connection that did not complete the handshake (silent, not a
    /// hub agent, or broken). It was closed.
    Rejected {
        /// The process behind it, as the OS says.
        from: PeerCredentials,
        /// What went wrong.
        error: AdmitError,
    },
    /// A listener's accept failed (other than running out of file
    /// descriptors, which is retried with a back-off). It goes on.
    AcceptFailed(ConnectError),
    /// A supervised agent's process exited, failed to start, or was
    /// given up on (see [`HubHandle::supervise`]).
    Agent(AgentNotice),
}

#[derive(Debug)]
struct Peer {
    info: PeerInfo,
    link: Arc<Link>,
}

#[derive(Debug)]
struct Shared {
    config: HubConfig,
    peers: Mutex<CounterMap<PeerId, Peer>>,
    next_peer: AtomicU64,
    events: mpsc::Sender<Inbound>,
    /// Handshakes under way; dropping an entry's sender cancels it.
    handshakes: Mutex<Admission<oneshot::Sender<()>>>,
    background: Mutex<Vec<AbortHandle>>,
    closing: AtomicBool,
    /// Rejections and accept failures not reported for lack of room.
    unreported: AtomicU64,
    /// Agents the hub starts and restarts, by name.
    supervised: Mutex<HashMap<String, Supervised>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A hub: the peers that joined it over any transports, and one stream of
/// their events.
///
/// Every peer has its own bounded queue and writer task, so a slow or hung
/// peer fills only its own queue: sends to it report
/// [`SendToError::Full`], calls to it time out, and everyone else goes on.
/// `C` is the codec of the values (postcard by default).
///
/// Dropping the hub closes every connection at once;
/// [`shutdown`](Self::shutdown) says goodbye first. Calls, sends and the
/// peer list are [`HubHandle`]'s methods, reached through `Deref`.
#[derive(Debug)]
pub struct Hub<C = Postcard> {
    handle: HubHandle<C>,
    events: HubEvents<C>,
}

/// The hub's stream of events, taken out of it with
/// [`Hub::take_events`] to be read on a task of its own while the hub
/// (its calls, its supervision, its shutdown) goes on elsewhere. It is
/// also a `futures` `Stream`.
#[derive(Debug)]
pub struct HubEvents<C = Postcard> {
    shared: Arc<Shared>,
    /// `None` in a hub whose events were taken.
    events: Option<mpsc::Receiver<Inbound>>,
    /// Events read while waiting for joins, returned by `next` first.
    backlog: VecDeque<HubEvent<C>>,
}

/// A cloneable handle on a [`Hub`] for other tasks: calls, sends,
/// broadcasts and the peer list (events stay with the hub).
#[derive(Debug)]
pub struct HubHandle<C = Postcard> {
    shared: Arc<Shared>,
    _codec: PhantomData<fn() -> C>,
}

impl<C> Clone for HubHandle<C> {
    fn clone(&self) -> Self {
        HubHandle {
            shared: Arc::clone(&self.shared),
            _codec: PhantomData,
        }
    }
}

impl Hub<Postcard> {
    /// A hub speaking postcard.
    pub fn new(config: HubConfig) -> Result<Self, HubConfigError> {
        Hub::with_codec(config)
    }
}

impl<C: HubCodec> Hub<C> {
    /// A hub speaking codec `C`.
    ///
    /// Raises this process's soft limit on open descriptors to its hard
    /// limit (once): a hub holds a few per agent (a socket; over shared
    /// memory also its doorbells and the agent's pidfd), and the usual
    /// soft limit of 1 024 would end a hub near 200 agents.
    pub fn with_codec(config: HubConfig) -> Result<Self, HubConfigError> {
        config.validate()?;
        raise_descriptor_limit();
        let (events_tx, events) = mpsc::channel(config.event_queue);
        let shared = Arc::new(Shared {
            handshakes: Mutex::new(Admission::new(config.max_handshakes)),
            config,
            peers: Mutex::default(),
            next_peer: AtomicU64::new(1),
            events: events_tx,
            background: Mutex::default(),
            closing: AtomicBool::new(false),
            unreported: AtomicU64::new(0),
            supervised: Mutex::default(),
        });
        Ok(Hub {
            events: HubEvents {
                shared: Arc::clone(&shared),
                events: Some(events),
                backlog: VecDeque::new(),
            },
            handle: HubHandle {
                shared,
                _codec: PhantomData,
            },
        })
    }

    /// A handle for other tasks.
    pub fn handle(&self) -> HubHandle<C> {
        self.handle.clone()
    }

    /// The next event. Waits until there is one (a hub with no peers waits
    /// for one to join); cancel-safe, so it can be a `select!` branch.
    /// After [`take_events`](Self::take_events) it waits forever: the
    /// events go to the stream taken.
    pub async fn next(&mut self) -> HubEvent<C> {
        self.events.next().await
    }

    /// Waits until `n` more peers have joined, at most `timeout`, and
    /// returns them in the order they joined. Other events that come
    /// meanwhile are kept for [`next`](Self::next), in order.
    pub async fn wait_for_peers(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<PeerInfo>, PeersMissing> {
        self.events.wait_for_peers(n, timeout).await
    }

    /// Takes the event stream out of the hub, once (`None` after), for a
    /// task of its own: the hub keeps running (calls, supervision,
    /// [`shutdown`](Self::shutdown)), and every event, those of the
    /// shutdown included, goes to the stream.
    pub fn take_events(&mut self) -> Option<HubEvents<C>> {
        self.events.events.as_ref()?;
        let empty = HubEvents {
            shared: Arc::clone(&self.handle.shared),
            events: None,
            backlog: VecDeque::new(),
        };
        Some(std::mem::replace(&mut self.events, empty))
    }

    /// Says goodbye to every peer still connected, gives each
    /// [`LAST_WORDS`] to close by itself, then closes the hub's side of
    /// those still there, waits up to `grace` in all for their
    /// connections to close, and closes whatever is left (those
    /// connections are closed when it returns, even on a current-thread
    /// runtime that runs nothing after; that takes at most 100 ms more
    /// than `grace`). Meanwhile it keeps reading: what peers
    /// sent while closing (their last logs, messages, calls, which can no
    /// longer be answered) comes back in [`Closed::events`], in order,
    /// each peer's ending with its `Left` (a peer cut off at the deadline
    /// as [`LeaveReason::Removed`]), after the events not yet read before
    /// the call.
    pub async fn shutdown(mut self, grace: Duration) -> Closed<C> {
        let shared = Arc::clone(&self.handle.shared);
        shared.closing.store(true, Ordering::Release);
        for task in lock(&shared.background).drain(..) {
            task.abort();
        }
        let links: Vec<Arc<Link>> = lock(&shared.peers)
            .values()
            .filter(|p| p.link.left().is_none())
            .map(|p| Arc::clone(&p.link))
            .collect();
        let mut events: Vec<HubEvent<C>> = self.events.backlog.drain(..).collect();
        // All at once: a hung peer whose queue is full holds up no one.
        let deadline = Instant::now() + grace;
        // The processes the hub started: stopped once their peers had
        // their moment to close (killed if still running a moment later),
        // reaped.
        let supervised: Vec<Supervised> =
            lock(&shared.supervised).drain().map(|(_, s)| s).collect();
        let closing = async {
            let goodbyes = links
                .iter()
                .map(|link| link.say_goodbye_by("the hub is shutting down", false, deadline));
            futures_util::future::join_all(goodbyes).await;
            // Each peer has a moment to say its last words and close; then
            // the hub closes its side to those still there (a peer that
            // reads until the end of the stream, not for the goodbye).
            let linger = (Instant::now() + LAST_WORDS).min(deadline);
            futures_util::future::join_all(links.iter().map(|link| link.ended_by(linger))).await;
            futures_util::future::join_all(links.iter().map(|link| link.close_by(deadline))).await;
            let stopped =
                futures_util::future::join_all(supervised.into_iter().map(Supervised::stop));
            let ends =
                futures_util::future::join_all(links.iter().map(|link| link.ended_by(deadline)));
            let (ended, _) = futures_util::future::join(ends, stopped).await;
            ended
        };
        tokio::pin!(closing);
        let limit = shared.config.event_queue.saturating_mul(SHUTDOWN_EVENTS);
        let keep = |events: &mut Vec<HubEvent<C>>, event| {
            if events.len() < limit {
                events.push(event);
            } else {
                shared.unreported.fetch_add(1, Ordering::Relaxed);
            }
        };
        // Read while the peers close, so none waits for room to say its
        // last words.
        let ended = loop {
            tokio::select! {
                ended = &mut closing => break ended,
                event = self.events.next_new() => keep(&mut events, event),
            }
        };
        // What came before each link ended is queued by now.
        while let Some(event) = self.events.try_next_new() {
            keep(&mut events, event);
        }
        // Peers still there at the deadline are cut off.
        let cut_off: Vec<&Arc<Link>> = links
            .iter()
            .zip(&ended)
            .filter(|(_, ended)| !**ended)
            .map(|(link, _)| link)
            .collect();
        for link in &cut_off {
            link.abort();
            if let Some(gone) = lock(&shared.peers).remove(&link.peer) {
                keep(
                    &mut events,
                    HubEvent::Left {
                        peer: gone.info,
                        reason: LeaveReason::Removed,
                    },
                );
            }
        }
        // Their connections close before this returns.
        futures_util::future::join_all(cut_off.iter().map(|link| link.reaped())).await;
        Closed {
            closed: ended.iter().filter(|ended| **ended).count(),
            events,
        }
    }
}

/// What [`Hub::shutdown`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Closed<C = Postcard> {
    /// Peers whose connections closed within the grace.
    pub closed: usize,
    /// What came from the peers after the last event read before the
    /// shutdown, in order; every peer's ends with its `Left`. At most
    /// [`SHUTDOWN_EVENTS`] times [`HubConfig::event_queue`]; more are
    /// counted in [`HubHandle::unreported_notices`].
    pub events: Vec<HubEvent<C>>,
}

/// How long [`Hub::shutdown`] waits after its goodbye for peers to close
/// by themselves before it closes its side of their connections (within
/// the grace).
pub const LAST_WORDS: Duration = Duration::from_secs(1);

/// How many event queues' worth of events a shutdown keeps.
pub const SHUTDOWN_EVENTS: usize = 16;

impl<C: HubCodec> HubEvents<C> {
    /// The next event already queued, without waiting.
    fn try_next_new(&mut self) -> Option<HubEvent<C>> {
        loop {
            let inbound = self.events.as_mut()?.try_recv().ok()?;
            if let Some(event) = self.event_of(inbound) {
                return Some(event);
            }
        }
    }

    /// The next event. Waits until there is one (a hub with no peers waits
    /// for one to join); cancel-safe, so it can be a `select!` branch.
    pub async fn next(&mut self) -> HubEvent<C> {
        if let Some(event) = self.backlog.pop_front() {
            return event;
        }
        self.next_new().await
    }

    /// Waits until `n` more peers have joined, at most `timeout`, and
    /// returns them in the order they joined. Other events that come
    /// meanwhile are kept for [`next`](Self::next), in order.
    pub async fn wait_for_peers(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<PeerInfo>, PeersMissing> {
        let deadline = Instant::now() + timeout;
        let mut joined = Vec::with_capacity(n);
        let mut other = VecDeque::new();
        while joined.len() < n {
            match tokio::time::timeout_at(deadline, self.next_new()).await {
                Ok(HubEvent::Joined(peer)) => joined.push(peer),
                Ok(event) => other.push_back(event),
                Err(_) => break,
            }
        }
        self.backlog.extend(other);
        if joined.len() < n {
            return Err(PeersMissing { wanted: n, joined });
        }
        Ok(joined)
    }

    /// The next event from the queue (not the backlog).
    async fn next_new(&mut self) -> HubEvent<C> {
        loop {
            // The hub holds a sender itself, so the channel never closes;
            // a hub whose events were taken waits here for good.
            let inbound = match self.events.as_mut() {
                Some(events) => events.recv().await,
                None => std::future::pending().await,
            };
            let Some(inbound) = inbound else {
                continue;
            };
            if let Some(event) = self.event_of(inbound) {
                return event;
            }
        }
    }

    /// The event an inbound item is, if it is one for the user.
    fn event_of(&mut self, inbound: Inbound) -> Option<HubEvent<C>> {
        let shared = &self.shared;
        Some(match inbound {
            Inbound::Joined(info) => HubEvent::Joined(info),
            Inbound::Rejected(from, error) => HubEvent::Rejected { from, error },
            Inbound::AcceptFailed(error) => HubEvent::AcceptFailed(error),
            Inbound::Agent(notice) => HubEvent::Agent(notice),
            // Taking an event frees its share of the peer's backlog.
            Inbound::Message(peer, body, codec, held) => {
                drop(held);
                HubEvent::Message {
                    peer,
                    payload: Payload::new(body, codec),
                }
            }
            Inbound::Call(peer, id, body, link, held) => {
                drop(held);
                HubEvent::Call(Request::new(peer, id, body, link))
            }
            Inbound::Log(peer, record, held) => {
                drop(held);
                HubEvent::Log { peer, record }
            }
            // The peer is leaving; its `Left` follows when it closes.
            Inbound::Bye(..) => return None,
            Inbound::Left(peer, reason) => {
                let gone = lock(&shared.peers).remove(&peer)?;
                HubEvent::Left {
                    peer: gone.info,
                    reason,
                }
            }
        })
    }
}

impl<C: HubCodec> futures_util::Stream for HubEvents<C> {
    type Item = HubEvent<C>;

    /// As [`HubEvents::next`]; never ends while the hub lives.
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<HubEvent<C>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(event) = this.backlog.pop_front() {
            return Poll::Ready(Some(event));
        }
        loop {
            let Some(events) = this.events.as_mut() else {
                return Poll::Pending;
            };
            match events.poll_recv(cx) {
                Poll::Ready(Some(inbound)) => {
                    if let Some(event) = this.event_of(inbound) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<C> Drop for Hub<C> {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        shared.closing.store(true, Ordering::Release);
        for task in lock(&shared.background).drain(..) {
            task.abort();
        }
        // Their processes are killed as their tasks drop them.
        for (_, agent) in lock(&shared.supervised).drain() {
            agent.abort();
        }
        for (_, peer) in lock(&shared.peers).drain() {
            peer.link.abort();
        }
    }
}

impl<C> std::ops::Deref for Hub<C> {
    type Target = HubHandle<C>;
    fn deref(&self) -> &HubHandle<C> {
        &self.handle
    }
}

impl<C: HubCodec> HubHandle<C> {
    /// Adds a connection (a spawned agent, a connection you accepted or
    /// opened yourself): runs the handshake and returns the new peer. Its
    /// [`HubEvent::Joined`] comes from [`Hub::next`] too.
    pub async fn add<T>(&self, conn: T) -> Result<PeerInfo, AdmitError>
    where
        T: AsyncSplit + 'static,
    {
        admit(&self.shared, conn).await
    }

    /// Accepts peers from `listener` on a task until the hub shuts down:
    /// each connection gets [`HubConfig::handshake_timeout`] to say hello
    /// ([`HubEvent::Rejected`] otherwise). Accepting never waits for
    /// handshakes to finish, so a flood of silent connections cannot keep
    /// an agent in the kernel's queue: beyond
    /// [`HubConfig::max_handshakes`] under way, the oldest of the process
    /// with the most is dropped ([`AdmitError::Crowded`]). Running out of
    /// file descriptors pauses accepting (doubling from 10 ms to 1 s)
    /// instead of spinning. Must be called inside a tokio runtime.
    ///
    /// Returns the listener's address, the one to hand agents (with the
    /// port or key a listener chose when it bound).
    pub fn listen<L>(&self, listener: L) -> std::io::Result<Address>
    where
        L: AsyncListener + 'static,
        L::Connection: AsyncSplit + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(format!("Hub::listen: {e}")))?;
        let address = listener.address().clone();
        let task = runtime.spawn(accept_loop::<L>(Arc::clone(&self.shared), listener));
        lock(&self.shared.background).push(task.abort_handle());
        Ok(address)
    }

    /// Starts the agent of `spec` and keeps it running by its policy
    /// (see [`AgentSpec`]): the hub starts its process, tells of every
    /// exit and restart ([`HubEvent::Agent`]), and kills and reaps it on
    /// [`stop_agent`](Self::stop_agent), on shutdown and when dropped.
    /// Names of supervised agents are unique. Must be called inside a
    /// tokio runtime.
    pub fn supervise(&self, spec: AgentSpec) -> Result<(), SuperviseError> {
        wire::check_name(spec.name.as_bytes()).map_err(SuperviseError::InvalidName)?;
        let mut supervised = lock(&self.shared.supervised);
        if self.shared.is_closing() {
            return Err(SuperviseError::ShuttingDown);
        }
        if supervised.contains_key(&spec.name) {
            return Err(SuperviseError::NameTaken(spec.name));
        }
        let name = spec.name.clone();
        let agent = crate::supervise::start(self, spec)?;
        supervised.insert(name, agent);
        Ok(())
    }

    /// Stops the supervised agent `name`: no more restarts; its process
    /// gets [`STOP_GRACE`](crate::STOP_GRACE) to exit, is then killed, and is reaped before
    /// this returns. False if no agent of that name is supervised.
    pub async fn stop_agent(&self, name: &str) -> bool {
        let Some(agent) = lock(&self.shared.supervised).remove(name) else {
            return false;
        };
        let _ = agent.stop().await;
        true
    }

    /// Waits until the supervised agent `name` is connected (its current
    /// process has joined, under that name), at most `timeout`: after
    /// `supervise`, and after each restart.
    pub async fn wait_for_agent(&self, name: &str, timeout: Duration) -> Result<PeerInfo, NotUp> {
        let deadline = Instant::now() + timeout;
        let mut pid = lock(&self.shared.supervised)
            .get(name)
            .map(|a| a.pid.clone());
        loop {
            let current = pid.as_mut().and_then(|p| *p.borrow_and_update());
            if let Some(current) = current
                && let Some(peer) = self
                    .peers_named(name)
                    .into_iter()
                    .find(|p| p.credentials.pid == Some(current))
            {
                return Ok(peer);
            }
            if Instant::now() >= deadline {
                return Err(NotUp {
                    name: name.to_owned(),
                    waited: timeout,
                });
            }
            if pid.is_none() {
                pid = lock(&self.shared.supervised)
                    .get(name)
                    .map(|a| a.pid.clone());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Rejected connections and failed accepts that were not reported as
    /// events because the event queue was full.
    pub fn unreported_notices(&self) -> u64 {
        self.shared.unreported.load(Ordering::Relaxed)
    }

    /// The peers connected now (a peer that left is gone from here even
    /// before its [`HubEvent::Left`] is read).
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut peers: Vec<PeerInfo> = lock(&self.shared.peers)
            .values()
            .filter(|p| p.link.left().is_none())
            .map(|p| p.info.clone())
            .collect();
        peers.sort_by_key(|p| p.id);
        peers
    }

    fn link(&self, peer: PeerId) -> Option<Arc<Link>> {
        lock(&self.shared.peers)
            .get(&peer)
            .map(|p| Arc::clone(&p.link))
    }

    /// Calls `peer` with `request` and waits for its answer until
    /// `timeout`. Replies are matched by correlation id, so many calls can
    /// be out at once, to one peer or many, answered in any order.
    /// Cancel-safe: dropping the future forgets the call (a late reply is
    /// discarded).
    pub async fn call<Q, A>(
        &self,
        peer: PeerId,
        request: &Q,
        timeout: Duration,
    ) -> Result<A, CallError>
    where
        Q: Serialize + ?Sized,
        A: DeserializeOwned,
    {
        let deadline = Instant::now() + timeout;
        let link = self.link(peer).ok_or(CallError::UnknownPeer(peer))?;
        let codec = link.codec;
        let reply = link
            .call(
                |id| encode::<C, Q>(codec, Kind::Call, id, request).map_err(CallError::Encode),
                deadline,
            )
            .await?;
        codec.decode::<C, A>(&reply).map_err(CallError::Decode)
    }

    /// Like [`call`](Self::call), but the answer is returned as the bytes
    /// the peer sent (its [`Request::reply_bytes`], say), not decoded: a
    /// large result stays where the transport put it (on shared memory, a
    /// view of the sender's blob, never copied).
    pub async fn call_bytes<Q>(
        &self,
        peer: PeerId,
        request: &Q,
        timeout: Duration,
    ) -> Result<Bytes, CallError>
    where
        Q: Serialize + ?Sized,
    {
        let deadline = Instant::now() + timeout;
        let link = self.link(peer).ok_or(CallError::UnknownPeer(peer))?;
        let codec = link.codec;
        link.call(
            |id| encode::<C, Q>(codec, Kind::Call, id, request).map_err(CallError::Encode),
            deadline,
        )
        .await
    }

    /// Calls `peer` with `body` as it is (not encoded) and returns the
    /// reply's bytes as they came: for a peer that takes raw bytes (its
    /// [`Request::bytes`]).
    pub async fn call_raw(
        &self,
        peer: PeerId,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Bytes, CallError> {
        let deadline = Instant::now() + timeout;
        let link = self.link(peer).ok_or(CallError::UnknownPeer(peer))?;
        link.call(|id| Ok(wire::encode(Kind::Call, id, body).into()), deadline)
            .await
    }

    /// Calls each of `peers` (ids, or `&PeerInfo`s) with the same request
    /// at once (encoded once per codec the peers speak) and gathers the answers until `timeout`, in
    /// the order of `peers`: fan-out and gather. A dead or hung peer costs
    /// only its own entry.
    pub async fn call_each<Q, A, P>(
        &self,
        peers: impl IntoIterator<Item = P>,
        request: &Q,
        timeout: Duration,
    ) -> Vec<Result<A, CallError>>
    where
        Q: Serialize + ?Sized,
        A: DeserializeOwned,
        P: Into<PeerId>,
    {
        let links: Vec<(PeerId, Option<Arc<Link>>)> = peers
            .into_iter()
            .map(|p| {
                let peer = p.into();
                (peer, self.link(peer))
            })
            .collect();
        let deadline = Instant::now() + timeout;
        let mut bodies = Encoded::default();
        for link in links.iter().filter_map(|(_, l)| l.as_ref()) {
            bodies.encode::<C, Q>(link.codec, request);
        }
        let calls = links.into_iter().map(|(peer, link)| {
            let bodies = &bodies;
            async move {
                let link = link.ok_or(CallError::UnknownPeer(peer))?;
                let body = bodies.get(link.codec).map_err(CallError::Encode)?;
                let reply = link
                    .call_among_many(|id| Ok(wire::encode(Kind::Call, id, body).into()), deadline)
                    .await?;
                link.codec.decode::<C, A>(&reply).map_err(CallError::Decode)
            }
        });
        futures_util::future::join_all(calls).await
    }

    /// Queues a one-way message for `peer`, waiting up to
    /// [`HubConfig::send_timeout`] for room in its queue.
    pub async fn send_to<T: Serialize + ?Sized>(
        &self,
        peer: PeerId,
        message: &T,
    ) -> Result<(), SendToError> {
        let link = self.link(peer).ok_or(SendToError::UnknownPeer(peer))?;
        let frame =
            encode::<C, T>(link.codec, Kind::Message, 0, message).map_err(SendToError::Encode)?;
        link.post_default(frame).await
    }

    /// Queues `body` for `peer` as it is, not encoded: the peer's
    /// [`Payload::bytes`] is exactly `body`. For large results (on shared
    /// memory they travel as blobs and are read in place).
    pub async fn send_bytes_to(&self, peer: PeerId, body: &[u8]) -> Result<(), SendToError> {
        let link = self.link(peer).ok_or(SendToError::UnknownPeer(peer))?;
        link.post_default(wire::encode(Kind::Message, 0, body))
            .await
    }

    /// Queues a one-way message for every peer without waiting: a peer
    /// whose queue is full (or that is leaving) is skipped and named in
    /// the result. The message is encoded once per codec the peers speak;
    /// the frames of the peers of one codec share one buffer. Nothing is
    /// sent if it does not encode.
    pub fn broadcast<T: Serialize + ?Sized>(&self, message: &T) -> Result<Broadcast, SendToError> {
        self.post_encoded(None, message)
    }

    /// Like [`broadcast`](Self::broadcast), to the chosen `peers` only
    /// (ids or `&PeerInfo`s); a peer not connected is skipped and named.
    pub fn broadcast_to<T, P>(
        &self,
        peers: impl IntoIterator<Item = P>,
        message: &T,
    ) -> Result<Broadcast, SendToError>
    where
        T: Serialize + ?Sized,
        P: Into<PeerId>,
    {
        let chosen = peers.into_iter().map(Into::into).collect();
        self.post_encoded(Some(chosen), message)
    }

    /// Encodes `message` for each codec the chosen peers speak, then
    /// queues it for each.
    fn post_encoded<T: Serialize + ?Sized>(
        &self,
        chosen: Option<Vec<PeerId>>,
        message: &T,
    ) -> Result<Broadcast, SendToError> {
        let (links, skipped) = self.links_of(chosen);
        let mut frames = HashMap::new();
        for link in &links {
            if let std::collections::hash_map::Entry::Vacant(frame) = frames.entry(link.codec) {
                // Encoded straight into its envelope, once per codec.
                let encoded = encode::<C, T>(link.codec, Kind::Message, 0, message);
                frame.insert(encoded.map_err(SendToError::Encode)?.into_bytes());
            }
        }
        Ok(self.post_each(links, skipped, |link| frames[&link.codec].clone()))
    }

    /// Like [`broadcast`](Self::broadcast) with `body` as it is, not
    /// encoded (each peer's [`Payload::bytes`] is exactly `body`), to
    /// `peers` or, with `None`, to every peer.
    pub fn broadcast_bytes(&self, peers: Option<&[PeerId]>, body: &[u8]) -> Broadcast {
        let frame = wire::encode(Kind::Message, 0, body);
        self.post_to_all(peers.map(<[PeerId]>::to_vec), frame)
    }

    /// Memory for a body of `len` bytes to `peers` (or, with `None`, to
    /// every peer): lent by a shared-memory connection among them if there
    /// is one, so that sending it to those peers passes it, not a copy.
    /// Write it in place, then send it with
    /// [`send_loan_to`](Self::send_loan_to) or
    /// [`broadcast_loan`](Self::broadcast_loan) (see [`LoanedBody`]).
    pub fn loan(&self, peers: Option<&[PeerId]>, len: usize) -> std::io::Result<LoanedBody> {
        let lender = {
            let all = lock(&self.shared.peers);
            let lends = |link: &Arc<Link>| link.lender.lends_shared();
            match peers {
                None => all.values().map(|p| &p.link).find(|l| lends(l)).cloned(),
                Some(chosen) => chosen
                    .iter()
                    .filter_map(|id| all.get(id).map(|p| &p.link))
                    .find(|l| lends(l))
                    .cloned(),
            }
            .map(|link| link.lender.clone())
            .unwrap_or_default()
        };
        LoanedBody::new(&lender, len)
    }

    /// Queues a body written in place for `peer` as a one-way message (its
    /// [`Payload::bytes`] is exactly the body); on shared memory it is
    /// passed, not copied.
    pub async fn send_loan_to(&self, peer: PeerId, body: LoanedBody) -> Result<(), SendToError> {
        let link = self.link(peer).ok_or(SendToError::UnknownPeer(peer))?;
        link.post_default(body.into_frame(Kind::Message, 0)?).await
    }

    /// Like [`broadcast_bytes`](Self::broadcast_bytes) with a body written
    /// in place: frozen once, and every shared-memory peer maps the same
    /// memory (written once, however many read it); other peers get a
    /// copy each. Fails only if the memory cannot be sealed (nothing sent).
    pub fn broadcast_loan(
        &self,
        peers: Option<&[PeerId]>,
        body: LoanedBody,
    ) -> Result<Broadcast, SendToError> {
        let frame = body.into_frame(Kind::Message, 0)?;
        Ok(self.post_to_all(peers.map(<[PeerId]>::to_vec), frame))
    }

    fn post_to_all(&self, chosen: Option<Vec<PeerId>>, frame: Bytes) -> Broadcast {
        let (links, skipped) = self.links_of(chosen);
        // `Bytes` clones share one buffer.
        self.post_each(links, skipped, |_| frame.clone())
    }

    /// The links of `chosen` (or of every peer), and the chosen that are
    /// not connected.
    fn links_of(&self, chosen: Option<Vec<PeerId>>) -> (Vec<Arc<Link>>, Vec<PeerId>) {
        let peers = lock(&self.shared.peers);
        let mut skipped = Vec::new();
        let links = match chosen {
            None => peers.values().map(|p| Arc::clone(&p.link)).collect(),
            Some(chosen) => chosen
                .into_iter()
                .filter_map(|id| match peers.get(&id) {
                    Some(p) => Some(Arc::clone(&p.link)),
                    None => {
                        skipped.push(id);
                        None
                    }
                })
                .collect(),
        };
        (links, skipped)
    }

    /// Queues each link's frame without waiting.
    fn post_each(
        &self,
        links: Vec<Arc<Link>>,
        skipped: Vec<PeerId>,
        frame_for: impl Fn(&Link) -> Bytes,
    ) -> Broadcast {
        let mut report = Broadcast {
            skipped,
            ..Broadcast::default()
        };
        for link in links {
            match link.try_post(frame_for(&link)) {
                Ok(()) => report.queued.push(link.peer),
                Err(_) => report.skipped.push(link.peer),
            }
        }
        report.queued.sort();
        report.skipped.sort();
        report
    }

    /// Calls `peer` with a request whose answer type it names (see
    /// [`Call`]): `call` with the answer type inferred.
    pub async fn ask<R: Call>(
        &self,
        peer: PeerId,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Answer, CallError> {
        self.call(peer, request, timeout).await
    }

    /// The connected peers that gave `name`, oldest first (names are not
    /// unique: each agent chooses its own).
    pub fn peers_named(&self, name: &str) -> Vec<PeerInfo> {
        let mut found: Vec<PeerInfo> = self
            .peers()
            .into_iter()
            .filter(|p| p.name == name)
            .collect();
        found.sort_by_key(|p| p.id);
        found
    }

    /// Closes the connection to `peer` now (it sees the connection end);
    /// its [`HubEvent::Left`] follows with [`LeaveReason::Removed`].
    pub fn remove(&self, peer: PeerId) -> bool {
        match self.link(peer) {
            Some(link) => {
                link.leave(LeaveReason::Removed);
                true
            }
            None => false,
        }
    }
}

/// Fewer peers joined than [`Hub::wait_for_peers`] waited for.
#[derive(Debug, thiserror::Error)]
#[error("{} of {wanted} peers joined before the deadline", joined.len())]
pub struct PeersMissing {
    /// How many were awaited.
    pub wanted: usize,
    /// Those that joined.
    pub joined: Vec<PeerInfo>,
}

/// Who a [`broadcast`](HubHandle::broadcast) reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Broadcast {
    /// Peers the message was queued for.
    pub queued: Vec<PeerId>,
    /// Peers whose queue was full or that were leaving.
    pub skipped: Vec<PeerId>,
}

async fn admit<T: AsyncSplit + 'static>(
    shared: &Arc<Shared>,
    conn: T,
) -> Result<PeerInfo, AdmitError> {
    let hello = receive_hello(shared, conn).await?;
    join(shared, hello).await
}

/// A connection that has said a valid hello.
struct Hello<T: AsyncSplit> {
    halves: (T::ReadHalf, T::WriteHalf),
    credentials: PeerCredentials,
    receive_spins: bool,
    max_frame: usize,
    name: String,
    codec: Option<BodyCodec>,
}

/// The part of a handshake a peer can stall: waiting for its hello.
async fn receive_hello<T: AsyncSplit + 'static>(
    shared: &Arc<Shared>,
    conn: T,
) -> Result<Hello<T>, AdmitError> {
    if shared.closing.load(Ordering::Acquire) {
        return Err(AdmitError::ShuttingDown);
    }
    let credentials = conn.peer_credentials();
    let receive_spins = conn.capabilities().receive_spins;
    let max_frame = conn.max_message_size();
    let (mut read, write) = conn.into_split();
    let timeout = shared.config.handshake_timeout;
    let first = match read.recv_timeout(timeout).await {
        Ok(frame) => frame,
        Err(RecvError::Timeout) => return Err(AdmitError::Timeout),
        Err(e) => return Err(AdmitError::Connection(e.to_string())),
    };
    let hello = wire::decode(first)?;
    if hello.kind != Kind::Hello {
        return Err(wire::WireError::BadHello(format!(
            "the first frame is a {:?}, not a hello",
            hello.kind
        ))
        .into());
    }
    let (name, codec) = wire::parse_hello(&hello.body)?;
    Ok(Hello {
        halves: (read, write),
        credentials,
        receive_spins,
        max_frame,
        name,
        codec,
    })
}

/// Welcomes a peer that said hello and starts its link.
async fn join<T: AsyncSplit + 'static>(
    shared: &Arc<Shared>,
    hello: Hello<T>,
) -> Result<PeerInfo, AdmitError> {
    let Hello {
        halves: (read, write),
        credentials,
        receive_spins,
        max_frame,
        name,
        codec,
    } = hello;
    let id = PeerId(shared.next_peer.fetch_add(1, Ordering::Relaxed));
    let (link, reader) = Link::new(
        id,
        (read, write),
        receive_spins,
        PeerCodec(codec),
        max_frame,
        &shared.config,
        shared.events.clone(),
    );
    let info = PeerInfo {
        id,
        name,
        credentials,
        codec,
    };
    {
        let mut peers = lock(&shared.peers);
        if shared.closing.load(Ordering::Acquire) {
            link.abort();
            return Err(AdmitError::ShuttingDown);
        }
        // The welcome is the link's first frame, queued under the lock a
        // shutdown takes to say goodbye: a peer is welcomed only as one
        // of the peers, so a welcomed peer always gets its goodbye (sent
        // before, a shutdown in between dropped it without one).
        if let Err(e) = link.try_post(wire::encode(Kind::Welcome, id.0, b"")) {
            link.abort();
            return Err(AdmitError::Connection(e.to_string()));
        }
        peers.insert(
            id,
            Peer {
                info: info.clone(),
                link,
            },
        );
    }
    // Joined goes out before the reader starts: nothing from the peer can
    // overtake it.
    let _ = shared.events.send(Inbound::Joined(info.clone())).await;
    reader.start();
    Ok(info)
}

async fn accept_loop<L>(shared: Arc<Shared>, mut listener: L)
where
    L: AsyncListener + 'static,
    L::Connection: AsyncSplit + 'static,
{
    let mut pause = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(conn) => {
                pause = Duration::from_millis(10);
                let from = conn.peer_credentials();
                let (cancel, cancelled) = oneshot::channel();
                let (ticket, crowded) = lock(&shared.handshakes).admit(from.pid, cancel);
                // Dropping its sender cancels the crowded-out handshake.
                drop(crowded);
                let for_task = Arc::clone(&shared);
                let task = tokio::spawn(async move {
                    // Only the wait for the hello can be crowded out; a
                    // peer that said it is welcomed.
                    let hello = tokio::select! {
                        hello = receive_hello(&for_task, conn) => hello,
                        _ = cancelled => Err(AdmitError::Crowded),
                    };
                    lock(&for_task.handshakes).remove(ticket);
                    let joined = match hello {
                        Ok(hello) => join(&for_task, hello).await.map(drop),
                        Err(e) => Err(e),
                    };
                    if let Err(error) = joined {
                        for_task.notice(Inbound::Rejected(from, error));
                    }
                });
                let mut background = lock(&shared.background);
                background.retain(|t| !t.is_finished());
                background.push(task.abort_handle());
            }
            Err(e) => {
                let out_of_fds = matches!(&e, ConnectError::Io(io)
                    if matches!(io.raw_os_error(), Some(EMFILE | ENFILE)));
                if !out_of_fds {
                    shared.notice(Inbound::AcceptFailed(e));
                }
                // Either way, never retry in a tight loop.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

// Linux's errno values for "too many open files" (process, system).
const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

impl<C: HubCodec> crate::supervise::Owner for HubHandle<C> {
    fn notice(&self, notice: AgentNotice) {
        self.shared.notice(Inbound::Agent(notice));
    }

    fn is_closing(&self) -> bool {
        self.shared.is_closing()
    }

    fn adopt(&self, conn: ipc_pipe::AsyncAgentConnection) {
        let handle = self.clone();
        tokio::spawn(async move {
            let _ = handle.add(conn).await;
        });
    }
}

impl Shared {
    /// True once the hub shuts down or is dropped.
    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Reports a rejected connection or a failed accept without waiting:
    /// a flood of bad connections must not stall the accept loop. When the
    /// event queue is full the notice is counted instead.
    fn notice(&self, notice: Inbound) {
        if self.events.try_send(notice).is_err() {
            self.unreported.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, once per process.
/// Best effort: where it cannot, accepting fails later with `EMFILE`,
/// reported as [`HubEvent::AcceptFailed`].
fn raise_descriptor_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            let _ = setrlimit(Resource::Nofile, limit);
        }
    });
}

/// One request body encoded once per codec (for fan-outs, whose frames
/// differ by call id).
#[derive(Default)]
struct Encoded(HashMap<PeerCodec, Result<Vec<u8>, (&'static str, String)>>);

impl Encoded {
    fn encode<C: HubCodec, T: Serialize + ?Sized>(&mut self, codec: PeerCodec, value: &T) {
        self.0.entry(codec).or_insert_with(|| {
            let mut body = Vec::new();
            codec
                .encode::<C, T>(value, &mut body)
                .map(|()| body)
                .map_err(|e| (e.codec, e.message))
        });
    }

    /// The body for `codec` (encoded before with [`encode`](Self::encode)).
    fn get(&self, codec: PeerCodec) -> Result<&[u8], ipc_core::CodecError> {
        match self.0.get(&codec) {
            Some(Ok(body)) => Ok(body),
            Some(Err((name, why))) => Err(ipc_core::CodecError {
                codec: name,
                op: "encode",
                message: why.clone(),
            }),
            None => Err(ipc_core::CodecError {
                codec: "none",
                op: "encode",
                message: "not encoded for this peer's codec".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::WRITE_SLICE;
    use crate::{Agent, AgentEvent, CallError};

    type Failed = Box<dyn std::error::Error>;

    fn runtime() -> Result<tokio::runtime::Runtime, Failed> {
        Ok(tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?)
    }

    /// A hub listening over shared memory (whose callers read their
    /// replies) or a Unix socket (whose reader task hands them over).
    fn listening(
        shm: bool,
        name: &str,
        dir: &std::path::Path,
        config: HubConfig,
    ) -> Result<(Hub, ipc_core::Address), Failed> {
        let conn_config = ipc_core::Config::default();
        let hub = Hub::new(config)?;
        let address = if shm {
            let name = format!("{name}-{}", std::process::id());
            hub.listen(ipc_shm::AsyncShmListener::bind_name(&name, &conn_config)?)?;
            ipc_core::Address::Shm(name)
        } else {
            let path = dir.join(format!("{name}.sock"));
            hub.listen(ipc_uds::AsyncUdsListener::bind_path(&path, &conn_config)?)?;
            ipc_core::Address::Uds(path)
        };
        Ok((hub, address))
    }

    async fn join(address: &ipc_core::Address, name: &str) -> Result<Agent, Failed> {
        let conn = ipc_any::connect_async(address, &ipc_core::Config::default()).await?;
        Ok(Agent::join(conn, name, HubConfig::default()).await?)
    }

    /// However a call ends (answered, at its deadline, dropped), it takes
    /// its entry out of its link's table, and a reply that comes too late
    /// finds none.
    #[test]
    fn no_call_leaves_its_entry_behind() -> Result<(), Failed> {
        let dir = tempfile::tempdir()?;
        runtime()?.block_on(async {
            for shm in [true, false] {
                let (mut hub, address) =
                    listening(shm, "entries", dir.path(), HubConfig::default())?;
                let agent = join(&address, "entries").await?;
                let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
                // Even numbers are answered at once, odd ones late (20 in
                // the first loop, 5 in the second, 1 at the end).
                let serving = tokio::spawn(agent.serve(|n: u64| async move {
                    if n % 2 == 1 {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok::<_, String>(n)
                }));
                let handle = hub.handle();
                for n in 0..20u64 {
                    let got = handle
                        .call::<u64, u64>(peer, &n, Duration::from_millis(30))
                        .await;
                    match n % 2 {
                        0 => assert_eq!(got?, n, "shm: {shm}"),
                        _ => assert!(matches!(got, Err(CallError::Timeout)), "{got:?}"),
                    }
                }
                for n in 0..5u64 {
                    let odd = 2 * n + 1;
                    let call = handle.call::<u64, u64>(peer, &odd, LONG_ENOUGH);
                    let dropped = tokio::time::timeout(Duration::from_millis(10), call).await;
                    assert!(dropped.is_err(), "{dropped:?}");
                }
                let link = handle.link(peer).ok_or("the agent left")?;
                assert_eq!(link.calls_waiting(), 0, "shm: {shm}");
                // The late answers come, find nothing, and are dropped.
                tokio::time::sleep(Duration::from_millis(400)).await;
                assert_eq!(link.calls_waiting(), 0, "shm: {shm}");
                assert_eq!(handle.call::<u64, u64>(peer, &2, LONG_ENOUGH).await?, 2);
                drop(link);
                hub.shutdown(Duration::from_secs(1)).await;
                let served = serving.await?;
                assert_eq!(served.answered, 26, "shm: {shm}");
            }
            Ok(())
        })
    }

    /// Answers each call (a number) with itself, odd ones after `odd_wait`,
    /// until the hub says goodbye.
    async fn echo_numbers(mut agent: Agent, odd_wait: Duration) -> Result<(), String> {
        while let Some(event) = agent.next().await {
            match event {
                AgentEvent::Call(request) => {
                    let n: u64 = request.decode().map_err(|e| e.to_string())?;
                    if n % 2 == 1 {
                        tokio::time::sleep(odd_wait).await;
                    }
                    request.reply(&n).await.map_err(|e| e.to_string())?;
                }
                AgentEvent::Shutdown(_) => break,
                _ => {}
            }
        }
        Ok(())
    }

    /// A hub over shared memory with one agent answering numbers
    /// (`echo_numbers`), and the agent's link as the hub sees it.
    struct Echoing {
        hub: Hub,
        peer: PeerId,
        link: Arc<crate::link::Link>,
        agent: crate::AgentHandle,
        serving: tokio::task::JoinHandle<Result<(), String>>,
    }

    impl Echoing {
        async fn start(dir: &std::path::Path, odd_wait: Duration) -> Result<Echoing, Failed> {
            let (mut hub, address) = listening(true, "echoing", dir, HubConfig::default())?;
            let agent = join(&address, "echoing").await?;
            let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
            let agent_handle = agent.handle();
            let serving = tokio::spawn(echo_numbers(agent, odd_wait));
            let link = hub.handle().link(peer).ok_or("the agent left")?;
            Ok(Echoing {
                hub,
                peer,
                link,
                agent: agent_handle,
                serving,
            })
        }

        async fn call(&self, n: u64) -> Result<(), Failed> {
            let answer: u64 = self.hub.handle().call(self.peer, &n, LONG_ENOUGH).await?;
            assert_eq!(answer, n);
            Ok(())
        }

        async fn end(self) -> Result<(), Failed> {
            drop(self.link);
            self.hub.shutdown(Duration::from_secs(1)).await;
            self.serving.await??;
            Ok(())
        }
    }

    /// Calls one after another over shared memory (whose callers read
    /// their replies) do not ring the link's reader task as each puts the
    /// read side down: it is rung at most about twice per
    /// [`READER_GRACE`](crate::link::READER_GRACE) (before: once a call,
    /// each a thread's wake-up, which made 1-2 % of calls wait tens of
    /// microseconds). And it still reads what comes while no call does:
    /// a message sent after the last call reaches the hub.
    #[test]
    fn calls_in_a_row_do_not_ring_the_reader_each() -> Result<(), Failed> {
        const CALLS: u64 = 2000;
        let dir = tempfile::tempdir()?;
        runtime()?.block_on(async {
            let mut echoing = Echoing::start(dir.path(), Duration::ZERO).await?;
            let start = std::time::Instant::now();
            for n in 0..CALLS {
                echoing.call(n).await?;
            }
            let took = start.elapsed();
            let rings = echoing.link.reader_rings();
            let graces = took.as_secs_f64() / crate::link::READER_GRACE.as_secs_f64();
            let bound = 2.0 * graces.ceil() + 4.0;
            assert!(
                (rings as f64) <= bound,
                "{CALLS} calls in {took:?} rang the reader {rings} times (at most {bound})"
            );
            echoing.agent.send(&"after the calls".to_string()).await?;
            match tokio::time::timeout(LONG_ENOUGH, echoing.hub.next()).await? {
                HubEvent::Message { payload, .. } => {
                    assert_eq!(payload.decode::<String>()?, "after the calls");
                }
                other => return Err(format!("{other:?}").into()),
            }
            echoing.end().await
        })
    }

    /// A call whose reply takes longer than the reader's grace leaves the
    /// reader asleep (no calls were made meanwhile); the caller's put-down
    /// rings it, so what the agent sends after the reply reaches the hub
    /// with no call reading (without that ring it would sit unread). A
    /// quick call first, so the long one finds the side free and holds it
    /// from the start (it has no entry in the table to ring for).
    #[test]
    fn a_reader_asleep_behind_a_long_call_is_rung_when_it_ends() -> Result<(), Failed> {
        let dir = tempfile::tempdir()?;
        runtime()?.block_on(async {
            // Odd numbers long enough for the reader's grace to pass.
            let mut echoing = Echoing::start(dir.path(), 10 * crate::link::READER_GRACE).await?;
            for n in (1..6u64).step_by(2) {
                echoing.call(n - 1).await?;
                echoing.call(n).await?;
                echoing.agent.send(&n).await?;
                match tokio::time::timeout(LONG_ENOUGH, echoing.hub.next()).await? {
                    HubEvent::Message { payload, .. } => assert_eq!(payload.decode::<u64>()?, n),
                    other => return Err(format!("{other:?}").into()),
                }
            }
            assert!(
                echoing.link.reader_rings() >= 1,
                "the reader was never rung asleep"
            );
            echoing.end().await
        })
    }

    /// A call made while the reader task holds the read side (the link
    /// was idle) goes into the table and waits for the side. Once the
    /// caller has it and reads its own reply, the entry is gone before it
    /// puts the side down, and it stayed counted as wanting the side from
    /// the reader's put-down to its own try: so no step of it rings the
    /// reader. Before, both did (the entry at the put-down; the count,
    /// dropped in between, woke the reader to find the side held and go
    /// to sleep until rung), and each ring was a worker's wake-up: with
    /// the hub's threads on one CPU, the chain stalled about 1 % of calls
    /// by tens of microseconds.
    #[test]
    fn a_caller_that_waited_for_the_side_rings_no_one_for_its_own_reply() -> Result<(), Failed> {
        const ROUNDS: usize = 20;
        let dir = tempfile::tempdir()?;
        runtime()?.block_on(async {
            let echoing = Echoing::start(dir.path(), Duration::ZERO).await?;
            let link = &echoing.link;
            let (mut waited, mut rang, mut judged) = (0, 0, 0);
            for n in 0..ROUNDS as u64 {
                // Idle for a few graces: the reader task takes the side.
                tokio::time::sleep(3 * crate::link::READER_GRACE).await;
                waited += usize::from(link.calls_waiting() == 0);
                let (rings, started) = (link.reader_rings(), std::time::Instant::now());
                echoing.call(n).await?;
                // A call that took near a grace (a loaded machine) may ring
                // the reader rightly: it slept behind what looked long.
                if started.elapsed() < crate::link::READER_GRACE / 2 {
                    judged += 1;
                    rang += usize::from(link.reader_rings() > rings);
                }
            }
            assert!(
                rang <= judged / 4,
                "{judged} quick calls after an idle pause rang the reader {rang} times"
            );
            assert_eq!(waited, ROUNDS, "no call is left in the table");
            echoing.end().await
        })
    }

    /// A caller on a multi-thread runtime waits on the spot a while longer
    /// (`SPOT_PATIENCE`) while the agent answers quickly; an answer slower
    /// than `QUICK_ANSWER` turns that off, so calls to an agent that works
    /// on its answers do not hold a worker spinning, and a quick one turns
    /// it back on. (Whether a quick answer is seen within the bound
    /// depends on the machine: several quick calls are allowed.)
    #[test]
    fn a_slow_answer_turns_waiting_on_the_spot_off_and_a_quick_one_on() -> Result<(), Failed> {
        let dir = tempfile::tempdir()?;
        runtime()?.block_on(async {
            // Odd numbers answered after 10 ms, far beyond a quick answer.
            let echoing = Echoing::start(dir.path(), Duration::from_millis(10)).await?;
            let link = &echoing.link;
            assert!(link.answers_quick(), "a new link waits on the spot");
            for round in 0..3u64 {
                let slow = 2 * round * 1000 + 1;
                echoing.call(slow).await?;
                assert!(!link.answers_quick(), "a 10 ms answer is not quick");
                let mut quick = slow + 1;
                while !link.answers_quick() && quick < slow + 400 {
                    echoing.call(quick).await?;
                    quick += 2;
                }
                assert!(
                    link.answers_quick(),
                    "200 calls answered at once, none quick"
                );
            }
            echoing.end().await
        })
    }

    /// A caller reading its own reply stops at a full backlog (only the
    /// reader task waits for room) before its reply has come: its call
    /// then has an entry, and the reader task hands the reply over once
    /// the hub has taken the messages before it. The hub runs on one
    /// thread, so its second call finds the read side free (the reader
    /// task has not run since the first) and is sent holding it.
    #[test]
    fn a_reply_behind_a_full_backlog_reaches_its_caller() -> Result<(), Failed> {
        const MESSAGES: usize = 32;
        let dir = tempfile::tempdir()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for shm in [true, false] {
            let config = HubConfig::default().with_peer_backlog_bytes(4096);
            let (mut hub, address) = {
                let _in_runtime = runtime.enter();
                listening(shm, "backlog", dir.path(), config)?
            };
            let agent_side = std::thread::spawn(move || {
                let serve = async {
                    let mut agent = join(&address, "backlog").await?;
                    let handle = agent.handle();
                    while let Some(event) = agent.next().await {
                        let request = match event {
                            crate::AgentEvent::Call(request) => request,
                            crate::AgentEvent::Shutdown(_) => break,
                            _ => continue,
                        };
                        // For the second call, messages first, each a
                        // quarter of the backlog, then the answer.
                        let n: u64 = request.decode()?;
                        for i in 0..MESSAGES * usize::from(n == 7) {
                            handle.send_bytes(&[i as u8; 1024]).await?;
                        }
                        request.reply(&n).await?;
                    }
                    agent.close("done", Duration::from_secs(1)).await;
                    Ok::<_, Failed>(())
                };
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(serve).map_err(|e| e.to_string())
            });
            runtime.block_on(async {
                let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
                let handle = hub.handle();
                let calls = tokio::spawn(async move {
                    let first = handle.call::<u64, u64>(peer, &1, LONG_ENOUGH).await?;
                    let second = handle.call::<u64, u64>(peer, &7, LONG_ENOUGH).await?;
                    Ok::<_, CallError>((first, second))
                });
                // The hub takes nothing until the call has read up to the
                // full backlog.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut taken = 0;
                while taken < MESSAGES {
                    match tokio::time::timeout(LONG_ENOUGH, hub.next()).await? {
                        HubEvent::Message { payload, .. } => {
                            assert_eq!(payload.bytes()[..], [taken as u8; 1024], "shm: {shm}");
                            taken += 1;
                        }
                        other => return Err(format!("shm: {shm}: {other:?}").into()),
                    }
                }
                assert_eq!(calls.await??, (1, 7), "shm: {shm}");
                hub.shutdown(Duration::from_secs(1)).await;
                Ok::<_, Failed>(())
            })?;
            agent_side.join().map_err(|_| "the agent panicked")??;
        }
        Ok(())
    }

    /// A frame whose write has to wait for room is written by the link,
    /// whatever runtime the sender waited on: here a log shipper's own,
    /// gone before the hub reads (before: the rest of that write was a
    /// task of the shipper's runtime, and dropped with it, frame and all).
    #[test]
    fn a_frame_sent_from_a_runtime_gone_since_still_arrives() -> Result<(), Failed> {
        const RECORD: usize = 1024;
        let dir = tempfile::tempdir()?;
        let runtime = runtime()?;
        for shm in [true, false] {
            let config = HubConfig::default()
                .with_event_queue(4)
                .with_peer_backlog_bytes(4 * RECORD);
            let (mut hub, address) = {
                let _in_runtime = runtime.enter();
                listening(shm, "gone", dir.path(), config)?
            };
            runtime.block_on(async {
                let agent = join(&address, "gone").await?;
                hub.wait_for_peers(1, LONG_ENOUGH).await?;
                use ipc_core::AsyncFrameSender as _;
                let mut sink = agent.log_sink();
                // Records until the connection, the hub's backlog and the
                // agent's queue are full, each sent on the shipper's
                // runtime, which ends with its thread.
                let shipper = std::thread::spawn(move || {
                    let own = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let mut sent = 0u64;
                    let mut record = vec![0u8; RECORD];
                    loop {
                        record[..8].copy_from_slice(&sent.to_le_bytes());
                        let wait = Duration::from_millis(20);
                        match own.block_on(sink.send_timeout(&record, wait)) {
                            Ok(()) => sent += 1,
                            Err(ipc_core::SendError::Timeout) => return Ok::<_, String>(sent),
                            Err(e) => return Err(e.to_string()),
                        }
                    }
                });
                let sent = tokio::task::spawn_blocking(|| shipper.join())
                    .await?
                    .map_err(|_| "the shipper panicked")??;
                assert!(
                    sent > 8,
                    "shm: {shm}: only {sent} sent before the queues were full"
                );
                let mut seqs = Vec::new();
                while (seqs.len() as u64) < sent {
                    let next = tokio::time::timeout(Duration::from_secs(2), hub.next()).await;
                    match next {
                        Ok(HubEvent::Log { record, .. }) => {
                            let seq: [u8; 8] = record[..8].try_into()?;
                            seqs.push(u64::from_le_bytes(seq));
                        }
                        Ok(other) => {
                            return Err(format!(
                                "shm: {shm}: after {} of {sent}: {other:?}",
                                seqs.len()
                            )
                            .into());
                        }
                        Err(_) => break,
                    }
                }
                assert_eq!(seqs, (0..sent).collect::<Vec<_>>(), "shm: {shm}");
                drop(agent);
                hub.shutdown(Duration::from_secs(1)).await;
                Ok::<_, Failed>(())
            })?;
        }
        Ok(())
    }

    /// Calls from a thread with a runtime of its own, beside calls on
    /// the hub's runtime, to an agent slow now and then: each caller that
    /// parks on the shared-memory connection registers it with its own
    /// runtime, and every call is answered, in turn, with its own answer.
    #[test]
    fn calls_from_another_runtime_beside_the_hubs() -> Result<(), Failed> {
        const CALLS: u64 = 300;
        let dir = tempfile::tempdir()?;
        let runtime = runtime()?;
        for shm in [true, false] {
            let (mut hub, address) = {
                let _in_runtime = runtime.enter();
                listening(shm, "foreign", dir.path(), HubConfig::default())?
            };
            let (handle, peer, serving) = runtime.block_on(async {
                let agent = join(&address, "foreign").await?;
                let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
                // Every 7th call waits long enough for its caller to park.
                let serving = tokio::spawn(agent.serve(|n: u64| async move {
                    if n.is_multiple_of(7) {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Ok::<_, String>(n)
                }));
                Ok::<_, Failed>((hub.handle(), peer, serving))
            })?;
            let calls = move |first: u64, handle: HubHandle| async move {
                for n in (first..first + CALLS).map(|i| i * 2) {
                    let got = handle.call::<u64, u64>(peer, &n, LONG_ENOUGH).await;
                    if got.as_ref().ok() != Some(&n) {
                        return Err(format!("shm: {shm}: call {n}: {got:?}"));
                    }
                }
                Ok(())
            };
            let foreign = std::thread::spawn({
                let handle = handle.clone();
                move || {
                    let own = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    own.block_on(calls(1_000, handle))
                }
            });
            runtime.block_on(calls(0, handle.clone()))?;
            foreign
                .join()
                .map_err(|_| "the other runtime's thread panicked")??;
            runtime.block_on(async {
                hub.shutdown(Duration::from_secs(1)).await;
                let served = serving.await?;
                assert_eq!(served.answered, 2 * CALLS, "shm: {shm}");
                Ok::<_, Failed>(())
            })?;
        }
        Ok(())
    }

    /// A frame larger than the connection holds, to a peer that reads
    /// none of it for longer than a write's time slice, arrives whole
    /// once the peer reads, with nothing sent after it (before: the rest
    /// of it stayed in the hub's half until the next frame).
    #[test]
    fn a_large_frame_to_a_peer_slow_to_read_arrives_whole() -> Result<(), Failed> {
        const LARGE: usize = 4 << 20;
        let dir = tempfile::tempdir()?;
        let runtime = runtime()?;
        for shm in [true, false] {
            let (mut hub, address) = {
                let _in_runtime = runtime.enter();
                listening(shm, "slow", dir.path(), HubConfig::default())?
            };
            runtime.block_on(async {
                // Its backlog holds one message: a second stops its reader.
                let slow = HubConfig::default()
                    .with_event_queue(1)
                    .with_peer_backlog_bytes(1024);
                let config = ipc_core::Config::default();
                let conn = ipc_any::connect_async(&address, &config).await?;
                let mut agent = Agent::join(conn, "slow", slow).await?;
                let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
                let handle = hub.handle();
                for i in 0..2u8 {
                    handle.send_bytes_to(peer, &[i; 600]).await?;
                }
                handle.send_bytes_to(peer, &vec![7u8; LARGE]).await?;
                tokio::time::sleep(WRITE_SLICE + Duration::from_millis(500)).await;
                for i in 0..3u8 {
                    let next = tokio::time::timeout(Duration::from_secs(5), agent.next()).await;
                    let Ok(Some(AgentEvent::Message(payload))) = next else {
                        return Err(format!("shm: {shm}: message {i}: {next:?}").into());
                    };
                    let (len, byte) = if i < 2 { (600, i) } else { (LARGE, 7) };
                    let bytes = payload.bytes();
                    assert!(
                        bytes.len() == len && bytes.iter().all(|b| *b == byte),
                        "shm: {shm}"
                    );
                }
                drop(agent);
                hub.shutdown(Duration::from_secs(1)).await;
                Ok::<_, Failed>(())
            })?;
        }
        Ok(())
    }

    /// A peer cut off at the shutdown deadline (it read nothing, so the
    /// goodbye and the close waited behind a full queue) sees its
    /// connection end once `shutdown` has returned, though the hub's
    /// runtime, a current-thread one, runs nothing after it (before: the
    /// link's halves stayed in its aborted tasks until the runtime was
    /// dropped, and the peer waited for an end that never came).
    #[test]
    fn a_peer_cut_off_at_shutdown_sees_its_connection_end() -> Result<(), Failed> {
        let dir = tempfile::tempdir()?;
        for shm in [true, false] {
            let hub_runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let config = HubConfig::default()
                .with_queue_len(4)
                .with_send_timeout(Duration::from_millis(50));
            let (mut hub, address) = {
                let _in_runtime = hub_runtime.enter();
                listening(shm, "cut-off", dir.path(), config)?
            };
            let (go, told) = tokio::sync::oneshot::channel::<()>();
            let agent = std::thread::spawn(move || -> Result<String, String> {
                let runtime = runtime().map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    // Its backlog holds one message: its reader stops soon.
                    let slow = HubConfig::default()
                        .with_event_queue(1)
                        .with_peer_backlog_bytes(1024);
                    let config = ipc_core::Config::default();
                    let conn = ipc_any::connect_async(&address, &config)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut agent = Agent::join(conn, "cut-off", slow)
                        .await
                        .map_err(|e| e.to_string())?;
                    told.await.map_err(|e| e.to_string())?;
                    let mut read = 0;
                    loop {
                        match tokio::time::timeout(LONG_ENOUGH, agent.next()).await {
                            Ok(Some(AgentEvent::Left(reason))) => {
                                return Ok(format!("left ({reason:?}) after {read} messages"));
                            }
                            Ok(None) => return Ok(format!("ended after {read} messages")),
                            Ok(Some(_)) => read += 1,
                            Err(_) => {
                                return Err(format!(
                                    "no end within {LONG_ENOUGH:?} after {read} messages"
                                ));
                            }
                        }
                    }
                })
            });
            hub_runtime.block_on(async {
                let peer = hub.wait_for_peers(1, LONG_ENOUGH).await?[0].id;
                let handle = hub.handle();
                let mut sent = 0;
                while sent < 10_000 {
                    match handle.send_bytes_to(peer, &[7u8; 60_000]).await {
                        Ok(()) => sent += 1,
                        Err(crate::SendToError::Full) => break,
                        Err(e) => return Err(format!("message {sent}: {e}").into()),
                    }
                }
                assert!(sent < 10_000, "shm: {shm}: the agent's side never filled");
                let closed = hub.shutdown(Duration::from_millis(300)).await.closed;
                assert_eq!(closed, 0, "shm: {shm}: the agent closed by itself");
                Ok::<_, Failed>(())
            })?;
            // The hub's runtime stays, idle, while the agent reads.
            let _ = go.send(());
            let ended = agent.join().map_err(|_| "the agent's thread panicked")?;
            assert!(ended.is_ok(), "shm: {shm}: {ended:?}");
            drop(hub_runtime);
        }
        Ok(())
    }

    /// The same from an agent's side: an agent on a current-thread
    /// runtime that closes while the hub reads nothing is cut off at its
    /// grace, and the hub sees it leave once `close` has returned, though
    /// the agent's runtime runs nothing after it.
    #[test]
    fn an_agent_cut_off_as_it_closes_is_seen_to_leave() -> Result<(), Failed> {
        let dir = tempfile::tempdir()?;
        let runtime = runtime()?;
        for shm in [true, false] {
            // Its backlog holds one message: the hub's reader stops soon.
            let slow = HubConfig::default()
                .with_event_queue(1)
                .with_peer_backlog_bytes(1024);
            let (mut hub, address) = {
                let _in_runtime = runtime.enter();
                listening(shm, "closing", dir.path(), slow)?
            };
            let (closed_tx, closed) = std::sync::mpsc::channel::<Result<usize, String>>();
            let (finish, finished) = std::sync::mpsc::channel::<()>();
            let agent = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let sent = runtime.block_on(async {
                    let config = HubConfig::default()
                        .with_queue_len(4)
                        .with_send_timeout(Duration::from_millis(50));
                    let conn = ipc_any::connect_async(&address, &ipc_core::Config::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    let agent = Agent::join(conn, "closing", config)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut sent = 0;
                    while sent < 10_000 {
                        match agent.send_bytes(&[7u8; 60_000]).await {
                            Ok(()) => sent += 1,
                            Err(crate::SendToError::Full) => break,
                            Err(e) => return Err(format!("message {sent}: {e}")),
                        }
                    }
                    agent.close("done", Duration::from_millis(300)).await;
                    Ok(sent)
                });
                let _ = closed_tx.send(sent);
                // The runtime stays, idle, while the hub reads (until told,
                // or the test has ended).
                let _ = finished.recv();
            });
            let sent = closed.recv_timeout(LONG_ENOUGH)??;
            assert!(sent < 10_000, "shm: {shm}: the hub's side never filled");
            let left = runtime.block_on(async {
                tokio::time::timeout(LONG_ENOUGH, async {
                    loop {
                        if let HubEvent::Left { reason, .. } = hub.next().await {
                            return reason;
                        }
                    }
                })
                .await
            });
            let _ = finish.send(());
            agent.join().map_err(|_| "the agent's thread panicked")?;
            assert!(left.is_ok(), "shm: {shm}: no Left within {LONG_ENOUGH:?}");
            runtime.block_on(hub.shutdown(Duration::from_secs(1)));
        }
        Ok(())
    }

    const LONG_ENOUGH: Duration = Duration::from_secs(10);
}
