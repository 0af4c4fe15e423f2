//! The throughput group's section: one-way streams by size.

use std::fmt::Write;

use harness::{Group, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, cell_interval, table, with_interval};

pub(crate) fn section_throughput(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Throughput && id.statistic == Statistic::Rate)
        .into_iter()
        .map(|f| {
            let window =
                ix.r.throughput
                    .iter()
                    .filter(|t| {
                        Subject::Transport(t.variant) == f.id.subject && Some(t.size) == f.id.size
                    })
                    .map(|t| (t.messages, t.seconds))
                    .next();
            vec![
                f.id.subject.label(),
                bytes(f.id.size.unwrap_or(0) as f64),
                with_interval(f),
                cell_interval(ix.stat(f.id, Statistic::Bandwidth)),
                cell(ix.stat(f.id, Statistic::CpuPerOp)),
                window.map_or("-".into(), |(n, s)| format!("{n} / {:.0} ms", s * 1e3)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Throughput (one way, every message verified by the receiver)\n"
    );
    table(
        out,
        &[
            "transport",
            "size",
            "messages [interval]",
            "bytes [interval]",
            "CPU / message",
            "messages / window (trial 1)",
        ],
        &rows,
    );
}
