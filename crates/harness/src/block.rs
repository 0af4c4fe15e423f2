//! What a run is made of: *cells* (one scenario with fresh processes, run
//! once per trial) grouped in *blocks* whose trials interleave (A B C,
//! A B C, ...), so that host drift hits every cell of a block alike.
//! Scenarios build them from a plan; the runner steps through them.

use crate::error::Result;
use crate::plan::{Group, Plan};
use crate::schema::RunResults;
use crate::variant::Transport;

/// What a cell does in one trial: measure, and add its records.
pub(crate) type Action = Box<dyn Fn(&mut RunResults, u32) -> Result<()>>;

/// One scenario with fresh processes: run once per trial.
pub(crate) struct Cell {
    /// What it measures, as progress lines and failures name it.
    pub(crate) label: String,
    /// Relative cost, for the time-left estimate.
    pub(crate) weight: f64,
    /// The measurement.
    pub(crate) action: Action,
}

/// Cells whose trials are interleaved with each other.
pub(crate) struct Block {
    /// The group whose figures the cells give.
    pub(crate) group: Group,
    /// In the order they run within a trial.
    pub(crate) cells: Vec<Cell>,
}

/// A cell labelled `label`, of relative cost `weight`.
pub(crate) fn cell(
    label: String,
    weight: f64,
    action: impl Fn(&mut RunResults, u32) -> Result<()> + 'static,
) -> Cell {
    Cell {
        label,
        weight,
        action: Box::new(action),
    }
}

/// One cell per transport of the plan, in the plan's order.
pub(crate) fn per_transport(plan: &Plan, make: impl Fn(Transport) -> Cell) -> Vec<Cell> {
    plan.transports.iter().map(|&t| make(t)).collect()
}

/// `n` bytes as a label: `64 B`, `64 MiB`.
pub(crate) fn bytes_label(n: usize) -> String {
    if n >= 1 << 20 {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} B")
    }
}
