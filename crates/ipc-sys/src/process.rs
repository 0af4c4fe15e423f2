//! Telling whether a process is still alive, robust to pid reuse.

/// A process identity: its pid and its start time (clock ticks after boot,
/// field 22 of `/proc/PID/stat`), so that a recycled pid is not mistaken
/// for the process that died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Its pid.
    pub pid: u32,
    /// Its start time, clock ticks after boot.
    pub start: u64,
}

/// What `/proc/PID/stat` says of a process.
struct Stat {
    state: u8,
    start: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: parse from the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.bytes().next()?;
    // After the state (field 3), starttime is field 22: 19 fields further.
    let start = fields.nth(18)?.parse().ok()?;
    Some(Stat { state, start })
}

/// This process's PID namespace (the inode of `/proc/self/ns/pid`), or 0
/// where it cannot be read. Pids and `/proc` mean something only within
/// one PID namespace.
pub fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

impl ProcessId {
    /// The process's user id, while it is this very process (start time
    /// checked, so a recycled pid gives `None`).
    pub fn uid(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(format!("/proc/{}", self.pid)).ok()?.uid();
        self.is_alive().then_some(uid)
    }

    /// This process.
    pub fn current() -> Self {
        let pid = std::process::id();
        let start = read_stat(pid).map_or(0, |s| s.start);
        ProcessId { pid, start }
    }

    /// False once the process has exited (even if not yet reaped: a
    /// zombie is dead) or its pid now names another process.
    pub fn is_alive(&self) -> bool {
        if self.pid == 0 {
            return false;
        }
        match read_stat(self.pid) {
            None => false,
            Some(stat) => !matches!(stat.state, b'Z' | b'X' | b'x') && stat.start == self.start,
        }
    }
}

/// Watches one process for its death, cheaply enough to ask on every
/// wake-up: through a pidfd (readable once the process has exited, zombie
/// or not, and immune to pid reuse), or, where pidfds are unavailable,
/// through `/proc`.
#[derive(Debug)]
pub struct PeerWatch {
    id: ProcessId,
    pidfd: Option<std::os::fd::OwnedFd>,
}

impl PeerWatch {
    /// The process watched.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Watches `id`, through a pidfd where the kernel gives one.
    pub fn new(id: ProcessId) -> Self {
        let pidfd = rustix::process::Pid::from_raw(id.pid as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        // The pidfd names whatever process has the pid now: it is the peer
        // only if the peer is still alive after it was opened.
        let alive = id.is_alive();
        PeerWatch {
            id,
            pidfd: if alive { pidfd } else { None },
        }
    }

    /// The pidfd, if there is one: readable once the process has exited.
    pub fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// False once the process has exited.
    pub fn is_alive(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
                let zero = rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                match rustix::event::poll(&mut fds, Some(&zero)) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(_) => self.id.is_alive(),
                }
            }
            None => self.id.is_alive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_process_is_alive_and_others_are_not() {
        let me = ProcessId::current();
        assert!(me.start > 0);
        assert!(me.is_alive());
        assert!(
            !ProcessId {
                start: me.start + 1,
                ..me
            }
            .is_alive(),
            "pid reuse"
        );
        assert!(!ProcessId { pid: 0, start: 0 }.is_alive());
    }

    #[test]
    fn exited_unreaped_child_is_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId {
            pid: child.id(),
            start: read_stat(child.id()).map_or(0, |s| s.start),
        };
        // Give it time to exit; it stays a zombie until waited for.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while id.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!id.is_alive());
        child.wait().unwrap();
    }

    #[test]
    fn watch_sees_a_child_die_before_it_is_reaped() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let watch = PeerWatch::new(ProcessId {
            pid: child.id(),
            start: read_stat(child.id()).map_or(0, |s| s.start),
        });
        assert!(watch.is_alive());
        child.kill().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while watch.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!watch.is_alive(), "killed child still looks alive");
        child.wait().unwrap();
    }
}
