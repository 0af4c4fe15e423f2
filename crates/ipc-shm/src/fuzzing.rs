//! Entry points for the fuzz targets (`fuzz/`), built only under
//! `cfg(fuzzing)`: the ring reader and writer over an arbitrary image of
//! shared memory, a blob handle as a hostile peer may pass it, and a
//! segment as a hostile listener may hand it over.

use rustix::fs::{MemfdFlags, SealFlags};

use crate::ring::{Consumer, Producer, RingControl, RingMemory, kind, max_record};
use crate::sync::Ordering;

/// Ring bytes in the fuzzed image.
const CAP: usize = 256;

/// Reads and writes a ring whose indices and bytes come from `data`: the
/// first 16 bytes are the published head and tail, the rest the ring.
/// Whatever they say, the reader must validate, never read out of bounds,
/// never panic, and stop.
pub fn ring_image(data: &[u8]) {
    let word = |at: usize| {
        let mut b = [0u8; 8];
        if let Some(src) = data.get(at..at + 8) {
            b.copy_from_slice(src);
        }
        u64::from_le_bytes(b)
    };
    let ctl = Box::new(RingControl::new());
    ctl.tail.0.store(word(8), Ordering::Relaxed);
    let mut ring = vec![0u64; CAP / 8];
    let bytes = data.get(16..).unwrap_or_default();
    for (i, b) in bytes.iter().take(CAP).enumerate() {
        ring[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    let mem = RingMemory::new(&*ctl, ring.as_mut_ptr().cast(), CAP as u64);
    // SAFETY: one consumer over a ring that outlives it (both are locals).
    let mut consumer = unsafe { Consumer::new(mem) };
    for _ in 0..64 {
        match consumer.peek() {
            Ok(Some(record)) => {
                assert!(consumer.payload(&record).len() <= max_record(CAP as u64));
                consumer.release(record);
            }
            Ok(None) | Err(_) => break,
        }
    }
    // SAFETY: one producer over the same ring, used after the consumer.
    let mut producer = unsafe { Producer::new(mem) };
    for _ in 0..4 {
        if !matches!(producer.try_write(kind::WHOLE, &[b"fuzz"]), Ok(Some(_))) {
            break;
        }
    }
}

/// A memory file of `len` bytes holding `bytes`, with `seals`.
fn memory_file(len: u64, bytes: &[u8], seals: SealFlags) -> std::os::fd::OwnedFd {
    let fd = rustix::fs::memfd_create("fuzz", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .expect("memfd");
    rustix::fs::ftruncate(&fd, len).expect("ftruncate");
    let _ = rustix::io::pwrite(&fd, &bytes[..bytes.len().min(len as usize)], 0);
    let _ = rustix::fs::fcntl_add_seals(&fd, seals);
    fd
}

/// A received blob record and descriptor, built from `data`: byte 0 picks
/// the seals, bytes 1-2 the file's size, byte 3 whether it is a memory
/// file or a pipe and whether it comes as a one-off blob or a reusable
/// slot, byte 4 how long the record is; the record's bytes follow. The blob opens only when it is a sealed memory file of exactly
/// the announced length, and then holds that many bytes.
pub fn blob_handle(data: &[u8]) {
    let byte = |at: usize| data.get(at).copied().unwrap_or(0);
    let seals = SealFlags::from_bits_truncate(u32::from(byte(0)) & 0xf);
    let size = u64::from(u16::from_le_bytes([byte(1), byte(2)]));
    let record = data.get(5..).unwrap_or_default();
    let record = &record[..record.len().min(usize::from(byte(4) % 17))];
    let Ok(len) = crate::blob::record_len(record) else {
        return;
    };
    let (fd, is_memory) = if byte(3) % 4 == 0 {
        let (read, _write) = rustix::pipe::pipe().expect("pipe");
        (read, false)
    } else {
        (memory_file(size, data, seals), true)
    };
    if byte(3) % 4 == 1 {
        // As a reusable slot: mapped only when sealed against resizing; a
        // message only within it.
        let mut slots = crate::blob::PeerSlots::default();
        let resizable = !seals.contains(SealFlags::SHRINK | SealFlags::GROW);
        match slots.add(0, fd, 1 << 20) {
            Ok(()) => {
                assert!(is_memory && !resizable && size > 4096);
                if let Ok(bytes) = slots.message(0, len) {
                    assert!(len > 0 && len <= size - 4096 && bytes.len() as u64 == len);
                }
            }
            // A write-sealed file cannot be mapped writable (the receiver
            // clears the slot's busy word).
            Err(_) => assert!(resizable || size <= 4096 || seals.contains(SealFlags::WRITE)),
        }
        return;
    }
    let sealed = seals.contains(SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW);
    match crate::blob::open_received(fd, len, &crate::blob::Unwritten::new(u64::MAX)) {
        Ok(bytes) => {
            assert!(is_memory && sealed && len == size && len > 0);
            assert_eq!(bytes.len() as u64, len);
        }
        Err(_) => assert!(!(is_memory && sealed && len == size && len > 0)),
    }
}

/// A segment image from `data` (its first two bytes pick the file's size,
/// in 4 KiB pages plus a remainder), sealed as a listener seals it and
/// attached as an agent attaches: whatever the header says, attaching
/// succeeds or fails cleanly.
pub fn segment_image(data: &[u8]) {
    let byte = |at: usize| u64::from(data.get(at).copied().unwrap_or(0));
    let len = (byte(0) % 32) * 4096 + byte(1) * 16;
    let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    let fd = memory_file(len, data.get(2..).unwrap_or_default(), seals);
    let _ = crate::segment::Segment::attach(fd, std::process::id(), "shm:fuzz");
}
