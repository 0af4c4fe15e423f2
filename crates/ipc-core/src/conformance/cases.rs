//! The conformance cases, blocking and async.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libtest_mimic::{Failed, Trial};

use super::peer::{AFTER_OVERSIZED, VERIFY_OK, message_size};
use super::{PeerMode, TransportUnderTest, peer_command};
use crate::{
    AsyncConnection, AsyncFrameReceiver, AsyncFrameSender, Backpressure, Config, Connection,
    DEFAULT_MAX_MESSAGE_SIZE, FrameReceiver, FrameSender, RecvError, SendError, payload,
};

/// Upper bound on any wait in a case, so a broken transport fails the case
/// instead of hanging the suite. Not a performance limit.
const SAFETY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sizes that must round-trip byte-exact.
const ROUND_TRIP_SIZES: [usize; 6] = [0, 1, 64, 4096, 1 << 20, DEFAULT_MAX_MESSAGE_SIZE];

/// Messages in each ordering case.
const ORDERING_COUNT: u64 = 100_000;

/// Maximum message size of the parent in the oversized-frame cases.
const SMALL_MAX: usize = 64 * 1024;

/// Peers in the concurrency cases.
const CONCURRENT_PEERS: usize = 4;

type CaseResult = Result<(), Failed>;

/// A named case.
type Case<T> = (&'static str, fn(&T) -> CaseResult);

pub(super) fn trials<T: TransportUnderTest>(transport: Arc<T>) -> Vec<Trial> {
    let sync: [Case<T>; 12] = [
        ("capabilities_hold", capabilities_hold),
        ("round_trip_every_size_class", round_trip_sizes),
        ("order_and_integrity_from_peer", ordering_from_peer),
        ("order_and_integrity_to_peer", ordering_to_peer),
        ("batch_send_keeps_frames", batch_send),
        ("recv_timeout_and_try_recv", recv_timeouts),
        ("peer_exit_is_disconnected", peer_exit),
        ("blocked_recv_sees_peer_exit", blocked_recv_sees_exit),
        ("oversized_send_is_rejected", oversized_send),
        ("oversized_recv_is_skipped", oversized_recv),
        ("full_buffer_backpressure", full_buffer),
        ("concurrent_connections", concurrent),
    ];
    let asynchronous: [Case<T>; 10] = [
        ("capabilities_hold", |t| {
            run_async(async_capabilities_hold(t))
        }),
        ("round_trip_every_size_class", |t| {
            run_async(async_round_trip_sizes(t))
        }),
        ("order_and_integrity_from_peer", |t| {
            run_async(async_ordering_from_peer(t))
        }),
        ("order_and_integrity_to_peer", |t| {
            run_async(async_ordering_to_peer(t))
        }),
        ("recv_timeout_and_try_recv", |t| {
            run_async(async_recv_timeouts(t))
        }),
        ("peer_exit_is_disconnected", |t| {
            run_async(async_peer_exit(t))
        }),
        ("oversized_frames", |t| run_async(async_oversized(t))),
        ("send_timeout_when_full", |t| {
            run_async(async_send_timeout(t))
        }),
        ("try_send_commits_or_sends_nothing", |t| {
            run_async(async_try_send(t))
        }),
        ("gather_commits_or_takes_nothing", |t| {
            run_async(async_gather(t))
        }),
    ];
    let mut trials = Vec::new();
    let transport_name = transport.name();
    for (kind, cases) in [("sync", &sync[..]), ("async", &asynchronous[..])] {
        for &(name, case) in cases {
            let transport = Arc::clone(&transport);
            trials.push(Trial::test(
                format!("{transport_name}::{kind}::{name}"),
                move || case(&transport),
            ));
        }
    }
    trials
}

/// A result for a failure message: frames as their length, not their bytes.
fn brief<T: AsRef<[u8]>, E: std::fmt::Debug>(result: &Result<T, E>) -> String {
    match result {
        Ok(frame) => format!("a {}-byte frame", frame.as_ref().len()),
        Err(e) => format!("{e:?}"),
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn parent_config() -> Config {
    Config::default()
        .with_recv_timeout(Some(SAFETY_TIMEOUT))
        .with_send_timeout(Some(SAFETY_TIMEOUT))
}

fn peer(mode: PeerMode) -> std::process::Command {
    peer_command(&mode, DEFAULT_MAX_MESSAGE_SIZE)
}

fn message(seq: u64, size: usize) -> Vec<u8> {
    let mut msg = vec![0; size];
    payload::fill(seq, &mut msg);
    msg
}

fn check_echo(seq: u64, size: usize, back: &[u8]) -> CaseResult {
    ensure(back.len() == size, || {
        format!("sent {size} bytes, got {} back", back.len())
    })?;
    payload::verify(seq, back)?;
    Ok(())
}

fn run_async(case: impl Future<Output = CaseResult>) -> CaseResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(case)
}

// ---- blocking cases ----

/// What [`Capabilities`](crate::Capabilities) claims, checked: the kit's
/// async cases need async types, the round trip sends a frame of the
/// default maximum, and a larger maximum than the transport's is refused.
fn capabilities_hold<T: TransportUnderTest>(t: &T) -> CaseResult {
    let caps = {
        let (conn, _peer) = t.spawn(peer(PeerMode::Echo), &parent_config())?;
        conn.capabilities()
    };
    ensure(caps.async_io, || {
        "async_io is false, yet the transport has async connections".into()
    })?;
    ensure(caps.max_message_size >= DEFAULT_MAX_MESSAGE_SIZE, || {
        format!(
            "max_message_size {} is below the default {DEFAULT_MAX_MESSAGE_SIZE}",
            caps.max_message_size
        )
    })?;
    if let Some(beyond) = caps.max_message_size.checked_add(1) {
        let config = parent_config().with_max_message_size(beyond);
        let refused = t.spawn(peer(PeerMode::Echo), &config);
        ensure(refused.is_err(), || {
            format!("a max_message_size of {beyond}, beyond the stated maximum, was accepted")
        })?;
    }
    Ok(())
}

fn round_trip_sizes<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Echo), &parent_config())?;
    for (seq, size) in ROUND_TRIP_SIZES.into_iter().enumerate() {
        conn.send(&message(seq as u64, size))?;
        check_echo(seq as u64, size, &conn.recv()?)?;
    }
    Ok(())
}

fn ordering_from_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Generate(ORDERING_COUNT)), &parent_config())?;
    for seq in 0..ORDERING_COUNT {
        let frame = conn.recv()?;
        check_echo(seq, message_size(seq), &frame)?;
    }
    // Nothing more: no duplicates after the last one.
    expect_recv_err(
        conn.recv_timeout(Duration::from_millis(50)),
        "timeout",
        |e| matches!(e, RecvError::Timeout),
    )
}

fn ordering_to_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Verify(ORDERING_COUNT)), &parent_config())?;
    for seq in 0..ORDERING_COUNT {
        conn.send(&message(seq, message_size(seq)))?;
    }
    let report = conn.recv()?;
    ensure(&report[..] == VERIFY_OK, || {
        format!("peer found: {}", String::from_utf8_lossy(&report))
    })
}

fn batch_send<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Echo), &parent_config())?;
    let messages: Vec<Vec<u8>> = (0..2000)
        .map(|seq| message(seq, message_size(seq)))
        .collect();
    let frames: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    // Interleave batches with receives so neither side's buffer overflows.
    for (chunk_no, chunk) in frames.chunks(100).enumerate() {
        conn.send_batch(chunk)?;
        for i in 0..chunk.len() {
            let seq = (chunk_no * 100 + i) as u64;
            check_echo(seq, message_size(seq), &conn.recv()?)?;
        }
    }
    Ok(())
}

fn recv_timeouts<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_recv_timeout(Some(Duration::from_millis(50)));
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Silent), &config)?;
    expect_recv_err(conn.try_recv(), "empty", |e| matches!(e, RecvError::Empty))?;
    let start = Instant::now();
    expect_recv_err(
        conn.recv_timeout(Duration::from_millis(100)),
        "timeout",
        |e| matches!(e, RecvError::Timeout),
    )?;
    ensure(start.elapsed() >= Duration::from_millis(100), || {
        format!("recv_timeout(100ms) returned after {:?}", start.elapsed())
    })?;
    let start = Instant::now();
    expect_recv_err(conn.recv(), "timeout from the config", |e| {
        matches!(e, RecvError::Timeout)
    })?;
    ensure(start.elapsed() >= Duration::from_millis(50), || {
        format!(
            "recv with a 50 ms config timeout returned after {:?}",
            start.elapsed()
        )
    })
}

fn peer_exit<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, mut peer) = t.spawn(peer(PeerMode::Exit), &parent_config())?;
    expect_recv_err(conn.recv(), "disconnected", |e| {
        matches!(e, RecvError::Disconnected)
    })?;
    expect_recv_err(conn.recv(), "disconnected again", |e| {
        matches!(e, RecvError::Disconnected)
    })?;
    // Sends may be buffered for a while, but must fail soon, and say why.
    let mut outcome = Ok(());
    for seq in 0..1000 {
        outcome = conn.send(&message(seq, 4096));
        if outcome.is_err() {
            break;
        }
    }
    ensure(matches!(outcome, Err(SendError::Disconnected)), || {
        format!("send to an exited peer gave {outcome:?}")
    })?;
    ensure(peer.wait_timeout(SAFETY_TIMEOUT).is_some(), || {
        "peer did not exit".into()
    })
}

fn blocked_recv_sees_exit<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_recv_timeout(None);
    let (mut conn, _peer) = t.spawn(peer(PeerMode::ExitAfter(200)), &config)?;
    expect_recv_err(conn.recv(), "disconnected", |e| {
        matches!(e, RecvError::Disconnected)
    })
}

fn oversized_send<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_max_message_size(SMALL_MAX);
    let (mut conn, _peer) = t.spawn(peer(PeerMode::Echo), &config)?;
    let big = message(0, SMALL_MAX + 1);
    for result in [conn.send(&big), conn.try_send(&big)] {
        ensure(
            matches!(result, Err(SendError::FrameTooLarge { len, max }) if len == SMALL_MAX + 1 && max == SMALL_MAX),
            || format!("oversized send gave {result:?}"),
        )?;
    }
    // Nothing was written: the connection still works at the limit.
    conn.send(&message(1, SMALL_MAX))?;
    check_echo(1, SMALL_MAX, &conn.recv()?)
}

fn oversized_recv<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_max_message_size(SMALL_MAX);
    let (mut conn, _peer) = t.spawn(peer(PeerMode::SendOversized(2 * SMALL_MAX)), &config)?;
    let first = conn.recv();
    ensure(
        matches!(first, Err(RecvError::FrameTooLarge { len, .. }) if len == 2 * SMALL_MAX),
        || format!("oversized frame gave {}", brief(&first)),
    )?;
    let next = conn.recv()?;
    ensure(&next[..] == AFTER_OVERSIZED, || {
        format!("frame after the oversized one: {} bytes", next.len())
    })
}

fn full_buffer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, mut peer) = t.spawn(peer(PeerMode::Stall), &parent_config())?;
    let chunk = message(0, 64 * 1024);
    // The peer never reads: some try_send must report Full, without blocking.
    let mut full = false;
    for _ in 0..100_000 {
        match conn.try_send(&chunk) {
            Ok(()) => {}
            Err(SendError::Full) => {
                full = true;
                break;
            }
            Err(e) => return Err(format!("try_send gave {e:?}").into()),
        }
    }
    ensure(full, || {
        "try_send never reported Full to a peer that does not read".into()
    })?;
    let start = Instant::now();
    let timed = conn.send_timeout(&chunk, Duration::from_millis(100));
    ensure(matches!(timed, Err(SendError::Timeout)), || {
        format!("send_timeout on a full buffer gave {timed:?}")
    })?;
    ensure(start.elapsed() >= Duration::from_millis(100), || {
        format!("send_timeout(100ms) returned after {:?}", start.elapsed())
    })?;
    peer.kill();
    // Now the peer is gone: the next sends must say so.
    let mut outcome = Ok(());
    for _ in 0..1000 {
        outcome = conn.send(&chunk);
        if outcome.is_err() {
            break;
        }
    }
    ensure(matches!(outcome, Err(SendError::Disconnected)), || {
        format!("send after the stalled peer was killed gave {outcome:?}")
    })
}

fn concurrent<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mut peers = Vec::new();
    for _ in 0..CONCURRENT_PEERS {
        peers.push(t.spawn(peer(PeerMode::Echo), &parent_config())?);
    }
    for seq in 0..200u64 {
        for (conn, _) in &mut peers {
            conn.send(&message(seq, message_size(seq)))?;
        }
        for (conn, _) in &mut peers {
            check_echo(seq, message_size(seq), &conn.recv()?)?;
        }
    }
    Ok(())
}

fn expect_recv_err<T>(
    result: Result<T, RecvError>,
    expected: &str,
    is_expected: impl FnOnce(&RecvError) -> bool,
) -> CaseResult {
    match result {
        Err(e) if is_expected(&e) => Ok(()),
        Ok(_) => Err(format!("expected {expected}, got a frame").into()),
        Err(e) => Err(format!("expected {expected}, got {e:?}").into()),
    }
}

// ---- async cases ----

async fn async_capabilities_hold<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (conn, _peer) = t.spawn(peer(PeerMode::Echo), &parent_config())?;
    let (async_conn, _async_peer) = t
        .spawn_async(peer(PeerMode::Echo), &parent_config())
        .await?;
    ensure(async_conn.capabilities() == conn.capabilities(), || {
        format!(
            "async {:?} and blocking {:?} connections disagree",
            async_conn.capabilities(),
            conn.capabilities()
        )
    })
}

async fn async_round_trip_sizes<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t
        .spawn_async(peer(PeerMode::Echo), &parent_config())
        .await?;
    for (seq, size) in ROUND_TRIP_SIZES.into_iter().enumerate() {
        conn.send(&message(seq as u64, size)).await?;
        check_echo(seq as u64, size, &conn.recv().await?)?;
    }
    Ok(())
}

async fn async_ordering_from_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mode = PeerMode::Generate(ORDERING_COUNT);
    let (mut conn, _peer) = t.spawn_async(peer(mode), &parent_config()).await?;
    for seq in 0..ORDERING_COUNT {
        check_echo(seq, message_size(seq), &conn.recv().await?)?;
    }
    expect_recv_err(
        conn.recv_timeout(Duration::from_millis(50)).await,
        "timeout",
        |e| matches!(e, RecvError::Timeout),
    )
}

async fn async_ordering_to_peer<T: TransportUnderTest>(t: &T) -> CaseResult {
    let mode = PeerMode::Verify(ORDERING_COUNT);
    let (mut conn, _peer) = t.spawn_async(peer(mode), &parent_config()).await?;
    for seq in 0..ORDERING_COUNT {
        conn.send(&message(seq, message_size(seq))).await?;
    }
    let report = conn.recv().await?;
    ensure(&report[..] == VERIFY_OK, || {
        format!("peer found: {}", String::from_utf8_lossy(&report))
    })
}

async fn async_recv_timeouts<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_recv_timeout(Some(Duration::from_millis(50)));
    let (mut conn, _peer) = t.spawn_async(peer(PeerMode::Silent), &config).await?;
    expect_recv_err(conn.try_recv(), "empty", |e| matches!(e, RecvError::Empty))?;
    let start = Instant::now();
    expect_recv_err(
        conn.recv_timeout(Duration::from_millis(100)).await,
        "timeout",
        |e| matches!(e, RecvError::Timeout),
    )?;
    ensure(start.elapsed() >= Duration::from_millis(99), || {
        format!("recv_timeout(100ms) returned after {:?}", start.elapsed())
    })?;
    expect_recv_err(conn.recv().await, "timeout from the config", |e| {
        matches!(e, RecvError::Timeout)
    })
}

async fn async_peer_exit<T: TransportUnderTest>(t: &T) -> CaseResult {
    let (mut conn, _peer) = t
        .spawn_async(peer(PeerMode::Exit), &parent_config())
        .await?;
    expect_recv_err(conn.recv().await, "disconnected", |e| {
        matches!(e, RecvError::Disconnected)
    })?;
    let mut outcome = Ok(());
    for seq in 0..1000 {
        outcome = conn.send(&message(seq, 4096)).await;
        if outcome.is_err() {
            break;
        }
    }
    ensure(matches!(outcome, Err(SendError::Disconnected)), || {
        format!("send to an exited peer gave {outcome:?}")
    })
}

async fn async_oversized<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_max_message_size(SMALL_MAX);
    let mode = PeerMode::SendOversized(2 * SMALL_MAX);
    let (mut conn, _peer) = t.spawn_async(peer(mode), &config).await?;
    let sent = conn.send(&message(0, SMALL_MAX + 1)).await;
    ensure(matches!(sent, Err(SendError::FrameTooLarge { .. })), || {
        format!("oversized send gave {sent:?}")
    })?;
    let first = conn.recv().await;
    ensure(
        matches!(first, Err(RecvError::FrameTooLarge { len, .. }) if len == 2 * SMALL_MAX),
        || format!("oversized frame gave {}", brief(&first)),
    )?;
    let next = conn.recv().await?;
    ensure(&next[..] == AFTER_OVERSIZED, || {
        format!("frame after the oversized one: {} bytes", next.len())
    })
}

async fn async_send_timeout<T: TransportUnderTest>(t: &T) -> CaseResult {
    let config = parent_config().with_backpressure(Backpressure::Fail);
    let (mut conn, _peer) = t.spawn_async(peer(PeerMode::Stall), &config).await?;
    let chunk = message(0, 64 * 1024);
    let mut full = false;
    for _ in 0..100_000 {
        match conn.send(&chunk).await {
            Ok(()) => {}
            Err(SendError::Full) => {
                full = true;
                break;
            }
            Err(e) => return Err(format!("send with Backpressure::Fail gave {e:?}").into()),
        }
    }
    ensure(full, || "Backpressure::Fail never reported Full".into())?;
    let timed = conn.send_timeout(&chunk, Duration::from_millis(100)).await;
    ensure(matches!(timed, Err(SendError::Timeout)), || {
        format!("send_timeout on a full buffer gave {timed:?}")
    })
}

/// A sender's way to take a frame without waiting: `Ok` commits it,
/// `Full` takes nothing of it.
type Offer<C> = fn(&mut C, &[u8]) -> Result<(), SendError>;

async fn async_try_send<T: TransportUnderTest>(t: &T) -> CaseResult {
    // A peer that never reads: try_send reports `Full`, never waits.
    offered_or_sent(t, "try_send", |c, f| c.try_send(f), 64 * 1024).await
}

async fn async_gather<T: TransportUnderTest>(t: &T) -> CaseResult {
    // A peer that never reads: gathering holds a bounded amount, then
    // reports `Full`; it never waits.
    offered_or_sent(t, "gather", |c, f| c.gather(f), 1024).await
}

/// Each frame offered first (`try_send`, `gather`) and sent on `Full`,
/// then a flush: the peer sees every frame once, in order and whole, so
/// `Ok` committed the frame (ahead of those sent later) and `Full` took
/// nothing of it. Then, to a peer that never reads, frames of `chunk`
/// bytes are offered until one is refused, as one must be long before a
/// gigabyte.
async fn offered_or_sent<T: TransportUnderTest>(
    t: &T,
    what: &str,
    offer: Offer<T::AsyncConn>,
    chunk: usize,
) -> CaseResult {
    let mode = PeerMode::Verify(ORDERING_COUNT);
    let (mut conn, _peer) = t.spawn_async(peer(mode), &parent_config()).await?;
    for seq in 0..ORDERING_COUNT {
        let frame = message(seq, message_size(seq));
        match offer(&mut conn, &frame) {
            Ok(()) => {}
            Err(SendError::Full) => conn.send(&frame).await?,
            Err(e) => return Err(format!("{what} of frame {seq} gave {e:?}").into()),
        }
    }
    conn.flush().await?;
    let report = conn.recv().await?;
    ensure(&report[..] == VERIFY_OK, || {
        format!("peer found: {}", String::from_utf8_lossy(&report))
    })?;
    let (mut conn, _peer) = t
        .spawn_async(peer(PeerMode::Stall), &parent_config())
        .await?;
    let chunk = message(0, chunk);
    for _ in 0..(1usize << 30) / chunk.len() {
        match offer(&mut conn, &chunk) {
            Ok(()) => {}
            Err(SendError::Full) => return Ok(()),
            Err(e) => return Err(format!("{what} gave {e:?}").into()),
        }
    }
    Err(format!("{what} took a gigabyte for a peer that does not read").into())
}
