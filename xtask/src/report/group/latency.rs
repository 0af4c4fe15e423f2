//! The latency group's section: round trips per transport, size and regime.

use std::fmt::Write;

use harness::{Group, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, table, with_interval};

pub(crate) fn section_latency(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Latency && id.statistic == Statistic::P50)
        .into_iter()
        .map(|f| {
            let s = |st| cell(ix.stat(f.id, st));
            vec![
                f.id.subject.label(),
                bytes(f.id.size.unwrap_or(0) as f64),
                f.id.regime.name(),
                with_interval(f),
                s(Statistic::P95),
                s(Statistic::P99),
                s(Statistic::P999),
                s(Statistic::Max),
                s(Statistic::CpuPerOp),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Latency (round trip)\n");
    table(
        out,
        &[
            "transport",
            "size",
            "regime",
            "p50 [interval]",
            "p95",
            "p99",
            "p99.9",
            "max",
            "CPU / round trip",
        ],
        &rows,
    );
    let versus: Vec<String> = ix
        .all(|id| id.group == Group::Latency && matches!(id.subject, Subject::Versus(..)))
        .into_iter()
        .map(|f| {
            format!(
                "{} {}",
                bytes(f.id.size.unwrap_or(0) as f64),
                with_interval(f)
            )
        })
        .collect();
    if !versus.is_empty() {
        let _ = writeln!(
            out,
            "The default wait (`shm`, Adaptive) over `shm-spin`, back to back, paired per trial: {}.\n",
            versus.join(", ")
        );
    }
}
