//! What the console shows after a run: the targets table and the
//! headline figures.

use std::fmt::Write;

use harness::figure::FigureId;
use harness::{Group, Regime, Statistic};

use crate::record::BenchRecord;
use crate::report::format::{cell, in_unit, ns, value};
use crate::report::{Baseline, Index, verdict_line};
use crate::targets::{Direction, Verdict};

/// A short plain-text summary for the console.
pub fn console(record: &BenchRecord, verdicts: &[Verdict], baseline: Baseline<'_>) -> String {
    let r = &record.results;
    let ix = Index::new(r);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{}\n",
        verdict_line(verdicts, baseline, r.failures.len())
    );
    let transports: Vec<&str> = r.plan.transports.iter().map(|t| t.name()).collect();
    let _ = write!(out, "{:<48}", "target");
    for t in &transports {
        let _ = write!(out, "{t:>24}");
    }
    out.push('\n');
    for v in verdicts {
        let _ = write!(
            out,
            "{:<48}",
            format!(
                "{} ({} {})",
                v.id,
                if v.direction == Direction::Below {
                    "<"
                } else {
                    ">"
                },
                value(v.limit, &v.unit)
            )
        );
        for t in &v.transports {
            let cell = match (t.value, t.met) {
                _ if !t.applies => "-".into(),
                (Some(x), Some(true)) => format!("ok {}", value(x, &v.unit)),
                (Some(x), Some(false)) => format!("MISSED {}", value(x, &v.unit)),
                _ => "not measured".into(),
            };
            let _ = write!(out, "{cell:>24}");
        }
        out.push('\n');
    }
    let small = ix.smallest();
    let _ = writeln!(
        out,
        "\n{:<22}{:>28}{:>14}{:>16}",
        "transport", "p50 RTT [interval]", "p99 RTT", "msg/s (one way)"
    );
    for f in ix.all(|id| {
        id.group == Group::Latency
            && id.size == Some(small)
            && id.regime == Regime::BackToBack
            && id.statistic == Statistic::P50
    }) {
        let rate = ix.get(FigureId {
            group: Group::Throughput,
            regime: Regime::OneWay,
            statistic: Statistic::Rate,
            ..f.id
        });
        let _ = writeln!(
            out,
            "{:<22}{:>28}{:>14}{:>16}",
            format!("{} {small} B", f.id.subject.label()),
            format!("{} [{}–{}]", ns(f.median), ns(f.low), ns(f.high)),
            cell(ix.stat(f.id, Statistic::P99)),
            rate.map_or("-".into(), |t| crate::report::rate(t.median)),
        );
    }
    match baseline {
        Baseline::Compared(_, c) => {
            for ch in c.regressions() {
                let _ = writeln!(
                    out,
                    "REGRESSION {}: {:.4} -> {:.4} ({})",
                    ch.figure,
                    ch.baseline.0,
                    ch.current.0,
                    ch.factor()
                );
            }
            for ch in c.moved() {
                let _ = writeln!(
                    out,
                    "moved (not judged) {}: {:.4} -> {:.4} ({}{})",
                    ch.figure,
                    ch.baseline.0,
                    ch.current.0,
                    ch.factor(),
                    ch.host
                        .map_or(String::new(), |h| format!("; host drift {h:.2}x"))
                );
            }
        }
        Baseline::Ab(_, c) => {
            for p in c.regressions() {
                let _ = writeln!(
                    out,
                    "REGRESSION {}: old {}, new {}, new / old {:.3} [{:.3}–{:.3}]",
                    p.figure,
                    in_unit(p.old.0, p.unit),
                    in_unit(p.new.0, p.unit),
                    p.worse_by.0,
                    p.worse_by.1,
                    p.worse_by.2
                );
            }
        }
        Baseline::Missing(_) => {}
    }
    for f in &r.failures {
        let _ = writeln!(
            out,
            "FAILED {} / {} (trial {}): {}",
            f.group,
            f.scenario,
            f.trial + 1,
            f.error
        );
    }
    out
}
