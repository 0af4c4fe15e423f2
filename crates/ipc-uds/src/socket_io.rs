//! The async socket's two sides, as tokio's `AsyncRead` and `AsyncWrite`:
//! registered with the reactor for reading only, and watched for room
//! only while a write waits for it.
//!
//! Why not tokio's `UnixStream`: it registers for both, edge-triggered,
//! and the kernel wakes a Unix socket's writability waiters as the peer
//! reads what was sent. While a multi-thread runtime's workers are idle,
//! one of them waits in `epoll_wait`, and a stream of small messages sent
//! from the runtime's main future woke it again and again on the
//! sender's CPU: 0.54x the blocking rate, against 0.85x from a
//! current-thread runtime (docs/BENCHMARKS.md, "Streams through the async
//! API").

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// The receiving side of an async Unix socket (see the module docs).
#[derive(Debug)]
pub struct SocketReader {
    socket: Arc<AsyncFd<UnixStream>>,
}

/// The sending side of an async Unix socket (see the module docs).
/// Dropping it shuts the socket down for writing, as tokio's owned write
/// half does: the peer reads the end of the stream.
#[derive(Debug)]
pub struct SocketWriter {
    socket: Arc<AsyncFd<UnixStream>>,
    /// A second descriptor of the socket, registered for writability
    /// while a write waits for room; dropped once a write goes out. A
    /// write cancelled while it waits leaves it registered until the next
    /// one: meanwhile only the peer's reads of what was already sent can
    /// wake the reactor (the kernel signals room as they free it), so
    /// that costs at most a wake-up per buffer the peer reads.
    room: Option<AsyncFd<UnixStream>>,
}

/// Registers `stream` (made non-blocking) with the current runtime's
/// reactor and splits it into its two sides.
pub(crate) fn split(stream: UnixStream) -> io::Result<(SocketReader, SocketWriter)> {
    stream.set_nonblocking(true)?;
    let socket = Arc::new(register(stream, Interest::READABLE)?);
    Ok((
        SocketReader {
            socket: Arc::clone(&socket),
        },
        SocketWriter { socket, room: None },
    ))
}

impl AsFd for SocketReader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.get_ref().as_fd()
    }
}

impl AsFd for SocketWriter {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.get_ref().as_fd()
    }
}

/// Registers `socket` with the current runtime's reactor for `interest`.
fn register(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: the `UnixStream` moved in owns its open descriptor, always
    // names that one, and closes it only when the `AsyncFd` drops it.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

impl AsyncRead for SocketReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.socket.poll_read_ready(cx))?;
            // SAFETY: `recv` only writes into the slice (rustix takes
            // uninitialized memory), so nothing initialized is made
            // uninitialized.
            let unfilled = unsafe { buf.unfilled_mut() };
            let received = ready.try_io(|socket| {
                rustix::net::recv(socket.get_ref(), unfilled, RecvFlags::empty())
                    .map(|((init, _), _)| init.len())
                    .map_err(io::Error::from)
            });
            match received {
                Ok(Ok(n)) => {
                    // SAFETY: `recv` initialized the first `n` bytes of
                    // the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Not readable after all: readiness was cleared, wait again.
                Err(_would_block) => {}
            }
        }
    }
}

/// The most buffers one `sendmsg` takes (Linux's `IOV_MAX`); a write of
/// more sends the first ones, as `std`'s vectored writes do.
const MAX_BUFFERS: usize = 1024;

/// One non-blocking send of `bufs`, never raising `SIGPIPE` (a closed
/// peer is `BrokenPipe`, as everywhere else).
fn send(socket: &UnixStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(MAX_BUFFERS)];
    loop {
        let sent = rustix::net::sendmsg(
            socket,
            bufs,
            &mut SendAncillaryBuffer::default(),
            SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
        );
        match sent {
            Err(Errno::INTR) => continue,
            sent => return sent.map_err(io::Error::from),
        }
    }
}

impl SocketWriter {
    fn poll_send(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            match send(self.socket.get_ref(), bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                sent => {
                    // Room again: stop watching for it.
                    self.room = None;
                    return Poll::Ready(sent);
                }
            }
            let room = match &mut self.room {
                Some(room) => room,
                None => {
                    let watch = self.socket.get_ref().try_clone()?;
                    self.room.insert(register(watch, Interest::WRITABLE)?)
                }
            };
            // Registered after the full send: a socket that has room by
            // now is reported ready at once (epoll looks on adding).
            let mut ready = ready!(room.poll_write_ready(cx))?;
            ready.clear_ready();
        }
    }
}

impl AsyncWrite for SocketWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_send(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.get_ref().shutdown(Shutdown::Write))
    }
}

impl Drop for SocketWriter {
    fn drop(&mut self) {
        // The peer sees the end of the stream even while this side still
        // reads (the reader holds the socket open).
        let _ = self.socket.get_ref().shutdown(Shutdown::Write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A vectored write of more buffers than one `sendmsg` takes sends
    /// the first ones, and the rest follow in order (before: the whole
    /// write failed, `EMSGSIZE`).
    #[test]
    fn a_write_of_more_buffers_than_the_kernel_takes_goes_out_whole() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            let (_, mut writer) = split(ours).expect("split");
            let (mut reader, _keep) = split(theirs).expect("split");
            let parts: Vec<Vec<u8>> = (0..3 * MAX_BUFFERS).map(|i| vec![i as u8; 3]).collect();
            let whole: Vec<u8> = parts.concat();
            let writing = async {
                let mut bufs: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                let mut slices = &mut bufs[..];
                while !slices.is_empty() {
                    let n = writer.write_vectored(slices).await.expect("write");
                    assert!(n > 0, "a write sends something");
                    IoSlice::advance_slices(&mut slices, n);
                }
            };
            let reading = async {
                let mut got = vec![0u8; whole.len()];
                reader.read_exact(&mut got).await.expect("read");
                got
            };
            let ((), got) = tokio::join!(writing, reading);
            assert_eq!(got, whole);
        });
    }
}
