//! A figure: what identifies it across runs (group, subject, regime,
//! size, agents, statistic), its unit and better direction, and the
//! median of its trial values with an order-statistic interval.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dimension::{CodecKind, Mechanism, Regime};
use crate::plan::Group;
use crate::variant::{Transport, Variant};

/// What is measured of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Statistic {
    /// Median of the trial's samples.
    P50,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest sample.
    Max,
    /// CPU time of both processes per operation.
    CpuPerOp,
    /// Messages (or events) per second.
    Rate,
    /// Payload bytes per second.
    Bandwidth,
    /// CPU as a percentage of one core.
    CpuPercent,
    /// Resident memory (largest of the agents).
    Rss,
    /// Shared memory per agent (the pages its connection's segment holds).
    SharedMemory,
    /// Memory growth.
    Growth,
    /// Time per operation (codecs).
    Time,
    /// Encoded size (codecs).
    EncodedSize,
    /// The subject's figure over its mechanism's, paired per trial.
    Ratio,
    /// Threads of a process.
    Threads,
}

impl Statistic {
    /// Its name in reports and keys.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::P50 => "p50",
            Statistic::P95 => "p95",
            Statistic::P99 => "p99",
            Statistic::P999 => "p99.9",
            Statistic::Max => "max",
            Statistic::CpuPerOp => "cpu-per-op",
            Statistic::Rate => "rate",
            Statistic::Bandwidth => "bandwidth",
            Statistic::CpuPercent => "cpu",
            Statistic::Rss => "rss",
            Statistic::SharedMemory => "shared-memory",
            Statistic::Growth => "growth",
            Statistic::Time => "time",
            Statistic::EncodedSize => "size",
            Statistic::Ratio => "ratio",
            Statistic::Threads => "threads",
        }
    }
}

/// The unit of a figure's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// Nanoseconds.
    Ns,
    /// Per second.
    PerS,
    /// Bytes per second.
    BytesPerS,
    /// Percent of one core.
    PercentCore,
    /// KiB.
    Kib,
    /// Bytes.
    Bytes,
    /// A dimensionless ratio.
    Times,
    /// A count (threads).
    Count,
}

impl Unit {
    /// The unit as written after a value.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::PerS => "/s",
            Unit::BytesPerS => "B/s",
            Unit::PercentCore => "% of a core",
            Unit::Kib => "KiB",
            Unit::Bytes => "B",
            Unit::Times => "x",
            Unit::Count => "",
        }
    }
}

/// Which direction is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Better {
    /// Smaller values are better (times, CPU, memory, ratios of times).
    Lower,
    /// Larger values are better (rates, bandwidth).
    Higher,
}

/// Whose figure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    /// A transport variant.
    Transport(Variant),
    /// A bare mechanism.
    Mechanism(Mechanism),
    /// A codec, alone.
    Codec(CodecKind),
    /// A transport variant over the mechanism it rides on.
    Over(Variant, Mechanism),
    /// A transport variant over another variant of it (the default wait
    /// strategy over `Spin`), or over another transport (shm's hub call
    /// over uds's).
    Versus(Variant, Variant),
    /// A variant's figure over its own figure in another regime (a call
    /// through the hub over the blocking round trip).
    Path(Variant, Regime),
}

impl Subject {
    /// Its label in reports: `shm`, `socketpair`, `postcard`, `shm / shared-buffer`.
    pub fn label(&self) -> String {
        match self {
            Subject::Transport(v) => v.label(),
            Subject::Mechanism(m) => m.name().into(),
            Subject::Codec(c) => c.name().into(),
            Subject::Over(v, m) => format!("{} / {}", v.label(), m.name()),
            Subject::Versus(v, w) => format!("{} / {}", v.label(), w.label()),
            Subject::Path(v, r) => format!("{} / {} {}", v.label(), v.label(), r.name()),
        }
    }

    /// The transport crate, if this is (or is over) one.
    pub fn transport(&self) -> Option<Transport> {
        match self {
            Subject::Transport(v)
            | Subject::Over(v, _)
            | Subject::Versus(v, _)
            | Subject::Path(v, _) => Some(v.transport),
            _ => None,
        }
    }
}

/// What identifies a figure within and across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FigureId {
    /// The scenario group.
    pub group: Group,
    /// Whose figure.
    pub subject: Subject,
    /// How the traffic flowed.
    pub regime: Regime,
    /// Message size, bytes, where it applies.
    pub size: Option<usize>,
    /// Agent processes, where it applies.
    pub agents: Option<usize>,
    /// What is measured.
    pub statistic: Statistic,
}

impl FigureId {
    /// A stable, readable key: `latency/shm/back-to-back/64B/p50`.
    pub fn key(&self) -> String {
        let mut key = format!(
            "{}/{}/{}",
            self.group.name(),
            self.subject.label().replace(" / ", "-over-"),
            self.regime.name().replace(' ', "-")
        );
        if let Some(size) = self.size {
            key.push_str(&format!("/{size}B"));
        }
        if let Some(agents) = self.agents {
            key.push_str(&format!("/x{agents}"));
        }
        key.push('/');
        key.push_str(self.statistic.name());
        key
    }
}

impl fmt::Display for FigureId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One figure: its trials and their summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What it is.
    pub id: FigureId,
    /// Unit of the values.
    pub unit: Unit,
    /// Which direction is better.
    pub better: Better,
    /// Whether comparisons judge it (tails, CPU costs and the bare
    /// mechanisms are reported, not judged: a mechanism's speed is the
    /// machine's, not the code's).
    pub judged: bool,
    /// Absolute changes smaller than this are never a regression (idle
    /// CPU, memory: tiny values whose ratio means nothing).
    pub floor: f64,
    /// One value per trial, in trial order.
    pub trials: Vec<f64>,
    /// Median of the trials.
    pub median: f64,
    /// Lower end of the confidence interval of the median.
    pub low: f64,
    /// Upper end of the confidence interval of the median.
    pub high: f64,
    /// Coverage of that interval (0.9375 for five trials: their range).
    pub confidence: f64,
}

impl Figure {
    /// A figure from its trial values (at least one).
    pub fn new(id: FigureId, unit: Unit, better: Better, trials: Vec<f64>) -> Self {
        let summary = Summary::of(&trials);
        let judged = !matches!(id.subject, Subject::Mechanism(_))
            && !id.regime.unpinned()
            // How cost grows with agents is read, not gated: join times
            // and idle CPU of a thousand processes move with the host.
            && id.group != Group::Scale
            && matches!(
                id.statistic,
                Statistic::P50
                    | Statistic::Rate
                    | Statistic::Ratio
                    | Statistic::Time
                    | Statistic::CpuPercent
                    | Statistic::Rss
            );
        let floor = match id.statistic {
            Statistic::CpuPercent => 0.1,
            Statistic::Rss => 512.0,
            _ => 0.0,
        };
        Figure {
            id,
            unit,
            better,
            judged,
            floor,
            trials,
            median: summary.median,
            low: summary.low,
            high: summary.high,
            confidence: summary.confidence,
        }
    }

    /// How wide the interval is, as a factor (`high / low`): 1 is a
    /// figure that did not move between trials.
    pub fn spread(&self) -> f64 {
        if self.low > 0.0 {
            self.high / self.low
        } else if self.high == self.low {
            1.0
        } else {
            f64::INFINITY
        }
    }
}

/// Median and order-statistic interval of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The median.
    pub median: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// Its coverage.
    pub confidence: f64,
}

/// The coverage asked of the median's interval.
pub const CONFIDENCE: f64 = 0.90;

impl Summary {
    /// The median of `values` and the narrowest symmetric order-statistic
    /// interval `[x(k), x(n+1-k)]` that covers the true median with at
    /// least [`CONFIDENCE`] (distribution-free: the number of trials below
    /// the median is Binomial(n, 1/2)). With too few trials for that, the
    /// whole range, with its lower coverage.
    pub fn of(values: &[f64]) -> Self {
        let mut x: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        x.sort_by(f64::total_cmp);
        let n = x.len();
        if n == 0 {
            return Summary {
                median: f64::NAN,
                low: f64::NAN,
                high: f64::NAN,
                confidence: 0.0,
            };
        }
        let median = if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        };
        // coverage(k) = 1 - 2 P(Bin(n, 1/2) <= k - 1)
        let coverage = |k: usize| 1.0 - 2.0 * binomial_cdf_half(n, k - 1);
        let mut k = 1;
        while k < n.div_ceil(2) && coverage(k + 1) >= CONFIDENCE {
            k += 1;
        }
        Summary {
            median,
            low: x[k - 1],
            high: x[n - k],
            confidence: if n == 1 { 0.0 } else { coverage(k) },
        }
    }
}

/// P(Bin(n, 1/2) <= k).
fn binomial_cdf_half(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = term;
    for i in 1..=k.min(n) {
        term *= (n + 1 - i) as f64 / i as f64;
        sum += term;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistic_intervals_have_the_stated_coverage() {
        // Five trials: only the range covers 90 % (93.75 %).
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!((s.median, s.low, s.high), (3.0, 1.0, 5.0));
        assert!((s.confidence - 0.9375).abs() < 1e-12);
        // Eight trials: the second-smallest and second-largest (92.97 %).
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert_eq!((s.median, s.low, s.high), (4.5, 2.0, 7.0));
        assert!((s.confidence - 0.9296875).abs() < 1e-12);
        // Too few trials for 90 %: the range, with what it covers.
        let s = Summary::of(&[2.0, 1.0, 3.0]);
        assert_eq!((s.low, s.high), (1.0, 3.0));
        assert!((s.confidence - 0.75).abs() < 1e-12);
        assert_eq!(Summary::of(&[7.0]).confidence, 0.0);
        assert!(Summary::of(&[]).median.is_nan());
    }
}
