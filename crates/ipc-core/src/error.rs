//! Per-operation errors.
//!
//! Each operation has its own enum so a caller matches only on what that
//! operation can return. Every enum is `#[non_exhaustive]`: transports may
//! learn new failure modes without a breaking change.
//!
//! A send takes the message as `&[u8]`, so on any `SendError` the caller
//! still holds the message and can retry it: nothing is lost silently.

use std::io;

/// Why a frame could not be sent. The frame was **not** sent (not even in
/// part) when this is returned, except for [`SendError::Disconnected`],
/// [`SendError::Corrupted`] and [`SendError::Io`], after which the
/// connection is unusable anyway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer has gone: it closed its end, exited or crashed.
    #[error("peer disconnected")]
    Disconnected,
    /// The send timeout elapsed before the frame could be written.
    #[error("send timed out")]
    Timeout,
    /// The buffer towards the peer is full (`try_send`, or
    /// [`Backpressure::Fail`](crate::Backpressure::Fail)).
    #[error("send buffer full")]
    Full,
    /// The frame is larger than the connection's maximum message size.
    #[error("frame of {len} bytes exceeds the maximum message size of {max} bytes")]
    FrameTooLarge {
        /// Length of the rejected frame.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// Shared state the transport depends on is corrupted (shared memory).
    #[error("corrupted transport state: {0}")]
    Corrupted(String),
    /// An operating-system error not covered above.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Why no frame was received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The peer has gone and every frame it sent has been received.
    #[error("peer disconnected")]
    Disconnected,
    /// The receive timeout elapsed with no complete frame.
    #[error("receive timed out")]
    Timeout,
    /// `try_recv` found no complete frame.
    #[error("no frame available")]
    Empty,
    /// The peer sent a frame larger than this side's maximum message size.
    /// The frame is discarded without being buffered; the next receive
    /// returns the frame after it.
    #[error("incoming frame of {len} bytes exceeds the maximum message size of {max} bytes")]
    FrameTooLarge {
        /// Declared length of the discarded frame.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The byte stream or shared state is not a valid frame sequence
    /// (garbage bytes, a frame cut off by the peer's exit, a ring index out
    /// of range). The connection cannot recover; later receives fail too.
    #[error("corrupted stream: {0}")]
    Corrupted(String),
    /// An operating-system error not covered above.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Why a connection could not be established (listen, accept, connect,
/// spawn).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The address string does not parse.
    #[error(transparent)]
    InvalidAddress(#[from] crate::AddressError),
    /// The address names another transport than the one asked to use it.
    #[error("address `{address}` is not for the {expected} transport")]
    WrongTransport {
        /// The address given.
        address: String,
        /// The transport that was asked to use it.
        expected: &'static str,
    },
    /// The configuration is not valid for this transport.
    #[error("invalid configuration: {0}")]
    InvalidConfig(#[from] crate::ConfigError),
    /// A socket path longer than the kernel accepts.
    #[error("socket path `{path}` is {len} bytes; the limit is {max}")]
    PathTooLong {
        /// The path given.
        path: String,
        /// Its length in bytes.
        len: usize,
        /// The longest path accepted.
        max: usize,
    },
    /// Nothing listens at the address, or a directory on its path is missing.
    #[error("{0}: no such endpoint")]
    NotFound(String),
    /// A live endpoint already uses the address.
    #[error("{0}: address in use by a live endpoint")]
    AddrInUse(String),
    /// The endpoint exists but this process may not use it.
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    /// The endpoint is of an incompatible layout or version.
    #[error("incompatible endpoint: {0}")]
    Incompatible(String),
    /// The endpoint's shared state is corrupted.
    #[error("corrupted endpoint: {0}")]
    Corrupted(String),
    /// No peer arrived within the timeout.
    #[error("timed out waiting for a connection")]
    Timeout,
    /// An operating-system error not covered above.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl SendError {
    /// Maps an I/O error from a write to the matching variant.
    pub fn from_io(err: io::Error) -> Self {
        if is_disconnect(&err) {
            SendError::Disconnected
        } else {
            SendError::Io(err)
        }
    }
}

impl RecvError {
    /// Maps an I/O error from a read to the matching variant.
    pub fn from_io(err: io::Error) -> Self {
        if is_disconnect(&err) {
            RecvError::Disconnected
        } else {
            RecvError::Io(err)
        }
    }
}

fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::UnexpectedEof
    )
}
