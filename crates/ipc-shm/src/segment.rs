//! The shared memory of one connection: layout, creation, attaching,
//! validation.
//!
//! ```text
//! page 0            SegmentHeader (magic, version, ring size, who is attached)
//! page 1            RingControl of ring 0 (owner -> peer)
//! page 2            RingControl of ring 1 (peer -> owner)
//! 3 pages + 0       data of ring 0 (cap bytes)
//! 3 pages + cap     data of ring 1 (cap bytes)
//! ```
//!
//! A segment is an anonymous memory file (`memfd_create`), never a name
//! in /dev/shm: the listener creates one per agent and hands its
//! descriptor to that agent alone over the rendezvous socket
//! (`handoff.rs`). Its size is sealed before it leaves (no shrinking, no
//! growing, no removing the seals), so neither side can truncate the
//! memory under the other and make it fault (`SIGBUS`). The kernel frees
//! it when the last mapping and descriptor go, however the processes end:
//! nothing is left to reclaim. The attaching side validates every header
//! field: magic, layout version, header size, and that the ring size is a
//! power of two in range and matches the file's real length exactly.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use ipc_core::ConnectError;
pub use ipc_sys::memory::is_shared;
use ipc_sys::memory::{Mapping, Populate, punch_hole, sealed_len, sealed_memfd};

use crate::ring::{RingControl, RingMemory};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use ipc_sys::process::ProcessId;

/// `"IPCSHM"` and the layout version, written last by the creator.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHM\0\0");
/// Bumped whenever the layout or the wait protocol changes; a mismatch is
/// `Incompatible`. (7: the agent asks with a hello of its own before the
/// listener makes its segment; 6: a parked side is woken through a doorbell socket
/// handed over with the segment, no futex, no lifeline words; 5: the
/// record header is the commit word the consumer
/// polls; 4: anonymous sealed segments handed over a socket;
/// 3: every side parks on the futex word.)
pub const LAYOUT_VERSION: u32 = 7;
pub(crate) const PAGE: usize = 4096;
/// Ring sizes accepted from a segment header.
pub(crate) const MIN_RING: u64 = 4096;
pub(crate) const MAX_RING: u64 = 1 << 30;
/// The first page of the segment. Every field is atomic: the other
/// process may write any of them at any time.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SegmentHeader {
    magic: AtomicU64,
    version: AtomicU32,
    header_len: AtomicU32,
    ring_capacity: AtomicU64,
    owner_pid: AtomicU32,
    owner_closed: AtomicU32,
    owner_start: AtomicU64,
    peer_pid: AtomicU32,
    pub(crate) peer_attached: AtomicU32,
    peer_start: AtomicU64,
    peer_closed: AtomicU32,
    /// The owner's PID namespace (see `ipc_sys::process::pid_namespace`).
    owner_pidns: AtomicU64,
}

/// Which end of the segment this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Created the segment (the listener).
    Owner,
    /// Attached to it (the connecting agent).
    Peer,
}

/// Rings up to this size are backed and mapped in one go when first used
/// ([`Segment::populate_ring`]). Larger rings, which a peer could also
/// offer to make us allocate, fill in page by page as they are used.
pub(crate) const POPULATE_RINGS_UP_TO: u64 = 4 << 20;

/// An open segment: the mapping plus what this side needs of it.
pub(crate) struct Segment {
    map: Mapping,
    fd: OwnedFd,
    side: Side,
    cap: u64,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("side", &self.side)
            .field("cap", &self.cap)
            .finish()
    }
}

/// Bytes of a segment with rings of `cap` bytes.
pub(crate) fn segment_len(cap: u64) -> usize {
    3 * PAGE + 2 * cap as usize
}

impl Segment {
    /// A new segment with rings of `cap` bytes (a power of two in range),
    /// owned by this process; `label` names it in `/proc/PID/maps`.
    pub(crate) fn create(label: &str, cap: u64) -> Result<Self, ConnectError> {
        let len = segment_len(cap);
        let fd = sealed_memfd(label, len)?;
        let map = Mapping::new(fd.as_fd(), len, true, Populate::No)?;
        let segment = Segment {
            map,
            fd,
            side: Side::Owner,
            cap,
        };
        let me = ProcessId::current();
        let h = segment.header();
        h.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        h.header_len.store(PAGE as u32, Ordering::Relaxed);
        h.ring_capacity.store(cap, Ordering::Relaxed);
        h.owner_pid.store(me.pid, Ordering::Relaxed);
        h.owner_start.store(me.start, Ordering::Relaxed);
        h.owner_pidns
            .store(ipc_sys::process::pid_namespace(), Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        Ok(segment)
    }

    /// Attaches to the segment in `fd`, received from the listener whose
    /// process is `listener_pid` (what the socket says, 0 if unknown), and
    /// claims the peer slot. Everything in the file is the other side's:
    /// it is validated before it is used.
    pub(crate) fn attach(fd: OwnedFd, listener_pid: u32, what: &str) -> Result<Self, ConnectError> {
        let len = sealed_len(fd.as_fd(), what)?;
        if len < segment_len(MIN_RING) as u64 || len > segment_len(MAX_RING) as u64 {
            return Err(ConnectError::Incompatible(format!(
                "{what}: a {len}-byte memory file is not an ipc-shm segment"
            )));
        }
        let map = Mapping::new(fd.as_fd(), len as usize, true, Populate::No)?;
        // SAFETY: the mapping is at least three pages, page-aligned, and
        // all its bytes are valid for an all-atomic header.
        let h = unsafe { &*(map.as_ptr() as *const SegmentHeader) };
        if h.magic.load(Ordering::Acquire) != MAGIC {
            return Err(ConnectError::Incompatible(format!(
                "{what} is not an ipc-shm segment (bad magic)"
            )));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(ConnectError::Incompatible(format!(
                "{what} has layout version {version}; this library speaks {LAYOUT_VERSION}"
            )));
        }
        let header_len = h.header_len.load(Ordering::Relaxed);
        let cap = h.ring_capacity.load(Ordering::Relaxed);
        if header_len as usize != PAGE
            || !cap.is_power_of_two()
            || !(MIN_RING..=MAX_RING).contains(&cap)
            || segment_len(cap) as u64 != len
        {
            return Err(ConnectError::Corrupted(format!(
                "{what}: header says {header_len}-byte header and {cap}-byte rings, \
                 which does not match the {len}-byte segment"
            )));
        }
        let owner = ProcessId {
            pid: h.owner_pid.load(Ordering::Relaxed),
            start: h.owner_start.load(Ordering::Relaxed),
        };
        let (theirs, ours) = (
            h.owner_pidns.load(Ordering::Relaxed),
            ipc_sys::process::pid_namespace(),
        );
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(ConnectError::Incompatible(format!(
                "{what} was created in another PID namespace (pid:[{theirs}], this process is in \
                 pid:[{ours}]): ipc-shm tells a live peer from a dead one by its pid, so both \
                 sides must share a PID namespace (share it between the containers, or use uds)"
            )));
        }
        if listener_pid != 0 && owner.pid != listener_pid {
            return Err(ConnectError::Corrupted(format!(
                "{what}: the segment names pid {} as its owner, but the listener is pid \
                 {listener_pid}",
                owner.pid
            )));
        }
        if !owner.is_alive() {
            return Err(ConnectError::NotFound(format!(
                "{what} (its listener's process is gone)"
            )));
        }
        let me = ProcessId::current();
        if h.peer_pid
            .compare_exchange(0, me.pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(ConnectError::Corrupted(format!(
                "{what}: a fresh segment already names a peer"
            )));
        }
        h.peer_start.store(me.start, Ordering::Relaxed);
        h.peer_attached.store(1, Ordering::Release);
        Ok(Segment {
            map,
            fd,
            side: Side::Peer,
            cap,
        })
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least three pages and page-aligned; the
        // header's fields are atomics, valid for any bytes.
        unsafe { &*(self.map.as_ptr() as *const SegmentHeader) }
    }

    /// The memory file, to hand to the peer (or, in tests, to scribble on).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Bytes of the segment the kernel has backed with memory so far
    /// (pages never touched cost nothing).
    pub(crate) fn resident_bytes(&self) -> u64 {
        rustix::fs::fstat(&self.fd).map_or(0, |s| s.st_blocks as u64 * 512)
    }

    pub(crate) fn side(&self) -> Side {
        self.side
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// The memory of ring `ring` (0: owner to peer, 1: peer to owner).
    pub(crate) fn ring(&self, ring: usize) -> RingMemory {
        RingMemory::new(
            self.map.as_ptr().wrapping_add(PAGE * (1 + ring)) as *const RingControl,
            self.map
                .as_ptr()
                .wrapping_add(3 * PAGE + ring * self.cap as usize),
            self.cap,
        )
    }

    /// Backs and maps ring `ring`'s pages in one go, if it is at most
    /// [`POPULATE_RINGS_UP_TO`]: otherwise a lap through a fresh (or given
    /// back) ring takes a page fault every 4 KiB, one round trip in 30 to
    /// 60 with small messages (a p99 of 10 µs instead of 2 µs here). The
    /// sender calls it before its first send and the receiver on its first
    /// record, so a direction never used is never backed.
    pub(crate) fn populate_ring(&self, ring: usize) {
        if self.cap <= POPULATE_RINGS_UP_TO {
            let offset = 3 * PAGE + ring * self.cap as usize;
            self.map.populate(offset, self.cap as usize);
        }
    }

    /// Gives the data pages of ring `ring` back to the kernel. Only for the
    /// ring's producer, while the ring is empty (the consumer reads nothing
    /// of it then).
    pub(crate) fn release_ring(&self, ring: usize) -> io::Result<()> {
        punch_hole(
            self.fd(),
            (3 * PAGE) as u64 + ring as u64 * self.cap,
            self.cap,
        )
    }

    /// The peer's pid once it has attached (the listener compares it with
    /// what the socket says).
    pub(crate) fn attached_peer_pid(&self) -> Option<u32> {
        let h = self.header();
        (h.peer_attached.load(Ordering::Acquire) == 1).then(|| h.peer_pid.load(Ordering::Relaxed))
    }

    /// The other side's identity, once it is attached.
    pub(crate) fn other(&self) -> Option<ProcessId> {
        let h = self.header();
        match self.side {
            Side::Peer => Some(ProcessId {
                pid: h.owner_pid.load(Ordering::Relaxed),
                start: h.owner_start.load(Ordering::Relaxed),
            }),
            Side::Owner => (h.peer_attached.load(Ordering::Acquire) == 1).then(|| ProcessId {
                pid: h.peer_pid.load(Ordering::Relaxed),
                start: h.peer_start.load(Ordering::Relaxed),
            }),
        }
    }

    /// True once the other side has closed its end cleanly.
    pub(crate) fn other_closed(&self) -> bool {
        let h = self.header();
        let flag = match self.side {
            Side::Owner => &h.peer_closed,
            Side::Peer => &h.owner_closed,
        };
        flag.load(Ordering::Acquire) != 0
    }

    /// Marks this side closed (the connection rings the peer's
    /// doorbells after this).
    pub(crate) fn close(&self) {
        let h = self.header();
        let flag = match self.side {
            Side::Owner => &h.owner_closed,
            Side::Peer => &h.peer_closed,
        };
        flag.store(1, Ordering::Release);
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.close();
        // The mapping unmaps and the descriptor closes after this; the
        // kernel frees the memory when the peer's go too.
    }
}

/// The RingControl fits in a control page.
const _: () = assert!(std::mem::size_of::<RingControl>() <= PAGE);
const _: () = assert!(std::mem::size_of::<SegmentHeader>() <= PAGE);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Resident KiB of this process's mapping that starts at `at`.
    fn resident_kib(at: *const u8) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let start = format!("{:x}-", at as usize);
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        lines.next().expect("the mapping is listed");
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("an Rss line")
    }

    /// A populated ring is backed and mapped on both sides; a ring above
    /// the limit is left to fill in as it is used.
    #[test]
    fn small_rings_are_populated_in_one_go() {
        for (cap, whole) in [(256 << 10, true), (16 << 20, false)] {
            let owner = Segment::create("ipc-shm-test-populate", cap).expect("created");
            let fd = owner.fd.try_clone().expect("dup");
            let peer = Segment::attach(fd, std::process::id(), "test segment").expect("attached");
            let untouched = resident_kib(owner.map.as_ptr());
            assert!(untouched < 64, "{untouched} KiB mapped before any use");
            owner.populate_ring(0);
            peer.populate_ring(0);
            for (side, seg) in [("owner", &owner), ("peer", &peer)] {
                let kib = resident_kib(seg.map.as_ptr());
                let ring = cap / 1024;
                if whole {
                    assert!(kib >= ring, "{side}: {kib} KiB mapped, ring {ring} KiB");
                } else {
                    assert!(kib < ring / 4, "{side}: {kib} KiB mapped, ring {ring} KiB");
                }
            }
        }
    }
}
