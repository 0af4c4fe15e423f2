//! A pair of pipe ends, read and written without blocking.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc_core::stream::RawStream;
use ipc_core::{Config, ConnectError};
use rustix::fs::{FileType, OFlags};

/// The read end of one pipe and the write end of another: one side of a
/// duplex pipe connection.
///
/// Writing to a pipe whose reader has gone raises `SIGPIPE`; Rust programs
/// ignore it from the start (the standard runtime does so before `main`),
/// and the write then fails with `EPIPE`, reported as `Disconnected`. A
/// host program that restores the default action must ignore `SIGPIPE`
/// itself.
#[derive(Debug)]
pub struct PipePair {
    read: OwnedFd,
    write: OwnedFd,
}

impl PipePair {
    /// Takes a pipe read end and a pipe write end; makes both non-blocking
    /// and applies the config's buffer size (`F_SETPIPE_SZ`).
    pub(crate) fn new(
        read: OwnedFd,
        write: OwnedFd,
        config: &Config,
    ) -> Result<Self, ConnectError> {
        for (fd, role) in [(&read, "read"), (&write, "write")] {
            ensure_pipe(fd.as_fd(), role)?;
            let flags = rustix::fs::fcntl_getfl(fd).map_err(io::Error::from)?;
            rustix::fs::fcntl_setfl(fd, flags | OFlags::NONBLOCK).map_err(io::Error::from)?;
            if let Some(size) = config.buffer_size {
                rustix::pipe::fcntl_setpipe_size(fd, size).map_err(io::Error::from)?;
            }
        }
        Ok(PipePair { read, write })
    }
}

/// Errors unless `fd` is a pipe (FIFO).
pub(crate) fn ensure_pipe(fd: BorrowedFd<'_>, role: &str) -> Result<(), ConnectError> {
    let stat = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Fifo {
        return Err(ConnectError::Incompatible(format!(
            "{role} is not a pipe; start this agent with ipc_pipe::spawn"
        )));
    }
    Ok(())
}

impl RawStream for PipePair {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        self.write.as_fd()
    }

    fn read_nonblocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        let (init, _) = rustix::io::read(&self.read, buf)?;
        Ok(init.len())
    }

    fn write_nonblocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        Ok(rustix::io::writev(&self.write, bufs)?)
    }
}
