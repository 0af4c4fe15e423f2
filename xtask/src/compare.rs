//! Comparing two runs figure by figure, with a rule that respects the
//! noise of shared machines.
//!
//! The rule: a figure *regresses* when it is worse than the baseline by
//! more than the threshold factor (default 3x: absolute times on these
//! machines move 2-5x between runs, see `../shared/MEASURE.md`) **and**,
//! for latency, the current median lies above the baseline's p95 (the
//! ranges do not overlap). Same-run ratios, which cancel most machine
//! noise, use a tighter factor (default 2x). Tiny absolute changes (idle
//! CPU under 0.1 point, memory under 512 KiB) never count.

use std::collections::BTreeMap;

use harness::RunResults;
use serde::Serialize;

/// The thresholds of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    /// Factor by which an absolute figure must worsen.
    pub factor: f64,
    /// Factor by which a same-run ratio must worsen.
    pub ratio_factor: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            factor: 3.0,
            ratio_factor: 2.0,
        }
    }
}

impl Rule {
    /// The rule in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "a figure regresses when it is more than {:.1}x worse than the baseline and, for latency, \
             the current p50 lies above the baseline's p95 (ranges do not overlap); same-run ratios \
             regress when more than {:.1}x worse; idle CPU changes under 0.1 point and memory changes \
             under 512 KiB are ignored",
            self.factor, self.ratio_factor
        )
    }
}

/// How a figure is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Lower is better; `p95` is the top of the baseline's typical range.
    Latency { p95: f64 },
    /// Lower is better.
    Lower,
    /// Higher is better.
    Higher,
    /// A same-run ratio; lower is better.
    RatioLower,
    /// A same-run ratio; higher is better.
    RatioHigher,
    /// Lower is better, ignoring absolute changes below the floor.
    LowerWithFloor(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Figure {
    value: f64,
    kind: Kind,
}

/// Every comparable figure of a run, by a stable key.
fn figures(r: &RunResults) -> BTreeMap<String, Figure> {
    let mut out = BTreeMap::new();
    let mut put = |key: String, value: f64, kind: Kind| {
        if value.is_finite() {
            out.insert(key, Figure { value, kind });
        }
    };
    for l in &r.latency {
        let p95 = l.stats.p95_ns as f64;
        put(
            format!("latency {} {} B {} p50 (ns)", l.transport, l.size, l.regime),
            l.stats.p50_ns as f64,
            Kind::Latency { p95 },
        );
    }
    for t in &r.throughput {
        put(
            format!("throughput {} {} B (msg/s)", t.transport, t.size),
            t.msgs_per_s,
            Kind::Higher,
        );
    }
    for b in &r.baselines.latency {
        put(
            format!("baseline {} {} B p50 (ns)", b.mechanism, b.size),
            b.stats.p50_ns as f64,
            Kind::Latency {
                p95: b.stats.p95_ns as f64,
            },
        );
    }
    for x in &r.ratios {
        let kind = if x.metric.starts_with("bytes/s") {
            Kind::RatioHigher
        } else {
            Kind::RatioLower
        };
        put(
            format!("ratio {} / {} ({})", x.transport, x.mechanism, x.metric),
            x.ratio,
            kind,
        );
    }
    for c in &r.serialization {
        put(
            format!("codec {} {} encode (ns)", c.codec, c.message),
            c.encode_ns,
            Kind::Lower,
        );
        put(
            format!("codec {} {} decode (ns)", c.codec, c.message),
            c.decode_ns,
            Kind::Lower,
        );
    }
    for i in &r.idle {
        put(
            format!("idle {} x{} CPU (% of a core)", i.transport, i.agents),
            i.agents_cpu_percent,
            Kind::LowerWithFloor(0.1),
        );
        put(
            format!("idle {} x{} max RSS (KiB)", i.transport, i.agents),
            i.rss_kib_max as f64,
            Kind::LowerWithFloor(512.0),
        );
    }
    for p in &r.patterns {
        put(
            format!(
                "pattern {} {} x{} (msg/s)",
                p.pattern, p.transport, p.agents
            ),
            p.msgs_per_s,
            Kind::Higher,
        );
    }
    for l in &r.logging {
        if l.regime == "burst" {
            // A burst's latency is queueing, all or nothing from run to
            // run; its rate is the figure.
            put(
                format!("logging {} burst (events/s)", l.transport),
                l.events_per_s,
                Kind::Higher,
            );
        } else {
            put(
                format!("logging {} {} p50 (ns)", l.transport, l.regime),
                l.latency.p50_ns as f64,
                Kind::Latency {
                    p95: l.latency.p95_ns as f64,
                },
            );
        }
    }
    out
}

/// What happened to one figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Worse beyond the rule.
    Regression,
    /// Better beyond the rule.
    Improvement,
}

/// A figure that changed beyond the rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Which figure.
    pub figure: String,
    /// Baseline value.
    pub baseline: f64,
    /// Current value.
    pub current: f64,
    /// How many times worse (>1) or better (<1) it got.
    pub worse_by: f64,
    /// Regression or improvement.
    pub outcome: Outcome,
}

impl Change {
    /// The change as a factor in words: `2.50x worse`, `1.80x better`.
    pub fn factor(&self) -> String {
        if self.worse_by >= 1.0 {
            format!("{:.2}x worse", self.worse_by)
        } else {
            format!("{:.2}x better", 1.0 / self.worse_by)
        }
    }
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The rule applied.
    pub rule: Rule,
    /// Figures compared.
    pub compared: usize,
    /// Figures beyond the rule.
    pub changes: Vec<Change>,
}

impl Comparison {
    /// The regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.outcome == Outcome::Regression)
    }

    /// The improvements.
    pub fn improvements(&self) -> impl Iterator<Item = &Change> {
        self.changes
            .iter()
            .filter(|c| c.outcome == Outcome::Improvement)
    }
}

/// Compares `current` with `baseline` under `rule`.
pub fn compare(baseline: &RunResults, current: &RunResults, rule: Rule) -> Comparison {
    let base = figures(baseline);
    let now = figures(current);
    let mut changes = Vec::new();
    let mut compared = 0;
    for (key, cur) in &now {
        let Some(old) = base.get(key) else { continue };
        compared += 1;
        let lower_better = !matches!(cur.kind, Kind::Higher | Kind::RatioHigher);
        let worse_by = if lower_better {
            cur.value / old.value.max(f64::MIN_POSITIVE)
        } else {
            old.value / cur.value.max(f64::MIN_POSITIVE)
        };
        let factor = match cur.kind {
            Kind::RatioLower | Kind::RatioHigher => rule.ratio_factor,
            _ => rule.factor,
        };
        let significant = match (cur.kind, old.kind) {
            (Kind::LowerWithFloor(floor), _) => (cur.value - old.value).abs() >= floor,
            _ => true,
        };
        let outcome = if worse_by > factor && significant {
            // Latency: the current median must also clear the baseline's p95.
            match old.kind {
                Kind::Latency { p95 } if cur.value <= p95 => None,
                _ => Some(Outcome::Regression),
            }
        } else if worse_by < 1.0 / factor && significant {
            match cur.kind {
                Kind::Latency { p95 } if p95 >= old.value => None,
                _ => Some(Outcome::Improvement),
            }
        } else {
            None
        };
        if let Some(outcome) = outcome {
            changes.push(Change {
                figure: key.clone(),
                baseline: old.value,
                current: cur.value,
                worse_by,
                outcome,
            });
        }
    }
    Comparison {
        rule,
        compared,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::schema::{LatencyResult, ThroughputResult};
    use harness::stats::Recorder;

    fn latency(p50_us: u64, spread_us: u64) -> LatencyResult {
        let mut rec = Recorder::new();
        for i in 0..1000u64 {
            // Most samples near the median, the top 10% up to +spread.
            let extra = if i >= 900 {
                spread_us * (i - 900) / 100
            } else {
                0
            };
            rec.record_ns((p50_us + extra) * 1000);
        }
        LatencyResult {
            transport: "uds".into(),
            size: 64,
            regime: "back-to-back".into(),
            pinned: true,
            stats: rec.summary(),
        }
    }

    fn run(p50_us: u64, spread_us: u64, msgs_per_s: f64) -> RunResults {
        RunResults {
            latency: vec![latency(p50_us, spread_us)],
            throughput: vec![ThroughputResult {
                transport: "uds".into(),
                size: 64,
                messages: 1000,
                seconds: 1.0,
                msgs_per_s,
                bytes_per_s: msgs_per_s * 64.0,
                cpu_ns_per_msg: 1000.0,
                pinned: true,
            }],
            ..RunResults::default()
        }
    }

    #[test]
    fn noise_sized_changes_are_not_flagged() {
        // 2.5x slower and half the throughput: within this machine's noise.
        let c = compare(&run(10, 20, 1e6), &run(25, 20, 0.5e6), Rule::default());
        assert_eq!(c.compared, 2);
        assert!(c.changes.is_empty(), "{:?}", c.changes);
    }

    #[test]
    fn real_regressions_are_flagged() {
        // 5x slower, well above the old p95; throughput a quarter.
        let c = compare(&run(10, 20, 1e6), &run(50, 20, 0.25e6), Rule::default());
        let regressions: Vec<_> = c.regressions().map(|r| r.figure.as_str()).collect();
        assert_eq!(regressions.len(), 2, "{:?}", c.changes);
        assert!(
            regressions
                .iter()
                .any(|f| f.starts_with("latency uds 64 B"))
        );
    }

    #[test]
    fn a_slower_median_inside_the_old_range_is_not_a_regression() {
        // 4x slower median, but the baseline's tail reached that far.
        let c = compare(&run(10, 200, 1e6), &run(40, 200, 1e6), Rule::default());
        assert_eq!(c.regressions().count(), 0, "{:?}", c.changes);
    }

    #[test]
    fn improvements_are_reported_and_the_rule_is_stated() {
        let c = compare(&run(50, 5, 0.2e6), &run(10, 5, 1e6), Rule::default());
        assert_eq!(c.improvements().count(), 2, "{:?}", c.changes);
        assert!(Rule::default().describe().contains("3.0x"));
    }
}
