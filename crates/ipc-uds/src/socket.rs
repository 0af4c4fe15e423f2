//! A connected stream socket, read and written without blocking.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use ipc_core::stream::RawStream;
use ipc_core::{Config, ConnectError};
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, sockopt};

/// One end of a connected Unix stream socket.
#[derive(Debug)]
pub struct UnixSocket(OwnedFd);

impl UnixSocket {
    /// Wraps a connected socket and applies the config's buffer size.
    pub(crate) fn new(fd: OwnedFd, config: &Config) -> Result<Self, ConnectError> {
        if let Some(size) = config.buffer_size {
            sockopt::set_socket_send_buffer_size(&fd, size).map_err(io::Error::from)?;
            sockopt::set_socket_recv_buffer_size(&fd, size).map_err(io::Error::from)?;
        }
        Ok(UnixSocket(fd))
    }

    /// Connects to the listener at `path` ([`ipc_sys::unix_socket::connect`]:
    /// a full queue retried until [`Config::connect_timeout`], the
    /// listener's owner checked against [`Config::peer_owner`]).
    pub(crate) fn connect(path: &Path, config: &Config) -> Result<Self, ConnectError> {
        Self::new(ipc_sys::unix_socket::connect(path, config)?, config)
    }

    /// Unwraps the descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.0
    }
}

impl RawStream for UnixSocket {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn read_nonblocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let ((init, _), _) = rustix::net::recv(&self.0, buf, RecvFlags::DONTWAIT)?;
        Ok(init.len())
    }

    fn write_nonblocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // NOSIGNAL: a closed peer is an EPIPE error, not a process-killing
        // SIGPIPE, whatever the host program's signal setup.
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        Ok(rustix::net::sendmsg(
            &self.0,
            bufs,
            &mut SendAncillaryBuffer::default(),
            flags,
        )?)
    }
}
