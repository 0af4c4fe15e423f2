//! The peers group's section: shared memory against iceoryx2.

use std::fmt::Write;

use harness::figure::FigureId;
use harness::schema::Mechanism;
use harness::{Group, Statistic, Subject};

use crate::report::Index;
use crate::report::format::{bytes, cell, cell_interval, table, with_interval};

pub(crate) fn section_peers(out: &mut String, ix: &Index<'_>) {
    let theirs = ix.all(|id| {
        id.group == Group::Peers
            && matches!(id.subject, Subject::Mechanism(m) if m != Mechanism::SharedBuffer)
            && id.statistic == Statistic::P50
    });
    if theirs.is_empty() {
        if ix.r.plan.groups.contains(&Group::Peers) {
            let _ = writeln!(
                out,
                "## Against the crates people use instead

Not measured: the runner was built without the harness feature `peers` (`cargo xtask bench` builds it with it), or `shm` was not in the run.\n"
            );
        }
        return;
    }
    let rows: Vec<Vec<String>> = theirs
        .into_iter()
        .filter_map(|peer| {
            let Subject::Mechanism(m) = peer.id.subject else {
                return None;
            };
            let shm = harness::Variant::of(harness::Transport::Shm);
            let ours = FigureId {
                subject: Subject::Transport(shm),
                ..peer.id
            };
            let ratio = FigureId {
                subject: Subject::Over(shm, m),
                statistic: Statistic::Ratio,
                ..peer.id
            };
            let floor = FigureId {
                subject: Subject::Mechanism(Mechanism::SharedBuffer),
                ..peer.id
            };
            let over_floor = FigureId {
                subject: Subject::Over(shm, Mechanism::SharedBuffer),
                statistic: Statistic::Ratio,
                ..peer.id
            };
            // The best `shm / peer` any copying transport could show here:
            // the floor's median over the peer's, same run.
            let reachable = match ix.get(floor) {
                Some(f) if peer.median > 0.0 => format!("{:.2}x", f.median / peer.median),
                _ => "-".into(),
            };
            Some(vec![
                bytes(peer.id.size.unwrap_or(0) as f64),
                cell_interval(ix.get(ours)),
                format!("{} ({})", with_interval(peer), m.name()),
                cell_interval(ix.get(ratio)),
                cell_interval(ix.get(floor)),
                cell_interval(ix.get(over_floor)),
                reachable,
                format!(
                    "{} / {}",
                    cell(ix.stat(ours, Statistic::CpuPerOp)),
                    cell(ix.stat(peer.id, Statistic::CpuPerOp))
                ),
            ])
        })
        .collect();
    let _ = writeln!(
        out,
        "## Against the crates people use instead (same run, interleaved)\n\nRound trips between two processes, back to back, both sides spinning, payload filled before and verified after the timed part, in the same blocks trial by trial; the ratio is paired per trial (below 1: `shm` is faster). The floor is the bare shared buffer doing the same copies (parent copies in, child copies out and back in, parent copies out) in the same blocks: no copying transport beats it, so floor / peer (ratio of the medians) is the best `shm / peer` this machine allows at that size.\n"
    );
    table(
        out,
        &[
            "size",
            "shm p50 [interval]",
            "peer p50 [interval]",
            "shm / peer [interval]",
            "floor p50 [interval]",
            "shm / floor [interval]",
            "floor / peer",
            "CPU / round trip (shm / peer)",
        ],
        &rows,
    );
}
