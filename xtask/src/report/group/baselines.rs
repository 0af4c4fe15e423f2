//! The baselines group's section: the bare mechanisms.

use std::fmt::Write;

use harness::{Group, Statistic};

use crate::report::Index;
use crate::report::format::{bytes, cell, table, with_interval};

pub(crate) fn section_baselines(out: &mut String, ix: &Index<'_>) {
    let mechanisms: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Baselines && id.statistic == Statistic::P50)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                bytes(f.id.size.unwrap_or(0) as f64),
                f.id.regime.name(),
                with_interval(f),
                cell(ix.stat(f.id, Statistic::P99)),
                cell(ix.stat(f.id, Statistic::CpuPerOp)),
            ]
        })
        .collect();
    let bandwidth: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Baselines && id.statistic == Statistic::Bandwidth)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                bytes(f.id.size.unwrap_or(0) as f64),
                with_interval(f),
            ]
        })
        .collect();
    let ratios: Vec<Vec<String>> = ix
        .all(|id| id.statistic == Statistic::Ratio)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                f.id.group.name().into(),
                bytes(f.id.size.unwrap_or(0) as f64),
                f.id.regime.name(),
                with_interval(f),
            ]
        })
        .collect();
    if mechanisms.is_empty() && bandwidth.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Baselines and ratios (same run, paired per trial)\n"
    );
    table(
        out,
        &[
            "mechanism",
            "size",
            "regime",
            "p50 round trip [interval]",
            "p99",
            "CPU / round trip",
        ],
        &mechanisms,
    );
    table(
        out,
        &["mechanism", "block size", "bandwidth [interval]"],
        &bandwidth,
    );
    table(
        out,
        &[
            "transport / mechanism (or variant)",
            "figure",
            "size",
            "regime",
            "ratio [interval]",
        ],
        &ratios,
    );
}
