//! The public connection, listener and connector types, blocking and async,
//! all thin wrappers over [`Core`] and [`ListenerCore`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipc_core::{
    Address, AsyncConnection, AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener,
    AsyncSplit, Backpressure, Capabilities, Config, ConnectError, Connection, Connector,
    FrameReceiver, FrameSender, Listener, PeerCredentials, RecvError, SendError,
};

use crate::CAPABILITIES;
use crate::core::{Core, deadline, outside_runtime};
use crate::listener::ListenerCore;

fn fail_fast(core: &Core) -> bool {
    core.config.backpressure == Backpressure::Fail
}

/// The connector of this transport: `Zenoh.connect(&address, &config)`.
///
/// The address is `zenoh:NAME@ENDPOINT,...` (or `zenoh:NAME` with the
/// endpoints in [`ENDPOINTS_ENV`](crate::ENDPOINTS_ENV)); connecting opens
/// a zenoh session in client mode to those endpoints only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Zenoh;

impl Connector for Zenoh {
    type Connection = ZenohConnection;

    fn connect(&self, address: &Address, config: &Config) -> Result<ZenohConnection, ConnectError> {
        outside_runtime(|| crate::connect::connect(address, config)).map(ZenohConnection::new)
    }
}

/// The async connector: `AsyncZenoh.connect(&address, &config).await`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncZenoh;

impl AsyncConnector for AsyncZenoh {
    type Connection = AsyncZenohConnection;

    async fn connect(
        &self,
        address: &Address,
        config: &Config,
    ) -> Result<AsyncZenohConnection, ConnectError> {
        // Zenoh's session calls block in place; run the handshake on its
        // own thread. Dropping this future leaves the thread to finish and
        // close what it built.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (address, config) = (address.clone(), config.clone());
        std::thread::Builder::new()
            .name("ipc-zenoh-connect".into())
            .spawn(move || {
                let _ = tx.send(crate::connect::connect(&address, &config));
            })?;
        let core = rx
            .await
            .map_err(|_| ConnectError::Io(std::io::Error::other("the connect thread died")))??;
        Ok(AsyncZenohConnection::new(core))
    }
}

/// A blocking connection over zenoh: whole frames, in order, with flow
/// control. Dropping it closes the connection: it tells the peer how many
/// frames it sent and waits up to [`CLOSE_LINGER`](crate::CLOSE_LINGER)
/// for the peer to confirm it has them all.
#[derive(Debug)]
pub struct ZenohConnection {
    core: Core,
}

impl ZenohConnection {
    fn new(core: Core) -> Self {
        ZenohConnection { core }
    }

    /// Whether the peer proved it holds the hub's key (on the hub's side,
    /// with [`NetworkAccess::Keyed`](ipc_core::NetworkAccess)).
    pub fn holds_key(&self) -> bool {
        self.core.holds_key
    }

    /// The process id the peer reported in the handshake: a process on
    /// the peer's own host, not checked by any operating system here (so
    /// not in [`peer_credentials`](ipc_core::AsyncConnection::peer_credentials)).
    pub fn reported_pid(&self) -> u32 {
        self.core.link.peer().pid
    }
}

impl FrameSender for ZenohConnection {
    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let fail = fail_fast(&self.core);
        self.core
            .send_blocking(frame, deadline(self.core.config.send_timeout), fail)
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.core.send_blocking(frame, None, true)
    }

    fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.core
            .send_blocking(frame, deadline(Some(timeout)), false)
    }
}

impl FrameReceiver for ZenohConnection {
    fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.core
            .recv_blocking(deadline(self.core.config.recv_timeout))
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.core.try_recv()
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.core.recv_blocking(deadline(Some(timeout)))
    }
}

impl Connection for ZenohConnection {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }
}

/// An async (tokio) connection over zenoh; see [`ZenohConnection`].
/// Splits into halves that share it; the connection closes when both drop.
#[derive(Debug)]
pub struct AsyncZenohConnection {
    core: Arc<Core>,
}

impl AsyncZenohConnection {
    fn new(core: Core) -> Self {
        AsyncZenohConnection {
            core: Arc::new(core),
        }
    }

    /// The process id the peer reported; see [`ZenohConnection::reported_pid`].
    pub fn reported_pid(&self) -> u32 {
        self.core.link.peer().pid
    }
}

async fn send(core: &Core, frame: &[u8], timeout: Option<Duration>) -> Result<(), SendError> {
    core.send_async(frame, deadline(timeout), fail_fast(core))
        .await
}

impl AsyncFrameSender for AsyncZenohConnection {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        send(&self.core, frame, self.core.config.send_timeout).await
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.core
            .send_async(frame, deadline(Some(timeout)), false)
            .await
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}

impl AsyncFrameReceiver for AsyncZenohConnection {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.core
            .recv_async(deadline(self.core.config.recv_timeout))
            .await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.core.recv_async(deadline(Some(timeout))).await
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.core.try_recv()
    }
}

impl AsyncConnection for AsyncZenohConnection {
    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn max_message_size(&self) -> usize {
        self.core.config.max_message_size
    }

    /// No process is known over a network; whether the peer proved it
    /// holds the hub's key is (on the hub's side).
    fn peer_credentials(&self) -> PeerCredentials {
        PeerCredentials {
            holds_key: self.core.holds_key,
            ..PeerCredentials::default()
        }
    }
}

/// The receiving half of a split [`AsyncZenohConnection`].
#[derive(Debug)]
pub struct ZenohReadHalf {
    core: Arc<Core>,
}

/// The sending half of a split [`AsyncZenohConnection`].
#[derive(Debug)]
pub struct ZenohWriteHalf {
    core: Arc<Core>,
}

impl AsyncSplit for AsyncZenohConnection {
    type ReadHalf = ZenohReadHalf;
    type WriteHalf = ZenohWriteHalf;

    fn into_split(self) -> (ZenohReadHalf, ZenohWriteHalf) {
        (
            ZenohReadHalf {
                core: self.core.clone(),
            },
            ZenohWriteHalf { core: self.core },
        )
    }
}

impl AsyncFrameReceiver for ZenohReadHalf {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.core
            .recv_async(deadline(self.core.config.recv_timeout))
            .await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.core.recv_async(deadline(Some(timeout))).await
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.core.try_recv()
    }
}

impl AsyncFrameSender for ZenohWriteHalf {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        send(&self.core, frame, self.core.config.send_timeout).await
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.core
            .send_async(frame, deadline(Some(timeout)), false)
            .await
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}

/// A hub's listener on a zenoh network (blocking `accept`).
///
/// ```no_run
/// use ipc_core::{Config, FrameReceiver, FrameSender, Listener};
/// use ipc_zenoh::ZenohListener;
///
/// // Loopback, a free port; hand `listener.address()` to the agents.
/// let mut listener = ZenohListener::bind(&"zenoh:hub".parse()?, &Config::default())?;
/// println!("agents connect to {}", listener.address());
/// let mut agent = listener.accept()?;
/// let frame = agent.recv()?;
/// agent.send(&frame)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ZenohListener {
    core: ListenerCore,
}

impl ZenohListener {
    /// Listens for agents at `address` (`zenoh:NAME`, `zenoh:NAME@ENDPOINT,...`).
    /// Endpoints come from the address, else [`ENDPOINTS_ENV`](crate::ENDPOINTS_ENV),
    /// else [`DEFAULT_LISTEN`](crate::DEFAULT_LISTEN) (loopback, a free
    /// port); a port 0 is replaced by a free one, so [`Listener::address`]
    /// names what agents must connect to.
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        outside_runtime(|| ListenerCore::bind(address, config)).map(|core| ZenohListener { core })
    }
}

impl Listener for ZenohListener {
    type Connection = ZenohConnection;

    fn accept(&mut self) -> Result<ZenohConnection, ConnectError> {
        self.core
            .accepted
            .recv()
            .map(ZenohConnection::new)
            .map_err(|_| ConnectError::Io(std::io::Error::other("the listener's session ended")))
    }

    fn accept_timeout(&mut self, timeout: Duration) -> Result<ZenohConnection, ConnectError> {
        match self.core.accepted.recv_timeout(timeout) {
            Ok(core) => Ok(ZenohConnection::new(core)),
            Err(flume::RecvTimeoutError::Timeout) => Err(ConnectError::Timeout),
            Err(flume::RecvTimeoutError::Disconnected) => Err(ConnectError::Io(
                std::io::Error::other("the listener's session ended"),
            )),
        }
    }

    fn address(&self) -> &Address {
        &self.core.address
    }
}

/// A hub's async listener on a zenoh network; see [`ZenohListener`].
/// `accept` is cancel-safe: handshaken connections wait in a queue.
#[derive(Debug)]
pub struct AsyncZenohListener {
    core: ListenerCore,
}

impl AsyncZenohListener {
    /// As [`ZenohListener::bind`]; may be called inside a runtime.
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        outside_runtime(|| ListenerCore::bind(address, config))
            .map(|core| AsyncZenohListener { core })
    }
}

impl AsyncListener for AsyncZenohListener {
    type Connection = AsyncZenohConnection;

    async fn accept(&mut self) -> Result<AsyncZenohConnection, ConnectError> {
        self.core
            .accepted
            .recv_async()
            .await
            .map(AsyncZenohConnection::new)
            .map_err(|_| ConnectError::Io(std::io::Error::other("the listener's session ended")))
    }

    fn address(&self) -> &Address {
        &self.core.address
    }
}
