//! Handing descriptors to the peer over a Unix socket (`SCM_RIGHTS`).
//!
//! The rendezvous protocol, per agent: the agent connects and sends
//! [`hello`] (no descriptors); the listener, which accepts every socket
//! at once and spends nothing on it until then, checks it, creates the
//! agent's segment and the rings' doorbells (`bell.rs`) and sends
//! [`hello`] back with the segment's descriptor and the agent's two
//! doorbell ends; the agent validates and attaches them, then answers
//! [`ATTACHED`]. Only that agent ever holds them.

pub(crate) use ipc_sys::fd_passing::{
    recv_fd, recv_fds, send_byte, send_bytes, send_fd, send_fds, wait_readable,
};

use crate::segment::LAYOUT_VERSION;

/// The first message each way: `"IPCSHM"` and the layout version.
pub(crate) fn hello() -> [u8; 8] {
    let mut hello = *b"IPCSHM\0\0";
    hello[6..].copy_from_slice(&(LAYOUT_VERSION as u16).to_le_bytes());
    hello
}

/// The agent's answer once its segment is attached.
pub(crate) const ATTACHED: u8 = b'A';
