//! The scenarios, one module per group. Each group's module holds both
//! sides of it behind one `Scenario`: the cells the runner measures
//! (which spawn agents, measure, and verify every message), the figures
//! its records give, and the parts its agents play. `ALL` lists them
//! once; the runner, the figure list and the agent dispatch loop over it.
//!
//! Where divan benches need the timed operation alone, a scenario also
//! offers a small struct with a `start` and a per-operation method.
//!
//! Adding a group: a module here with its `Scenario`, listed in `ALL`;
//! its name in [`Group`]; its records in
//! [`RunResults`]; a section in the report
//! (`xtask/src/report/group/`).

use crate::block::Block;
use crate::error::{HarnessError, Result};
use crate::figure::FigureId;
use crate::gather::{Gather, Pair};
use crate::plan::{Group, Plan};
use crate::schema::RunResults;
use crate::task::AgentTask;

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

/// One benchmark group, both of its sides.
pub(crate) trait Scenario: Sync {
    /// The group it fills.
    fn group(&self) -> Group;

    /// Its blocks for `plan` (the plan includes this group).
    fn blocks(&self, plan: &Plan) -> Vec<Block>;

    /// Its figures, from its records in `r`.
    fn figures(&self, r: &RunResults, g: &mut Gather);

    /// The same-run ratios it reports, among the figures of the whole run
    /// (`ids`): each over the figure measured beside it in the same trial.
    fn ratios(&self, _ids: &[FigureId]) -> Vec<Pair> {
        Vec::new()
    }

    /// Plays `part` (one of this scenario's own agent parts, see
    /// [`Role::Part`](crate::task::Role::Part)) in an agent process.
    fn agent(&self, part: serde_json::Value, _task: &AgentTask) -> Result<()> {
        Err(HarnessError::Invalid(format!(
            "the {} group has no agent part {part}",
            self.group().name()
        )))
    }
}

/// Every group's scenario, in the order of [`Group::ALL`].
pub(crate) const ALL: [&dyn Scenario; 10] = [
    &baselines::Baselines,
    &throughput::Throughput,
    &latency::Latency,
    &hub::HubCalls,
    &peers::Peers,
    &serialization::Serialization,
    &resources::Resources,
    &patterns::Patterns,
    &logging::Logging,
    &scale::Scale,
];

/// The scenario of `group`.
pub(crate) fn of(group: Group) -> &'static dyn Scenario {
    *ALL.iter()
        .find(|s| s.group() == group)
        .expect("every group has a scenario (tested)")
}

/// Decodes an agent part of type `P` from a task.
pub(crate) fn part<P: serde::de::DeserializeOwned>(part: serde_json::Value) -> Result<P> {
    serde_json::from_value(part).map_err(|e| HarnessError::Invalid(format!("bad agent part: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_has_one_scenario_in_its_order() {
        let groups: Vec<Group> = ALL.iter().map(|s| s.group()).collect();
        assert_eq!(groups, Group::ALL.to_vec());
        for g in Group::ALL {
            assert_eq!(of(g).group(), g);
        }
    }
}
