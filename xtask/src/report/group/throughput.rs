//! The throughput group's section: one-way streams by size, and the
//! streams through the async API beside the blocking ones.

use std::fmt::Write;

use harness::figure::FigureId;
use harness::{Figure, Group, Regime, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, cell_interval, table, with_interval};

pub(crate) fn section_throughput(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| {
            id.group == Group::Throughput
                && id.regime == Regime::OneWay
                && id.statistic == Statistic::Rate
        })
        .into_iter()
        .map(|f| {
            let window =
                ix.r.throughput
                    .iter()
                    .filter(|t| {
                        Subject::Transport(t.variant) == f.id.subject
                            && Some(t.size) == f.id.size
                            && t.regime == Regime::OneWay
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
    section_async_streams(out, ix);
}

/// The async streams (smallest and largest size), each beside the
/// blocking stream of its block, with the paired ratios.
fn section_async_streams(out: &mut String, ix: &Index<'_>) {
    let streams = ix.all(|id| {
        id.group == Group::Throughput
            && id.regime == Regime::OneWayAsync
            && id.statistic == Statistic::Rate
    });
    if streams.is_empty() {
        return;
    }
    let at = |f: &Figure, regime| ix.get(FigureId { regime, ..f.id });
    let ratio = |f: &Figure, regime| {
        let Subject::Transport(v) = f.id.subject else {
            return None;
        };
        ix.get(FigureId {
            subject: Subject::Path(v, Regime::OneWay),
            regime,
            statistic: Statistic::Ratio,
            ..f.id
        })
    };
    let rows: Vec<Vec<String>> = streams
        .iter()
        .map(|f| {
            let multi = at(f, Regime::OneWayAsyncMultiThread);
            vec![
                f.id.subject.label(),
                bytes(f.id.size.unwrap_or(0) as f64),
                cell_interval(at(f, Regime::OneWay)),
                with_interval(f),
                cell_interval(multi),
                cell_interval(ratio(f, Regime::OneWayAsync)),
                cell_interval(ratio(f, Regime::OneWayAsyncMultiThread)),
                cell(ix.stat(f.id, Statistic::CpuPerOp)),
                cell(multi.and_then(|m| ix.stat(m.id, Statistic::CpuPerOp))),
            ]
        })
        .collect();
    let _ = writeln!(
        out,
        "Through the async API (messages / s): the parent sends with `send().await` on a \
         current-thread runtime, or from the main future of a multi-thread one; the agent \
         receives with `recv().await` on a current-thread runtime. Pinned as the blocking \
         stream is, so the ratio (paired per trial, higher is better) is the async API's \
         cost, not placement.\n"
    );
    table(
        out,
        &[
            "transport",
            "size",
            "blocking",
            "async",
            "async (multi-thread)",
            "async / blocking",
            "async multi-thread / blocking",
            "CPU / message, async",
            "CPU / message, async multi-thread",
        ],
        &rows,
    );
}
