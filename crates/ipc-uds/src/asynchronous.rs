//! The tokio listener and connections.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use ipc_core::stream_async::AsyncFramedStream;
use ipc_core::{Address, AsyncConnector, AsyncListener, Config, ConnectError};
use tokio::net::UnixStream;

use ipc_sys::socket_file::{SocketFile, bind};
use ipc_sys::unix_socket::{
    MAX_CONNECT_PAUSE, check_owner, connect_error, peer_credentials, socket_addr,
};

use crate::CAPABILITIES;
use crate::listener::uds_path;
use crate::socket::UnixSocket;
use crate::socket_io::{SocketReader, SocketWriter, split};

/// An async connection over a Unix stream socket.
pub type AsyncUdsConnection = AsyncFramedStream<SocketReader, SocketWriter>;

/// The receiving half of a split [`AsyncUdsConnection`].
pub type UdsReadHalf = ipc_core::stream_async::FrameReadHalf<SocketReader>;
/// The sending half of a split [`AsyncUdsConnection`].
pub type UdsWriteHalf = ipc_core::stream_async::FrameWriteHalf<SocketWriter>;

/// Accepts agents on a Unix socket path, asynchronously. Binding follows
/// the same rules as [`UdsListener`](crate::UdsListener).
#[derive(Debug)]
pub struct AsyncUdsListener {
    listener: tokio::net::UnixListener,
    address: Address,
    config: Config,
    _file: SocketFile,
}

impl AsyncUdsListener {
    /// Binds the path of a `uds:` address (the rules of
    /// [`UdsListener::bind`](crate::UdsListener::bind)). Must be called
    /// inside a tokio runtime.
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        Self::bind_path(uds_path(address)?, config)
    }

    /// Binds `path` (as [`bind`](Self::bind) binds `uds:PATH`).
    pub fn bind_path(path: impl AsRef<Path>, config: &Config) -> Result<Self, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let path = path.as_ref();
        let (fd, file) = bind(path)?;
        let std_listener = std::os::unix::net::UnixListener::from(fd);
        std_listener.set_nonblocking(true)?;
        Ok(AsyncUdsListener {
            listener: tokio::net::UnixListener::from_std(std_listener)?,
            address: Address::Uds(path.to_owned()),
            config: config.clone(),
            _file: file,
        })
    }
}

fn framed(stream: UnixStream, config: &Config) -> Result<AsyncUdsConnection, ConnectError> {
    // Apply the buffer size through the blocking type, then hand it back.
    let peer = peer_credentials(&stream.as_fd())?;
    let std_stream = stream.into_std()?;
    let socket = UnixSocket::new(std_stream.into(), config)?;
    let std_stream = std::os::unix::net::UnixStream::from(socket.into_fd());
    let (reader, writer) = split(std_stream)?;
    Ok(AsyncFramedStream::new(reader, writer, config.clone(), CAPABILITIES).with_peer(peer))
}

impl AsyncListener for AsyncUdsListener {
    type Connection = AsyncUdsConnection;

    async fn accept(&mut self) -> Result<AsyncUdsConnection, ConnectError> {
        let (stream, _) = self.listener.accept().await?;
        framed(stream, &self.config)
    }

    fn address(&self) -> &Address {
        &self.address
    }
}

/// The Unix-domain-socket transport for async code:
/// `AsyncUds.connect(&address, &config).await`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncUds;

impl AsyncConnector for AsyncUds {
    type Connection = AsyncUdsConnection;

    async fn connect(
        &self,
        address: &Address,
        config: &Config,
    ) -> Result<AsyncUdsConnection, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let path = uds_path(address)?;
        socket_addr(path)?;
        // As the blocking connect: a full queue is retried, backing off,
        // until the connect timeout; the listener's owner is checked.
        let attempts = async {
            let mut pause = Duration::from_millis(1);
            loop {
                match UnixStream::connect(path).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_CONNECT_PAUSE);
                    }
                    Err(e) => {
                        return Err(match rustix::io::Errno::from_io_error(&e) {
                            Some(errno) => connect_error(path, errno),
                            None => ConnectError::Io(e),
                        });
                    }
                }
            }
        };
        let stream = match config.connect_timeout {
            Some(t) => tokio::time::timeout(t, attempts)
                .await
                .map_err(|_| ConnectError::Timeout)??,
            None => attempts.await?,
        };
        check_owner(&stream, path, config)?;
        framed(stream, config)
    }
}
