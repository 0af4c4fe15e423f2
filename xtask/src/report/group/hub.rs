//! The hub group's sections: the runtime's path (async and hub calls,
//! paired with the blocking round trip) and what a Python agent costs.

use std::fmt::Write;

use harness::figure::FigureId;
use harness::{Figure, Group, Regime, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, cell_interval, table, with_interval};

/// The hub group: per transport, the blocking round trip (the floor) and
/// the paths a runtime takes, with the paired ratios.
pub(crate) fn section_hub(out: &mut String, ix: &Index<'_>) {
    let blocking = ix.all(|id| {
        id.group == Group::Hub && id.regime == Regime::BackToBack && id.statistic == Statistic::P50
    });
    if blocking.is_empty() {
        return;
    }
    let path = |f: &Figure, regime| ix.get(FigureId { regime, ..f.id });
    let ratio = |f: &Figure, regime, under| {
        let Subject::Transport(v) = f.id.subject else {
            return None;
        };
        ix.get(FigureId {
            subject: Subject::Path(v, under),
            regime,
            statistic: Statistic::Ratio,
            ..f.id
        })
    };
    let rows: Vec<Vec<String>> = blocking
        .iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                with_interval(f),
                cell_interval(path(f, Regime::BackToBackUnpinned)),
                cell_interval(path(f, Regime::Async)),
                cell_interval(path(f, Regime::AsyncMultiThread)),
                cell_interval(path(f, Regime::AsyncPinned)),
                cell_interval(path(f, Regime::HubCall)),
                cell_interval(path(f, Regime::HubCallTask)),
                cell_interval(path(f, Regime::HubCallPinned)),
                cell_interval(ratio(f, Regime::Async, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::Async, Regime::BackToBackUnpinned)),
                cell_interval(ratio(f, Regime::AsyncPinned, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCall, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCallTask, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCallPinned, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCall, Regime::Async)),
                cell_interval(ratio(f, Regime::HubCall, Regime::AsyncMultiThread)),
                cell_interval(ratio(f, Regime::HubCallPinned, Regime::AsyncPinned)),
                cell(path(f, Regime::HubCall).and_then(|c| ix.stat(c.id, Statistic::CpuPerOp))),
                cell_interval(path(f, Regime::HubCallPython)),
                cell_interval(ratio(f, Regime::HubCallPython, Regime::HubCall)),
            ]
        })
        .collect();
    let size = blocking[0].id.size.unwrap_or(0);
    let _ = writeln!(
        out,
        "## The runtime's path: async API and hub calls ({size} B, p50)\n\n\
         Blocking: the transport's pinned round trip (its floor), and unpinned (the \
         floor of the unpinned async figures). Async: both ends on \
         the async API, current-thread runtimes (multi-thread: the parent's runtime), \
         unpinned, and pinned as the blocking round trip (like with like). \
         Hub call: a typed call through `ipc-hub` (hub on a multi-thread runtime, agent \
         serving on a current-thread one), unpinned as a runtime runs, from the runtime's \
         main future (`block_on`, as `#[tokio::main]`) and from a task spawned on it, and \
         pinned. Ratios paired per trial; each hub call is also paired like with like: \
         from `block_on` over the async round trip from `block_on` on a multi-thread \
         runtime (on current-thread runtimes both ends can share one CPU, unpinned), \
         pinned over pinned.\n"
    );
    table(
        out,
        &[
            "transport",
            "blocking",
            "blocking (unpinned)",
            "async",
            "async (multi-thread)",
            "async (pinned)",
            "hub call",
            "hub call (from a task)",
            "hub call (pinned)",
            "async / blocking",
            "async / blocking, both unpinned",
            "async pinned / blocking",
            "hub / blocking",
            "hub task / blocking",
            "hub pinned / blocking",
            "hub / async",
            "hub / async multi-thread",
            "hub pinned / async pinned",
            "CPU / hub call",
            "hub call, Python agent",
            "Python / Rust agent",
        ],
        &rows,
    );
    section_hub_python(out, ix);
    let versus: Vec<String> = ix
        .all(|id| id.group == Group::Hub && matches!(id.subject, Subject::Versus(..)))
        .into_iter()
        .map(|f| {
            format!(
                "{} ({}) {}",
                f.id.subject.label(),
                f.id.regime.name(),
                with_interval(f)
            )
        })
        .collect();
    if !versus.is_empty() {
        let _ = writeln!(
            out,
            "Hub calls over shared memory against Unix sockets, paired per trial: {}.\n",
            versus.join(", ")
        );
    }
}

/// What a Python agent costs: its hub call's p99 beside the Rust
/// agent's, and a large result handed over by each.
pub(crate) fn section_hub_python(out: &mut String, ix: &Index<'_>) {
    let python = ix.all(|id| {
        id.group == Group::Hub
            && id.regime == Regime::HubCallPython
            && id.statistic == Statistic::P50
    });
    let bulk = ix.all(|id| {
        id.group == Group::Hub && id.regime == Regime::BulkReply && id.statistic == Statistic::P50
    });
    if python.is_empty() {
        let _ = writeln!(
            out,
            "No Python agent was measured in this run (`--no-python`, or no `python3` with \
             `venv` to build `ipc_agent` into `target/python-venv`).\n"
        );
    } else {
        let p99 = |f: &Figure, regime| {
            ix.get(FigureId {
                regime,
                statistic: Statistic::P99,
                ..f.id
            })
        };
        let rows: Vec<Vec<String>> = python
            .iter()
            .map(|f| {
                vec![
                    f.id.subject.label(),
                    cell_interval(ix.get(FigureId {
                        regime: Regime::HubCall,
                        ..f.id
                    })),
                    cell_interval(p99(f, Regime::HubCall)),
                    with_interval(f),
                    cell_interval(p99(f, Regime::HubCallPython)),
                    cell_interval(ix.get(FigureId {
                        subject: Subject::Path(
                            match f.id.subject {
                                Subject::Transport(v) => v,
                                _ => return Vec::new(),
                            },
                            Regime::HubCall,
                        ),
                        statistic: Statistic::Ratio,
                        ..f.id
                    })),
                ]
            })
            .filter(|row| !row.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "What Python costs: the same typed hub call answered by a Python agent \
             (`ipc_agent`, MessagePack, a handler returning its request) and by a Rust \
             agent, unpinned, paired per trial.\n"
        );
        table(
            out,
            &[
                "transport",
                "Rust agent p50",
                "Rust agent p99",
                "Python agent p50",
                "Python agent p99",
                "Python / Rust (p50)",
            ],
            &rows,
        );
    }
    for f in bulk {
        let python = ix.get(FigureId {
            regime: Regime::BulkReplyPython,
            ..f.id
        });
        let ratio = match f.id.subject {
            Subject::Transport(v) => ix.get(FigureId {
                subject: Subject::Path(v, Regime::BulkReply),
                regime: Regime::BulkReplyPython,
                statistic: Statistic::Ratio,
                ..f.id
            }),
            _ => None,
        };
        let _ = writeln!(
            out,
            "A {} result handed to the hub over {} (the call until the whole result is the \
             hub's, written once into memory the hub maps, p50): Rust agent {}, Python agent \
             {}, Python / Rust {}.\n",
            bytes(f.id.size.unwrap_or(0) as f64),
            f.id.subject.label(),
            with_interval(f),
            cell_interval(python),
            cell_interval(ratio),
        );
    }
}
