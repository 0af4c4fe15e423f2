//! The tokio-async twins of the [role traits](crate::role).
//!
//! They are separate traits implemented by separate types: the blocking
//! path never runs an async runtime underneath.
//!
//! **Cancel safety.** Every future here is cancel-safe, so each can be a
//! branch of `tokio::select!`: dropping a `recv` loses no frame (the next
//! `recv` returns it), and dropping a `send` either sent nothing or
//! committed the whole frame (its tail goes out before the next frame; see
//! [`FrameWriteHalf`](crate::stream_async::FrameWriteHalf) for split
//! halves). The conformance kit and `ipc-core`'s tests check both.
//!
//! **Many connections at once.** [`AsyncSplit::into_split`] gives owned
//! halves, so one task reads while another writes; [`AsyncFrameReceiver::into_frames`]
//! and [`AsyncFrameSender::into_sink`] turn a half into a `futures`
//! [`Stream`](futures_core::Stream) and [`Sink`](futures_sink::Sink) for
//! `StreamMap`, `select_all` and `forward`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::frames::{FrameSink, Frames};
use crate::{Address, Capabilities, Config, ConnectError, PeerCredentials, RecvError, SendError};

/// The sending half of an async connection.
pub trait AsyncFrameSender: Send {
    /// Sends one frame; see [`FrameSender::send`](crate::FrameSender::send)
    /// for the contract, including [`Config::send_timeout`]. Cancel-safe:
    /// dropped, it sent nothing or committed the whole frame.
    fn send(&mut self, frame: &[u8]) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Sends one frame, waiting at most `timeout` for room. Cancel-safe
    /// as [`send`](Self::send).
    fn send_timeout(
        &mut self,
        frame: &[u8],
        timeout: Duration,
    ) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Pushes out anything the connection holds back. Cancel-safe: what
    /// it wrote stays written, the rest stays held.
    fn flush(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Sends one frame if that needs no waiting: `Ok` once it is
    /// committed (as from [`send`](Self::send)), [`SendError::Full`] with
    /// nothing of it sent when it would have to wait. Never waits, so it
    /// needs no task and no timer: the fast path of a caller that writes
    /// its own frame (a hub). A transport that cannot tell without
    /// waiting says `Full` (the default), and so may one for a frame
    /// `send` handles better (shared memory: one it would copy into
    /// memory of its own); the caller then sends.
    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let _ = frame;
        Err(SendError::Full)
    }

    /// Takes a small frame to go out in one write with the frames after
    /// it, where the transport has a system call per write to save (a
    /// byte stream): `Ok` once it is committed, held until the next
    /// [`send`](Self::send) or [`flush`](Self::flush) writes it (before
    /// anything sent later). Never waits. [`SendError::Full`], with
    /// nothing of it taken, where the transport does not gather (the
    /// default: shared memory and zenoh batch on their own), the frame is
    /// large, or enough is held already; then send it. A sender that
    /// gathers must flush when no frame follows (a hub's writer does, when
    /// its queue is empty).
    fn gather(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let _ = frame;
        Err(SendError::Full)
    }

    /// Where memory to write a frame in place comes from: see
    /// [`FrameSender::lender`](crate::FrameSender::lender).
    fn lender(&self) -> crate::Lender {
        crate::Lender::heap()
    }

    /// This sender as a [`Sink`](futures_sink::Sink) of frames (see
    /// [`FrameSink`]).
    fn into_sink(self) -> FrameSink<Self>
    where
        Self: Sized + 'static,
    {
        FrameSink::new(self)
    }
}

/// The receiving half of an async connection.
pub trait AsyncFrameReceiver: Send {
    /// Receives the next frame, waiting at most [`Config::recv_timeout`].
    /// Cancel-safe: dropped, it took no frame (the next call returns it).
    fn recv(&mut self) -> impl Future<Output = Result<Bytes, RecvError>> + Send;

    /// Receives the next frame, waiting at most `timeout` (instead of the
    /// configured receive timeout). Cancel-safe as [`recv`](Self::recv).
    fn recv_timeout(
        &mut self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Bytes, RecvError>> + Send;

    /// Receives the next frame if one is ready now, else
    /// [`RecvError::Empty`]. Never waits.
    fn try_recv(&mut self) -> Result<Bytes, RecvError> {
        // `recv` is cancel-safe, so polling it once and dropping it is exact.
        let mut fut = pin!(self.recv());
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(RecvError::Empty),
        }
    }

    /// This receiver as a [`Stream`](futures_core::Stream) of frames (see
    /// [`Frames`]).
    fn into_frames(self) -> Frames<Self>
    where
        Self: Sized + 'static,
    {
        Frames::new(self)
    }
}

/// A duplex async connection to one peer.
pub trait AsyncConnection: AsyncFrameSender + AsyncFrameReceiver {
    /// What this connection's transport supports.
    fn capabilities(&self) -> Capabilities;

    /// The largest frame this connection sends and takes: its
    /// [`Config::max_message_size`] (by default the transport's own
    /// limit). Code that queues frames for a writer elsewhere (a hub)
    /// checks against it up front, so an oversized frame is the sender's
    /// error, not the connection's end.
    fn max_message_size(&self) -> usize {
        self.capabilities().max_message_size
    }

    /// The peer process as the operating system reports it (unknown
    /// fields are `None`).
    fn peer_credentials(&self) -> PeerCredentials {
        PeerCredentials::default()
    }
}

/// An async connection that splits into owned halves, so one task can
/// receive while another sends (neither waits for the other).
pub trait AsyncSplit: AsyncConnection + Sized {
    /// The receiving half.
    type ReadHalf: AsyncFrameReceiver + 'static;
    /// The sending half.
    type WriteHalf: AsyncFrameSender + 'static;

    /// Splits the connection. Dropping both halves closes it.
    fn into_split(self) -> (Self::ReadHalf, Self::WriteHalf);
}

/// Accepts async connections from peers at an address.
pub trait AsyncListener: Send {
    /// The connection type accepted.
    type Connection: AsyncConnection;

    /// Waits for the next peer. Cancel-safe for the stream transports (a
    /// connection the kernel queued stays queued); see each transport.
    fn accept(&mut self) -> impl Future<Output = Result<Self::Connection, ConnectError>> + Send;

    /// The address peers connect to.
    fn address(&self) -> &Address;
}

/// Establishes async connections to listening peers.
pub trait AsyncConnector {
    /// The connection type established.
    type Connection: AsyncConnection;

    /// Connects to `address`.
    fn connect(
        &self,
        address: &Address,
        config: &Config,
    ) -> impl Future<Output = Result<Self::Connection, ConnectError>> + Send;
}
