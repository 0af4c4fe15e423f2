//! The ipc-core conformance kit, run against ipc-shm across real processes,
//! once per wait strategy.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipc_core::conformance::{BoxError, Peer, TransportUnderTest};
use ipc_core::{
    ADDRESS_ENV, Address, AsyncConnector, AsyncListener, Config, Connector, Listener, WaitStrategy,
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
        let listener = ShmListener::bind(&unique_name(), &config)?;
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
        let mut listener = AsyncShmListener::bind(&unique_name(), &config)?;
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
}

fn main() {
    let transports = STRATEGIES
        .iter()
        .map(|&(name, strategy)| ShmUnderTest { name, strategy })
        .collect();
    ipc_core::conformance::main(transports);
}
