//! Typed channels: serde values over any connection through any codec.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Codec, CodecError, FrameReceiver, FrameSender, Postcard, RecvError, SendError};

/// Why a typed send failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedSendError {
    /// The value could not be encoded; nothing was sent.
    #[error(transparent)]
    Encode(CodecError),
    /// The transport failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a typed receive failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedRecvError {
    /// A frame arrived but is not a valid encoding of the type; the frame
    /// is consumed and the next receive reads the one after it.
    #[error(transparent)]
    Decode(CodecError),
    /// The transport failed.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// A connection that sends `Out` and receives `In` values, encoded by `C`.
///
/// ```
/// # use ipc_core::{Typed, Postcard, FrameSender, FrameReceiver, SendError, RecvError};
/// # use bytes::Bytes;
/// # use std::{collections::VecDeque, time::Duration};
/// # #[derive(Default)] struct Loopback(VecDeque<Bytes>);
/// # impl FrameSender for Loopback {
/// #   fn send(&mut self, f: &[u8]) -> Result<(), SendError> { self.0.push_back(Bytes::copy_from_slice(f)); Ok(()) }
/// #   fn try_send(&mut self, f: &[u8]) -> Result<(), SendError> { self.send(f) }
/// #   fn send_timeout(&mut self, f: &[u8], _: Duration) -> Result<(), SendError> { self.send(f) }
/// # }
/// # impl FrameReceiver for Loopback {
/// #   fn recv(&mut self) -> Result<Bytes, RecvError> { self.0.pop_front().ok_or(RecvError::Empty) }
/// #   fn try_recv(&mut self) -> Result<Bytes, RecvError> { self.recv() }
/// #   fn recv_timeout(&mut self, _: Duration) -> Result<Bytes, RecvError> { self.recv() }
/// # }
/// // Any connection works; a loopback stands in for one here.
/// let mut chan: Typed<_, (u32, String), (u32, String), Postcard> =
///     Typed::with_codec(Loopback::default(), Postcard);
/// chan.send(&(1, "hello".to_string()))?;
/// assert_eq!(chan.recv()?, (1, "hello".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Typed<Conn, Out, In, C = Postcard> {
    conn: Conn,
    codec: C,
    buf: Vec<u8>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Conn, Out, In> Typed<Conn, Out, In, Postcard> {
    /// Wraps `conn` with the default codec (postcard).
    pub fn new(conn: Conn) -> Self {
        Self::with_codec(conn, Postcard)
    }
}

impl<Conn, Out, In, C> Typed<Conn, Out, In, C> {
    /// Wraps `conn` with `codec`.
    pub fn with_codec(conn: Conn, codec: C) -> Self {
        Typed {
            conn,
            codec,
            buf: Vec::new(),
            _types: PhantomData,
        }
    }

    /// The underlying connection, for frame-level use.
    pub fn get_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// Unwraps the connection.
    pub fn into_inner(self) -> Conn {
        self.conn
    }
}

impl<Conn: FrameSender, Out: Serialize, In, C: Codec> Typed<Conn, Out, In, C> {
    /// Encodes and sends `value` ([`FrameSender::send`]).
    pub fn send(&mut self, value: &Out) -> Result<(), TypedSendError> {
        self.buf.clear();
        self.codec
            .encode(value, &mut self.buf)
            .map_err(TypedSendError::Encode)?;
        self.conn.send(&self.buf)?;
        Ok(())
    }
}

impl<Conn: FrameReceiver, Out, In: DeserializeOwned, C: Codec> Typed<Conn, Out, In, C> {
    /// Receives and decodes the next value ([`FrameReceiver::recv`]).
    pub fn recv(&mut self) -> Result<In, TypedRecvError> {
        let frame = self.conn.recv()?;
        self.codec.decode(&frame).map_err(TypedRecvError::Decode)
    }
}
