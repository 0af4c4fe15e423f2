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

mod cases;
mod peer;

use std::future::Future;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{AsyncConnection, Config, Connection};

pub use peer::PeerMode;

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
}

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
}

impl PeerProcess for std::process::Child {
    fn try_wait(&mut self) -> Option<ExitStatus> {
        std::process::Child::try_wait(self).ok().flatten()
    }
    fn kill(&mut self) {
        let _ = std::process::Child::kill(self);
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
    let trials = transports.flat_map(cases::trials).collect();
    libtest_mimic::run(&args, trials).exit();
}

/// A command that re-runs this test binary as a peer in `mode`.
pub fn peer_command(mode: &PeerMode, max_message_size: usize) -> Command {
    let exe = std::env::current_exe().expect("the test binary knows its own path");
    let mut cmd = Command::new(exe);
    cmd.env(PEER_ENV, mode.to_string())
        .env(PEER_MAX_ENV, max_message_size.to_string());
    cmd
}
