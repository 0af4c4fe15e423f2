//! The one typed list of figures a run produced.
//!
//! Every scenario runs as several independent *trials* (fresh processes,
//! interleaved with the other variants of its block, see `runner.rs`).
//! [`figures`] groups the raw per-trial records of [`RunResults`] into
//! [`Figure`]s: one value per trial, their median, and an order-statistic
//! confidence interval for that median. Same-run ratios are computed per
//! trial, pairing each transport trial with the mechanism trial measured
//! next to it, and only then summarized, so host drift cancels.
//!
//! Reports, comparisons, targets, exports and history all read this list;
//! each group's scenario (`scenarios/`) says which figures its records
//! give and which ratios it reports.

use crate::figure::Figure;
use crate::gather::Gather;
use crate::scenarios;
use crate::schema::RunResults;

/// Every figure of `r`, from its per-trial records: each group's own,
/// then the same-run ratios each group asks for among all of them.
pub fn figures(r: &RunResults) -> Vec<Figure> {
    let mut g = Gather::default();
    for scenario in scenarios::ALL {
        scenario.figures(r, &mut g);
    }
    let ids = g.ids();
    let pairs: Vec<_> = scenarios::ALL.iter().flat_map(|s| s.ratios(&ids)).collect();
    for (over, under, better) in pairs {
        g.paired(over, under, better);
    }
    g.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dimension::{Mechanism, Regime};
    use crate::figure::{Statistic, Subject};
    use crate::plan::Group;
    use crate::stats::LatencyStats;
    use crate::variant::{Strategy, Transport, Variant};

    /// The statistics of a trial whose every round trip took `ns`.
    fn stats(ns: u64) -> LatencyStats {
        let mut r = crate::stats::Recorder::new();
        r.record_ns(ns);
        r.summary()
    }

    #[test]
    fn ratios_pair_trials_and_cancel_drift() {
        use crate::schema::{BaselineLatency, LatencyResult};
        let mut r = RunResults::default();
        // The host slows down 4x over the trials; the transport is always
        // 3x its mechanism.
        for (trial, drift) in [(0u32, 1u64), (1, 2), (2, 4)] {
            r.latency.push(LatencyResult {
                variant: Variant::of(Transport::Uds),
                trial,
                size: 64,
                regime: Regime::BackToBack,
                pinned: true,
                cpu_ns_per_op: 0.0,
                stats: stats(3000 * drift),
            });
            r.baselines.latency.push(BaselineLatency {
                mechanism: Mechanism::Socketpair,
                trial,
                size: 64,
                regime: Regime::BackToBack,
                pinned: true,
                cpu_ns_per_op: 0.0,
                stats: stats(1000 * drift),
            });
        }
        let all = figures(&r);
        let ratio = all
            .iter()
            .find(|f| f.id.statistic == Statistic::Ratio)
            .expect("a ratio");
        assert_eq!(
            ratio.id.subject,
            Subject::Over(Variant::of(Transport::Uds), Mechanism::Socketpair)
        );
        assert_eq!(ratio.trials.len(), 3);
        assert!(ratio.spread() < 1.01, "{ratio:?}");
        assert!((ratio.median - 3.0).abs() < 0.01);
        let p50 = all
            .iter()
            .find(|f| {
                f.id.statistic == Statistic::P50 && f.id.subject.transport() == Some(Transport::Uds)
            })
            .unwrap();
        assert!(p50.spread() > 3.5, "absolute figures keep the drift");
        assert!(p50.judged && !ratio.id.key().contains(' '));
    }

    /// A Python agent's hub call and large result are each paired, per
    /// trial, with the Rust agent's measured beside them.
    #[test]
    fn python_agents_pair_with_rust_agents() {
        use crate::schema::LatencyResult;
        let shm = Variant::of(Transport::Shm);
        let mut r = RunResults::default();
        for trial in 0..3u32 {
            let drift = u64::from(trial) + 1;
            for (regime, size, ns) in [
                (Regime::HubCall, 64, 10_000),
                (Regime::HubCallPython, 64, 40_000),
                (Regime::BulkReply, 64 << 20, 20_000_000),
                (Regime::BulkReplyPython, 64 << 20, 30_000_000),
            ] {
                r.hub.push(LatencyResult {
                    variant: shm,
                    trial,
                    size,
                    regime,
                    pinned: false,
                    cpu_ns_per_op: 0.0,
                    stats: stats(ns * drift),
                });
            }
        }
        let all = figures(&r);
        let ratio = |regime, under| {
            all.iter()
                .find(|f| {
                    f.id.statistic == Statistic::Ratio
                        && f.id.regime == regime
                        && f.id.subject == Subject::Path(shm, under)
                })
                .unwrap_or_else(|| panic!("no {regime:?} / {under:?} ratio"))
        };
        let call = ratio(Regime::HubCallPython, Regime::HubCall);
        assert!((call.median - 4.0).abs() < 0.01 && call.trials.len() == 3);
        let bulk = ratio(Regime::BulkReplyPython, Regime::BulkReply);
        assert!((bulk.median - 1.5).abs() < 0.01, "{bulk:?}");
        // Reported, never judged: unpinned on a shared machine.
        assert!(!call.judged && !bulk.judged);
    }

    /// In the peers group, `shm` is paired with the peer and with the
    /// floor measured in the same blocks, each in that group.
    #[test]
    fn peers_pair_shm_with_the_peer_and_the_floor() {
        use crate::schema::{BaselineLatency, LatencyResult};
        let theirs = |mechanism, trial, ns| BaselineLatency {
            mechanism,
            trial,
            size: 4096,
            regime: Regime::BackToBack,
            pinned: true,
            cpu_ns_per_op: 0.0,
            stats: stats(ns),
        };
        let shm = Variant::of(Transport::Shm);
        let mut r = RunResults::default();
        for trial in 0..3 {
            r.peers.ours.push(LatencyResult {
                variant: shm,
                trial,
                size: 4096,
                regime: Regime::BackToBack,
                pinned: true,
                cpu_ns_per_op: 0.0,
                stats: stats(3000),
            });
            r.peers
                .others
                .push(theirs(Mechanism::Iceoryx2, trial, 4500));
            r.peers
                .floor
                .push(theirs(Mechanism::SharedBuffer, trial, 2500));
        }
        let all = figures(&r);
        let ratio = |m| {
            all.iter()
                .find(|f| {
                    f.id.group == Group::Peers
                        && f.id.statistic == Statistic::Ratio
                        && f.id.subject == Subject::Over(shm, m)
                })
                .map(|f| f.median)
        };
        let near = |x: Option<f64>, y: f64| x.is_some_and(|x| (x - y).abs() < 0.01);
        assert!(near(ratio(Mechanism::Iceoryx2), 3000.0 / 4500.0));
        assert!(near(ratio(Mechanism::SharedBuffer), 3000.0 / 2500.0));
        assert!(all.iter().any(|f| f.id.group == Group::Peers
            && f.id.subject == Subject::Mechanism(Mechanism::SharedBuffer)
            && f.id.statistic == Statistic::P50));
    }

    /// In the latency group, the default `shm` is paired per trial with
    /// `shm-spin` measured in the same blocks, at each size.
    #[test]
    fn the_default_wait_is_paired_with_spinning() {
        use crate::schema::LatencyResult;
        let (adaptive, spin) = (Variant::of(Transport::Shm), Variant::shm(Strategy::Spin));
        let mut r = RunResults::default();
        for (trial, drift) in [(0u32, 1u64), (1, 3)] {
            for (variant, ns, regime) in [
                (adaptive, 1200, Regime::BackToBack),
                (spin, 1000, Regime::BackToBack),
                (adaptive, 9000, Regime::Parked),
            ] {
                r.latency.push(LatencyResult {
                    variant,
                    trial,
                    size: 1 << 20,
                    regime,
                    pinned: true,
                    cpu_ns_per_op: 0.0,
                    stats: stats(ns * drift),
                });
            }
        }
        let all = figures(&r);
        let versus: Vec<_> = all
            .iter()
            .filter(|f| f.id.subject == Subject::Versus(adaptive, spin))
            .collect();
        assert_eq!(versus.len(), 1, "back to back only: {versus:?}");
        let f = versus[0];
        assert_eq!(
            (f.id.group, f.id.statistic, f.id.regime, f.id.size),
            (
                Group::Latency,
                Statistic::Ratio,
                Regime::BackToBack,
                Some(1 << 20)
            )
        );
        assert_eq!(f.trials.len(), 2);
        assert!((f.median - 1.2).abs() < 0.01 && f.spread() < 1.01, "{f:?}");
        assert_eq!(
            f.id.key(),
            "latency/shm-over-shm-spin/back-to-back/1048576B/ratio"
        );
    }
}
