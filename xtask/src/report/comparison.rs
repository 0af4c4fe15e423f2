//! The comparison section: this run against its baseline, or the old
//! build against the new one (A/B).

use std::fmt::Write;

use crate::report::Baseline;
use crate::report::format::{capitalize, in_unit, table};

pub(crate) fn section_comparison(out: &mut String, b: Baseline<'_>) {
    let iv = |(m, lo, hi): (f64, f64, f64)| format!("{m:.4} [{lo:.4}–{hi:.4}]");
    let keys = |keys: &[String]| {
        keys.iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match b {
        Baseline::Missing(why) => {
            let _ = writeln!(out, "## Comparison\n\n{}.\n", capitalize(why));
        }
        Baseline::Ab(name, c) => {
            let _ = writeln!(out, "## A/B: this build against {name}\n");
            let _ = writeln!(
                out,
                "Both builds ran in this run, cell by cell (old, new; new, old; ...), each with fresh \
                 processes pinned alike: both met the same host, minute by minute. Rule: {}.\n",
                c.describe()
            );
            let mut rows: Vec<&harness::compare::Paired> = c.figures.iter().collect();
            // What was flagged first, then the largest moves.
            rows.sort_by(|a, b| {
                (b.outcome.is_some(), b.worse_by.0.max(1.0 / b.worse_by.0))
                    .partial_cmp(&(a.outcome.is_some(), a.worse_by.0.max(1.0 / a.worse_by.0)))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let row = |p: &harness::compare::Paired| {
                let iv = |(m, lo, hi): (f64, f64, f64)| {
                    format!(
                        "{} [{}–{}]",
                        in_unit(m, p.unit),
                        in_unit(lo, p.unit),
                        in_unit(hi, p.unit)
                    )
                };
                vec![
                    format!("`{}`", p.figure),
                    iv(p.old),
                    iv(p.new),
                    format!(
                        "{:.3} [{:.3}–{:.3}]",
                        p.worse_by.0, p.worse_by.1, p.worse_by.2
                    ),
                    p.outcome.map_or_else(
                        || {
                            if c.noisy.contains(&p.figure) {
                                "too noisy".into()
                            } else {
                                "-".into()
                            }
                        },
                        |o| format!("{o:?}").to_lowercase(),
                    ),
                ]
            };
            let header = ["figure", "old", "new", "new / old (worse >1)", "verdict"];
            let flagged: Vec<Vec<String>> = rows
                .iter()
                .filter(|p| p.outcome.is_some())
                .map(|p| row(p))
                .collect();
            if flagged.is_empty() {
                let _ = writeln!(
                    out,
                    "No figure changed beyond the rule ({} paired).\n",
                    c.figures.len()
                );
            } else {
                table(out, &header, &flagged);
            }
            if !c.noisy.is_empty() {
                let _ = writeln!(
                    out,
                    "Too noisy to judge ({} of {}: a paired interval wider than the factor): {}.\n",
                    c.noisy.len(),
                    c.figures.len(),
                    keys(&c.noisy)
                );
            }
            if !c.unpaired.is_empty() {
                let _ = writeln!(
                    out,
                    "Not paired ({}: measured by one build only, or not in the same trials): {}.\n",
                    c.unpaired.len(),
                    keys(&c.unpaired)
                );
            }
            let _ = writeln!(
                out,
                "<details><summary>Every paired figure ({})</summary>\n",
                c.figures.len()
            );
            let all: Vec<Vec<String>> = rows.iter().map(|p| row(p)).collect();
            table(out, &header, &all);
            let _ = writeln!(out, "</details>\n");
        }
        Baseline::Compared(name, c) => {
            let _ = writeln!(out, "## Compared with {name}\n");
            let _ = writeln!(out, "Rule: {}.\n", c.rule.describe());
            let judged: Vec<Vec<String>> = c
                .changes
                .iter()
                .filter(|ch| ch.outcome != harness::compare::Outcome::Moved)
                .map(|ch| {
                    vec![
                        format!("`{}`", ch.figure),
                        iv(ch.baseline),
                        iv(ch.current),
                        ch.factor(),
                        format!("{:?}", ch.outcome).to_lowercase(),
                    ]
                })
                .collect();
            if judged.is_empty() {
                let _ = writeln!(
                    out,
                    "No same-run ratio changed beyond the rule ({} compared).\n",
                    c.compared
                );
            }
            table(
                out,
                &["figure", "baseline", "now", "change", "verdict"],
                &judged,
            );
            if !c.noisy.is_empty() {
                let _ = writeln!(
                    out,
                    "Too noisy to judge ({} of {}: an interval wider than the factor in one of the runs): {}.\n",
                    c.noisy.len(),
                    c.compared,
                    keys(&c.noisy)
                );
            }
            let moved: Vec<Vec<String>> = c
                .moved()
                .map(|ch| {
                    vec![
                        format!("`{}`", ch.figure),
                        iv(ch.baseline),
                        iv(ch.current),
                        ch.factor(),
                        ch.host.map_or_else(
                            || "no same-run ratio: use --against to judge".into(),
                            |h| {
                                format!(
                                    "host drift {h:.2}x; the code's share {:.2}x",
                                    ch.worse_by / h
                                )
                            },
                        ),
                    ]
                })
                .collect();
            if !moved.is_empty() {
                let _ = writeln!(
                    out,
                    "Absolute figures that moved beyond {:.1}x ({} of {} compared). Minutes apart, a shared \
                     host moves absolute figures by itself, so these are reported, not judged: the host's \
                     share is how far the mechanism measured beside the figure moved too (from its \
                     same-run ratio). To judge code, run A/B (`--against REF`).\n",
                    c.rule.factor,
                    moved.len(),
                    c.reported
                );
                table(out, &["figure", "baseline", "now", "change", "why"], &moved);
            }
        }
    }
}
