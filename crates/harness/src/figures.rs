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
//! adding a figure means adding it here, once.

use std::collections::BTreeMap;

use crate::dimension::{Mechanism, Regime};
use crate::figure::{Better, Figure, FigureId, Statistic, Subject, Unit};
use crate::plan::Group;
use crate::schema::RunResults;
use crate::stats::LatencyStats;
use crate::variant::{Strategy, Transport, Variant};

/// Trial values gathered per figure before summarizing.
#[derive(Default)]
struct Gather {
    values: BTreeMap<FigureId, (Unit, Better, BTreeMap<u32, f64>)>,
}

impl Gather {
    fn put(&mut self, id: FigureId, unit: Unit, better: Better, trial: u32, value: f64) {
        if value.is_finite() {
            self.values
                .entry(id)
                .or_insert_with(|| (unit, better, BTreeMap::new()))
                .2
                .insert(trial, value);
        }
    }

    fn percentiles(&mut self, id: FigureId, trial: u32, s: &LatencyStats) {
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
    fn round_trips(&mut self, base: FigureId, trial: u32, stats: &LatencyStats, cpu_ns: f64) {
        self.percentiles(base, trial, stats);
        let cpu = FigureId {
            statistic: Statistic::CpuPerOp,
            ..base
        };
        self.put(cpu, Unit::Ns, Better::Lower, trial, cpu_ns);
    }

    /// Ratios of `over` to `under` (a mechanism, or another variant) for
    /// every trial both have.
    fn paired(&mut self, over: FigureId, under: FigureId, better: Better) {
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

    fn finish(self) -> Vec<Figure> {
        self.values
            .into_iter()
            .map(|(id, (unit, better, trials))| {
                Figure::new(id, unit, better, trials.into_values().collect())
            })
            .collect()
    }
}

/// The hub group's ratios, paired per trial: each path over the same
/// transport's blocking round trip, the hub call over the bare async one,
/// a Python agent's over a Rust agent's, and shared memory's hub call
/// over the same call over Unix sockets.
fn hub_pairs<'a>(
    ids: impl Iterator<Item = &'a FigureId>,
) -> impl Iterator<Item = (FigureId, FigureId, Better)> {
    let uds = Subject::Transport(Variant::of(Transport::Uds));
    ids.filter(|f| f.group == Group::Hub && f.statistic == Statistic::P50)
        .flat_map(move |&fid| {
            let Subject::Transport(v) = fid.subject else {
                return Vec::new();
            };
            let mut unders = Vec::new();
            if fid.regime != Regime::BackToBack {
                unders.push(FigureId {
                    regime: Regime::BackToBack,
                    ..fid
                });
            }
            if fid.regime == Regime::HubCall {
                unders.push(FigureId {
                    regime: Regime::Async,
                    ..fid
                });
            }
            // What Python costs: its agent against the Rust one, same
            // call, same trial.
            let rust = match fid.regime {
                Regime::HubCallPython => Some(Regime::HubCall),
                Regime::BulkReplyPython => Some(Regime::BulkReply),
                _ => None,
            };
            if let Some(regime) = rust {
                unders.push(FigureId { regime, ..fid });
            }
            if matches!(fid.regime, Regime::HubCall | Regime::HubCallPinned)
                && v == Variant::of(Transport::Shm)
            {
                unders.push(FigureId {
                    subject: uds,
                    ..fid
                });
            }
            unders
                .into_iter()
                .map(|under| (fid, under, Better::Lower))
                .collect()
        })
}

/// The mechanism a transport's round trip rides on, in `regime`.
pub fn mechanism_of(variant: Variant, regime: Regime) -> Mechanism {
    match (regime, variant.transport) {
        (Regime::Parked, _) => Mechanism::Futex,
        (_, Transport::Pipe) => Mechanism::Pipe,
        (_, Transport::Uds) => Mechanism::Socketpair,
        (_, Transport::Shm) => Mechanism::SharedBuffer,
        (_, Transport::Zenoh) => Mechanism::TcpLoopback,
    }
}

/// Smallest message size compared with a copy baseline for bandwidth:
/// below it, per-message costs, not copying, decide throughput.
pub const BULK_SIZE: usize = 64 << 10;

/// Every figure of `r`, from its per-trial records.
pub fn figures(r: &RunResults) -> Vec<Figure> {
    let mut g = Gather::default();
    let id = |group, subject, regime, size, agents, statistic| FigureId {
        group,
        subject,
        regime,
        size,
        agents,
        statistic,
    };
    // Round trips: percentiles and CPU per round trip, for the transports,
    // the mechanisms, and both sides of the peers group (paired below).
    let transports = r
        .latency
        .iter()
        .map(|l| (Group::Latency, Subject::Transport(l.variant), l));
    let ours = r
        .peers
        .ours
        .iter()
        .map(|l| (Group::Peers, Subject::Transport(l.variant), l));
    let runtime_path = r
        .hub
        .iter()
        .map(|l| (Group::Hub, Subject::Transport(l.variant), l));
    for (group, subject, l) in transports.chain(ours).chain(runtime_path) {
        let base = id(group, subject, l.regime, Some(l.size), None, Statistic::P50);
        g.round_trips(base, l.trial, &l.stats, l.cpu_ns_per_op);
    }
    let mechanisms = r.baselines.latency.iter().map(|b| (Group::Baselines, b));
    let theirs = r
        .peers
        .others
        .iter()
        .chain(&r.peers.floor)
        .map(|b| (Group::Peers, b));
    for (group, b) in mechanisms.chain(theirs) {
        let subject = Subject::Mechanism(b.mechanism);
        let base = id(group, subject, b.regime, Some(b.size), None, Statistic::P50);
        g.round_trips(base, b.trial, &b.stats, b.cpu_ns_per_op);
    }
    for b in &r.baselines.bandwidth {
        let fid = id(
            Group::Baselines,
            Subject::Mechanism(b.mechanism),
            Regime::OneWay,
            Some(b.size),
            None,
            Statistic::Bandwidth,
        );
        g.put(fid, Unit::BytesPerS, Better::Higher, b.trial, b.bytes_per_s);
    }
    for t in &r.throughput {
        let base = id(
            Group::Throughput,
            Subject::Transport(t.variant),
            Regime::OneWay,
            Some(t.size),
            None,
            Statistic::Rate,
        );
        g.put(base, Unit::PerS, Better::Higher, t.trial, t.msgs_per_s);
        let bw = FigureId {
            statistic: Statistic::Bandwidth,
            ..base
        };
        g.put(bw, Unit::BytesPerS, Better::Higher, t.trial, t.bytes_per_s);
        let cpu = FigureId {
            statistic: Statistic::CpuPerOp,
            ..base
        };
        g.put(cpu, Unit::Ns, Better::Lower, t.trial, t.cpu_ns_per_msg);
    }
    for c in &r.serialization {
        let subject = Subject::Codec(c.codec);
        for (regime, v) in [
            (Regime::Encode(c.message), c.encode_ns),
            (Regime::Decode(c.message), c.decode_ns),
        ] {
            let fid = id(
                Group::Serialization,
                subject,
                regime,
                None,
                None,
                Statistic::Time,
            );
            g.put(fid, Unit::Ns, Better::Lower, c.trial, v);
        }
        let size = id(
            Group::Serialization,
            subject,
            Regime::Encode(c.message),
            None,
            None,
            Statistic::EncodedSize,
        );
        g.put(
            size,
            Unit::Bytes,
            Better::Lower,
            c.trial,
            c.encoded_bytes as f64,
        );
    }
    for t in &r.typed_round_trips {
        for (regime, v) in [
            (Regime::Typed(t.codec), t.typed_p50_ns),
            (Regime::Raw(t.codec), t.raw_p50_ns),
        ] {
            let fid = id(
                Group::Serialization,
                Subject::Transport(t.variant),
                regime,
                None,
                None,
                Statistic::P50,
            );
            g.put(fid, Unit::Ns, Better::Lower, t.trial, v as f64);
        }
    }
    for i in &r.idle {
        let base = id(
            Group::Resources,
            Subject::Transport(i.variant),
            Regime::Idle,
            None,
            Some(i.agents),
            Statistic::CpuPercent,
        );
        g.put(
            base,
            Unit::PercentCore,
            Better::Lower,
            i.trial,
            i.agents_cpu_percent,
        );
        let rss = FigureId {
            statistic: Statistic::Rss,
            ..base
        };
        g.put(rss, Unit::Kib, Better::Lower, i.trial, i.rss_kib_max as f64);
        if let Some(kib) = i.shm_kib_per_agent {
            let shared = FigureId {
                statistic: Statistic::SharedMemory,
                ..base
            };
            g.put(shared, Unit::Kib, Better::Lower, i.trial, kib);
        }
    }
    for s in &r.scale {
        let base = id(
            Group::Scale,
            Subject::Transport(s.variant),
            Regime::Scale,
            None,
            Some(s.agents),
            Statistic::P50,
        );
        g.percentiles(base, s.trial, &s.call_each);
        for (statistic, unit, v) in [
            (Statistic::Time, Unit::Ns, s.join_ns as f64),
            (Statistic::Threads, Unit::Count, s.hub_threads as f64),
            (Statistic::Rss, Unit::Kib, s.hub_kib_per_agent),
            (Statistic::CpuPercent, Unit::PercentCore, s.idle_cpu_percent),
        ] {
            g.put(
                FigureId { statistic, ..base },
                unit,
                Better::Lower,
                s.trial,
                v,
            );
        }
    }
    for c in &r.churn {
        let fid = id(
            Group::Resources,
            Subject::Transport(c.variant),
            Regime::Churn,
            None,
            None,
            Statistic::Growth,
        );
        let growth = c
            .parent_rss_growth_kib
            .max(c.agent_rss_growth_kib.unwrap_or(0));
        g.put(fid, Unit::Kib, Better::Lower, c.trial, growth as f64);
    }
    for p in &r.patterns {
        let base = id(
            Group::Patterns,
            Subject::Transport(p.variant),
            p.pattern,
            Some(p.size),
            Some(p.agents),
            Statistic::Rate,
        );
        g.put(base, Unit::PerS, Better::Higher, p.trial, p.msgs_per_s);
        if let Some(l) = &p.latency {
            g.percentiles(
                FigureId {
                    statistic: Statistic::P50,
                    ..base
                },
                p.trial,
                l,
            );
        }
    }
    for l in &r.logging {
        let base = id(
            Group::Logging,
            Subject::Transport(l.variant),
            l.regime,
            None,
            None,
            Statistic::Rate,
        );
        if l.regime == Regime::Burst {
            // A burst's latency is queueing, all or nothing from run to
            // run; its rate is the figure.
            g.put(base, Unit::PerS, Better::Higher, l.trial, l.events_per_s);
        } else {
            g.percentiles(
                FigureId {
                    statistic: Statistic::P50,
                    ..base
                },
                l.trial,
                &l.latency,
            );
        }
    }
    // Same-run ratios, paired per trial.
    let mut pairs: Vec<(FigureId, FigureId, Better)> = Vec::new();
    // Against the peer and the floor measured beside it, in its own group.
    for &fid in g.values.keys() {
        if let (Subject::Transport(_), Group::Peers, Statistic::P50) =
            (fid.subject, fid.group, fid.statistic)
        {
            for m in [Mechanism::Iceoryx2, Mechanism::SharedBuffer] {
                let under = FigureId {
                    subject: Subject::Mechanism(m),
                    ..fid
                };
                pairs.push((fid, under, Better::Lower));
            }
        }
    }
    // The default wait strategy against spinning, measured in the same
    // blocks: what waiting adaptively costs at each size.
    let spin = Variant::shm(Strategy::Spin);
    for &fid in g.values.keys() {
        if let (Subject::Transport(v), Group::Latency, Statistic::P50, Regime::BackToBack) =
            (fid.subject, fid.group, fid.statistic, fid.regime)
            && v == Variant::of(Transport::Shm)
        {
            let under = FigureId {
                subject: Subject::Transport(spin),
                ..fid
            };
            pairs.push((fid, under, Better::Lower));
        }
    }
    pairs.extend(hub_pairs(g.values.keys()));
    pairs.extend(g.values.keys().filter_map(|&fid| {
        let Subject::Transport(v) = fid.subject else {
            return None;
        };
        let mechanism = match (fid.group, fid.statistic) {
            (Group::Latency, Statistic::P50) => mechanism_of(v, fid.regime),
            (Group::Throughput, Statistic::Bandwidth)
                if v.transport == Transport::Shm && fid.size >= Some(BULK_SIZE) =>
            {
                Mechanism::SharedBuffer
            }
            _ => return None,
        };
        let under = FigureId {
            group: Group::Baselines,
            subject: Subject::Mechanism(mechanism),
            ..fid
        };
        let better = if fid.statistic == Statistic::Bandwidth {
            Better::Higher
        } else {
            Better::Lower
        };
        Some((fid, under, better))
    }));
    for (over, under, better) in pairs {
        g.paired(over, under, better);
    }
    g.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

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
