//! What a transport supports, reported up front instead of failing late.
//!
//! Only what the conformance kit checks against behaviour is here (its
//! `capabilities_hold` cases): a claim nobody tests is a claim nobody can
//! rely on. One field is a hint, not a feature: `receive_spins` says how
//! the async receive waits, so a caller can choose how it waits itself. Transport-specific features (zero copy on shared memory, many
//! peers on one listener) show in each transport's types instead.

/// The features of a transport, as [`Capabilities`] reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Largest frame the transport can carry at all (independent of
    /// config); a [`Config::max_message_size`](crate::Config::max_message_size)
    /// above it is refused when connecting.
    pub max_message_size: usize,
    /// Whether async (tokio) connection types exist.
    pub async_io: bool,
    /// How the async receive waits, not a feature: it spins (within a
    /// learned budget) before it parks, so a frame that comes soon is seen
    /// without a kernel wake-up. A task waiting on such a receiver's
    /// result should sleep rather than spin too: on two CPUs, three
    /// spinning threads starve each other (`ipc-hub` reads it).
    pub receive_spins: bool,
}

impl Capabilities {
    /// Capabilities with every optional feature off.
    pub const fn new(max_message_size: usize) -> Self {
        Capabilities {
            max_message_size,
            async_io: false,
            receive_spins: false,
        }
    }
}
