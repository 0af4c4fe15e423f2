//! The ipc-core conformance kit, run against ipc-shm across real processes,
//! once per wait strategy.

use std::any::Any;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::conformance::{BoxError, Peer, TransportUnderTest};
use ipc_core::{
    ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config, ConnectError, Connector,
    FrameSender, Listener, WaitStrategy,
};
use ipc_shm::{AsyncShm, AsyncShmConnection, AsyncShmListener, Shm, ShmConnection, ShmListener};

/// Tells the peer process which strategy its side uses.
const STRATEGY_ENV: &str = "IPC_SHM_TEST_STRATEGY";

const STRATEGIES: [(&str, WaitStrategy); 4] = [
    ("adaptive", WaitStrategy::Adaptive),
    ("blocking", WaitStrategy::Blocking),
    ("spin_yield", WaitStrategy::SpinYield),
    ("spin", WaitStrategy::Spin),
];

struct ShmUnderTest {
    name: &'static str,
    strategy: WaitStrategy,
}

fn unique_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("conf-{}-{n}", std::process::id())
}

impl ShmUnderTest {
    fn start(&self, mut peer: Command, config: &Config) -> Result<(ShmListener, Peer), BoxError> {
        let config = config.clone().with_wait_strategy(self.strategy);
        let listener = ShmListener::bind_name(&unique_name(), &config)?;
        peer.env(ADDRESS_ENV, listener.address().to_string())
            .env(STRATEGY_ENV, self.name)
            .stdin(Stdio::null());
        Ok((listener, Peer::new(peer.spawn()?)))
    }

    fn peer_config(config: &Config) -> Result<Config, BoxError> {
        let wanted = std::env::var(STRATEGY_ENV)?;
        let (_, strategy) = STRATEGIES
            .iter()
            .find(|(name, _)| *name == wanted)
            .ok_or("unknown strategy")?;
        Ok(config.clone().with_wait_strategy(*strategy))
    }
}

impl TransportUnderTest for ShmUnderTest {
    type Conn = ShmConnection;
    type AsyncConn = AsyncShmConnection;
    type AsyncPeerConn = AsyncShmConnection;

    fn name(&self) -> String {
        format!("shm_{}", self.name)
    }

    fn spawn(&self, peer: Command, config: &Config) -> Result<(ShmConnection, Peer), BoxError> {
        let (mut listener, peer) = self.start(peer, config)?;
        let conn = listener.accept_timeout(Duration::from_secs(30))?;
        Ok((conn, peer))
    }

    async fn spawn_async(
        &self,
        mut peer: Command,
        config: &Config,
    ) -> Result<(AsyncShmConnection, Peer), BoxError> {
        let config = config.clone().with_wait_strategy(self.strategy);
        let mut listener = AsyncShmListener::bind_name(&unique_name(), &config)?;
        peer.env(ADDRESS_ENV, listener.address().to_string())
            .env(STRATEGY_ENV, self.name)
            .stdin(Stdio::null());
        let peer = Peer::new(peer.spawn()?);
        let conn = tokio::time::timeout(Duration::from_secs(30), listener.accept()).await??;
        Ok((conn, peer))
    }

    fn connect_to_parent(&self, config: &Config) -> Result<ShmConnection, BoxError> {
        Ok(Shm.connect(&Address::from_env()?, &Self::peer_config(config)?)?)
    }

    async fn connect_to_parent_async(
        &self,
        config: &Config,
    ) -> Result<AsyncShmConnection, BoxError> {
        Ok(AsyncShm
            .connect(&Address::from_env()?, &Self::peer_config(config)?)
            .await?)
    }

    /// Fault cases kill many peers: run them once, with the default wait.
    fn fault_cases(&self) -> bool {
        self.strategy == WaitStrategy::Adaptive
    }

    fn spawn_killed(
        &self,
        peer: Command,
        config: &Config,
    ) -> Result<Option<ShmConnection>, BoxError> {
        let (mut listener, mut peer) = self.start(peer, config)?;
        peer.kill();
        match listener.accept_timeout(Duration::from_millis(100)) {
            Err(ConnectError::Timeout) => Ok(None),
            other => Ok(Some(other?)),
        }
    }

    fn leave_half_a_frame(&self, config: &Config) -> Option<Result<Box<dyn Any>, BoxError>> {
        // A message four times the ring, copied through it in chunks
        // (blobs off: by reference a message is published whole or not at
        // all): its first chunks go in, the rest waits and is held back.
        Some(self.connect_to_parent(config).map(|mut conn| {
            conn.set_blob_threshold(None);
            let _ = conn.send_timeout(&vec![7; 1 << 20], Duration::from_millis(50));
            Box::new(conn) as Box<dyn Any>
        }))
    }

    fn fresh_address(&self) -> Option<Address> {
        Some(Address::Shm(unique_name()))
    }

    fn bind(&self, address: &Address, config: &Config) -> Result<Box<dyn Any>, BoxError> {
        let Address::Shm(name) = address else {
            return Err(format!("not shm: {address}").into());
        };
        Ok(Box::new(ShmListener::bind_name(name, config)?))
    }

    fn connect(&self, address: &Address, config: &Config) -> Result<ShmConnection, ConnectError> {
        Shm.connect(address, config)
    }
}

fn main() {
    let transports = STRATEGIES
        .iter()
        .map(|&(name, strategy)| ShmUnderTest { name, strategy })
        .collect();
    ipc_core::conformance::main(transports);
}
