//! The conformance kit: one generic test suite that every transport crate
//! runs against itself, across real processes.
//!
//! A transport crate adds an integration test with `harness = false`:
//!
//! ```ignore
//! // tests/conformance.rs
//! fn main() {
//!     ipc_core::conformance::main(vec![MyTransportUnderTest]);
//! }
//! ```
//!
//! The test binary plays both parts. Started by `cargo test`, it runs the
//! cases (with libtest's command line: filters, `--list`, ...); each case
//! re-executes the binary as the peer, selected by the [`PEER_ENV`]
//! environment variable, and talks to it over the transport under test.
//!
//! Beside the contract cases, the fault cases (`faults.rs`) prove what
//! the transport does when its peer fails: killed while sending,
//! receiving or idle, killed holding half a frame, a clean close in the
//! middle of a stream, a peer that stops reading for good, a dead
//! listener's files, and another user at the address. Each must end in a
//! specific error within its bound, never a hang or panic, and leak no
//! descriptor, child process or file. Hooks with defaults let a transport
//! say how its peer leaves half a frame or stops reading and how its
//! listeners are named; a case whose hook a transport does not provide
//! is skipped, saying so.

mod cases;
mod faults;
mod peer;

use std::any::Any;
use std::future::Future;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Address, AsyncConnection, Config, ConnectError, Connection};

pub use peer::{PeerMode, UNSUPPORTED};

/// Environment variable that puts the test binary in peer mode.
pub const PEER_ENV: &str = "IPC_CONFORMANCE_PEER";
/// Environment variable with the peer's maximum message size.
pub const PEER_MAX_ENV: &str = "IPC_CONFORMANCE_MAX";

/// Errors from setting up a case.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A transport as the kit drives it.
pub trait TransportUnderTest: Send + Sync + 'static {
    /// The transport's name in test names (one transport may run the kit
    /// in several configurations, each with its own name).
    fn name(&self) -> String;
    /// The blocking connection type.
    type Conn: Connection + Send + 'static;
    /// The async connection type (parent side).
    type AsyncConn: AsyncConnection + 'static;
    /// The async connection type inside the peer (the agent side).
    type AsyncPeerConn: AsyncConnection + 'static;

    /// Starts `peer` (this test binary in peer mode) and returns the
    /// connection to it. The transport adds what the peer needs to find it
    /// (stdio, an [`ADDRESS_ENV`](crate::ADDRESS_ENV) variable, ...).
    fn spawn(&self, peer: Command, config: &Config) -> Result<(Self::Conn, Peer), BoxError>;

    /// The async form of [`spawn`](Self::spawn); runs inside a tokio runtime.
    fn spawn_async(
        &self,
        peer: Command,
        config: &Config,
    ) -> impl Future<Output = Result<(Self::AsyncConn, Peer), BoxError>> + Send;

    /// Inside the peer process: the connection back to the parent.
    fn connect_to_parent(&self, config: &Config) -> Result<Self::Conn, BoxError>;

    /// Inside the peer process: the async connection back to the parent
    /// (runs inside a tokio runtime).
    fn connect_to_parent_async(
        &self,
        config: &Config,
    ) -> impl Future<Output = Result<Self::AsyncPeerConn, BoxError>> + Send;

    /// Whether the fault cases run for this configuration (a transport
    /// tested in several configurations may run them in one only: they
    /// kill many peers).
    fn fault_cases(&self) -> bool {
        true
    }

    /// Starts `peer` and kills it at once, before or just after it
    /// connects; returns the connection the parent got within 100 ms, if
    /// any (a queued connection of a dead peer must read as gone). The
    /// default kills it just after [`spawn`](Self::spawn) connected.
    fn spawn_killed(&self, peer: Command, config: &Config) -> Result<Option<Self::Conn>, BoxError> {
        let (conn, mut peer) = self.spawn(peer, config)?;
        peer.kill();
        Ok(Some(conn))
    }

    /// Inside the peer process: connects to the parent and leaves a frame
    /// unfinished on the connection (a stream: a header and half its body;
    /// shared memory: the first chunks of a message larger than the
    /// ring), returning what keeps the connection open. `None`, the
    /// default: the transport hands over whole messages or nothing, and
    /// the case is skipped.
    fn leave_half_a_frame(&self, config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        let _ = config;
        None
    }

    /// Inside the peer process: connects to the parent, waits
    /// [`STOP_READING_AFTER`] (the parent starts a large send meanwhile),
    /// then stops reading for good while staying connected; returns what
    /// keeps the connection open. `None`, the default: not supported, the
    /// case is skipped.
    fn stop_reading(&self, config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        let _ = config;
        None
    }

    /// A fresh address a listener of this transport can bind, unique to
    /// this process (its name holds the process id, so the kit can check
    /// nothing named after it is left). `None`, the default: no named
    /// listeners; the cases of stale files and of other users are skipped.
    fn fresh_address(&self) -> Option<Address> {
        None
    }

    /// Binds a listener at `address`; dropping the value closes it.
    fn bind(&self, address: &Address, config: &Config) -> Result<Box<dyn Any>, BoxError> {
        let _ = config;
        Err(format!("no named listeners to bind {address}").into())
    }

    /// Connects to the listener at `address` (another process's).
    fn connect(&self, address: &Address, config: &Config) -> Result<Self::Conn, ConnectError> {
        let _ = config;
        Err(ConnectError::WrongTransport {
            address: address.to_string(),
            expected: "a transport with named listeners",
        })
    }
}

/// How long a [`TransportUnderTest::stop_reading`] peer reads before it
/// stops.
pub const STOP_READING_AFTER: Duration = Duration::from_millis(300);

/// A running peer process; killed and reaped when dropped.
#[derive(Debug)]
pub struct Peer(Box<dyn PeerProcess>);

impl Peer {
    /// Wraps a child process.
    pub fn new(process: impl PeerProcess + 'static) -> Self {
        Peer(Box::new(process))
    }

    /// Waits up to `timeout` for the peer to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.0.id()
    }

    /// Kills the peer (if still running) and reaps it.
    pub fn kill(&mut self) {
        self.0.kill();
        self.wait_timeout(Duration::from_secs(10));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.0.try_wait().is_none() {
            self.kill();
        }
    }
}

/// A child process the kit can wait for and kill.
pub trait PeerProcess: Send + std::fmt::Debug {
    /// The exit status if it has exited (reaping it), without waiting.
    fn try_wait(&mut self) -> Option<ExitStatus>;
    /// Sends SIGKILL.
    fn kill(&mut self);
    /// Its process id, while it runs.
    fn id(&self) -> Option<u32>;
}

impl PeerProcess for std::process::Child {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        std::process::Child::try_wait(self).ok().flatten()
    }
    fn kill(&mut self) {
        let _ = std::process::Child::kill(self);
    }
    fn id(&self) -> Option<u32> {
        Some(std::process::Child::id(self))
    }
}

// tokio has no `process` module when built for loom model checking.
#[cfg(not(loom))]
impl PeerProcess for tokio::process::Child {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        tokio::process::Child::try_wait(self).ok().flatten()
    }
    fn kill(&mut self) {
        let _ = self.start_kill();
    }
    fn id(&self) -> Option<u32> {
        tokio::process::Child::id(self)
    }
}

/// The test binary's `main`: runs the peer part when [`PEER_ENV`] is set
/// (through the first transport, which must find its configuration in the
/// environment its `spawn` set), the cases for every transport otherwise.
pub fn main<T: TransportUnderTest>(transports: Vec<T>) {
    let mut transports = transports.into_iter().map(Arc::new).peekable();
    if let Ok(mode) = std::env::var(PEER_ENV) {
        let first = transports.peek().expect("at least one transport");
        std::process::exit(peer::run(first.as_ref(), &mode));
    }
    let args = libtest_mimic::Arguments::from_args();
    let transports: Vec<Arc<T>> = transports.collect();
    let (mut contract, mut fault) = (Vec::new(), Vec::new());
    for transport in transports.iter().cloned() {
        contract.extend(cases::trials(Arc::clone(&transport)));
        if transport.fault_cases() {
            fault.extend(faults::trials(transport));
        }
    }
    let contract = libtest_mimic::run(&args, contract);
    // The fault cases count this process's descriptors, children and
    // files before and after: one at a time, after the others.
    let mut one_at_a_time = args.clone();
    one_at_a_time.test_threads = Some(1);
    if !args.list {
        faults::warm_up(&transports);
    }
    let fault = libtest_mimic::run(&one_at_a_time, fault);
    std::process::exit(if contract.has_failed() || fault.has_failed() {
        101
    } else {
        0
    });
}

/// A second, unprivileged user for tests of what another user can do (as
/// root): made if missing, removed on drop if it was made here.
#[derive(Debug)]
pub struct OtherUser {
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    name: String,
    created: bool,
}

impl OtherUser {
    /// The user `name` (`useradd --system`, no home, no shell if missing).
    pub fn create(name: &str) -> Result<OtherUser, String> {
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            String::from_utf8(out.stdout).ok()?.trim().parse().ok()
        };
        let created = id("-u").is_none();
        if created {
            let status = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ])
                .status()
                .map_err(|e| format!("useradd: {e}"))?;
            if !status.success() {
                return Err(format!("useradd failed: {status}"));
            }
        }
        let Some((uid, gid)) = id("-u").zip(id("-g")) else {
            if created {
                let _ = Command::new("userdel").arg(name).status();
            }
            return Err(format!("no uid or gid for {name}"));
        };
        Ok(OtherUser {
            uid,
            gid,
            name: name.to_owned(),
            created,
        })
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        if self.created {
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }
}

/// A command that re-runs this test binary as a peer in `mode`.
pub fn peer_command(mode: &PeerMode, max_message_size: usize) -> Command {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut cmd = Command::new(exe);
    cmd.env(PEER_ENV, mode.to_string())
        .env(PEER_MAX_ENV, max_message_size.to_string());
    cmd
}
