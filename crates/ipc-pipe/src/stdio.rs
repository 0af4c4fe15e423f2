//! The agent side: the connection to the parent over this process's stdio.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};

use ipc_core::stream::FramedStream;
use ipc_core::{Config, ConnectError};

use crate::pipes::{PipePair, ensure_pipe};
use crate::{CAPABILITIES, PipeConnection};

static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes this process's stdin and stdout as the connection to its parent.
///
/// The pipes move to new descriptors; fd 0 is then reopened on `/dev/null`
/// and fd 1 on stderr, so a stray `println!` lands in the logs instead of
/// corrupting the frame stream. Can be done once per process.
///
/// Errors: [`ConnectError::Incompatible`] if stdin or stdout is not a pipe
/// (the program was not started by [`spawn`](crate::spawn)),
/// [`ConnectError::AddrInUse`] on a second call.
pub(crate) fn take_stdio() -> Result<(OwnedFd, OwnedFd), ConnectError> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(ConnectError::AddrInUse(
            "pipe:stdio (this process's stdio is already a connection)".into(),
        ));
    }
    let result = move_stdio();
    if result.is_err() {
        TAKEN.store(false, Ordering::SeqCst);
    }
    result
}

fn move_stdio() -> Result<(OwnedFd, OwnedFd), ConnectError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    // Hold the std locks so no other thread uses fds 0 and 1 meanwhile.
    let _in = stdin.lock();
    let _out = stdout.lock();
    ensure_pipe(rustix::stdio::stdin(), "stdin")?;
    ensure_pipe(rustix::stdio::stdout(), "stdout")?;
    let read =
        rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3).map_err(io::Error::from)?;
    let write =
        rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdout(), 3).map_err(io::Error::from)?;
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .map_err(io::Error::from)?;
    rustix::stdio::dup2_stdin(&null).map_err(io::Error::from)?;
    rustix::stdio::dup2_stdout(rustix::stdio::stderr()).map_err(io::Error::from)?;
    Ok((read, write))
}

/// The connection to the parent over stdio; see [`take_stdio`].
pub(crate) fn connect(config: &Config) -> Result<PipeConnection, ConnectError> {
    config.validate().map_err(ConnectError::InvalidConfig)?;
    let (read, write) = take_stdio()?;
    let pair = PipePair::new(read, write, config)?;
    Ok(FramedStream::new(pair, config.clone(), CAPABILITIES))
}
