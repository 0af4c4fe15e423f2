//! Large messages on a connection: the slots and blobs protocol (the
//! memory files themselves are `blob.rs`): when a message goes by
//! reference, writing its record, and taking a received one in place.

use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use ipc_core::SendError;

use super::{Dir, Fail, ShmConnection};
use crate::blob::{Blob, BlobBuf, MAX_SLOTS, POOL_LIMIT, SealedBlob, Slot};
use crate::ring::kind;
use crate::{blob, handoff};

impl ShmConnection {
    /// Messages larger than `bytes` are sent as blobs (handed over by
    /// reference, read in place by the peer: see [`BlobBuf`]); `None`
    /// sends every message through the ring, in chunks when it is larger
    /// than a record. The default is [`DEFAULT_BLOB_THRESHOLD`](super::DEFAULT_BLOB_THRESHOLD). Messages
    /// up to [`max_record`](Self::max_record) always go through the ring.
    pub fn set_blob_threshold(&mut self, bytes: Option<usize>) {
        self.blob_threshold = bytes.map(|b| b.max(self.max_record()));
    }

    /// Sends `blob` by reference: the peer receives a view of the very
    /// memory filled here, with no copy on either side. Waits for room as
    /// [`send`](ipc_core::FrameSender::send) does; blobs sent and not yet taken by
    /// the peer are limited to twice [`Config::max_message_size`](ipc_core::Config::max_message_size) in
    /// bytes, so a peer that stops reading holds back the sender, not an
    /// unbounded pile of memory.
    ///
    /// Errors: [`SendError::FrameTooLarge`] (more than
    /// `max_message_size`), and those of `send`.
    pub fn send_blob(&mut self, blob: BlobBuf) -> Result<(), SendError> {
        let blob = self.seal_blob(blob)?;
        let mut wait = self.send_wait();
        self.flush_pending(&mut wait)?;
        Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob))?)
    }

    /// Sends a sealed blob by reference (see [`Blob`]): the peer maps the
    /// same memory as every other peer it was sent to. Waits and fails as
    /// [`send_blob`](Self::send_blob) does.
    pub fn send_sealed(&mut self, blob: &Blob) -> Result<(), SendError> {
        self.check_blob(blob.len())?;
        let mut wait = self.send_wait();
        self.flush_pending(&mut wait)?;
        Ok(self.wait_until(Dir::Space, &mut wait, |c| c.try_write_blob(&blob.0))?)
    }

    /// Checks and seals a blob about to be sent.
    pub(crate) fn seal_blob(&mut self, blob: BlobBuf) -> Result<SealedBlob, SendError> {
        self.check_blob(blob.len())?;
        Ok(blob.seal_inner()?)
    }

    /// Whether a blob of `len` bytes can go on this connection now.
    pub(crate) fn check_blob(&mut self, len: usize) -> Result<(), SendError> {
        self.check_sendable()?;
        let max = self.config.max_message_size;
        if len > max {
            return Err(SendError::FrameTooLarge { len, max });
        }
        if self.link.is_none() {
            return Err(SendError::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this connection has no socket to hand blobs over",
            )));
        }
        Ok(())
    }

    /// Whether this connection can hand memory files over (it has a
    /// socket to pass them on).
    pub(crate) fn passes_blobs(&self) -> bool {
        self.link.is_some()
    }

    /// Whether a message of `len` bytes goes as a blob.
    pub(crate) fn goes_as_blob(&self, len: usize) -> bool {
        self.blob_threshold.is_some_and(|t| len > t)
    }

    /// The slot a message of `len` bytes goes in: a free one that fits,
    /// or a new one while the pool is under [`POOL_LIMIT`] and
    /// [`MAX_SLOTS`]; `None` if neither (the message then goes through the
    /// ring, or as a blob of its own when no slot could ever hold it).
    pub(crate) fn pick_slot(&mut self, len: usize) -> Result<Option<usize>, SendError> {
        if len > POOL_LIMIT {
            return Ok(None);
        }
        let free = self
            .blobs
            .pool
            .iter()
            .enumerate()
            .filter(|(_, s)| s.capacity() >= len && s.is_free())
            .min_by_key(|(_, s)| s.capacity())
            .map(|(i, _)| i);
        if free.is_some() {
            return Ok(free);
        }
        let held: usize = self.blobs.pool.iter().map(Slot::capacity).sum();
        if held + len.next_power_of_two() > POOL_LIMIT || self.blobs.pool.len() >= MAX_SLOTS {
            return Ok(None);
        }
        let id = u32::try_from(self.blobs.pool.len()).unwrap_or(u32::MAX);
        self.blobs.pool.push(Slot::create(id, len)?);
        Ok(Some(self.blobs.pool.len() - 1))
    }

    /// Copies `frame` into slot `index` and publishes it, if the ring and
    /// the socket have room now. A slot's descriptor goes with its first
    /// message, before the record.
    pub(crate) fn try_write_slot(
        &mut self,
        index: usize,
        frame: &[u8],
    ) -> Result<Option<()>, Fail> {
        let Some(reservation) = self.tx.try_reserve(16).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let link = self.link.as_ref().ok_or(Fail::Gone)?;
        let slot = &mut self.blobs.pool[index];
        if !slot.passed {
            match handoff::send_fd(link.as_fd(), b"S", slot.fd()) {
                Ok(()) => slot.passed = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(_) => return Err(Fail::Gone),
            }
        }
        slot.fill(frame);
        let record = blob::slot_record(slot.id, frame.len() as u64);
        self.tx.payload_mut(&reservation).copy_from_slice(&record);
        if self.tx.commit(reservation, kind::SLOT) {
            self.wake_consumer();
        }
        Ok(Some(()))
    }

    /// The message a `SLOT` record announces: in a slot this side maps
    /// already, or in a new one whose descriptor is next on the socket.
    pub(super) fn take_slot(&mut self, payload: &[u8]) -> Result<Bytes, Fail> {
        let (id, len) = blob::parse_slot_record(payload).map_err(Fail::Corrupt)?;
        let max = self.config.max_message_size;
        if !self.blobs.peer_slots.knows(id) {
            let fd = self.recv_memory(b'S')?;
            self.blobs
                .peer_slots
                .add(id, fd, max)
                .map_err(Fail::Corrupt)?;
        }
        if len > max as u64 {
            return Err(Fail::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            });
        }
        self.blobs
            .peer_slots
            .message(id, len)
            .map_err(Fail::Corrupt)
    }

    /// The next descriptor on the socket, sent with `marker`.
    pub(super) fn recv_memory(&mut self, marker: u8) -> Result<OwnedFd, Fail> {
        let corrupt = |what: String| Fail::Corrupt(format!("blob: {what}"));
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| corrupt("a blob on a connection without a socket".into()))?;
        let mut got = [0u8; 1];
        match handoff::recv_fd(link.as_fd(), &mut got) {
            Ok((1, Some(fd))) if got[0] == marker => Ok(fd),
            Ok(_) => Err(corrupt("the record came without its memory".into())),
            // The sender passes the memory before it publishes the record.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(corrupt("the record came without its memory".into()))
            }
            Err(e) => Err(corrupt(format!("receiving its memory: {e}"))),
        }
    }

    /// Hands over `blob` if the ring, the socket and the in-flight budget
    /// have room now. The descriptor goes first, then the record: by the
    /// time the peer sees the record, the descriptor is in its socket.
    pub(crate) fn try_write_blob(&mut self, blob: &SealedBlob) -> Result<Option<()>, Fail> {
        let tail = self.tx.refresh_tail().map_err(|c| self.corrupt(c))?;
        while let Some(&(end, bytes)) = self.blobs.in_flight.front()
            && end <= tail
        {
            self.blobs.in_flight.pop_front();
            self.blobs.bytes_in_flight -= bytes;
        }
        let budget = 2 * self.config.max_message_size as u64;
        if self.blobs.bytes_in_flight > 0 && self.blobs.bytes_in_flight + blob.len > budget {
            return Ok(None);
        }
        let Some(reservation) = self.tx.try_reserve(8).map_err(|c| self.corrupt(c))? else {
            return Ok(None);
        };
        let link = self.link.as_ref().ok_or(Fail::Gone)?;
        match handoff::send_fd(link.as_fd(), b"B", blob.fd.as_fd()) {
            Ok(()) => {}
            // The peer's socket is full: it drains as the peer takes
            // records, as the ring does.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(_) => return Err(Fail::Gone),
        }
        self.tx
            .payload_mut(&reservation)
            .copy_from_slice(&blob.len.to_le_bytes());
        if self.tx.commit(reservation, kind::BLOB) {
            self.wake_consumer();
        }
        self.blobs.in_flight.push_back((self.tx.head(), blob.len));
        self.blobs.bytes_in_flight += blob.len;
        Ok(Some(()))
    }

    /// The blob a `BLOB` record of `payload` announces, from the socket.
    pub(super) fn take_blob(&mut self, payload: &[u8]) -> Result<Bytes, Fail> {
        let len = blob::record_len(payload).map_err(Fail::Corrupt)?;
        let fd = self.recv_memory(b'B')?;
        let max = self.config.max_message_size;
        if len > max as u64 {
            // Dropped with its record and descriptor; the next message follows.
            return Err(Fail::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            });
        }
        blob::open_received(fd, len, &self.blobs.unwritten).map_err(Fail::Corrupt)
    }
}
