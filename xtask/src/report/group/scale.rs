//! The scale group's section: one hub, many agents.

use std::fmt::Write;

use harness::{Group, Statistic};

use crate::report::Index;
use crate::report::format::{cell, cell_interval, table, with_interval};

/// The scale group: one hub, many agents, by agent count.
pub(crate) fn section_scale(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Scale && id.statistic == Statistic::P50)
        .into_iter()
        .map(|f| {
            let s = |st| ix.stat(f.id, st);
            vec![
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                cell_interval(s(Statistic::Time)),
                with_interval(f),
                cell(s(Statistic::Max)),
                cell(s(Statistic::Threads)),
                cell(s(Statistic::Rss)),
                cell_interval(s(Statistic::CpuPercent)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Scale: one hub, many agents\n\n\
         One `ipc-hub` hub (multi-thread runtime) with N agent processes serving \
         typed calls: the time from spawning the first until the last has joined, \
         a 64 B `call_each` to all of them, the hub process's threads, its \
         resident memory growth per agent, and the CPU of the hub and every agent \
         together while they are connected and idle. Not compared across runs; \
         the idle CPU and the hub's threads at the largest count are targets \
         (`scale_idle_cpu`, `scale_hub_threads`).\n"
    );
    table(
        out,
        &[
            "transport",
            "agents",
            "join [interval]",
            "call_each p50 [interval]",
            "call_each max",
            "hub threads",
            "hub memory / agent",
            "idle CPU, whole system",
        ],
        &rows,
    );
}
