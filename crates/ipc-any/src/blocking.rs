//! Blocking connections and listeners of any transport.

use std::time::Duration;

use bytes::Bytes;
use ipc_core::{
    Address, Capabilities, Config, ConnectError, FrameReceiver, FrameSender, Lender, RecvError,
    SendError,
};

use crate::{NO_PIPE_LISTENER, NOT_BUILT, not_here};

/// A blocking connection over whichever transport its address named.
#[derive(Debug)]
#[non_exhaustive]
pub enum Connection {
    /// To the parent over stdin/stdout (`pipe:stdio`).
    #[cfg(feature = "pipe")]
    Pipe(ipc_pipe::PipeConnection),
    /// A Unix socket (`uds:PATH`).
    #[cfg(feature = "uds")]
    Uds(ipc_uds::UdsConnection),
    /// Shared memory (`shm:NAME`).
    #[cfg(feature = "shm")]
    Shm(ipc_shm::ShmConnection),
    /// zenoh (`zenoh:...`).
    #[cfg(feature = "zenoh")]
    Zenoh(ipc_zenoh::ZenohConnection),
}

/// Runs `$body` with `$c` bound to the transport's connection.
macro_rules! each {
    ($value:expr, $c:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "pipe")]
            Connection::Pipe($c) => $body,
            #[cfg(feature = "uds")]
            Connection::Uds($c) => $body,
            #[cfg(feature = "shm")]
            Connection::Shm($c) => $body,
            #[cfg(feature = "zenoh")]
            Connection::Zenoh($c) => $body,
        }
    };
}

/// Connects to `address` with the transport it names. Errors are the
/// transport's (see each crate), or [`ConnectError::WrongTransport`] for
/// a transport this build leaves out.
pub fn connect(address: &Address, config: &Config) -> Result<Connection, ConnectError> {
    #[allow(unused_imports)]
    use ipc_core::Connector;
    match address {
        #[cfg(feature = "pipe")]
        Address::Stdio => Ok(Connection::Pipe(ipc_pipe::connect_stdio(config)?)),
        #[cfg(feature = "uds")]
        Address::Uds(_) => Ok(Connection::Uds(ipc_uds::Uds.connect(address, config)?)),
        #[cfg(feature = "shm")]
        Address::Shm(_) => Ok(Connection::Shm(ipc_shm::Shm.connect(address, config)?)),
        #[cfg(feature = "zenoh")]
        Address::Zenoh { .. } => Ok(Connection::Zenoh(
            ipc_zenoh::Zenoh.connect(address, config)?,
        )),
        #[allow(unreachable_patterns)]
        _ => Err(not_here(address, NOT_BUILT)),
    }
}

impl FrameSender for Connection {
    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        each!(self, c => c.send(frame))
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        each!(self, c => c.try_send(frame))
    }

    fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        each!(self, c => c.send_timeout(frame, timeout))
    }

    fn send_batch(&mut self, frames: &[&[u8]]) -> Result<(), ipc_core::BatchSendError> {
        each!(self, c => c.send_batch(frames))
    }

    fn flush(&mut self) -> Result<(), SendError> {
        each!(self, c => c.flush())
    }

    fn lender(&self) -> Lender {
        each!(self, c => c.lender())
    }
}

impl FrameReceiver for Connection {
    fn recv(&mut self) -> Result<Bytes, RecvError> {
        each!(self, c => c.recv())
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        each!(self, c => c.try_recv())
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        each!(self, c => c.recv_timeout(timeout))
    }
}

impl ipc_core::Connection for Connection {
    fn capabilities(&self) -> Capabilities {
        each!(self, c => c.capabilities())
    }
}

/// A blocking listener of whichever transport its address named.
#[derive(Debug)]
#[non_exhaustive]
pub enum Listener {
    /// A Unix socket's.
    #[cfg(feature = "uds")]
    Uds(ipc_uds::UdsListener),
    /// Shared memory's.
    #[cfg(feature = "shm")]
    Shm(ipc_shm::ShmListener),
    /// zenoh's.
    #[cfg(feature = "zenoh")]
    Zenoh(ipc_zenoh::ZenohListener),
}

macro_rules! each_listener {
    ($value:expr, $l:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "uds")]
            Listener::Uds($l) => $body,
            #[cfg(feature = "shm")]
            Listener::Shm($l) => $body,
            #[cfg(feature = "zenoh")]
            Listener::Zenoh($l) => $body,
        }
    };
}

/// Listens at `address` with the transport it names (`pipe:stdio` has no
/// listener: a hub starts a pipe agent itself).
pub fn bind(address: &Address, config: &Config) -> Result<Listener, ConnectError> {
    match address {
        #[cfg(feature = "uds")]
        Address::Uds(_) => Ok(Listener::Uds(ipc_uds::UdsListener::bind(address, config)?)),
        #[cfg(feature = "shm")]
        Address::Shm(_) => Ok(Listener::Shm(ipc_shm::ShmListener::bind(address, config)?)),
        #[cfg(feature = "zenoh")]
        Address::Zenoh { .. } => Ok(Listener::Zenoh(ipc_zenoh::ZenohListener::bind(
            address, config,
        )?)),
        Address::Stdio => Err(not_here(address, NO_PIPE_LISTENER)),
        #[allow(unreachable_patterns)]
        _ => Err(not_here(address, NOT_BUILT)),
    }
}

impl ipc_core::Listener for Listener {
    type Connection = Connection;

    fn accept(&mut self) -> Result<Connection, ConnectError> {
        match self {
            #[cfg(feature = "uds")]
            Listener::Uds(l) => l.accept().map(Connection::Uds),
            #[cfg(feature = "shm")]
            Listener::Shm(l) => l.accept().map(Connection::Shm),
            #[cfg(feature = "zenoh")]
            Listener::Zenoh(l) => l.accept().map(Connection::Zenoh),
        }
    }

    fn accept_timeout(&mut self, timeout: Duration) -> Result<Connection, ConnectError> {
        match self {
            #[cfg(feature = "uds")]
            Listener::Uds(l) => l.accept_timeout(timeout).map(Connection::Uds),
            #[cfg(feature = "shm")]
            Listener::Shm(l) => l.accept_timeout(timeout).map(Connection::Shm),
            #[cfg(feature = "zenoh")]
            Listener::Zenoh(l) => l.accept_timeout(timeout).map(Connection::Zenoh),
        }
    }

    fn address(&self) -> &Address {
        each_listener!(self, l => l.address())
    }
}
