//! Round-trip latency: `cargo bench -p benches --bench latency`.

fn main() {
    benches::main();
}

mod latency {
    use benches::{SIZES, variant};
    use divan::Bencher;
    use harness::scenarios::latency::RoundTrip;
    use harness::{Strategy, Variant};

    fn round_trips(bencher: Bencher<'_, '_>, variant: Variant, size: usize) {
        let mut rt = RoundTrip::start(variant, size).expect("echo agent");
        bencher.bench_local(|| rt.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn pipe(bencher: Bencher<'_, '_>, size: usize) {
        round_trips(bencher, variant("pipe"), size);
    }

    #[divan::bench(args = SIZES)]
    fn uds(bencher: Bencher<'_, '_>, size: usize) {
        round_trips(bencher, variant("uds"), size);
    }

    #[divan::bench(args = SIZES)]
    fn shm(bencher: Bencher<'_, '_>, size: usize) {
        round_trips(bencher, variant("shm"), size);
    }

    #[divan::bench(args = SIZES)]
    fn shm_spin(bencher: Bencher<'_, '_>, size: usize) {
        round_trips(bencher, Variant::shm(Strategy::Spin), size);
    }

    #[divan::bench]
    fn shm_blocking_64(bencher: Bencher<'_, '_>) {
        round_trips(bencher, Variant::shm(Strategy::Blocking), 64);
    }
}
