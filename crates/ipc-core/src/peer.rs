//! What the operating system says about the process at the other end.

/// The peer process as the operating system reports it, never as the peer
/// claims: `SO_PEERCRED` for a Unix socket, the child's pid for a spawned
/// agent, the parent for an agent on stdio. A field is `None` where the
/// transport cannot know it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's process id (in this process's PID namespace).
    pub pid: Option<u32>,
    /// The peer's user id.
    pub uid: Option<u32>,
    /// The peer proved it holds the listener's key (over zenoh, where no
    /// operating system vouches for the process: see
    /// [`NetworkAccess`](crate::NetworkAccess)).
    pub holds_key: bool,
}

impl PeerCredentials {
    /// Credentials with both fields known.
    pub const fn new(pid: u32, uid: u32) -> Self {
        PeerCredentials {
            pid: Some(pid),
            uid: Some(uid),
            holds_key: false,
        }
    }

    /// What `SO_PEERCRED` says about the process at the other end of a
    /// connected Unix socket. The pid is `None` when the peer is in a PID
    /// namespace this process cannot see (the kernel reports 0 then;
    /// rustix 1.1's `socket_peercred` turns that 0 into a bogus error, so
    /// it is not used).
    pub fn of_unix_socket(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a writable `ucred` and `len` its exact size, as
        // SO_PEERCRED requires; the kernel writes at most `len` bytes and
        // every bit pattern is a valid `ucred` (plain integers).
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&raw mut cred).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if len as usize != std::mem::size_of::<libc::ucred>() {
            return Err(std::io::Error::other("SO_PEERCRED returned a short answer"));
        }
        Ok(PeerCredentials {
            pid: u32::try_from(cred.pid).ok().filter(|&pid| pid != 0),
            uid: Some(cred.uid),
            holds_key: false,
        })
    }
}

impl std::fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => write!(f, "pid ?")?,
        }
        match self.uid {
            Some(uid) => write!(f, ", uid {uid}")?,
            None => write!(f, ", uid ?")?,
        }
        if self.holds_key {
            write!(f, ", holds the key")?;
        }
        Ok(())
    }
}
