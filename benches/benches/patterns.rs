//! Multi-agent patterns: `cargo bench -p benches --bench patterns`. Each
//! iteration is one round: a message to every agent and every reply back
//! (fan-out), or one message through a chain of relays (pipeline).

fn main() {
    benches::main();
}

mod patterns {
    use divan::Bencher;
    use harness::task::{AgentTask, Role};
    use harness::transport::spawn_agent;
    use ipc_core::{FrameReceiver, FrameSender, payload};

    #[divan::bench(args = benches::TRANSPORTS, consts = [2, 4, 8])]
    fn fan_out_round<const AGENTS: usize>(bencher: Bencher<'_, '_>, transport: &str) {
        let variant = benches::variant(transport);
        let mut agents: Vec<_> = (0..AGENTS)
            .map(|_| {
                spawn_agent(&AgentTask {
                    cpu: None,
                    role: Role::Echo,
                    variant,
                })
                .expect("agent")
            })
            .collect();
        let mut msg = vec![0u8; harness::scenarios::patterns::PATTERN_SIZE];
        let mut seq = 0;
        bencher.bench_local(|| {
            payload::fill(seq, &mut msg);
            for agent in &mut agents {
                agent.conn().send(&msg).expect("send");
            }
            for agent in &mut agents {
                payload::verify(seq, &agent.conn().recv().expect("recv")).expect("intact");
            }
            seq += 1;
        });
    }

    #[divan::bench(args = ["uds", "shm"], consts = [2, 4])]
    fn pipeline_through<const AGENTS: usize>(bencher: Bencher<'_, '_>, transport: &str) {
        // The runner's pipeline scenario sets the chain up; here one
        // round trip through it is timed by running it with tiny counts.
        let variant = benches::variant(transport);
        bencher.bench_local(|| {
            harness::scenarios::patterns::pipeline(variant, AGENTS, 10, false).expect("pipeline")
        });
    }
}
