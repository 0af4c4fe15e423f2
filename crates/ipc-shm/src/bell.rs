//! Doorbells: how a parked side is woken, and how it learns at once that
//! its peer is gone.
//!
//! Each ring has a doorbell: a connected pair of Unix stream sockets, one
//! end held by each side (the listener makes both pairs and hands the
//! agent its ends with the segment). The ring's consumer parks on its end
//! for data and its producer on its end for space; each wakes the other by
//! sending one byte on its own end, and only when the other has said in
//! the ring's `waiting` word that it parks (see `ring.rs` for why no
//! wake-up is lost). A parked side waits in `poll(2)` (blocking API) or in
//! the tokio reactor (async API), so an async connection needs no thread
//! of its own, and a hub waits for any number of them on its runtime.
//!
//! When the peer's process ends, however it ends, the kernel closes its
//! ends: ours reads end-of-file, which wakes a parked side at once, with
//! no timer and nothing in shared memory a peer could forge.
//!
//! Everything here treats the other end as hostile: a ring is a
//! `MSG_DONTWAIT` send (it never blocks, whatever the peer does to its end
//! or its buffer), a drain reads a bounded number of bytes, and an end
//! received from a listener is checked to be a connected Unix stream
//! socket before it is used. A peer that rings without cause costs a
//! spurious wake-up per ring it sends, as a peer that sends messages does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

/// Bytes a drain reads at most: a peer that floods its end cannot keep a
/// side in the drain; what is left wakes the next park at once.
const DRAIN_LIMIT: usize = 1024;

/// One side's end of a ring's doorbell.
#[derive(Debug)]
pub(crate) struct Bell {
    fd: OwnedFd,
    /// The other end read end-of-file or failed: the peer closed it, or
    /// its process ended.
    hung_up: AtomicBool,
}

impl Bell {
    /// A connected pair: one end for each side of a ring.
    pub(crate) fn pair() -> io::Result<(Bell, Bell)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        Ok((Bell::new(a), Bell::new(b)))
    }

    fn new(fd: OwnedFd) -> Bell {
        Bell {
            fd,
            hung_up: AtomicBool::new(false),
        }
    }

    /// An end received from the listener, once it is known to be a Unix
    /// stream socket (anything else could block or spin a side that
    /// polls or writes it).
    pub(crate) fn received(fd: OwnedFd) -> Result<Bell, String> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| e.to_string())?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
            return Err("a doorbell received is not a socket".into());
        }
        let kind = rustix::net::sockopt::socket_type(&fd).map_err(|e| e.to_string())?;
        let domain = rustix::net::sockopt::socket_domain(&fd).map_err(|e| e.to_string())?;
        if kind != SocketType::STREAM || domain != AddressFamily::UNIX {
            return Err("a doorbell received is not a Unix stream socket".into());
        }
        Ok(Bell::new(fd))
    }

    /// Wakes the other side (it said it parks). Never blocks; a full
    /// buffer already holds a wake-up, and a hung-up end has nobody to
    /// wake.
    pub(crate) fn ring(&self) {
        let _ = rustix::net::send(&self.fd, &[1], SendFlags::DONTWAIT | SendFlags::NOSIGNAL);
    }

    /// Reads the wake-ups that came (at most [`DRAIN_LIMIT`] bytes);
    /// notes a hang-up.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 256];
        let mut read = 0;
        while read < DRAIN_LIMIT {
            match rustix::net::recv(&self.fd, &mut buf, RecvFlags::DONTWAIT) {
                Ok((0, _)) => {
                    self.hung_up.store(true, Ordering::Release);
                    return;
                }
                Ok((n, _)) if n < buf.len() => return,
                Ok((n, _)) => read += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => {
                    self.hung_up.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }

    /// True once a drain saw the other end closed.
    pub(crate) fn hung_up(&self) -> bool {
        self.hung_up.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for a ring, a hang-up, or `also` (the peer's
    /// pidfd, readable once its process has exited) to become readable,
    /// then drains. Returns early on a signal; the caller re-checks either
    /// way.
    pub(crate) fn wait(&self, timeout: Duration, also: Option<BorrowedFd<'_>>) {
        // Beyond a day is "no limit": poll without one rather than risk a
        // time the kernel refuses (which would end every park at once).
        let timeout = (timeout < Duration::from_secs(86_400))
            .then(|| Timespec::try_from(timeout).ok())
            .flatten();
        let mut fds = [
            PollFd::new(&self.fd, PollFlags::IN),
            PollFd::from_borrowed_fd(also.unwrap_or(self.fd.as_fd()), PollFlags::IN),
        ];
        let n = if also.is_some() { 2 } else { 1 };
        // EINTR: look again, like a spurious wake-up.
        let _ = rustix::event::poll(&mut fds[..n], timeout.as_ref());
        self.drain();
    }
}

impl AsFd for Bell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Bell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_ring_wakes_a_waiting_end_and_a_drain_takes_it() {
        let (a, b) = Bell::pair().expect("pair");
        let started = Instant::now();
        b.wait(Duration::from_millis(1), None);
        assert!(
            started.elapsed() >= Duration::from_millis(1),
            "nothing rang"
        );
        for _ in 0..10 {
            a.ring();
        }
        let started = Instant::now();
        b.wait(Duration::from_secs(10), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        // Drained: the next wait waits again.
        let started = Instant::now();
        b.wait(Duration::from_millis(1), None);
        assert!(started.elapsed() >= Duration::from_millis(1));
        assert!(!b.hung_up());
    }

    #[test]
    fn a_closed_end_wakes_the_other_and_reads_as_hung_up() {
        let (a, b) = Bell::pair().expect("pair");
        a.ring();
        drop(a);
        b.wait(Duration::from_secs(10), None);
        // The pending ring may come first; the next drain sees the end.
        b.wait(Duration::from_secs(10), None);
        assert!(b.hung_up());
        // Ringing a hung-up end neither blocks nor raises SIGPIPE.
        b.ring();
    }

    #[test]
    fn a_flooded_end_is_drained_in_bounded_steps_and_ringing_never_blocks() {
        let (a, b) = Bell::pair().expect("pair");
        // Far more than the socket buffer holds: every ring returns.
        for _ in 0..1_000_000 {
            a.ring();
        }
        b.drain();
        assert!(!b.hung_up());
    }

    #[test]
    fn only_unix_stream_sockets_are_taken_as_bells() {
        let file =
            rustix::fs::memfd_create("not-a-bell", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd");
        assert!(Bell::received(file).is_err());
        let dgram = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).expect("s");
        assert!(Bell::received(dgram).is_err());
        let (a, _b) = Bell::pair().expect("pair");
        assert!(Bell::received(a.fd).is_ok());
    }
}
