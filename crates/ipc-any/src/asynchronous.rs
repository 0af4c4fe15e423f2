//! Async (tokio) connections, halves and listeners of any transport.

use std::time::Duration;

use bytes::Bytes;
use ipc_core::{
    Address, AsyncFrameReceiver, AsyncFrameSender, AsyncSplit, Capabilities, Config, ConnectError,
    Lender, PeerCredentials, RecvError, SendError,
};

use crate::{NO_PIPE_LISTENER, NOT_BUILT, not_here};

/// An async connection over whichever transport its address named.
/// Splits into [`ReadHalf`] and [`WriteHalf`] (so it joins an `ipc-hub`
/// like any transport's).
#[derive(Debug)]
#[non_exhaustive]
pub enum AsyncConnection {
    /// To the parent over stdin/stdout (`pipe:stdio`).
    #[cfg(feature = "pipe")]
    Pipe(ipc_pipe::AsyncStdioConnection),
    /// A Unix socket (`uds:PATH`).
    #[cfg(feature = "uds")]
    Uds(ipc_uds::AsyncUdsConnection),
    /// Shared memory (`shm:NAME`).
    #[cfg(feature = "shm")]
    Shm(ipc_shm::AsyncShmConnection),
    /// zenoh (`zenoh:...`).
    #[cfg(feature = "zenoh")]
    Zenoh(ipc_zenoh::AsyncZenohConnection),
}

/// Connects to `address` with the transport it names, on the current
/// tokio runtime. Errors as [`connect`](crate::connect).
pub async fn connect_async(
    address: &Address,
    config: &Config,
) -> Result<AsyncConnection, ConnectError> {
    #[allow(unused_imports)]
    use ipc_core::AsyncConnector;
    match address {
        #[cfg(feature = "pipe")]
        Address::Stdio => Ok(AsyncConnection::Pipe(ipc_pipe::connect_stdio_async(
            config,
        )?)),
        #[cfg(feature = "uds")]
        Address::Uds(_) => Ok(AsyncConnection::Uds(
            ipc_uds::AsyncUds.connect(address, config).await?,
        )),
        #[cfg(feature = "shm")]
        Address::Shm(_) => Ok(AsyncConnection::Shm(
            ipc_shm::AsyncShm.connect(address, config).await?,
        )),
        #[cfg(feature = "zenoh")]
        Address::Zenoh { .. } => Ok(AsyncConnection::Zenoh(
            ipc_zenoh::AsyncZenoh.connect(address, config).await?,
        )),
        #[allow(unreachable_patterns)]
        _ => Err(not_here(address, NOT_BUILT)),
    }
}

/// Declares an enum over each transport's `$part` of its async
/// connection, and runs a body on whichever it holds.
macro_rules! each {
    ($enum:ident, $value:expr, $c:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "pipe")]
            $enum::Pipe($c) => $body,
            #[cfg(feature = "uds")]
            $enum::Uds($c) => $body,
            #[cfg(feature = "shm")]
            $enum::Shm($c) => $body,
            #[cfg(feature = "zenoh")]
            $enum::Zenoh($c) => $body,
        }
    };
}

type Read<T> = <T as AsyncSplit>::ReadHalf;
type Write<T> = <T as AsyncSplit>::WriteHalf;

/// The receiving half of a split [`AsyncConnection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum ReadHalf {
    /// A pipe's.
    #[cfg(feature = "pipe")]
    Pipe(Read<ipc_pipe::AsyncStdioConnection>),
    /// A Unix socket's.
    #[cfg(feature = "uds")]
    Uds(Read<ipc_uds::AsyncUdsConnection>),
    /// Shared memory's.
    #[cfg(feature = "shm")]
    Shm(Read<ipc_shm::AsyncShmConnection>),
    /// zenoh's.
    #[cfg(feature = "zenoh")]
    Zenoh(Read<ipc_zenoh::AsyncZenohConnection>),
}

/// The sending half of a split [`AsyncConnection`].
#[derive(Debug)]
#[non_exhaustive]
pub enum WriteHalf {
    /// A pipe's.
    #[cfg(feature = "pipe")]
    Pipe(Write<ipc_pipe::AsyncStdioConnection>),
    /// A Unix socket's.
    #[cfg(feature = "uds")]
    Uds(Write<ipc_uds::AsyncUdsConnection>),
    /// Shared memory's.
    #[cfg(feature = "shm")]
    Shm(Write<ipc_shm::AsyncShmConnection>),
    /// zenoh's.
    #[cfg(feature = "zenoh")]
    Zenoh(Write<ipc_zenoh::AsyncZenohConnection>),
}

/// The sending methods, for the connection and its write half.
macro_rules! sender {
    ($enum:ident) => {
        impl AsyncFrameSender for $enum {
            async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
                each!($enum, self, c => c.send(frame).await)
            }

            fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
                each!($enum, self, c => c.try_send(frame))
            }

            fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
                each!($enum, self, c => c.gather(frame))
            }

            async fn send_timeout(
                &mut self,
                frame: &[u8],
                timeout: Duration,
            ) -> Result<(), SendError> {
                each!($enum, self, c => c.send_timeout(frame, timeout).await)
            }

            async fn flush(&mut self) -> Result<(), SendError> {
                each!($enum, self, c => c.flush().await)
            }

            fn lender(&self) -> Lender {
                each!($enum, self, c => c.lender())
            }
        }
    };
}

/// The receiving methods, for the connection and its read half.
macro_rules! receiver {
    ($enum:ident) => {
        impl AsyncFrameReceiver for $enum {
            async fn recv(&mut self) -> Result<Bytes, RecvError> {
                each!($enum, self, c => c.recv().await)
            }

            async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
                each!($enum, self, c => c.recv_timeout(timeout).await)
            }

            fn try_recv(&mut self) -> Result<Bytes, RecvError> {
                each!($enum, self, c => c.try_recv())
            }
        }
    };
}

sender!(AsyncConnection);
sender!(WriteHalf);
receiver!(AsyncConnection);
receiver!(ReadHalf);

impl ipc_core::AsyncConnection for AsyncConnection {
    fn capabilities(&self) -> Capabilities {
        each!(AsyncConnection, self, c => c.capabilities())
    }

    fn max_message_size(&self) -> usize {
        each!(AsyncConnection, self, c => c.max_message_size())
    }

    fn peer_credentials(&self) -> PeerCredentials {
        each!(AsyncConnection, self, c => c.peer_credentials())
    }
}

impl AsyncSplit for AsyncConnection {
    type ReadHalf = ReadHalf;
    type WriteHalf = WriteHalf;

    fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            #[cfg(feature = "pipe")]
            AsyncConnection::Pipe(c) => {
                let (r, w) = c.into_split();
                (ReadHalf::Pipe(r), WriteHalf::Pipe(w))
            }
            #[cfg(feature = "uds")]
            AsyncConnection::Uds(c) => {
                let (r, w) = c.into_split();
                (ReadHalf::Uds(r), WriteHalf::Uds(w))
            }
            #[cfg(feature = "shm")]
            AsyncConnection::Shm(c) => {
                let (r, w) = c.into_split();
                (ReadHalf::Shm(r), WriteHalf::Shm(w))
            }
            #[cfg(feature = "zenoh")]
            AsyncConnection::Zenoh(c) => {
                let (r, w) = c.into_split();
                (ReadHalf::Zenoh(r), WriteHalf::Zenoh(w))
            }
        }
    }
}

/// An async listener of whichever transport its address named; an
/// `ipc-hub` listens on it like on any transport's (`hub.listen(l)`).
#[derive(Debug)]
#[non_exhaustive]
pub enum AsyncListener {
    /// A Unix socket's.
    #[cfg(feature = "uds")]
    Uds(ipc_uds::AsyncUdsListener),
    /// Shared memory's.
    #[cfg(feature = "shm")]
    Shm(ipc_shm::AsyncShmListener),
    /// zenoh's.
    #[cfg(feature = "zenoh")]
    Zenoh(ipc_zenoh::AsyncZenohListener),
}

/// Listens at `address` with the transport it names, on the current
/// tokio runtime (`pipe:stdio` has no listener: a hub starts a pipe agent
/// itself).
pub fn bind_async(address: &Address, config: &Config) -> Result<AsyncListener, ConnectError> {
    match address {
        #[cfg(feature = "uds")]
        Address::Uds(path) => Ok(AsyncListener::Uds(ipc_uds::AsyncUdsListener::bind_path(
            path, config,
        )?)),
        #[cfg(feature = "shm")]
        Address::Shm(_) => Ok(AsyncListener::Shm(ipc_shm::AsyncShmListener::bind(
            address, config,
        )?)),
        #[cfg(feature = "zenoh")]
        Address::Zenoh { .. } => Ok(AsyncListener::Zenoh(ipc_zenoh::AsyncZenohListener::bind(
            address, config,
        )?)),
        Address::Stdio => Err(not_here(address, NO_PIPE_LISTENER)),
        #[allow(unreachable_patterns)]
        _ => Err(not_here(address, NOT_BUILT)),
    }
}

impl ipc_core::AsyncListener for AsyncListener {
    type Connection = AsyncConnection;

    async fn accept(&mut self) -> Result<AsyncConnection, ConnectError> {
        match self {
            #[cfg(feature = "uds")]
            AsyncListener::Uds(l) => l.accept().await.map(AsyncConnection::Uds),
            #[cfg(feature = "shm")]
            AsyncListener::Shm(l) => l.accept().await.map(AsyncConnection::Shm),
            #[cfg(feature = "zenoh")]
            AsyncListener::Zenoh(l) => l.accept().await.map(AsyncConnection::Zenoh),
        }
    }

    fn address(&self) -> &Address {
        match self {
            #[cfg(feature = "uds")]
            AsyncListener::Uds(l) => l.address(),
            #[cfg(feature = "shm")]
            AsyncListener::Shm(l) => l.address(),
            #[cfg(feature = "zenoh")]
            AsyncListener::Zenoh(l) => l.address(),
        }
    }
}
