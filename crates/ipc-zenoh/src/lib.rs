#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod connect;
mod connection;
mod core;
mod endpoints;
mod link;
mod listener;
pub mod netns;
mod wire;

use ipc_core::Capabilities;

pub use crate::connection::{
    AsyncZenoh, AsyncZenohConnection, AsyncZenohListener, Zenoh, ZenohConnection, ZenohListener,
    ZenohReadHalf, ZenohWriteHalf,
};
pub use crate::core::CLOSE_LINGER;
pub use crate::endpoints::{
    ACCEPT_PENDING, ACCEPT_TIMEOUT, CONFIG_ENV, DEFAULT_LISTEN, DEFAULT_WINDOW, ENDPOINTS_ENV,
    LEASE, MAX_FRAME, new_key,
};
pub use crate::listener::{HANDSHAKE_LIMIT, MAX_HANDSHAKES};

/// What this transport supports.
pub const CAPABILITIES: Capabilities = {
    let mut caps = Capabilities::new(MAX_FRAME);
    caps.async_io = true;
    caps
};
