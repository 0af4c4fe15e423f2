//! Async connections in the ecosystem: owned halves that read and write at
//! once, `Stream`/`Sink` adapters, and cancel safety under `select!`.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use ipc_core::stream_async::AsyncFramedStream;
use ipc_core::{
    AsyncFrameReceiver, AsyncFrameSender, AsyncSplit, Bytes, Capabilities, Config, RecvError,
    frame::encode_header, payload,
};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

type Conn = AsyncFramedStream<OwnedReadHalf, OwnedWriteHalf>;

/// Bounds every wait, so a bug fails the test instead of hanging it.
const SAFETY: Duration = Duration::from_secs(60);

fn wrap(s: UnixStream) -> Conn {
    let (r, w) = s.into_split();
    AsyncFramedStream::new(r, w, Config::default(), Capabilities::new(usize::MAX))
}

fn pair() -> (Conn, Conn) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    (wrap(a), wrap(b))
}

fn message(seq: u64, size: usize) -> Vec<u8> {
    let mut m = vec![0; size];
    payload::fill(seq, &mut m);
    m
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            tokio::time::timeout(SAFETY, f)
                .await
                .expect("finished in time")
        });
}

/// Both sides send far more than the socket buffers hold before either
/// reads: one task per side doing send-then-receive would deadlock; split
/// halves read while they write.
#[test]
fn halves_read_while_writing_both_ways() {
    run(async {
        const FRAMES: u64 = 64;
        const SIZE: usize = 256 * 1024;
        let (a, b) = pair();
        let mut tasks = Vec::new();
        for conn in [a, b] {
            let (mut read, mut write) = conn.into_split();
            tasks.push(tokio::spawn(async move {
                for seq in 0..FRAMES {
                    write.send(&message(seq, SIZE)).await.unwrap();
                }
                write.flush().await.unwrap();
            }));
            tasks.push(tokio::spawn(async move {
                for seq in 0..FRAMES {
                    let frame = read.recv().await.unwrap();
                    assert_eq!(frame.len(), SIZE);
                    payload::verify(seq, &frame).unwrap();
                }
            }));
        }
        for task in futures::future::join_all(tasks).await {
            task.unwrap();
        }
    });
}

/// Frames of several connections merged with `select_all`: every frame
/// arrives once, in order per connection, and the merged stream ends when
/// every peer has closed.
#[test]
fn frames_streams_merge_and_end() {
    run(async {
        let mut streams = Vec::new();
        for source in 0..3u64 {
            let (near, far) = pair();
            streams.push(near.into_split().0.into_frames().map(move |f| (source, f)));
            let mut sink = far.into_split().1.into_sink();
            tokio::spawn(async move {
                for seq in 0..100u64 {
                    sink.feed(Bytes::from(message(source * 1000 + seq, 100)))
                        .await
                        .unwrap();
                }
                sink.close().await.unwrap();
                // Dropping the sink closes the connection: the stream ends.
            });
        }
        let mut merged = futures::stream::select_all(streams);
        let mut next = [0u64; 3];
        while let Some((source, frame)) = merged.next().await {
            let frame = frame.unwrap();
            payload::verify(source * 1000 + next[source as usize], &frame).unwrap();
            next[source as usize] += 1;
        }
        assert_eq!(next, [100, 100, 100]);
    });
}

/// `recv` as a `select!` branch that loses most races: the peer dribbles
/// each frame out a few bytes at a time, so many receives are cancelled
/// with a frame half read. Not one byte may be lost.
#[test]
fn cancelled_receives_lose_nothing() {
    run(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut conn = wrap(a);
        let (_, mut raw) = b.into_split();
        const FRAMES: u64 = 200;
        tokio::spawn(async move {
            for seq in 0..FRAMES {
                let body = message(seq, 300);
                let mut bytes = encode_header(body.len()).to_vec();
                bytes.extend_from_slice(&body);
                for chunk in bytes.chunks(37) {
                    raw.write_all(chunk).await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let (mut got, mut cancelled) = (0, 0u64);
        while got < FRAMES {
            tokio::select! {
                frame = conn.recv() => {
                    payload::verify(got, &frame.unwrap()).unwrap();
                    got += 1;
                }
                _ = tokio::task::yield_now() => cancelled += 1,
            }
        }
        assert!(
            cancelled > 0,
            "no receive was ever cancelled: the test proved nothing"
        );
        let end = conn.recv().await;
        assert!(matches!(end, Err(RecvError::Disconnected)), "{end:?}");
    });
}

/// `send` as a `select!` branch against a slow reader: sends cut short
/// after their first byte stay committed (their tail goes out first), sends
/// cut before it are not sent at all. The reader sees whole frames only,
/// in order, each one exactly once.
#[test]
fn cancelled_sends_never_cut_a_frame() {
    run(async {
        let (a, b) = pair();
        let (_, mut write) = a.into_split();
        let (mut read, _) = b.into_split();
        const SIZE: usize = 200 * 1024;
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                match read.recv().await {
                    Ok(frame) => {
                        assert_eq!(frame.len(), SIZE);
                        let seq = u64::from_le_bytes(frame[..8].try_into().unwrap());
                        payload::verify(seq, &frame).unwrap();
                        seen.push(seq);
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    Err(RecvError::Disconnected) => return seen,
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let (mut seq, mut cancelled) = (0u64, 0);
        let mut just_cancelled = false;
        while seq < 100 {
            let frame = message(seq, SIZE);
            if just_cancelled {
                // After a cancel, one send runs to the end: the loop makes
                // progress however slow the machine (a 300 us timer could
                // otherwise win every time under load).
                write.send(&frame).await.unwrap();
                seq += 1;
                just_cancelled = false;
                continue;
            }
            tokio::select! {
                sent = write.send(&frame) => {
                    sent.unwrap();
                    seq += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(300)) => {
                    cancelled += 1;
                    just_cancelled = true;
                    // Cut mid-frame or not started: either way, numbering
                    // goes on from what the reader will have seen.
                }
            }
        }
        write.flush().await.unwrap();
        drop(write);
        let seen = reader.await.unwrap();
        assert!(
            cancelled > 0,
            "no send was ever cancelled: the test proved nothing"
        );
        // Every frame at most once and in order; a cancelled send either
        // arrived whole (and was then sent again under the same number,
        // which is the caller's choice here) or not at all.
        for pair in seen.windows(2) {
            assert!(
                pair[1] == pair[0] || pair[1] == pair[0] + 1,
                "out of order: {pair:?}"
            );
        }
        assert_eq!(seen.last(), Some(&99));
    });
}

/// A writer that counts the writes that moved bytes.
struct Counting {
    inner: OwnedWriteHalf,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Counting {
    fn count(&self, polled: &std::task::Poll<std::io::Result<usize>>) {
        if let std::task::Poll::Ready(Ok(n)) = polled
            && *n > 0
        {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl tokio::io::AsyncWrite for Counting {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.count(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.count(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A sending half whose writes are counted, and the receiving end.
fn counted(
    config: Config,
) -> (
    AsyncFramedStream<OwnedReadHalf, Counting>,
    Conn,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    let (r, w) = a.into_split();
    let writes = std::sync::Arc::default();
    let counting = Counting {
        inner: w,
        writes: std::sync::Arc::clone(&writes),
    };
    let sender = AsyncFramedStream::new(r, counting, config, Capabilities::new(usize::MAX));
    (sender, wrap(b), writes)
}

/// Small frames gathered go out in one write, in order, ahead of a frame
/// sent after them; a gathered frame left alone goes out with `flush`.
#[test]
fn gathered_frames_go_out_in_one_write_before_later_ones() {
    run(async {
        const GATHERED: u64 = 50;
        let (sender, receiver, writes) = counted(Config::default());
        let (_, mut write) = sender.into_split();
        let (mut read, _) = receiver.into_split();
        for seq in 0..GATHERED {
            write.gather(&message(seq, 64)).unwrap();
        }
        let count = || writes.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(count(), 0, "a gathered frame waits for the next write");
        write.send(&message(GATHERED, 64)).await.unwrap();
        assert_eq!(
            count(),
            2,
            "the gathered frames in one write, then the sent one"
        );
        write.gather(&message(GATHERED + 1, 64)).unwrap();
        write.flush().await.unwrap();
        assert_eq!(count(), 3);
        for seq in 0..GATHERED + 2 {
            let frame = read.recv().await.unwrap();
            assert_eq!(frame.len(), 64, "frame {seq}");
            payload::verify(seq, &frame).unwrap();
        }
    });
}

/// A half holds a bounded amount: a frame too large to gather, or one
/// past the bound, is refused whole (`Full`) and goes out when sent, after
/// those held; one over the connection's limit is `FrameTooLarge`.
#[test]
fn gathering_is_bounded_and_refuses_whole_frames() {
    run(async {
        const SIZE: usize = 1024;
        let config = Config::default().with_max_message_size(32 * 1024);
        let (sender, receiver, _) = counted(config);
        let (_, mut write) = sender.into_split();
        let (mut read, _) = receiver.into_split();
        let mut held = 0u64;
        let refused = loop {
            let frame = message(held, SIZE);
            match write.gather(&frame) {
                Ok(()) => held += 1,
                Err(ipc_core::SendError::Full) => break frame,
                Err(e) => panic!("gather: {e}"),
            }
            assert!(held < 1024, "gathering never refused");
        };
        assert!(held >= 8, "only {held} frames of {SIZE} B held");
        assert!(
            held as usize * (SIZE + 8) <= 64 * 1024,
            "{held} frames of {SIZE} B held"
        );
        assert!(matches!(
            write.gather(&message(0, 20 * 1024)),
            Err(ipc_core::SendError::Full)
        ));
        assert!(matches!(
            write.gather(&message(0, 33 * 1024)),
            Err(ipc_core::SendError::FrameTooLarge { .. })
        ));
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..=held {
                got.push(read.recv().await.unwrap());
            }
            got
        });
        write.send(&refused).await.unwrap();
        let got = reading.await.unwrap();
        for (seq, frame) in got.iter().enumerate() {
            assert_eq!(frame.len(), SIZE, "frame {seq}");
            payload::verify(seq as u64, frame).unwrap();
        }
    });
}
