//! The non-blocking core: each step tries once and says whether it
//! could (writing a record, taking a message, pushing a held-back rest),
//! and the checks and wake-ups around them. Both drivers run these.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ipc_core::{RecvError, SendError};
use ipc_sys::process::PeerWatch;

use super::{Assembly, Dir, Fail, InPlace, RecvView, SendSlot, ShmConnection, Wait};
use crate::bell::Bell;
use crate::ring::{Corrupt, Record, Reservation, kind};
use crate::segment::Segment;
use crate::wait::SpinBudget;

impl ShmConnection {
    /// Space for `len` bytes if there is room now (the async `reserve`);
    /// `Fail::WouldBlock` when the ring is full.
    #[cfg(feature = "tokio")]
    pub(crate) fn reservation_now(&mut self, len: usize) -> Result<Reservation, Fail> {
        self.check_sendable().map_err(|e| match e {
            SendError::Corrupted(m) => Fail::Corrupt(m),
            _ => Fail::Gone,
        })?;
        let max = self.config.max_message_size.min(self.max_record());
        if len > max {
            return Err(Fail::TooLarge { len, max });
        }
        self.flush_pending(&mut Wait::Never)?;
        self.wait_until(Dir::Space, &mut Wait::Never, |c| {
            c.tx.try_reserve(len).map_err(|e| c.corrupt(e))
        })
    }

    /// The slot for a reservation from [`reservation_now`](Self::reservation_now).
    pub(crate) fn slot(&mut self, reservation: Reservation) -> SendSlot<'_> {
        SendSlot {
            conn: self,
            reservation,
        }
    }

    /// The next message for an in-place receive if one is there now (the
    /// async `recv_in_place`); `RecvError::Empty` when there is none.
    #[cfg(feature = "tokio")]
    pub(crate) fn in_place_now(&mut self) -> Result<InPlace, RecvError> {
        self.check_receivable()?;
        match self.wait_until(Dir::Data, &mut Wait::Never, |c| c.try_peek_in_place()) {
            Ok(found) => Ok(found),
            Err(Fail::Gone) if self.assembly.take().is_some() => Err(RecvError::Corrupted(
                "peer went away inside a chunked message".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The view of a message from [`in_place_now`](Self::in_place_now).
    pub(crate) fn view(&mut self, found: InPlace) -> RecvView<'_> {
        match found {
            InPlace::Record(record) => RecvView {
                conn: self,
                record: Some(record),
                owned: None,
            },
            InPlace::Owned(bytes) => RecvView {
                conn: self,
                record: None,
                owned: Some(bytes),
            },
        }
    }

    /// Whether a send may start; backs the send ring first if it is not.
    pub(super) fn check_sendable(&mut self) -> Result<(), SendError> {
        if let Some(m) = &self.broken {
            return Err(SendError::Corrupted(m.clone()));
        }
        if self.gone || self.seg.other_closed() {
            self.gone = true;
            return Err(SendError::Disconnected);
        }
        if !self.tx_populated {
            self.seg.populate_ring(self.tx_ring);
            self.tx_populated = true;
        }
        Ok(())
    }

    /// Maps the receive ring here once its first record arrives (the
    /// producer backed it when it first sent).
    pub(super) fn note_received(&mut self) {
        if !self.rx_populated {
            self.seg.populate_ring(self.rx_ring);
            self.rx_populated = true;
        }
    }

    pub(super) fn check_receivable(&self) -> Result<(), RecvError> {
        match &self.broken {
            Some(m) => Err(RecvError::Corrupted(m.clone())),
            None => Ok(()),
        }
    }

    pub(super) fn corrupt(&mut self, c: Corrupt) -> Fail {
        self.broken = Some(c.0.clone());
        Fail::Corrupt(c.0)
    }

    /// Rings the peer's consumer (the ring said it parks).
    pub(crate) fn wake_consumer(&self) {
        self.bells[self.tx_ring].ring();
    }

    /// Rings the peer's producer (the ring said it parks).
    pub(crate) fn wake_producer(&self) {
        self.bells[self.rx_ring].ring();
    }

    /// Marks this side closed and wakes the peer wherever it parks (the
    /// write half of a split connection does this when it drops; the rest
    /// when the connection drops and its doorbells close).
    pub(crate) fn close(&self) {
        self.seg.close();
        for bell in self.bells.iter() {
            bell.ring();
        }
    }

    /// True once the peer is known to have gone: closed cleanly (a flag in
    /// the segment, always read), its end of a doorbell closed (seen by
    /// the last drain), or died (when `check_process`: the data doorbell
    /// drained and the pidfd polled).
    pub(crate) fn peer_gone(&mut self, check_process: bool) -> bool {
        if !self.gone {
            if check_process {
                self.bells[self.rx_ring].drain();
            }
            self.gone = self.seg.other_closed()
                || self.bells.iter().any(Bell::hung_up)
                || (check_process && !self.peer.is_alive());
        }
        self.gone
    }

    /// Writes one record if it fits now.
    pub(super) fn try_write(&mut self, kind: u32, parts: &[&[u8]]) -> Result<Option<()>, Fail> {
        match self.tx.try_write(kind, parts) {
            Ok(Some(wake)) => {
                if wake {
                    self.wake_consumer();
                }
                Ok(Some(()))
            }
            Ok(None) => Ok(None),
            Err(c) => Err(self.corrupt(c)),
        }
    }

    /// Writes the next chunk of a message's remainder `rest`; returns the
    /// bytes of `rest` it took.
    pub(super) fn try_write_continuation(&mut self, rest: &[u8]) -> Result<Option<usize>, Fail> {
        let max = crate::ring::chunk_payload(self.seg.capacity());
        let (kind, n) = if rest.len() <= max {
            (kind::LAST, rest.len())
        } else {
            (kind::MORE, max)
        };
        Ok(self.try_write(kind, &[&rest[..n]])?.map(|()| n))
    }

    pub(super) fn try_push_pending(&mut self) -> Result<Option<usize>, Fail> {
        let rest = std::mem::take(&mut self.pending);
        let result = self.try_write_continuation(&rest);
        self.pending = rest;
        result
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Nothing to receive yet and the peer still open: a data wait may
    /// park.
    pub(crate) fn data_absent(&self) -> bool {
        !self.rx.has_record() && !self.seg.other_closed()
    }

    /// The consumer has freed nothing since the tail `seen` and the peer
    /// is still open: a space wait may park.
    pub(crate) fn space_unchanged(&self, seen: u64) -> bool {
        self.tx.observed_tail() == seen && !self.seg.other_closed()
    }

    /// Takes the next complete message out of the ring, if there is one.
    pub(super) fn try_take(&mut self) -> Result<Option<Bytes>, Fail> {
        if !self.pending.is_empty()
            && let Ok(Some(n)) = self.try_push_pending()
        {
            self.pending.drain(..n);
        }
        loop {
            let record = match self.rx.peek() {
                Ok(Some(record)) => {
                    self.note_received();
                    record
                }
                Ok(None) => {
                    if self.rx.take_wake() {
                        self.wake_producer();
                    }
                    return Ok(None);
                }
                Err(c) => return Err(self.corrupt(c)),
            };
            let outcome = self.take_record(&record);
            if self.rx.release(record) {
                self.wake_producer();
            }
            match outcome {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(Fail::Corrupt(m)) => return Err(self.corrupt(Corrupt(m))),
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies one record to the message being assembled.
    pub(super) fn take_record(&mut self, record: &Record) -> Result<Option<Bytes>, Fail> {
        let payload = self.rx.payload(record);
        let corrupt = |what: &str| Err(Fail::Corrupt(format!("chunked message: {what}")));
        match (record.kind, self.assembly.take()) {
            (kind::BLOB, None) => {
                let payload = payload.to_vec();
                self.take_blob(&payload).map(Some)
            }
            (kind::SLOT, None) => {
                let payload = payload.to_vec();
                self.take_slot(&payload).map(Some)
            }
            (kind::WHOLE, None) => {
                let max = self.config.max_message_size;
                if payload.len() > max {
                    // Dropped with its record; the next message follows.
                    return Err(Fail::TooLarge {
                        len: payload.len(),
                        max,
                    });
                }
                Ok(Some(Bytes::copy_from_slice(payload)))
            }
            (kind::FIRST, None) => {
                let Some((total, chunk)) = payload.split_first_chunk::<8>() else {
                    return corrupt("first chunk too short");
                };
                let total = u64::from_le_bytes(*total);
                if total <= self.tx.max_record() as u64 || chunk.len() as u64 >= total {
                    return corrupt("length does not need chunking");
                }
                let max = self.config.max_message_size;
                if total > max as u64 {
                    self.assembly = Some(Assembly::Skipping);
                    return Err(Fail::TooLarge {
                        len: usize::try_from(total).unwrap_or(usize::MAX),
                        max,
                    });
                }
                let mut buf = BytesMut::with_capacity(total as usize);
                buf.extend_from_slice(chunk);
                self.assembly = Some(Assembly::Building {
                    buf,
                    total: total as usize,
                });
                Ok(None)
            }
            (kind::MORE | kind::LAST, Some(Assembly::Skipping)) => {
                if record.kind == kind::MORE {
                    self.assembly = Some(Assembly::Skipping);
                }
                Ok(None)
            }
            (kind::MORE | kind::LAST, Some(Assembly::Building { mut buf, total })) => {
                if buf.len() + payload.len() > total {
                    return corrupt("chunks exceed the announced length");
                }
                buf.extend_from_slice(payload);
                match (record.kind == kind::LAST, buf.len() == total) {
                    (true, true) => Ok(Some(buf.freeze())),
                    (false, false) => {
                        self.assembly = Some(Assembly::Building { buf, total });
                        Ok(None)
                    }
                    _ => corrupt("last chunk does not end the message"),
                }
            }
            (kind, Some(_)) => corrupt(&format!("record kind {kind} inside a chunked message")),
            (_, None) => corrupt("continuation without a first chunk"),
        }
    }

    pub(super) fn try_peek_in_place(&mut self) -> Result<Option<InPlace>, Fail> {
        if self.assembly.is_none() && self.pending.is_empty() {
            match self.rx.peek() {
                Ok(Some(record)) if record.kind == kind::WHOLE => {
                    self.note_received();
                    return Ok(Some(InPlace::Record(record)));
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    if self.rx.take_wake() {
                        self.wake_producer();
                    }
                    return Ok(None);
                }
                Err(c) => return Err(self.corrupt(c)),
            }
        }
        Ok(self.try_take()?.map(InPlace::Owned))
    }

    /// What a driver that waits outside the connection (the tokio
    /// reactor) needs to wait on `dir`: the index of its ring, whose
    /// doorbell end rings for it.
    pub(crate) fn ring_of(&self, dir: Dir) -> usize {
        match dir {
            Dir::Data => self.rx_ring,
            Dir::Space => self.tx_ring,
        }
    }

    /// The doorbells (one end per ring), the segment and the peer, shared
    /// with a driver's waits.
    pub(crate) fn wait_handles(&self) -> (Arc<[Bell; 2]>, Arc<Segment>, Arc<PeerWatch>) {
        (
            Arc::clone(&self.bells),
            Arc::clone(&self.seg),
            Arc::clone(&self.peer),
        )
    }

    /// The spin budget learned for waits on `dir`.
    pub(crate) fn spin_budget(&mut self, dir: Dir) -> &mut SpinBudget {
        &mut self.spin[dir as usize]
    }

    /// The consumer's tail the producer saw last (a space wait parks while
    /// it stays).
    pub(crate) fn seen_tail(&self) -> u64 {
        self.tx.seen_tail()
    }

    /// The peer's process is gone (a driver saw its pidfd turn readable).
    pub(crate) fn mark_gone(&mut self) {
        self.gone = true;
    }
}
