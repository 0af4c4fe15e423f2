//! The tokio twin of [`FramedStream`](crate::stream::FramedStream): a framed
//! duplex connection over any `AsyncRead` + `AsyncWrite` pair (a socket, a
//! child's stdio, a pipe), with the same framing, limits and errors.
//!
//! `recv` is cancel-safe because bytes read go straight into the
//! connection's buffer. `send` is cancel-safe because a frame cut short
//! after its first byte leaves its tail in the connection (a guard stashes
//! it on drop), to be written before the next frame.

use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::assembly::{Assembly, BUDGET_SLICE};
use crate::frame::{FrameDecoder, HEADER_LEN, encode_header};
use crate::{
    AsyncConnection, AsyncFrameReceiver, AsyncFrameSender, AsyncSplit, Backpressure, Capabilities,
    Config, PeerCredentials, RecvError, SendError,
};

/// Frames up to this size are copied next to their header and written with
/// one plain write, which every writer supports without extra system calls.
const COALESCE_MAX: usize = 16 * 1024;

/// The most a half holds of gathered frames ([`AsyncFrameSender::gather`]):
/// one write's worth, well under a socket's or a pipe's buffer, so the
/// write that follows usually goes through at once.
const GATHER_MAX: usize = 64 * 1024;

/// A framed async duplex connection. See the [module docs](self).
///
/// [`into_split`](crate::AsyncSplit::into_split) gives its owned halves,
/// [`FrameReadHalf`] and [`FrameWriteHalf`], so one task can read while
/// another writes.
#[derive(Debug)]
pub struct AsyncFramedStream<R, W> {
    read: FrameReadHalf<R>,
    write: FrameWriteHalf<W>,
    capabilities: Capabilities,
    peer: PeerCredentials,
}

/// The receiving half of an [`AsyncFramedStream`].
///
/// `recv` is cancel-safe: bytes read go straight into the half's buffer.
#[derive(Debug)]
pub struct FrameReadHalf<R> {
    reader: R,
    config: Config,
    decoder: FrameDecoder,
    rbuf: BytesMut,
    /// The frame under way: its deadline and memory budget.
    assembly: Assembly,
    read_eof: bool,
}

/// The sending half of an [`AsyncFramedStream`].
///
/// `send` is cancel-safe: a frame cut short after its first byte leaves its
/// tail in the half, written before the next frame or by
/// [`flush`](AsyncFrameSender::flush). Once split, nothing else pushes that
/// tail out, so a task that cancels a send should flush before it waits
/// for an answer.
#[derive(Debug)]
pub struct FrameWriteHalf<W> {
    writer: W,
    config: Config,
    /// Committed and not yet written: the tail of a frame cut short, or
    /// frames gathered to go out in one write.
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl<R, W> AsyncFramedStream<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    /// Wraps a reader and a writer; the caller has validated `config`.
    pub fn new(reader: R, writer: W, config: Config, capabilities: Capabilities) -> Self {
        AsyncFramedStream {
            capabilities,
            peer: PeerCredentials::default(),
            read: FrameReadHalf {
                reader,
                decoder: FrameDecoder::new(config.max_message_size),
                assembly: Assembly::new(&config),
                config: config.clone(),
                rbuf: BytesMut::new(),
                read_eof: false,
            },
            write: FrameWriteHalf {
                writer,
                config,
                pending: Vec::new(),
                scratch: Vec::new(),
            },
        }
    }

    /// Records what the operating system says about the peer (the
    /// transport knows it: `SO_PEERCRED`, a child's pid).
    pub fn with_peer(mut self, peer: PeerCredentials) -> Self {
        self.peer = peer;
        self
    }

    /// The reader and writer underneath.
    pub fn get_ref(&self) -> (&R, &W) {
        (&self.read.reader, &self.write.writer)
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        &self.write.config
    }

    async fn recv_frame(&mut self) -> Result<Bytes, RecvError> {
        // Set once a write of the held-back tail fails or moves nothing: a
        // peer that shut its reading side fails every write at once, and
        // retrying would spin. The failure shows up on the next send.
        let mut flush_stalled = false;
        loop {
            if let Some(frame) = self.read.next_frame()? {
                return Ok(frame);
            }
            let pending = &mut self.write.pending;
            let read = if pending.is_empty() || flush_stalled {
                self.read.fill().await
            } else {
                // Push a held-back frame tail out while waiting, so a
                // request/response peer never stalls on a half-sent frame.
                tokio::select! {
                    read = self.read.fill() => read,
                    wrote = self.write.writer.write(pending) => {
                        match wrote {
                            Ok(n) if n > 0 => {
                                pending.drain(..n);
                            }
                            _ => flush_stalled = true,
                        }
                        continue;
                    }
                }
            };
            read?;
        }
    }
}

impl<R: AsyncRead + Unpin + Send> FrameReadHalf<R> {
    /// A complete frame already buffered, if any.
    fn next_frame(&mut self) -> Result<Option<Bytes>, RecvError> {
        self.assembly.check()?;
        let frame = self.decoder.next_frame(&mut self.rbuf, self.read_eof)?;
        if let Some(frame) = &frame {
            self.assembly.frame_done(&mut self.rbuf, frame.len());
        }
        Ok(frame)
    }

    /// Reads more bytes into the buffer (cancel-safe: `read_buf` either
    /// moved bytes into it or did nothing). Waiting for the rest of a
    /// frame begun counts against the frame deadline.
    async fn fill(&mut self) -> Result<(), RecvError> {
        let wanted = self.decoder.bytes_wanted(&self.rbuf);
        while !self.assembly.reserve(&mut self.rbuf, wanted) {
            // The budget is spent by other frames: wait for them.
            let started = Instant::now();
            tokio::time::sleep(BUDGET_SLICE).await;
            if self.assembly.waited_for_budget(started.elapsed()) {
                return Err(self.assembly.give_up(&mut self.rbuf));
            }
        }
        let mid_frame = !self.decoder.at_frame_boundary(&self.rbuf);
        let read = match self.assembly.time_left().filter(|_| mid_frame) {
            None => self.reader.read_buf(&mut self.rbuf).await,
            Some(left) => {
                let mut waiting = Waiting {
                    assembly: &mut self.assembly,
                    since: Instant::now(),
                };
                match tokio::time::timeout(left, self.reader.read_buf(&mut self.rbuf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        waiting.assembly.waited(waiting.since.elapsed());
                        waiting.since = Instant::now();
                        return Err(waiting.assembly.give_up(&mut self.rbuf));
                    }
                }
            }
        };
        match read {
            Ok(0) => self.read_eof = true,
            Ok(_) => {}
            Err(e) => return Err(RecvError::from_io(e)),
        }
        Ok(())
    }

    async fn recv_frame(&mut self) -> Result<Bytes, RecvError> {
        loop {
            if let Some(frame) = self.next_frame()? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> FrameWriteHalf<W> {
    /// Sends a frame, waiting until `deadline` at most (`None`: forever).
    async fn send_frame(
        &mut self,
        frame: &[u8],
        deadline: Option<Instant>,
    ) -> Result<(), SendError> {
        self.check_len(frame)?;
        let backpressure = self.config.backpressure;
        match deadline {
            Some(at) => tokio::time::timeout_at(at, flush_all(&mut self.writer, &mut self.pending))
                .await
                .map_err(|_| timeout_error(backpressure))??,
            None => flush_all(&mut self.writer, &mut self.pending).await?,
        }
        let header = encode_header(frame.len());
        let parts: [&[u8]; 2] = if frame.len() <= COALESCE_MAX {
            self.scratch.clear();
            self.scratch.extend_from_slice(&header);
            self.scratch.extend_from_slice(frame);
            [&self.scratch, &[]]
        } else {
            [&header, frame]
        };
        let mut guard = FrameTail {
            pending: &mut self.pending,
            parts,
            written: 0,
        };
        let total = HEADER_LEN + frame.len();
        while guard.written < total {
            let slices = guard.remaining();
            let write = self.writer.write_vectored(&slices);
            let wrote = match deadline {
                Some(at) => match tokio::time::timeout_at(at, write).await {
                    Ok(wrote) => wrote,
                    // Out of time: nothing sent is an error; a started frame
                    // is committed and its tail stashed by the guard.
                    Err(_) if guard.written == 0 => return Err(timeout_error(backpressure)),
                    Err(_) => return Ok(()),
                },
                None => write.await,
            };
            match wrote {
                Ok(0) => return Err(SendError::Disconnected),
                Ok(n) => guard.written += n,
                Err(e) => {
                    guard.abandon();
                    return Err(SendError::from_io(e));
                }
            }
        }
        Ok(())
    }

    /// A frame over the connection's limit is the sender's error, before
    /// anything of it is sent or held.
    fn check_len(&self, frame: &[u8]) -> Result<(), SendError> {
        let max = self.config.max_message_size;
        if frame.len() > max {
            return Err(SendError::FrameTooLarge {
                len: frame.len(),
                max,
            });
        }
        Ok(())
    }

    fn send_deadline(&self) -> Option<Instant> {
        match self.config.backpressure {
            // An elapsed deadline still lets the write be tried once.
            Backpressure::Fail => Some(Instant::now()),
            Backpressure::Block => self.config.send_timeout.map(|t| Instant::now() + t),
        }
    }
}

/// What running out of send time means under `backpressure`.
fn timeout_error(backpressure: Backpressure) -> SendError {
    match backpressure {
        Backpressure::Fail => SendError::Full,
        Backpressure::Block => SendError::Timeout,
    }
}

async fn flush_all<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pending: &mut Vec<u8>,
) -> Result<(), SendError> {
    while !pending.is_empty() {
        match writer.write(pending).await {
            Ok(0) => return Err(SendError::Disconnected),
            Ok(n) => {
                pending.drain(..n);
            }
            Err(e) => return Err(SendError::from_io(e)),
        }
    }
    writer.flush().await.map_err(SendError::from_io)
}

/// The part of a frame not yet written; stashes it into `pending` when
/// dropped part way, so cancelling a send never cuts a frame.
struct FrameTail<'a> {
    pending: &'a mut Vec<u8>,
    parts: [&'a [u8]; 2],
    written: usize,
}

impl FrameTail<'_> {
    fn remaining(&self) -> [IoSlice<'_>; 2] {
        let mut skip = self.written;
        self.parts.map(|part| {
            let from = skip.min(part.len());
            skip -= from;
            IoSlice::new(&part[from..])
        })
    }

    /// The connection failed: there is nothing to keep.
    fn abandon(&mut self) {
        self.written = 0;
    }
}

impl Drop for FrameTail<'_> {
    fn drop(&mut self) {
        if self.written > 0 {
            let mut skip = self.written;
            for part in self.parts {
                let from = skip.min(part.len());
                skip -= from;
                self.pending.extend_from_slice(&part[from..]);
            }
        }
    }
}

impl<W: AsyncWrite + Unpin + Send> AsyncFrameSender for FrameWriteHalf<W> {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let deadline = self.send_deadline();
        self.send_frame(frame, deadline).await
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        match self.send_frame(frame, Some(Instant::now() + timeout)).await {
            Err(SendError::Full) => Err(SendError::Timeout),
            other => other,
        }
    }

    /// Holds a small frame, with its header, behind what is held already.
    fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.check_len(frame)?;
        let held = self.pending.len() + HEADER_LEN + frame.len();
        if frame.len() > COALESCE_MAX || held > GATHER_MAX {
            return Err(SendError::Full);
        }
        self.pending.extend_from_slice(&encode_header(frame.len()));
        self.pending.extend_from_slice(frame);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        match self.send_deadline() {
            Some(at) => tokio::time::timeout_at(at, flush_all(&mut self.writer, &mut self.pending))
                .await
                .map_err(|_| timeout_error(self.config.backpressure))?,
            None => flush_all(&mut self.writer, &mut self.pending).await,
        }
    }
}

/// Counts the time a read waited for an unfinished frame, also when the
/// read is cancelled.
struct Waiting<'a> {
    assembly: &'a mut Assembly,
    since: Instant,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.assembly.waited(self.since.elapsed());
    }
}

/// A receive bounded by `timeout` (`None`: unbounded).
async fn within(
    timeout: Option<Duration>,
    receive: impl std::future::Future<Output = Result<Bytes, RecvError>>,
) -> Result<Bytes, RecvError> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, receive)
            .await
            .unwrap_or(Err(RecvError::Timeout)),
        None => receive.await,
    }
}

impl<R: AsyncRead + Unpin + Send> AsyncFrameReceiver for FrameReadHalf<R> {
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        within(self.config.recv_timeout, self.recv_frame()).await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        within(Some(timeout), self.recv_frame()).await
    }
}

impl<R, W> AsyncFrameSender for AsyncFramedStream<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.write.send(frame).await
    }

    async fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError> {
        self.write.send_timeout(frame, timeout).await
    }

    fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.write.gather(frame)
    }

    async fn flush(&mut self) -> Result<(), SendError> {
        self.write.flush().await
    }
}

impl<R, W> AsyncFrameReceiver for AsyncFramedStream<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    async fn recv(&mut self) -> Result<Bytes, RecvError> {
        within(self.read.config.recv_timeout, self.recv_frame()).await
    }

    async fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError> {
        within(Some(timeout), self.recv_frame()).await
    }
}

impl<R, W> AsyncConnection for AsyncFramedStream<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn max_message_size(&self) -> usize {
        self.config().max_message_size
    }

    fn peer_credentials(&self) -> PeerCredentials {
        self.peer
    }
}

impl<R, W> AsyncSplit for AsyncFramedStream<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type ReadHalf = FrameReadHalf<R>;
    type WriteHalf = FrameWriteHalf<W>;

    fn into_split(self) -> (FrameReadHalf<R>, FrameWriteHalf<W>) {
        (self.read, self.write)
    }
}
