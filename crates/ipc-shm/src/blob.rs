//! Blobs: messages handed over by reference instead of through the ring.
//!
//! A blob is a memory file of its own (`memfd_create`). Its producer fills
//! it, unmaps it and seals it against writing, shrinking and growing, then
//! passes its descriptor over the connection's socket and publishes a
//! ring record (kind `BLOB`) with its length. The consumer takes the
//! descriptor, checks the seals and the size, and maps it read-only: the
//! message it receives is a `Bytes` pointing into that mapping. A 64 MiB
//! tool result is thus written once and read in place, through a ring of
//! any size.
//!
//! The seals make the bytes truly immutable (no process can write them
//! any more, the producer included) and the size fixed (no `SIGBUS` from
//! a truncation). Nothing is named anywhere: the kernel frees a blob when
//! the last mapping and descriptor go, that is when the receiver drops
//! the message, or when either process dies with it in flight.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};

use ipc_sys::memory::{Mapping, Populate};

/// The seals a received blob must carry.
const BLOB_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::SHRINK)
    .union(SealFlags::GROW);

/// A blob being filled: `len` bytes of shared memory, zeroed, mapped
/// writable in this process only until it is sent. Send it with
/// [`ShmConnection::send_blob`](crate::ShmConnection::send_blob) (or the
/// async twin): the bytes are then read in place by the peer, never
/// copied.
///
/// ```
/// use ipc_core::{Config, Connector, FrameReceiver, Listener};
/// use ipc_shm::{BlobBuf, Shm, ShmListener};
///
/// let name = format!("doc-blob-{}", std::process::id());
/// let mut listener = ShmListener::bind_name(&name, &Config::default())?;
/// let mut agent = Shm.connect(listener.address(), &Config::default())?;
/// let mut hub = listener.accept()?;
///
/// let mut blob = BlobBuf::new(8 << 20)?; // 8 MiB, written once, here:
/// blob.fill(0x5a);
/// agent.send_blob(blob)?;
/// let got = hub.recv()?; // a view of the same memory, read-only
/// assert_eq!(got.len(), 8 << 20);
/// assert!(got.iter().all(|&b| b == 0x5a));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct BlobBuf {
    fd: OwnedFd,
    map: Mapping,
}

impl BlobBuf {
    /// A new blob of `len` bytes (at least one), zeroed.
    pub fn new(len: usize) -> io::Result<Self> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a blob holds at least one byte (send an empty message as a frame)",
            ));
        }
        let fd = new_file()?;
        rustix::fs::ftruncate(&fd, len as u64)?;
        // Not populated: measured slower (the pages are backed as the
        // producer writes them either way).
        let map = Mapping::new(fd.as_fd(), len, true, Populate::No)?;
        Ok(BlobBuf { fd, map })
    }

    /// Unmaps and seals it for good: a [`Blob`] that can be sent to any
    /// number of peers (each maps the same memory; it is written once).
    pub fn seal(self) -> io::Result<Blob> {
        Ok(Blob(Arc::new(self.seal_inner()?)))
    }

    pub(crate) fn seal_inner(self) -> io::Result<SealedBlob> {
        let BlobBuf { fd, map } = self;
        let len = map.len() as u64;
        // Sealing against writes needs every writable mapping gone.
        drop(map);
        seal(&fd)?;
        Ok(SealedBlob { fd, len })
    }
}

/// A sealed blob: immutable shared memory that can be sent to many peers
/// with [`ShmConnection::send_sealed`](crate::ShmConnection::send_sealed),
/// written once however many receive it (a broadcast of a large result).
/// Cloning shares it; the memory is freed when the last clone and the last
/// receiver's message are gone.
///
/// ```
/// use ipc_core::{Config, Connector, FrameReceiver, Listener};
/// use ipc_shm::{BlobBuf, Shm, ShmListener};
///
/// let name = format!("doc-sealed-{}", std::process::id());
/// let mut listener = ShmListener::bind_name(&name, &Config::default())?;
/// let mut agents = Vec::new();
/// let mut hub_side = Vec::new();
/// for _ in 0..3 {
///     agents.push(Shm.connect(listener.address(), &Config::default())?);
///     hub_side.push(listener.accept()?);
/// }
/// let mut result = BlobBuf::new(1 << 20)?;
/// result.fill(9);
/// let result = result.seal()?;
/// for conn in &mut hub_side {
///     conn.send_sealed(&result)?; // the same memory each time
/// }
/// for agent in &mut agents {
///     assert!(agent.recv()?.iter().all(|&b| b == 9));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Blob(pub(crate) Arc<SealedBlob>);

impl Blob {
    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.0.len as usize
    }

    /// Never true: a blob holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }
}

impl std::ops::Deref for BlobBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes of a file this process created
        // and has not handed to anyone yet: no other process can write it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }
}

impl std::ops::DerefMut for BlobBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr(), self.map.len()) }
    }
}

/// Loans smaller than this are heap memory: below it, a copy into the
/// connection's reused slots costs less than fresh shared memory (a file,
/// two mappings, a page fault per page and the kernel's zeroing).
pub const LEND_MIN: usize = 1 << 20;

/// The [`Lender`](ipc_core::Lender) of shared-memory connections: a blob
/// of its own for a loan of [`LEND_MIN`] bytes or more, heap memory for a
/// smaller one.
pub(crate) fn lender() -> ipc_core::Lender {
    ipc_core::Lender::new(|len| {
        if len < LEND_MIN {
            return Ok(ipc_core::Loan::heap(len));
        }
        let buf = BlobBuf::new(len)?;
        Ok(ipc_core::Loan::lent(Box::new(LentBlob { buf, len })))
    })
}

/// A blob lent for a frame: `len` is how much of it the frame keeps
/// (a writer that asked for more than it needed truncates).
struct LentBlob {
    buf: BlobBuf,
    len: usize,
}

impl std::ops::Deref for LentBlob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::DerefMut for LentBlob {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl ipc_core::LentMemory for LentBlob {
    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn freeze(self: Box<Self>) -> io::Result<Bytes> {
        let LentBlob { buf, len } = *self;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let BlobBuf { fd, map } = buf;
        drop(map);
        let stat = rustix::fs::fstat(&fd)?;
        if (len as u64) < stat.st_size as u64 {
            rustix::fs::ftruncate(&fd, len as u64)?;
        }
        // Pages never written are allocated (as zeros) now: a receiver
        // counts a blob's unwritten bytes against the sender (a sparse
        // blob is how a hostile peer inflates memory), and a loan written
        // only in part must not look like one.
        if (stat.st_blocks as u64).saturating_mul(512) < len as u64 {
            rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, len as u64)?;
        }
        seal(&fd)?;
        let blob = Arc::new(SealedBlob {
            fd,
            len: len as u64,
        });
        // Read-only, and not populated: the sender seldom reads it back.
        let map = Mapping::new(blob.fd.as_fd(), len, false, Populate::No)?;
        let start = map.as_ptr() as usize;
        lent_blobs().insert(start, blob);
        Ok(Bytes::from_owner(LentFrame { map }))
    }
}

/// A frozen lent blob: the frame's bytes, a read-only view of the sealed
/// file that a shared-memory connection passes instead of copying (the
/// file itself stays in [`lent_blobs`] while the view lives).
struct LentFrame {
    map: Mapping,
}

impl AsRef<[u8]> for LentFrame {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping covers the sealed file's `len` bytes; the
        // seals make them immutable and the size fixed while `self` (which
        // owns the mapping) lives.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }
}

impl Drop for LentFrame {
    fn drop(&mut self) {
        lent_blobs().remove(&(self.map.as_ptr() as usize));
    }
}

/// The frozen lent blobs of this process, by the address of their view.
fn lent_blobs() -> std::sync::MutexGuard<'static, std::collections::HashMap<usize, Arc<SealedBlob>>>
{
    static LENT: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<usize, Arc<SealedBlob>>>,
    > = std::sync::LazyLock::new(Default::default);
    LENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sealed blob `frame` is exactly the whole view of, if it is a
/// frozen lent blob of this process (then it can be passed, not copied).
/// Only frames of at least [`LEND_MIN`] bytes can be.
pub(crate) fn lent_blob(frame: &[u8]) -> Option<Arc<SealedBlob>> {
    if frame.len() < LEND_MIN {
        return None;
    }
    lent_blobs()
        .get(&(frame.as_ptr() as usize))
        .filter(|b| b.len == frame.len() as u64)
        .cloned()
}

/// A sealed blob, ready to be handed over.
#[derive(Debug)]
pub(crate) struct SealedBlob {
    pub(crate) fd: OwnedFd,
    pub(crate) len: u64,
}

impl SealedBlob {
    /// A blob holding a copy of `bytes`, written by the kernel (`pwrite`:
    /// no mapping, no page faults in this process).
    pub(crate) fn copy_of(bytes: &[u8]) -> io::Result<Self> {
        let fd = new_file()?;
        let mut at = 0;
        while at < bytes.len() {
            match rustix::io::pwrite(&fd, &bytes[at..], at as u64) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        seal(&fd)?;
        Ok(SealedBlob {
            fd,
            len: bytes.len() as u64,
        })
    }
}

fn new_file() -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        "ipc-shm blob",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// Seals a blob's file. Sealing against writes fails with `EBUSY` while
/// the kernel still holds a page pinned (I/O, migration) after waiting
/// about 75 ms itself; seen once in a benchmark run of 16 MiB blobs with
/// two runners at work. So try a few more times, then say why.
fn seal(fd: &OwnedFd) -> io::Result<()> {
    const ATTEMPTS: u32 = 6;
    for attempt in 1..=ATTEMPTS {
        match rustix::fs::fcntl_add_seals(fd, BLOB_SEALS | SealFlags::SEAL) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(10 << attempt));
            }
            Err(rustix::io::Errno::BUSY) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    "blob: its memory stayed pinned (by I/O or the kernel) and cannot be \
                     sealed against writing",
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the last attempt returns")
}

/// The bytes of a received blob: a read-only mapping of a sealed file, and
/// its unwritten bytes' share of the connection's [`Unwritten`] budget.
struct ReceivedBlob {
    map: Mapping,
    unwritten: u64,
    budget: Arc<Unwritten>,
}

impl AsRef<[u8]> for ReceivedBlob {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping covers `len` bytes of a file whose size is
        // sealed (no truncation can fault it) and that is sealed against
        // writing (no process can change the bytes): immutable memory for
        // as long as the mapping lives, which `self` owns.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }
}

impl Drop for ReceivedBlob {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.unwritten, Ordering::AcqRel);
    }
}

/// The bytes of received blobs that their sender never wrote, held by
/// this side's messages now. Reading such bytes backs them with fresh
/// memory that stays as long as the sender keeps its descriptor, so a
/// sender that passes large blobs it never filled could make a reader
/// allocate without end; they are limited to `limit` per connection
/// (twice `max_message_size`), counted from what the kernel says of the
/// file (not from anything the sender claims) and given back when the
/// message drops.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    held: AtomicU64,
    limit: u64,
}

impl Unwritten {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Unwritten {
            held: AtomicU64::new(0),
            limit,
        })
    }

    fn take(&self, n: u64) -> bool {
        n == 0
            || self
                .held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    held.checked_add(n).filter(|&total| total <= self.limit)
                })
                .is_ok()
    }
}

/// The length a `BLOB` record's payload announces (a `u64`, LE).
pub(crate) fn record_len(payload: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(payload)
        .map(u64::from_le_bytes)
        .map_err(|_| format!("blob: a {}-byte record", payload.len()))
}

/// Opens a blob descriptor the peer sent for a record of `len` bytes.
/// Everything about it is the peer's choice and checked: a memory file,
/// sealed against writing and resizing, exactly `len` bytes. A blob the
/// sender wrote whole is mapped with its pages (they exist already; no
/// fault per page later); one with bytes never written is mapped without,
/// so it costs only what is read, and its unwritten bytes are charged to
/// `unwritten` while the message lives.
pub(crate) fn open_received(
    fd: OwnedFd,
    len: u64,
    unwritten: &Arc<Unwritten>,
) -> Result<Bytes, String> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| format!("blob: fstat: {e}"))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Err("blob: the descriptor is not a memory file".into());
    }
    let seals = rustix::fs::fcntl_get_seals(&fd)
        .map_err(|_| "blob: the descriptor cannot carry seals".to_string())?;
    if !seals.contains(BLOB_SEALS) {
        return Err("blob: the memory is not sealed against writing and resizing".into());
    }
    if stat.st_size as u64 != len || len == 0 {
        return Err(format!(
            "blob: the record says {len} bytes, the memory holds {}",
            stat.st_size
        ));
    }
    let len_usize = usize::try_from(len).map_err(|_| "blob: too large to map".to_string())?;
    // What the kernel backs of the file now (512-byte blocks); the file is
    // sealed, so it only grows if someone reads a hole.
    let written = (stat.st_blocks as u64).saturating_mul(512).min(len);
    let never_written = len - written;
    if !unwritten.take(never_written) {
        return Err(format!(
            "blob: {never_written} of its {len} bytes were never written, and unwritten \
             blob memory held from this peer would pass {} bytes (a sender passing memory \
             it never filled)",
            unwritten.limit
        ));
    }
    let populate = if never_written == 0 {
        Populate::Yes
    } else {
        Populate::No
    };
    let map = match Mapping::new(fd.as_fd(), len_usize, false, populate) {
        Ok(map) => map,
        Err(e) => {
            unwritten.held.fetch_sub(never_written, Ordering::AcqRel);
            return Err(format!("blob: mapping {len} bytes: {e}"));
        }
    };
    Ok(Bytes::from_owner(ReceivedBlob {
        map,
        unwritten: never_written,
        budget: Arc::clone(unwritten),
    }))
}

/// Bytes before a slot's data: the page holding its `busy` word.
const SLOT_HEADER: usize = 4096;
/// The smallest slot made (a slot is sized to the next power of two).
const MIN_SLOT: usize = 256 << 10;
/// Most slot memory one connection keeps for reuse. A larger message gets
/// a blob of its own; one that finds every slot held by the receiver goes
/// through the ring.
pub(crate) const POOL_LIMIT: usize = 32 << 20;
/// Most slots a sender makes, and a receiver maps for one peer.
pub(crate) const MAX_SLOTS: usize = 32;

/// A reusable blob: a memory file the sender fills again and again, each
/// time the receiver has let go of the message it held. Fresh memory for
/// every message costs the kernel's zeroing and a fault per page on both
/// sides, more than the copy it saves; a slot costs one copy in and
/// nothing else. Its `busy` word (first page) is set by the sender when it
/// fills the slot and cleared by the receiver when the message drops.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: u32,
    fd: OwnedFd,
    map: Mapping,
    /// Whether the peer has the descriptor already.
    pub(crate) passed: bool,
    /// Whether its data pages are given back to the kernel (until the next
    /// fill).
    released: bool,
}

impl Slot {
    /// A slot for messages of up to `len` bytes.
    pub(crate) fn create(id: u32, len: usize) -> io::Result<Self> {
        let cap = len.next_power_of_two().max(MIN_SLOT);
        let fd = rustix::fs::memfd_create(
            "ipc-shm slot",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        rustix::fs::ftruncate(&fd, (SLOT_HEADER + cap) as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        let map = Mapping::new(fd.as_fd(), SLOT_HEADER + cap, true, Populate::No)?;
        Ok(Slot {
            id,
            fd,
            map,
            passed: false,
            released: true,
        })
    }

    /// Data bytes it holds.
    pub(crate) fn capacity(&self) -> usize {
        self.map.len() - SLOT_HEADER
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    fn busy(&self) -> &AtomicU32 {
        // SAFETY: the mapping starts page-aligned and is at least a page
        // long; an atomic is valid for any bytes the peer may write there.
        unsafe { &*(self.map.as_ptr() as *const AtomicU32) }
    }

    /// Free once the receiver dropped the last message it held from here.
    pub(crate) fn is_free(&self) -> bool {
        self.busy().load(Ordering::Acquire) == 0
    }

    /// Marks it busy and copies `frame` in (the record that follows
    /// publishes it).
    pub(crate) fn fill(&mut self, frame: &[u8]) {
        self.busy().store(1, Ordering::Relaxed);
        self.released = false;
        // SAFETY: `frame.len() <= capacity()` (the caller picked the slot
        // for it), so the copy stays inside the mapping; the receiver is
        // done with the old contents (it cleared `busy`).
        unsafe {
            std::ptr::copy_nonoverlapping(
                frame.as_ptr(),
                self.map.as_ptr().add(SLOT_HEADER),
                frame.len(),
            );
        }
    }
}

impl Slot {
    /// Gives the data pages of a free slot back to the kernel (the file
    /// keeps its size; the pages come back zeroed when next written). The
    /// receiver reads a slot only after the next fill, so this is safe
    /// while it is free.
    pub(crate) fn release_memory(&mut self) {
        if self.released || !self.is_free() {
            return;
        }
        let len = self.capacity() as u64;
        if ipc_sys::memory::punch_hole(self.fd.as_fd(), SLOT_HEADER as u64, len).is_ok() {
            self.released = true;
        }
    }

    /// Bytes of it the kernel backs now.
    pub(crate) fn resident_bytes(&self) -> u64 {
        rustix::fs::fstat(&self.fd).map_or(0, |s| s.st_blocks as u64 * 512)
    }
}

/// The record of a slot message: slot id, message length.
pub(crate) fn slot_record(id: u32, len: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&id.to_le_bytes());
    out[8..].copy_from_slice(&len.to_le_bytes());
    out
}

/// Parses a slot record.
pub(crate) fn parse_slot_record(payload: &[u8]) -> Result<(u32, u64), String> {
    let Ok(bytes) = <[u8; 16]>::try_from(payload) else {
        return Err(format!("slot: a {}-byte record", payload.len()));
    };
    let id = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes"));
    Ok((id, len))
}

/// The receiver's mapping of one of the peer's slots.
#[derive(Debug)]
pub(crate) struct PeerSlot(Mapping);

/// The slots a receiver has mapped for its peer, by id.
#[derive(Debug, Default)]
pub(crate) struct PeerSlots(std::collections::HashMap<u32, Arc<PeerSlot>>);

impl PeerSlots {
    pub(crate) fn knows(&self, id: u32) -> bool {
        self.0.contains_key(&id)
    }

    /// Maps the slot the peer passed as `id`: a memory file sealed against
    /// resizing, no larger than a slot can be.
    pub(crate) fn add(&mut self, id: u32, fd: OwnedFd, max: usize) -> Result<(), String> {
        if self.0.len() >= MAX_SLOTS {
            return Err(format!("slot: the peer passed more than {MAX_SLOTS} slots"));
        }
        let stat = rustix::fs::fstat(&fd).map_err(|e| format!("slot: fstat: {e}"))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err("slot: the descriptor is not a memory file".into());
        }
        let seals = rustix::fs::fcntl_get_seals(&fd)
            .map_err(|_| "slot: the descriptor cannot carry seals".to_string())?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err("slot: the memory is not sealed against resizing".into());
        }
        let size = stat.st_size as u64;
        let most = (SLOT_HEADER + max.min(POOL_LIMIT).next_power_of_two()) as u64;
        if size <= SLOT_HEADER as u64 || size > most {
            return Err(format!("slot: a {size}-byte slot"));
        }
        let map = Mapping::new(fd.as_fd(), size as usize, true, Populate::No)
            .map_err(|e| format!("slot: mapping {size} bytes: {e}"))?;
        self.0.insert(id, Arc::new(PeerSlot(map)));
        Ok(())
    }

    /// The message of `len` bytes in slot `id`, read in place; dropping
    /// its last `Bytes` frees the slot for the sender.
    pub(crate) fn message(&self, id: u32, len: u64) -> Result<Bytes, String> {
        let slot = self
            .0
            .get(&id)
            .ok_or_else(|| format!("slot: unknown slot {id}"))?;
        if len == 0 || len > (slot.0.len() - SLOT_HEADER) as u64 {
            return Err(format!("slot: {len} bytes in slot {id}"));
        }
        Ok(Bytes::from_owner(SlotMessage {
            slot: Arc::clone(slot),
            len: len as usize,
        }))
    }
}

/// A message in a peer's slot.
struct SlotMessage {
    slot: Arc<PeerSlot>,
    len: usize,
}

impl AsRef<[u8]> for SlotMessage {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `len` was checked against the slot's size, whose file is
        // sealed against shrinking, so the bytes are mapped and backed for
        // as long as `self.slot` lives. An honest sender leaves them alone
        // until `busy` is cleared (on drop); a hostile one could change
        // them meanwhile, which yields wrong bytes, never an access outside
        // the mapping (as with a record read in place).
        unsafe { std::slice::from_raw_parts(self.slot.0.as_ptr().add(SLOT_HEADER), self.len) }
    }
}

impl Drop for SlotMessage {
    fn drop(&mut self) {
        // SAFETY: the first bytes of the slot's page-aligned mapping, valid
        // as an atomic whatever the peer wrote there.
        let busy = unsafe { &*(self.slot.0.as_ptr() as *const AtomicU32) };
        busy.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A page pinned for longer than the kernel waits (here by a pipe that
    /// holds it through `vmsplice` for 300 ms) no longer fails the seal.
    #[test]
    fn a_briefly_pinned_page_does_not_fail_the_seal() {
        let mut blob = BlobBuf::new(4096).unwrap();
        blob[..5].copy_from_slice(b"hello");
        let (read, write) = rustix::pipe::pipe().unwrap();
        let page = [rustix::pipe::IoSliceRaw::from_slice(&blob[..])];
        // SAFETY: `write` is the pipe's write end, so vmsplice only reads
        // the blob's page (it takes a reference to it; no flag lets it
        // write or steal the memory), and the slice lives until it returns.
        let moved =
            unsafe { rustix::pipe::vmsplice(&write, &page, rustix::pipe::SpliceFlags::empty()) }
                .unwrap();
        assert_eq!(moved, 4096);
        let drain = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let mut buf = vec![0u8; 4096];
            let mut got = 0;
            while got < 4096 {
                got += rustix::io::read(&read, &mut buf[got..]).unwrap();
            }
            buf
        });
        let sealed = blob.seal();
        let drained = drain.join().unwrap();
        assert_eq!(&drained[..5], b"hello");
        let sealed = sealed.expect("sealed once the pipe let the page go");
        assert_eq!(sealed.len(), 4096);
    }
}
