//! The resources group's section: idle agents and connection churn.

use std::fmt::Write;

use harness::{Regime, Statistic};

use crate::report::Index;
use crate::report::format::{cell_interval, table, with_interval};

pub(crate) fn section_resources(out: &mut String, ix: &Index<'_>) {
    let idle: Vec<Vec<String>> = ix
        .all(|id| id.regime == Regime::Idle && id.statistic == Statistic::CpuPercent)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                with_interval(f),
                cell_interval(ix.stat(f.id, Statistic::Rss)),
                ix.stat(f.id, Statistic::SharedMemory)
                    .map_or("-".into(), with_interval),
            ]
        })
        .collect();
    let churn: Vec<Vec<String>> = ix
        .all(|id| id.regime == Regime::Churn)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                ix.r.plan.churn_cycles.to_string(),
                with_interval(f),
            ]
        })
        .collect();
    if idle.is_empty() && churn.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Resources\n");
    table(
        out,
        &[
            "transport",
            "idle agents",
            "agents' CPU (all together) [interval]",
            "largest agent RSS [interval]",
            "shared memory per agent [interval]",
        ],
        &idle,
    );
    // Which program the idle agents were: their memory is its memory.
    let mut programs: Vec<String> =
        ix.r.idle
            .iter()
            .map(|i| format!("`{}` ({})", i.agent_program, i.variant.label()))
            .collect();
    programs.sort();
    programs.dedup();
    if !programs.is_empty() {
        let _ = writeln!(
            out,
            "Idle agents were played by {} (`ipc-idle-<transport>` links only its transport, as a user's agent does; `ipc-bench` is the runner, every scenario linked in).\n",
            programs.join(", ")
        );
    }
    table(
        out,
        &[
            "transport",
            "connect/disconnect cycles",
            "RSS growth after warm-up [interval]",
        ],
        &churn,
    );
}
