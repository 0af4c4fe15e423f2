//! Comparing two runs figure by figure, with a rule built on the trials'
//! intervals, so that a verdict does not flip between identical runs.
//!
//! A judged figure *regresses* when all of these hold:
//! - its interval (over trials) and the baseline's do not overlap, with
//!   the current one on the worse side;
//! - its median is worse than the baseline's by more than the threshold
//!   factor (absolute figures) or the ratio factor (same-run ratios,
//!   which cancel host drift and so take a tighter factor);
//! - the absolute change exceeds the figure's floor (idle CPU, memory).
//!
//! A figure whose own interval (in either run) is wider than its factor
//! is *too noisy to judge*: a change of that size could be noise. Such
//! figures are listed, never flagged. Improvements mirror regressions.
//! Figures that are not judged (tails, CPU costs, bare mechanisms) are
//! reported by the summary but never compared.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::figures::{Better, Figure, Statistic};

/// The thresholds of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rule {
    /// Factor by which an absolute figure's median must worsen.
    pub factor: f64,
    /// Factor by which a same-run ratio's median must worsen.
    pub ratio_factor: f64,
}

impl Default for Rule {
    fn default() -> Self {
        Rule {
            factor: 2.0,
            ratio_factor: 1.5,
        }
    }
}

impl Rule {
    /// The rule in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "a figure regresses when its interval and the baseline's do not overlap and its median is \
             more than {:.1}x worse ({:.1}x for same-run ratios); a figure whose own interval is wider \
             than that factor is too noisy to judge; idle CPU changes under 0.1 point and memory \
             changes under 512 KiB are ignored",
            self.factor, self.ratio_factor
        )
    }

    fn factor_for(&self, f: &Figure) -> f64 {
        if f.id.statistic == Statistic::Ratio {
            self.ratio_factor
        } else {
            self.factor
        }
    }
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
    /// Which figure (its key).
    pub figure: String,
    /// Baseline median and interval.
    pub baseline: (f64, f64, f64),
    /// Current median and interval.
    pub current: (f64, f64, f64),
    /// How many times worse (>1) or better (<1) the median got.
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
    /// Judged figures present in both runs.
    pub compared: usize,
    /// Figures beyond the rule.
    pub changes: Vec<Change>,
    /// Figures too noisy to judge (their interval, in either run, was
    /// wider than the factor), by key.
    pub noisy: Vec<String>,
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
pub fn compare(baseline: &[Figure], current: &[Figure], rule: Rule) -> Comparison {
    let base: BTreeMap<String, &Figure> = baseline.iter().map(|f| (f.id.key(), f)).collect();
    let mut out = Comparison {
        rule,
        compared: 0,
        changes: Vec::new(),
        noisy: Vec::new(),
    };
    for cur in current.iter().filter(|f| f.judged) {
        let key = cur.id.key();
        let Some(old) = base.get(&key) else { continue };
        out.compared += 1;
        let factor = rule.factor_for(cur);
        if (cur.median - old.median).abs() < cur.floor {
            continue;
        }
        if cur.spread() > factor || old.spread() > factor {
            out.noisy.push(key);
            continue;
        }
        // Oriented so that "worse" is larger, whatever the direction.
        let (worse_by, worse_apart, better_apart) = match cur.better {
            Better::Lower => (
                cur.median / old.median.max(f64::MIN_POSITIVE),
                cur.low > old.high,
                cur.high < old.low,
            ),
            Better::Higher => (
                old.median / cur.median.max(f64::MIN_POSITIVE),
                cur.high < old.low,
                cur.low > old.high,
            ),
        };
        let outcome = if worse_by > factor && worse_apart {
            Some(Outcome::Regression)
        } else if worse_by < 1.0 / factor && better_apart {
            Some(Outcome::Improvement)
        } else {
            None
        };
        if let Some(outcome) = outcome {
            out.changes.push(Change {
                figure: key,
                baseline: (old.median, old.low, old.high),
                current: (cur.median, cur.low, cur.high),
                worse_by,
                outcome,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{FigureId, Subject, Unit};
    use crate::plan::Group;
    use crate::schema::Regime;
    use crate::transport::{Transport, Variant};

    fn figure(statistic: Statistic, better: Better, trials: &[f64]) -> Figure {
        let id = FigureId {
            group: Group::Latency,
            subject: Subject::Transport(Variant::of(Transport::Uds)),
            regime: Regime::BackToBack,
            size: Some(64),
            agents: None,
            statistic,
        };
        let unit = if better == Better::Lower {
            Unit::Ns
        } else {
            Unit::PerS
        };
        Figure::new(id, unit, better, trials.to_vec())
    }

    fn p50(trials: &[f64]) -> Figure {
        figure(Statistic::P50, Better::Lower, trials)
    }

    #[test]
    fn overlapping_intervals_are_not_a_regression() {
        // The median 2.5x worse, but one current trial is as fast as the
        // baseline's slowest: the intervals overlap.
        let c = compare(
            &[p50(&[10.0, 11.0, 12.0, 13.0, 25.0])],
            &[p50(&[24.0, 26.0, 27.0, 28.0, 30.0])],
            Rule::default(),
        );
        assert_eq!((c.compared, c.changes.len()), (1, 0), "{c:?}");
    }

    #[test]
    fn a_clear_slowdown_is_flagged_and_a_clear_speedup_reported() {
        let old = [p50(&[10.0, 10.5, 11.0, 11.5, 12.0])];
        let new = [p50(&[30.0, 31.0, 32.0, 33.0, 34.0])];
        let c = compare(&old, &new, Rule::default());
        let r: Vec<_> = c.regressions().collect();
        assert_eq!(r.len(), 1, "{c:?}");
        assert!(r[0].factor().starts_with("2.91x worse"));
        let c = compare(&new, &old, Rule::default());
        assert_eq!(c.improvements().count(), 1);
        assert_eq!(c.regressions().count(), 0);
    }

    #[test]
    fn separated_but_small_changes_are_not_flagged() {
        // 1.5x slower, tight intervals apart: real, but under the factor.
        let c = compare(
            &[p50(&[10.0, 10.1, 10.2, 10.3, 10.4])],
            &[p50(&[15.0, 15.1, 15.2, 15.3, 15.4])],
            Rule::default(),
        );
        assert!(c.changes.is_empty(), "{c:?}");
    }

    #[test]
    fn noisy_figures_are_listed_not_judged() {
        let c = compare(
            &[p50(&[10.0, 11.0, 12.0, 13.0, 14.0])],
            &[p50(&[30.0, 40.0, 50.0, 60.0, 90.0])],
            Rule::default(),
        );
        assert_eq!(c.noisy.len(), 1);
        assert!(c.changes.is_empty());
    }

    #[test]
    fn higher_is_better_figures_regress_downwards() {
        let rate = |v: &[f64]| figure(Statistic::Rate, Better::Higher, v);
        let c = compare(
            &[rate(&[1e6, 1.05e6, 1.1e6, 1.1e6, 1.2e6])],
            &[rate(&[3e5, 3.1e5, 3.2e5, 3.3e5, 3.4e5])],
            Rule::default(),
        );
        assert_eq!(c.regressions().count(), 1, "{c:?}");
        assert!(Rule::default().describe().contains("2.0x"));
    }

    #[test]
    fn unjudged_figures_are_not_compared() {
        let tail = |v: &[f64]| figure(Statistic::P99, Better::Lower, v);
        let c = compare(&[tail(&[10.0; 5])], &[tail(&[1000.0; 5])], Rule::default());
        assert_eq!((c.compared, c.changes.len()), (0, 0));
    }
}
