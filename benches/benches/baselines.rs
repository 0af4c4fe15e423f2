//! The bare mechanisms: `cargo bench -p benches --bench baselines`.

fn main() {
    benches::main();
}

mod baselines {
    use benches::SIZES;
    use divan::Bencher;
    use divan::counter::BytesCount;
    use harness::scenarios::baselines::{
        Echoing, Hand, RawPipe, RawSocket, SharedEcho, SocketKind,
    };

    #[divan::bench(args = SIZES)]
    fn pipe(bencher: Bencher<'_, '_>, size: usize) {
        let mut raw = RawPipe::start(size, None).expect("child");
        bencher.bench_local(|| raw.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn socketpair(bencher: Bencher<'_, '_>, size: usize) {
        let mut raw = RawSocket::start(size, None, SocketKind::Unix).expect("child");
        bencher.bench_local(|| raw.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn tcp_loopback(bencher: Bencher<'_, '_>, size: usize) {
        let mut raw = RawSocket::start(size, None, SocketKind::TcpLoopback).expect("child");
        bencher.bench_local(|| raw.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn shared_buffer(bencher: Bencher<'_, '_>, size: usize) {
        let mut echo = SharedEcho::start(size, Hand::Spin, None).expect("child");
        bencher.bench_local(|| echo.once().expect("round trip"));
    }

    #[divan::bench(args = SIZES)]
    fn futex(bencher: Bencher<'_, '_>, size: usize) {
        let mut echo = SharedEcho::start(size, Hand::Adaptive, None).expect("child");
        bencher.bench_local(|| echo.once().expect("round trip"));
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
