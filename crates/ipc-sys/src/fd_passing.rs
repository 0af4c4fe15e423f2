//! Handing descriptors to another process over a Unix socket
//! (`SCM_RIGHTS`), without blocking, and never keeping more than asked.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use ipc_core::ConnectError;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one message carries (a shared-memory hello carries three).
pub const MAX_FDS: usize = 3;

/// Sends `bytes` with descriptor `fd`, without blocking: the message is
/// small and the socket fresh, so anything but a whole send is an error.
pub fn send_fd(sock: BorrowedFd<'_>, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    send_fds(sock, bytes, &[fd])
}

/// Sends `bytes` with up to [`MAX_FDS`] descriptors, as [`send_fd`].
pub fn send_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_FDS || !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("no room for a descriptor"));
    }
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let sent = rustix::net::sendmsg(sock, &[IoSlice::new(bytes)], &mut control, flags)?;
    if sent != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and at most one descriptor, without
/// blocking. More than one descriptor is an error (the extra ones are
/// closed, never kept).
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let (n, fds) = recv_fds(sock, buf, 1)?;
    Ok((n, fds.into_iter().next()))
}

/// Receives up to `buf.len()` bytes and at most `max` (up to
/// [`MAX_FDS`]) descriptors, without blocking. More is an error (the
/// extra ones are closed, never kept).
pub fn recv_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max: usize,
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let flags = RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC;
    let msg = rustix::net::recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags)?;
    let mut got = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            got.extend(fds);
        }
    }
    if got.len() > max.min(MAX_FDS) || msg.flags.contains(ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more descriptors than {max} came with the message"),
        ));
    }
    Ok((msg.bytes, got))
}

/// Waits until `fd` is readable (or hung up) or `deadline` passes.
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<(), ConnectError> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ConnectError::Timeout);
                }
                Some(
                    rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
                        tv_sec: i64::MAX,
                        tv_nsec: 0,
                    }),
                )
            }
        };
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {}
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(ConnectError::Io(e.into())),
        }
    }
}

/// Sends `bytes` whole without blocking (a short message on a fresh
/// socket).
pub fn send_bytes(sock: &impl AsFd, bytes: &[u8]) -> io::Result<()> {
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    if rustix::net::send(sock, bytes, flags)? != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send"));
    }
    Ok(())
}

/// Sends one byte without blocking.
pub fn send_byte(sock: &impl AsFd, byte: u8) -> io::Result<()> {
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    match rustix::net::send(sock, &[byte], flags)? {
        1 => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::WriteZero, "short send")),
    }
}
