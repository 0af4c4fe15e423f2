//! Binding a socket path safely, and accepting agents on it.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use ipc_core::stream::FramedStream;
use ipc_core::{Address, Config, ConnectError, Listener};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::SocketFlags;

use ipc_sys::socket_file::{SocketFile, bind};

use crate::socket::UnixSocket;
use crate::{CAPABILITIES, UdsConnection};

/// Accepts agents on a Unix socket path.
///
/// ```
/// use ipc_core::{Config, FrameReceiver, FrameSender, Listener};
/// use ipc_uds::{Uds, UdsListener};
/// use ipc_core::Connector;
///
/// let path = std::env::temp_dir().join(format!("doc-{}.sock", std::process::id()));
/// let mut listener = UdsListener::bind_path(&path, &Config::default())?;
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
    /// Binds the path of a `uds:` address; connections accepted use
    /// `config`. Every listener of the workspace binds this way (an
    /// `&Address` and a `Config`); [`bind_path`](Self::bind_path) takes the
    /// path itself.
    ///
    /// Errors: [`ConnectError::WrongTransport`] (not a `uds:` address), [`ConnectError::PathTooLong`], [`ConnectError::NotFound`]
    /// (missing directory), [`ConnectError::AddrInUse`] (a live listener,
    /// or a file that is not a socket), [`ConnectError::PermissionDenied`],
    /// [`ConnectError::InvalidConfig`].
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        Self::bind_path(uds_path(address)?, config)
    }

    /// Binds `path` (as [`bind`](Self::bind) binds `uds:PATH`).
    pub fn bind_path(path: impl AsRef<Path>, config: &Config) -> Result<Self, ConnectError> {
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
