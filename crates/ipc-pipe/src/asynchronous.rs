//! Async spawning and connections on tokio.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use ipc_core::stream_async::AsyncFramedStream;
use ipc_core::{Config, ConnectError};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::agent::{EXIT_GRACE, as_agent};
use crate::pipes::ensure_pipe;
use crate::{CAPABILITIES, stdio};

/// The parent's async connection to a spawned agent.
pub type AsyncAgentConnection = AsyncFramedStream<ChildStdout, ChildStdin>;

/// The agent's async connection to its parent over stdio.
pub type AsyncStdioConnection = AsyncFramedStream<pipe::Receiver, pipe::Sender>;

/// Spawns `command` as an agent, like [`spawn`](crate::spawn), on tokio.
/// Must be called inside a tokio runtime.
pub async fn spawn_async(
    mut command: Command,
    config: &Config,
) -> Result<AsyncAgentProcess, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    as_agent(&mut command);
    let mut child = tokio::process::Command::from(command).spawn()?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both streams were set to piped");
    };
    if let Some(size) = config.buffer_size {
        let sized = rustix::pipe::fcntl_setpipe_size(&stdin, size)
            .and_then(|_| rustix::pipe::fcntl_setpipe_size(&stdout, size));
        if let Err(e) = sized {
            // The agent is running: never leave it behind on an error.
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(std::io::Error::from(e).into());
        }
    }
    Ok(AsyncAgentProcess {
        conn: Some(AsyncFramedStream::new(
            stdout,
            stdin,
            config.clone(),
            CAPABILITIES,
        )),
        child: Some(child),
    })
}

/// A running agent process and the async connection to it. Dereferences
/// to its connection.
///
/// Dropping it closes the connection and, inside a tokio runtime, leaves a
/// task that gives the agent [`EXIT_GRACE`] to exit and then kills and reaps
/// it; call [`shutdown`](Self::shutdown) to wait for that yourself.
#[derive(Debug)]
pub struct AsyncAgentProcess {
    // Both are `Some` until `into_parts` or drop takes them.
    conn: Option<AsyncAgentConnection>,
    child: Option<Child>,
}

impl AsyncAgentProcess {
    /// The agent's process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Closes the connection, waits up to `grace` for the agent to exit,
    /// then kills it. Returns its exit status.
    pub async fn shutdown(mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        drop(self.conn.take());
        let child = self.child.take().expect("present until consumed");
        reap(child, grace).await
    }

    /// Splits into the connection and the child process.
    pub fn into_parts(mut self) -> (AsyncAgentConnection, Child) {
        let conn = self.conn.take().expect("present until consumed");
        let child = self.child.take().expect("present until consumed");
        (conn, child)
    }
}

async fn reap(mut child: Child, grace: Duration) -> std::io::Result<ExitStatus> {
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            child.start_kill()?;
            child.wait().await
        }
    }
}

impl std::ops::Deref for AsyncAgentProcess {
    type Target = AsyncAgentConnection;
    fn deref(&self) -> &AsyncAgentConnection {
        self.conn.as_ref().expect("present until consumed")
    }
}

impl std::ops::DerefMut for AsyncAgentProcess {
    fn deref_mut(&mut self) -> &mut AsyncAgentConnection {
        self.conn.as_mut().expect("present until consumed")
    }
}

impl Drop for AsyncAgentProcess {
    fn drop(&mut self) {
        drop(self.conn.take());
        let Some(mut child) = self.child.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let _ = reap(child, EXIT_GRACE).await;
                });
            }
            // No runtime to wait in: kill now; tokio reaps orphans.
            Err(_) => {
                let _ = child.start_kill();
            }
        }
    }
}

/// The agent side on tokio: this process's stdin and stdout as the
/// connection to its parent (see [`connect_stdio`](crate::connect_stdio)).
/// Must be called inside a tokio runtime.
pub fn connect_stdio_async(config: &Config) -> Result<AsyncStdioConnection, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    let (read, write) = stdio::take_stdio()?;
    for fd in [&read, &write] {
        ensure_pipe(std::os::fd::AsFd::as_fd(fd), "stdio")?;
        if let Some(size) = config.buffer_size {
            rustix::pipe::fcntl_setpipe_size(fd, size).map_err(std::io::Error::from)?;
        }
    }
    let receiver = pipe::Receiver::from_owned_fd(read)?;
    let sender = pipe::Sender::from_owned_fd(write)?;
    Ok(AsyncFramedStream::new(
        receiver,
        sender,
        config.clone(),
        CAPABILITIES,
    ))
}
