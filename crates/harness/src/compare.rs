//! Comparing runs figure by figure, with rules built on the trials'
//! intervals, so that a verdict does not flip between identical runs.
//!
//! Two comparisons, for two questions:
//!
//! - **A/B** ([`paired`]): an old build and a new one measured in the same
//!   run, cell by cell, so both sides met the same host. Each figure is
//!   judged by its per-trial ratio new / old (oriented so that above 1 is
//!   worse) and that ratio's interval over trials: a regression is an
//!   interval wholly above the factor. This is the gate.
//! - **Across runs** ([`compare`]): this run against an earlier one from
//!   the same machine. Minutes apart, a shared host moves absolute figures
//!   2-3x, so only same-run ratios (a transport over the mechanism
//!   measured beside it) are judged there. A judged ratio *regresses* when
//!   its interval and the baseline's do not overlap, on the worse side,
//!   and its median is worse by more than the ratio factor. An absolute
//!   figure that moved that way is reported as *moved*, with the share
//!   of the move its same-run ratio did not make (the host's drift); it
//!   never fails a run.
//!
//! A figure whose interval is wider than its factor is *too noisy to
//! judge*: a change of that size could be noise. Such figures are listed,
//! never flagged. Improvements mirror regressions. Figures that are not
//! judged (tails, CPU costs, bare mechanisms, unpinned regimes) are
//! reported but never compared.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::figure::{Better, Figure, FigureId, Statistic, Subject, Summary};

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
            "a same-run ratio regresses when its interval and the baseline's do not overlap and its \
             median is more than {:.1}x worse; an absolute figure that moved more than {:.1}x the same \
             way is reported with the host's share of the move, never as a regression; a figure whose \
             own interval is wider than its factor is too noisy to judge; idle CPU changes under 0.1 \
             point and memory changes under 512 KiB are ignored",
            self.ratio_factor, self.factor
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
    /// An absolute figure that moved beyond the rule between runs:
    /// reported with the host's share, never a regression.
    Moved,
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
    /// Regression, improvement, or (an absolute figure) moved.
    pub outcome: Outcome,
    /// For a moved figure: how much of the move its same-run ratio did
    /// not make, that is how far the mechanism beside it moved too (the
    /// host's drift, as a factor in the same orientation as `worse_by`);
    /// `None` if the figure has no same-run ratio.
    pub host: Option<f64>,
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
    /// Judged same-run ratios present in both runs.
    pub compared: usize,
    /// Judged absolute figures present in both runs (reported when they
    /// move, never a regression).
    pub reported: usize,
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

    /// The absolute figures that moved.
    pub fn moved(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.outcome == Outcome::Moved)
    }
}

/// `worse / better` of two values, oriented so that above 1 is worse.
fn worse_by(better: Better, old: f64, new: f64) -> f64 {
    match better {
        Better::Lower => new / old.max(f64::MIN_POSITIVE),
        Better::Higher => old / new.max(f64::MIN_POSITIVE),
    }
}

/// The same-run ratio of an absolute figure: the ratio figure with the
/// same group, regime, size and agents whose subject sets this figure's
/// transport variant over something measured beside it.
fn ratio_of<'a>(
    figure: &Figure,
    figures: &'a BTreeMap<FigureId, &'a Figure>,
) -> Option<&'a Figure> {
    let Subject::Transport(v) = figure.id.subject else {
        return None;
    };
    figures.values().copied().find(|r| {
        r.id.statistic == Statistic::Ratio
            && r.id.group == figure.id.group
            && r.id.regime == figure.id.regime
            && r.id.size == figure.id.size
            && r.id.agents == figure.id.agents
            && match r.id.subject {
                Subject::Over(w, _) | Subject::Path(w, _) => w == v,
                _ => false,
            }
            // A rate's ratio pairs rates, a time's ratio pairs medians.
            && matches!(
                (figure.id.statistic, r.better),
                (Statistic::P50, Better::Lower) | (Statistic::Rate, Better::Higher)
            )
    })
}

/// Compares `current` with an earlier run, `baseline`, under `rule`:
/// same-run ratios are judged, absolute figures reported when they move.
pub fn compare(baseline: &[Figure], current: &[Figure], rule: Rule) -> Comparison {
    let base: BTreeMap<String, &Figure> = baseline.iter().map(|f| (f.id.key(), f)).collect();
    let base_ids: BTreeMap<FigureId, &Figure> = baseline.iter().map(|f| (f.id, f)).collect();
    let cur_ids: BTreeMap<FigureId, &Figure> = current.iter().map(|f| (f.id, f)).collect();
    let mut out = Comparison {
        rule,
        compared: 0,
        reported: 0,
        changes: Vec::new(),
        noisy: Vec::new(),
    };
    for cur in current.iter().filter(|f| f.judged) {
        let key = cur.id.key();
        let Some(old) = base.get(&key) else { continue };
        let is_ratio = cur.id.statistic == Statistic::Ratio;
        if is_ratio {
            out.compared += 1;
        } else {
            out.reported += 1;
        }
        let factor = rule.factor_for(cur);
        if (cur.median - old.median).abs() < cur.floor {
            continue;
        }
        if cur.spread() > factor || old.spread() > factor {
            // Only what can fail a run counts as blind to it.
            if is_ratio {
                out.noisy.push(key);
            }
            continue;
        }
        let worse = worse_by(cur.better, old.median, cur.median);
        // Oriented so that "worse" is larger, whatever the direction.
        let (worse_apart, better_apart) = match cur.better {
            Better::Lower => (cur.low > old.high, cur.high < old.low),
            Better::Higher => (cur.high < old.low, cur.low > old.high),
        };
        let beyond = if worse > factor && worse_apart {
            Some(Outcome::Regression)
        } else if worse < 1.0 / factor && better_apart {
            Some(Outcome::Improvement)
        } else {
            None
        };
        let Some(beyond) = beyond else { continue };
        let (outcome, host) = if is_ratio {
            (beyond, None)
        } else {
            let host = ratio_of(cur, &cur_ids)
                .zip(ratio_of(cur, &base_ids))
                .map(|(now, then)| worse / worse_by(now.better, then.median, now.median));
            (Outcome::Moved, host)
        };
        out.changes.push(Change {
            figure: key,
            baseline: (old.median, old.low, old.high),
            current: (cur.median, cur.low, cur.high),
            worse_by: worse,
            outcome,
            host,
        });
    }
    out
}

/// One figure of an A/B run: both sides and their paired ratio.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    /// Which figure (its key).
    pub figure: String,
    /// The unit of `old` and `new`.
    pub unit: crate::figure::Unit,
    /// The old build's median and interval.
    pub old: (f64, f64, f64),
    /// The new build's median and interval.
    pub new: (f64, f64, f64),
    /// Per-trial new / old, oriented so that above 1 is worse: median and
    /// interval over trials.
    pub worse_by: (f64, f64, f64),
    /// Regression or improvement, if the ratio's interval lies wholly
    /// beyond the factor.
    pub outcome: Option<Outcome>,
}

/// An A/B comparison: an old and a new build measured in the same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbComparison {
    /// The factor a paired ratio's interval must lie wholly beyond.
    pub factor: f64,
    /// Every judged figure both sides measured in the same trials.
    pub figures: Vec<Paired>,
    /// Figures too noisy to judge (the paired ratio's interval is wider
    /// than the factor), by key.
    pub noisy: Vec<String>,
    /// Judged figures only one side measured, or not in the same trials.
    pub unpaired: Vec<String>,
}

impl AbComparison {
    /// The rule in words, for reports.
    pub fn describe(&self) -> String {
        format!(
            "a figure regresses when its per-trial ratio new / old has an interval wholly above \
             {:.2}x (improves: wholly below 1/{:.2}); a ratio whose interval is wider than that \
             factor is too noisy to judge; idle CPU changes under 0.1 point and memory changes \
             under 512 KiB are ignored",
            self.factor, self.factor
        )
    }

    /// The regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &Paired> {
        self.figures
            .iter()
            .filter(|p| p.outcome == Some(Outcome::Regression))
    }

    /// The improvements.
    pub fn improvements(&self) -> impl Iterator<Item = &Paired> {
        self.figures
            .iter()
            .filter(|p| p.outcome == Some(Outcome::Improvement))
    }
}

/// Judges `new` against `old`, measured in the same run with their trials
/// interleaved: per figure, the ratio of each trial to the old build's
/// same trial.
pub fn paired(old: &[Figure], new: &[Figure], factor: f64) -> AbComparison {
    let base: BTreeMap<FigureId, &Figure> = old.iter().map(|f| (f.id, f)).collect();
    let mut out = AbComparison {
        factor,
        figures: Vec::new(),
        noisy: Vec::new(),
        unpaired: Vec::new(),
    };
    for cur in new.iter().filter(|f| f.judged) {
        let key = cur.id.key();
        let Some(before) = base.get(&cur.id) else {
            out.unpaired.push(key);
            continue;
        };
        if before.trials.len() != cur.trials.len() || cur.trials.is_empty() {
            out.unpaired.push(key);
            continue;
        }
        let ratios: Vec<f64> = before
            .trials
            .iter()
            .zip(&cur.trials)
            .map(|(&o, &n)| worse_by(cur.better, o, n))
            .collect();
        let s = Summary::of(&ratios);
        let small = (cur.median - before.median).abs() < cur.floor;
        let outcome = if small {
            None
        } else if s.low > factor {
            Some(Outcome::Regression)
        } else if s.high < 1.0 / factor {
            Some(Outcome::Improvement)
        } else {
            None
        };
        let spread = if s.low > 0.0 {
            s.high / s.low
        } else {
            f64::INFINITY
        };
        if outcome.is_none() && !small && spread > factor {
            out.noisy.push(key.clone());
        }
        out.figures.push(Paired {
            figure: key,
            unit: cur.unit,
            old: (before.median, before.low, before.high),
            new: (cur.median, cur.low, cur.high),
            worse_by: (s.median, s.low, s.high),
            outcome,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figure::{FigureId, Subject, Unit};
    use crate::plan::Group;
    use crate::schema::{Mechanism, Regime};
    use crate::variant::{Transport, Variant};

    fn uds() -> Variant {
        Variant::of(Transport::Uds)
    }

    fn figure(subject: Subject, statistic: Statistic, better: Better, trials: &[f64]) -> Figure {
        let id = FigureId {
            group: Group::Latency,
            subject,
            regime: Regime::BackToBack,
            size: Some(64),
            agents: None,
            statistic,
        };
        let unit = match (statistic, better) {
            (Statistic::Ratio, _) => Unit::Times,
            (_, Better::Lower) => Unit::Ns,
            (_, Better::Higher) => Unit::PerS,
        };
        Figure::new(id, unit, better, trials.to_vec())
    }

    fn p50(trials: &[f64]) -> Figure {
        figure(
            Subject::Transport(uds()),
            Statistic::P50,
            Better::Lower,
            trials,
        )
    }

    fn ratio(trials: &[f64]) -> Figure {
        let subject = Subject::Over(uds(), Mechanism::Socketpair);
        figure(subject, Statistic::Ratio, Better::Lower, trials)
    }

    #[test]
    fn overlapping_intervals_are_not_a_regression() {
        // The median 2.5x worse, but one current trial is as good as the
        // baseline's worst: the intervals overlap.
        let c = compare(
            &[ratio(&[1.0, 1.1, 1.2, 1.3, 2.5])],
            &[ratio(&[2.4, 2.6, 2.7, 2.8, 3.0])],
            Rule::default(),
        );
        assert_eq!((c.compared, c.changes.len()), (1, 0), "{c:?}");
    }

    #[test]
    fn a_clear_slowdown_of_a_ratio_is_flagged_and_a_clear_speedup_reported() {
        let old = [ratio(&[1.0, 1.05, 1.1, 1.15, 1.2])];
        let new = [ratio(&[3.0, 3.1, 3.2, 3.3, 3.4])];
        let c = compare(&old, &new, Rule::default());
        let r: Vec<_> = c.regressions().collect();
        assert_eq!(r.len(), 1, "{c:?}");
        assert!(r[0].factor().starts_with("2.91x worse"));
        let c = compare(&new, &old, Rule::default());
        assert_eq!(c.improvements().count(), 1);
        assert_eq!(c.regressions().count(), 0);
    }

    #[test]
    fn an_absolute_move_never_fails_a_run_and_says_how_much_was_the_host() {
        // The transport 3x slower, its ratio to the mechanism unmoved: the
        // mechanism moved 3x too, all of it drift.
        let old = [
            p50(&[10.0, 10.5, 11.0, 11.5, 12.0]),
            ratio(&[1.0, 1.01, 1.02, 1.03, 1.04]),
        ];
        let new = [
            p50(&[30.0, 31.5, 33.0, 34.5, 36.0]),
            ratio(&[1.0, 1.01, 1.02, 1.03, 1.04]),
        ];
        let c = compare(&old, &new, Rule::default());
        assert_eq!((c.compared, c.reported), (1, 1), "{c:?}");
        assert_eq!(c.regressions().count(), 0, "{c:?}");
        let moved: Vec<_> = c.moved().collect();
        assert_eq!(moved.len(), 1, "{c:?}");
        let host = moved[0].host.expect("the ratio is beside it");
        assert!((host - 3.0).abs() < 0.01, "{host}");
        // Without a ratio beside it, the host's share is unknown.
        let c = compare(&old[..1], &new[..1], Rule::default());
        assert_eq!(c.moved().next().map(|m| m.host), Some(None), "{c:?}");
    }

    #[test]
    fn separated_but_small_changes_are_not_flagged() {
        // 1.3x worse, tight intervals apart: real, but under the factor.
        let c = compare(
            &[ratio(&[1.0, 1.01, 1.02, 1.03, 1.04])],
            &[ratio(&[1.3, 1.31, 1.32, 1.33, 1.34])],
            Rule::default(),
        );
        assert!(c.changes.is_empty(), "{c:?}");
    }

    #[test]
    fn noisy_ratios_are_listed_not_judged() {
        let c = compare(
            &[ratio(&[1.0, 1.1, 1.2, 1.3, 1.4])],
            &[ratio(&[3.0, 4.0, 5.0, 6.0, 9.0])],
            Rule::default(),
        );
        assert_eq!(c.noisy.len(), 1);
        assert!(c.changes.is_empty());
        assert!(Rule::default().describe().contains("1.5x"));
    }

    #[test]
    fn unjudged_figures_are_not_compared() {
        let tail = |v: &[f64]| figure(Subject::Transport(uds()), Statistic::P99, Better::Lower, v);
        let c = compare(&[tail(&[10.0; 5])], &[tail(&[1000.0; 5])], Rule::default());
        assert_eq!((c.compared, c.reported, c.changes.len()), (0, 0, 0));
    }

    #[test]
    fn paired_trials_cancel_drift_that_moves_both_sides() {
        // The host drifts 3x across the trials; the new build is 1.8x the
        // old one in every trial. Unpaired, the intervals overlap; paired,
        // the ratio is tight and wholly above the factor.
        let drift = [1.0, 1.5, 2.0, 2.5, 3.0];
        let old: Vec<f64> = drift.iter().map(|d| 100.0 * d).collect();
        let new: Vec<f64> = drift.iter().map(|d| 180.0 * d).collect();
        let c = paired(&[p50(&old)], &[p50(&new)], 1.5);
        assert_eq!(c.regressions().count(), 1, "{c:?}");
        assert!((c.figures[0].worse_by.0 - 1.8).abs() < 1e-9);
        // The same build on both sides: nothing flagged, nothing noisy.
        let c = paired(&[p50(&old)], &[p50(&old)], 1.5);
        assert_eq!((c.figures.len(), c.noisy.len()), (1, 0), "{c:?}");
        assert!(c.figures[0].outcome.is_none());
        // Faster on the new side, rates (higher is better) too.
        let rate = |v: &[f64]| {
            figure(
                Subject::Transport(uds()),
                Statistic::Rate,
                Better::Higher,
                v,
            )
        };
        let c = paired(&[rate(&old)], &[rate(&new)], 1.5);
        assert_eq!(c.improvements().count(), 1, "{c:?}");
    }

    #[test]
    fn paired_ratios_that_scatter_are_too_noisy_and_mismatched_trials_unpaired() {
        let c = paired(
            &[p50(&[100.0, 100.0, 100.0, 100.0, 100.0])],
            &[p50(&[60.0, 150.0, 90.0, 200.0, 110.0])],
            1.5,
        );
        assert_eq!(c.noisy.len(), 1, "{c:?}");
        assert_eq!(c.regressions().count(), 0);
        let c = paired(&[p50(&[100.0; 5])], &[p50(&[100.0; 4])], 1.5);
        assert_eq!(c.unpaired.len(), 1, "{c:?}");
        assert!(c.describe().contains("1.50x"));
    }
}
