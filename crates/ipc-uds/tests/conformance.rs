//! The ipc-core conformance kit, run against ipc-uds across real processes.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::conformance::{BoxError, Peer, TransportUnderTest};
use ipc_core::{ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config, Connector, Listener};
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
        let mut listener = UdsListener::bind(unique_path(), config)?;
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
        let mut listener = AsyncUdsListener::bind(unique_path(), config)?;
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
}

fn main() {
    ipc_core::conformance::main(vec![UdsUnderTest]);
}
