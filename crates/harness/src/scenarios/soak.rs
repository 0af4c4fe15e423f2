//! Long runs: a soak across every transport (mixed sizes, several agents,
//! every message verified, memory and descriptors watched), and the
//! backpressure bound (a consumer 100x slower than its producer).

use std::time::{Duration, Instant};

use ipc_core::{Backpressure, FrameReceiver, FrameSender, RecvError, SendError, payload};
use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::procfs;
use crate::task::{AgentReport, AgentTask, Role};
use crate::transport::{Transport, Variant, spawn_agent};

/// Growth of the parent's resident memory over a soak (after warm-up)
/// that is still a pass: allocators keep freed buffers, and 1 MiB messages
/// pass through.
pub const SOAK_RSS_TOLERANCE_KIB: i64 = 8 * 1024;

/// Growth of the producer's resident memory under backpressure that is
/// still a pass.
pub const BACKPRESSURE_RSS_TOLERANCE_KIB: i64 = 1024;

/// What a soak did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    /// Wall time, seconds.
    pub seconds: f64,
    /// Transports soaked.
    pub transports: Vec<String>,
    /// Echo agents per transport.
    pub agents_per_transport: usize,
    /// Round trips completed.
    pub messages: u64,
    /// Payload bytes moved (both ways).
    pub bytes: u64,
    /// Messages that failed verification (must be 0).
    pub errors: u64,
    /// The parent's RSS after warm-up and at the end, KiB.
    pub rss_start_kib: u64,
    /// See `rss_start_kib`.
    pub rss_end_kib: u64,
    /// The parent's open descriptors after warm-up and at the end.
    pub fds_start: usize,
    /// See `fds_start`.
    pub fds_end: usize,
    /// RSS growth allowed, KiB.
    pub rss_tolerance_kib: i64,
    /// No error, no descriptor growth, RSS within tolerance.
    pub passed: bool,
}

/// Sizes the soak cycles through: mostly small, some large.
fn soak_size(seq: u64) -> usize {
    const SIZES: [usize; 8] = [0, 64, 256, 1024, 4096, 16 << 10, 64 << 10, 1 << 20];
    // 1 MiB only every 64th message, to keep the mix mostly small.
    let i = (seq % 8) as usize;
    if i == 7 && !seq.is_multiple_of(64) {
        512
    } else {
        SIZES[i]
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Soaks `transports` for `duration`: `agents` echo agents each, round
/// trips of mixed sizes through all of them in turn, every echo verified.
pub fn soak(transports: &[Transport], agents: usize, duration: Duration) -> Result<SoakReport> {
    let mut echoes = Vec::new();
    for &t in transports {
        for _ in 0..agents {
            echoes.push(spawn_agent(&AgentTask {
                role: Role::Echo,
                variant: Variant::of(t),
                cpu: None,
            })?);
        }
    }
    let me = std::process::id();
    let start = Instant::now();
    let warmup = (duration / 20).min(Duration::from_secs(5));
    let mut baseline: Option<(u64, usize)> = None;
    let (mut messages, mut bytes, mut errors) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 1 << 20];
    let mut seq = 0u64;
    while start.elapsed() < duration {
        if baseline.is_none() && start.elapsed() >= warmup {
            baseline = Some((procfs::rss_kib(me).unwrap_or(0), open_fds()));
        }
        for agent in &mut echoes {
            let msg = &mut buf[..soak_size(seq)];
            payload::fill(seq, msg);
            agent.conn().send(msg)?;
            let echo = agent.conn().recv()?;
            if echo.len() != msg.len() || payload::verify(seq, &echo).is_err() {
                errors += 1;
            }
            messages += 1;
            bytes += 2 * msg.len() as u64;
            seq += 1;
        }
    }
    let (rss_start_kib, fds_start) =
        baseline.unwrap_or((procfs::rss_kib(me).unwrap_or(0), open_fds()));
    let rss_end_kib = procfs::rss_kib(me).unwrap_or(0);
    let fds_end = open_fds();
    drop(echoes);
    Ok(SoakReport {
        seconds: start.elapsed().as_secs_f64(),
        transports: transports.iter().map(|t| t.name().to_owned()).collect(),
        agents_per_transport: agents,
        messages,
        bytes,
        errors,
        rss_start_kib,
        rss_end_kib,
        fds_start,
        fds_end,
        rss_tolerance_kib: SOAK_RSS_TOLERANCE_KIB,
        passed: errors == 0
            && fds_end <= fds_start
            && (rss_end_kib as i64 - rss_start_kib as i64) <= SOAK_RSS_TOLERANCE_KIB,
    })
}

/// What the backpressure run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackpressureReport {
    /// Transport.
    pub transport: String,
    /// Wall time of the producing phase, seconds.
    pub seconds: f64,
    /// Sends that returned `Ok` (committed).
    pub committed: u64,
    /// Sends that timed out (the consumer was behind).
    pub timed_out: u64,
    /// Messages the consumer received and verified.
    pub delivered: u64,
    /// Messages that failed verification.
    pub errors: u64,
    /// The consumer's pace: one message per this many microseconds.
    pub consumer_delay_us: u64,
    /// The producer's RSS at the start and its peak, KiB.
    pub rss_start_kib: u64,
    /// See `rss_start_kib`.
    pub rss_peak_kib: u64,
    /// Growth allowed, KiB.
    pub rss_tolerance_kib: i64,
    /// Everything committed was delivered intact and memory stayed bounded.
    pub passed: bool,
}

/// Producer as fast as it can (sends block, with a 20 ms timeout each),
/// consumer one message per `delay`, for `duration`: the producer must be
/// held to the consumer's pace, its memory must stay flat, and every
/// committed message must arrive.
pub fn backpressure(
    transport: Transport,
    duration: Duration,
    delay: Duration,
) -> Result<BackpressureReport> {
    let variant = Variant::of(transport);
    let mut agent = spawn_agent(&AgentTask {
        role: Role::SlowSink {
            delay_us: delay.as_micros() as u64,
        },
        variant,
        cpu: None,
    })?;
    let me = std::process::id();
    let rss_start_kib = procfs::rss_kib(me).unwrap_or(0);
    let mut rss_peak_kib = rss_start_kib;
    let mut msg = vec![0u8; 4096];
    let (mut committed, mut timed_out) = (0u64, 0u64);
    let start = Instant::now();
    let conn = agent.conn();
    debug_assert_eq!(variant.config().backpressure, Backpressure::Block);
    while start.elapsed() < duration {
        payload::fill(committed, &mut msg);
        match conn.send_timeout(&msg, Duration::from_millis(20)) {
            Ok(()) => committed += 1,
            Err(SendError::Timeout) => timed_out += 1,
            Err(e) => return Err(e.into()),
        }
        if (committed + timed_out).is_multiple_of(64) {
            rss_peak_kib = rss_peak_kib.max(procfs::rss_kib(me).unwrap_or(0));
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // An empty frame ends the stream; the sink drains and reports.
    conn.send(&[])?;
    let report: AgentReport = match conn.recv_timeout(Duration::from_secs(120)) {
        Ok(frame) => serde_json::from_slice(&frame)?,
        Err(RecvError::Timeout) => {
            return Err(HarnessError::Agent("slow sink never reported".into()));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(BackpressureReport {
        transport: transport.name().into(),
        seconds,
        committed,
        timed_out,
        delivered: report.received,
        errors: report.errors,
        consumer_delay_us: delay.as_micros() as u64,
        rss_start_kib,
        rss_peak_kib,
        rss_tolerance_kib: BACKPRESSURE_RSS_TOLERANCE_KIB,
        // Held to the consumer's pace: at most twice what it could take in
        // the time, plus what the transport buffers (well under a
        // thousand 4 KiB messages), where free running would be ~100x.
        passed: report.errors == 0
            && report.received == committed
            && committed as f64 <= 2.0 * seconds / delay.as_secs_f64() + 1000.0
            && (rss_peak_kib as i64 - rss_start_kib as i64) <= BACKPRESSURE_RSS_TOLERANCE_KIB,
    })
}
