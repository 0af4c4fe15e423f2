#![doc = include_str!("../README.md")]
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod address;
pub mod admission;
mod assembly;
mod capabilities;
pub mod codec;
mod config;
mod error;
pub mod frame;
#[cfg(feature = "tokio")]
mod frames;
pub mod loan;
// Verifiable messages for the conformance kit and the benchmark harness:
// shared by them, not part of the API a runtime uses.
#[doc(hidden)]
pub mod payload;
mod peer;
pub mod role;
#[cfg(feature = "tokio")]
pub mod role_async;
pub mod stream;
#[cfg(feature = "tokio")]
pub mod stream_async;
mod typed;
#[cfg(feature = "tokio")]
mod typed_async;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use address::{ADDRESS_ENV, Address, AddressError, MAX_SHM_NAME};
pub use assembly::{DEFAULT_FRAME_BUDGET, DEFAULT_FRAME_DEADLINE, FrameBudget};
pub use bytes::Bytes;
pub use capabilities::Capabilities;
#[cfg(feature = "bincode")]
pub use codec::Bincode;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "msgpack")]
pub use codec::MessagePack;
pub use codec::{Codec, CodecError, Postcard};
pub use config::{
    Backpressure, Config, ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE_LIMIT, NetworkAccess, PeerOwner, WaitStrategy,
};
pub use error::{ConnectError, RecvError, SendError};
#[cfg(feature = "tokio")]
pub use frames::{FrameSink, Frames};
pub use loan::{Lender, LentMemory, Loan};
pub use peer::PeerCredentials;
pub use role::{BatchSendError, Connection, Connector, FrameReceiver, FrameSender, Listener};
#[cfg(feature = "tokio")]
pub use role_async::{
    AsyncConnection, AsyncConnector, AsyncFrameReceiver, AsyncFrameSender, AsyncListener,
    AsyncSplit,
};
pub use typed::{Typed, TypedRecvError, TypedSendError};
#[cfg(feature = "tokio")]
pub use typed_async::AsyncTyped;
