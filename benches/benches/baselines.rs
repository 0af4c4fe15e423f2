//! The bare mechanisms: `cargo bench -p benches --bench baselines`.

fn main() {
    benches::main();
}

mod baselines {
    use benches::SIZES;
    use divan::Bencher;
    use divan::counter::BytesCount;
    use harness::scenarios::baselines::{RawPipe, RawSocket, SharedWordPingPong};

    #[divan::bench(args = SIZES)]
    fn pipe(bencher: Bencher<'_, '_>, size: usize) {
        let mut raw = RawPipe::start(size, None).expect("child");
        bencher.bench_local(|| raw.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn socketpair(bencher: Bencher<'_, '_>, size: usize) {
        let mut raw = RawSocket::start(size, None).expect("child");
        bencher.bench_local(|| raw.once().expect("round trip"));
    }

    #[divan::bench]
    fn cache_line(bencher: Bencher<'_, '_>) {
        let mut ping = SharedWordPingPong::spinning(None).expect("child");
        bencher.bench_local(|| ping.once().expect("round trip"));
    }

    #[divan::bench]
    fn futex(bencher: Bencher<'_, '_>) {
        let mut ping = SharedWordPingPong::sleeping(None).expect("child");
        bencher.bench_local(|| ping.once().expect("round trip"));
    }

    #[divan::bench(args = [64, 4096, 1 << 20, 64 << 20])]
    fn memcpy(bencher: Bencher<'_, '_>, size: usize) {
        let src = vec![1u8; size];
        let mut dst = vec![0u8; size];
        bencher
            .counter(BytesCount::new(size))
            .bench_local(|| dst.copy_from_slice(divan::black_box(&src)));
    }
}
