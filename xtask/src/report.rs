//! The Markdown summary, its charts, the recommendations, and the console
//! summary: everything a person reads after a run. Every number comes from
//! the run's figures (medians over trials, with their intervals); one
//! function writes each section.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use harness::compare::{AbComparison, Comparison};
use harness::figure::{FigureId, Unit};
use harness::schema::Mechanism;
use harness::{Figure, Group, Regime, RunResults, Statistic, Subject, Variant};

use crate::charts::{Axis, BarChart, LineChart, Series};
use crate::record::BenchRecord;
use crate::targets::{self, Direction, Verdict};

/// A duration in nanoseconds, readably.
pub fn ns(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// A count per second, readably.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Bytes, readably (binary units).
pub fn bytes(v: f64) -> String {
    if v >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", v / (1u64 << 30) as f64)
    } else if v >= (1 << 20) as f64 {
        format!("{:.1} MiB", v / (1 << 20) as f64)
    } else if v >= 1024.0 {
        format!("{:.0} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

/// A value in a figure's unit, readably.
pub fn in_unit(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ns => ns(v),
        Unit::PerS => format!("{}/s", rate(v)),
        Unit::BytesPerS => format!("{}/s", bytes(v)),
        Unit::PercentCore => format!("{v:.3} %"),
        Unit::Kib => bytes(v * 1024.0),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Times => format!("{v:.2}x"),
        Unit::Count => format!("{v:.0}"),
    }
}

/// A figure's median with its interval: `441 ns [430 ns–470 ns]`.
pub fn with_interval(f: &Figure) -> String {
    format!(
        "{} [{}–{}]",
        in_unit(f.median, f.unit),
        in_unit(f.low, f.unit),
        in_unit(f.high, f.unit)
    )
}

fn value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" => format!("{}msg/s", rate(v)),
        "x" => format!("{v:.2}x"),
        _ if v != 0.0 && v.abs() < 0.01 => format!("{v:.4} {unit}"),
        _ => format!("{v:.2} {unit}"),
    }
}

fn margin(m: f64) -> String {
    if m.is_infinite() || m > 1e6 {
        "∞".into()
    } else if m >= 10.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

/// A one-line verdict per target and transport, e.g. `12.5x headroom`.
fn verdict_cell(t: &crate::targets::TransportVerdict, unit: &str) -> String {
    match (t.value, t.met, t.margin) {
        (Some(v), Some(true), Some(m)) => {
            format!(
                "✅ {} ({}x headroom){}",
                value(v, unit),
                margin(m),
                own_limit(t, unit)
            )
        }
        (Some(v), Some(false), Some(m)) => {
            format!(
                "❌ {} ({}x of limit){}",
                value(v, unit),
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

fn is_default(subject: &Subject) -> bool {
    matches!(subject, Subject::Transport(v) if *v == Variant::of(v.transport))
}

fn cell(f: Option<&Figure>) -> String {
    f.map_or("-".into(), |f| in_unit(f.median, f.unit))
}

fn cell_interval(f: Option<&Figure>) -> String {
    f.map_or("-".into(), with_interval)
}

/// Recommendations derived from this run's numbers.
pub fn recommendations(r: &RunResults) -> Vec<String> {
    let ix = Index::new(r);
    let mut out = Vec::new();
    let (small, large) = (ix.smallest(), ix.largest());
    if let Some(line) = through_the_hub(&ix) {
        out.push(line);
    }

    let mut hot = ix.all(|id| {
        is_default(&id.subject)
            && id.group == Group::Latency
            && id.size == Some(small)
            && id.regime == Regime::BackToBack
            && id.statistic == Statistic::P50
    });
    hot.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let [best, second, ..] = hot.as_slice() {
        let cpu = |f: &Figure| {
            let id = FigureId {
                group: Group::Throughput,
                regime: Regime::OneWay,
                statistic: Statistic::CpuPerOp,
                ..f.id
            };
            ix.get(id)
                .map(|c| format!("{} CPU per message", ns(c.median)))
                .unwrap_or_default()
        };
        let p99 = |f: &Figure| cell(ix.stat(f.id, Statistic::P99));
        out.push(format!(
            "**Small, latency-critical messages: `{}`.** {} B round trip p50 {} / p99 {}, against {} / {} for `{}` \
             ({:.1}x faster at the median). Cost: {} (vs {} for `{}`).",
            best.id.subject.label(),
            small,
            with_interval(best),
            p99(best),
            with_interval(second),
            p99(second),
            second.id.subject.label(),
            second.median / best.median.max(1.0),
            cpu(best),
            cpu(second),
            second.id.subject.label(),
        ));
    }
    let mut parked = ix.all(|id| {
        id.group == Group::Latency
            && id.regime == Regime::Parked
            && id.size == Some(small)
            && id.statistic == Statistic::P50
    });
    parked.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let Some(best) = parked.first() {
        let list: Vec<String> = parked
            .iter()
            .map(|f| {
                let cpu = ix
                    .stat(f.id, Statistic::CpuPerOp)
                    .map_or(String::new(), |c| format!(" ({} CPU each)", ns(c.median)));
                format!("`{}` {}{cpu}", f.id.subject.label(), ns(f.median))
            })
            .collect();
        out.push(format!(
            "**Messages with pauses between them** (the receiver has gone to sleep): `{}` is quickest; p50 round trip {}.",
            best.id.subject.label(),
            list.join(", ")
        ));
    }
    let mut bulk = ix.all(|id| {
        id.group == Group::Throughput
            && id.size == Some(large)
            && id.statistic == Statistic::Bandwidth
    });
    bulk.sort_by(|a, b| b.median.total_cmp(&a.median));
    if let [best, ..] = bulk.as_slice() {
        let others: Vec<String> = bulk
            .iter()
            .skip(1)
            .filter(|f| is_default(&f.id.subject))
            .map(|f| format!("`{}` {}", f.id.subject.label(), cell(Some(f))))
            .collect();
        out.push(format!(
            "**Bulk transfer: `{}`.** {} with {} messages; {}.",
            best.id.subject.label(),
            with_interval(best),
            bytes(large as f64),
            others.join(", ")
        ));
    }
    if let Some(line) = large_messages(&ix) {
        out.push(line);
    }
    let idle = ix.all(|id| id.regime == Regime::Idle && id.statistic == Statistic::CpuPercent);
    let most = idle.iter().filter_map(|f| f.id.agents).max();
    let mut idle: Vec<_> = idle.into_iter().filter(|f| f.id.agents == most).collect();
    idle.sort_by(|a, b| a.median.total_cmp(&b.median));
    if let Some(best) = idle.first() {
        let list: Vec<String> = idle
            .iter()
            .map(|f| {
                format!(
                    "`{}` {} CPU, {} max RSS",
                    f.id.subject.label(),
                    in_unit(f.median, f.unit),
                    cell(ix.stat(f.id, Statistic::Rss))
                )
            })
            .collect();
        out.push(format!(
            "**Many idle agents:** with {} idle agents connected, {}. Lowest: `{}`.",
            most.unwrap_or(0),
            list.join("; "),
            best.id.subject.label()
        ));
    }
    let fan = ix.all(|id| id.regime == Regime::FanOut && id.statistic == Statistic::Rate);
    let most = fan.iter().filter_map(|f| f.id.agents).max();
    let mut fan: Vec<_> = fan.into_iter().filter(|f| f.id.agents == most).collect();
    fan.sort_by(|a, b| b.median.total_cmp(&a.median));
    if let [best, ..] = fan.as_slice() {
        out.push(format!(
            "**A hub dealing work to {} agents:** `{}` moves {} ({}).",
            most.unwrap_or(0),
            best.id.subject.label(),
            with_interval(best),
            fan.iter()
                .skip(1)
                .map(|f| format!("`{}` {}", f.id.subject.label(), cell(Some(f))))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let encode = |f: &Figure| {
        ix.get(FigureId {
            regime: Regime::Encode(harness::schema::Message::ToolCall),
            ..f.id
        })
    };
    let mut codecs: Vec<(&Figure, &Figure)> = ix
        .all(|id| {
            id.regime == Regime::Decode(harness::schema::Message::ToolCall)
                && id.statistic == Statistic::Time
        })
        .into_iter()
        .filter_map(|d| encode(d).map(|e| (e, d)))
        .collect();
    codecs.sort_by(|a, b| (a.0.median + a.1.median).total_cmp(&(b.0.median + b.1.median)));
    if let [(e, d), rest @ ..] = codecs.as_slice() {
        out.push(format!(
            "**Typed messages: `{}`.** A tool call encodes in {} and decodes in {}; {}.",
            e.id.subject.label(),
            ns(e.median),
            ns(d.median),
            rest.iter()
                .map(|(e, d)| format!(
                    "`{}` {} + {}",
                    e.id.subject.label(),
                    ns(e.median),
                    ns(d.median)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// The hub group's verdict: which transport a runtime's typed call is
/// fastest over, through `ipc-hub` unpinned, as a runtime runs.
fn through_the_hub(ix: &Index<'_>) -> Option<String> {
    let mut calls = ix.all(|id| {
        id.group == Group::Hub
            && is_default(&id.subject)
            && id.regime == Regime::HubCall
            && id.statistic == Statistic::P50
    });
    calls.sort_by(|a, b| a.median.total_cmp(&b.median));
    let [best, rest @ ..] = calls.as_slice() else {
        return None;
    };
    let over_blocking = |f: &Figure| {
        let Subject::Transport(v) = f.id.subject else {
            return String::new();
        };
        ix.get(FigureId {
            subject: Subject::Path(v, Regime::BackToBack),
            statistic: Statistic::Ratio,
            ..f.id
        })
        .map_or(String::new(), |r| {
            format!(", {} its blocking round trip", with_interval(r))
        })
    };
    Some(format!(
        "**Through the hub (the path a runtime takes): `{}`.** A typed {} B call through `ipc-hub`, unpinned, p50 {}{}; {}.",
        best.id.subject.label(),
        best.id.size.unwrap_or(0),
        with_interval(best),
        over_blocking(best),
        rest.iter()
            .map(|f| format!(
                "`{}` {}{}",
                f.id.subject.label(),
                cell(Some(f)),
                over_blocking(f)
            ))
            .collect::<Vec<_>>()
            .join("; ")
    ))
}

/// Shared memory's large messages, by size: by reference (the default,
/// reusable slots) against copies through the ring, and fresh blobs.
fn large_messages(ix: &Index<'_>) -> Option<String> {
    use harness::transport::Large;
    let bandwidth = |large: Large, size: usize| {
        ix.get(FigureId {
            group: Group::Throughput,
            subject: Subject::Transport(harness::Variant::shm_large(large)),
            regime: Regime::OneWay,
            size: Some(size),
            agents: None,
            statistic: Statistic::Bandwidth,
        })
    };
    let mut sizes: Vec<usize> = ix
        .all(|id| {
            id.group == Group::Throughput
                && id.subject == Subject::Transport(harness::Variant::shm_large(Large::Copy))
                && id.statistic == Statistic::Bandwidth
        })
        .iter()
        .filter_map(|f| f.id.size)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let mut by_reference = Vec::new();
    let mut by_copy = Vec::new();
    let mut fresh = Vec::new();
    for size in sizes {
        let (Some(slot), Some(copy)) = (
            bandwidth(Large::Default, size),
            bandwidth(Large::Copy, size),
        ) else {
            continue;
        };
        let entry = format!(
            "{} ({} against {})",
            bytes(size as f64),
            in_unit(slot.median, slot.unit),
            in_unit(copy.median, copy.unit)
        );
        if slot.median >= copy.median {
            by_reference.push(entry);
        } else {
            by_copy.push(entry);
        }
        if let Some(blob) = bandwidth(Large::Blob, size) {
            fresh.push(format!(
                "{} {}",
                bytes(size as f64),
                in_unit(blob.median, blob.unit)
            ));
        }
    }
    if by_reference.is_empty() && by_copy.is_empty() {
        return None;
    }
    let mut line = String::from("**Large messages on shared memory:** ");
    if !by_reference.is_empty() {
        line += &format!(
            "by reference (the default above a ring record: one copy into a reusable slot, read in \
             place) beats copying through the ring at {}",
            by_reference.join(", ")
        );
    }
    if !by_copy.is_empty() {
        if !by_reference.is_empty() {
            line += "; ";
        }
        line += &format!(
            "copying through the ring (`set_blob_threshold(None)`) is faster at {}",
            by_copy.join(", ")
        );
    }
    if !fresh.is_empty() {
        line += &format!(
            ". A fresh blob per message (`BlobBuf`, written in place but on new memory, which the \
             kernel must zero and fault in) streams at {}: use it to write once for many readers \
             (see bulk-broadcast)",
            fresh.join(", ")
        );
    }
    line.push('.');
    Some(line)
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

/// `n` of `of`, as a percentage.
fn share(n: usize, of: usize) -> String {
    format!("{:.1} %", 100.0 * n as f64 / of.max(1) as f64)
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

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// Writes the charts into `dir`; returns their file names and titles.
pub fn write_charts(dir: &Path, r: &RunResults) -> std::io::Result<Vec<(String, String)>> {
    let ix = Index::new(r);
    let mut files = Vec::new();
    let small = ix.smallest();
    let mut save = |name: &str, title: &str, svg: String| -> std::io::Result<()> {
        std::fs::write(dir.join(name), svg)?;
        files.push((name.to_owned(), title.to_owned()));
        Ok(())
    };
    let percentiles = [
        Statistic::P50,
        Statistic::P95,
        Statistic::P99,
        Statistic::P999,
        Statistic::Max,
    ];
    let series: Vec<Series> = ix
        .all(|id| {
            id.group == Group::Latency && id.size == Some(small) && id.statistic == Statistic::P50
        })
        .into_iter()
        .map(|f| Series {
            name: if f.id.regime == Regime::Parked {
                format!("{} (parked)", f.id.subject.label())
            } else {
                f.id.subject.label()
            },
            points: percentiles
                .iter()
                .enumerate()
                .filter_map(|(i, &s)| ix.stat(f.id, s).map(|x| (i as f64, x.median)))
                .collect(),
        })
        .collect();
    if !series.is_empty() {
        let title = format!("Round-trip latency percentiles, {small} B (medians over trials)");
        let chart = LineChart {
            title: title.clone(),
            x_label: "percentile".into(),
            y_label: "round trip (ns, log)".into(),
            x_axis: Axis::Categories(percentiles.iter().map(|s| s.name().to_string()).collect()),
            y_axis: Axis::Log,
            series,
        };
        save("latency_percentiles.svg", &title, chart.render())?;
    }
    let line_series = |pick: &dyn Fn(&FigureId) -> bool, x: &dyn Fn(&FigureId) -> f64| {
        let mut by: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for f in ix.all(pick) {
            by.entry(f.id.subject.label())
                .or_default()
                .push((x(&f.id), f.median));
        }
        by.into_iter()
            .map(|(name, mut points)| {
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series { name, points }
            })
            .collect::<Vec<_>>()
    };
    let series = line_series(
        &|id| {
            id.group == Group::Throughput
                && id.statistic == Statistic::Bandwidth
                && !matches!(id.subject, Subject::Transport(v) if v.ring_kib.is_some())
        },
        &|id| id.size.unwrap_or(1) as f64,
    );
    if !series.is_empty() {
        let title = "One-way throughput by message size".to_string();
        let chart = LineChart {
            title: title.clone(),
            x_label: "message size (bytes, log)".into(),
            y_label: "bytes/s (log)".into(),
            x_axis: Axis::Log,
            y_axis: Axis::Log,
            series,
        };
        save("throughput_by_size.svg", &title, chart.render())?;
    }
    let mut series = Vec::new();
    for pattern in [
        Regime::FanOut,
        Regime::FanIn,
        Regime::Broadcast,
        Regime::BulkBroadcast,
        Regime::Pipeline,
        Regime::AllToAll,
    ] {
        for mut s in line_series(
            &|id| id.regime == pattern && id.statistic == Statistic::Rate,
            &|id| id.agents.unwrap_or(0) as f64,
        ) {
            s.name = format!("{} {}", pattern.name(), s.name);
            series.push(s);
        }
    }
    if !series.is_empty() {
        let title = "Pattern throughput by agent count".to_string();
        let chart = LineChart {
            title: title.clone(),
            x_label: "agents".into(),
            y_label: "deliveries/s (log)".into(),
            x_axis: Axis::Linear,
            y_axis: Axis::Log,
            series,
        };
        save("patterns_by_agents.svg", &title, chart.render())?;
    }
    let mut series = Vec::new();
    for (statistic, what) in [(Statistic::P50, "call_each p50"), (Statistic::Time, "join")] {
        for mut s in line_series(
            &|id| id.group == Group::Scale && id.statistic == statistic,
            &|id| id.agents.unwrap_or(1) as f64,
        ) {
            s.name = format!("{} {what}", s.name);
            series.push(s);
        }
    }
    if !series.is_empty() {
        let title = "One hub, many agents: call_each to all and join time".to_string();
        let chart = LineChart {
            title: title.clone(),
            x_label: "agents (log)".into(),
            y_label: "ns (log)".into(),
            x_axis: Axis::Log,
            y_axis: Axis::Log,
            series,
        };
        save("scale_by_agents.svg", &title, chart.render())?;
    }
    let idle = ix.all(|id| id.regime == Regime::Idle && id.statistic == Statistic::CpuPercent);
    let mut groups: Vec<usize> = idle.iter().filter_map(|f| f.id.agents).collect();
    groups.sort();
    groups.dedup();
    let mut labels: Vec<Subject> = idle.iter().map(|f| f.id.subject).collect();
    labels.dedup();
    if !groups.is_empty() {
        let categories: Vec<String> = groups
            .iter()
            .map(|&n| format!("{n} agent{}", if n == 1 { "" } else { "s" }))
            .collect();
        let bars = |statistic: Statistic, scale: f64| {
            labels
                .iter()
                .map(|s| {
                    let values = groups
                        .iter()
                        .map(|&n| {
                            idle.iter()
                                .find(|f| f.id.subject == *s && f.id.agents == Some(n))
                                .and_then(|f| ix.stat(f.id, statistic))
                                .map_or(0.0, |f| f.median * scale)
                        })
                        .collect();
                    (s.label(), values)
                })
                .collect::<Vec<_>>()
        };
        let cpu = BarChart {
            title: "CPU of idle agents (all together, median)".into(),
            y_label: "% of one core".into(),
            categories: categories.clone(),
            series: bars(Statistic::CpuPercent, 1.0),
        };
        save("idle_cpu.svg", "CPU of idle agents", cpu.render())?;
        let rss = BarChart {
            title: "Resident memory of an idle agent (largest, median)".into(),
            y_label: "MiB".into(),
            categories,
            series: bars(Statistic::Rss, 1.0 / 1024.0),
        };
        save("idle_rss.svg", "Memory of idle agents", rss.render())?;
    }
    Ok(files)
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
            row.extend(v.transports.iter().map(|t| verdict_cell(t, &v.unit)));
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

fn section_comparison(out: &mut String, b: Baseline<'_>) {
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

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

fn section_charts(out: &mut String, charts: &[(String, String)]) {
    if !charts.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for (file, title) in charts {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
}

fn section_latency(out: &mut String, ix: &Index<'_>) {
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

/// The hub group: per transport, the blocking round trip (the floor) and
/// the paths a runtime takes, with the paired ratios.
fn section_hub(out: &mut String, ix: &Index<'_>) {
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
                cell_interval(path(f, Regime::Async)),
                cell_interval(path(f, Regime::AsyncMultiThread)),
                cell_interval(path(f, Regime::HubCall)),
                cell_interval(path(f, Regime::HubCallPinned)),
                cell_interval(ratio(f, Regime::Async, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCall, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCallPinned, Regime::BackToBack)),
                cell_interval(ratio(f, Regime::HubCall, Regime::Async)),
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
         Blocking: the transport's pinned round trip (its floor). Async: both ends on \
         the async API, current-thread runtimes (multi-thread: the parent's runtime). \
         Hub call: a typed call through `ipc-hub` (hub on a multi-thread runtime, agent \
         serving on a current-thread one), unpinned as a runtime runs, and pinned. \
         Ratios paired per trial.\n"
    );
    table(
        out,
        &[
            "transport",
            "blocking",
            "async",
            "async (multi-thread)",
            "hub call",
            "hub call (pinned)",
            "async / blocking",
            "hub / blocking",
            "hub pinned / blocking",
            "hub / async",
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
fn section_hub_python(out: &mut String, ix: &Index<'_>) {
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

/// The scale group: one hub, many agents, by agent count.
fn section_scale(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Scale && id.statistic == Statistic::P50)
        .into_iter()
        .map(|f| {
            let s = |st| ix.stat(f.id, st);
            vec![
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                cell_interval(s(Statistic::Time)),
                with_interval(f),
                cell(s(Statistic::Max)),
                cell(s(Statistic::Threads)),
                cell(s(Statistic::Rss)),
                cell_interval(s(Statistic::CpuPercent)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Scale: one hub, many agents\n\n\
         One `ipc-hub` hub (multi-thread runtime) with N agent processes serving \
         typed calls: the time from spawning the first until the last has joined, \
         a 64 B `call_each` to all of them, the hub process's threads, its \
         resident memory growth per agent, and the CPU of the hub and every agent \
         together while they are connected and idle. Reported, not judged.\n"
    );
    table(
        out,
        &[
            "transport",
            "agents",
            "join [interval]",
            "call_each p50 [interval]",
            "call_each max",
            "hub threads",
            "hub memory / agent",
            "idle CPU, whole system",
        ],
        &rows,
    );
}

fn section_throughput(out: &mut String, ix: &Index<'_>) {
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

fn section_peers(out: &mut String, r: &RunResults, ix: &Index<'_>) {
    let theirs = ix.all(|id| {
        id.group == Group::Peers
            && matches!(id.subject, Subject::Mechanism(m) if m != Mechanism::SharedBuffer)
            && id.statistic == Statistic::P50
    });
    if theirs.is_empty() {
        if r.plan.groups.contains(&Group::Peers) {
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

fn section_baselines(out: &mut String, ix: &Index<'_>) {
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

fn section_serialization(out: &mut String, ix: &Index<'_>) {
    let codecs: Vec<Vec<String>> = ix
        .all(|id| matches!(id.regime, Regime::Encode(_)) && id.statistic == Statistic::Time)
        .into_iter()
        .map(|e| {
            let Regime::Encode(message) = e.id.regime else {
                unreachable!("filtered")
            };
            let decode = ix.get(FigureId {
                regime: Regime::Decode(message),
                ..e.id
            });
            vec![
                e.id.subject.label(),
                message.name().into(),
                cell(ix.stat(e.id, Statistic::EncodedSize)),
                with_interval(e),
                cell_interval(decode),
            ]
        })
        .collect();
    let typed: Vec<Vec<String>> = ix
        .all(|id| matches!(id.regime, Regime::Typed(_)) && id.statistic == Statistic::P50)
        .into_iter()
        .map(|t| {
            let Regime::Typed(codec) = t.id.regime else {
                unreachable!("filtered")
            };
            let raw = ix.get(FigureId {
                regime: Regime::Raw(codec),
                ..t.id
            });
            vec![
                t.id.subject.label(),
                codec.name().into(),
                with_interval(t),
                cell_interval(raw),
            ]
        })
        .collect();
    if codecs.is_empty() && typed.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Serialization\n");
    table(
        out,
        &[
            "codec",
            "message",
            "bytes",
            "encode [interval]",
            "decode [interval]",
        ],
        &codecs,
    );
    table(
        out,
        &[
            "transport",
            "codec",
            "typed round trip p50",
            "raw frame p50",
        ],
        &typed,
    );
}

fn section_resources(out: &mut String, ix: &Index<'_>) {
    let idle: Vec<Vec<String>> = ix
        .all(|id| id.regime == Regime::Idle && id.statistic == Statistic::CpuPercent)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                with_interval(f),
                cell_interval(ix.stat(f.id, Statistic::Rss)),
                ix.stat(f.id, Statistic::SharedMemory)
                    .map_or("-".into(), with_interval),
            ]
        })
        .collect();
    let churn: Vec<Vec<String>> = ix
        .all(|id| id.regime == Regime::Churn)
        .into_iter()
        .map(|f| {
            vec![
                f.id.subject.label(),
                ix.r.plan.churn_cycles.to_string(),
                with_interval(f),
            ]
        })
        .collect();
    if idle.is_empty() && churn.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Resources\n");
    table(
        out,
        &[
            "transport",
            "idle agents",
            "agents' CPU (all together) [interval]",
            "largest agent RSS [interval]",
            "shared memory per agent [interval]",
        ],
        &idle,
    );
    // Which program the idle agents were: their memory is its memory.
    let mut programs: Vec<String> =
        ix.r.idle
            .iter()
            .map(|i| format!("`{}` ({})", i.agent_program, i.variant.label()))
            .collect();
    programs.sort();
    programs.dedup();
    if !programs.is_empty() {
        let _ = writeln!(
            out,
            "Idle agents were played by {} (`ipc-idle-<transport>` links only its transport, as a user's agent does; `ipc-bench` is the runner, every scenario linked in).\n",
            programs.join(", ")
        );
    }
    table(
        out,
        &[
            "transport",
            "connect/disconnect cycles",
            "RSS growth after warm-up [interval]",
        ],
        &churn,
    );
}

fn section_patterns(out: &mut String, ix: &Index<'_>) {
    let rows: Vec<Vec<String>> = ix
        .all(|id| id.group == Group::Patterns && id.statistic == Statistic::Rate)
        .into_iter()
        .map(|f| {
            vec![
                f.id.regime.name(),
                f.id.subject.label(),
                f.id.agents.unwrap_or(0).to_string(),
                with_interval(f),
                cell(ix.stat(f.id, Statistic::P50)),
            ]
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Patterns\n");
    table(
        out,
        &[
            "pattern",
            "transport",
            "agents",
            "deliveries [interval]",
            "round p50",
        ],
        &rows,
    );
}

fn section_logging(out: &mut String, ix: &Index<'_>) {
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
    section_hub(&mut out, &ix);
    section_scale(&mut out, &ix);
    section_latency(&mut out, &ix);
    section_peers(&mut out, r, &ix);
    section_throughput(&mut out, &ix);
    section_baselines(&mut out, &ix);
    section_serialization(&mut out, &ix);
    section_resources(&mut out, &ix);
    section_patterns(&mut out, &ix);
    section_logging(&mut out, &ix);
    section_failures(&mut out, r);
    out
}

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
