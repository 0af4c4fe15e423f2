//! One error enum per operation.

use ipc_core::{CodecError, RecvError, SendError};

use crate::PeerId;
use crate::wire::WireError;

/// Why a [`call`](crate::HubHandle::call) got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No such peer: it never joined, or it has left.
    #[error("no peer {0}")]
    UnknownPeer(PeerId),
    /// No reply before the deadline (the request may still be handled;
    /// a late reply is discarded).
    #[error("no reply before the deadline")]
    Timeout,
    /// The peer left before it replied.
    #[error("peer left before replying: {0}")]
    PeerGone(LeaveReason),
    /// The peer answered that it could not handle the request.
    #[error("peer failed the call: {0}")]
    Failed(String),
    /// The request could not be encoded.
    #[error("request: {0}")]
    Encode(CodecError),
    /// The reply did not decode as the expected type.
    #[error("reply: {0}")]
    Decode(CodecError),
    /// The request's frame (its body and the 9-byte envelope) is larger
    /// than the connection's `max_message_size`. Nothing was sent; the
    /// connection goes on.
    #[error("a request of {len} bytes is larger than the connection's limit of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The connection's limit.
        max: usize,
    },
}

/// Why a one-way message was not queued for its peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendToError {
    /// No such peer: it never joined, or it has left.
    #[error("no peer {0}")]
    UnknownPeer(PeerId),
    /// The peer's queue stayed full until the send timeout: it is not
    /// reading. Nothing was queued.
    #[error("the peer's queue is full")]
    Full,
    /// The peer has left.
    #[error("peer left: {0}")]
    PeerGone(LeaveReason),
    /// The message could not be encoded.
    #[error("message: {0}")]
    Encode(CodecError),
    /// The frame (the body and the 9-byte envelope) is larger than the
    /// connection's `max_message_size`. Nothing was sent (a reply that is
    /// too large fails its call instead); the connection goes on.
    #[error("a frame of {len} bytes is larger than the connection's limit of {max}")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The connection's limit.
        max: usize,
    },
    /// A [`LoanedBody`](crate::LoanedBody)'s memory could not be made
    /// immutable (sealed) to be sent. Nothing was sent.
    #[error("sealing the loaned body: {0}")]
    Memory(std::io::Error),
}

/// Why an agent could not join a hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The configuration is out of range.
    #[error(transparent)]
    InvalidConfig(#[from] crate::HubConfigError),
    /// The name is empty, too long, not utf-8 or has control characters.
    #[error("invalid agent name: {0}")]
    InvalidName(String),
    /// The hub did not welcome the agent before the deadline.
    #[error("the hub did not answer the handshake in time")]
    Timeout,
    /// The hello could not be sent.
    #[error("sending the hello: {0}")]
    Send(SendError),
    /// The hub's answer did not arrive.
    #[error("waiting for the welcome: {0}")]
    Recv(RecvError),
    /// The hub answered with something other than a welcome.
    #[error("the hub refused or broke the handshake: {0}")]
    Refused(String),
}

/// Why a connection did not become a peer (in
/// [`HubEvent::Rejected`](crate::HubEvent::Rejected) and from
/// [`HubHandle::add`](crate::HubHandle::add)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// No hello before the handshake timeout.
    #[error("no hello within the handshake timeout")]
    Timeout,
    /// The first frame was not a valid hello.
    #[error("bad handshake: {0}")]
    Protocol(#[from] WireError),
    /// The connection failed or closed during the handshake.
    #[error("connection failed during the handshake: {0}")]
    Connection(String),
    /// The hub is shutting down.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// Dropped to make room: the hub had
    /// [`max_handshakes`](crate::HubConfig::max_handshakes) under way, and
    /// the process behind this one had the most of them.
    #[error("dropped to make room for other handshakes (its process had the most under way)")]
    Crowded,
}

/// Why a peer left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaveReason {
    /// It said goodbye and closed the connection.
    #[error("closed: {0}")]
    Closed(String),
    /// The connection ended without a goodbye: the process exited,
    /// crashed or was killed.
    #[error("disconnected without a goodbye")]
    Disconnected,
    /// It broke the protocol (a frame that is not an envelope, a frame
    /// over the size limit, a second hello); the hub dropped it.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The transport failed (an I/O error, corrupted shared state).
    #[error("transport failed: {0}")]
    Failed(String),
    /// This side removed it or shut down.
    #[error("removed by this side")]
    Removed,
}
