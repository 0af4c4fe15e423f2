//! One entry point to every transport: the address picks it.
//!
//! [`connect`] and [`bind`] (blocking) and [`connect_async`] and
//! [`bind_async`] (tokio) take an [`Address`] (`pipe:stdio`, `uds:PATH`,
//! `shm:NAME`, `zenoh:NAME@ENDPOINTS`) and a [`Config`], and give a
//! connection or listener of whichever transport it names, as one type
//! that speaks the `ipc-core` traits. A runtime, a hub or an agent can
//! then be written once and moved between transports by its address
//! alone (an agent reads it from `IPC_ADDRESS`: [`Address::from_env`]).
//!
//! Each transport is a feature: `pipe`, `uds` and `shm` by default,
//! `zenoh` on request (a large dependency tree). An address of a
//! transport this build leaves out is an error, not a panic.
//!
//! ```
//! use ipc_core::{Address, Config, FrameReceiver, FrameSender, Listener};
//!
//! let dir = tempfile::tempdir()?;
//! let address: Address = format!("uds:{}", dir.path().join("hub.sock").display()).parse()?;
//! let config = Config::default();
//! let mut listener = ipc_any::bind(&address, &config)?;
//! let mut agent = ipc_any::connect(listener.address(), &config)?;
//! let mut hub = listener.accept()?;
//! agent.send(b"hello")?;
//! assert_eq!(&hub.recv()?[..], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
