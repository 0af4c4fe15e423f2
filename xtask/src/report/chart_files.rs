//! The SVG charts of a run, written beside its summary.

use std::collections::BTreeMap;
use std::path::Path;

use harness::figure::FigureId;
use harness::{Group, Regime, RunResults, Statistic, Subject};

use crate::charts::{Axis, BarChart, LineChart, Series};
use crate::report::Index;

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
                && id.regime == Regime::OneWay
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
