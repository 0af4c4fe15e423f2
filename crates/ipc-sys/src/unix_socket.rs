//! Unix stream sockets: connecting with retry and a deadline, the peer's
//! credentials, and the checks every transport that meets on a socket
//! file makes.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use ipc_core::{Config, ConnectError, PeerCredentials};
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

/// Longest socket path the kernel accepts (`sun_path` minus its NUL).
pub const MAX_PATH_LEN: usize = 107;

/// Longest pause between connect attempts to a listener whose queue is
/// full.
pub const MAX_CONNECT_PAUSE: Duration = Duration::from_millis(20);

/// Checks the listener at the other end of `fd` belongs to the user
/// [`Config::peer_owner`] names (`SO_PEERCRED`: the listener's
/// credentials when it called `listen`).
pub fn check_owner(fd: &impl AsFd, path: &Path, config: &Config) -> Result<(), ConnectError> {
    let uid = PeerCredentials::of_unix_socket(fd.as_fd())?
        .uid
        .ok_or_else(|| io::Error::other("SO_PEERCRED gave no uid"))?;
    config
        .peer_owner
        .check(uid, &format!("uds:{}", path.display()))
        .map_err(ConnectError::PermissionDenied)
}

/// What `SO_PEERCRED` says about the process at the other end.
pub fn peer_credentials(fd: &impl AsFd) -> Result<PeerCredentials, ConnectError> {
    Ok(PeerCredentials::of_unix_socket(fd.as_fd())?)
}

/// Connects to the listener at `path`. A listener whose queue is full
/// makes a non-blocking connect fail with `EAGAIN` at once: that is
/// retried, backing off, until [`Config::connect_timeout`], then
/// `Timeout`. The listener's owner is checked against
/// [`Config::peer_owner`] before the connection is handed out. The socket is non-blocking.
pub fn connect(path: &Path, config: &Config) -> Result<OwnedFd, ConnectError> {
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
                return Ok(fd);
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

/// A new close-on-exec Unix stream socket.
pub fn new_socket() -> Result<OwnedFd, ConnectError> {
    Ok(rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(io::Error::from)?)
}

/// The socket address for `path`, or a clear error if it cannot be one.
pub fn socket_addr(path: &Path) -> Result<SocketAddrUnix, ConnectError> {
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
pub fn connect_error(path: &Path, err: rustix::io::Errno) -> ConnectError {
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
