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
}

impl PeerCredentials {
    /// Credentials with both fields known.
    pub const fn new(pid: u32, uid: u32) -> Self {
        PeerCredentials {
            pid: Some(pid),
            uid: Some(uid),
        }
    }
}

impl std::fmt::Display for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid {pid}")?,
            None => write!(f, "pid ?")?,
        }
        match self.uid {
            Some(uid) => write!(f, ", uid {uid}"),
            None => write!(f, ", uid ?"),
        }
    }
}
