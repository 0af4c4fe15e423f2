//! The timing side of the resources group (CPU and RSS figures come from
//! the runner): starting a connected agent, and a connect/disconnect
//! cycle. `cargo bench -p benches --bench resources`.

fn main() {
    benches::main();
}

mod resources {
    use divan::Bencher;
    use harness::task::{AgentTask, Role};
    use harness::transport::{connect, spawn_agent};
    use ipc_core::Listener as _;
    use ipc_core::{FrameReceiver, FrameSender};

    /// Spawn an idle agent, connect it, and reap it.
    #[divan::bench(args = benches::TRANSPORTS, sample_count = 20)]
    fn spawn_connected_agent(bencher: Bencher<'_, '_>, transport: &str) {
        let task = AgentTask {
            cpu: None,
            role: Role::Idle,
            variant: benches::variant(transport),
        };
        bencher.bench_local(|| drop(spawn_agent(&task).expect("agent")));
    }

    /// Bind, connect (both ends in this process), exchange one message,
    /// close: what a runtime pays per short-lived connection.
    #[divan::bench(args = ["uds", "shm"])]
    fn connect_disconnect(bencher: Bencher<'_, '_>, transport: &str) {
        let variant = benches::variant(transport);
        bencher.bench_local(|| {
            let mut listener = harness::transport::bind_unique(&variant).expect("bind");
            let mut client = connect(&variant, listener.address()).expect("connect");
            let mut server = listener
                .accept_timeout(std::time::Duration::from_secs(10))
                .expect("accept");
            client.send(b"hi").expect("send");
            server.recv().expect("recv");
        });
    }
}
