//! One-way streaming: `cargo bench -p benches --bench throughput`. Each
//! iteration writes and sends one verified message to a sink agent.

fn main() {
    benches::main();
}

mod throughput {
    use benches::{SIZES, variant};
    use divan::Bencher;
    use divan::counter::BytesCount;
    use harness::Variant;
    use harness::scenarios::throughput::Stream;

    fn stream(bencher: Bencher<'_, '_>, variant: Variant, size: usize) {
        let mut stream = Stream::start(variant, size, None).expect("sink agent");
        bencher
            .counter(BytesCount::new(size))
            .bench_local(|| stream.send_one().expect("send"));
    }

    #[divan::bench(args = SIZES)]
    fn pipe(bencher: Bencher<'_, '_>, size: usize) {
        stream(bencher, variant("pipe"), size);
    }

    #[divan::bench(args = SIZES)]
    fn uds(bencher: Bencher<'_, '_>, size: usize) {
        stream(bencher, variant("uds"), size);
    }

    #[divan::bench(args = SIZES)]
    fn shm(bencher: Bencher<'_, '_>, size: usize) {
        stream(bencher, variant("shm"), size);
    }

    #[divan::bench(args = SIZES)]
    fn shm_zero_copy(bencher: Bencher<'_, '_>, size: usize) {
        stream(bencher, Variant::shm_zero_copy(), size);
    }
}
