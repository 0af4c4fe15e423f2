#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// Under loom only the ring and its facade are built and model-checked.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(all(feature = "tokio", not(loom)))]
mod asynchronous;
#[cfg(not(loom))]
mod bell;
#[cfg(not(loom))]
mod blob;
#[cfg(not(loom))]
mod connect;
#[cfg(not(loom))]
mod connection;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(not(loom))]
mod handoff;
#[cfg(not(loom))]
mod listener;
mod ring;
#[cfg(not(loom))]
mod segment;
mod sync;
#[cfg(not(loom))]
mod wait;

#[cfg(not(loom))]
pub use self::exports::*;

#[cfg(not(loom))]
mod exports {
    use ipc_core::{Capabilities, MAX_MESSAGE_SIZE_LIMIT};

    #[cfg(feature = "tokio")]
    pub use crate::asynchronous::{
        AsyncShm, AsyncShmConnection, AsyncShmListener, ShmReadHalf, ShmWriteHalf,
    };
    pub use crate::blob::{Blob, BlobBuf, LEND_MIN};
    pub use crate::connect::Shm;
    pub use crate::connection::{
        DEFAULT_BLOB_THRESHOLD, IDLE_RELEASE, RecvView, SendSlot, ShmConnection,
    };
    pub use crate::listener::{DEFAULT_RING_SIZE, HANDSHAKE_LIMIT, MAX_HANDSHAKES, ShmListener};
    pub use crate::segment::{LAYOUT_VERSION, is_shared};

    /// What this transport supports.
    pub const CAPABILITIES: Capabilities = {
        let mut caps = Capabilities::new(MAX_MESSAGE_SIZE_LIMIT);
        caps.async_io = cfg!(feature = "tokio");
        caps.receive_spins = true;
        caps
    };
}
