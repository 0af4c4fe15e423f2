//! What a transport supports, reported up front instead of failing late.

/// The features of a transport, as [`Capabilities`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Largest frame the transport can carry at all (independent of config).
    pub max_message_size: usize,
    /// Whether frames can be written into and read from the transport's
    /// buffer in place.
    pub zero_copy: bool,
    /// Whether async (tokio) connection types exist.
    pub async_io: bool,
    /// Whether one listener accepts many concurrent peers.
    pub many_peers: bool,
    /// Whether `send_batch` coalesces frames into fewer system calls.
    pub batched_send: bool,
}

impl Capabilities {
    /// Capabilities with every optional feature off.
    pub const fn new(max_message_size: usize) -> Self {
        Capabilities {
            max_message_size,
            zero_copy: false,
            async_io: false,
            many_peers: false,
            batched_send: false,
        }
    }
}
