//! What arrives from a peer: one-way payloads and requests to answer.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;
use ipc_core::CodecError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{HubCodec, PeerCodec};
use crate::link::Link;
use crate::wire::{self, Kind, Outgoing, encode_value as encode};
use crate::{PeerId, SendToError};

/// A body written in place: memory lent by the connection (or
/// connections) it will go to, with room for the envelope's header in
/// front. On shared memory, a body of
/// [`ipc_shm::LEND_MIN`](https://docs.rs/ipc-shm) bytes or more is a
/// memory file of its own: sent, it is passed, not copied, and every
/// receiver reads the very pages written here (a broadcast writes it
/// once). Elsewhere it is heap memory, copied once as it is sent.
///
/// From [`AgentHandle::loan`](crate::AgentHandle::loan),
/// [`Request::loan`] or [`HubHandle::loan`](crate::HubHandle::loan);
/// zeroed; derefs to the body's bytes.
pub struct LoanedBody(ipc_core::Loan);

impl LoanedBody {
    pub(crate) fn new(lender: &ipc_core::Lender, len: usize) -> std::io::Result<Self> {
        let total = len.checked_add(wire::HEADER).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "body too large")
        })?;
        Ok(LoanedBody(lender.loan(total)?))
    }

    /// Whether it is the transport's own memory (passed, not copied, when
    /// sent), rather than heap memory.
    pub fn is_shared(&self) -> bool {
        self.0.is_lent()
    }

    /// Keeps only the first `len` bytes of the body: for a writer that
    /// asked for as much as it might need and wrote less.
    pub fn truncate(&mut self, len: usize) {
        self.0.truncate(len.saturating_add(wire::HEADER));
    }

    /// The frame: the header written in front, the memory frozen.
    pub(crate) fn into_frame(mut self, kind: Kind, id: u64) -> Result<Bytes, SendToError> {
        self.0[..wire::HEADER].copy_from_slice(&wire::header(kind, id));
        self.0.freeze().map_err(SendToError::Memory)
    }
}

impl std::ops::Deref for LoanedBody {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0[wire::HEADER..]
    }
}

impl std::ops::DerefMut for LoanedBody {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0[wire::HEADER..]
    }
}

impl fmt::Debug for LoanedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoanedBody")
            .field("len", &self.len())
            .field("shared", &self.is_shared())
            .finish()
    }
}

/// The body of a one-way message, decoded on demand.
pub struct Payload<C> {
    body: Bytes,
    codec: PeerCodec,
    _codec: PhantomData<fn() -> C>,
}

impl<C: HubCodec> Payload<C> {
    pub(crate) fn new(body: Bytes, codec: PeerCodec) -> Self {
        Payload {
            body,
            codec,
            _codec: PhantomData,
        }
    }

    /// Decodes the payload as a `T`, with the codec its sender speaks;
    /// bytes that are not a `T` are an error, never a panic.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.codec.decode::<C, T>(&self.body)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }
}

impl<C> fmt::Debug for Payload<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.body.len())
    }
}

/// A call from a peer, waiting for an answer.
///
/// Answer it with [`reply`](Self::reply) or [`fail`](Self::fail). A request
/// dropped unanswered fails the call at once ("dropped without an
/// answer"), so a caller never waits out its deadline for nothing.
pub struct Request<C> {
    peer: PeerId,
    id: u64,
    body: Bytes,
    link: Arc<Link>,
    answered: bool,
    _codec: PhantomData<fn() -> C>,
}

impl<C: HubCodec> Request<C> {
    pub(crate) fn new(peer: PeerId, id: u64, body: Bytes, link: Arc<Link>) -> Self {
        Request {
            peer,
            id,
            body,
            link,
            answered: false,
            _codec: PhantomData,
        }
    }

    /// Who called.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Decodes the request as a `T`, with the codec its caller speaks.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CodecError> {
        self.link.codec.decode::<C, T>(&self.body)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// Answers with `value`, waiting up to the send timeout for room in
    /// the caller's queue. An encoding failure is reported to the caller
    /// as a failed call, and returned here.
    pub async fn reply<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), SendToError> {
        let frame = encode::<C, T>(self.link.codec, Kind::Reply, self.id, value)
            .map_err(SendToError::Encode);
        self.answer(frame, "encoded").await
    }

    /// Answers with `body` as it is, not encoded: the caller gets exactly
    /// these bytes (from [`HubHandle::call_bytes`](crate::HubHandle::call_bytes)).
    pub async fn reply_bytes(mut self, body: &[u8]) -> Result<(), SendToError> {
        let frame = wire::encode(Kind::Reply, self.id, body);
        self.answer(Ok(frame.into()), "sent").await
    }

    /// Memory for an answer of `len` bytes, lent by the caller's
    /// connection: write the answer in place and send it with
    /// [`reply_loan`](Self::reply_loan) (see [`LoanedBody`]).
    pub fn loan(&self, len: usize) -> std::io::Result<LoanedBody> {
        LoanedBody::new(&self.link.lender, len)
    }

    /// Answers with a body written in place (the caller gets exactly its
    /// bytes, as from [`reply_bytes`](Self::reply_bytes)); on shared
    /// memory it is passed, not copied.
    pub async fn reply_loan(mut self, body: LoanedBody) -> Result<(), SendToError> {
        let frame = body.into_frame(Kind::Reply, self.id);
        self.answer(frame.map(Into::into), "sealed").await
    }

    /// Sends a reply; if it cannot go (not encoded, not sealed, larger
    /// than the connection takes), the caller is told with a `Fail` at
    /// once instead of waiting out its deadline, and the error returned.
    async fn answer(
        &mut self,
        frame: Result<Outgoing, SendToError>,
        done: &str,
    ) -> Result<(), SendToError> {
        self.answered = true;
        let result = match frame {
            Ok(frame) => self.link.post_default(frame).await,
            Err(e) => Err(e),
        };
        let why = match &result {
            Err(e @ SendToError::TooLarge { .. }) => format!("the reply could not be sent: {e}"),
            Err(e @ (SendToError::Encode(_) | SendToError::Memory(_))) => {
                format!("the reply could not be {done}: {e}")
            }
            _ => return result,
        };
        let _ = self
            .link
            .try_post(wire::encode(Kind::Fail, self.id, why.as_bytes()));
        result
    }

    /// Answers that the call failed, with a reason the caller sees as
    /// [`CallError::Failed`](crate::CallError::Failed).
    pub async fn fail(mut self, reason: &str) -> Result<(), SendToError> {
        self.answered = true;
        let frame = wire::encode(Kind::Fail, self.id, reason.as_bytes());
        self.link.post_default(frame).await
    }
}

impl<C> Drop for Request<C> {
    fn drop(&mut self) {
        if !self.answered {
            let frame = wire::encode(Kind::Fail, self.id, b"dropped without an answer");
            let _ = self.link.try_post(frame);
        }
    }
}

impl<C> fmt::Debug for Request<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("peer", &self.peer)
            .field("id", &self.id)
            .field("bytes", &self.body.len())
            .finish()
    }
}
