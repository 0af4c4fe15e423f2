//! The one configuration type every transport reads.

use std::time::Duration;

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
    #[default]
    Adaptive,
}

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

    /// Checks the values are usable; transports call this before opening.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(format!(
                "max_message_size {} exceeds the limit of {MAX_MESSAGE_SIZE_LIMIT}",
                self.max_message_size
            ));
        }
        if self.buffer_size == Some(0) {
            return Err("buffer_size must not be zero".into());
        }
        Ok(())
    }
}
