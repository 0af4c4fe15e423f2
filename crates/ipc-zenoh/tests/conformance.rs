//! The ipc-core conformance kit, run against ipc-zenoh across real
//! processes on loopback (each test's own hub on a free port).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::conformance::{BoxError, Peer, TransportUnderTest};
use ipc_core::{
    ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config, ConnectError, Connector, Listener,
};
use ipc_zenoh::{
    AsyncZenoh, AsyncZenohConnection, AsyncZenohListener, Zenoh, ZenohConnection, ZenohListener,
};

struct ZenohUnderTest;

/// A hub name no other test uses, listening on loopback at a free port.
fn unique_address() -> Address {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("zenoh:conf-{}-{n}@tcp/127.0.0.1:0", std::process::id())
        .parse()
        .expect("a valid address")
}

fn start(mut peer: Command, address: &Address) -> Result<std::process::Child, BoxError> {
    peer.env(ADDRESS_ENV, address.to_string())
        .stdin(Stdio::null());
    Ok(peer.spawn()?)
}

impl TransportUnderTest for ZenohUnderTest {
    fn name(&self) -> String {
        "zenoh".into()
    }

    type Conn = ZenohConnection;
    type AsyncConn = AsyncZenohConnection;
    type AsyncPeerConn = AsyncZenohConnection;

    fn spawn(&self, peer: Command, config: &Config) -> Result<(ZenohConnection, Peer), BoxError> {
        let mut listener = ZenohListener::bind(&unique_address(), config)?;
        let child = start(peer, listener.address())?;
        let peer = Peer::new(child);
        let conn = listener.accept_timeout(Duration::from_secs(30))?;
        Ok((conn, peer))
    }

    async fn spawn_async(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<(AsyncZenohConnection, Peer), BoxError> {
        let mut listener = AsyncZenohListener::bind(&unique_address(), config)?;
        let child = start(peer, listener.address())?;
        let peer = Peer::new(child);
        let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await??;
        Ok((conn, peer))
    }

    fn connect_to_parent(&self, config: &Config) -> Result<ZenohConnection, BoxError> {
        Ok(Zenoh.connect(&Address::from_env()?, config)?)
    }

    async fn connect_to_parent_async(
        &self,
        config: &Config,
    ) -> Result<AsyncZenohConnection, BoxError> {
        Ok(AsyncZenoh.connect(&Address::from_env()?, config).await?)
    }

    fn spawn_killed(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<Option<ZenohConnection>, BoxError> {
        let mut listener = ZenohListener::bind(&unique_address(), config)?;
        let mut child = start(peer, listener.address())?;
        child.kill()?;
        child.wait()?;
        match listener.accept_timeout(Duration::from_millis(100)) {
            Err(ConnectError::Timeout) => Ok(None),
            other => Ok(Some(other?)),
        }
    }
}

fn main() {
    ipc_core::conformance::main(vec![ZenohUnderTest]);
}
