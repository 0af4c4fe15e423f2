//! Trial values gathered per figure, then summarized: what every
//! scenario's `figures` writes into, and the same-run ratios it asks for.
//! A ratio is computed per trial, pairing a figure with the one measured
//! beside it in the same trial, and only then summarized, so host drift
//! cancels.

use std::collections::BTreeMap;

use crate::figure::{Better, Figure, FigureId, Statistic, Subject, Unit};
use crate::plan::Group;
use crate::schema::LatencyResult;
use crate::stats::LatencyStats;

/// A same-run ratio to compute: `over` / `under`, trial by trial, and
/// which direction is better.
pub(crate) type Pair = (FigureId, FigureId, Better);

/// Trial values gathered per figure before summarizing.
#[derive(Default)]
pub(crate) struct Gather {
    values: BTreeMap<FigureId, (Unit, Better, BTreeMap<u32, f64>)>,
}

impl Gather {
    /// Records `value` as trial `trial` of figure `id` (a value that is
    /// not finite is left out).
    pub(crate) fn put(&mut self, id: FigureId, unit: Unit, better: Better, trial: u32, value: f64) {
        if value.is_finite() {
            self.values
                .entry(id)
                .or_insert_with(|| (unit, better, BTreeMap::new()))
                .2
                .insert(trial, value);
        }
    }

    /// A latency figure's percentiles, from `p50` (the id's statistic is
    /// replaced) to the largest sample.
    pub(crate) fn percentiles(&mut self, id: FigureId, trial: u32, s: &LatencyStats) {
        for (statistic, v) in [
            (Statistic::P50, s.p50_ns),
            (Statistic::P95, s.p95_ns),
            (Statistic::P99, s.p99_ns),
            (Statistic::P999, s.p999_ns),
            (Statistic::Max, s.max_ns),
        ] {
            self.put(
                FigureId { statistic, ..id },
                Unit::Ns,
                Better::Lower,
                trial,
                v as f64,
            );
        }
    }

    /// A round-trip figure: its percentiles and its CPU per round trip.
    pub(crate) fn round_trips(
        &mut self,
        base: FigureId,
        trial: u32,
        stats: &LatencyStats,
        cpu_ns: f64,
    ) {
        self.percentiles(base, trial, stats);
        let cpu = FigureId {
            statistic: Statistic::CpuPerOp,
            ..base
        };
        self.put(cpu, Unit::Ns, Better::Lower, trial, cpu_ns);
    }

    /// Every record of `results` as a round-trip figure of `group`.
    pub(crate) fn latency_results(&mut self, group: Group, results: &[LatencyResult]) {
        for l in results {
            let base = FigureId {
                group,
                subject: Subject::Transport(l.variant),
                regime: l.regime,
                size: Some(l.size),
                agents: None,
                statistic: Statistic::P50,
            };
            self.round_trips(base, l.trial, &l.stats, l.cpu_ns_per_op);
        }
    }

    /// Ratios of `over` to `under` (a mechanism, or another variant) for
    /// every trial both have.
    pub(crate) fn paired(&mut self, over: FigureId, under: FigureId, better: Better) {
        let (Some(a), Some(b)) = (self.values.get(&over), self.values.get(&under)) else {
            return;
        };
        let subject = match (over.subject, under.subject) {
            (Subject::Transport(v), Subject::Mechanism(m)) => Subject::Over(v, m),
            (Subject::Transport(v), Subject::Transport(w)) if v == w => {
                Subject::Path(v, under.regime)
            }
            (Subject::Transport(v), Subject::Transport(w)) => Subject::Versus(v, w),
            _ => return,
        };
        let ratios: Vec<(u32, f64)> =
            a.2.iter()
                .filter_map(|(t, x)| b.2.get(t).map(|y| (*t, x / y)))
                .collect();
        let id = FigureId {
            subject,
            statistic: Statistic::Ratio,
            ..over
        };
        for (t, r) in ratios {
            self.put(id, Unit::Times, better, t, r);
        }
    }

    /// The figures gathered so far.
    pub(crate) fn ids(&self) -> Vec<FigureId> {
        self.values.keys().copied().collect()
    }

    /// The summarized figures, in the order of their ids.
    pub(crate) fn finish(self) -> Vec<Figure> {
        self.values
            .into_iter()
            .map(|(id, (unit, better, trials))| {
                Figure::new(id, unit, better, trials.into_values().collect())
            })
            .collect()
    }
}
