#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_code)]

#[cfg(feature = "tokio")]
mod asynchronous;
mod listener;
mod socket;
// Reads into tokio's uninitialized buffers: the crate's one unsafe.
#[cfg(feature = "tokio")]
#[allow(unsafe_code)]
mod socket_io;

use ipc_core::stream::FramedStream;
use ipc_core::{Address, Capabilities, Config, ConnectError, Connector, MAX_MESSAGE_SIZE_LIMIT};

#[cfg(feature = "tokio")]
pub use asynchronous::{AsyncUds, AsyncUdsConnection, AsyncUdsListener, UdsReadHalf, UdsWriteHalf};
pub use ipc_sys::unix_socket::MAX_PATH_LEN;
pub use listener::UdsListener;
pub use socket::UnixSocket;
#[cfg(feature = "tokio")]
pub use socket_io::{SocketReader, SocketWriter};

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
