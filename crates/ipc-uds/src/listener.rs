//! Binding a socket path safely, and accepting agents on it.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipc_core::stream::FramedStream;
use ipc_core::{Address, Config, ConnectError, Listener};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::net::SocketFlags;

use crate::socket::{UnixSocket, connect_error, new_socket, socket_addr};
use crate::{CAPABILITIES, UdsConnection};

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
pub(crate) fn bind(path: &Path) -> Result<(OwnedFd, SocketFile), ConnectError> {
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

/// Accepts agents on a Unix socket path.
///
/// ```
/// use ipc_core::{Config, FrameReceiver, FrameSender, Listener};
/// use ipc_uds::{Uds, UdsListener};
/// use ipc_core::Connector;
///
/// let path = std::env::temp_dir().join(format!("doc-{}.sock", std::process::id()));
/// let mut listener = UdsListener::bind(&path, &Config::default())?;
/// // An agent would do this in its own process, given listener.address():
/// let mut agent = Uds.connect(listener.address(), &Config::default())?;
/// let mut server = listener.accept()?;
/// agent.send(b"hello")?;
/// assert_eq!(&server.recv()?[..], b"hello");
/// drop(listener);
/// assert!(!path.exists(), "the socket file goes with the listener");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct UdsListener {
    fd: OwnedFd,
    address: Address,
    config: Config,
    _file: SocketFile,
    /// How long the next accept that finds no descriptor free sleeps.
    out_of_fds_pause: Duration,
}

/// The first and the longest pause of an accept at the descriptor limit.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

impl UdsListener {
    /// Binds `path`; connections accepted use `config`.
    ///
    /// Errors: [`ConnectError::PathTooLong`], [`ConnectError::NotFound`]
    /// (missing directory), [`ConnectError::AddrInUse`] (a live listener,
    /// or a file that is not a socket), [`ConnectError::PermissionDenied`],
    /// [`ConnectError::InvalidConfig`].
    pub fn bind(path: impl AsRef<Path>, config: &Config) -> Result<Self, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let path = path.as_ref();
        let (fd, file) = bind(path)?;
        Ok(UdsListener {
            fd,
            address: Address::Uds(path.to_owned()),
            config: config.clone(),
            _file: file,
            out_of_fds_pause: FIRST_PAUSE,
        })
    }

    /// Binds the path of a `uds:` address.
    pub fn bind_address(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        Self::bind(uds_path(address)?, config)
    }

    /// Accepts the connection waiting. Out of descriptors, it sleeps
    /// before it reports `Io(EMFILE)` (10 ms, doubling to 1 s while the
    /// condition lasts, at most until `deadline`): the socket stays
    /// readable, and a caller that retries at once must not spin.
    fn accept_ready(&mut self, deadline: Option<Instant>) -> Result<UdsConnection, ConnectError> {
        loop {
            match rustix::net::accept_with(&self.fd, SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    self.out_of_fds_pause = FIRST_PAUSE;
                    let socket = UnixSocket::new(fd, &self.config)?;
                    return Ok(FramedStream::new(socket, self.config.clone(), CAPABILITIES));
                }
                // A peer that gave up before we accepted: wait for the next.
                Err(rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED) => {}
                Err(e @ (rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)) => {
                    let pause = match deadline {
                        Some(d) => self
                            .out_of_fds_pause
                            .min(d.saturating_duration_since(Instant::now())),
                        None => self.out_of_fds_pause,
                    };
                    std::thread::sleep(pause);
                    self.out_of_fds_pause = (self.out_of_fds_pause * 2).min(LONGEST_PAUSE);
                    return Err(ConnectError::Io(e.into()));
                }
                Err(e) => return Err(ConnectError::Io(e.into())),
            }
        }
    }
}

impl Listener for UdsListener {
    type Connection = UdsConnection;

    fn accept(&mut self) -> Result<UdsConnection, ConnectError> {
        self.accept_ready(None)
    }

    fn accept_timeout(&mut self, timeout: Duration) -> Result<UdsConnection, ConnectError> {
        let deadline = Instant::now().checked_add(timeout);
        let timeout = Timespec::try_from(timeout).map_err(|_| {
            ConnectError::InvalidConfig(ipc_core::ConfigError::OutOfRange {
                field: "accept timeout",
                why: format!("{timeout:?} is too long"),
            })
        })?;
        let mut fds = [PollFd::new(&self.fd, PollFlags::IN)];
        loop {
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Err(ConnectError::Timeout),
                Ok(_) => return self.accept_ready(deadline),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(ConnectError::Io(e.into())),
            }
        }
    }

    fn address(&self) -> &Address {
        &self.address
    }
}

/// The path of a `uds:` address, or [`ConnectError::WrongTransport`].
pub(crate) fn uds_path(address: &Address) -> Result<&Path, ConnectError> {
    match address {
        Address::Uds(path) => Ok(path),
        other => Err(ConnectError::WrongTransport {
            address: other.to_string(),
            expected: "uds",
        }),
    }
}
