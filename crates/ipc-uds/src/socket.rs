//! A connected stream socket, read and written without blocking.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ipc_core::stream::RawStream;
use ipc_core::{Config, ConnectError, PeerCredentials};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendFlags, SocketAddrUnix, SocketFlags,
    SocketType, sockopt,
};

/// Longest socket path the kernel accepts (`sun_path` minus its NUL).
pub const MAX_PATH_LEN: usize = 107;

/// Longest pause between connect attempts to a listener whose queue is
/// full.
pub(crate) const MAX_CONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Checks the listener at the other end of `fd` belongs to the user
/// [`Config::peer_owner`] names (`SO_PEERCRED`: the listener's
/// credentials when it called `listen`).
pub(crate) fn check_owner(
    fd: &impl AsFd,
    path: &Path,
    config: &Config,
) -> Result<(), ConnectError> {
    let uid = PeerCredentials::of_unix_socket(fd.as_fd())?
        .uid
        .ok_or_else(|| io::Error::other("SO_PEERCRED gave no uid"))?;
    config
        .peer_owner
        .check(uid, &format!("uds:{}", path.display()))
        .map_err(ConnectError::PermissionDenied)
}

/// What `SO_PEERCRED` says about the process at the other end.
pub(crate) fn peer_credentials(fd: &impl AsFd) -> Result<PeerCredentials, ConnectError> {
    Ok(PeerCredentials::of_unix_socket(fd.as_fd())?)
}

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

    /// Connects to the listener at `path`. A listener whose queue is full
    /// makes a non-blocking connect fail with `EAGAIN` at once: that is
    /// retried, backing off, until [`Config::connect_timeout`], then
    /// `Timeout`. The listener's owner is checked against
    /// [`Config::peer_owner`] before the connection is handed out.
    pub(crate) fn connect(path: &Path, config: &Config) -> Result<Self, ConnectError> {
        let addr = socket_addr(path)?;
        let deadline = config
            .connect_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let mut pause = Duration::from_millis(1);
        loop {
            let fd = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )
            .map_err(io::Error::from)?;
            match rustix::net::connect(&fd, &addr) {
                Ok(()) => {
                    check_owner(&fd, path, config)?;
                    return Self::new(fd, config);
                }
                Err(rustix::io::Errno::AGAIN) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left == Some(Duration::ZERO) {
                        return Err(ConnectError::Timeout);
                    }
                    std::thread::sleep(left.map_or(pause, |l| l.min(pause)));
                    pause = (pause * 2).min(MAX_CONNECT_PAUSE);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(connect_error(path, e)),
            }
        }
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
