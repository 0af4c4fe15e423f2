//! The agent's side of the rendezvous: connect to the listener's socket,
//! say hello, receive the segment and the doorbells, check them, attach
//! (the listener's side is `listener.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use ipc_core::{Address, Config, ConnectError, Connector};
use ipc_sys::unix_socket;

use crate::bell::Bell;
use crate::connection::ShmConnection;
use crate::handoff::{self, ATTACHED};
use crate::listener::{shm_name, socket_path};
use crate::segment::Segment;

/// The shared-memory transport, as a value for generic code:
/// `Shm.connect(&"shm:NAME".parse()?, &config)` joins a listener.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shm;

/// The agent's side of the handshake, once its socket is connected and
/// the listener's hello is readable.
pub(crate) fn attach(
    sock: OwnedFd,
    address: &Address,
    config: &Config,
) -> Result<ShmConnection, ConnectError> {
    let what = address.to_string();
    let listener_pid = unix_socket::peer_credentials(&sock).map_or(0, |c| c.pid.unwrap_or(0));
    let mut hello = [0u8; 8];
    let (n, fds) = handoff::recv_fds(sock.as_fd(), &mut hello, 3).map_err(|e| {
        ConnectError::Incompatible(format!("{what}: a bad handshake from the listener: {e}"))
    })?;
    if n == 0 {
        return Err(ConnectError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("{what}: the listener closed the connection before handing over its memory"),
        )));
    }
    if n != hello.len() || hello != handoff::hello() {
        return Err(ConnectError::Incompatible(format!(
            "{what}: the listener does not speak ipc-shm layout {}",
            crate::LAYOUT_VERSION
        )));
    }
    let Ok([fd, bell0, bell1]) = <[OwnedFd; 3]>::try_from(fds) else {
        return Err(ConnectError::Incompatible(format!(
            "{what}: no memory came with the listener's hello (it carries the memory and two doorbells)"
        )));
    };
    let bad_bell = |e| ConnectError::Incompatible(format!("{what}: {e}"));
    let bells = [
        Bell::received(bell0).map_err(bad_bell)?,
        Bell::received(bell1).map_err(bad_bell)?,
    ];
    let segment = Segment::attach(fd, listener_pid, &what)?;
    handoff::send_byte(&sock, ATTACHED)?;
    ShmConnection::new(segment, config.clone(), Some(sock), bells)
}

/// Connects the socket of `shm:NAME`: the listener's owner is checked.
pub(crate) fn connect_socket(address: &Address, config: &Config) -> Result<OwnedFd, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    let name = shm_name(address)?;
    let sock = unix_socket::connect(&socket_path(name), config).map_err(|e| match e {
        ConnectError::NotFound(why) => ConnectError::NotFound(format!("{address} ({why})")),
        other => other,
    })?;
    // Ask for a segment: the listener spends nothing on a connection
    // until it has.
    handoff::send_bytes(&sock, &handoff::hello()).map_err(|e| {
        ConnectError::Io(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!(
                "{address}: the listener closed the connection before handing over its memory ({e})"
            ),
        ))
    })?;
    Ok(sock)
}

impl Connector for Shm {
    type Connection = ShmConnection;

    /// Joins the listener of a `shm:` address and attaches the segment it
    /// hands over, within [`Config::connect_timeout`].
    ///
    /// Errors: [`ConnectError::NotFound`] (no listener, or its process is
    /// gone), [`ConnectError::Timeout`] (the listener never answered),
    /// [`ConnectError::Incompatible`] (not an ipc-shm listener, or another
    /// layout version), [`ConnectError::Corrupted`] (an inconsistent
    /// segment), [`ConnectError::PermissionDenied`].
    fn connect(&self, address: &Address, config: &Config) -> Result<ShmConnection, ConnectError> {
        let deadline = config
            .connect_timeout
            .and_then(|t| Instant::now().checked_add(t));
        let sock = connect_socket(address, config)?;
        handoff::wait_readable(sock.as_fd(), deadline)?;
        attach(sock, address, config)
    }
}
