//! Memory files shared between processes: created sealed at their size,
//! checked when received, mapped whole, and known by address afterwards
//! ([`is_shared`]).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use ipc_core::ConnectError;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// The seals a shared memory file must carry before it is mapped.
const SIZE_SEALS: SealFlags = SealFlags::SHRINK.union(SealFlags::GROW);

/// A shared mapping of a whole memory file; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is process-wide memory; the struct holds only its
// address and length, nothing tied to a thread.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only exposes the base pointer and length; all access
// to the memory goes through atomics or validated ring offsets.
unsafe impl Sync for Mapping {}

/// Whether a mapping's page tables are filled at once (one system call
/// instead of a fault per page, for memory about to be read whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Populate {
    /// Fill them now (`MAP_POPULATE`).
    Yes,
    /// Let pages fault in as they are touched.
    No,
}

impl Mapping {
    /// Maps `len` bytes of `fd` shared, readable and (if `writable`)
    /// writable.
    pub fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        writable: bool,
        populate: Populate,
    ) -> io::Result<Self> {
        let prot = if writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        let mut flags = MapFlags::SHARED;
        if populate == Populate::Yes {
            flags |= MapFlags::POPULATE;
        }
        // SAFETY: a fresh mapping at an address the kernel picks: it
        // aliases no Rust object. Its length is the file's sealed size (or
        // the size this side just gave it), so every byte is backed.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0)? };
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        shared_ranges().insert(ptr.as_ptr() as usize, len);
        Ok(Mapping { ptr, len })
    }

    /// The first byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Backs and maps the pages of `[offset, offset + len)` now (best
    /// effort: an older kernel without `MADV_POPULATE_WRITE` leaves them
    /// to fault in on use).
    pub fn populate(&self, offset: usize, len: usize) {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return;
        }
        // SAFETY: the range is inside this live mapping (checked above);
        // populating only backs and maps pages (the file is sealed at its
        // size, so every page exists) and changes no byte.
        let _ = unsafe {
            rustix::mm::madvise(
                self.ptr.as_ptr().add(offset).cast(),
                len,
                rustix::mm::Advice::LinuxPopulateWrite,
            )
        };
    }

    /// Its length in bytes.
    #[allow(clippy::len_without_is_empty)] // a mapping is never empty
    pub fn len(&self) -> usize {
        self.len
    }
}

/// The address ranges of this process's live mappings (start -> length),
/// for [`is_shared`].
fn shared_ranges() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<usize, usize>> {
    static RANGES: std::sync::Mutex<std::collections::BTreeMap<usize, usize>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    RANGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `bytes` lie in shared memory this transport mapped: a message
/// received in place (a blob, a slot, a record viewed in the ring) rather
/// than copied out. A `Bytes` that is keeps its mapping alive, so the
/// answer holds for as long as the caller holds it. Empty slices are
/// never in place.
pub fn is_shared(bytes: &[u8]) -> bool {
    let (start, len) = (bytes.as_ptr() as usize, bytes.len());
    if len == 0 {
        return false;
    }
    shared_ranges()
        .range(..=start)
        .next_back()
        .is_some_and(|(&base, &size)| start + len <= base + size)
}

impl Drop for Mapping {
    fn drop(&mut self) {
        shared_ranges().remove(&(self.ptr.as_ptr() as usize));
        // SAFETY: the range is exactly the one mmap returned, and every
        // user of it borrows or owns (through an Arc) this mapping.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Gives `len` bytes of `fd` from `offset` back to the kernel: they read
/// as zeros and are backed again when written.
pub fn punch_hole(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(
        fd,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        offset,
        len,
    )?;
    Ok(())
}

/// A new sealed memory file of `len` bytes, zero-filled.
pub fn sealed_memfd(label: &str, len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create(label, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SIZE_SEALS | SealFlags::SEAL)?;
    Ok(fd)
}

/// The size of a memory file received from a peer, once it is known to be
/// a regular file whose size is sealed (so it cannot shrink under a
/// mapping of it).
pub fn sealed_len(fd: BorrowedFd<'_>, what: &str) -> Result<u64, ConnectError> {
    let stat = rustix::fs::fstat(fd).map_err(io::Error::from)?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(ConnectError::Incompatible(format!(
            "{what}: the descriptor received is not a memory file"
        )));
    }
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|_| {
        ConnectError::Incompatible(format!("{what}: the file received cannot be sealed"))
    })?;
    if !seals.contains(SIZE_SEALS) {
        return Err(ConnectError::Incompatible(format!(
            "{what}: the memory file received is not sealed against resizing"
        )));
    }
    Ok(stat.st_size as u64)
}
