//! Typed channels over async connections: the async twin of
//! [`Typed`](crate::Typed), with the same codecs and errors.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    AsyncFrameReceiver, AsyncFrameSender, Codec, Postcard, TypedRecvError, TypedSendError,
};

/// An async connection that sends `Out` and receives `In` values, encoded
/// by `C` (postcard by default).
///
/// Cancel safety is the connection's: [`recv`](Self::recv) decodes only
/// after a whole frame arrived, so dropping it loses no value; dropping
/// [`send`](Self::send) either sends nothing or commits the whole value.
///
/// ```
/// # use ipc_core::{AsyncFrameReceiver, AsyncFrameSender, AsyncTyped, Bytes, RecvError, SendError};
/// # use std::{collections::VecDeque, time::Duration};
/// # #[derive(Default)] struct Loopback(VecDeque<Bytes>);
/// # impl AsyncFrameSender for Loopback {
/// #   async fn send(&mut self, f: &[u8]) -> Result<(), SendError> { self.0.push_back(Bytes::copy_from_slice(f)); Ok(()) }
/// #   async fn send_timeout(&mut self, f: &[u8], _: Duration) -> Result<(), SendError> { self.send(f).await }
/// #   async fn flush(&mut self) -> Result<(), SendError> { Ok(()) }
/// # }
/// # impl AsyncFrameReceiver for Loopback {
/// #   async fn recv(&mut self) -> Result<Bytes, RecvError> { self.0.pop_front().ok_or(RecvError::Empty) }
/// #   async fn recv_timeout(&mut self, _: Duration) -> Result<Bytes, RecvError> { self.recv().await }
/// # }
/// # let rt = tokio::runtime::Builder::new_current_thread().build()?;
/// # rt.block_on(async {
/// // Any async connection works; a loopback stands in for one here.
/// let mut chan: AsyncTyped<_, (u32, String), (u32, String)> = AsyncTyped::new(Loopback::default());
/// chan.send(&(1, "hello".to_string())).await?;
/// assert_eq!(chan.recv().await?, (1, "hello".to_string()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncTyped<Conn, Out, In, C = Postcard> {
    conn: Conn,
    codec: C,
    buf: Vec<u8>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<Conn, Out, In> AsyncTyped<Conn, Out, In, Postcard> {
    /// Wraps `conn` with the default codec (postcard).
    pub fn new(conn: Conn) -> Self {
        Self::with_codec(conn, Postcard)
    }
}

impl<Conn, Out, In, C> AsyncTyped<Conn, Out, In, C> {
    /// Wraps `conn` with `codec`.
    pub fn with_codec(conn: Conn, codec: C) -> Self {
        AsyncTyped {
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

impl<Conn, Out, In, C> AsyncTyped<Conn, Out, In, C>
where
    Conn: AsyncFrameSender,
    Out: Serialize,
    C: Codec,
{
    fn encode(&mut self, value: &Out) -> Result<(), TypedSendError> {
        self.buf.clear();
        self.codec
            .encode(value, &mut self.buf)
            .map_err(TypedSendError::Encode)
    }

    /// Encodes and sends `value` ([`AsyncFrameSender::send`]).
    pub async fn send(&mut self, value: &Out) -> Result<(), TypedSendError> {
        self.encode(value)?;
        self.conn.send(&self.buf).await?;
        Ok(())
    }

    /// Encodes and sends `value`, waiting at most `timeout` for room.
    pub async fn send_timeout(
        &mut self,
        value: &Out,
        timeout: Duration,
    ) -> Result<(), TypedSendError> {
        self.encode(value)?;
        self.conn.send_timeout(&self.buf, timeout).await?;
        Ok(())
    }
}

impl<Conn, Out, In, C> AsyncTyped<Conn, Out, In, C>
where
    Conn: AsyncFrameReceiver,
    In: DeserializeOwned,
    C: Codec,
{
    /// Receives and decodes the next value ([`AsyncFrameReceiver::recv`]).
    /// A frame that does not decode is consumed and reported as
    /// [`TypedRecvError::Decode`]; the next call reads the one after it.
    pub async fn recv(&mut self) -> Result<In, TypedRecvError> {
        let frame = self.conn.recv().await?;
        self.codec.decode(&frame).map_err(TypedRecvError::Decode)
    }

    /// Receives and decodes the next value, waiting at most `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<In, TypedRecvError> {
        let frame = self.conn.recv_timeout(timeout).await?;
        self.codec.decode(&frame).map_err(TypedRecvError::Decode)
    }
}
