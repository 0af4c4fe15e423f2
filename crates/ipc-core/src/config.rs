//! The one configuration type every transport reads.

use std::time::Duration;

use crate::assembly::{DEFAULT_FRAME_DEADLINE, FrameBudget};

/// What a full send buffer does to a blocking `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Wait for room, up to [`Config::send_timeout`].
    #[default]
    Block,
    /// Return [`SendError::Full`](crate::SendError::Full) at once.
    Fail,
}

/// How a shared-memory endpoint waits for its peer. Socket and pipe
/// transports always sleep in the kernel and ignore this knob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Busy-spin on the shared index: lowest latency, one core per waiter.
    Spin,
    /// Spin briefly, then `sched_yield` in a loop.
    SpinYield,
    /// Park on a futex word in the segment at once, without spinning: no
    /// CPU while waiting, a kernel wake-up per message.
    Blocking,
    /// Spin for a bounded time, then park on a futex word in the segment.
    /// The spin phase is learned per direction: 50 us at first and after
    /// long waits, up to twice the recent waits (at most 250 us) while the
    /// peer answers within that, so a steady exchange of large messages is
    /// not slowed by a kernel wake-up each time; an idle side spins only
    /// the 50 us per wait.
    #[default]
    Adaptive,
}

/// Whose endpoint a connecting side accepts: checked before anything is
/// sent, so an agent is never captured by a name another user squatted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PeerOwner {
    /// The endpoint must belong to this process's effective user.
    #[default]
    SameUser,
    /// The endpoint must belong to this user id.
    Uid(u32),
    /// Any owner (only for endpoints in a directory no one else can write).
    Any,
}

impl PeerOwner {
    /// Checks an endpoint owned by `uid`; the error says who owns it and
    /// who was expected.
    pub fn check(self, uid: u32, what: &dyn std::fmt::Display) -> Result<(), String> {
        let expected = match self {
            PeerOwner::Any => return Ok(()),
            PeerOwner::SameUser => rustix::process::geteuid().as_raw(),
            PeerOwner::Uid(u) => u,
        };
        if uid == expected {
            Ok(())
        } else {
            Err(format!(
                "{what} belongs to uid {uid}, not the expected uid {expected} (Config::peer_owner)"
            ))
        }
    }
}

/// Why a [`Config`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_message_size` above what frame headers can carry.
    #[error("max_message_size {size} exceeds the limit of {limit}")]
    MaxMessageSizeTooLarge {
        /// The value asked for.
        size: usize,
        /// The largest accepted.
        limit: usize,
    },
    /// `buffer_size` of zero.
    #[error("buffer_size must not be zero")]
    ZeroBufferSize,
    /// A value this transport cannot use (a ring size out of range, a
    /// timeout too long to represent).
    #[error("{field}: {why}")]
    OutOfRange {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
}

/// How long connecting waits by default for a listener whose queue is full.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Tuning knobs of a connection. Each transport documents which it honours.
///
/// ```
/// use ipc_core::{Backpressure, Config};
/// use std::time::Duration;
/// let config = Config::default()
///     .with_max_message_size(1 << 20)
///     .with_recv_timeout(Some(Duration::from_secs(5)))
///     .with_backpressure(Backpressure::Fail);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest frame, in bytes, that may be sent or received.
    pub max_message_size: usize,
    /// Buffer (socket buffer, ring) size in bytes; `None` keeps the
    /// transport's default.
    pub buffer_size: Option<usize>,
    /// How long a blocking send waits for room; `None` waits forever.
    pub send_timeout: Option<Duration>,
    /// How long a blocking receive waits for a frame; `None` waits forever.
    pub recv_timeout: Option<Duration>,
    /// What a blocking send does when the buffer is full.
    pub backpressure: Backpressure,
    /// How a shared-memory endpoint waits.
    pub wait_strategy: WaitStrategy,
    /// How long connecting may wait (a listener's full queue); `None`
    /// waits forever. Default: [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Option<Duration>,
    /// Whose endpoint a connecting side accepts (default: its own user).
    pub peer_owner: PeerOwner,
    /// How long a receiver waits, in all, for the rest of a frame whose
    /// first bytes have come (time spent waiting inside receive calls, not
    /// time the application spends elsewhere); beyond it the connection is
    /// `Corrupted` for good and the frame's memory freed. `None`: no
    /// limit. Default [`DEFAULT_FRAME_DEADLINE`]. Stream transports (pipe,
    /// uds) and shared memory's chunked messages honour it.
    pub frame_deadline: Option<Duration>,
    /// The budget the memory of unfinished frames is charged to
    /// ([`FrameBudget`]; default: the process's, shared by every
    /// connection that keeps it).
    pub frame_budget: FrameBudget,
    /// Who may join a listener reached over a network (zenoh). Default
    /// [`NetworkAccess::Keyed`].
    pub network_access: NetworkAccess,
}

/// Who may join a listener that listens on a network port (zenoh), where
/// the operating system vouches for no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NetworkAccess {
    /// Only peers that prove they hold the listener's key: a random key
    /// the listener makes (or the one its address names), carried in the
    /// address it reports, which is what a runtime hands its agents.
    #[default]
    Keyed,
    /// Anyone who can reach the endpoint, of any user on the host (or on
    /// the network, beyond loopback). Only for a closed network or a
    /// transport that authenticates peers itself (TLS with client
    /// certificates).
    Open,
}

/// The default maximum message size: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The largest maximum message size any transport accepts: frame headers
/// carry a 32-bit length.
pub const MAX_MESSAGE_SIZE_LIMIT: usize = u32::MAX as usize;

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            buffer_size: None,
            send_timeout: None,
            recv_timeout: None,
            backpressure: Backpressure::Block,
            wait_strategy: WaitStrategy::Adaptive,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            peer_owner: PeerOwner::SameUser,
            frame_deadline: Some(DEFAULT_FRAME_DEADLINE),
            frame_budget: FrameBudget::process(),
            network_access: NetworkAccess::Keyed,
        }
    }
}

impl Config {
    /// Sets [`Config::max_message_size`].
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }
    /// Sets [`Config::buffer_size`].
    pub fn with_buffer_size(mut self, bytes: Option<usize>) -> Self {
        self.buffer_size = bytes;
        self
    }
    /// Sets [`Config::send_timeout`].
    pub fn with_send_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.send_timeout = timeout;
        self
    }
    /// Sets [`Config::recv_timeout`].
    pub fn with_recv_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.recv_timeout = timeout;
        self
    }
    /// Sets [`Config::backpressure`].
    pub fn with_backpressure(mut self, backpressure: Backpressure) -> Self {
        self.backpressure = backpressure;
        self
    }
    /// Sets [`Config::wait_strategy`].
    pub fn with_wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.wait_strategy = strategy;
        self
    }
    /// Sets [`Config::connect_timeout`].
    pub fn with_connect_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets [`Config::peer_owner`].
    pub fn with_peer_owner(mut self, owner: PeerOwner) -> Self {
        self.peer_owner = owner;
        self
    }

    /// Sets [`Config::frame_deadline`].
    pub fn with_frame_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.frame_deadline = deadline;
        self
    }
    /// Sets [`Config::frame_budget`].
    pub fn with_frame_budget(mut self, budget: FrameBudget) -> Self {
        self.frame_budget = budget;
        self
    }
    /// Sets [`Config::network_access`].
    pub fn with_network_access(mut self, access: NetworkAccess) -> Self {
        self.network_access = access;
        self
    }

    /// Checks the values are usable; transports call this before opening.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::MaxMessageSizeTooLarge {
                size: self.max_message_size,
                limit: MAX_MESSAGE_SIZE_LIMIT,
            });
        }
        if self.buffer_size == Some(0) {
            return Err(ConfigError::ZeroBufferSize);
        }
        Ok(())
    }
}
