//! The scenarios, one module per group. Each is a plain function over a
//! [`Variant`](crate::Variant) that spawns its agents, measures, verifies
//! every message, and returns figures for the [schema](crate::schema).
//! Where divan benches need the timed operation alone, a scenario also
//! offers a small struct with a `start` and a per-operation method.

pub mod baselines;
mod echoing;
pub mod hub;
pub mod latency;
pub mod logging;
pub mod patterns;
pub mod peers;
pub mod resources;
pub mod scale;
pub mod serialization;
pub mod soak;
pub mod throughput;
