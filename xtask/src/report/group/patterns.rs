//! The patterns group's section: fan-out, pipelines, meshes, broadcast.

use std::fmt::Write;

use harness::{Group, Statistic};

use crate::report::Index;
use crate::report::format::{cell, table, with_interval};

pub(crate) fn section_patterns(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Patterns && id.statistic == Statistic::Rate)
        .into_iter()
        .map(|f| {
            vec![
                f.id.regime.name(),
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                with_interval(f),
                cell(ix.stat(f.id, Statistic::P50)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Patterns\n");
    table(
        out,
        &[
            "pattern",
            "transport",
            "agents",
            "deliveries [interval]",
            "round p50",
        ],
        &rows,
    );
}
