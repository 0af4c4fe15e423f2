//! A blocking framed connection over a byte stream (pipe pair or socket).
//!
//! Transports supply a [`RawStream`]: non-blocking reads and writes on one
//! or two file descriptors. [`FramedStream`] adds the framing, the waiting
//! (`poll(2)` with the deadline of the call) and the error mapping, so the
//! pipe and socket transports share one tested implementation.
//!
//! Reads go into one growing buffer in large chunks, so a burst of small
//! frames costs one system call; each frame is split off that buffer
//! without copying. A send writes header and payload with one vectored
//! write; [`FrameSender::send_batch`] puts many frames in one.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rustix::event::{PollFd, PollFlags, Timespec};

use crate::assembly::{Assembly, BUDGET_SLICE};
use crate::frame::{FrameDecoder, HEADER_LEN, encode_header};
use crate::{
    Backpressure, BatchSendError, Capabilities, Config, Connection, FrameReceiver, FrameSender,
    RecvError, SendError,
};

/// Frames per vectored write in `send_batch` (two iovecs each; Linux allows
/// 1024 iovecs per call).
const BATCH_FRAMES: usize = 512;

/// How long dropping a connection waits to push out a held-back frame tail.
const DROP_LINGER: Duration = Duration::from_secs(1);

/// Non-blocking I/O on the descriptors under a stream connection.
///
/// Both methods must return [`io::ErrorKind::WouldBlock`] instead of
/// blocking, and must not raise `SIGPIPE`.
pub trait RawStream {
    /// The descriptor to wait on for readability.
    fn read_fd(&self) -> BorrowedFd<'_>;
    /// The descriptor to wait on for writability.
    fn write_fd(&self) -> BorrowedFd<'_>;
    /// Reads into `buf` without blocking; returns the bytes now initialized
    /// at the front of `buf` (0 at end of stream).
    fn read_nonblocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
    /// Writes from `bufs` without blocking.
    fn write_nonblocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

/// How long an operation may wait.
#[derive(Debug, Clone, Copy)]
enum Wait {
    /// Not at all (`try_` forms): fail with `Empty` / `Full`.
    Never,
    /// Until this instant: fail with `Timeout`.
    Until(Instant),
    /// Forever.
    Forever,
}

impl Wait {
    fn from_timeout(timeout: Option<Duration>) -> Self {
        match timeout {
            // An instant too far ahead to represent is forever in practice.
            Some(t) => Instant::now()
                .checked_add(t)
                .map_or(Wait::Forever, Wait::Until),
            None => Wait::Forever,
        }
    }
}

/// `wait`, cut short to `limit` from now when that comes first.
fn earlier(wait: Wait, limit: Option<Duration>) -> Wait {
    let Some(limit) = limit else {
        return wait;
    };
    let Some(at) = Instant::now().checked_add(limit) else {
        return wait;
    };
    match wait {
        Wait::Never => Wait::Never,
        Wait::Until(deadline) => Wait::Until(deadline.min(at)),
        Wait::Forever => Wait::Until(at),
    }
}

/// Sleeps `slice`, or until `wait` ends if sooner; the error is what the
/// receive returns when its wait is over.
fn sleep_within(wait: Wait, slice: Duration) -> Result<(), RecvError> {
    let pause = match wait {
        Wait::Never => return Err(RecvError::Empty),
        Wait::Until(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(RecvError::Timeout);
            }
            left.min(slice)
        }
        Wait::Forever => slice,
    };
    std::thread::sleep(pause);
    Ok(())
}

/// Why waiting stopped without readiness.
enum WaitFailed {
    WouldBlock,
    TimedOut,
    Io(io::Error),
}

/// A framed duplex connection over a [`RawStream`]. See the [module docs](self).
#[derive(Debug)]
pub struct FramedStream<S: RawStream> {
    stream: S,
    config: Config,
    decoder: FrameDecoder,
    rbuf: BytesMut,
    /// The frame under way: its deadline and memory budget.
    assembly: Assembly,
    /// The unsent tail of a committed frame whose send ran out of time.
    pending: Vec<u8>,
    /// The peer closed its sending side.
    read_eof: bool,
    capabilities: Capabilities,
}

impl<S: RawStream> FramedStream<S> {
    /// Wraps `stream`; the caller has validated `config`.
    pub fn new(stream: S, config: Config, capabilities: Capabilities) -> Self {
        FramedStream {
            capabilities,
            decoder: FrameDecoder::new(config.max_message_size),
            assembly: Assembly::new(&config),
            stream,
            config,
            rbuf: BytesMut::new(),
            pending: Vec::new(),
            read_eof: false,
        }
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn recv_with(&mut self, wait: Wait) -> Result<Bytes, RecvError> {
        self.assembly.check()?;
        loop {
            if let Some(frame) = self.decoder.next_frame(&mut self.rbuf, self.read_eof)? {
                self.assembly.frame_done(&mut self.rbuf, frame.len());
                return Ok(frame);
            }
            let wanted = self.decoder.bytes_wanted(&self.rbuf);
            if !self.assembly.reserve(&mut self.rbuf, wanted) {
                // The budget is spent by other frames: wait for them
                // (within this call's deadline).
                let started = Instant::now();
                sleep_within(wait, BUDGET_SLICE)?;
                if self.assembly.waited_for_budget(started.elapsed()) {
                    return Err(self.assembly.give_up(&mut self.rbuf));
                }
                continue;
            }
            match self.stream.read_nonblocking(self.rbuf.spare_capacity_mut()) {
                Ok(0) => self.read_eof = true,
                Ok(n) => {
                    // SAFETY: `read_nonblocking` initialized the first `n`
                    // bytes of the spare capacity, which follows `len`.
                    unsafe { self.rbuf.set_len(self.rbuf.len() + n) };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mid_frame = !self.decoder.at_frame_boundary(&self.rbuf);
                    let frame_left = self.assembly.time_left().filter(|_| mid_frame);
                    let started = Instant::now();
                    let waited = self.wait_readable(earlier(wait, frame_left));
                    if mid_frame && self.assembly.waited(started.elapsed()) {
                        return Err(self.assembly.give_up(&mut self.rbuf));
                    }
                    match waited {
                        Ok(()) => {}
                        Err(WaitFailed::WouldBlock) => return Err(RecvError::Empty),
                        Err(WaitFailed::TimedOut) => return Err(RecvError::Timeout),
                        Err(WaitFailed::Io(e)) => return Err(RecvError::from_io(e)),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecvError::from_io(e)),
            }
        }
    }

    /// Writes `frames` in order. On failure returns how many frames were
    /// committed: fully written, or cut short after their first byte with
    /// the tail held back in `pending`.
    fn send_frames(&mut self, frames: &[&[u8]], wait: Wait) -> Result<(), (usize, SendError)> {
        self.flush_with(wait).map_err(|e| (0, e))?;
        let headers: Vec<[u8; HEADER_LEN]>;
        let single: [[u8; HEADER_LEN]; 1];
        let headers: &[[u8; HEADER_LEN]] = if let [frame] = frames {
            single = [encode_header(frame.len())];
            &single
        } else {
            headers = frames.iter().map(|f| encode_header(f.len())).collect();
            &headers
        };
        let result = if let ([header], [frame]) = (headers, frames) {
            write_iovecs(
                &self.stream,
                &mut [IoSlice::new(header), IoSlice::new(frame)],
                wait,
            )
        } else {
            let mut iov: Vec<IoSlice<'_>> = headers
                .iter()
                .zip(frames)
                .flat_map(|(h, f)| [IoSlice::new(h), IoSlice::new(f)])
                .collect();
            write_iovecs(&self.stream, &mut iov, wait)
        };
        let Err((written, failed)) = result else {
            return Ok(());
        };
        // Find the frame the write stopped in.
        let mut start = 0;
        for (i, (header, frame)) in headers.iter().zip(frames).enumerate() {
            let end = start + HEADER_LEN + frame.len();
            if written < end {
                if let WaitFailed::Io(e) = failed {
                    return Err((i, SendError::from_io(e)));
                }
                if written == start {
                    return Err((i, send_wait_error(failed, wait)));
                }
                extend_tail(&mut self.pending, &[header, frame], written - start);
                return if i + 1 == frames.len() {
                    Ok(())
                } else {
                    Err((i + 1, send_wait_error(failed, wait)))
                };
            }
            start = end;
        }
        Ok(())
    }

    fn flush_with(&mut self, wait: Wait) -> Result<(), SendError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = write_iovecs(&self.stream, &mut [IoSlice::new(&self.pending)], wait);
        let written = match &result {
            Ok(()) => self.pending.len(),
            Err((n, _)) => *n,
        };
        self.pending.drain(..written);
        result.map_err(|(_, failed)| send_wait_error(failed, wait))
    }

    fn check_len(&self, len: usize) -> Result<(), SendError> {
        let max = self.config.max_message_size;
        if len > max {
            return Err(SendError::FrameTooLarge { len, max });
        }
        Ok(())
    }

    /// Waits until the read side is readable. While a frame tail is held
    /// back, it is pushed out meanwhile, so a request/response peer never
    /// stalls on a half-sent frame.
    ///
    /// The deadline is checked on every round, not only when `poll` times
    /// out: a write side that keeps reporting ready (a peer that shut its
    /// reading side reports an error at once, for good) must not keep this
    /// loop from ending. Once a flush attempt moves nothing, this wait
    /// stops polling for writability, so it sleeps in `poll` instead of
    /// spinning; the failure shows up on the next send.
    fn wait_readable(&mut self, wait: Wait) -> Result<(), WaitFailed> {
        let mut flush_stalled = false;
        loop {
            if let Wait::Until(deadline) = wait
                && Instant::now() >= deadline
            {
                return Err(WaitFailed::TimedOut);
            }
            let flush_too = !self.pending.is_empty() && !flush_stalled;
            let (readable, writable) = poll_fds(&self.stream, true, flush_too, wait)?;
            if flush_too && writable {
                let before = self.pending.len();
                let flushed = self.flush_with(Wait::Never);
                flush_stalled = flushed.is_err() && self.pending.len() == before;
            }
            if readable {
                return Ok(());
            }
        }
    }

    fn send_wait(&self) -> Wait {
        match self.config.backpressure {
            Backpressure::Block => Wait::from_timeout(self.config.send_timeout),
            Backpressure::Fail => Wait::Never,
        }
    }
}

impl<S: RawStream> FrameSender for FramedStream<S> {
    fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.check_len(frame.len())?;
        self.send_frames(&[frame], self.send_wait())
            .map_err(|(_, e)| e)
    }

    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.check_len(frame.len())?;
        self.send_frames(&[frame], Wait::Never).map_err(|(_, e)| e)
    }

    fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.check_len(frame.len())?;
        self.send_frames(&[frame], Wait::from_timeout(Some(timeout)))
            .map_err(|(_, e)| e)
    }

    fn send_batch(&mut self, frames: &[&[u8]]) -> Result<(), BatchSendError> {
        let wait = self.send_wait();
        let max = self.config.max_message_size;
        let fitting = frames
            .iter()
            .position(|f| f.len() > max)
            .unwrap_or(frames.len());
        let mut sent = 0;
        for chunk in frames[..fitting].chunks(BATCH_FRAMES) {
            self.send_frames(chunk, wait)
                .map_err(|(n, error)| BatchSendError {
                    sent: sent + n,
                    error,
                })?;
            sent += chunk.len();
        }
        match frames.get(fitting) {
            Some(frame) => Err(BatchSendError {
                sent,
                error: SendError::FrameTooLarge {
                    len: frame.len(),
                    max,
                },
            }),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), SendError> {
        self.flush_with(self.send_wait())
    }
}

impl<S: RawStream> FrameReceiver for FramedStream<S> {
    fn recv(&mut self) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::from_timeout(self.config.recv_timeout))
    }

    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::Never)
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        self.recv_with(Wait::from_timeout(Some(timeout)))
    }
}

impl<S: RawStream> Connection for FramedStream<S> {
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }
}

impl<S: RawStream> Drop for FramedStream<S> {
    fn drop(&mut self) {
        // Give a held-back frame tail a bounded chance to leave, so the peer
        // does not see a truncated frame when that can be avoided.
        let _ = self.flush_with(Wait::from_timeout(Some(DROP_LINGER)));
    }
}

fn send_wait_error(failed: WaitFailed, wait: Wait) -> SendError {
    match (failed, wait) {
        (WaitFailed::Io(e), _) => SendError::from_io(e),
        (_, Wait::Never) | (WaitFailed::WouldBlock, _) => SendError::Full,
        (WaitFailed::TimedOut, _) => SendError::Timeout,
    }
}

/// Writes all of `iov`, waiting for writability as `wait` allows. On
/// failure returns how many bytes were written.
fn write_iovecs<S: RawStream>(
    stream: &S,
    mut iov: &mut [IoSlice<'_>],
    wait: Wait,
) -> Result<(), (usize, WaitFailed)> {
    let total: usize = iov.iter().map(|b| b.len()).sum();
    let mut written = 0;
    while written < total {
        match stream.write_nonblocking(iov) {
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut iov, n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                poll_fds(stream, false, true, wait).map_err(|f| (written, f))?;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, WaitFailed::Io(e))),
        }
    }
    Ok(())
}

/// Appends to `pending` everything of `parts` (a frame's header and
/// payload, back to back) from byte offset `from` on.
fn extend_tail(pending: &mut Vec<u8>, parts: &[&[u8]], mut from: usize) {
    for part in parts {
        if from < part.len() {
            pending.extend_from_slice(&part[from..]);
            from = 0;
        } else {
            from -= part.len();
        }
    }
}

/// Polls the stream's descriptors. Returns (readable, writable); hang-up and
/// error conditions count as ready so the next I/O call reports them.
fn poll_fds<S: RawStream>(
    stream: &S,
    read: bool,
    write: bool,
    wait: Wait,
) -> Result<(bool, bool), WaitFailed> {
    let timeout = match wait {
        Wait::Never => Some(Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }),
        Wait::Until(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            Some(Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            }))
        }
        Wait::Forever => None,
    };
    let ready_flags = PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL;
    let mut fds = Vec::with_capacity(2);
    if read {
        fds.push(PollFd::from_borrowed_fd(stream.read_fd(), PollFlags::IN));
    }
    if write {
        fds.push(PollFd::from_borrowed_fd(stream.write_fd(), PollFlags::OUT));
    }
    match rustix::event::poll(&mut fds, timeout.as_ref()) {
        Ok(0) => Err(match wait {
            Wait::Never => WaitFailed::WouldBlock,
            _ => WaitFailed::TimedOut,
        }),
        Ok(_) => {
            let mut it = fds.iter();
            let readable = read
                && it
                    .next()
                    .is_some_and(|fd| fd.revents().intersects(PollFlags::IN | ready_flags));
            let writable = write
                && it
                    .next()
                    .is_some_and(|fd| fd.revents().intersects(PollFlags::OUT | ready_flags));
            Ok((readable, writable))
        }
        // A signal interrupted the wait: report no readiness; callers loop.
        Err(rustix::io::Errno::INTR) => Ok((false, false)),
        Err(e) => Err(WaitFailed::Io(e.into())),
    }
}
