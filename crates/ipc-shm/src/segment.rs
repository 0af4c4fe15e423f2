//! The named shared-memory segment: layout, creation, opening, validation.
//!
//! ```text
//! page 0            SegmentHeader (magic, version, ring size, who is attached)
//! page 1            RingControl of ring 0 (owner -> peer)
//! page 2            RingControl of ring 1 (peer -> owner)
//! 3 pages + 0       data of ring 0 (cap bytes)
//! 3 pages + cap     data of ring 1 (cap bytes)
//! ```
//!
//! The segment is created with the `shared_memory` crate (`shm_open` with
//! `O_CREAT | O_EXCL`, mode 0600, unlinked when the owner drops), as
//! `/dev/shm/ipc-NAME`. Everything read from it is validated: the opener
//! checks magic, layout version, header size, and that the ring size is a
//! power of two in range and matches the mapping's real length exactly.

use std::io;
use std::time::{Duration, Instant};

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use ipc_core::{ConnectError, PeerOwner};
use shared_memory::{Shmem, ShmemConf, ShmemError};

use crate::liveness::ProcessId;
use crate::ring::{RingControl, RingMemory};
use crate::sync::{AtomicU32, AtomicU64, Ordering};

/// `"IPCSHM"` and the layout version, written last by the creator.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"IPCSHM\0\0");
/// Bumped whenever the layout or the wait protocol changes; a mismatch is
/// `Incompatible`. (3: every side parks on the futex word; the pthread
/// events of version 2 are gone.)
pub const LAYOUT_VERSION: u32 = 3;
const PAGE: usize = 4096;
/// Ring sizes accepted from a segment header.
pub(crate) const MIN_RING: u64 = 4096;
pub(crate) const MAX_RING: u64 = 1 << 30;
/// How long an opener waits for a creator that is still initializing.
const INIT_WAIT: Duration = Duration::from_secs(1);
/// A segment with no magic this old is a creator's crashed leftover.
const STALE_INIT_AGE: Duration = Duration::from_secs(2);

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
    /// Robust-futex lifeline words (see `lifeline.rs`).
    owner_lifeline: AtomicU32,
    peer_lifeline: AtomicU32,
    /// The owner's PID namespace (see `liveness::pid_namespace`).
    owner_pidns: AtomicU64,
}

/// Which end of the segment this process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Created the segment (the listener); unlinks it on drop.
    Owner,
    /// Opened it (the connecting agent).
    Peer,
}

/// The mapping, shareable across threads.
struct Mapping(Shmem);

// SAFETY: `Shmem` holds the mapping's address, length, fd and name; none
// is tied to the creating thread, and the memory is process-wide.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only exposes the base pointer and length; all access
// to the memory goes through atomics or validated ring offsets.
unsafe impl Sync for Mapping {}

/// An open segment: the mapping plus what this side needs of it.
pub(crate) struct Segment {
    map: Mapping,
    side: Side,
    cap: u64,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.map.0.get_os_id())
            .field("side", &self.side)
            .field("cap", &self.cap)
            .finish()
    }
}

/// The OS name of the segment for an address name.
pub(crate) fn os_id(name: &str) -> String {
    format!("ipc-{name}")
}

/// Bytes of a segment with rings of `cap` bytes.
fn segment_len(cap: u64) -> usize {
    3 * PAGE + 2 * cap as usize
}

fn errno_error(name: &str, errno: u32) -> ConnectError {
    let err = io::Error::from_raw_os_error(errno as i32);
    match err.kind() {
        io::ErrorKind::NotFound => ConnectError::NotFound(format!("shm:{name}")),
        io::ErrorKind::PermissionDenied => ConnectError::PermissionDenied(format!("shm:{name}")),
        _ => ConnectError::Io(err),
    }
}

fn shmem_error(name: &str, err: ShmemError) -> ConnectError {
    match err {
        ShmemError::MappingIdExists => ConnectError::AddrInUse(format!("shm:{name}")),
        ShmemError::MapCreateFailed(errno) | ShmemError::MapOpenFailed(errno) => {
            errno_error(name, errno)
        }
        other => ConnectError::Io(io::Error::other(other.to_string())),
    }
}

impl Segment {
    /// Creates segment `name` with rings of `cap` bytes (a power of two in
    /// range). A segment of that name left by a dead owner is reclaimed;
    /// one with a live owner is `AddrInUse`.
    pub(crate) fn create(name: &str, cap: u64) -> Result<Self, ConnectError> {
        let id = os_id(name);
        for attempt in 0..2 {
            match ShmemConf::new().os_id(&id).size(segment_len(cap)).create() {
                Ok(shmem) => return Self::init(shmem, cap),
                Err(ShmemError::MappingIdExists) if attempt == 0 => reclaim_if_stale(name)?,
                Err(e) => return Err(shmem_error(name, e)),
            }
        }
        Err(ConnectError::AddrInUse(format!("shm:{name}")))
    }

    fn init(shmem: Shmem, cap: u64) -> Result<Self, ConnectError> {
        let segment = Segment {
            map: Mapping(shmem),
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
            .store(crate::liveness::pid_namespace(), Ordering::Relaxed);
        h.magic.store(MAGIC, Ordering::Release);
        Ok(segment)
    }

    /// Opens segment `name` as its peer and claims the peer slot, once the
    /// segment file is known to belong to the user `owner` names.
    pub(crate) fn open(name: &str, owner: PeerOwner) -> Result<Self, ConnectError> {
        let map = Self::map_existing(name)?;
        // Checked after mapping: /dev/shm is sticky, so only the file's
        // owner can replace it, and a squatter's file fails here however
        // it was swapped in.
        let path = format!("/dev/shm/{}", os_id(name));
        let uid = std::fs::symlink_metadata(&path).map(|m| m.uid())?;
        owner
            .check(uid, &format!("shm:{name}"))
            .map_err(ConnectError::PermissionDenied)?;
        // SAFETY: the mapping is at least a page, page-aligned, and all-zero
        // or written by a creator: valid bytes for an all-atomic header.
        let h = unsafe { &*(map.0.as_ptr() as *const SegmentHeader) };
        let deadline = Instant::now() + INIT_WAIT;
        while h.magic.load(Ordering::Acquire) != MAGIC {
            if Instant::now() >= deadline {
                return Err(ConnectError::Incompatible(format!(
                    "shm:{name} is not an ipc-shm segment (bad magic)"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let version = h.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(ConnectError::Incompatible(format!(
                "shm:{name} has layout version {version}; this library speaks {LAYOUT_VERSION}"
            )));
        }
        let header_len = h.header_len.load(Ordering::Relaxed);
        let cap = h.ring_capacity.load(Ordering::Relaxed);
        if header_len as usize != PAGE
            || !cap.is_power_of_two()
            || !(MIN_RING..=MAX_RING).contains(&cap)
            || segment_len(cap) != map.0.len()
        {
            return Err(ConnectError::Corrupted(format!(
                "shm:{name}: header says {header_len}-byte header and {cap}-byte rings, \
                 which does not match the {}-byte segment",
                map.0.len()
            )));
        }
        let owner = ProcessId {
            pid: h.owner_pid.load(Ordering::Relaxed),
            start: h.owner_start.load(Ordering::Relaxed),
        };
        let (theirs, ours) = (
            h.owner_pidns.load(Ordering::Relaxed),
            crate::liveness::pid_namespace(),
        );
        if theirs != 0 && ours != 0 && theirs != ours {
            return Err(ConnectError::Incompatible(format!(
                "shm:{name} was created in another PID namespace (pid:[{theirs}], this process is in \
                 pid:[{ours}]): ipc-shm tells a live peer from a dead one by its pid, so both \
                 sides must share a PID namespace (share it between the containers, or use uds)"
            )));
        }
        if !owner.is_alive() {
            return Err(ConnectError::NotFound(format!(
                "shm:{name} (segment left by a dead process)"
            )));
        }
        let me = ProcessId::current();
        if h.peer_pid
            .compare_exchange(0, me.pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(ConnectError::AddrInUse(format!(
                "shm:{name} already has a peer (ipc-shm connections are one-to-one)"
            )));
        }
        h.peer_start.store(me.start, Ordering::Relaxed);
        h.peer_attached.store(1, Ordering::Release);
        Ok(Segment {
            map,
            side: Side::Peer,
            cap,
        })
    }

    /// Maps an existing segment. A creator makes the file first and sizes
    /// it after, so an empty or short file is retried for a moment before
    /// it counts as not ours.
    fn map_existing(name: &str) -> Result<Mapping, ConnectError> {
        let id = os_id(name);
        let deadline = Instant::now() + INIT_WAIT;
        loop {
            let len = match ShmemConf::new().os_id(&id).open() {
                Ok(shmem) if shmem.len() >= 3 * PAGE => return Ok(Mapping(shmem)),
                Ok(shmem) => shmem.len(),
                // mmap of a zero-length file.
                Err(ShmemError::MapOpenFailed(errno))
                    if errno == rustix::io::Errno::INVAL.raw_os_error() as u32 =>
                {
                    0
                }
                Err(e) => return Err(shmem_error(name, e)),
            };
            if Instant::now() >= deadline {
                return Err(ConnectError::Incompatible(format!(
                    "shm:{name} is {len} bytes, too small for an ipc-shm segment"
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        // SAFETY: the mapping is at least three pages and page-aligned; the
        // header's fields are atomics, valid for any bytes.
        unsafe { &*(self.map.0.as_ptr() as *const SegmentHeader) }
    }

    pub(crate) fn side(&self) -> Side {
        self.side
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    /// The memory of ring `ring` (0: owner to peer, 1: peer to owner).
    pub(crate) fn ring(&self, ring: usize) -> RingMemory {
        RingMemory {
            ctl: ctl_page(&self.map, ring) as *const RingControl,
            data: self
                .map
                .0
                .as_ptr()
                .wrapping_add(3 * PAGE + ring * self.cap as usize),
            cap: self.cap,
        }
    }

    /// Owner side: frees the peer slot if a peer claimed it (wrote its
    /// pid) but its process is gone before it attached.
    pub(crate) fn release_abandoned_claim(&self) {
        let h = self.header();
        let pid = h.peer_pid.load(Ordering::Acquire);
        if pid == 0 || h.peer_attached.load(Ordering::Acquire) != 0 {
            return;
        }
        // The claimant's start time may not be written yet: judge by the
        // pid alone (a recycled pid only delays the release).
        if !crate::liveness::pid_running(pid) {
            let _ = h
                .peer_pid
                .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Relaxed);
        }
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

    /// This side's lifeline word.
    pub(crate) fn own_lifeline(&self) -> &AtomicU32 {
        let h = self.header();
        match self.side {
            Side::Owner => &h.owner_lifeline,
            Side::Peer => &h.peer_lifeline,
        }
    }

    /// The other side's lifeline word.
    pub(crate) fn other_lifeline(&self) -> &AtomicU32 {
        let h = self.header();
        match self.side {
            Side::Owner => &h.peer_lifeline,
            Side::Peer => &h.owner_lifeline,
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

    /// Marks this side closed and wakes anything the other side parks on.
    pub(crate) fn close(&self) {
        let h = self.header();
        let flag = match self.side {
            Side::Owner => &h.owner_closed,
            Side::Peer => &h.peer_closed,
        };
        flag.store(1, Ordering::Release);
        for ring in 0..2 {
            // SAFETY: `ring(..)` points at a control block inside the live
            // mapping, valid (all-atomic) for any bytes.
            let ctl = unsafe { &*self.ring(ring).ctl };
            for signal in [&ctl.data.0, &ctl.space.0] {
                crate::wait::wake(signal);
            }
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.close();
        // `Shmem` unmaps, and unlinks the name if we are the owner.
    }
}

fn ctl_page(map: &Mapping, ring: usize) -> *mut u8 {
    map.0.as_ptr().wrapping_add(PAGE * (1 + ring))
}

// `is_stale` reads the owner's identity at these offsets.
const _: () = assert!(std::mem::offset_of!(SegmentHeader, owner_pid) == 24);
const _: () = assert!(std::mem::offset_of!(SegmentHeader, owner_start) == 32);

/// The RingControl fits in a control page.
const _: () = assert!(std::mem::size_of::<RingControl>() <= PAGE);
const _: () = assert!(std::mem::size_of::<SegmentHeader>() <= PAGE);

/// Removes segment `name` if its owner is dead (or it is a creator's
/// leftover that never finished initializing).
///
/// Two binders may find the same stale segment at once. Each takes an
/// exclusive `flock` on the file it inspected and unlinks the name only if
/// the name still refers to that very file: the first one removes it and
/// creates its own; the second then finds the name gone or naming the
/// first one's new segment, and leaves it alone (its create then fails
/// with `AddrInUse`). The lock is only ever tried, never waited on for
/// long: a process holding it forever costs a bind `AddrInUse`, not a hang.
fn reclaim_if_stale(name: &str) -> Result<(), ConnectError> {
    let path = format!("/dev/shm/{}", os_id(name));
    let file = match std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(file) => file,
        // Gone meanwhile: nothing to reclaim.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(ConnectError::AddrInUse(format!(
                "shm:{name} (a symbolic link is in the way)"
            )));
        }
        Err(e) => return Err(errno_error(name, e.raw_os_error().unwrap_or(0) as u32)),
    };
    let deadline = Instant::now() + RECLAIM_LOCK_WAIT;
    while rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        if Instant::now() >= deadline {
            return Err(ConnectError::AddrInUse(format!(
                "shm:{name} (another process is reclaiming it)"
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let inspected = file.metadata()?;
    match std::fs::symlink_metadata(&path) {
        Ok(now) if now.ino() == inspected.ino() && now.dev() == inspected.dev() => {}
        // Removed, or replaced by someone else's new segment: not ours to touch.
        _ => return Ok(()),
    }
    if !is_stale(&file, inspected.len(), &path)? {
        return Err(ConnectError::AddrInUse(format!(
            "shm:{name} (its owner is alive)"
        )));
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// How long a binder tries for the reclaim lock before it gives up.
const RECLAIM_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Whether the segment in `file` (`len` bytes) was left by a dead owner or
/// abandoned half-initialized. Reads the header fields with `pread`: the
/// file may be any size and hold anything.
fn is_stale(file: &std::fs::File, len: u64, path: &str) -> Result<bool, ConnectError> {
    use std::os::unix::fs::FileExt;
    if len < PAGE as u64 {
        return Ok(init_abandoned_at(path));
    }
    let mut header = [0u8; 40];
    file.read_exact_at(&mut header, 0)?;
    let word = |at: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&header[at..at + n]);
        u64::from_le_bytes(b)
    };
    if word(0, 8) != MAGIC {
        return Ok(init_abandoned_at(path));
    }
    // SegmentHeader: owner_pid at 24 (u32), owner_start at 32 (u64).
    let owner = ProcessId {
        pid: word(24, 4) as u32,
        start: word(32, 8),
    };
    Ok(!owner.is_alive())
}

/// A segment file without a valid header, older than any creator takes to
/// initialize one.
fn init_abandoned_at(path: &str) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_INIT_AGE))
}
