//! The parent side: spawn an agent and talk to it over its stdio.

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ipc_core::stream::FramedStream;
use ipc_core::{ADDRESS_ENV, Address, Config, ConnectError};

use crate::pipes::PipePair;
use crate::{CAPABILITIES, PipeConnection};

/// How long dropping an [`AgentProcess`] waits for the agent to exit after
/// its stdin closes, before killing it.
pub const EXIT_GRACE: Duration = Duration::from_secs(1);

/// Spawns `command` as an agent whose stdin and stdout are the connection.
///
/// The agent's stderr is left as the command sets it (inherited by
/// default), free for its logs. [`ADDRESS_ENV`] is set to `pipe:stdio` so an
/// agent that serves several transports knows which one to use.
///
/// Errors: [`ConnectError::Io`] if the program cannot be started,
/// [`ConnectError::InvalidConfig`].
pub fn spawn(command: &mut Command, config: &Config) -> Result<AgentProcess, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    let mut child = as_agent(command).spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both streams were set to piped");
    };
    let pair = PipePair::new(OwnedFd::from(stdout), OwnedFd::from(stdin), config);
    match pair {
        Ok(pair) => Ok(AgentProcess {
            conn: Some(FramedStream::new(pair, config.clone(), CAPABILITIES)),
            child: Some(child),
        }),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        }
    }
}

/// Sets `command` up as an agent: stdin and stdout piped to us, and
/// [`ADDRESS_ENV`] saying so.
pub(crate) fn as_agent(command: &mut Command) -> &mut Command {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .env(ADDRESS_ENV, Address::Stdio.to_string())
}

/// A running agent process and the connection to it.
///
/// Dereferences to its [`PipeConnection`], so `agent.send(..)` and
/// `agent.recv()` work directly. Dropping it closes the connection, gives
/// the agent [`EXIT_GRACE`] to exit, kills it if it has not, and reaps it:
/// no zombie is left behind.
#[derive(Debug)]
pub struct AgentProcess {
    // Both are `Some` until `into_parts` or drop takes them.
    conn: Option<PipeConnection>,
    child: Option<Child>,
}

impl AgentProcess {
    /// The agent's process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Closes the connection and waits up to `grace` for the agent to exit,
    /// then kills it. Returns its exit status.
    pub fn shutdown(mut self, grace: Duration) -> io::Result<ExitStatus> {
        drop(self.conn.take());
        let child = self.child.take().expect("present until consumed");
        reap(child, grace)
    }

    /// Splits into the connection and the child process; the caller then
    /// owns the duty to reap the child.
    pub fn into_parts(mut self) -> (PipeConnection, Child) {
        let conn = self.conn.take().expect("present until consumed");
        let child = self.child.take().expect("present until consumed");
        (conn, child)
    }
}

impl Deref for AgentProcess {
    type Target = PipeConnection;
    fn deref(&self) -> &PipeConnection {
        self.conn.as_ref().expect("present until consumed")
    }
}

impl DerefMut for AgentProcess {
    fn deref_mut(&mut self) -> &mut PipeConnection {
        self.conn.as_mut().expect("present until consumed")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        drop(self.conn.take());
        if let Some(child) = self.child.take() {
            let _ = reap(child, EXIT_GRACE);
        }
    }
}

/// Waits up to `grace` for `child` to exit, then kills it; always reaps.
fn reap(mut child: Child, grace: Duration) -> io::Result<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
