//! Runs a [`Plan`]: the blocks of cells its groups' scenarios build, each
//! block repeated for every trial with its cells interleaved (A B C,
//! A B C, ...), so that host drift hits every variant of a block alike;
//! and each bare mechanism sits in the block of the transports compared
//! with it, next to them, so that per-trial ratios pair measurements
//! taken moments apart. Progress is reported after each cell; a failing
//! cell is recorded in [`RunResults::failures`] and the run goes on.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::error::Result;
use crate::plan::{Group, Plan};
use crate::scenarios;
use crate::schema::{Failure, RunResults, SCHEMA_VERSION};
use crate::transport::Transport;

/// Where a run is, after a cell.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Cells run, including this one.
    pub done: usize,
    /// Cells in the run (every trial of every block).
    pub total: usize,
    /// The group of the cell.
    pub group: Group,
    /// What the cell measured.
    pub label: &'a str,
    /// Its trial (from 1) and the number of trials.
    pub trial: (u32, u32),
    /// Whether it failed (and why).
    pub error: Option<&'a str>,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Estimated time left, from the pace so far.
    pub remaining: Duration,
}

impl std::fmt::Display for Progress<'_> {
    /// One line: `[  12/300] latency  shm 64 B back-to-back  trial 2/5 ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{:>4}/{}] {:<13} {:<50} trial {}/{} {:>4.0}s elapsed, ~{:.0}s left",
            self.done,
            self.total,
            self.group.name(),
            self.label,
            self.trial.0,
            self.trial.1,
            self.elapsed.as_secs_f64(),
            self.remaining.as_secs_f64(),
        )?;
        match self.error {
            Some(e) => write!(f, "  FAILED: {e}"),
            None => Ok(()),
        }
    }
}

/// The blocks of every group of `plan`, in the plan's order.
fn plan_blocks(plan: &Plan) -> Vec<Block> {
    plan.groups
        .iter()
        .flat_map(|&group| scenarios::of(group).blocks(plan))
        .collect()
}

/// Holds the run's veth namespace (see [`crate::transport::veth`]).
struct VethGuard(bool);

impl VethGuard {
    fn start(plan: &Plan) -> Self {
        let wanted = plan.transports.contains(&Transport::Zenoh)
            && (plan.groups.contains(&Group::Latency) || plan.groups.contains(&Group::Throughput));
        if !wanted {
            return VethGuard(false);
        }
        match crate::transport::veth::start() {
            Ok(()) => VethGuard(true),
            Err(why) => {
                eprintln!("zenoh-veth not measured: {why}");
                VethGuard(false)
            }
        }
    }
}

impl Drop for VethGuard {
    fn drop(&mut self) {
        if self.0 {
            crate::transport::veth::stop();
        }
    }
}

/// What a block holds, for a driver that runs cells one at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// Its group.
    pub group: Group,
    /// Its cells' labels, in the order they interleave.
    pub cells: Vec<String>,
    /// Their relative costs (for estimates of time left).
    pub weights: Vec<f64>,
}

/// A run taken one cell at a time: [`run`] steps through every trial of
/// every block; a driver (`ipc-bench --serve`, which `cargo xtask bench`
/// uses to interleave two builds cell by cell, and to add trials where a
/// figure is still too noisy) chooses the order itself.
pub struct Session {
    blocks: Vec<Block>,
    results: RunResults,
    start: Instant,
    // The namespace `zenoh-veth` is measured through, if one can be made;
    // removed when the session ends, however it ends.
    _veth: VethGuard,
}

impl Session {
    /// Validates `plan` and prepares its blocks (nothing is measured yet).
    pub fn new(plan: &Plan) -> Result<Self> {
        plan.validate()?;
        let results = RunResults {
            schema_version: SCHEMA_VERSION,
            plan: plan.clone(),
            ..RunResults::default()
        };
        let veth = VethGuard::start(plan);
        let blocks = plan_blocks(plan);
        crate::handicap::set(plan.handicap.clone());
        Ok(Session {
            blocks,
            results,
            start: Instant::now(),
            _veth: veth,
        })
    }

    /// The blocks and their cells.
    pub fn schedule(&self) -> Vec<BlockInfo> {
        self.blocks
            .iter()
            .map(|b| BlockInfo {
                group: b.group,
                cells: b.cells.iter().map(|c| c.label.clone()).collect(),
                weights: b.cells.iter().map(|c| c.weight).collect(),
            })
            .collect()
    }

    /// Runs one trial of one cell. `Ok(Some(why))` if the cell failed (it
    /// is recorded in the results' failures and the run goes on); `Err` if
    /// there is no such cell.
    pub fn run_cell(&mut self, block: usize, cell: usize, trial: u32) -> Result<Option<String>> {
        let b = self.blocks.get(block).ok_or_else(|| {
            crate::HarnessError::Invalid(format!("no block {block} in this plan"))
        })?;
        let c = b.cells.get(cell).ok_or_else(|| {
            crate::HarnessError::Invalid(format!("no cell {cell} in block {block}"))
        })?;
        let error = (c.action)(&mut self.results, trial)
            .err()
            .map(|e| e.to_string());
        if let Some(e) = &error {
            self.results.failures.push(Failure {
                group: b.group.name().into(),
                scenario: c.label.clone(),
                trial,
                error: e.clone(),
            });
        }
        Ok(error)
    }

    /// The figures of what has run so far.
    pub fn figures(&self) -> Vec<crate::Figure> {
        crate::figures::figures(&self.results)
    }

    /// The results, with their figures.
    pub fn finish(mut self) -> RunResults {
        self.results.figures = crate::figures::figures(&self.results);
        self.results.duration_s = self.start.elapsed().as_secs_f64();
        self.results
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("blocks", &self.blocks.len())
            .field("elapsed", &self.start.elapsed())
            .finish_non_exhaustive()
    }
}

/// Runs `plan`, calling `on_step` after every cell.
pub fn run(plan: &Plan, mut on_step: impl FnMut(&Progress<'_>)) -> Result<RunResults> {
    let mut session = Session::new(plan)?;
    let schedule = session.schedule();
    let trials = plan.trials;
    let total: usize = schedule.iter().map(|b| b.cells.len()).sum::<usize>() * trials as usize;
    let total_weight: f64 =
        schedule.iter().flat_map(|b| &b.weights).sum::<f64>() * f64::from(trials);
    let mut done_weight = 0.0;
    let mut done = 0;
    let start = Instant::now();
    for (b, block) in schedule.iter().enumerate() {
        for trial in 0..trials {
            for (c, label) in block.cells.iter().enumerate() {
                let error = session.run_cell(b, c, trial)?;
                done += 1;
                done_weight += block.weights[c];
                let elapsed = start.elapsed();
                let pace = elapsed.as_secs_f64() / done_weight;
                on_step(&Progress {
                    done,
                    total,
                    group: block.group,
                    label,
                    trial: (trial + 1, trials),
                    error: error.as_deref(),
                    elapsed,
                    remaining: Duration::from_secs_f64(
                        pace * (total_weight - done_weight).max(0.0),
                    ),
                });
            }
        }
    }
    Ok(session.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_interleave_transports_with_their_mechanisms() {
        let plan = Plan::quick();
        let blocks = plan_blocks(&plan);
        let first = blocks
            .iter()
            .find(|b| b.cells.iter().any(|c| c.label == "pipe 64 B back-to-back"))
            .expect("a 64 B round-trip block");
        let labels: Vec<&str> = first.cells.iter().map(|c| c.label.as_str()).collect();
        // The pipe mechanism right before pipe, socketpair before uds,
        // the shared buffer before shm, all at the same size.
        let at = |l: &str| labels.iter().position(|x| *x == l).unwrap();
        assert_eq!(at("pipe 64 B back-to-back"), at("pipe round trip 64 B") + 1);
        assert_eq!(
            at("uds 64 B back-to-back"),
            at("socketpair round trip 64 B") + 1
        );
        assert_eq!(
            at("shm 64 B back-to-back"),
            at("shared-buffer round trip 64 B") + 1
        );
        // The parked regime has its mechanism in its block.
        assert!(blocks.iter().any(|b| {
            b.cells
                .iter()
                .any(|c| c.label == "futex round trip 64 B parked")
                && b.cells.iter().any(|c| c.label == "shm 64 B parked")
        }));
        // Bulk throughput sits beside the cross-process copy baseline.
        assert!(blocks.iter().any(|b| {
            b.cells
                .iter()
                .any(|c| c.label.starts_with("shared-buffer copy stream 1048576 B"))
                && b.cells.iter().any(|c| c.label.starts_with("shm 1048576 B"))
        }));
    }
}
