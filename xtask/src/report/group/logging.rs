//! The logging group's section: shipped tracing events.

use std::fmt::Write;

use harness::{Group, Statistic};

use crate::report::Index;
use crate::report::format::{cell, table, with_interval};

pub(crate) fn section_logging(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| {
            id.group == Group::Logging && matches!(id.statistic, Statistic::Rate | Statistic::P50)
        })
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                f.id.regime.name(),
                with_interval(f),
                cell(ix.stat(f.id, Statistic::P99)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Event logging (tracing events shipped to a collector)\n"
    );
    table(
        out,
        &["transport", "regime", "rate or p50 [interval]", "p99"],
        &rows,
    );
}
