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

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};

use crate::segment::{Mapping, Populate};

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
/// let mut listener = ShmListener::bind(&name, &Config::default())?;
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
        let map = Mapping::new(fd.as_fd(), len, true, Populate::No)?;
        Ok(BlobBuf { fd, map })
    }

    /// Unmaps and seals it: what the peer gets.
    pub(crate) fn seal(self) -> io::Result<SealedBlob> {
        let BlobBuf { fd, map } = self;
        let len = map.len() as u64;
        // Sealing against writes needs every writable mapping gone.
        drop(map);
        seal(&fd)?;
        Ok(SealedBlob { fd, len })
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

fn seal(fd: &OwnedFd) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(
        fd,
        BLOB_SEALS | SealFlags::SEAL,
    )?)
}

/// The bytes of a received blob: a read-only mapping of a sealed file.
struct ReceivedBlob(Mapping);

impl AsRef<[u8]> for ReceivedBlob {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping covers `len` bytes of a file whose size is
        // sealed (no truncation can fault it) and that is sealed against
        // writing (no process can change the bytes): immutable memory for
        // as long as the mapping lives, which `self` owns.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr(), self.0.len()) }
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
/// sealed against writing and resizing, exactly `len` bytes.
pub(crate) fn open_received(fd: OwnedFd, len: u64) -> Result<Bytes, String> {
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
    let len = usize::try_from(len).map_err(|_| "blob: too large to map".to_string())?;
    let map = Mapping::new(fd.as_fd(), len, false, Populate::Yes)
        .map_err(|e| format!("blob: mapping {len} bytes: {e}"))?;
    Ok(Bytes::from_owner(ReceivedBlob(map)))
}
