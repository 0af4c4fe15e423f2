//! One connection's zenoh side: the keys it uses, what it declared, and
//! the send and receive loops (blocking and async) over its [`Link`].
//!
//! A connection `ID` of hub `NAME` lives under `ipc/NAME/ID/`:
//!
//! ```text
//!            agent                                   hub
//!   publishes ipc/NAME/ID/up     --- frames --->  subscribes ipc/NAME/ID/up
//!  subscribes ipc/NAME/ID/down   <-- frames ----   publishes ipc/NAME/ID/down
//!     token   ipc/NAME/ID/agent  (liveliness)    watches it
//!   watches   ipc/NAME/ID/hub    (liveliness)      token
//! ```
//!
//! Credits, wants and the close travel with the frames of the opposite
//! direction's key, in order with them.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipc_core::{Config, ConnectError, RecvError, SendError};
use zenoh::Wait;
use zenoh::liveliness::LivelinessToken;
use zenoh::pubsub::{Publisher, Subscriber};
use zenoh::qos::CongestionControl;
use zenoh::sample::{Sample, SampleKind};
use zenoh::session::Session;

use crate::link::{Link, Room};
use crate::wire;

/// How often a sender that waits for credit asks again (a credit sent in
/// answer may be dropped by a congested link; frames never are).
const WANT_RETRY: Duration = Duration::from_millis(100);

/// How long dropping a connection waits for the peer to confirm it has
/// every frame (one round trip when the peer's host is up).
pub const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// The key of a hub's connect queryable.
pub fn connect_key(name: &str) -> String {
    format!("ipc/{name}/connect")
}

/// The keys of one side of a connection.
#[derive(Debug)]
pub struct Keys {
    incoming: String,
    outgoing: String,
    own_token: String,
    peer_token: String,
}

impl Keys {
    pub fn agent(name: &str, id: &str) -> Self {
        Keys {
            incoming: format!("ipc/{name}/{id}/down"),
            outgoing: format!("ipc/{name}/{id}/up"),
            own_token: format!("ipc/{name}/{id}/agent"),
            peer_token: format!("ipc/{name}/{id}/hub"),
        }
    }

    pub fn hub(name: &str, id: &str) -> Self {
        Keys {
            incoming: format!("ipc/{name}/{id}/up"),
            outgoing: format!("ipc/{name}/{id}/down"),
            own_token: format!("ipc/{name}/{id}/hub"),
            peer_token: format!("ipc/{name}/{id}/agent"),
        }
    }
}

/// A zenoh session that is closed off any async runtime: zenoh's close
/// blocks in place, which a tokio current-thread runtime refuses.
#[derive(Debug)]
pub struct SessionGuard(Option<Session>);

impl SessionGuard {
    pub fn new(session: Session) -> Self {
        SessionGuard(Some(session))
    }

    pub fn session(&self) -> &Session {
        self.0.as_ref().expect("taken only in drop")
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Closing waits for zenoh's tasks: not on an async thread.
                std::thread::spawn(move || drop(session));
            } else {
                drop(session);
            }
        }
    }
}

/// Runs `f` on a thread outside any async runtime (zenoh's blocking calls
/// need that); on the caller's thread when it is outside one already.
pub fn outside_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        scope
            .spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Maps a zenoh error to an I/O error with context.
pub fn zenoh_error(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("zenoh: {what}: {e}"))
}

fn payload_bytes(sample: &Sample) -> Bytes {
    match sample.payload().to_bytes() {
        std::borrow::Cow::Borrowed(slice) => Bytes::copy_from_slice(slice),
        std::borrow::Cow::Owned(vec) => Bytes::from(vec),
    }
}

/// One side of a connection: its link and what it declared in zenoh.
/// Dropping it closes the connection (see [`CLOSE_LINGER`]).
pub struct Core {
    pub link: Arc<Link>,
    data: Publisher<'static>,
    _incoming: Subscriber<()>,
    _peer_watch: Subscriber<()>,
    _token: LivelinessToken,
    session: Arc<SessionGuard>,
    pub config: Config,
    /// The peer proved it holds the hub's key (set on the hub's side).
    pub holds_key: bool,
    /// Run when the connection is gone (the hub frees its id).
    released: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("link", &self.link)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Core {
    /// Declares one side's publishers, subscribers and token. The peer's
    /// terms are set on the link later, by the handshake.
    pub fn declare(
        session: Arc<SessionGuard>,
        keys: Keys,
        link: Arc<Link>,
        config: Config,
    ) -> Result<Core, ConnectError> {
        let z = session.session();
        let declare = |what: &str, e| ConnectError::Io(zenoh_error(what, e));
        let data = z
            .declare_publisher(keys.outgoing.clone())
            .congestion_control(CongestionControl::Block)
            .wait()
            .map_err(|e| declare("publisher", e))?;
        // Replies sent from zenoh's receive task must never block it.
        let replies = Arc::new(
            z.declare_publisher(keys.outgoing)
                .congestion_control(CongestionControl::Drop)
                .wait()
                .map_err(|e| declare("publisher", e))?,
        );
        let on_data = {
            let link = link.clone();
            move |sample: Sample| {
                if let Some(reply) = link.on_sample(payload_bytes(&sample)) {
                    // A lost reply is asked for again (want) or waited out
                    // (close); nothing depends on it alone.
                    let _ = replies.put(reply).wait();
                }
            }
        };
        let incoming = z
            .declare_subscriber(keys.incoming)
            .callback(on_data)
            .wait()
            .map_err(|e| declare("subscriber", e))?;
        let on_liveliness = {
            let link = link.clone();
            move |sample: Sample| link.on_liveliness(sample.kind() == SampleKind::Put)
        };
        let peer_watch = z
            .liveliness()
            .declare_subscriber(keys.peer_token)
            .history(true)
            .callback(on_liveliness)
            .wait()
            .map_err(|e| declare("liveliness subscriber", e))?;
        let token = z
            .liveliness()
            .declare_token(keys.own_token)
            .wait()
            .map_err(|e| declare("liveliness token", e))?;
        Ok(Core {
            link,
            data,
            _incoming: incoming,
            _peer_watch: peer_watch,
            _token: token,
            session,
            config,
            holds_key: false,
            released: None,
        })
    }

    /// Runs `f` once this side is dropped (after its close).
    pub fn on_drop(&mut self, f: impl FnOnce() + Send + Sync + 'static) {
        self.released = Some(Box::new(f));
    }

    /// Whether the peer's subscriber for our frames is known here (frames
    /// published before that would reach no one).
    pub fn peer_subscribed(&self) -> bool {
        self.data
            .matching_status()
            .wait()
            .is_ok_and(|status| status.matching())
    }

    pub fn session(&self) -> &Session {
        self.session.session()
    }

    fn put(&self, message: Vec<u8>) -> Result<(), SendError> {
        self.data.put(message).wait().map_err(|e| {
            let e = zenoh_error("put", e);
            self.link.send_failed(e.to_string());
            SendError::Io(e)
        })
    }

    fn check_size(&self, frame: &[u8]) -> Result<(), SendError> {
        if frame.len() > self.config.max_message_size {
            return Err(SendError::FrameTooLarge {
                len: frame.len(),
                max: self.config.max_message_size,
            });
        }
        Ok(())
    }

    fn ask(&self) -> Result<(), SendError> {
        self.put(wire::want())
    }

    fn finish_take(&self, taken: crate::link::Taken) -> Result<Bytes, RecvError> {
        if let Some(consumed) = taken.credit {
            // A failed credit marks the link failed; the frame is still ours.
            let _ = self.put(wire::credit(consumed));
        }
        taken.frame
    }

    /// One attempt to send: sends the frame if the window has room, else
    /// asks for credit (at most every `WANT_RETRY`) and says until when to
    /// wait. The blocking and async sends both loop over this.
    fn send_step(
        &self,
        frame: &[u8],
        deadline: Option<Instant>,
        fail_fast: bool,
        ask_at: &mut Instant,
    ) -> Result<Step, SendError> {
        match self.link.reserve(frame.len())? {
            Room::Go(seq) => self.put(wire::data(seq, frame)).map(|()| Step::Done),
            Room::Full if fail_fast => {
                self.ask()?;
                Err(SendError::Full)
            }
            Room::Full => {
                let now = Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    return Err(SendError::Timeout);
                }
                if now >= *ask_at {
                    self.ask()?;
                    *ask_at = now + WANT_RETRY;
                }
                Ok(Step::WaitUntil(
                    deadline.map_or(*ask_at, |d| d.min(*ask_at)),
                ))
            }
        }
    }

    // ---- blocking ----

    pub fn send_blocking(
        &self,
        frame: &[u8],
        deadline: Option<Instant>,
        fail_fast: bool,
    ) -> Result<(), SendError> {
        self.check_size(frame)?;
        let mut ask_at = Instant::now();
        loop {
            match self.send_step(frame, deadline, fail_fast, &mut ask_at)? {
                Step::Done => return Ok(()),
                Step::WaitUntil(until) => {
                    self.link.wait_writable(Some(until), frame.len());
                }
            }
        }
    }

    pub fn recv_blocking(&self, deadline: Option<Instant>) -> Result<Bytes, RecvError> {
        loop {
            if let Some(taken) = self.link.take()? {
                return self.finish_take(taken);
            }
            if !self.link.wait_readable(deadline) {
                return Err(RecvError::Timeout);
            }
        }
    }

    pub fn try_recv(&self) -> Result<Bytes, RecvError> {
        match self.link.take()? {
            Some(taken) => self.finish_take(taken),
            None => Err(RecvError::Empty),
        }
    }

    // ---- async (cancel-safe: nothing is taken or sent across an await) ----

    pub async fn send_async(
        &self,
        frame: &[u8],
        deadline: Option<Instant>,
        fail_fast: bool,
    ) -> Result<(), SendError> {
        self.check_size(frame)?;
        let mut ask_at = Instant::now();
        loop {
            let mut notified = pin!(self.link.writable().notified());
            notified.as_mut().enable();
            match self.send_step(frame, deadline, fail_fast, &mut ask_at)? {
                Step::Done => return Ok(()),
                Step::WaitUntil(until) => {
                    let _ = tokio::time::timeout_at(until.into(), notified).await;
                }
            }
        }
    }

    pub async fn recv_async(&self, deadline: Option<Instant>) -> Result<Bytes, RecvError> {
        loop {
            let mut notified = pin!(self.link.readable().notified());
            notified.as_mut().enable();
            if let Some(taken) = self.link.take()? {
                return self.finish_take(taken);
            }
            match deadline {
                None => notified.await,
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return Err(RecvError::Timeout);
                    }
                    let _ = tokio::time::timeout_at(deadline.into(), notified).await;
                }
            }
        }
    }
}

/// What a send attempt left to do.
enum Step {
    Done,
    WaitUntil(Instant),
}

impl Drop for Core {
    fn drop(&mut self) {
        // Say how many frames went out and wait (briefly) until the peer
        // has them all: its liveliness token's removal travels with
        // priority and could otherwise overtake our last frames.
        if let Some(frames) = self.link.closing()
            && self.data.put(wire::close(frames)).wait().is_ok()
        {
            self.link
                .wait_close_settled(Instant::now().checked_add(CLOSE_LINGER));
        }
        if let Some(released) = self.released.take() {
            released();
        }
    }
}

/// `now + timeout`, or `None` (no limit) when there is none or it does not
/// fit.
pub fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}
