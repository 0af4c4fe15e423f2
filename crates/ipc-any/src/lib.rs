#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(not(any(feature = "pipe", feature = "uds", feature = "shm", feature = "zenoh")))]
compile_error!("ipc-any needs at least one transport feature: pipe, uds, shm or zenoh");

mod asynchronous;
mod blocking;

pub use asynchronous::{
    AsyncConnection, AsyncListener, ReadHalf, WriteHalf, bind_async, connect_async,
};
pub use blocking::{Connection, Listener, bind, connect};
pub use ipc_core::{Address, Config, ConnectError};

/// The error for an address whose transport this build leaves out, or
/// that cannot do what was asked.
fn not_here(address: &Address, expected: &'static str) -> ConnectError {
    ConnectError::WrongTransport {
        address: address.to_string(),
        expected,
    }
}

/// What binding a `pipe:` address means instead.
const NO_PIPE_LISTENER: &str =
    "a listening transport (uds, shm, zenoh): a pipe agent is started by its hub (ipc_pipe::spawn)";
/// A transport left out of this build.
const NOT_BUILT: &str = "a transport this build of ipc-any includes (see its features)";
