//! The blocking role traits: send a frame, receive a frame, establish a
//! connection.
//!
//! A connection is duplex and implements both [`FrameSender`] and
//! [`FrameReceiver`]. A frame is any byte string from empty up to the
//! configured maximum; boundaries are kept exactly. Every method that can
//! block has a `try_` form that never blocks and a `_timeout` form; the
//! plain form waits as long as the connection's [`Config`]
//! says.

use std::time::Duration;

use bytes::Bytes;

use crate::{Address, Capabilities, Config, ConnectError, RecvError, SendError};

/// The sending half of a connection.
pub trait FrameSender {
    /// Sends one frame.
    ///
    /// Blocks while the transport's buffer is full, for at most
    /// [`Config::send_timeout`], or fails with [`SendError::Full`] at once
    /// under [`Backpressure::Fail`](crate::Backpressure::Fail). `Ok` means
    /// the frame is committed: it will reach the peer, in order, unless the
    /// connection fails.
    fn send(&mut self, frame: &[u8]) -> Result<(), SendError>;

    /// Sends one frame if that needs no waiting, else [`SendError::Full`].
    fn try_send(&mut self, frame: &[u8]) -> Result<(), SendError>;

    /// Where memory to write a frame in place comes from (see
    /// [`loan`](crate::loan)): a frozen [`Loan`](crate::Loan) from it
    /// goes by reference on this connection where the transport can
    /// (shared memory), else it is copied once as any frame. Heap memory
    /// unless the transport says otherwise.
    fn lender(&self) -> crate::Lender {
        crate::Lender::heap()
    }

    /// Sends one frame, waiting at most `timeout` for room
    /// ([`SendError::Timeout`]).
    fn send_timeout(&mut self, frame: &[u8], timeout: Duration) -> Result<(), SendError>;

    /// Sends several frames, in order, with as few system calls as the
    /// transport allows. On error, [`BatchSendError::sent`] says how many
    /// frames were committed before it.
    fn send_batch(&mut self, frames: &[&[u8]]) -> Result<(), BatchSendError> {
        for (sent, frame) in frames.iter().enumerate() {
            self.send(frame)
                .map_err(|error| BatchSendError { sent, error })?;
        }
        Ok(())
    }

    /// Pushes out anything the connection holds back, waiting at most
    /// [`Config::send_timeout`]. Transports that never hold frames back
    /// return `Ok` at once.
    fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}

/// A batch send that stopped part way.
#[derive(Debug, thiserror::Error)]
#[error("batch send failed after {sent} frames: {error}")]
pub struct BatchSendError {
    /// Frames committed before the failure; the rest were not sent.
    pub sent: usize,
    /// Why the next frame failed.
    #[source]
    pub error: SendError,
}

/// The receiving half of a connection.
pub trait FrameReceiver {
    /// Receives the next frame, waiting at most [`Config::recv_timeout`].
    ///
    /// Returns [`RecvError::Disconnected`] once the peer has gone and every
    /// frame it sent has been received.
    fn recv(&mut self) -> Result<Bytes, RecvError>;

    /// Receives the next frame if one is complete, else [`RecvError::Empty`].
    fn try_recv(&mut self) -> Result<Bytes, RecvError>;

    /// Receives the next frame, waiting at most `timeout`
    /// ([`RecvError::Timeout`]).
    fn recv_timeout(&mut self, timeout: Duration) -> Result<Bytes, RecvError>;
}

/// A duplex connection to one peer.
pub trait Connection: FrameSender + FrameReceiver {
    /// What this connection's transport supports.
    fn capabilities(&self) -> Capabilities;
}

/// Accepts connections from peers at an address.
pub trait Listener {
    /// The connection type accepted.
    type Connection: Connection;

    /// Waits for the next peer.
    fn accept(&mut self) -> Result<Self::Connection, ConnectError>;

    /// Waits at most `timeout` for the next peer ([`ConnectError::Timeout`]).
    fn accept_timeout(&mut self, timeout: Duration) -> Result<Self::Connection, ConnectError>;

    /// The address peers connect to; hand it to an agent (for example in
    /// [`ADDRESS_ENV`](crate::ADDRESS_ENV)).
    fn address(&self) -> &Address;
}

/// Establishes connections to listening peers; implemented by each
/// transport's marker type (`ipc_uds::Uds`, ...), so generic code can be
/// handed a transport as a value.
pub trait Connector {
    /// The connection type established.
    type Connection: Connection;

    /// Connects to `address`.
    fn connect(&self, address: &Address, config: &Config)
    -> Result<Self::Connection, ConnectError>;
}
