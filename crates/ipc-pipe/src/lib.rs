#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod agent;
#[cfg(feature = "tokio")]
mod asynchronous;
mod pipes;
mod stdio;

use ipc_core::stream::FramedStream;
use ipc_core::{Address, Capabilities, Config, ConnectError, Connector, MAX_MESSAGE_SIZE_LIMIT};

pub use agent::{AgentProcess, EXIT_GRACE, spawn};
#[cfg(feature = "tokio")]
pub use asynchronous::{
    AsyncAgentConnection, AsyncAgentProcess, AsyncStdioConnection, PipeReadHalf, PipeWriteHalf,
    StdioReadHalf, StdioWriteHalf, connect_stdio_async, spawn_async,
};
pub use pipes::PipePair;

/// A blocking connection over a pair of pipes (either side).
pub type PipeConnection = FramedStream<PipePair>;

/// What this transport supports.
pub const CAPABILITIES: Capabilities = {
    let mut caps = Capabilities::new(MAX_MESSAGE_SIZE_LIMIT);
    caps.async_io = cfg!(feature = "tokio");
    caps
};

/// The pipe transport, as a value for generic code. Its only address is
/// `pipe:stdio`: `Pipe.connect(&Address::Stdio, &config)` is the agent's
/// connection to the parent that spawned it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pipe;

impl Connector for Pipe {
    type Connection = PipeConnection;

    /// Takes this process's stdin and stdout as the connection to its
    /// parent (once per process; see [`connect_stdio`]).
    fn connect(&self, address: &Address, config: &Config) -> Result<PipeConnection, ConnectError> {
        match address {
            Address::Stdio => connect_stdio(config),
            other => Err(ConnectError::WrongTransport {
                address: other.to_string(),
                expected: "pipe",
            }),
        }
    }
}

/// The agent side: takes this process's stdin and stdout as the connection
/// to the parent that spawned it.
///
/// The pipes move to new descriptors; fd 0 is reopened on `/dev/null` and
/// fd 1 on stderr, so a stray `println!` lands in the logs instead of
/// corrupting the frame stream. Works once per process.
///
/// Errors: [`ConnectError::Incompatible`] if stdin or stdout is not a pipe
/// (the program was not started by [`spawn`]), [`ConnectError::AddrInUse`]
/// on a second call.
pub fn connect_stdio(config: &Config) -> Result<PipeConnection, ConnectError> {
    stdio::connect(config)
}
