//! The tokio-async twins of the [role traits](crate::role).
//!
//! They are separate traits implemented by separate types: the blocking
//! path never runs an async runtime underneath. The futures are
//! cancel-safe: dropping a `recv` loses no frame, and dropping a `send`
//! either sends nothing or commits the whole frame.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;

use crate::{Address, Capabilities, Config, ConnectError, RecvError, SendError};

/// The sending half of an async connection.
pub trait AsyncFrameSender: Send {
    /// Sends one frame; see [`FrameSender::send`](crate::FrameSender::send)
    /// for the contract, including [`Config::send_timeout`].
    fn send(&mut self, frame: &[u8]) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Sends one frame, waiting at most `timeout` for room.
    fn send_timeout(
        &mut self,
        frame: &[u8],
        timeout: Duration,
    ) -> impl Future<Output = Result<(), SendError>> + Send;

    /// Pushes out anything the connection holds back.
    fn flush(&mut self) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// The receiving half of an async connection.
pub trait AsyncFrameReceiver: Send {
    /// Receives the next frame, waiting at most [`Config::recv_timeout`].
    fn recv(&mut self) -> impl Future<Output = Result<Bytes, RecvError>> + Send;

    /// Receives the next frame, waiting at most `timeout` (instead of the
    /// configured receive timeout).
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
}

/// A duplex async connection to one peer.
pub trait AsyncConnection: AsyncFrameSender + AsyncFrameReceiver {
    /// What this connection's transport supports.
    fn capabilities(&self) -> Capabilities;
}

/// Accepts async connections from peers at an address.
pub trait AsyncListener: Send {
    /// The connection type accepted.
    type Connection: AsyncConnection;

    /// Waits for the next peer.
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
