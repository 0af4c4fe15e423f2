//! The ipc-core conformance kit, run against ipc-pipe across real processes.

use std::any::Any;
use std::io::Write;
use std::process::Command;

use ipc_core::conformance::{BoxError, Peer, STOP_READING_AFTER, TransportUnderTest};
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

    fn leave_half_a_frame(&self, _config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        // A header promising 1000 bytes, and 500 of them.
        let mut out = std::io::stdout();
        let written = out
            .write_all(&ipc_core::frame::encode_header(1000))
            .and_then(|()| out.write_all(&[7; 500]))
            .and_then(|()| out.flush());
        Some(
            written
                .map(|()| Box::new(()) as Box<dyn Any>)
                .map_err(Into::into),
        )
    }

    fn stop_reading(&self, _config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        // /dev/null over stdin: the pipe from the parent is closed for
        // reading, the one to it stays open and silent.
        std::thread::sleep(STOP_READING_AFTER);
        let replaced = std::fs::File::open("/dev/null")
            .map_err(BoxError::from)
            .and_then(|null| Ok(rustix::stdio::dup2_stdin(null)?));
        Some(replaced.map(|()| Box::new(()) as Box<dyn Any>))
    }
}

fn main() {
    ipc_core::conformance::main(vec![PipeUnderTest]);
}
