//! Event logging: one `tracing` event emitted by an agent, shipped and
//! decoded here. `cargo bench -p benches --bench logging`.

fn main() {
    benches::main();
}

mod logging {
    use divan::Bencher;
    use harness::scenarios::logging::EventRoundTrip;

    #[divan::bench(args = benches::TRANSPORTS)]
    fn event_end_to_end(bencher: Bencher<'_, '_>, transport: &str) {
        let mut events = EventRoundTrip::start(benches::variant(transport)).expect("agent");
        bencher.bench_local(|| events.once().expect("event"));
    }
}
