//! What the tests that play a raw peer or a fake listener share: passing
//! descriptors over a Unix socket by hand.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Receives a message and at most one descriptor (the first, if more).
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> (usize, Option<OwnedFd>) {
    let (n, fds) = recv_with_fds(sock, buf);
    (n, fds.into_iter().next())
}

/// Receives a message and every descriptor that came with it (up to four).
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> (usize, Vec<OwnedFd>) {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .expect("recvmsg");
    let mut got = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            got.extend(fds);
        }
    }
    (msg.bytes, got)
}

/// Sends a message with the given descriptors (up to four).
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(4))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    }
    rustix::net::sendmsg(
        sock,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )
    .expect("sendmsg");
}

/// An agent's first message: `"IPCSHM"` and the layout version; the
/// listener makes a segment only for a socket that sent it.
pub fn hello() -> [u8; 8] {
    let mut hello = *b"IPCSHM\0\0";
    hello[6..].copy_from_slice(&(ipc_shm::LAYOUT_VERSION as u16).to_le_bytes());
    hello
}

/// Connects to a listener's socket and asks for a segment, as an agent.
pub fn ask(path: impl AsRef<std::path::Path>) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut sock = std::os::unix::net::UnixStream::connect(path).expect("connect");
    sock.write_all(&hello()).expect("ask for a segment");
    sock
}
