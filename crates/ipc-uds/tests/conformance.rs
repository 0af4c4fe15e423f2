//! The ipc-core conformance kit, run against ipc-uds across real processes.

use std::any::Any;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::conformance::{BoxError, Peer, STOP_READING_AFTER, TransportUnderTest};
use ipc_core::{
    ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config, ConnectError, Connector, Listener,
};
use ipc_uds::{AsyncUds, AsyncUdsConnection, AsyncUdsListener, Uds, UdsConnection, UdsListener};

struct UdsUnderTest;

/// A socket path no other test (or test run) uses; the listener removes
/// the file when it drops.
fn unique_path() -> std::path::PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ipc-uds-conf-{}-{n}.sock", std::process::id()))
}

fn start(mut peer: Command, address: &Address) -> Result<std::process::Child, BoxError> {
    peer.env(ADDRESS_ENV, address.to_string())
        .stdin(Stdio::null());
    Ok(peer.spawn()?)
}

impl TransportUnderTest for UdsUnderTest {
    fn name(&self) -> String {
        "uds".into()
    }

    type Conn = UdsConnection;
    type AsyncConn = AsyncUdsConnection;
    type AsyncPeerConn = AsyncUdsConnection;

    fn spawn(&self, peer: Command, config: &Config) -> Result<(UdsConnection, Peer), BoxError> {
        let mut listener = UdsListener::bind_path(unique_path(), config)?;
        let child = start(peer, listener.address())?;
        let peer = Peer::new(child);
        let conn = listener.accept_timeout(Duration::from_secs(30))?;
        Ok((conn, peer))
    }

    async fn spawn_async(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<(AsyncUdsConnection, Peer), BoxError> {
        let mut listener = AsyncUdsListener::bind_path(unique_path(), config)?;
        let child = start(peer, listener.address())?;
        let peer = Peer::new(child);
        let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await??;
        Ok((conn, peer))
    }

    fn connect_to_parent(&self, config: &Config) -> Result<UdsConnection, BoxError> {
        Ok(Uds.connect(&Address::from_env()?, config)?)
    }

    async fn connect_to_parent_async(
        &self,
        config: &Config,
    ) -> Result<AsyncUdsConnection, BoxError> {
        Ok(AsyncUds.connect(&Address::from_env()?, config).await?)
    }

    fn spawn_killed(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<Option<UdsConnection>, BoxError> {
        let mut listener = UdsListener::bind_path(unique_path(), config)?;
        let mut child = start(peer, listener.address())?;
        child.kill()?;
        child.wait()?;
        match listener.accept_timeout(Duration::from_millis(100)) {
            Err(ConnectError::Timeout) => Ok(None),
            other => Ok(Some(other?)),
        }
    }

    fn leave_half_a_frame(&self, _config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        Some(parent_socket().and_then(|mut raw| {
            raw.write_all(&ipc_core::frame::encode_header(1000))?;
            raw.write_all(&[7; 500])?;
            Ok(Box::new(raw) as Box<dyn Any>)
        }))
    }

    fn stop_reading(&self, _config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        Some(parent_socket().and_then(|raw| {
            std::thread::sleep(STOP_READING_AFTER);
            raw.shutdown(std::net::Shutdown::Read)?;
            Ok(Box::new(raw) as Box<dyn Any>)
        }))
    }

    fn fresh_address(&self) -> Option<Address> {
        Some(Address::Uds(unique_path()))
    }

    fn bind(&self, address: &Address, config: &Config) -> Result<Box<dyn Any>, BoxError> {
        let Address::Uds(path) = address else {
            return Err(format!("not uds: {address}").into());
        };
        Ok(Box::new(UdsListener::bind_path(path, config)?))
    }

    fn connect(&self, address: &Address, config: &Config) -> Result<UdsConnection, ConnectError> {
        Uds.connect(address, config)
    }
}

/// A plain socket to the parent (for peers that break the framing).
fn parent_socket() -> Result<UnixStream, BoxError> {
    match Address::from_env()? {
        Address::Uds(path) => Ok(UnixStream::connect(path)?),
        other => Err(format!("not uds: {other}").into()),
    }
}

fn main() {
    ipc_core::conformance::main(vec![UdsUnderTest]);
}
