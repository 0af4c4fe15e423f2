//! The rendezvous: one socket per name, one segment per agent.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipc_core::admission::{Admission, Ticket};
use ipc_core::{Address, Config, ConfigError, ConnectError, Listener};
use ipc_sys::socket_file::{self, SocketFile};
use ipc_sys::unix_socket;
use rustix::event::{PollFd, PollFlags};
use rustix::net::SocketFlags;

use crate::bell::Bell;
use crate::connection::ShmConnection;
use crate::handoff::{self, ATTACHED};
use crate::segment::{MAX_RING, MIN_RING, Segment};

/// Ring size (each direction) when `Config::buffer_size` is not set.
/// See docs/measurements/decisions.md for the measurement behind it.
pub const DEFAULT_RING_SIZE: usize = 256 << 10;

/// How long an agent has, once connected, to ask for its segment, attach
/// it and answer.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// Handshakes under way at once. The listener never stops accepting;
/// beyond this many, the oldest handshake of the process with the most
/// under way is dropped if it has several (`ipc_core::admission`; agents
/// of a process each may hold up to `SPREAD` times this), so a flood of
/// silent or half-finished connections neither costs unbounded memory
/// nor keeps another process's agent waiting in the socket's queue.
pub const MAX_HANDSHAKES: usize = 64;

/// The ring size a config asks for: `buffer_size` rounded up to a power of
/// two, or the default.
fn ring_size(config: &Config) -> Result<u64, ConnectError> {
    let asked = config.buffer_size.unwrap_or(DEFAULT_RING_SIZE) as u64;
    let size = asked.checked_next_power_of_two().unwrap_or(u64::MAX);
    if !(MIN_RING..=MAX_RING).contains(&size) {
        return Err(ConnectError::InvalidConfig(ConfigError::OutOfRange {
            field: "buffer_size",
            why: format!("{asked} is outside {MIN_RING}..={MAX_RING} bytes"),
        }));
    }
    Ok(size)
}

pub(crate) fn shm_name(address: &Address) -> Result<&str, ConnectError> {
    match address {
        Address::Shm(name) => Ok(name),
        other => Err(ConnectError::WrongTransport {
            address: other.to_string(),
            expected: "shm",
        }),
    }
}

/// Where agents meet the listener of `name`.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/ipc-{name}"))
}

/// An agent being handshaken: until it has asked (with a valid hello) it
/// costs a socket and nothing else; then its segment is sent and its
/// answer awaited.
struct Handshake {
    sock: OwnedFd,
    /// The segment sent and the listener's ends of its rings' doorbells,
    /// once the agent asked.
    sent: Option<(Segment, [Bell; 2])>,
    /// The agent's pid as the socket reports it (0 if unknown).
    pid: u32,
    deadline: Instant,
}

/// The listening half shared by the blocking and the async listener.
pub(crate) struct Rendezvous {
    sock: OwnedFd,
    _file: SocketFile,
    address: Address,
    label: String,
    config: Config,
    cap: u64,
    pending: Admission<Handshake>,
}

impl std::fmt::Debug for Rendezvous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendezvous")
            .field("address", &self.address)
            .field("ring", &self.cap)
            .field("handshakes", &self.pending.len())
            .finish()
    }
}

/// Why [`Rendezvous::accept_until`] returned without a connection.
pub(crate) enum Stopped {
    Error(ConnectError),
    /// The `stop` descriptor became readable.
    Asked,
}

impl From<ConnectError> for Stopped {
    fn from(e: ConnectError) -> Self {
        Stopped::Error(e)
    }
}

impl Rendezvous {
    pub(crate) fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        config.validate().map_err(ConnectError::InvalidConfig)?;
        let name = shm_name(address)?;
        let cap = ring_size(config)?;
        let (sock, file) = socket_file::bind(&socket_path(name))?;
        // Polled before each accept; non-blocking so an agent that gives up
        // in between costs an EAGAIN, not a wait.
        rustix::io::ioctl_fionbio(&sock, true).map_err(io::Error::from)?;
        Ok(Rendezvous {
            sock,
            _file: file,
            address: address.clone(),
            label: format!("ipc-shm:{name}"),
            config: config.clone(),
            cap,
            pending: Admission::new(MAX_HANDSHAKES),
        })
    }

    /// The next agent to complete its handshake, handling any number of
    /// them at once. Gives up at `deadline`, or when `stop` is readable.
    pub(crate) fn accept_until(
        &mut self,
        deadline: Option<Instant>,
        stop: Option<BorrowedFd<'_>>,
    ) -> Result<ShmConnection, Stopped> {
        loop {
            let now = Instant::now();
            // An agent that has not answered in time is dropped: its
            // segment is freed, its socket closed.
            self.pending.retain(|h| h.deadline > now);
            if deadline.is_some_and(|d| d <= now) {
                return Err(ConnectError::Timeout.into());
            }
            let wake = self
                .pending
                .iter()
                .map(|(_, h)| h.deadline)
                .chain(deadline)
                .min();
            let timeout = wake.map(|w| {
                rustix::event::Timespec::try_from(w.saturating_duration_since(now)).unwrap_or(
                    rustix::event::Timespec {
                        tv_sec: i64::MAX,
                        tv_nsec: 0,
                    },
                )
            });
            let (listen_ready, ready, stopped) = {
                let mut fds = Vec::with_capacity(self.pending.len() + 2);
                fds.push(PollFd::new(&self.sock, PollFlags::IN));
                fds.extend(
                    self.pending
                        .iter()
                        .map(|(_, h)| PollFd::new(&h.sock, PollFlags::IN)),
                );
                if let Some(stop) = &stop {
                    fds.push(PollFd::new(stop, PollFlags::IN));
                }
                match rustix::event::poll(&mut fds, timeout.as_ref()) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => return Err(ConnectError::Io(e.into()).into()),
                }
                let n = self.pending.len();
                let ready: Vec<Ticket> = self
                    .pending
                    .iter()
                    .zip(&fds[1..=n])
                    .filter(|(_, fd)| !fd.revents().is_empty())
                    .map(|((ticket, _), _)| ticket)
                    .collect();
                let stopped = stop.is_some() && !fds[1 + n].revents().is_empty();
                (!fds[0].revents().is_empty(), ready, stopped)
            };
            if stopped {
                return Err(Stopped::Asked);
            }
            for ticket in ready {
                let Some(handshake) = self.pending.remove(ticket) else {
                    continue;
                };
                match self.advance(handshake) {
                    Ok(Step::Done(conn)) => return Ok(*conn),
                    Ok(Step::Sent(handshake)) => {
                        // Just taken out, so nothing is crowded out.
                        let pid = (handshake.pid != 0).then_some(handshake.pid);
                        self.pending.admit(pid, handshake);
                    }
                    // A bad or vanished agent: its socket closes.
                    Err(_) => {}
                }
            }
            if listen_ready {
                self.start_handshake()?;
            }
        }
    }

    /// Accepts one waiting agent; it costs nothing but its socket until it
    /// asks for a segment. A full table drops the handshake of the process
    /// with the most under way.
    fn start_handshake(&mut self) -> Result<(), ConnectError> {
        let sock = match rustix::net::accept_with(
            &self.sock,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        ) {
            Ok(sock) => sock,
            // An agent that gave up before we accepted.
            Err(
                rustix::io::Errno::INTR | rustix::io::Errno::CONNABORTED | rustix::io::Errno::AGAIN,
            ) => return Ok(()),
            Err(e) => return Err(ConnectError::Io(e.into())),
        };
        let pid = unix_socket::peer_credentials(&sock).map_or(0, |c| c.pid.unwrap_or(0));
        let handshake = Handshake {
            sock,
            sent: None,
            pid,
            deadline: Instant::now() + HANDSHAKE_LIMIT,
        };
        // The dropped handshake, if any, closes its socket here.
        let _crowded = self.pending.admit((pid != 0).then_some(pid), handshake);
        Ok(())
    }

    /// The next step of a handshake whose socket is readable: an agent
    /// that asked rightly is sent its segment; one that answered rightly
    /// is attached, with the pid the socket reports.
    fn advance(&self, mut h: Handshake) -> Result<Step, ConnectError> {
        let Some((segment, bells)) = h.sent.take() else {
            let mut ask = [0u8; 8];
            let got = rustix::net::recv(&h.sock, &mut ask, rustix::net::RecvFlags::DONTWAIT)
                .map_err(io::Error::from)?;
            if got.0 != ask.len() || ask != handoff::hello() {
                return Err(ConnectError::Incompatible(
                    "the agent hung up or does not speak this layout".into(),
                ));
            }
            let segment = Segment::create(&self.label, self.cap)?;
            let (ours0, theirs0) = Bell::pair()?;
            let (ours1, theirs1) = Bell::pair()?;
            let fds = [segment.fd(), theirs0.as_fd(), theirs1.as_fd()];
            handoff::send_fds(h.sock.as_fd(), &handoff::hello(), &fds)?;
            h.sent = Some((segment, [ours0, ours1]));
            return Ok(Step::Sent(h));
        };
        let mut answer = [0u8; 1];
        let got = rustix::net::recv(&h.sock, &mut answer, rustix::net::RecvFlags::DONTWAIT)
            .map_err(io::Error::from)?;
        if got.0 != 1 || answer[0] != ATTACHED {
            return Err(ConnectError::Corrupted(
                "the agent hung up or answered wrongly".into(),
            ));
        }
        match segment.attached_peer_pid() {
            Some(pid) if pid == h.pid || h.pid == 0 => {}
            other => {
                return Err(ConnectError::Corrupted(format!(
                    "the segment names peer {other:?}, the socket says pid {}",
                    h.pid
                )));
            }
        }
        ShmConnection::new(segment, self.config.clone(), Some(h.sock), bells)
            .map(|conn| Step::Done(Box::new(conn)))
    }
}

/// Where a handshake stands after a step.
enum Step {
    /// The segment is sent; the agent's answer is awaited.
    Sent(Handshake),
    Done(Box<ShmConnection>),
}

/// The rendezvous, run by a helper thread: it completes handshakes as
/// agents arrive (so an agent's `connect` returns before anyone calls
/// `accept`, as with a socket) and hands each finished connection to
/// `deliver` (which blocks while the listener's queue is full, and says
/// `false` once the listener is gone).
#[derive(Debug)]
pub(crate) struct Acceptor {
    stop: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Finished handshakes waiting for `accept`.
pub(crate) const ACCEPT_QUEUE: usize = 16;

/// Pause after a failed accept (out of descriptors, say), so the thread
/// does not spin on a condition that persists.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

impl Acceptor {
    pub(crate) fn start(
        mut rendezvous: Rendezvous,
        mut deliver: impl FnMut(Result<ShmConnection, ConnectError>) -> bool + Send + 'static,
    ) -> Result<Self, ConnectError> {
        use rustix::event::EventfdFlags;
        let stop = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(io::Error::from)?;
        let stop_fd = stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("ipc-shm-accept".into())
            .spawn(move || {
                loop {
                    let next = match rendezvous.accept_until(None, Some(stop_fd.as_fd())) {
                        Ok(conn) => Ok(conn),
                        Err(Stopped::Asked) => return,
                        Err(Stopped::Error(e)) => {
                            std::thread::sleep(ACCEPT_ERROR_PAUSE);
                            Err(e)
                        }
                    };
                    if !deliver(next) {
                        return;
                    }
                }
            })?;
        Ok(Acceptor {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it: the socket file is gone when
    /// this returns. The caller closes its queue first, so a `deliver`
    /// blocked on a full queue returns.
    pub(crate) fn stop(&mut self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn accept_thread_gone() -> ConnectError {
    ConnectError::Io(io::Error::other("the listener's accept thread has stopped"))
}

/// Accepts any number of agents under one `shm:NAME`.
///
/// Agents meet the listener at the socket `/dev/shm/ipc-NAME` (owner-only;
/// a dead listener's file is replaced, a live one's never). Each agent
/// that connects gets its own segment: an anonymous, size-sealed memory
/// file with a ring each way, handed to it alone over its socket. Nothing
/// of a segment is ever in /dev/shm, so nothing is left there when a
/// process dies; the socket file goes when the listener drops.
///
/// A helper thread runs the handshakes side by side, so an agent's
/// `connect` returns before `accept` is called (up to 16 finished
/// connections wait for `accept`), and an agent that connects and then
/// says nothing delays no one: it is dropped after [`HANDSHAKE_LIMIT`].
///
/// ```
/// use ipc_core::{Config, Connector, FrameReceiver, FrameSender, Listener};
/// use ipc_shm::{Shm, ShmListener};
///
/// let name = format!("doc-{}", std::process::id());
/// let mut listener = ShmListener::bind_name(&name, &Config::default())?;
/// // Agents do this in their own processes, given listener.address():
/// let mut agents = Vec::new();
/// for i in 0..3 {
///     let mut agent = Shm.connect(listener.address(), &Config::default())?;
///     agent.send(format!("agent {i}").as_bytes())?;
///     agents.push(agent);
/// }
/// for i in 0..3 {
///     let mut conn = listener.accept()?;
///     assert_eq!(conn.recv()?, format!("agent {i}"));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct ShmListener {
    address: Address,
    accepted: Option<std::sync::mpsc::Receiver<Result<ShmConnection, ConnectError>>>,
    acceptor: Acceptor,
}

impl ShmListener {
    /// Listens as `shm:NAME`.
    ///
    /// Errors: [`ConnectError::AddrInUse`] (a live listener has the name),
    /// [`ConnectError::InvalidAddress`] (a bad name),
    /// [`ConnectError::InvalidConfig`], [`ConnectError::PermissionDenied`].
    pub fn bind_name(name: &str, config: &Config) -> Result<Self, ConnectError> {
        let address: Address = format!("shm:{name}").parse()?;
        Self::bind(&address, config)
    }

    /// Listens on a `shm:` address. Every listener of the workspace binds
    /// this way (an `&Address` and a `Config`); `bind_name` takes the name.
    pub fn bind(address: &Address, config: &Config) -> Result<Self, ConnectError> {
        let rendezvous = Rendezvous::bind(address, config)?;
        let (tx, accepted) = std::sync::mpsc::sync_channel(ACCEPT_QUEUE);
        let acceptor = Acceptor::start(rendezvous, move |next| tx.send(next).is_ok())?;
        Ok(ShmListener {
            address: address.clone(),
            accepted: Some(accepted),
            acceptor,
        })
    }

    fn queue(&self) -> &std::sync::mpsc::Receiver<Result<ShmConnection, ConnectError>> {
        self.accepted.as_ref().expect("present until drop")
    }
}

impl Listener for ShmListener {
    type Connection = ShmConnection;

    fn accept(&mut self) -> Result<ShmConnection, ConnectError> {
        self.queue().recv().map_err(|_| accept_thread_gone())?
    }

    fn accept_timeout(&mut self, timeout: Duration) -> Result<ShmConnection, ConnectError> {
        use std::sync::mpsc::RecvTimeoutError;
        match self.queue().recv_timeout(timeout) {
            Ok(next) => next,
            Err(RecvTimeoutError::Timeout) => Err(ConnectError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(accept_thread_gone()),
        }
    }

    fn address(&self) -> &Address {
        &self.address
    }
}

impl Drop for ShmListener {
    fn drop(&mut self) {
        // Connections finished but never accepted close with the queue.
        self.accepted.take();
        self.acceptor.stop();
    }
}
