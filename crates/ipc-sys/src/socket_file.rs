//! Socket files: bound owner-only, a dead listener's stale file replaced,
//! a live listener's never, and removed with the listener (a lock file
//! beside it tells live from dead without a probe connection).

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ipc_core::ConnectError;
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::net::SocketFlags;

use crate::unix_socket::{connect_error, new_socket, socket_addr};

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 128;

/// The socket file this process bound, and the lock that marks its
/// listener alive; both are removed on drop (the socket file only if it is
/// still the one we bound).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    _lock: NameLock,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.dev() == self.dev
            && meta.ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
        // `lock` drops after this, removing the lock file.
    }
}

/// `PATH.lock`, held with `flock` for as long as a listener lives on PATH.
/// The kernel drops the lock when the holder dies, however it dies, so a
/// held lock means a live listener, and no probe connection (which the live
/// listener would accept as a phantom agent) is needed to tell.
#[derive(Debug)]
struct NameLock {
    path: PathBuf,
    _fd: OwnedFd,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        // Unlink while still holding the lock (the fd closes after this), so
        // no binder can lock a file that is about to vanish.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl NameLock {
    fn acquire(socket_path: &Path) -> Result<Self, ConnectError> {
        let mut lock_path = socket_path.as_os_str().to_owned();
        lock_path.push(".lock");
        let path = PathBuf::from(lock_path);
        loop {
            let fd = rustix::fs::open(
                &path,
                OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::RUSR | Mode::WUSR,
            )
            .map_err(|e| match e {
                rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
                    ConnectError::PermissionDenied(path.display().to_string())
                }
                e => ConnectError::Io(e.into()),
            })?;
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(ConnectError::AddrInUse(socket_path.display().to_string()));
                }
                Err(e) => return Err(ConnectError::Io(e.into())),
            }
            // The previous holder may have unlinked the file between our
            // open and our lock: then we hold a lock on nothing; retry.
            let held = rustix::fs::fstat(&fd).map_err(io::Error::from)?;
            match rustix::fs::stat(&path) {
                Ok(now) if now.st_dev == held.st_dev && now.st_ino == held.st_ino => {
                    return Ok(NameLock { path, _fd: fd });
                }
                Ok(_) | Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(ConnectError::Io(e.into())),
            }
        }
    }
}

/// Binds and listens on `path`: the socket file is created owner-only
/// (0600), a stale file from a dead listener is replaced, and a live
/// listener's path or any other kind of file is never touched.
pub fn bind(path: &Path) -> Result<(OwnedFd, SocketFile), ConnectError> {
    let addr = socket_addr(path)?;
    let shown = || path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(ConnectError::NotFound(format!(
            "{} (directory {} does not exist)",
            shown(),
            dir.display()
        )));
    }
    let lock = NameLock::acquire(path)?;
    for attempt in 0..2 {
        let fd = new_socket()?;
        // The socket inode's mode becomes the file's mode at bind, so the
        // file is never reachable by others, not even for a moment.
        rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR).map_err(io::Error::from)?;
        match rustix::net::bind(&fd, &addr) {
            Ok(()) => {
                rustix::net::listen(&fd, BACKLOG).map_err(io::Error::from)?;
                let meta = std::fs::symlink_metadata(path)?;
                let file = SocketFile {
                    path: path.to_owned(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                    _lock: lock,
                };
                return Ok((fd, file));
            }
            Err(rustix::io::Errno::ADDRINUSE) if attempt == 0 => reclaim_if_stale(path)?,
            Err(rustix::io::Errno::ADDRINUSE) => return Err(ConnectError::AddrInUse(shown())),
            Err(rustix::io::Errno::ACCESS | rustix::io::Errno::PERM) => {
                return Err(ConnectError::PermissionDenied(shown()));
            }
            Err(rustix::io::Errno::NOENT) => return Err(ConnectError::NotFound(shown())),
            Err(e) => return Err(ConnectError::Io(e.into())),
        }
    }
    Err(ConnectError::AddrInUse(shown()))
}

/// Removes `path` if it is a socket nobody listens on; errors if it is a
/// live socket or not a socket at all. Called with the name lock held, so
/// no ipc-uds listener is alive there; the probe connection is for
/// listeners of other programs.
fn reclaim_if_stale(path: &Path) -> Result<(), ConnectError> {
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(ConnectError::AddrInUse(format!(
            "{shown} exists and is not a socket; not replacing it"
        )));
    }
    // Non-blocking probe: a live listener with a full backlog answers EAGAIN
    // instead of making us wait.
    let probe = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(io::Error::from)?;
    match rustix::net::connect(&probe, &socket_addr(path)?) {
        Err(rustix::io::Errno::CONNREFUSED) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        },
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Ok(()) | Err(rustix::io::Errno::AGAIN) => Err(ConnectError::AddrInUse(shown)),
        Err(e) => Err(connect_error(path, e)),
    }
}
