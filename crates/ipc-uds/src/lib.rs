#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "tokio")]
mod asynchronous;
mod listener;
mod socket;

use ipc_core::stream::FramedStream;
use ipc_core::{Address, Capabilities, Config, ConnectError, Connector, MAX_MESSAGE_SIZE_LIMIT};

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncUds, AsyncUdsConnection, AsyncUdsListener};
pub use listener::UdsListener;
pub use socket::{MAX_PATH_LEN, UnixSocket};

/// Binding and connecting socket files for transports that meet over a
/// Unix socket and then talk another way: `ipc-shm` hands each agent its
/// shared memory over one. Same rules as [`UdsListener`]: owner-only
/// files, stale files of dead listeners replaced, live ones never, the
/// listener's owner checked against [`Config::peer_owner`].
pub mod rendezvous {
    use std::os::fd::{AsFd, OwnedFd};
    use std::path::Path;

    use ipc_core::{Config, ConnectError, PeerCredentials};

    pub use crate::listener::SocketFile;

    /// Binds and listens on `path`; returns the listening socket (blocking,
    /// close-on-exec) and the guard that removes the file on drop.
    pub fn bind(path: &Path) -> Result<(OwnedFd, SocketFile), ConnectError> {
        crate::listener::bind(path)
    }

    /// Connects to the listener at `path` (non-blocking socket), retrying a
    /// full queue until [`Config::connect_timeout`], and checks the
    /// listener's owner.
    pub fn connect(path: &Path, config: &Config) -> Result<OwnedFd, ConnectError> {
        Ok(crate::socket::UnixSocket::connect(path, config)?.into_fd())
    }

    /// What `SO_PEERCRED` says about the process at the other end.
    pub fn peer_credentials(fd: &impl AsFd) -> Result<PeerCredentials, ConnectError> {
        crate::socket::peer_credentials(fd)
    }

    /// Checks the listener at the other end of `fd` belongs to the user
    /// [`Config::peer_owner`] names.
    pub fn check_owner(fd: &impl AsFd, path: &Path, config: &Config) -> Result<(), ConnectError> {
        crate::socket::check_owner(fd, path, config)
    }
}

/// A blocking connection over a Unix stream socket.
pub type UdsConnection = FramedStream<UnixSocket>;

/// What this transport supports.
pub const CAPABILITIES: Capabilities = {
    let mut caps = Capabilities::new(MAX_MESSAGE_SIZE_LIMIT);
    caps.async_io = cfg!(feature = "tokio");
    caps
};

/// The Unix-domain-socket transport, as a value for generic code:
/// `Uds.connect(&address, &config)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Uds;

impl Connector for Uds {
    type Connection = UdsConnection;

    /// Connects to a listener. Errors: [`ConnectError::NotFound`] (no file,
    /// or a stale file with no listener), [`ConnectError::PermissionDenied`],
    /// [`ConnectError::PathTooLong`], [`ConnectError::WrongTransport`].
    fn connect(&self, address: &Address, config: &Config) -> Result<UdsConnection, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let socket = UnixSocket::connect(listener::uds_path(address)?, config)?;
        Ok(FramedStream::new(socket, config.clone(), CAPABILITIES))
    }
}
