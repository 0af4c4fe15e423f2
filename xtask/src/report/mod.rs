//! The Markdown summary, its charts, the recommendations, and the console
//! summary: everything a person reads after a run. Every number comes from
//! the run's figures (medians over trials, with their intervals); one
//! function writes each section.
//!
//! `format` writes numbers, `recommend` the recommendations, `group/` one
//! section per benchmark group, `chart_files` the SVGs; this module the
//! run-level sections and the console.

mod chart_files;
mod comparison;
mod console;
pub(crate) mod format;
mod group;
mod recommend;

pub use chart_files::write_charts;
use comparison::section_comparison;
pub use console::console;

use std::collections::BTreeMap;
use std::fmt::Write;

use harness::compare::{AbComparison, Comparison};
use harness::figure::FigureId;
use harness::{Figure, RunResults, Statistic};

use crate::record::BenchRecord;
use crate::report::format::{margin, rate, share, table, value};
use crate::report::recommend::recommendations;
use crate::targets;
use crate::targets::{Direction, Verdict};

/// A one-line verdict per target and transport, e.g. `12.5x headroom`.
pub(crate) fn verdict_cell(t: &crate::targets::TransportVerdict, v: &Verdict) -> String {
    let unit = v.unit.as_str();
    if !t.applies {
        return "not set for it".into();
    }
    match (t.value, t.met, t.margin) {
        (Some(v), Some(true), Some(m)) => {
            format!(
                "✅ {} ({}x headroom){}",
                value(v, unit),
                margin(m),
                own_limit(t, unit)
            )
        }
        (Some(x), Some(false), Some(m)) => {
            let floor = t.floor.as_ref().map_or_else(String::new, |floor| {
                format!(
                    "; the bare {} beside it: {}{}",
                    floor.mechanism,
                    value(floor.value, unit),
                    match t.missed_by_floor(v) {
                        Some(_) => ", over the limit too",
                        None => "",
                    }
                )
            });
            format!(
                "❌ {} ({}x of limit){}{floor}",
                value(x, unit),
                margin(1.0 / m),
                own_limit(t, unit)
            )
        }
        _ => "not measured".into(),
    }
}

/// `; limit X` when the transport has a limit of its own.
fn own_limit(t: &crate::targets::TransportVerdict, unit: &str) -> String {
    t.limit
        .map_or_else(String::new, |l| format!("; limit {}", value(l, unit)))
}

/// The run's figures by id.
struct Index<'a> {
    r: &'a RunResults,
    by_id: BTreeMap<FigureId, &'a Figure>,
}

impl<'a> Index<'a> {
    fn new(r: &'a RunResults) -> Self {
        Index {
            r,
            by_id: r.figures.iter().map(|f| (f.id, f)).collect(),
        }
    }

    fn get(&self, id: FigureId) -> Option<&'a Figure> {
        self.by_id.get(&id).copied()
    }

    /// The sibling of `id` with another statistic.
    fn stat(&self, id: FigureId, statistic: Statistic) -> Option<&'a Figure> {
        self.get(FigureId { statistic, ..id })
    }

    fn all(&self, pick: impl Fn(&FigureId) -> bool) -> Vec<&'a Figure> {
        self.r.figures.iter().filter(|f| pick(&f.id)).collect()
    }

    fn smallest(&self) -> usize {
        self.r.plan.sizes.iter().copied().min().unwrap_or(64)
    }

    fn largest(&self) -> usize {
        self.r.plan.sizes.iter().copied().max().unwrap_or(1 << 20)
    }
}

/// What the run was compared with.
#[derive(Debug, Clone, Copy)]
pub enum Baseline<'a> {
    /// Compared with the named record (an earlier run).
    Compared(&'a str, &'a Comparison),
    /// An A/B run: the named old build, measured beside this one.
    Ab(&'a str, &'a AbComparison),
    /// Not compared, and why.
    Missing(&'a str),
}

/// The headline: targets and regressions in one sentence.
pub fn verdict_line(verdicts: &[Verdict], baseline: Baseline<'_>, failures: usize) -> String {
    let missed: Vec<String> = verdicts
        .iter()
        .flat_map(|v| {
            v.transports
                .iter()
                .filter(|t| t.met == Some(false))
                .map(move |t| format!("{} ({})", v.id, t.transport))
        })
        .collect();
    let (met, n_missed, unmeasured) = targets::tally(verdicts);
    let checks = met + n_missed;
    let mut line = if missed.is_empty() {
        format!("All {checks} target checks met")
    } else {
        format!(
            "{} of {checks} target checks missed: {}",
            missed.len(),
            missed.join(", ")
        )
    };
    // A limit the bare mechanism beside it misses too is the machine's.
    let floors: Vec<String> = verdicts
        .iter()
        .flat_map(|v| {
            v.transports.iter().filter_map(move |t| {
                t.missed_by_floor(v).map(|floor| {
                    format!(
                        "{} ({}, as the bare {})",
                        v.id, t.transport, floor.mechanism
                    )
                })
            })
        })
        .collect();
    if !floors.is_empty() {
        let _ = write!(
            line,
            "; missed by the bare mechanism measured beside it too, a limit this machine \
             cannot meet: {}",
            floors.join(", ")
        );
    }
    if unmeasured > 0 {
        let _ = write!(line, " ({unmeasured} not measured in this run)");
    }
    match baseline {
        Baseline::Compared(_, c) => {
            let n = c.regressions().count();
            let _ = write!(
                line,
                "; {n} regression(s) against the baseline ({} same-run ratios judged, {} too noisy to \
                 judge ({})",
                c.compared,
                c.noisy.len(),
                share(c.noisy.len(), c.compared)
            );
            line.push(')');
            let better = c.improvements().count();
            if better > 0 {
                let _ = write!(line, ", {better} improvement(s)");
            }
            let moved = c.moved().count();
            if moved > 0 {
                let _ = write!(
                    line,
                    ", {moved} of {} absolute figures moved beyond the rule (reported, not judged)",
                    c.reported
                );
            }
        }
        Baseline::Ab(name, c) => {
            let _ = write!(
                line,
                "; A/B against {name}: {} regression(s) ({} figures paired, {} too noisy to judge ({})",
                c.regressions().count(),
                c.figures.len(),
                c.noisy.len(),
                share(c.noisy.len(), c.figures.len())
            );
            line.push(')');
            let better = c.improvements().count();
            if better > 0 {
                let _ = write!(line, ", {better} improvement(s)");
            }
        }
        Baseline::Missing(why) => {
            let _ = write!(line, "; {why}");
        }
    }
    if failures > 0 {
        let _ = write!(line, "; {failures} scenario(s) FAILED");
    }
    line.push('.');
    line
}

fn section_header(out: &mut String, record: &BenchRecord, verdicts: &[Verdict], b: Baseline<'_>) {
    let r = &record.results;
    let _ = writeln!(out, "# Benchmark summary\n");
    let _ = writeln!(
        out,
        "**Verdict:** {}\n",
        verdict_line(verdicts, b, r.failures.len())
    );
    let m = &record.machine;
    let git = record
        .git
        .as_ref()
        .map_or("not a git checkout".to_string(), |g| {
            format!(
                "`{}`{}",
                &g.commit[..g.commit.len().min(12)],
                if g.dirty {
                    " (with uncommitted changes)"
                } else {
                    ""
                }
            )
        });
    let _ = writeln!(
        out,
        "Run {} · {} preset · {:.0} s · commit {} · {} · {} CPUs ({}) · {} MiB · kernel {}{}\n",
        record.started_utc,
        r.plan.preset,
        r.duration_s,
        git,
        record.toolchain,
        m.cpus,
        m.cpu_model,
        m.memory_mib,
        m.kernel,
        m.hypervisor
            .as_ref()
            .map_or(String::new(), |h| format!(" · hypervisor: {h}")),
    );
    if let Some(a) = &record.against {
        let _ = writeln!(
            out,
            "**A/B run:** this build (new) and {} (old) measured in this run, their trials interleaved \
             cell by cell; the figures below are the new build's, the verdict compares the two.\n",
            a.reference
        );
    }
    if let Some(x) = r.extra_trials.as_ref().filter(|x| x.budget_s > 0.0) {
        let still: usize = x.blocks.iter().map(|b| b.noisy_after.len()).sum();
        let _ = writeln!(
            out,
            "**Extra trials:** {} block(s) whose judged figures were too noisy after the planned trials got \
             more ({:.0} s of a {:.0} s budget); {} figure(s) were still too noisy after them.\n",
            x.blocks.len(),
            x.seconds,
            x.budget_s,
            still
        );
    }
    if let Some(h) = &r.plan.handicap {
        let _ = writeln!(
            out,
            "**Handicapped run:** the harness spun {} ns before every message over `{}` (IPC_BENCH_HANDICAP), to show that the comparison catches a slowdown.\n",
            h.ns, h.label
        );
    }
}

fn section_method(out: &mut String, r: &RunResults) {
    let p = &r.plan;
    let coverage = r
        .figures
        .iter()
        .find(|f| f.trials.len() == p.trials as usize)
        .map_or(0.0, |f| f.confidence);
    let windows: Vec<f64> = r.throughput.iter().map(|t| t.seconds * 1e3).collect();
    let shortest = windows.iter().copied().fold(f64::INFINITY, f64::min);
    let mut sorted = windows.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let _ = writeln!(out, "## Method\n");
    let _ = writeln!(
        out,
        "Every figure is the median of **{} independent trials** (fresh processes each), run interleaved \
         with the other variants of its block and with the bare mechanism each is compared with \
         (A B C, A B C, ...). Brackets give the order-statistic interval of the median ({:.1} % coverage \
         with {} trials). Ratios to a mechanism are computed per trial, against the mechanism trial run \
         beside it, then summarized. Per trial: {} round trips after {} warm-up ({} at sizes above 64 KiB); \
         parked: {} round trips {} µs apart; throughput: {} to {} messages (windows {:.0} ms shortest, \
         {:.0} ms median); idle: {} ms windows; codecs: {} timed batches of at least 50 µs. \
         Round trips unless marked one-way; {}; every message written and verified (sequence + pattern), \
         by the transports and the mechanisms alike.\n",
        p.trials,
        coverage * 100.0,
        p.trials,
        p.latency_samples,
        p.latency_warmup,
        p.latency_samples_at(usize::MAX),
        p.parked_samples,
        p.parked_gap_us,
        p.throughput_min_messages,
        p.throughput_max_messages,
        if shortest.is_finite() { shortest } else { 0.0 },
        median,
        p.idle_window_ms,
        p.codec_batches,
        if p.pin {
            "latency, throughput and mechanisms with the two processes pinned to two different CPUs \
             (typed round trips alike; patterns with the parent on one CPU and every agent on the other; \
             resources, logging and the hub's unpinned regimes unpinned)"
        } else {
            "no process pinned to a CPU"
        }
    );
}

fn section_targets(out: &mut String, r: &RunResults, verdicts: &[Verdict]) {
    let _ = writeln!(out, "## Targets (medians over trials)\n");
    let transports: Vec<String> = r
        .plan
        .transports
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    let mut header = vec!["target", "limit"];
    header.extend(transports.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = verdicts
        .iter()
        .map(|v| {
            let limit = format!(
                "{} {}",
                if v.direction == Direction::Below {
                    "<"
                } else {
                    ">"
                },
                value(v.limit, &v.unit)
            );
            let mut row = vec![v.description.clone(), limit];
            row.extend(v.transports.iter().map(|t| verdict_cell(t, v)));
            row
        })
        .collect();
    table(out, &header, &rows);
}

fn section_recommendations(out: &mut String, r: &RunResults) {
    let recs = recommendations(r);
    if !recs.is_empty() {
        let _ = writeln!(out, "## Recommendations\n");
        for rec in recs {
            let _ = writeln!(out, "- {rec}");
        }
        out.push('\n');
    }
}

fn section_charts(out: &mut String, charts: &[(String, String)]) {
    if !charts.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for (file, title) in charts {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
}

fn section_failures(out: &mut String, r: &RunResults) {
    if !r.failures.is_empty() {
        let _ = writeln!(out, "## Failed scenarios\n");
        for f in &r.failures {
            let _ = writeln!(
                out,
                "- {} / {} (trial {}): {}",
                f.group,
                f.scenario,
                f.trial + 1,
                f.error
            );
        }
        out.push('\n');
    }
}

/// The whole Markdown summary.
pub fn summary(
    record: &BenchRecord,
    verdicts: &[Verdict],
    baseline: Baseline<'_>,
    charts: &[(String, String)],
) -> String {
    let r = &record.results;
    let ix = Index::new(r);
    let mut out = String::new();
    section_header(&mut out, record, verdicts, baseline);
    section_targets(&mut out, r, verdicts);
    section_recommendations(&mut out, r);
    section_comparison(&mut out, baseline);
    section_method(&mut out, r);
    section_charts(&mut out, charts);
    for (_, section) in group::SECTIONS {
        section(&mut out, &ix);
    }
    section_failures(&mut out, r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{Floor, TransportVerdict};

    #[test]
    fn a_missed_limit_shows_the_bare_mechanism_beside_it() {
        let missed = |transport: &str, us: f64, mechanism: &str, floor_us: f64| TransportVerdict {
            transport: transport.into(),
            value: Some(us),
            met: Some(false),
            margin: Some(100.0 / us),
            limit: None,
            floor: Some(Floor {
                mechanism: mechanism.into(),
                value: floor_us,
            }),
            applies: true,
        };
        let verdict = Verdict {
            id: "p95_round_trip".into(),
            description: "p95".into(),
            unit: "us".into(),
            direction: Direction::Below,
            limit: 100.0,
            transports: vec![
                missed("pipe", 135.0, "pipe", 126.0),
                missed("uds", 141.0, "socketpair", 80.0),
            ],
        };
        let pipe = verdict_cell(&verdict.transports[0], &verdict);
        assert!(
            pipe.ends_with("; the bare pipe beside it: 126.00 us, over the limit too"),
            "{pipe}"
        );
        let uds = verdict_cell(&verdict.transports[1], &verdict);
        assert!(
            uds.ends_with("; the bare socketpair beside it: 80.00 us"),
            "{uds}"
        );
    }
}
