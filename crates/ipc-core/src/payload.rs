//! Verifiable payloads for tests and benchmarks.
//!
//! [`fill`] writes a message whose every byte is a function of its sequence
//! number and length; [`verify`] checks a received message against the
//! sequence number the receiver expects. A lost, duplicated, reordered,
//! truncated or corrupted message fails verification, so a transport
//! cannot pass a test or win a benchmark by mangling data. Both run at
//! memory speed (one pass, no hashing).
//!
//! Layout of a message of `len >= 16` bytes: `seq: u64 LE`, `len: u64 LE`,
//! then pattern words. Shorter messages are pattern bytes only.
//!
//! ```
//! use ipc_core::payload;
//! let mut msg = vec![0; 100];
//! payload::fill(42, &mut msg);
//! assert_eq!(payload::verify(42, &msg), Ok(()));
//! msg[60] ^= 1;
//! assert!(payload::verify(42, &msg).is_err());
//! ```

/// Bytes of the sequence/length header in messages of at least this size.
pub const HEADER_LEN: usize = 16;

/// What was wrong with a received payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    /// The message carries another sequence number than expected: a message
    /// was lost, duplicated or reordered.
    #[error("expected message #{expected}, got #{got}")]
    Sequence {
        /// The sequence number the receiver expected.
        expected: u64,
        /// The one the message carries.
        got: u64,
    },
    /// The message length differs from the one the sender wrote into it.
    #[error("message #{seq} is {got} bytes, its header says {declared}")]
    Length {
        /// Sequence number.
        seq: u64,
        /// Length written by the sender.
        declared: u64,
        /// Length received.
        got: usize,
    },
    /// A byte differs from what the sender wrote.
    #[error("message #{seq} differs from the sent bytes at offset {offset}")]
    Corrupted {
        /// Sequence number.
        seq: u64,
        /// First differing byte.
        offset: usize,
    },
}

fn word(seq: u64, index: usize) -> u64 {
    (seq ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ index as u64
}

/// Writes message number `seq` into all of `buf`.
pub fn fill(seq: u64, buf: &mut [u8]) {
    let body = if buf.len() >= HEADER_LEN {
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        let len = buf.len() as u64;
        buf[8..16].copy_from_slice(&len.to_le_bytes());
        &mut buf[HEADER_LEN..]
    } else {
        buf
    };
    let done = body.len() / 8;
    let mut chunks = body.chunks_exact_mut(8);
    for (i, chunk) in (&mut chunks).enumerate() {
        chunk.copy_from_slice(&word(seq, i).to_le_bytes());
    }
    let tail = chunks.into_remainder();
    tail.copy_from_slice(&word(seq, done).to_le_bytes()[..tail.len()]);
}

/// Checks that `buf` is exactly message number `expected` as [`fill`]
/// wrote it.
pub fn verify(expected: u64, buf: &[u8]) -> Result<(), IntegrityError> {
    let body = if buf.len() >= HEADER_LEN {
        let got = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        if got != expected {
            return Err(IntegrityError::Sequence { expected, got });
        }
        let declared = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
        if declared != buf.len() as u64 {
            return Err(IntegrityError::Length {
                seq: expected,
                declared,
                got: buf.len(),
            });
        }
        &buf[HEADER_LEN..]
    } else {
        buf
    };
    let base = buf.len() - body.len();
    let mut chunks = body.chunks_exact(8);
    let mut bad = None;
    for (i, chunk) in (&mut chunks).enumerate() {
        if chunk != word(expected, i).to_le_bytes() {
            bad = Some(i * 8);
            break;
        }
    }
    if bad.is_none() {
        let tail = chunks.remainder();
        let done = body.len() / 8;
        if tail != &word(expected, done).to_le_bytes()[..tail.len()] {
            bad = Some(done * 8);
        }
    }
    match bad {
        None => Ok(()),
        Some(offset) => Err(IntegrityError::Corrupted {
            seq: expected,
            offset: base + offset,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_verifies_and_every_flipped_byte_is_caught() {
        for len in [0, 1, 7, 8, 15, 16, 17, 24, 100, 4096] {
            let mut msg = vec![0; len];
            fill(3, &mut msg);
            assert_eq!(verify(3, &msg), Ok(()), "len {len}");
            for i in 0..len {
                let mut bad = msg.clone();
                bad[i] ^= 0x40;
                assert!(verify(3, &bad).is_err(), "len {len}, flipped byte {i}");
            }
        }
    }

    #[test]
    fn drops_duplicates_and_truncation_are_caught() {
        let mut a = vec![0; 64];
        fill(1, &mut a);
        assert_eq!(
            verify(2, &a),
            Err(IntegrityError::Sequence {
                expected: 2,
                got: 1
            })
        );
        assert!(matches!(
            verify(1, &a[..40]),
            Err(IntegrityError::Length { .. })
        ));
        // Short messages carry no header but still depend on the sequence.
        let mut s = vec![0; 8];
        fill(1, &mut s);
        assert!(verify(2, &s).is_err());
    }
}
