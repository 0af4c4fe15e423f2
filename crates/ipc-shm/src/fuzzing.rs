//! Entry points for the fuzz targets (`fuzz/`), built only under
//! `cfg(fuzzing)`: the ring reader and writer over an arbitrary image of
//! shared memory.

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
    ctl.head.0.store(word(0), Ordering::Relaxed);
    ctl.tail.0.store(word(8), Ordering::Relaxed);
    let mut ring = vec![0u64; CAP / 8];
    let bytes = data.get(16..).unwrap_or_default();
    for (i, b) in bytes.iter().take(CAP).enumerate() {
        ring[i / 8] |= u64::from(*b) << (8 * (i % 8));
    }
    let mem = RingMemory {
        ctl: &*ctl,
        data: ring.as_mut_ptr().cast(),
        cap: CAP as u64,
    };
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
