//! Every transport reached by its address alone, blocking and async: a
//! round trip each way, a hub joined through the facade, shared memory's
//! loans kept, and clear errors for what an address cannot do.

use std::time::Duration;

use ipc_core::{
    Address, AsyncFrameReceiver, AsyncFrameSender, AsyncListener, AsyncSplit, Config, ConnectError,
    FrameReceiver, FrameSender, Listener,
};

fn addresses(dir: &tempfile::TempDir, tag: &str) -> Vec<Address> {
    vec![
        Address::Uds(dir.path().join(format!("{tag}.sock"))),
        Address::Shm(format!("any-{tag}-{}", std::process::id())),
    ]
}

#[test]
fn blocking_round_trips_by_address() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default();
    for address in addresses(&dir, "blocking") {
        let mut listener = ipc_any::bind(&address, &config).unwrap();
        assert_eq!(listener.address(), &address);
        let mut agent = ipc_any::connect(&address, &config).unwrap();
        let mut hub = listener.accept_timeout(Duration::from_secs(10)).unwrap();
        agent.send(b"task").unwrap();
        assert_eq!(&hub.recv().unwrap()[..], b"task", "{address}");
        hub.send(b"result").unwrap();
        assert_eq!(&agent.recv().unwrap()[..], b"result", "{address}");
        // The transport's own lender comes through: shared memory lends
        // memory files for large frames, a socket heap memory.
        let lent = agent.lender().loan(2 << 20).unwrap().is_lent();
        assert_eq!(lent, matches!(address, Address::Shm(_)), "{address}");
    }
}

#[test]
fn async_round_trips_and_halves_by_address() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        for address in addresses(&dir, "async") {
            let mut listener = ipc_any::bind_async(&address, &config).unwrap();
            let agent = ipc_any::connect_async(&address, &config).await.unwrap();
            let mut hub = listener.accept().await.unwrap();
            let (mut read, mut write) = agent.into_split();
            write.send(b"ping").await.unwrap();
            assert_eq!(&hub.recv().await.unwrap()[..], b"ping", "{address}");
            hub.send(b"pong").await.unwrap();
            let got = read.recv_timeout(Duration::from_secs(10)).await.unwrap();
            assert_eq!(&got[..], b"pong", "{address}");
        }
    });
}

#[test]
fn a_hub_listens_and_an_agent_joins_through_the_facade() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::default();
        for address in addresses(&dir, "hub") {
            let hub: ipc_hub::Hub = ipc_hub::Hub::new(ipc_hub::HubConfig::default()).unwrap();
            hub.handle()
                .listen(ipc_any::bind_async(&address, &config).unwrap())
                .unwrap();
            let conn = ipc_any::connect_async(&address, &config).await.unwrap();
            let agent: ipc_hub::Agent =
                ipc_hub::Agent::join(conn, "any", ipc_hub::HubConfig::default())
                    .await
                    .unwrap();
            let serving = tokio::spawn(agent.serve(|n: u64| async move { Ok::<_, String>(n + 1) }));
            let mut hub = hub;
            let peer = hub
                .wait_for_peers(1, Duration::from_secs(10))
                .await
                .unwrap()
                .remove(0);
            let got: u64 = hub
                .handle()
                .call(peer.id, &41u64, Duration::from_secs(10))
                .await
                .unwrap();
            assert_eq!(got, 42, "{address}");
            hub.shutdown(Duration::from_secs(5)).await;
            serving.await.unwrap();
        }
    });
}

#[test]
fn what_an_address_cannot_do_is_an_error() {
    let config = Config::default();
    // A pipe agent is started by its hub: there is nothing to bind.
    assert!(matches!(
        ipc_any::bind(&Address::Stdio, &config),
        Err(ConnectError::WrongTransport { .. })
    ));
    assert!(matches!(
        ipc_any::bind_async(&Address::Stdio, &config),
        Err(ConnectError::WrongTransport { .. })
    ));
    // Nobody listens here.
    let dir = tempfile::tempdir().unwrap();
    let nobody = Address::Uds(dir.path().join("nobody.sock"));
    assert!(matches!(
        ipc_any::connect(&nobody, &config),
        Err(ConnectError::NotFound(_))
    ));
    #[cfg(not(feature = "zenoh"))]
    {
        let zenoh: Address = "zenoh:hub@tcp/127.0.0.1:7447".parse().unwrap();
        assert!(matches!(
            ipc_any::connect(&zenoh, &config),
            Err(ConnectError::WrongTransport { .. })
        ));
    }
}

/// Every transport's listeners bind the same way, blocking and async: an
/// `&Address` and a `Config` (typed helpers such as `bind_path` stay
/// beside it). A listener whose shape drifts stops this from compiling;
/// binding through each shows the address it reports is the one given.
#[tokio::test]
async fn every_listener_binds_from_an_address_and_a_config() {
    type Bind<L> = fn(&Address, &Config) -> Result<L, ConnectError>;
    let dir = tempfile::tempdir().unwrap();
    let uds: Address = format!("uds:{}", dir.path().join("shape.sock").display())
        .parse()
        .unwrap();
    let shm: Address = format!("shm:shape-{}", std::process::id()).parse().unwrap();
    let config = Config::default();

    let bind: Bind<ipc_uds::UdsListener> = ipc_uds::UdsListener::bind;
    assert_eq!(bind(&uds, &config).unwrap().address(), &uds);
    let bind: Bind<ipc_uds::AsyncUdsListener> = ipc_uds::AsyncUdsListener::bind;
    assert_eq!(AsyncListener::address(&bind(&uds, &config).unwrap()), &uds);
    let bind: Bind<ipc_shm::ShmListener> = ipc_shm::ShmListener::bind;
    assert_eq!(bind(&shm, &config).unwrap().address(), &shm);
    let bind: Bind<ipc_shm::AsyncShmListener> = ipc_shm::AsyncShmListener::bind;
    assert_eq!(AsyncListener::address(&bind(&shm, &config).unwrap()), &shm);
    #[cfg(feature = "zenoh")]
    {
        let _: Bind<ipc_zenoh::ZenohListener> = ipc_zenoh::ZenohListener::bind;
        let _: Bind<ipc_zenoh::AsyncZenohListener> = ipc_zenoh::AsyncZenohListener::bind;
    }
    // A wrong transport's address is refused, not misread.
    assert!(matches!(
        ipc_uds::UdsListener::bind(&shm, &config),
        Err(ConnectError::WrongTransport { .. })
    ));
}
