//! One section of the summary per benchmark group.

pub(crate) mod baselines;
pub(crate) mod hub;
pub(crate) mod latency;
pub(crate) mod logging;
pub(crate) mod patterns;
pub(crate) mod peers;
pub(crate) mod resources;
pub(crate) mod scale;
pub(crate) mod serialization;
pub(crate) mod throughput;
