//! Runs a [`Plan`]: every scenario of every chosen group, in order, with
//! progress reported after each step. A failing scenario is recorded in
//! [`RunResults::failures`] and the run goes on.

use std::time::{Duration, Instant};

use ipc_core::{Bincode, Json, Postcard};

use crate::error::Result;
use crate::plan::{Group, Plan};
use crate::scenarios::latency::Regime;
use crate::scenarios::{
    baselines, latency, logging, patterns, resources, serialization, throughput,
};
use crate::schema::{Failure, Ratio, RunResults, SCHEMA_VERSION};
use crate::transport::{Strategy, Transport, Variant};

/// Where a run is, after a step.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    /// Steps done, including this one.
    pub done: usize,
    /// Steps in the run.
    pub total: usize,
    /// The group of the step.
    pub group: Group,
    /// What the step measured.
    pub label: &'a str,
    /// Whether it failed (and why).
    pub error: Option<&'a str>,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Estimated time left, from the pace so far.
    pub remaining: Duration,
}

type Action = Box<dyn FnOnce(&mut RunResults) -> Result<()>>;

struct Step {
    group: Group,
    label: String,
    /// Relative cost, for the time-left estimate.
    weight: f64,
    action: Action,
}

fn step(
    group: Group,
    label: String,
    weight: f64,
    action: impl FnOnce(&mut RunResults) -> Result<()> + 'static,
) -> Step {
    Step {
        group,
        label,
        weight,
        action: Box::new(action),
    }
}

/// The latency variants and sizes measured for `transport`.
fn latency_variants(transport: Transport, plan: &Plan) -> Vec<(Variant, Vec<usize>, Regime)> {
    let parked = Regime::Parked(Duration::from_micros(plan.parked_gap_us));
    let small = vec![plan.sizes[0]];
    match transport {
        Transport::Shm => vec![
            (
                Variant::shm(Strategy::Adaptive),
                plan.sizes.clone(),
                Regime::BackToBack,
            ),
            (
                Variant::shm(Strategy::Spin),
                plan.sizes.clone(),
                Regime::BackToBack,
            ),
            (
                Variant::shm(Strategy::SpinYield),
                small.clone(),
                Regime::BackToBack,
            ),
            (
                Variant::shm(Strategy::Blocking),
                small.clone(),
                Regime::BackToBack,
            ),
            (Variant::shm(Strategy::Adaptive), small.clone(), parked),
            (Variant::shm(Strategy::Blocking), small, parked),
        ],
        t => vec![
            (Variant::of(t), plan.sizes.clone(), Regime::BackToBack),
            (Variant::of(t), small, parked),
        ],
    }
}

/// The throughput variants and sizes measured for `transport`: shared
/// memory also with zero copy, and with other ring sizes at the smallest
/// and largest message size (why the default ring is what it is).
fn throughput_variants(transport: Transport, plan: &Plan) -> Vec<(Variant, Vec<usize>)> {
    let all = plan.sizes.clone();
    match transport {
        Transport::Shm => {
            let ends = vec![plan.sizes[0], *plan.sizes.last().expect("validated")];
            let mut out = vec![
                (Variant::of(Transport::Shm), all.clone()),
                (Variant::shm_zero_copy(), all),
            ];
            out.extend(RING_SIZES_KIB.map(|kib| (Variant::shm_ring(kib), ends.clone())));
            out
        }
        t => vec![(Variant::of(t), all)],
    }
}

/// Ring sizes compared (at the largest and smallest message size) to show
/// why the default is what it is.
const RING_SIZES_KIB: [u32; 3] = [256, 1024, 4096];

fn plan_steps(plan: &Plan) -> Vec<Step> {
    let mut steps = Vec::new();
    let p = plan.clone();
    let pin = plan.pin;
    for &group in &plan.groups {
        match group {
            Group::Baselines => {
                let w = p.latency_warmup;
                for &size in &p.sizes {
                    let n = p.latency_samples_at(size);
                    steps.push(step(
                        group,
                        format!("pipe round trip {size} B"),
                        1.0,
                        move |r| {
                            r.baselines.latency.push(baselines::pipe(size, w, n, pin)?);
                            Ok(())
                        },
                    ));
                    steps.push(step(
                        group,
                        format!("socketpair round trip {size} B"),
                        1.0,
                        move |r| {
                            r.baselines
                                .latency
                                .push(baselines::socketpair(size, w, n, pin)?);
                            Ok(())
                        },
                    ));
                }
                let n = p.latency_samples;
                steps.push(step(group, "cache-line ping-pong".into(), 0.5, move |r| {
                    r.baselines.latency.push(baselines::cache_line(w, n, pin)?);
                    Ok(())
                }));
                steps.push(step(group, "futex ping-pong".into(), 1.0, move |r| {
                    r.baselines.latency.push(baselines::futex(w, n, pin)?);
                    Ok(())
                }));
                let budget = p.throughput_bytes;
                steps.push(step(group, "memcpy bandwidth".into(), 1.0, move |r| {
                    for size in [64, 256, 1024, 4096, 64 << 10, 1 << 20, 64 << 20] {
                        r.baselines.memcpy.push(baselines::memcpy(size, budget));
                    }
                    Ok(())
                }));
            }
            Group::Throughput => {
                for &t in &p.transports {
                    for (variant, sizes) in throughput_variants(t, &p) {
                        for size in sizes {
                            let count = p.throughput_messages(size);
                            let label = format!("{} {size} B x {count}", variant.label());
                            steps.push(step(group, label, 1.0, move |r| {
                                r.throughput
                                    .push(throughput::measure(variant, size, count, pin)?);
                                Ok(())
                            }));
                        }
                    }
                }
            }
            Group::Latency => {
                for &t in &p.transports {
                    for (variant, sizes, regime) in latency_variants(t, &p) {
                        for size in sizes {
                            let (w, n) = match regime {
                                Regime::BackToBack => {
                                    (p.latency_warmup, p.latency_samples_at(size))
                                }
                                Regime::Parked(_) => (p.latency_warmup / 10, p.parked_samples),
                            };
                            let label = format!("{} {size} B {}", variant.label(), regime.name());
                            steps.push(step(group, label, 1.0, move |r| {
                                r.latency
                                    .push(latency::measure(variant, size, regime, w, n, pin)?);
                                Ok(())
                            }));
                        }
                    }
                }
            }
            Group::Serialization => {
                let iterations = p.codec_iterations;
                steps.push(step(group, "codecs".into(), 2.0, move |r| {
                    r.serialization = serialization::codecs(iterations)?;
                    Ok(())
                }));
                for &t in &p.transports {
                    let variant = Variant::of(t);
                    let n = p.latency_samples / 4;
                    steps.push(step(
                        group,
                        format!("typed round trips over {t}"),
                        1.5,
                        move |r| {
                            r.typed_round_trips
                                .push(serialization::typed_round_trip(variant, Postcard, n)?);
                            r.typed_round_trips
                                .push(serialization::typed_round_trip(variant, Bincode, n)?);
                            r.typed_round_trips
                                .push(serialization::typed_round_trip(variant, Json, n)?);
                            Ok(())
                        },
                    ));
                }
            }
            Group::Resources => {
                let window = Duration::from_millis(p.idle_window_ms);
                for &t in &p.transports {
                    let variant = Variant::of(t);
                    for &agents in &p.idle_agents {
                        let weight = 1.0 + window.as_secs_f64() * 4.0;
                        steps.push(step(
                            group,
                            format!("{t}: {agents} idle agents"),
                            weight,
                            move |r| {
                                r.idle.push(resources::idle(variant, agents, window)?);
                                Ok(())
                            },
                        ));
                    }
                    let cycles = p.churn_cycles;
                    steps.push(step(
                        group,
                        format!("{t}: {cycles} connect/disconnect cycles"),
                        3.0,
                        move |r| {
                            r.churn.push(resources::churn(variant, cycles)?);
                            Ok(())
                        },
                    ));
                }
            }
            Group::Patterns => {
                type PatternFn = fn(Variant, usize, u64) -> Result<crate::schema::PatternResult>;
                let patterns: [(&str, PatternFn); 5] = [
                    ("fan-out", patterns::fan_out),
                    ("fan-in", patterns::fan_in),
                    ("broadcast", patterns::broadcast),
                    ("pipeline", patterns::pipeline),
                    ("all-to-all", patterns::all_to_all),
                ];
                for &t in &p.transports {
                    for (name, run) in patterns {
                        let needs_addresses = matches!(name, "pipeline" | "all-to-all");
                        if needs_addresses && !t.has_addresses() {
                            continue;
                        }
                        for &agents in &p.agent_counts {
                            if name == "all-to-all" && agents < 2 {
                                continue;
                            }
                            let messages = p.pattern_messages;
                            let variant = Variant::of(t);
                            steps.push(step(
                                group,
                                format!("{name} {t} x{agents}"),
                                1.5,
                                move |r| {
                                    r.patterns.push(run(variant, agents, messages)?);
                                    Ok(())
                                },
                            ));
                        }
                    }
                }
            }
            Group::Logging => {
                for &t in &p.transports {
                    let variant = Variant::of(t);
                    let events = p.log_events;
                    steps.push(step(
                        group,
                        format!("{t}: {events} events, burst"),
                        1.0,
                        move |r| {
                            r.logging
                                .push(logging::collect(variant, events, Duration::ZERO)?);
                            Ok(())
                        },
                    ));
                    let paced = (events / 10).max(10);
                    steps.push(step(
                        group,
                        format!("{t}: {paced} events, 1 ms apart"),
                        2.0,
                        move |r| {
                            r.logging.push(logging::collect(
                                variant,
                                paced,
                                Duration::from_millis(1),
                            )?);
                            Ok(())
                        },
                    ));
                }
            }
        }
    }
    steps
}

/// Runs `plan`, calling `on_step` after every step.
pub fn run(plan: &Plan, mut on_step: impl FnMut(&Progress<'_>)) -> Result<RunResults> {
    plan.validate()?;
    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        plan: plan.clone(),
        ..RunResults::default()
    };
    let steps = plan_steps(plan);
    let total = steps.len();
    let total_weight: f64 = steps.iter().map(|s| s.weight).sum();
    let mut done_weight = 0.0;
    let start = Instant::now();
    for (i, s) in steps.into_iter().enumerate() {
        let outcome = (s.action)(&mut results);
        let error = outcome.err().map(|e| e.to_string());
        if let Some(e) = &error {
            results.failures.push(Failure {
                group: s.group.name().into(),
                scenario: s.label.clone(),
                error: e.clone(),
            });
        }
        done_weight += s.weight;
        let elapsed = start.elapsed();
        let pace = elapsed.as_secs_f64() / done_weight;
        on_step(&Progress {
            done: i + 1,
            total,
            group: s.group,
            label: &s.label,
            error: error.as_deref(),
            elapsed,
            remaining: Duration::from_secs_f64(pace * (total_weight - done_weight).max(0.0)),
        });
    }
    results.ratios = ratios(&results);
    results.duration_s = start.elapsed().as_secs_f64();
    Ok(results)
}

/// Each transport's figure over its mechanism's, where both were measured.
pub fn ratios(r: &RunResults) -> Vec<Ratio> {
    let mut out = Vec::new();
    let size = r.plan.sizes.first().copied().unwrap_or(64);
    let latency_p50 = |label: &str, regime: &str| {
        r.latency
            .iter()
            .find(|l| l.transport == label && l.size == size && l.regime == regime)
            .map(|l| l.stats.p50_ns as f64)
    };
    let baseline_p50 = |mechanism: &str, size: Option<usize>| {
        r.baselines
            .latency
            .iter()
            .find(|b| b.mechanism == mechanism && size.is_none_or(|s| b.size == s))
            .map(|b| b.stats.p50_ns as f64)
    };
    let pairs = [
        ("pipe", "back-to-back", "pipe", Some(size)),
        ("uds", "back-to-back", "socketpair", Some(size)),
        ("shm-spin", "back-to-back", "cache-line", None),
        ("shm", "back-to-back", "cache-line", None),
        ("shm", "parked", "futex", None),
        ("shm-blocking", "parked", "futex", None),
    ];
    for (label, regime, mechanism, msize) in pairs {
        if let (Some(t), Some(m)) = (latency_p50(label, regime), baseline_p50(mechanism, msize)) {
            out.push(Ratio {
                transport: label.into(),
                mechanism: mechanism.into(),
                metric: format!("p50 round trip, {size} B, {regime}"),
                transport_value: t,
                mechanism_value: m,
                ratio: t / m,
            });
        }
    }
    // memcpy of small blocks runs from L1 cache at rates no IPC can mean
    // anything against; compare bulk sizes only.
    for t in r.throughput.iter().filter(|t| t.size >= 64 << 10) {
        if let Some(m) = r.baselines.memcpy.iter().find(|m| m.size == t.size)
            && t.transport.starts_with("shm")
        {
            out.push(Ratio {
                transport: t.transport.clone(),
                mechanism: "memcpy".into(),
                metric: format!("bytes/s, {} B messages", t.size),
                transport_value: t.bytes_per_s,
                mechanism_value: m.bytes_per_s,
                ratio: t.bytes_per_s / m.bytes_per_s,
            });
        }
    }
    out
}
