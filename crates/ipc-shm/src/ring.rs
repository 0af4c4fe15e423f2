//! A single-producer single-consumer ring of variable-length records.
//!
//! The ring is `cap` bytes (a power of two) plus a [`RingControl`] with the
//! consumer's `tail` and the two wait signals on separate cache lines.
//! Positions count bytes ever written and never wrap (2^64 bytes is
//! centuries at memory speed); `pos & (cap - 1)` is the offset.
//!
//! A record is an 8-byte header (`len: u32`, `kind: u32`, one atomic word)
//! and `len` payload bytes, padded to 8. Records never wrap: one that does
//! not fit before the end is preceded by a `PAD` record covering the rest,
//! so every payload is one contiguous slice (which the zero-copy API hands
//! out). A record's payload is at most `cap / 2 - 8` bytes, which
//! guarantees a free ring can always take it.
//!
//! **The header is the commit word.** There is no shared head index: the
//! consumer polls the header at its own position. Kind 0 means nothing
//! yet; any other kind is a record, published by the producer's release
//! store of the header word after the payload. So a small message costs
//! the consumer one cache line holding the header and the start of the
//! payload, where reading a head index first cost another line crossing
//! between CPUs on every message. For kind 0 to mean "nothing yet", the
//! producer keeps the word at its head zero: before publishing a record
//! it zeroes the header slot after it (it reserves those 8 bytes too),
//! and with a pad it publishes the record at offset 0 before the pad that
//! leads there. Fresh and punched-out rings are all zeros.
//!
//! Each side keeps its own position in private memory and publishes only
//! what the other needs: the producer its records (their headers), the
//! consumer its `tail`, which the producer reads and validates only when
//! the tail it saw last leaves too little room (a stale tail only
//! understates the room). A peer that scribbles over the ring causes
//! [`Corrupt`] or wrong bytes, never an out-of-bounds access. No lock is
//! taken.
//!
//! Waking is decided here but done by the caller (`wait.rs`): each
//! direction has a [`Signal`] whose `waiting` word a parked side sets
//! before it waits on its doorbell (`bell.rs`). Publishing stores the record's
//! header (or the tail), issues a `SeqCst` fence and then reads `waiting`;
//! the parking side sets `waiting`, fences, then re-checks the header at
//! its position (or the tail). One of the two always sees the other, so no
//! wake-up is lost.

use crate::sync::{AtomicU32, AtomicU64, Ordering, fence};

/// Bytes of a record header.
pub(crate) const RECORD_HEADER: u64 = 8;

/// Record kinds.
pub(crate) mod kind {
    /// A whole message.
    pub(crate) const WHOLE: u32 = 1;
    /// First chunk of a message larger than a record; payload starts with
    /// the message length as `u64` LE.
    pub(crate) const FIRST: u32 = 2;
    /// A middle chunk.
    pub(crate) const MORE: u32 = 3;
    /// The last chunk.
    pub(crate) const LAST: u32 = 4;
    /// Filler up to the end of the ring.
    pub(crate) const PAD: u32 = 5;
    /// A message handed over by reference (`blob.rs`): the payload is its
    /// length as `u64` LE, its memory travels over the socket.
    pub(crate) const BLOB: u32 = 6;
    /// A message in one of the sender's reusable slots (`blob.rs`): the
    /// payload is the slot id (`u32` LE, 4 bytes of padding) and the
    /// length (`u64` LE); the slot's memory travels over the socket with
    /// its first message.
    pub(crate) const SLOT: u32 = 7;
}

/// A value on a cache line of its own.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CacheLine<T>(pub(crate) T);

/// How the other side knows to wake a parked side.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct Signal {
    /// Non-zero while the other side is parked (or about to): ring its
    /// doorbell after publishing.
    pub(crate) waiting: AtomicU32,
}

/// The shared words of one ring (the records publish themselves). All-zero
/// bytes are a valid empty ring.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RingControl {
    pub(crate) tail: CacheLine<AtomicU64>,
    /// The consumer parks here for data.
    pub(crate) data: CacheLine<Signal>,
    /// The producer parks here for space.
    pub(crate) space: CacheLine<Signal>,
}

impl RingControl {
    /// An empty ring's control block (for tests; shared memory starts
    /// zeroed, which is the same).
    #[cfg(any(test, loom, fuzzing))]
    pub(crate) fn new() -> Self {
        RingControl {
            tail: CacheLine(AtomicU64::new(0)),
            data: CacheLine(Signal {
                waiting: AtomicU32::new(0),
            }),
            space: CacheLine(Signal {
                waiting: AtomicU32::new(0),
            }),
        }
    }
}

/// The ring's shared state is inconsistent: a peer wrote garbage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Corrupt(pub(crate) String);

fn corrupt(what: impl Into<String>) -> Corrupt {
    Corrupt(what.into())
}

fn align8(n: u64) -> u64 {
    (n + 7) & !7
}

/// A header word: `len` in the low half, `kind` in the high half (so in
/// memory, little-endian, `len` then `kind`).
fn header_word(len: u32, kind: u32) -> u64 {
    u64::from(len) | u64::from(kind) << 32
}

/// A header word's kind: 0 is no record (yet).
fn header_kind(word: u64) -> u32 {
    (word >> 32) as u32
}

/// The payload of each chunk of a message larger than a record: a quarter
/// ring with its header, so chunks tile the ring without pads and up to
/// three are in it at once (the producer writes the next while the
/// consumer copies out the one before; at half a ring, with the header
/// slot each record also reserves, only one fitted at a time and chunked
/// throughput fell by a third).
pub(crate) fn chunk_payload(cap: u64) -> usize {
    (cap / 4 - RECORD_HEADER) as usize
}

/// The largest record payload a ring of `cap` bytes takes.
pub(crate) fn max_record(cap: u64) -> usize {
    (cap / 2 - RECORD_HEADER) as usize
}

/// The memory of one ring: its control block and `cap` data bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingMemory {
    pub(crate) ctl: *const RingControl,
    data: *mut u8,
    cap: u64,
    /// Model checks only: one tracked cell per 8 data bytes (see
    /// [`RingMemory::touch`]).
    #[cfg(loom)]
    shadow: Option<&'static [loom::cell::UnsafeCell<()>]>,
    /// Model checks only: the header words, as loom atomics.
    #[cfg(loom)]
    headers: Option<&'static [AtomicU64]>,
}

impl RingMemory {
    /// The ring whose control block is at `ctl` and whose `cap` data bytes
    /// (a power of two) start at `data`.
    pub(crate) fn new(ctl: *const RingControl, data: *mut u8, cap: u64) -> Self {
        RingMemory {
            ctl,
            data,
            cap,
            #[cfg(loom)]
            shadow: None,
            #[cfg(loom)]
            headers: None,
        }
    }

    /// The same ring with its data accesses tracked by loom: every read
    /// and write of data bytes must then be ordered by the positions'
    /// acquire/release pairs, or the model check fails (loom does not see
    /// plain memory, so a weakened ordering would otherwise go unnoticed).
    #[cfg(loom)]
    pub(crate) fn tracked(self) -> Self {
        let cells = (0..self.cap / 8)
            .map(|_| loom::cell::UnsafeCell::new(()))
            .collect::<Vec<_>>();
        let headers = (0..self.cap / 8)
            .map(|_| AtomicU64::new(0))
            .collect::<Vec<_>>();
        RingMemory {
            shadow: Some(Vec::leak(cells)),
            headers: Some(Vec::leak(headers)),
            ..self
        }
    }

    fn ctl(&self) -> &RingControl {
        // SAFETY: `RingMemory` is only built over a live, aligned control
        // block that outlives it (the segment mapping or a test's box).
        unsafe { &*self.ctl }
    }

    /// The record header word at data offset `offset` (8-aligned, below
    /// `cap`).
    #[cfg(not(loom))]
    fn header(&self, offset: u64) -> &AtomicU64 {
        debug_assert!(offset.is_multiple_of(8) && offset < self.cap);
        // SAFETY: `data` is 8-aligned (a page of the mapping, or a test's
        // `Vec<u64>`) and `offset` is 8-aligned and below `cap`, so the 8
        // bytes are inside the ring and aligned for an `AtomicU64`; any
        // bytes are a valid `u64`, and the memory outlives `self`.
        unsafe { AtomicU64::from_ptr(self.data.add(offset as usize).cast()) }
    }

    /// Whether a record (or pad) is published at position `pos`.
    pub(crate) fn published(&self, pos: u64) -> bool {
        header_kind(u64::from_le(
            self.header(pos & (self.cap - 1)).load(Ordering::Acquire),
        )) != 0
    }

    /// Under loom the header words are loom atomics beside the data (the
    /// ring's bytes at those offsets are not used).
    #[cfg(loom)]
    fn header(&self, offset: u64) -> &AtomicU64 {
        let words = self
            .headers
            .expect("loom tests use tracked rings (RingMemory::tracked)");
        &words[(offset / 8) as usize]
    }

    /// Tells the model checker that data bytes `[offset, offset + len)`
    /// are read (or written) now. Nothing outside model checks.
    #[inline(always)]
    fn touch(&self, offset: u64, len: u64, write: bool) {
        #[cfg(loom)]
        if let Some(cells) = self.shadow {
            let words = (offset / 8) as usize..(offset + len).div_ceil(8) as usize;
            for cell in &cells[words] {
                if write {
                    cell.with_mut(|_| ());
                } else {
                    cell.with(|_| ());
                }
            }
        }
        #[cfg(not(loom))]
        let _ = (offset, len, write);
    }
}

/// Space for a record, found by [`Producer::try_reserve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reservation {
    /// Bytes of padding to write first (0 if none).
    pad: u64,
    /// Offset of the record header in the ring.
    offset: u64,
    /// Payload length.
    len: usize,
}

/// The writing side of a ring.
#[derive(Debug)]
pub(crate) struct Producer {
    mem: RingMemory,
    head: u64,
    /// The consumer's tail as last read, to park until it moves.
    seen_tail: u64,
}

impl Producer {
    /// # Safety
    /// `mem` must describe a live ring of which this is the only producer,
    /// valid for as long as the producer is used.
    ///
    /// The producer starts at position 0, whatever the shared head says:
    /// rings are fresh when a connection is made, and a position taken
    /// from shared memory could be chosen to overflow.
    pub(crate) unsafe fn new(mem: RingMemory) -> Self {
        Producer {
            mem,
            head: 0,
            seen_tail: 0,
        }
    }

    pub(crate) fn max_record(&self) -> usize {
        max_record(self.mem.cap)
    }

    /// Where this side parks for space.
    pub(crate) fn park_signal(&self) -> &Signal {
        &self.mem.ctl().space.0
    }

    /// The tail seen by the last reservation attempt.
    pub(crate) fn seen_tail(&self) -> u64 {
        self.seen_tail
    }

    /// This producer's position: the end of the last record committed.
    pub(crate) fn head(&self) -> u64 {
        self.head
    }

    /// Whether `need` bytes are free. The consumer's tail is read from
    /// shared memory only when the tail seen last does not leave room: its
    /// cache line moves across only when the ring runs short, not on every
    /// message. A stale tail only understates the room.
    fn has_room(&mut self, need: u64) -> Result<bool, Corrupt> {
        if self.mem.cap - (self.head - self.seen_tail) >= need {
            return Ok(true);
        }
        Ok(self.free()? >= need)
    }

    /// The consumer's published tail, validated and kept as the tail seen.
    pub(crate) fn refresh_tail(&mut self) -> Result<u64, Corrupt> {
        self.free()?;
        Ok(self.seen_tail)
    }

    /// Free bytes, from the consumer's published tail (validated).
    fn free(&mut self) -> Result<u64, Corrupt> {
        let tail = self.mem.ctl().tail.0.load(Ordering::Acquire);
        if tail > self.head || self.head - tail > self.mem.cap {
            return Err(corrupt(format!(
                "ring tail {tail} is out of range for head {}",
                self.head
            )));
        }
        // Kept only once valid: `has_room` computes with it.
        self.seen_tail = tail;
        Ok(self.mem.cap - (self.head - tail))
    }

    /// Finds room for a record of `len` payload bytes, or `None` if the
    /// ring is too full now. `len` must be at most [`Self::max_record`].
    pub(crate) fn try_reserve(&mut self, len: usize) -> Result<Option<Reservation>, Corrupt> {
        debug_assert!(len <= self.max_record());
        let need = RECORD_HEADER + align8(len as u64);
        let offset = self.head & (self.mem.cap - 1);
        let to_end = self.mem.cap - offset;
        let (pad, offset) = if need > to_end {
            (to_end, 0)
        } else {
            (0, offset)
        };
        // And the next record's header slot, zeroed by `commit`.
        if !self.has_room(pad + need + RECORD_HEADER)? {
            return Ok(None);
        }
        Ok(Some(Reservation { pad, offset, len }))
    }

    /// The payload bytes of a reservation, to be filled before `commit`.
    pub(crate) fn payload_mut(&mut self, r: &Reservation) -> &mut [u8] {
        self.mem.touch(r.offset + RECORD_HEADER, r.len as u64, true);
        // SAFETY: `try_reserve` checked that [offset, offset + 8 + len) is
        // inside the ring and free: the consumer will not read it before
        // `commit` publishes it, and `&mut self` keeps us the only writer.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.mem.data.add((r.offset + RECORD_HEADER) as usize),
                r.len,
            )
        }
    }

    /// The payload bytes of a reservation, read-only.
    pub(crate) fn payload(&self, r: &Reservation) -> &[u8] {
        // SAFETY: as in `payload_mut`; `&self` only reads.
        unsafe {
            std::slice::from_raw_parts(
                self.mem.data.add((r.offset + RECORD_HEADER) as usize),
                r.len,
            )
        }
    }

    /// Writes the headers of a filled reservation and publishes it.
    /// Returns true if the consumer is parked and must be woken.
    pub(crate) fn commit(&mut self, r: Reservation, kind: u32) -> bool {
        let cap = self.mem.cap;
        let pad_at = self.head & (cap - 1);
        self.head += r.pad + RECORD_HEADER + align8(r.len as u64);
        // The slot after the record reads as empty until a record is
        // published there (reserved by `try_reserve`, so free).
        self.write_header(self.head & (cap - 1), 0);
        // The record, then the pad that leads to it: each header's release
        // publishes everything written before it.
        self.write_header(r.offset, header_word(r.len as u32, kind));
        if r.pad > 0 {
            let pad = header_word((r.pad - RECORD_HEADER) as u32, kind::PAD);
            self.write_header(pad_at, pad);
        }
        // The header stores before it, then `waiting`: see the module docs.
        fence(Ordering::SeqCst);
        self.mem.ctl().data.0.waiting.load(Ordering::Relaxed) != 0
    }

    /// Writes one record made of `parts`, if it fits now.
    pub(crate) fn try_write(
        &mut self,
        kind: u32,
        parts: &[&[u8]],
    ) -> Result<Option<bool>, Corrupt> {
        let len = parts.iter().map(|p| p.len()).sum();
        let Some(r) = self.try_reserve(len)? else {
            return Ok(None);
        };
        let out = self.payload_mut(&r);
        let mut at = 0;
        for part in parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(Some(self.commit(r, kind)))
    }

    /// Stores a header word (little-endian in memory), publishing what
    /// was written before it.
    fn write_header(&mut self, offset: u64, word: u64) {
        self.mem
            .header(offset)
            .store(word.to_le(), Ordering::Release);
    }

    /// The consumer's published tail (for waiting on space).
    pub(crate) fn observed_tail(&self) -> u64 {
        self.mem.ctl().tail.0.load(Ordering::Acquire)
    }
}

/// A record found by [`Consumer::peek`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) kind: u32,
    offset: u64,
    pub(crate) len: usize,
    end: u64,
}

/// The reading side of a ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    mem: RingMemory,
    tail: u64,
    /// A pad was skipped and published: the producer may need a wake-up.
    wake_pending: bool,
}

impl Consumer {
    /// # Safety
    /// `mem` must describe a live ring of which this is the only consumer,
    /// valid for as long as the consumer is used.
    ///
    /// The consumer starts at position 0, whatever the shared tail says
    /// (see [`Producer::new`]).
    pub(crate) unsafe fn new(mem: RingMemory) -> Self {
        Consumer {
            mem,
            tail: 0,
            wake_pending: false,
        }
    }

    /// Where this side parks for data.
    pub(crate) fn park_signal(&self) -> &Signal {
        &self.mem.ctl().data.0
    }

    /// Whether a record is published at this consumer's position (for
    /// waiting on data).
    pub(crate) fn has_record(&self) -> bool {
        self.mem.published(self.tail)
    }

    /// The header word at position `pos`, acquired.
    fn header_at(&self, pos: u64) -> u64 {
        let offset = pos & (self.mem.cap - 1);
        u64::from_le(self.mem.header(offset).load(Ordering::Acquire))
    }

    /// The next record, validated, or `None` if the ring is empty.
    pub(crate) fn peek(&mut self) -> Result<Option<Record>, Corrupt> {
        let cap = self.mem.cap;
        loop {
            let word = self.header_at(self.tail);
            let kind = header_kind(word);
            if kind == 0 {
                return Ok(None);
            }
            let len = word & 0xffff_ffff;
            let offset = self.tail & (cap - 1);
            let to_end = cap - offset;
            if kind == kind::PAD {
                // A pad ends the ring and is shorter than the record that
                // did not fit after it (at most half the ring): so a pad
                // never follows a pad, and a ring of pads cannot keep this
                // loop going.
                if len + RECORD_HEADER != to_end || to_end >= cap / 2 {
                    return Err(corrupt(format!(
                        "bad pad record of {len} bytes at {offset}"
                    )));
                }
                self.tail += to_end;
                self.publish_tail();
                continue;
            }
            if !(kind::WHOLE..=kind::LAST).contains(&kind)
                && !matches!(kind, kind::BLOB | kind::SLOT)
                || len > max_record(cap) as u64
                || RECORD_HEADER + len > to_end
            {
                return Err(corrupt(format!(
                    "bad record header (kind {kind}, {len} bytes) at {offset}"
                )));
            }
            return Ok(Some(Record {
                kind,
                offset: offset + RECORD_HEADER,
                len: len as usize,
                end: self.tail + RECORD_HEADER + align8(len),
            }));
        }
    }

    /// The payload of a record returned by `peek` and not yet released.
    ///
    /// A hostile producer could change these bytes while they are read;
    /// that yields wrong bytes, never an out-of-bounds access (the range was
    /// validated against this side's own ring size).
    pub(crate) fn payload(&self, r: &Record) -> &[u8] {
        self.mem.touch(r.offset, r.len as u64, false);
        // SAFETY: `peek` checked offset + len <= cap; the range is published
        // and not yet released, so a correct producer does not write it.
        unsafe { std::slice::from_raw_parts(self.mem.data.add(r.offset as usize), r.len) }
    }

    /// Consumes a record. Returns true if the producer must be woken.
    pub(crate) fn release(&mut self, r: Record) -> bool {
        self.tail = r.end;
        self.publish_tail();
        std::mem::take(&mut self.wake_pending)
    }

    /// True (once) if skipping pads freed space a parked producer waits for.
    pub(crate) fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake_pending)
    }

    fn publish_tail(&mut self) {
        let ctl = self.mem.ctl();
        ctl.tail.0.store(self.tail, Ordering::Release);
        fence(Ordering::SeqCst);
        if ctl.space.0.waiting.load(Ordering::Relaxed) != 0 {
            self.wake_pending = true;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    struct TestRing {
        ctl: Box<RingControl>,
        data: Vec<u64>,
    }

    impl TestRing {
        fn new(cap: usize) -> Self {
            TestRing {
                ctl: Box::new(RingControl::new()),
                data: vec![0; cap / 8],
            }
        }
        fn mem(&mut self) -> RingMemory {
            RingMemory::new(
                &*self.ctl,
                self.data.as_mut_ptr().cast(),
                (self.data.len() * 8) as u64,
            )
        }
        fn bytes(&mut self) -> &mut [u8] {
            let len = self.data.len() * 8;
            // SAFETY: the Vec<u64> owns len bytes.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), len) }
        }
    }

    fn pop(c: &mut Consumer) -> Option<Vec<u8>> {
        let r = c.peek().unwrap()?;
        let out = c.payload(&r).to_vec();
        c.release(r);
        Some(out)
    }

    #[test]
    fn records_of_every_size_wrap_in_order() {
        let mut ring = TestRing::new(256);
        let mem = ring.mem();
        // SAFETY: one producer and one consumer over the test ring.
        let (mut p, mut c) = unsafe { (Producer::new(mem), Consumer::new(mem)) };
        assert_eq!(p.max_record(), 120);
        for round in 0..200usize {
            let len = (round * 7) % (p.max_record() + 1);
            let msg: Vec<u8> = (0..len).map(|i| (i + round) as u8).collect();
            assert!(
                p.try_write(kind::WHOLE, &[&msg]).unwrap().is_some(),
                "round {round}"
            );
            assert_eq!(pop(&mut c).unwrap(), msg, "round {round}");
        }
        assert!(pop(&mut c).is_none());
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_release() {
        let mut ring = TestRing::new(128);
        let mem = ring.mem();
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (Producer::new(mem), Consumer::new(mem)) };
        let msg = [9u8; 40];
        let mut written = 0;
        while p.try_write(kind::WHOLE, &[&msg]).unwrap().is_some() {
            written += 1;
        }
        assert_eq!(
            written, 2,
            "128-byte ring holds two 48-byte records (and the next header slot)"
        );
        assert_eq!(pop(&mut c).unwrap(), msg);
        // At 96 the third needs a pad of 32, itself, and the slot after it
        // (88 bytes): only 80 are free until the second is released too.
        assert!(p.try_write(kind::WHOLE, &[&msg]).unwrap().is_none());
        assert_eq!(pop(&mut c).unwrap(), msg);
        assert!(p.try_write(kind::WHOLE, &[&msg]).unwrap().is_some());
        assert_eq!(pop(&mut c).unwrap(), msg, "through the pad");
        assert!(pop(&mut c).is_none());
    }

    /// The consumer reads the header at its own position: nothing until a
    /// record is published there, and the slot after every record reads
    /// empty even when a previous lap left bytes in it.
    #[test]
    fn the_slot_after_a_record_reads_empty_whatever_was_there() {
        let mut ring = TestRing::new(128);
        // Leftovers of an earlier lap that look like records everywhere.
        for word in ring.data.iter_mut() {
            *word = header_word(8, kind::WHOLE).to_le();
        }
        ring.data[0] = 0;
        let mem = ring.mem();
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (Producer::new(mem), Consumer::new(mem)) };
        assert!(c.peek().unwrap().is_none());
        assert!(!c.has_record());
        for round in 0..40u8 {
            let msg = [round; 20];
            p.try_write(kind::WHOLE, &[&msg]).unwrap().unwrap();
            assert_eq!(pop(&mut c).unwrap(), msg, "round {round}");
            assert!(c.peek().unwrap().is_none(), "round {round}: a leftover");
            assert!(!c.has_record());
        }
    }

    #[test]
    fn scribbled_indices_and_headers_are_corrupt_not_out_of_bounds() {
        let mut ring = TestRing::new(128);
        let mem = ring.mem();
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (Producer::new(mem), Consumer::new(mem)) };
        p.try_write(kind::WHOLE, &[b"hello"]).unwrap();
        assert!(c.has_record());
        // A length running past the ring end.
        ring.bytes()[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(c.peek().is_err());
        // An unknown kind.
        ring.bytes()[..4].copy_from_slice(&5u32.to_le_bytes());
        ring.bytes()[4..8].copy_from_slice(&77u32.to_le_bytes());
        assert!(c.peek().is_err());
        // A tail the consumer never published: read (and refused) as soon
        // as the producer needs it, before the ring could overrun.
        ring.ctl.tail.0.store(u64::MAX, Ordering::Relaxed);
        assert!(writes_until_refused(&mut p, 128).is_some());
    }

    /// Writes 1-byte records until one is refused as corrupt; how many
    /// went in first, or `None` if more than a ring of `cap` bytes could
    /// hold went in (the corruption was never seen).
    fn writes_until_refused(p: &mut Producer, cap: usize) -> Option<usize> {
        for n in 0..=cap / 16 {
            match p.try_write(kind::WHOLE, &[b"x"]) {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(_) => return Some(n),
            }
        }
        None
    }

    /// Found by the `shm_ring` fuzz target: positions near the end of the
    /// u64 range in the shared indices must not overflow ours.
    #[test]
    fn extreme_shared_indices_are_corrupt_not_overflow() {
        let mut ring = TestRing::new(256);
        ring.ctl.tail.0.store(u64::MAX - 16, Ordering::Relaxed);
        let mem = ring.mem();
        // SAFETY: the only producer over the test ring.
        let mut p = unsafe { Producer::new(mem) };
        assert!(
            writes_until_refused(&mut p, 256).is_some(),
            "a tail ahead of our head is corrupt once it is read"
        );
    }

    /// A pad record claiming the whole ring, where the consumer lands after
    /// a pad: corrupt, not a loop from pad to pad (found by the `shm_ring`
    /// fuzz target, which hung).
    #[test]
    fn pads_cannot_chain() {
        let mut ring = TestRing::new(256);
        ring.data[0] = header_word(256 - 8, kind::PAD).to_le();
        let mem = ring.mem();
        // SAFETY: the only consumer over the test ring.
        let mut c = unsafe { Consumer::new(mem) };
        assert!(c.peek().is_err(), "a pad covering the ring");
        // An honest-looking pad at the end, then a pad at offset 0.
        let mut ring = TestRing::new(256);
        let mem = ring.mem();
        // SAFETY: as above.
        let (mut p, mut c) = unsafe { (Producer::new(mem), Consumer::new(mem)) };
        // Twelve 16-byte records: the consumer is at 192.
        for _ in 0..12 {
            p.try_write(kind::WHOLE, &[b"1234"]).unwrap().unwrap();
            assert_eq!(pop(&mut c).unwrap(), b"1234");
        }
        ring.data[24] = header_word(56, kind::PAD).to_le();
        ring.data[0] = header_word(256 - 8, kind::PAD).to_le();
        assert!(c.peek().is_err(), "a pad after a pad");
    }

    #[test]
    fn random_scribbles_never_panic() {
        let mut ring = TestRing::new(256);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            for b in ring.bytes().iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            ring.ctl.tail.0.store(0, Ordering::Relaxed);
            let mem = ring.mem();
            // SAFETY: as above.
            let mut c = unsafe { Consumer::new(mem) };
            for _ in 0..8 {
                match c.peek() {
                    Ok(Some(r)) => {
                        assert!(c.payload(&r).len() <= 120);
                        c.release(r);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}

#[cfg(loom)]
mod loom_tests {
    use super::*;
    use loom::thread;

    /// A producer and a consumer on a ring small enough to wrap and fill:
    /// every interleaving delivers every record intact and in order.
    #[test]
    fn spsc_ring_delivers_in_order_under_every_interleaving() {
        loom::model(|| {
            let mem = leaked_ring(64);
            let for_producer = SendMem(mem);
            let producer = thread::spawn(move || {
                let m = for_producer;
                // SAFETY: the only producer.
                let mut p = unsafe { Producer::new(m.0) };
                for i in 0..3u8 {
                    let msg = [i; 20];
                    while p.try_write(kind::WHOLE, &[&msg]).unwrap().is_none() {
                        thread::yield_now();
                    }
                }
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { Consumer::new(mem) };
            let mut next = 0u8;
            while next < 3 {
                match c.peek().unwrap() {
                    Some(r) => {
                        assert_eq!(c.payload(&r), &[next; 20]);
                        c.release(r);
                        next += 1;
                    }
                    None => thread::yield_now(),
                }
            }
            producer.join().unwrap();
        });
    }

    /// A ring whose data accesses loom tracks: a read or write of data
    /// bytes that the positions' acquire/release do not order fails the
    /// check (weakening any of them makes these tests fail).
    fn leaked_ring(cap: usize) -> RingMemory {
        let ctl = Box::leak(Box::new(RingControl::new()));
        let data: &'static mut [u64] = Box::leak(vec![0u64; cap / 8].into_boxed_slice());
        RingMemory::new(ctl, data.as_mut_ptr().cast(), cap as u64).tracked()
    }

    /// Records of three sizes through a 64-byte ring: the producer runs on
    /// a stale tail until the ring looks full, zeroes the slot after each
    /// record and pads to the end when a record does not fit before it;
    /// the consumer polls the header at its position. Every record arrives
    /// intact, in order, and no byte is written while the consumer may
    /// still read it.
    #[test]
    fn cached_positions_and_pads_deliver_in_order() {
        loom::model(|| {
            // Records of 24, 32 and 16 bytes (each also reserving the 8
            // bytes after it): the second waits for the first's release,
            // the third needs a pad of 8 at position 56 and lands at
            // offset 0.
            const LENS: [usize; 3] = [16, 24, 8];
            let mem = leaked_ring(64);
            let for_producer = SendMem(mem);
            let producer = thread::spawn(move || {
                let m = for_producer;
                // SAFETY: the only producer.
                let mut p = unsafe { Producer::new(m.0) };
                for (i, len) in LENS.into_iter().enumerate() {
                    let msg = vec![i as u8 + 1; len];
                    while p.try_write(kind::WHOLE, &[&msg]).unwrap().is_none() {
                        thread::yield_now();
                    }
                }
            });
            // SAFETY: the only consumer.
            let mut c = unsafe { Consumer::new(mem) };
            let mut next = 0;
            while next < LENS.len() {
                match c.peek().unwrap() {
                    Some(r) => {
                        assert_eq!(c.payload(&r), &vec![next as u8 + 1; LENS[next]][..]);
                        c.release(r);
                        next += 1;
                    }
                    None => thread::yield_now(),
                }
            }
            producer.join().unwrap();
            assert!(c.peek().unwrap().is_none(), "nothing after the last");
        });
    }

    struct SendMem(RingMemory);
    // SAFETY: leaked memory, alive for the whole model run.
    unsafe impl Send for SendMem {}

    /// The parking handshake: a consumer that announces it will park and
    /// then still sees an empty ring is always seen by the producer that
    /// publishes, so it is woken (no lost wake-up).
    #[test]
    fn a_parking_consumer_is_always_woken() {
        loom::model(|| {
            let mem = leaked_ring(64);
            let for_producer = SendMem(mem);
            let producer = thread::spawn(move || {
                let m = for_producer;
                // SAFETY: the only producer.
                let mut p = unsafe { Producer::new(m.0) };
                p.try_write(kind::WHOLE, &[b"x"]).unwrap().unwrap()
            });
            // SAFETY: the only consumer.
            let c = unsafe { Consumer::new(mem) };
            c.park_signal().waiting.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let would_sleep = !c.has_record();
            let woken = producer.join().unwrap();
            assert!(!(would_sleep && !woken), "lost wake-up");
        });
    }

    /// The same for a producer parked on a full ring.
    #[test]
    fn a_parking_producer_is_always_woken() {
        loom::model(|| {
            let mem = leaked_ring(64);
            // SAFETY: the only producer.
            let mut p = unsafe { Producer::new(mem) };
            p.try_write(kind::WHOLE, &[&[1; 24]]).unwrap().unwrap();
            p.try_write(kind::WHOLE, &[&[2; 16]]).unwrap().unwrap();
            assert!(p.try_reserve(24).unwrap().is_none(), "ring is full");
            let for_consumer = SendMem(mem);
            let consumer = thread::spawn(move || {
                let m = for_consumer;
                // SAFETY: the only consumer.
                let mut c = unsafe { Consumer::new(m.0) };
                let r = c.peek().unwrap().unwrap();
                c.release(r)
            });
            let seen = p.seen_tail();
            p.park_signal().waiting.store(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let would_sleep = p.observed_tail() == seen;
            let woken = consumer.join().unwrap();
            assert!(!(would_sleep && !woken), "lost wake-up");
        });
    }
}
