//! The ipc-core conformance kit, run against ipc-pipe across real processes.

use std::process::Command;

use ipc_core::conformance::{BoxError, Peer, TransportUnderTest};
use ipc_core::{Address, Config, Connector};
use ipc_pipe::{AsyncAgentConnection, AsyncStdioConnection, Pipe, PipeConnection};

struct PipeUnderTest;

impl TransportUnderTest for PipeUnderTest {
    fn name(&self) -> String {
        "pipe".into()
    }

    type Conn = PipeConnection;
    type AsyncConn = AsyncAgentConnection;
    type AsyncPeerConn = AsyncStdioConnection;

    fn spawn(
        &self,
        mut peer: Command,
        config: &Config,
    ) -> Result<(PipeConnection, Peer), BoxError> {
        let (conn, child) = ipc_pipe::spawn(&mut peer, config)?.into_parts();
        Ok((conn, Peer::new(child)))
    }

    async fn spawn_async(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<(AsyncAgentConnection, Peer), BoxError> {
        let (conn, child) = ipc_pipe::spawn_async(peer, config).await?.into_parts();
        Ok((conn, Peer::new(child)))
    }

    fn connect_to_parent(&self, config: &Config) -> Result<PipeConnection, BoxError> {
        Ok(Pipe.connect(&Address::Stdio, config)?)
    }

    async fn connect_to_parent_async(
        &self,
        config: &Config,
    ) -> Result<AsyncStdioConnection, BoxError> {
        Ok(ipc_pipe::connect_stdio_async(config)?)
    }
}

fn main() {
    ipc_core::conformance::main(vec![PipeUnderTest]);
}
