//! A connected stream socket, read and written without blocking.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use ipc_core::stream::RawStream;
use ipc_core::{Config, ConnectError};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendFlags, SocketAddrUnix, SocketFlags,
    SocketType, sockopt,
};

/// Longest socket path the kernel accepts (`sun_path` minus its NUL).
pub const MAX_PATH_LEN: usize = 107;

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

    /// Connects to the listener at `path`.
    pub(crate) fn connect(path: &Path, config: &Config) -> Result<Self, ConnectError> {
        let addr = socket_addr(path)?;
        let fd = new_socket()?;
        rustix::net::connect(&fd, &addr).map_err(|e| connect_error(path, e))?;
        Self::new(fd, config)
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

/// A new close-on-exec Unix stream socket.
pub(crate) fn new_socket() -> Result<OwnedFd, ConnectError> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?)
}

/// The socket address for `path`, or a clear error if it cannot be one.
pub(crate) fn socket_addr(path: &Path) -> Result<SocketAddrUnix, ConnectError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(ConnectError::PathTooLong {
            path: path.display().to_string(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    Ok(SocketAddrUnix::new(path).map_err(io::Error::from)?)
}

/// Maps a `connect(2)` failure to the error a caller can act on.
pub(crate) fn connect_error(path: &Path, err: rustix::io::Errno) -> ConnectError {
    let shown = path.display().to_string();
    match err {
        rustix::io::Errno::NOENT => ConnectError::NotFound(shown),
        rustix::io::Errno::CONNREFUSED => {
            ConnectError::NotFound(format!("{shown} (socket file left by a dead listener)"))
        }
        rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
            ConnectError::PermissionDenied(shown)
        }
        other => ConnectError::Io(other.into()),
    }
}
