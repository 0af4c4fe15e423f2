//! Async spawning and connections on tokio.

use std::process::{Command, ExitStatus};
use std::time::Duration;

use std::ops::{Deref, DerefMut};

use ipc_core::stream_async::{AsyncFramedStream, FrameReadHalf, FrameWriteHalf};
use ipc_core::{
    AsyncConnection, AsyncFrameReceiver, AsyncFrameSender, AsyncSplit, Bytes, Capabilities, Config,
    ConnectError, PeerCredentials, RecvError, SendError,
};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::agent::{EXIT_GRACE, as_agent};
use crate::pipes::ensure_pipe;
use crate::{CAPABILITIES, stdio};

/// The parent's async connection to a spawned agent.
pub type AsyncAgentConnection = AsyncFramedStream<ChildStdout, ChildStdin>;

/// The agent's async connection to its parent over stdio.
pub type AsyncStdioConnection = AsyncFramedStream<pipe::Receiver, pipe::Sender>;

/// The receiving half of a split [`AsyncAgentProcess`] (the parent's).
pub type PipeReadHalf = FrameReadHalf<ChildStdout>;
/// The receiving half of a split [`AsyncStdioConnection`] (the agent's).
pub type StdioReadHalf = FrameReadHalf<pipe::Receiver>;
/// The sending half of a split [`AsyncStdioConnection`] (the agent's).
pub type StdioWriteHalf = ipc_core::stream_async::FrameWriteHalf<pipe::Sender>;

/// Spawns `command` as an agent, like [`spawn`](crate::spawn), on tokio.
/// Must be called inside a tokio runtime.
pub async fn spawn_async(
    mut command: Command,
    config: &Config,
) -> Result<AsyncAgentProcess, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    as_agent(&mut command);
    // If the reaping task never runs (the runtime shuts down first), the
    // child is killed rather than left behind as an orphan.
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()?;
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
    let peer = PeerCredentials {
        pid: child.id(),
        uid: Some(rustix::process::getuid().as_raw()),
        holds_key: false,
    };
    Ok(AsyncAgentProcess {
        conn: Some(
            AsyncFramedStream::new(stdout, stdin, config.clone(), CAPABILITIES).with_peer(peer),
        ),
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

impl Deref for AsyncAgentProcess {
    type Target = AsyncAgentConnection;
    fn deref(&self) -> &AsyncAgentConnection {
        self.conn.as_ref().expect("present until consumed")
    }
}

impl DerefMut for AsyncAgentProcess {
    fn deref_mut(&mut self) -> &mut AsyncAgentConnection {
        self.conn.as_mut().expect("present until consumed")
    }
}

impl Drop for AsyncAgentProcess {
    fn drop(&mut self) {
        drop(self.conn.take());
        if let Some(child) = self.child.take() {
            reap_later(child);
        }
    }
}

/// Gives a child whose connection closed [`EXIT_GRACE`] to exit, then
/// kills and reaps it, on a task when a runtime is there.
fn reap_later(mut child: Child) {
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

impl AsyncFrameSender for AsyncAgentProcess {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.deref_mut().send(frame).await
    }
    fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.deref_mut().gather(frame)
    }
    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.deref_mut().send_timeout(frame, timeout).await
    }
    async fn flush(&mut self) -> Result<(), SendError> {
        self.deref_mut().flush().await
    }
}

impl AsyncFrameReceiver for AsyncAgentProcess {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.deref_mut().recv().await
    }
    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.deref_mut().recv_timeout(timeout).await
    }
}

impl AsyncConnection for AsyncAgentProcess {
    fn capabilities(&self) -> Capabilities {
        self.deref().capabilities()
    }
    fn max_message_size(&self) -> usize {
        self.deref().max_message_size()
    }
    fn peer_credentials(&self) -> PeerCredentials {
        self.deref().peer_credentials()
    }
}

/// The sending half of a split [`AsyncAgentProcess`]. It owns the child:
/// when the half drops, its pipe closes and the child gets [`EXIT_GRACE`]
/// to exit before it is killed and reaped.
#[derive(Debug)]
pub struct PipeWriteHalf {
    // Declared first, so it drops (closing the agent's stdin) first.
    half: FrameWriteHalf<ChildStdin>,
    _child: Reaper,
}

#[derive(Debug)]
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            reap_later(child);
        }
    }
}

impl AsyncFrameSender for PipeWriteHalf {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.half.send(frame).await
    }
    fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.half.gather(frame)
    }
    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.half.send_timeout(frame, timeout).await
    }
    async fn flush(&mut self) -> Result<(), SendError> {
        self.half.flush().await
    }
}

impl AsyncSplit for AsyncAgentProcess {
    type ReadHalf = PipeReadHalf;
    type WriteHalf = PipeWriteHalf;

    fn into_split(self) -> (PipeReadHalf, PipeWriteHalf) {
        let (conn, child) = self.into_parts();
        let (read, write) = conn.into_split();
        (
            read,
            PipeWriteHalf {
                half: write,
                _child: Reaper(Some(child)),
            },
        )
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
    let parent = rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get() as u32);
    let peer = PeerCredentials {
        pid: parent,
        uid: Some(rustix::process::getuid().as_raw()),
        holds_key: false,
    };
    Ok(AsyncFramedStream::new(receiver, sender, config.clone(), CAPABILITIES).with_peer(peer))
}
