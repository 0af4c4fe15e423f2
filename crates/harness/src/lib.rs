#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod agent;
mod block;
pub mod compare;
pub mod dimension;
pub mod drive;
pub mod error;
pub mod figure;
pub mod figures;
mod gather;
pub mod handicap;
pub mod idle_agent;
pub mod pin;
pub mod plan;
pub mod procfs;
pub mod runner;
pub mod scenarios;
pub mod schema;
pub mod serve;
pub mod stats;
pub mod task;
pub mod transport;
pub mod variant;

pub use error::HarnessError;
pub use figure::{Figure, FigureId, Statistic, Subject};
pub use plan::{Group, Plan};
pub use schema::{Regime, RunResults, SCHEMA_VERSION};
pub use variant::{Strategy, Transport, Variant};

/// Call first thing in `main` of any binary that runs scenarios: when this
/// process was started as a scenario's agent, it plays that part and exits;
/// otherwise it returns at once.
pub fn agent_main_if_requested() {
    agent::main_if_requested();
}
