//! The Markdown summary, its charts, the recommendations, and the console
//! summary: everything a person reads after a run.

use std::fmt::Write;
use std::path::Path;

use harness::RunResults;

use crate::charts::{Axis, BarChart, LineChart, Series};
use crate::compare::Comparison;
use crate::record::BenchRecord;
use crate::targets::{Direction, Verdict};

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

fn value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" => format!("{}msg/s", rate(v)),
        "x" => format!("{v:.2}x"),
        _ if v != 0.0 && v.abs() < 0.01 => format!("{v:.4} {unit}"),
        _ => format!("{v:.2} {unit}"),
    }
}

/// A one-line verdict per target and transport, e.g. `12.5x headroom`.
fn verdict_cell(t: &crate::targets::TransportVerdict, unit: &str) -> String {
    match (t.value, t.met, t.margin) {
        (Some(v), Some(true), Some(m)) => {
            format!("✅ {} ({}x headroom)", value(v, unit), margin(m))
        }
        (Some(v), Some(false), Some(m)) => {
            format!("❌ {} ({}x of limit)", value(v, unit), margin(1.0 / m))
        }
        _ => "not measured".into(),
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

/// Recommendations derived from this run's numbers.
pub fn recommendations(r: &RunResults) -> Vec<String> {
    let mut out = Vec::new();
    let defaults = ["pipe", "uds", "shm"];
    let small = r.plan.sizes.iter().copied().min().unwrap_or(64);
    let large = r.plan.sizes.iter().copied().max().unwrap_or(1 << 20);

    let mut hot: Vec<_> = r
        .latency
        .iter()
        .filter(|l| {
            defaults.contains(&l.transport.as_str())
                && l.size == small
                && l.regime == "back-to-back"
        })
        .collect();
    hot.sort_by_key(|l| l.stats.p50_ns);
    if let [best, second, ..] = hot.as_slice() {
        let cpu = |label: &str| {
            r.throughput
                .iter()
                .find(|t| t.transport == label && t.size == small)
                .map(|t| format!("{} CPU per message", ns(t.cpu_ns_per_msg)))
                .unwrap_or_default()
        };
        out.push(format!(
            "**Small, latency-critical messages: `{}`.** {} B round trip p50 {} / p99 {}, against {} / {} for `{}` \
             ({:.1}x faster at the median). Cost: {} (vs {} for `{}`).",
            best.transport,
            small,
            ns(best.stats.p50_ns as f64),
            ns(best.stats.p99_ns as f64),
            ns(second.stats.p50_ns as f64),
            ns(second.stats.p99_ns as f64),
            second.transport,
            second.stats.p50_ns as f64 / best.stats.p50_ns.max(1) as f64,
            cpu(&best.transport),
            cpu(&second.transport),
            second.transport,
        ));
    }
    let mut parked: Vec<_> = r
        .latency
        .iter()
        .filter(|l| l.regime == "parked" && l.size == small)
        .collect();
    parked.sort_by_key(|l| l.stats.p50_ns);
    if let Some(best) = parked.first() {
        let list: Vec<String> = parked
            .iter()
            .map(|l| format!("`{}` {}", l.transport, ns(l.stats.p50_ns as f64)))
            .collect();
        out.push(format!(
            "**Messages with pauses between them** (the receiver has gone to sleep): `{}` is quickest, p50 round trip {}.",
            best.transport,
            list.join(", ")
        ));
    }
    let mut bulk: Vec<_> = r.throughput.iter().filter(|t| t.size == large).collect();
    bulk.sort_by(|a, b| b.bytes_per_s.total_cmp(&a.bytes_per_s));
    if let [best, ..] = bulk.as_slice() {
        let others: Vec<String> = bulk
            .iter()
            .skip(1)
            .filter(|t| defaults.contains(&t.transport.as_str()))
            .map(|t| format!("`{}` {}/s", t.transport, bytes(t.bytes_per_s)))
            .collect();
        out.push(format!(
            "**Bulk transfer: `{}`.** {}/s with {} messages ({} CPU per message); {}.",
            best.transport,
            bytes(best.bytes_per_s),
            bytes(large as f64),
            ns(best.cpu_ns_per_msg),
            others.join(", ")
        ));
    }
    let max_agents = r.idle.iter().map(|i| i.agents).max();
    let mut idle: Vec<_> = r
        .idle
        .iter()
        .filter(|i| Some(i.agents) == max_agents)
        .collect();
    idle.sort_by(|a, b| a.agents_cpu_percent.total_cmp(&b.agents_cpu_percent));
    if let Some(best) = idle.first() {
        let list: Vec<String> = idle
            .iter()
            .map(|i| {
                format!(
                    "`{}` {:.3} % CPU, {} RSS each",
                    i.transport,
                    i.agents_cpu_percent,
                    bytes(i.rss_kib_mean * 1024.0)
                )
            })
            .collect();
        out.push(format!(
            "**Many idle agents:** with {} idle agents connected, {}. Lowest: `{}`.",
            best.agents,
            list.join("; "),
            best.transport
        ));
    }
    let max_n = r
        .patterns
        .iter()
        .filter(|p| p.pattern == "fan-out")
        .map(|p| p.agents)
        .max();
    let mut fan: Vec<_> = r
        .patterns
        .iter()
        .filter(|p| p.pattern == "fan-out" && Some(p.agents) == max_n)
        .collect();
    fan.sort_by(|a, b| b.msgs_per_s.total_cmp(&a.msgs_per_s));
    if let [best, ..] = fan.as_slice() {
        out.push(format!(
            "**A hub dealing work to {} agents:** `{}` moves {}msg/s ({}).",
            best.agents,
            best.transport,
            rate(best.msgs_per_s),
            fan.iter()
                .skip(1)
                .map(|p| format!("`{}` {}msg/s", p.transport, rate(p.msgs_per_s)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut codecs: Vec<_> = r
        .serialization
        .iter()
        .filter(|c| c.message == "tool-call")
        .collect();
    codecs.sort_by(|a, b| (a.encode_ns + a.decode_ns).total_cmp(&(b.encode_ns + b.decode_ns)));
    if let [best, ..] = codecs.as_slice() {
        out.push(format!(
            "**Typed messages: `{}`.** A tool call encodes in {} and decodes in {} ({} B); {}.",
            best.codec,
            ns(best.encode_ns),
            ns(best.decode_ns),
            best.encoded_bytes,
            codecs
                .iter()
                .skip(1)
                .map(|c| format!(
                    "`{}` {} + {} ({} B)",
                    c.codec,
                    ns(c.encode_ns),
                    ns(c.decode_ns),
                    c.encoded_bytes
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

/// The headline: targets and regressions in one sentence.
pub fn verdict_line(
    verdicts: &[Verdict],
    comparison: Option<&Comparison>,
    failures: usize,
) -> String {
    let missed: Vec<String> = verdicts
        .iter()
        .flat_map(|v| {
            v.transports
                .iter()
                .filter(|t| t.met == Some(false))
                .map(move |t| format!("{} ({})", v.id, t.transport))
        })
        .collect();
    let checks: usize = verdicts
        .iter()
        .map(|v| v.transports.iter().filter(|t| t.met.is_some()).count())
        .sum();
    let mut line = if missed.is_empty() {
        format!("All {checks} target checks met")
    } else {
        format!(
            "{} of {checks} target checks missed: {}",
            missed.len(),
            missed.join(", ")
        )
    };
    match comparison {
        Some(c) => {
            let n = c.regressions().count();
            if n == 0 {
                let _ = write!(
                    line,
                    "; no regression against the baseline ({} figures compared)",
                    c.compared
                );
            } else {
                let _ = write!(line, "; {n} regression(s) against the baseline");
            }
            let better = c.improvements().count();
            if better > 0 {
                let _ = write!(line, ", {better} improvement(s)");
            }
        }
        None => line.push_str("; no baseline to compare with"),
    }
    if failures > 0 {
        let _ = write!(line, "; {failures} scenario(s) FAILED");
    }
    line.push('.');
    line
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
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

/// Writes the charts into `dir`; returns their file names.
pub fn write_charts(dir: &Path, r: &RunResults) -> std::io::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let small = r.plan.sizes.iter().copied().min().unwrap_or(64);
    let mut save = |name: &str, title: &str, svg: String| -> std::io::Result<()> {
        std::fs::write(dir.join(name), svg)?;
        files.push((name.to_owned(), title.to_owned()));
        Ok(())
    };
    let percentiles = ["p50", "p95", "p99", "p99.9", "max"];
    let series: Vec<Series> = r
        .latency
        .iter()
        .filter(|l| l.size == small)
        .map(|l| Series {
            name: format!(
                "{} {}",
                l.transport,
                if l.regime == "parked" { "(parked)" } else { "" }
            )
            .trim()
            .to_owned(),
            points: [
                l.stats.p50_ns,
                l.stats.p95_ns,
                l.stats.p99_ns,
                l.stats.p999_ns,
                l.stats.max_ns,
            ]
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as f64, v as f64))
            .collect(),
        })
        .collect();
    if !series.is_empty() {
        let title = format!("Round-trip latency percentiles, {small} B");
        let chart = LineChart {
            title: title.clone(),
            x_label: "percentile".into(),
            y_label: "round trip (ns, log)".into(),
            x_axis: Axis::Categories(percentiles.iter().map(|s| s.to_string()).collect()),
            y_axis: Axis::Log,
            series,
        };
        save("latency_percentiles.svg", &title, chart.render())?;
    }
    let mut labels: Vec<&str> = r.throughput.iter().map(|t| t.transport.as_str()).collect();
    labels.dedup();
    let series: Vec<Series> = labels
        .iter()
        .filter(|l| !l.contains("-ring-"))
        .map(|&label| Series {
            name: label.into(),
            points: r
                .throughput
                .iter()
                .filter(|t| t.transport == label)
                .map(|t| (t.size as f64, t.bytes_per_s / 1e6))
                .collect(),
        })
        .collect();
    if !series.is_empty() {
        let title = "One-way throughput by message size".to_string();
        let chart = LineChart {
            title: title.clone(),
            x_label: "message size (bytes, log)".into(),
            y_label: "MB/s (log)".into(),
            x_axis: Axis::Log,
            y_axis: Axis::Log,
            series,
        };
        save("throughput_by_size.svg", &title, chart.render())?;
    }
    let mut pattern_names: Vec<&str> = r.patterns.iter().map(|p| p.pattern.as_str()).collect();
    pattern_names.sort();
    pattern_names.dedup();
    let mut series = Vec::new();
    for pattern in &pattern_names {
        let mut transports: Vec<&str> = r
            .patterns
            .iter()
            .filter(|p| p.pattern == *pattern)
            .map(|p| p.transport.as_str())
            .collect();
        transports.dedup();
        for t in transports {
            series.push(Series {
                name: format!("{pattern} {t}"),
                points: r
                    .patterns
                    .iter()
                    .filter(|p| p.pattern == *pattern && p.transport == t)
                    .map(|p| (p.agents as f64, p.msgs_per_s))
                    .collect(),
            });
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
    let mut groups: Vec<usize> = r.idle.iter().map(|i| i.agents).collect();
    groups.sort();
    groups.dedup();
    let mut idle_labels: Vec<&str> = r.idle.iter().map(|i| i.transport.as_str()).collect();
    idle_labels.dedup();
    if !groups.is_empty() {
        let categories: Vec<String> = groups
            .iter()
            .map(|&n| format!("{n} agent{}", if n == 1 { "" } else { "s" }))
            .collect();
        let cell = |label: &str, n: usize, f: fn(&harness::schema::IdleResult) -> f64| {
            r.idle
                .iter()
                .find(|i| i.transport == label && i.agents == n)
                .map_or(0.0, f)
        };
        let cpu = BarChart {
            title: "CPU of idle agents (all together)".into(),
            y_label: "% of one core".into(),
            categories: categories.clone(),
            series: idle_labels
                .iter()
                .map(|&l| {
                    (
                        l.to_owned(),
                        groups
                            .iter()
                            .map(|&n| cell(l, n, |i| i.agents_cpu_percent))
                            .collect(),
                    )
                })
                .collect(),
        };
        save("idle_cpu.svg", "CPU of idle agents", cpu.render())?;
        let rss = BarChart {
            title: "Resident memory per idle agent".into(),
            y_label: "MiB (mean)".into(),
            categories,
            series: idle_labels
                .iter()
                .map(|&l| {
                    (
                        l.to_owned(),
                        groups
                            .iter()
                            .map(|&n| cell(l, n, |i| i.rss_kib_mean / 1024.0))
                            .collect(),
                    )
                })
                .collect(),
        };
        save("idle_rss.svg", "Memory of idle agents", rss.render())?;
    }
    Ok(files)
}

/// The whole Markdown summary.
pub fn summary(
    record: &BenchRecord,
    verdicts: &[Verdict],
    comparison: Option<(&str, &Comparison)>,
    charts: &[(String, String)],
) -> String {
    let r = &record.results;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmark summary\n");
    let _ = writeln!(
        out,
        "**Verdict:** {}\n",
        verdict_line(verdicts, comparison.map(|c| c.1), r.failures.len())
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
        if r.plan.quick { "quick" } else { "full" },
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
    let pinned = r.latency.iter().any(|l| l.pinned) || r.throughput.iter().any(|t| t.pinned);
    let _ = writeln!(
        out,
        "Regime: round trips unless marked one-way; {}; every message written and verified (sequence + \
         pattern). Absolute times on shared machines move 2-5x between runs: compare within a run, as \
         ratios.\n",
        if pinned {
            "latency, throughput and baselines with the two processes pinned to two different CPUs \
             (patterns, resources and logging unpinned)"
        } else {
            "no process pinned to a CPU"
        }
    );

    let _ = writeln!(out, "## Targets\n");
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
    table(&mut out, &header, &rows);

    let recs = recommendations(r);
    if !recs.is_empty() {
        let _ = writeln!(out, "## Recommendations\n");
        for rec in recs {
            let _ = writeln!(out, "- {rec}");
        }
        out.push('\n');
    }

    if let Some((name, c)) = comparison {
        let _ = writeln!(out, "## Compared with {name}\n");
        let _ = writeln!(out, "Rule: {}.\n", c.rule.describe());
        if c.changes.is_empty() {
            let _ = writeln!(
                out,
                "No figure changed beyond the rule ({} compared).\n",
                c.compared
            );
        } else {
            let rows: Vec<Vec<String>> = c
                .changes
                .iter()
                .map(|ch| {
                    vec![
                        ch.figure.clone(),
                        format!("{:.4}", ch.baseline),
                        format!("{:.4}", ch.current),
                        ch.factor(),
                        format!("{:?}", ch.outcome).to_lowercase(),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["figure", "baseline", "now", "change", "verdict"],
                &rows,
            );
        }
    }

    if !charts.is_empty() {
        let _ = writeln!(out, "## Charts\n");
        for (file, title) in charts {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }

    if !r.latency.is_empty() {
        let _ = writeln!(out, "## Latency (round trip)\n");
        let rows: Vec<Vec<String>> = r
            .latency
            .iter()
            .map(|l| {
                let s = &l.stats;
                vec![
                    l.transport.clone(),
                    bytes(l.size as f64),
                    l.regime.clone(),
                    ns(s.p50_ns as f64),
                    ns(s.p95_ns as f64),
                    ns(s.p99_ns as f64),
                    ns(s.p999_ns as f64),
                    ns(s.max_ns as f64),
                    s.count.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "transport",
                "size",
                "regime",
                "p50",
                "p95",
                "p99",
                "p99.9",
                "max",
                "samples",
            ],
            &rows,
        );
    }
    if !r.throughput.is_empty() {
        let _ = writeln!(
            out,
            "## Throughput (one way, every message verified by the receiver)\n"
        );
        let rows: Vec<Vec<String>> = r
            .throughput
            .iter()
            .map(|t| {
                vec![
                    t.transport.clone(),
                    bytes(t.size as f64),
                    format!("{}msg/s", rate(t.msgs_per_s)),
                    format!("{}/s", bytes(t.bytes_per_s)),
                    ns(t.cpu_ns_per_msg),
                    t.messages.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "transport",
                "size",
                "messages",
                "bytes",
                "CPU / message",
                "count",
            ],
            &rows,
        );
    }
    if !r.baselines.latency.is_empty() || !r.ratios.is_empty() {
        let _ = writeln!(out, "## Baselines and ratios (same run)\n");
        let rows: Vec<Vec<String>> = r
            .baselines
            .latency
            .iter()
            .map(|b| {
                vec![
                    b.mechanism.clone(),
                    bytes(b.size as f64),
                    ns(b.stats.p50_ns as f64),
                    ns(b.stats.p99_ns as f64),
                ]
            })
            .collect();
        table(
            &mut out,
            &["mechanism", "size", "p50 round trip", "p99"],
            &rows,
        );
        let rows: Vec<Vec<String>> = r
            .baselines
            .memcpy
            .iter()
            .map(|m| vec![bytes(m.size as f64), format!("{}/s", bytes(m.bytes_per_s))])
            .collect();
        table(&mut out, &["memcpy size", "bandwidth"], &rows);
        let rows: Vec<Vec<String>> = r
            .ratios
            .iter()
            .map(|x| {
                vec![
                    x.transport.clone(),
                    x.mechanism.clone(),
                    x.metric.clone(),
                    format!("{:.2}x", x.ratio),
                ]
            })
            .collect();
        table(
            &mut out,
            &["transport", "mechanism", "figure", "transport / mechanism"],
            &rows,
        );
    }
    if !r.serialization.is_empty() {
        let _ = writeln!(out, "## Serialization\n");
        let rows: Vec<Vec<String>> = r
            .serialization
            .iter()
            .map(|c| {
                vec![
                    c.codec.clone(),
                    c.message.clone(),
                    c.encoded_bytes.to_string(),
                    ns(c.encode_ns),
                    ns(c.decode_ns),
                ]
            })
            .collect();
        table(
            &mut out,
            &["codec", "message", "bytes", "encode", "decode"],
            &rows,
        );
        let rows: Vec<Vec<String>> = r
            .typed_round_trips
            .iter()
            .map(|t| {
                vec![
                    t.transport.clone(),
                    t.codec.clone(),
                    ns(t.typed_p50_ns as f64),
                    ns(t.raw_p50_ns as f64),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "transport",
                "codec",
                "typed round trip p50",
                "raw frame p50",
            ],
            &rows,
        );
    }
    if !r.idle.is_empty() || !r.churn.is_empty() {
        let _ = writeln!(out, "## Resources\n");
        let rows: Vec<Vec<String>> = r
            .idle
            .iter()
            .map(|i| {
                vec![
                    i.transport.clone(),
                    i.agents.to_string(),
                    format!("{:.1} s", i.window_s),
                    format!("{:.3} %", i.agents_cpu_percent),
                    format!("{:.3} %", i.parent_cpu_percent),
                    bytes(i.rss_kib_mean * 1024.0),
                    bytes(i.rss_kib_max as f64 * 1024.0),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "transport",
                "idle agents",
                "window",
                "agents' CPU",
                "parent CPU",
                "RSS / agent",
                "max RSS",
            ],
            &rows,
        );
        let rows: Vec<Vec<String>> = r
            .churn
            .iter()
            .map(|c| {
                vec![
                    c.transport.clone(),
                    c.cycles.to_string(),
                    c.agent_rss_growth_kib
                        .map_or("n/a (new agent each cycle)".into(), |g| format!("{g} KiB")),
                    format!("{} KiB", c.parent_rss_growth_kib),
                    format!("{} KiB", c.tolerance_kib),
                    if c.leak_suspected {
                        "**leak suspected**".into()
                    } else {
                        "no".into()
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "transport",
                "connect/disconnect cycles",
                "agent RSS growth",
                "parent RSS growth",
                "tolerance",
                "leak?",
            ],
            &rows,
        );
    }
    if !r.patterns.is_empty() {
        let _ = writeln!(out, "## Patterns\n");
        let rows: Vec<Vec<String>> = r
            .patterns
            .iter()
            .map(|p| {
                vec![
                    p.pattern.clone(),
                    p.transport.clone(),
                    p.agents.to_string(),
                    format!("{}msg/s", rate(p.msgs_per_s)),
                    p.latency.as_ref().map_or("-".into(), |l| {
                        format!("{} / {}", ns(l.p50_ns as f64), ns(l.p99_ns as f64))
                    }),
                    p.messages.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "pattern",
                "transport",
                "agents",
                "deliveries",
                "round p50 / p99",
                "messages",
            ],
            &rows,
        );
    }
    if !r.logging.is_empty() {
        let _ = writeln!(
            out,
            "## Event logging (tracing events shipped to a collector)\n"
        );
        let rows: Vec<Vec<String>> = r
            .logging
            .iter()
            .map(|l| {
                vec![
                    l.transport.clone(),
                    l.regime.clone(),
                    format!("{}events/s", rate(l.events_per_s)),
                    ns(l.latency.p50_ns as f64),
                    ns(l.latency.p95_ns as f64),
                    ns(l.latency.p99_ns as f64),
                    l.events.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &["transport", "regime", "rate", "p50", "p95", "p99", "events"],
            &rows,
        );
    }
    if !r.failures.is_empty() {
        let _ = writeln!(out, "## Failed scenarios\n");
        for f in &r.failures {
            let _ = writeln!(out, "- {} / {}: {}", f.group, f.scenario, f.error);
        }
        out.push('\n');
    }
    out
}

/// A short plain-text summary for the console.
pub fn console(
    record: &BenchRecord,
    verdicts: &[Verdict],
    comparison: Option<&Comparison>,
) -> String {
    let r = &record.results;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{}\n",
        verdict_line(verdicts, comparison, r.failures.len())
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
                _ => "-".into(),
            };
            let _ = write!(out, "{cell:>24}");
        }
        out.push('\n');
    }
    let small = r.plan.sizes.iter().copied().min().unwrap_or(64);
    let _ = writeln!(
        out,
        "\n{:<18}{:>14}{:>14}{:>16}",
        "transport", "p50 RTT", "p99 RTT", "msg/s (one way)"
    );
    let mut labels: Vec<&str> = r
        .latency
        .iter()
        .filter(|l| l.size == small && l.regime == "back-to-back")
        .map(|l| l.transport.as_str())
        .collect();
    labels.dedup();
    for label in labels {
        let l = r
            .latency
            .iter()
            .find(|l| l.transport == label && l.size == small && l.regime == "back-to-back");
        let t = r
            .throughput
            .iter()
            .find(|t| t.transport == label && t.size == small);
        let _ = writeln!(
            out,
            "{:<18}{:>14}{:>14}{:>16}",
            format!("{label} {small} B"),
            l.map_or("-".into(), |l| ns(l.stats.p50_ns as f64)),
            l.map_or("-".into(), |l| ns(l.stats.p99_ns as f64)),
            t.map_or("-".into(), |t| rate(t.msgs_per_s)),
        );
    }
    if let Some(c) = comparison {
        for ch in c.regressions() {
            let _ = writeln!(
                out,
                "REGRESSION {}: {:.4} -> {:.4} ({:.2}x worse)",
                ch.figure, ch.baseline, ch.current, ch.worse_by
            );
        }
    }
    for f in &r.failures {
        let _ = writeln!(out, "FAILED {} / {}: {}", f.group, f.scenario, f.error);
    }
    out
}
