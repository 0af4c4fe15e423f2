//! The agent's side: join a hub, answer its calls, send it messages and
//! logs, call it.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::OptionFuture;
use ipc_core::{
    AsyncFrameReceiver, AsyncFrameSender, AsyncSplit, PeerCredentials, Postcard, RecvError,
    SendError,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::codec::{BodyCodec, HubCodec, PeerCodec};
use crate::link::{Awaited, Claim, Inbound, Link, Wait};
use crate::message::LoanedBody;
use crate::wire::{self, Kind, encode_value as encode};
use crate::{
    Call, CallError, HubConfig, JoinError, LeaveReason, Payload, PeerId, Request, SendToError,
};

/// Something the hub sent; see [`Agent::next`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AgentEvent<C = Postcard> {
    /// A one-way message.
    Message(Payload<C>),
    /// A call to answer with [`Request::reply`].
    Call(Request<C>),
    /// The hub is shutting down: finish up and [`close`](Agent::close).
    Shutdown(String),
    /// The connection to the hub ended; `next` returns `None` from now on.
    Left(LeaveReason),
}

/// Calls [`Agent::serve`] runs at once.
pub const SERVE_CONCURRENCY: usize = 64;

/// Runs one call's work and answers it; true if the answer went out.
async fn answer<C, A, Fut>(request: Request<C>, work: Result<Fut, String>) -> bool
where
    C: HubCodec,
    A: Serialize,
    Fut: std::future::Future<Output = Result<A, String>>,
{
    let sent = match work {
        Ok(work) => match work.await {
            Ok(value) => request.reply(&value).await,
            Err(why) => request.fail(&why).await,
        },
        Err(why) => request.fail(&why).await,
    };
    sent.is_ok()
}

/// `call` in the spare box if there is one, else in a new one.
fn boxed<F: Future>(
    spare: &mut Option<Pin<Box<OptionFuture<F>>>>,
    call: F,
) -> Pin<Box<OptionFuture<F>>> {
    let call = OptionFuture::from(Some(call));
    match spare.take() {
        Some(mut slot) => {
            slot.set(call);
            slot
        }
        None => Box::pin(call),
    }
}

/// The agent's next event, as [`Link::wait_for`] waits for it: taken
/// and returned in one poll, so [`Agent::next`] stays cancel-safe.
struct NextEvent<'a> {
    events: &'a mut mpsc::Receiver<Inbound>,
    /// `Some(None)`: the queue has closed.
    got: Option<Option<Next>>,
}

/// Where the next event came from.
enum Next {
    /// The queue the reader task fills.
    Queued(Inbound),
    /// The connection, read by `next` itself with nothing before it.
    Read(wire::Envelope),
}

impl Claim for NextEvent<'_> {
    fn arrived(&mut self) -> bool {
        if self.got.is_none() {
            self.got = match self.events.try_recv() {
                Ok(event) => Some(Some(Next::Queued(event))),
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
                Err(mpsc::error::TryRecvError::Empty) => None,
            };
        }
        self.got.is_some()
    }

    fn claim(&mut self, frame: wire::Envelope, in_order: bool) -> Option<wire::Envelope> {
        if !in_order || self.got.is_some() || !matches!(frame.kind, Kind::Call | Kind::Message) {
            return Some(frame);
        }
        self.got = Some(Some(Next::Read(frame)));
        None
    }
}

impl Awaited for NextEvent<'_> {
    async fn handed_over(&mut self) {
        self.got = Some(self.events.recv().await.map(Next::Queued))
    }
}

/// An agent's membership of a hub, over any connection.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use ipc_hub::{Agent, AgentEvent, HubConfig};
/// let conn = ipc_pipe::connect_stdio_async(&ipc_core::Config::default())?;
/// let mut agent = Agent::join(conn, "searcher", HubConfig::default()).await?;
/// while let Some(event) = agent.next().await {
///     match event {
///         AgentEvent::Call(request) => {
///             let query: String = request.decode()?;
///             request.reply(&format!("results for {query}")).await?;
///         }
///         AgentEvent::Shutdown(_) => break,
///         _ => {}
///     }
/// }
/// agent.close("done", std::time::Duration::from_secs(1)).await;
/// # Ok(()) }
/// ```
///
/// Its sending side ([`call`](AgentHandle::call), [`send`](AgentHandle::send),
/// logs, loans) is an [`AgentHandle`], reached through `Deref` or cloned
/// with [`handle`](Self::handle) for other tasks and threads; only the
/// owner of the `Agent` takes events.
#[derive(Debug)]
pub struct Agent<C = Postcard> {
    handle: AgentHandle<C>,
    hub: PeerCredentials,
    events: mpsc::Receiver<Inbound>,
    ended: bool,
}

/// The sending side of an [`Agent`]: calls to the hub, messages, logs and
/// loans, from any task or thread (`Clone`). It does not keep the agent's
/// membership: once the `Agent` is closed or dropped, its calls fail with
/// [`CallError::PeerGone`] and its sends with [`SendToError::PeerGone`].
#[derive(Debug)]
pub struct AgentHandle<C = Postcard> {
    id: PeerId,
    link: Arc<Link>,
    codec: PeerCodec,
    _codec: PhantomData<fn() -> C>,
}

impl<C> Clone for AgentHandle<C> {
    fn clone(&self) -> Self {
        AgentHandle {
            id: self.id,
            link: Arc::clone(&self.link),
            codec: self.codec,
            _codec: PhantomData,
        }
    }
}

impl<C> std::ops::Deref for Agent<C> {
    type Target = AgentHandle<C>;
    fn deref(&self) -> &AgentHandle<C> {
        &self.handle
    }
}

impl Agent<Postcard> {
    /// Joins the hub at the other end of `conn` as `name` (postcard).
    pub async fn join<T: AsyncSplit + 'static>(
        conn: T,
        name: &str,
        config: HubConfig,
    ) -> Result<Self, JoinError> {
        Agent::join_with_codec(conn, name, config).await
    }

    /// Joins speaking `codec`, chosen at run time (a binding for another
    /// language, a codec read from a config file): its typed calls,
    /// messages and requests are encoded and decoded with it, and the
    /// hub is told so in the hello.
    pub async fn join_speaking<T: AsyncSplit + 'static>(
        conn: T,
        name: &str,
        codec: BodyCodec,
        config: HubConfig,
    ) -> Result<Self, JoinError> {
        Agent::join_inner(conn, name, PeerCodec(Some(codec)), config).await
    }
}

impl<C: HubCodec> Agent<C> {
    /// Joins the hub at the other end of `conn` as `name`, speaking `C`:
    /// says hello and waits up to [`HubConfig::handshake_timeout`] for the
    /// welcome.
    pub async fn join_with_codec<T: AsyncSplit + 'static>(
        conn: T,
        name: &str,
        config: HubConfig,
    ) -> Result<Self, JoinError> {
        // A codec the hub does not know by name is not named: both sides
        // then speak their own `C` (the hub's must match).
        let codec = PeerCodec(BodyCodec::from_name(C::NAME));
        Agent::join_inner(conn, name, codec, config).await
    }

    async fn join_inner<T: AsyncSplit + 'static>(
        conn: T,
        name: &str,
        codec: PeerCodec,
        config: HubConfig,
    ) -> Result<Self, JoinError> {
        config.validate()?;
        wire::check_name(name.as_bytes()).map_err(JoinError::InvalidName)?;
        let hub = conn.peer_credentials();
        let receive_spins = conn.capabilities().receive_spins;
        let max_frame = conn.max_message_size();
        let (mut read, mut write) = conn.into_split();
        let deadline = Instant::now() + config.handshake_timeout;
        write
            .send_timeout(&wire::hello(name, codec.0), config.handshake_timeout)
            .await
            .map_err(JoinError::Send)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let welcome = match read.recv_timeout(left).await {
            Ok(frame) => frame,
            Err(RecvError::Timeout) => return Err(JoinError::Timeout),
            Err(e) => return Err(JoinError::Recv(e)),
        };
        let welcome = wire::decode(welcome).map_err(|e| JoinError::Refused(e.to_string()))?;
        if welcome.kind != Kind::Welcome {
            return Err(JoinError::Refused(format!(
                "the hub answered with a {:?}",
                welcome.kind
            )));
        }
        let id = PeerId(welcome.id);
        let (events_tx, events) = mpsc::channel(config.event_queue);
        // On this side the link's peer is the hub; events carry our id.
        let (link, reader) = Link::new(
            id,
            (read, write),
            receive_spins,
            codec,
            max_frame,
            &config,
            events_tx,
        );
        reader.keep_writing_after_goodbye().start();
        Ok(Agent {
            handle: AgentHandle {
                id,
                link,
                codec,
                _codec: PhantomData,
            },
            hub,
            events,
            ended: false,
        })
    }

    /// A handle on this agent's sending side, for other tasks or threads.
    pub fn handle(&self) -> AgentHandle<C> {
        self.handle.clone()
    }

    /// The hub process, as the OS says.
    pub fn hub_credentials(&self) -> PeerCredentials {
        self.hub
    }

    /// The next event from the hub; `None` once the connection has ended
    /// and its [`AgentEvent::Left`] was returned. Cancel-safe.
    pub async fn next(&mut self) -> Option<AgentEvent<C>> {
        if self.ended {
            return None;
        }
        loop {
            let mut next = NextEvent {
                events: &mut self.events,
                got: None,
            };
            self.handle.link.wait_for(&mut next, Wait::Reading).await;
            let inbound = match next.got.flatten() {
                Some(Next::Queued(inbound)) => inbound,
                Some(Next::Read(frame)) => {
                    let link = &self.handle.link;
                    return Some(match frame.kind {
                        Kind::Call => AgentEvent::Call(Request::new(
                            link.peer,
                            frame.id,
                            frame.body,
                            Arc::clone(link),
                        )),
                        // (Only calls and messages are claimed.)
                        _ => AgentEvent::Message(Payload::new(frame.body, link.codec)),
                    });
                }
                None => {
                    self.ended = true;
                    return None;
                }
            };
            return Some(match inbound {
                // Taking an event frees its share of the backlog.
                Inbound::Message(_, body, codec, held) => {
                    drop(held);
                    AgentEvent::Message(Payload::new(body, codec))
                }
                Inbound::Call(peer, id, body, link, held) => {
                    drop(held);
                    AgentEvent::Call(Request::new(peer, id, body, link))
                }
                Inbound::Bye(reason) => AgentEvent::Shutdown(reason),
                Inbound::Left(_, reason) => {
                    self.ended = true;
                    AgentEvent::Left(reason)
                }
                // A hub does not ship logs to its agents; the rest are hub
                // notices that never reach an agent's queue.
                Inbound::Log(..)
                | Inbound::Joined(_)
                | Inbound::Rejected(..)
                | Inbound::AcceptFailed(_)
                | Inbound::Agent(_) => continue,
            });
        }
    }

    /// Answers the hub's calls with `handler` until the hub shuts down or
    /// the connection ends, then closes (waiting up to 1 s for the
    /// goodbye to go out). Up to [`SERVE_CONCURRENCY`] calls run at once
    /// (see [`serve_concurrently`](Self::serve_concurrently)).
    ///
    /// ```no_run
    /// # async fn run(agent: ipc_hub::Agent) {
    /// let served = agent
    ///     .serve(|n: u64| async move { Ok::<_, String>(n * 2) })
    ///     .await;
    /// println!("answered {} calls", served.answered);
    /// # }
    /// ```
    pub async fn serve<Q, A, F, Fut>(self, handler: F) -> Served
    where
        Q: DeserializeOwned,
        A: Serialize,
        F: FnMut(Q) -> Fut,
        Fut: std::future::Future<Output = Result<A, String>>,
    {
        self.serve_concurrently(SERVE_CONCURRENCY, handler).await
    }

    /// [`serve`](Self::serve) for requests of one [`Call`] type: the
    /// handler must return that type's answer.
    pub async fn serve_calls<R, F, Fut>(self, handler: F) -> Served
    where
        R: Call + DeserializeOwned,
        F: FnMut(R) -> Fut,
        Fut: std::future::Future<Output = Result<R::Answer, String>>,
    {
        self.serve(handler).await
    }

    /// Answers the hub's calls with `handler`, up to `limit` at once (a
    /// slow call holds up no other; beyond `limit`, calls wait in the
    /// connection), until the hub shuts down or the connection ends. A
    /// request that does not decode as `Q` is failed with the reason, and
    /// an `Err` from the handler fails the call with that text. The hub's
    /// goodbye is seen while calls run: calls under way are finished and
    /// answered, later ones failed ("the agent is closing"), then the
    /// agent closes (waiting up to 1 s for its goodbye to go out). The
    /// calls run on this task (no `Send` or `'static` needed of them).
    /// One-way messages are not for `serve` (use [`next`](Self::next));
    /// they are counted in the result, not answered.
    pub async fn serve_concurrently<Q, A, F, Fut>(mut self, limit: usize, mut handler: F) -> Served
    where
        Q: DeserializeOwned,
        A: Serialize,
        F: FnMut(Q) -> Fut,
        Fut: std::future::Future<Output = Result<A, String>>,
    {
        use futures_util::StreamExt;
        let limit = limit.max(1);
        let mut served = Served::default();
        let mut running = futures_util::stream::FuturesUnordered::new();
        // The box of the last call answered at once, for the next.
        let mut spare = None;
        let mut closing = false;
        loop {
            if closing && running.is_empty() {
                break;
            }
            let room = running.len() < limit;
            tokio::select! {
                // Calls under way first: an answer goes out before this
                // task waits for (and may read) the next event.
                biased;
                Some(answered) = running.next(), if !running.is_empty() => {
                    served.answered += u64::from(answered == Some(true));
                }
                event = self.next(), if room || closing => match event {
                    None => break,
                    Some(AgentEvent::Call(request)) if closing => {
                        let _ = request.fail("the agent is closing").await;
                    }
                    Some(AgentEvent::Call(request)) => {
                        let work = request
                            .decode::<Q>()
                            .map(&mut handler)
                            .map_err(|e| format!("undecodable request: {e}"));
                        // Most answers are ready at once: sent now, with no
                        // place among the calls under way, in a box used
                        // again for the next call.
                        let mut call = boxed(&mut spare, answer(request, work));
                        let first =
                            std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
                        match first {
                            Poll::Ready(answered) => {
                                served.answered += u64::from(answered == Some(true));
                                spare = Some(call);
                            }
                            Poll::Pending => running.push(call),
                        }
                    }
                    Some(AgentEvent::Message(_)) => served.messages_ignored += 1,
                    Some(AgentEvent::Shutdown(_)) => closing = true,
                    Some(AgentEvent::Left(reason)) => {
                        served.left = Some(reason);
                        break;
                    }
                },
            }
        }
        self.close("done", Duration::from_secs(1)).await;
        served
    }

    /// Says goodbye, waits up to `grace` for the queue to drain and the
    /// hub to close its side, then closes. The hub reports this agent as
    /// [`LeaveReason::Closed`].
    pub async fn close(mut self, reason: &str, grace: Duration) {
        let deadline = Instant::now() + grace;
        // Our reader must not wait for room to report the end.
        self.events.close();
        self.handle.leave_by(reason, deadline).await;
    }
}

impl<C> Drop for Agent<C> {
    fn drop(&mut self) {
        self.handle.link.abort();
    }
}

impl<C: HubCodec> AgentHandle<C> {
    /// The id the hub gave this agent.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The codec of its typed bodies, if it named one to the hub.
    pub fn codec(&self) -> Option<BodyCodec> {
        self.codec.0
    }

    /// Calls the hub with a request whose answer type it names (see
    /// [`Call`]).
    pub async fn ask<R: Call>(
        &self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Answer, CallError> {
        self.call(request, timeout).await
    }

    /// Sends a one-way message to the hub, waiting up to
    /// [`HubConfig::send_timeout`] for room in the queue.
    pub async fn send<T: Serialize + ?Sized>(&self, message: &T) -> Result<(), SendToError> {
        let frame =
            encode::<C, T>(self.codec, Kind::Message, 0, message).map_err(SendToError::Encode)?;
        self.link.post_default(frame).await
    }

    /// Sends `body` to the hub as it is, not encoded (see
    /// [`HubHandle::send_bytes_to`](crate::HubHandle::send_bytes_to)).
    pub async fn send_bytes(&self, body: &[u8]) -> Result<(), SendToError> {
        self.link
            .post_default(wire::encode(Kind::Message, 0, body))
            .await
    }

    /// Memory for a message of `len` bytes to the hub, lent by this
    /// agent's connection: write it in place and send it with
    /// [`send_loan`](Self::send_loan) (see [`LoanedBody`]).
    pub fn loan(&self, len: usize) -> std::io::Result<LoanedBody> {
        LoanedBody::new(&self.link.lender, len)
    }

    /// Sends a body written in place to the hub (it gets exactly its
    /// bytes, as from [`send_bytes`](Self::send_bytes)); on shared memory
    /// it is passed, not copied.
    pub async fn send_loan(&self, body: LoanedBody) -> Result<(), SendToError> {
        self.link
            .post_default(body.into_frame(Kind::Message, 0)?)
            .await
    }

    /// Calls the hub and waits for its answer until `timeout`
    /// (see [`HubHandle::call`](crate::HubHandle::call)).
    pub async fn call<Q, A>(&self, request: &Q, timeout: Duration) -> Result<A, CallError>
    where
        Q: Serialize + ?Sized,
        A: DeserializeOwned,
    {
        let deadline = Instant::now() + timeout;
        let reply = self
            .link
            .call(
                |id| encode::<C, Q>(self.codec, Kind::Call, id, request).map_err(CallError::Encode),
                deadline,
            )
            .await?;
        self.codec.decode::<C, A>(&reply).map_err(CallError::Decode)
    }

    /// Calls the hub with `body` as it is, not encoded, and returns the
    /// reply's bytes as they came (on shared memory, a large reply is the
    /// mapping the hub wrote, not a copy); see
    /// [`HubHandle::call_raw`](crate::HubHandle::call_raw).
    pub async fn call_raw(&self, body: &[u8], timeout: Duration) -> Result<Bytes, CallError> {
        let deadline = Instant::now() + timeout;
        self.link
            .call(|id| Ok(wire::encode(Kind::Call, id, body).into()), deadline)
            .await
    }

    /// A sender of log records to the hub over this agent's connection
    /// (no second connection), for `ipc_tracing::AsyncShippingLayer`. The
    /// hub sees them as [`HubEvent::Log`](crate::HubEvent::Log).
    pub fn log_sink(&self) -> LogSink {
        LogSink {
            link: Arc::clone(&self.link),
        }
    }

    /// Ships one log record (docs/PROTOCOL.md, section 6) if the queue to
    /// the hub has room, without waiting: a logger must never block its
    /// caller. [`SendToError::Full`] means the record was not sent.
    pub fn try_log(&self, record: &[u8]) -> Result<(), SendToError> {
        self.link.try_post(wire::encode(Kind::Log, 0, record))
    }

    /// Says goodbye and ends the membership without the `Agent` (from
    /// another thread than the one taking its events): waits up to `grace`
    /// for the queue to drain and the hub to close its side. The `Agent`'s
    /// next event is then [`AgentEvent::Left`].
    pub async fn leave(&self, reason: &str, grace: Duration) {
        self.leave_by(reason, Instant::now() + grace).await;
    }

    async fn leave_by(&self, reason: &str, deadline: Instant) {
        // Everything queued before (messages, replies, logs) goes first.
        if self.link.say_goodbye_by(reason, true, deadline).await {
            self.link.ended_by(deadline).await;
        }
        self.link.abort();
        // Closed when this returns, even on a runtime that runs nothing
        // after it.
        self.link.reaped().await;
    }
}

/// What [`Agent::serve`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// Calls answered (with a reply or a failure).
    pub answered: u64,
    /// One-way messages received and not handled.
    pub messages_ignored: u64,
    /// Why the connection ended, if it ended before a goodbye from the hub.
    pub left: Option<LeaveReason>,
}

/// Ships frames to the hub as log records; see [`AgentHandle::log_sink`].
#[derive(Debug, Clone)]
pub struct LogSink {
    link: Arc<Link>,
}

impl LogSink {
    fn map(e: SendToError) -> SendError {
        match e {
            SendToError::Full => SendError::Timeout,
            _ => SendError::Disconnected,
        }
    }
}

impl AsyncFrameSender for LogSink {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let frame = wire::encode(Kind::Log, 0, frame);
        self.link.post_default(frame).await.map_err(Self::map)
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        let frame = wire::encode(Kind::Log, 0, frame);
        self.link.post(frame, timeout).await.map_err(Self::map)
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}
