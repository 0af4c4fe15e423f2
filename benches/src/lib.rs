//! Shared bits of the divan bench targets (see `README.md`).
#![forbid(unsafe_code)]

use harness::{Transport, Variant};

/// Message sizes of the latency and throughput benches.
pub const SIZES: [usize; 6] = [64, 256, 512, 1024, 4096, 1 << 20];

/// The transports by name, as divan arguments.
pub const TRANSPORTS: [&str; 3] = ["pipe", "uds", "shm"];

/// The default variant of a transport named in [`TRANSPORTS`].
pub fn variant(name: &str) -> Variant {
    Variant::of(
        name.parse::<Transport>()
            .expect("a transport from TRANSPORTS"),
    )
}

/// Runs divan, unless this process was started as a scenario's agent.
pub fn main() {
    harness::agent_main_if_requested();
    divan::main();
}
