//! The hub's and agent's settings.

use std::time::Duration;

/// Settings of a [`Hub`](crate::Hub) or an [`Agent`](crate::Agent).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// Frames queued per peer before sends to it report
    /// [`Full`](crate::SendToError::Full): what bounds the memory one slow
    /// or hung peer can hold. Default 64.
    pub queue_len: usize,
    /// How long a sender waits for room in a peer's queue
    /// ([`send_to`](crate::HubHandle::send_to), replies, the agent's sends).
    /// [`broadcast`](crate::HubHandle::broadcast) never waits. Default 1 s.
    pub send_timeout: Duration,
    /// How long a new connection has to complete the handshake (and an
    /// agent waits for the hub's welcome). Default 5 s.
    pub handshake_timeout: Duration,
    /// Handshakes under way at once. The hub never stops accepting; beyond
    /// this many, the oldest handshake of the process that has the most
    /// under way (if it has more than one) is dropped, so a flood of silent
    /// connections neither exhausts file descriptors nor keeps another
    /// process's agent out. A burst of agents of a process each may grow
    /// the table to `ipc_core::admission::SPREAD` (16) times this before
    /// the oldest of all is dropped. Default 64.
    pub max_handshakes: usize,
    /// Events buffered for [`next`](crate::Hub::next). When it is full, a
    /// peer's messages, calls and logs wait in that peer's backlog (see
    /// `peer_backlog_bytes`) and its reader goes on reading: replies,
    /// failures and goodbyes never wait behind unread events. Default 1024.
    pub event_queue: usize,
    /// Bytes of one peer's messages, calls and logs that may wait unread
    /// (each counts its length plus 64 bytes); beyond it that peer's
    /// reader stops reading it (its transport pushes back), so one peer
    /// cannot fill the hub's memory with frames nobody reads. A reply
    /// waits only behind more than this of its own peer's unread frames.
    /// Default 16 MiB.
    pub peer_backlog_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            queue_len: 64,
            send_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
            event_queue: 1024,
            peer_backlog_bytes: 16 << 20,
        }
    }
}

/// Largest queue length, event queue or handshake count accepted.
pub const MAX_COUNT: usize = 1 << 20;

/// Largest per-peer backlog accepted (a semaphore's permits are `u32`).
pub const MAX_BACKLOG: usize = u32::MAX as usize;

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HubConfig::{field} must be between 1 and {max}")]
pub struct HubConfigError {
    /// The setting.
    pub field: &'static str,
    /// Its largest value.
    pub max: usize,
}

impl HubConfig {
    /// Sets [`HubConfig::queue_len`].
    pub fn with_queue_len(mut self, frames: usize) -> Self {
        self.queue_len = frames;
        self
    }
    /// Sets [`HubConfig::send_timeout`].
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }
    /// Sets [`HubConfig::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
    /// Sets [`HubConfig::max_handshakes`].
    pub fn with_max_handshakes(mut self, n: usize) -> Self {
        self.max_handshakes = n;
        self
    }
    /// Sets [`HubConfig::event_queue`].
    pub fn with_event_queue(mut self, events: usize) -> Self {
        self.event_queue = events;
        self
    }

    /// Sets [`HubConfig::peer_backlog_bytes`].
    pub fn with_peer_backlog_bytes(mut self, bytes: usize) -> Self {
        self.peer_backlog_bytes = bytes;
        self
    }

    /// Checks every count is between 1 and [`MAX_COUNT`], and the backlog
    /// between 1 byte and [`MAX_BACKLOG`].
    pub fn validate(&self) -> Result<(), HubConfigError> {
        for (field, value) in [
            ("queue_len", self.queue_len),
            ("max_handshakes", self.max_handshakes),
            ("event_queue", self.event_queue),
        ] {
            if value == 0 || value > MAX_COUNT {
                return Err(HubConfigError {
                    field,
                    max: MAX_COUNT,
                });
            }
        }
        if self.peer_backlog_bytes == 0 || self.peer_backlog_bytes > MAX_BACKLOG {
            return Err(HubConfigError {
                field: "peer_backlog_bytes",
                max: MAX_BACKLOG,
            });
        }
        Ok(())
    }
}
