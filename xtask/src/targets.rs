//! Performance targets: what is measured against which limit, per
//! transport, read from a TOML file (`xtask/targets.toml` by default).

use std::collections::BTreeMap;
use std::path::Path;

use harness::figure::FigureId;
use harness::schema::Regime;
use harness::{Figure, Group, RunResults, Statistic, Subject, Transport, Variant};
use serde::{Deserialize, Serialize};

/// Which side of the limit passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The value must be below the limit.
    Below,
    /// The value must be above the limit.
    Above,
}

/// A target this tool knows how to measure.
#[derive(Debug)]
pub struct TargetDef {
    /// Key in the TOML file.
    pub id: &'static str,
    /// What it is, for the report.
    pub description: &'static str,
    /// Unit of the value and the limit.
    pub unit: &'static str,
    /// Which side passes.
    pub direction: Direction,
    /// Reads the value (a median over trials) for one transport.
    pub extract: fn(&Figures<'_>, Transport) -> Option<f64>,
    /// Reads the same figure of the bare mechanism the transport rides
    /// on, measured in the same run, where there is one: a limit that
    /// mechanism misses too is over this machine's floor, which the
    /// report says beside the miss.
    pub floor: Option<fn(&Figures<'_>, Transport) -> Option<Floor>>,
}

/// The bare mechanism's figure beside a transport's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// The mechanism (`pipe`, `socketpair`, ...).
    pub mechanism: String,
    /// Its value, in the target's unit.
    pub value: f64,
}

/// A run's figures, looked up by what they are.
#[derive(Debug)]
pub struct Figures<'a> {
    results: &'a RunResults,
}

impl<'a> Figures<'a> {
    /// The figures of `results`.
    pub fn of(results: &'a RunResults) -> Self {
        Figures { results }
    }

    /// The smallest message size of the run.
    pub fn smallest_size(&self) -> usize {
        self.results.plan.sizes.iter().copied().min().unwrap_or(64)
    }

    /// Every figure matching `pick`.
    pub fn select(&self, pick: impl Fn(&FigureId) -> bool) -> impl Iterator<Item = &'a Figure> {
        self.results.figures.iter().filter(move |f| pick(&f.id))
    }

    /// The median of the figure of transport `t`'s default variant in
    /// `group` / `regime` / `size` / `statistic`.
    fn median(
        &self,
        group: Group,
        t: Transport,
        regime: Regime,
        size: Option<usize>,
        statistic: Statistic,
    ) -> Option<f64> {
        let subject = Subject::Transport(Variant::of(t));
        self.median_of(group, subject, regime, size, statistic)
    }

    /// The median of `subject`'s figure in `group` / `regime` / `size` /
    /// `statistic`.
    fn median_of(
        &self,
        group: Group,
        subject: Subject,
        regime: Regime,
        size: Option<usize>,
        statistic: Statistic,
    ) -> Option<f64> {
        self.select(|id| {
            id.group == group
                && id.subject == subject
                && id.regime == regime
                && id.size == size
                && id.statistic == statistic
        })
        .next()
        .map(|f| f.median)
    }

    /// The median of transport `t`'s paired ratio in the hub group at the
    /// smallest size: its `regime` figure over its own `under` figure.
    fn hub_ratio(&self, t: Transport, regime: Regime, under: Regime) -> Option<f64> {
        let subject = Subject::Path(Variant::of(t), under);
        let size = Some(self.smallest_size());
        self.median_of(Group::Hub, subject, regime, size, Statistic::Ratio)
    }

    /// Transport `t`'s scale figure `statistic` at the largest agent
    /// count the run measured, and at the smallest.
    fn scale_ends(&self, t: Transport, statistic: Statistic) -> Option<(f64, f64)> {
        let subject = Subject::Transport(Variant::of(t));
        let by_agents = || {
            self.select(move |id| {
                id.group == Group::Scale && id.subject == subject && id.statistic == statistic
            })
        };
        let largest = by_agents().max_by_key(|f| f.id.agents)?;
        let smallest = by_agents().min_by_key(|f| f.id.agents)?;
        Some((largest.median, smallest.median))
    }
}

/// Every target id the tool knows.
pub const KNOWN: [TargetDef; 13] = [
    TargetDef {
        id: "event_logging_latency",
        description: "event logging latency, p99 (paced events)",
        unit: "ms",
        direction: Direction::Below,
        extract: |f, t| {
            f.median(Group::Logging, t, Regime::Paced, None, Statistic::P99)
                .map(|ns| ns / 1e6)
        },
        floor: None,
    },
    TargetDef {
        id: "small_message_throughput",
        description: "small-message throughput (smallest size, one way)",
        unit: "msg/s",
        direction: Direction::Above,
        extract: |f, t| {
            let size = Some(f.smallest_size());
            f.median(Group::Throughput, t, Regime::OneWay, size, Statistic::Rate)
        },
        floor: None,
    },
    TargetDef {
        id: "idle_cpu",
        description: "idle agent CPU (per agent, largest idle group)",
        unit: "% of a core",
        direction: Direction::Below,
        extract: |f, t| {
            f.select(|id| {
                id.subject == Subject::Transport(Variant::of(t))
                    && id.regime == Regime::Idle
                    && id.statistic == Statistic::CpuPercent
            })
            .max_by_key(|x| x.id.agents)
            .map(|x| x.median / x.id.agents.unwrap_or(1).max(1) as f64)
        },
        floor: None,
    },
    TargetDef {
        id: "idle_memory",
        description: "idle agent memory (largest RSS seen; the agent links only its transport)",
        unit: "MB",
        direction: Direction::Below,
        extract: |f, t| {
            f.select(|id| {
                id.subject == Subject::Transport(Variant::of(t))
                    && id.regime == Regime::Idle
                    && id.statistic == Statistic::Rss
            })
            .map(|x| x.median * 1024.0 / 1e6)
            .reduce(f64::max)
        },
        floor: None,
    },
    TargetDef {
        id: "p95_round_trip",
        description: "p95 round trip (smallest size, back to back)",
        unit: "us",
        direction: Direction::Below,
        extract: |f, t| {
            let size = Some(f.smallest_size());
            f.median(Group::Latency, t, Regime::BackToBack, size, Statistic::P95)
                .map(|ns| ns / 1e3)
        },
        floor: Some(|f, t| {
            let size = Some(f.smallest_size());
            let mechanism = Variant::of(t).mechanism(Regime::BackToBack);
            let subject = Subject::Mechanism(mechanism);
            f.median_of(
                Group::Baselines,
                subject,
                Regime::BackToBack,
                size,
                Statistic::P95,
            )
            .map(|ns| Floor {
                mechanism: mechanism.name().into(),
                value: ns / 1e3,
            })
        }),
    },
    TargetDef {
        id: "overhead_vs_mechanism",
        description: "p50 round trip over the bare mechanism's, paired per trial (pipe/pipe, uds/socketpair, shm/shared buffer; smallest size)",
        unit: "x",
        direction: Direction::Below,
        extract: |f, t| {
            let size = Some(f.smallest_size());
            let v = Variant::of(t);
            let over = Subject::Over(v, v.mechanism(Regime::BackToBack));
            f.select(|id| {
                id.subject == over
                    && id.regime == Regime::BackToBack
                    && id.size == size
                    && id.statistic == Statistic::Ratio
            })
            .next()
            .map(|x| x.median)
        },
        floor: None,
    },
    TargetDef {
        id: "connection_churn_leak",
        description: "memory growth over connect/disconnect cycles",
        unit: "KiB",
        direction: Direction::Below,
        extract: |f, t| f.median(Group::Resources, t, Regime::Churn, None, Statistic::Growth),
        floor: None,
    },
    TargetDef {
        id: "async_over_blocking",
        description: "async round trip over the blocking one, both pinned, paired per trial (what the async API costs; smallest size)",
        unit: "x",
        direction: Direction::Below,
        extract: |f, t| f.hub_ratio(t, Regime::AsyncPinned, Regime::BackToBack),
        floor: None,
    },
    TargetDef {
        id: "hub_call_over_blocking",
        description: "typed call through ipc-hub (unpinned, from the runtime's main future) over the blocking round trip (pinned), paired per trial",
        unit: "x",
        direction: Direction::Below,
        extract: |f, t| f.hub_ratio(t, Regime::HubCall, Regime::BackToBack),
        floor: None,
    },
    TargetDef {
        id: "hub_call_over_async",
        description: "typed call through ipc-hub over the bare async round trip, both from the main future of a multi-thread runtime, unpinned, paired per trial",
        unit: "x",
        direction: Direction::Below,
        extract: |f, t| f.hub_ratio(t, Regime::HubCall, Regime::AsyncMultiThread),
        floor: None,
    },
    TargetDef {
        id: "hub_call_speedup_over_uds",
        description: "how many times faster a typed call through ipc-hub is than the same call over uds, paired per trial (unpinned, from the runtime's main future)",
        unit: "x",
        direction: Direction::Above,
        extract: |f, t| {
            let v = Variant::of(t);
            let uds = Variant::of(Transport::Uds);
            let size = Some(f.smallest_size());
            let subject = Subject::Versus(v, uds);
            f.median_of(Group::Hub, subject, Regime::HubCall, size, Statistic::Ratio)
                .map(|over| 1.0 / over.max(f64::MIN_POSITIVE))
        },
        floor: None,
    },
    TargetDef {
        id: "scale_idle_cpu",
        description: "CPU of one hub and all its agents, connected and idle, at the largest agent count of the scale group (whole system)",
        unit: "% of a core",
        direction: Direction::Below,
        extract: |f, t| {
            f.scale_ends(t, Statistic::CpuPercent)
                .map(|(largest, _)| largest)
        },
        floor: None,
    },
    TargetDef {
        id: "scale_hub_threads",
        description: "hub threads at the largest agent count of the scale group over those at the smallest",
        unit: "x",
        direction: Direction::Below,
        extract: |f, t| {
            f.scale_ends(t, Statistic::Threads)
                .map(|(largest, smallest)| largest / smallest.max(1.0))
        },
        floor: None,
    },
];

/// A target as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetConfig {
    limit: f64,
    #[serde(default = "enabled")]
    enabled: bool,
    /// Limits for particular transports, by name (`{ zenoh = 1000.0 }`).
    #[serde(default)]
    per_transport: BTreeMap<String, f64>,
    /// The transports the target is set for, by name; every transport
    /// when absent.
    #[serde(default)]
    transports: Option<Vec<String>>,
}

fn enabled() -> bool {
    true
}

/// The default targets file, built in.
pub const DEFAULT_TARGETS: &str = include_str!("../targets.toml");

/// A target to check: its definition and limit.
#[derive(Debug)]
pub struct Target {
    /// What is measured.
    pub def: &'static TargetDef,
    /// The limit.
    pub limit: f64,
    /// Other limits for particular transports, by name.
    pub per_transport: BTreeMap<String, f64>,
    /// The transports it is set for (`None`: every one).
    pub transports: Option<Vec<Transport>>,
}

impl Target {
    /// The limit that applies to `transport`.
    pub fn limit_for(&self, transport: Transport) -> f64 {
        self.per_transport
            .get(transport.name())
            .copied()
            .unwrap_or(self.limit)
    }

    /// Whether the target is set for `transport`.
    pub fn applies_to(&self, transport: Transport) -> bool {
        self.transports
            .as_ref()
            .is_none_or(|only| only.contains(&transport))
    }
}

/// Parses a targets file; unknown ids and bad values are errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Target>, String> {
    let table: BTreeMap<String, TargetConfig> =
        toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    let mut targets = Vec::new();
    for (id, config) in table {
        let def = KNOWN.iter().find(|d| d.id == id).ok_or_else(|| {
            let known: Vec<_> = KNOWN.iter().map(|d| d.id).collect();
            format!(
                "{origin}: unknown target `{id}`; known: {}",
                known.join(", ")
            )
        })?;
        if !config.limit.is_finite() || config.per_transport.values().any(|l| !l.is_finite()) {
            return Err(format!(
                "{origin}: target `{id}` has a limit that is not a number"
            ));
        }
        let named = config
            .per_transport
            .keys()
            .chain(config.transports.iter().flatten());
        if let Some(name) = named
            .clone()
            .find(|name| name.parse::<Transport>().is_err())
        {
            return Err(format!(
                "{origin}: target `{id}` names unknown transport `{name}`"
            ));
        }
        let transports = config
            .transports
            .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect());
        if config.enabled {
            targets.push(Target {
                def,
                limit: config.limit,
                per_transport: config.per_transport,
                transports,
            });
        }
    }
    // Report in the order of KNOWN.
    targets.sort_by_key(|t| KNOWN.iter().position(|d| d.id == t.def.id));
    Ok(targets)
}

/// Loads the targets file at `path`, or the built-in defaults.
pub fn load(path: Option<&Path>) -> Result<Vec<Target>, String> {
    match path {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            parse(&text, &path.display().to_string())
        }
        None => parse(DEFAULT_TARGETS, "built-in targets"),
    }
}

/// One transport against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransportVerdict {
    /// The transport.
    pub transport: String,
    /// The measured value, if the run measured it.
    pub value: Option<f64>,
    /// Whether it is on the passing side of the limit.
    pub met: Option<bool>,
    /// How far on the passing side: limit/value (below) or value/limit
    /// (above); above 1 means met, with that much headroom.
    pub margin: Option<f64>,
    /// This transport's own limit, when it is not the target's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// The bare mechanism's same figure in the same run, where the
    /// target has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Floor>,
    /// False where the target is not set for this transport (no value,
    /// not counted).
    #[serde(default = "enabled", skip_serializing_if = "is_true")]
    pub applies: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

impl TransportVerdict {
    /// The bare mechanism beside a missed target, if it missed the
    /// limit too: the machine cannot meet it, whatever the transport.
    pub fn missed_by_floor(&self, verdict: &Verdict) -> Option<&Floor> {
        let limit = self.limit.unwrap_or(verdict.limit);
        self.floor.as_ref().filter(|floor| {
            self.met == Some(false)
                && match verdict.direction {
                    Direction::Below => floor.value > limit,
                    Direction::Above => floor.value < limit,
                }
        })
    }
}

/// One target's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Target id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Unit.
    pub unit: String,
    /// Which side passes.
    pub direction: Direction,
    /// Limit.
    pub limit: f64,
    /// Per transport.
    pub transports: Vec<TransportVerdict>,
}

impl Verdict {
    /// True if any transport missed.
    pub fn missed(&self) -> bool {
        self.transports.iter().any(|t| t.met == Some(false))
    }
}

/// Target checks met, missed and not measured (no figure in the run);
/// a transport a target is not set for is none of them.
pub fn tally(verdicts: &[Verdict]) -> (usize, usize, usize) {
    let all = verdicts
        .iter()
        .flat_map(|v| &v.transports)
        .filter(|t| t.applies);
    let count = |m: Option<bool>| all.clone().filter(|t| t.met == m).count();
    (count(Some(true)), count(Some(false)), count(None))
}

/// Checks `results` against `targets`, for every transport of the run.
pub fn evaluate(results: &RunResults, targets: &[Target]) -> Vec<Verdict> {
    let figures = Figures::of(results);
    targets
        .iter()
        .map(|target| Verdict {
            id: target.def.id.into(),
            description: target.def.description.into(),
            unit: target.def.unit.into(),
            direction: target.def.direction,
            limit: target.limit,
            transports: results
                .plan
                .transports
                .iter()
                .map(|&t| {
                    let limit = target.limit_for(t);
                    let applies = target.applies_to(t);
                    let value = applies.then(|| (target.def.extract)(&figures, t)).flatten();
                    let margin = value.map(|v| match target.def.direction {
                        Direction::Below => limit / v.max(f64::MIN_POSITIVE),
                        Direction::Above => v / limit,
                    });
                    TransportVerdict {
                        transport: t.name().into(),
                        value,
                        met: margin.map(|m| m >= 1.0),
                        margin,
                        limit: (limit != target.limit).then_some(limit),
                        floor: target
                            .def
                            .floor
                            .filter(|_| applies)
                            .and_then(|floor| floor(&figures, t)),
                        applies,
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_with_every_target() {
        let targets = load(None).unwrap();
        assert_eq!(targets.len(), KNOWN.len());
        assert_eq!(targets[0].def.id, "event_logging_latency");
    }

    #[test]
    fn bad_files_are_rejected_with_the_reason() {
        assert!(
            parse("[nonsense]\nlimit = 1", "t")
                .unwrap_err()
                .contains("unknown target `nonsense`")
        );
        assert!(parse("[idle_cpu]\nlimit = \"fast\"", "t").is_err());
        assert!(parse("[idle_cpu]\nlimt = 1", "t").is_err());
        assert!(parse("not toml at all [", "t").is_err());
        assert!(
            parse("[idle_cpu]\nlimit = 1\nper_transport = { tcp = 2.0 }", "t")
                .unwrap_err()
                .contains("unknown transport `tcp`")
        );
        let own = parse(
            "[idle_cpu]\nlimit = 1\nper_transport = { zenoh = 2.0 }",
            "t",
        )
        .unwrap();
        assert_eq!(own[0].limit_for(Transport::Zenoh), 2.0);
        assert_eq!(own[0].limit_for(Transport::Uds), 1.0);
        assert_eq!(
            parse("[idle_cpu]\nlimit = 1\nenabled = false", "t")
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn verdicts_have_value_limit_and_margin_per_transport() {
        use harness::figure::{Better, Unit};
        let mut r = RunResults::default();
        r.plan.transports = vec![Transport::Pipe, Transport::Uds, Transport::Shm];
        r.plan.sizes = vec![64];
        let fig = |t: Transport, regime, agents, statistic, v: f64| {
            Figure::new(
                FigureId {
                    group: if regime == Regime::Idle {
                        Group::Resources
                    } else {
                        Group::Throughput
                    },
                    subject: Subject::Transport(Variant::of(t)),
                    regime,
                    size: (regime == Regime::OneWay).then_some(64),
                    agents,
                    statistic,
                },
                Unit::PerS,
                Better::Higher,
                vec![v * 0.9, v, v * 1.1],
            )
        };
        r.figures = vec![
            fig(
                Transport::Pipe,
                Regime::OneWay,
                None,
                Statistic::Rate,
                40_000.0,
            ),
            fig(
                Transport::Uds,
                Regime::OneWay,
                None,
                Statistic::Rate,
                5_000.0,
            ),
            fig(
                Transport::Pipe,
                Regime::Idle,
                Some(16),
                Statistic::CpuPercent,
                0.8,
            ),
        ];
        let targets = parse(
            "[small_message_throughput]\nlimit = 10000\n[idle_cpu]\nlimit = 1",
            "t",
        )
        .unwrap();
        let v = evaluate(&r, &targets);
        let tp = &v[0].transports;
        assert_eq!((tp[0].met, tp[0].margin), (Some(true), Some(4.0)));
        assert_eq!((tp[1].met, tp[1].margin), (Some(false), Some(0.5)));
        assert_eq!((tp[2].value, tp[2].met), (None, None), "shm not measured");
        assert!(v[0].missed());
        // 0.8 % over 16 agents = 0.05 % each, 20x under the 1 % limit.
        let idle = &v[1].transports[0];
        assert!(
            (idle.value.unwrap() - 0.05).abs() < 1e-12
                && (idle.margin.unwrap() - 20.0).abs() < 1e-9
        );
        assert!(!v[1].missed());
        // Met: pipe rate, pipe idle; missed: uds rate; not measured: the rest.
        assert_eq!(tally(&v), (2, 1, 3));
    }

    #[test]
    fn a_target_set_for_some_transports_judges_only_those() {
        assert!(
            parse(
                "[hub_call_over_blocking]\nlimit = 3\ntransports = [\"tcp\"]",
                "t"
            )
            .unwrap_err()
            .contains("unknown transport `tcp`")
        );
        let only = parse(
            "[hub_call_over_blocking]\nlimit = 3\ntransports = [\"shm\"]",
            "t",
        )
        .unwrap();
        assert!(only[0].applies_to(Transport::Shm));
        assert!(!only[0].applies_to(Transport::Uds));
        let every = parse("[hub_call_over_blocking]\nlimit = 3", "t").unwrap();
        assert!(every[0].applies_to(Transport::Uds));
    }

    /// The runtime's-path targets read the hub group's paired ratios
    /// and the scale group's ends; a transport a target is not set for
    /// is neither judged nor counted, even where the run measured it.
    #[test]
    fn the_runtime_path_targets_read_the_hub_and_scale_figures() {
        use harness::figure::{Better, Unit};
        let mut r = RunResults::default();
        r.plan.transports = vec![Transport::Uds, Transport::Shm];
        r.plan.sizes = vec![64];
        let shm = Variant::of(Transport::Shm);
        let uds = Variant::of(Transport::Uds);
        let ratio = |subject, regime, v: f64| {
            Figure::new(
                FigureId {
                    group: Group::Hub,
                    subject,
                    regime,
                    size: Some(64),
                    agents: None,
                    statistic: Statistic::Ratio,
                },
                Unit::Times,
                Better::Lower,
                vec![v * 0.95, v, v * 1.05],
            )
        };
        let scale = |v: Variant, agents, statistic, x: f64| {
            Figure::new(
                FigureId {
                    group: Group::Scale,
                    subject: Subject::Transport(v),
                    regime: Regime::Scale,
                    size: None,
                    agents: Some(agents),
                    statistic,
                },
                Unit::Count,
                Better::Lower,
                vec![x; 3],
            )
        };
        let path = |v, under| Subject::Path(v, under);
        r.figures = vec![
            ratio(path(shm, Regime::BackToBack), Regime::HubCall, 3.3),
            ratio(path(uds, Regime::BackToBack), Regime::HubCall, 0.5),
            ratio(path(uds, Regime::AsyncMultiThread), Regime::HubCall, 1.1),
            ratio(path(shm, Regime::BackToBack), Regime::AsyncPinned, 1.5),
            ratio(path(uds, Regime::BackToBack), Regime::AsyncPinned, 1.3),
            ratio(Subject::Versus(shm, uds), Regime::HubCall, 0.04),
            scale(shm, 16, Statistic::Threads, 10.0),
            scale(shm, 1000, Statistic::Threads, 12.0),
            scale(uds, 16, Statistic::Threads, 9.0),
            scale(uds, 1000, Statistic::Threads, 9.0),
            scale(shm, 16, Statistic::CpuPercent, 0.01),
            scale(shm, 1000, Statistic::CpuPercent, 0.5),
        ];
        let targets = load(None).unwrap();
        let v = evaluate(&r, &targets);
        let judged = |id: &str| {
            let verdict = v.iter().find(|x| x.id == id).unwrap();
            let [uds, shm] = &verdict.transports[..] else {
                panic!("two transports: {verdict:?}");
            };
            [uds, shm].map(|t| {
                (
                    t.applies,
                    t.value.map(|x| (x * 100.0).round() / 100.0),
                    t.met,
                )
            })
        };
        // shm's call over its blocking round trip misses 3x; uds's is
        // measured but not judged.
        assert_eq!(
            judged("hub_call_over_blocking"),
            [(false, None, None), (true, Some(3.3), Some(false))]
        );
        assert_eq!(
            judged("hub_call_over_async"),
            [(true, Some(1.1), Some(true)), (false, None, None)]
        );
        // shm has a limit of its own (2x): 1.5x meets it; uds misses 1.2x.
        assert_eq!(
            judged("async_over_blocking"),
            [
                (true, Some(1.3), Some(false)),
                (true, Some(1.5), Some(true))
            ]
        );
        // The ratio shm / uds 0.04 is 25x faster.
        assert_eq!(
            judged("hub_call_speedup_over_uds"),
            [(false, None, None), (true, Some(25.0), Some(true))]
        );
        // Threads grew from 10 to 12 on shm (a miss); flat on uds.
        assert_eq!(
            judged("scale_hub_threads"),
            [
                (true, Some(1.0), Some(true)),
                (true, Some(1.2), Some(false))
            ]
        );
        // Idle CPU at the largest count: uds has no figure in this run.
        assert_eq!(
            judged("scale_idle_cpu"),
            [(true, None, None), (true, Some(0.5), Some(true))]
        );
        let runtime: Vec<Verdict> = v
            .into_iter()
            .filter(|x| {
                [
                    "hub_call_over_blocking",
                    "hub_call_over_async",
                    "async_over_blocking",
                    "hub_call_speedup_over_uds",
                    "scale_hub_threads",
                    "scale_idle_cpu",
                ]
                .contains(&x.id.as_str())
            })
            .collect();
        // Met 5, missed 3, not measured 1 (uds's idle CPU); the four
        // transports the targets are not set for are not counted.
        assert_eq!(tally(&runtime), (5, 3, 1));
        let hub = runtime
            .iter()
            .find(|x| x.id == "hub_call_over_blocking")
            .unwrap();
        let cell = crate::report::verdict_cell(&hub.transports[0], hub);
        assert_eq!(cell, "not set for it");
    }

    #[test]
    fn a_miss_the_bare_mechanism_shares_is_said_to_be_the_machines() {
        use harness::figure::{Better, Unit};
        let mut r = RunResults::default();
        r.plan.transports = vec![Transport::Pipe, Transport::Uds, Transport::Shm];
        r.plan.sizes = vec![64];
        let fig = |group, subject, us: f64| {
            Figure::new(
                FigureId {
                    group,
                    subject,
                    regime: Regime::BackToBack,
                    size: Some(64),
                    agents: None,
                    statistic: Statistic::P95,
                },
                Unit::Ns,
                Better::Lower,
                vec![us * 1e3; 3],
            )
        };
        let transport = |t| Subject::Transport(Variant::of(t));
        let mechanism = |t| Subject::Mechanism(Variant::of(t).mechanism(Regime::BackToBack));
        r.figures = vec![
            // pipe misses, and so does the bare pipe: the machine's floor.
            fig(Group::Latency, transport(Transport::Pipe), 135.0),
            fig(Group::Baselines, mechanism(Transport::Pipe), 126.0),
            // uds misses where the bare socketpair does not: its own.
            fig(Group::Latency, transport(Transport::Uds), 141.0),
            fig(Group::Baselines, mechanism(Transport::Uds), 80.0),
            // shm meets it.
            fig(Group::Latency, transport(Transport::Shm), 1.0),
            fig(Group::Baselines, mechanism(Transport::Shm), 0.8),
        ];
        let targets = parse("[p95_round_trip]\nlimit = 100", "t").unwrap();
        let v = evaluate(&r, &targets);
        let [pipe, uds, shm] = &v[0].transports[..] else {
            panic!("three transports: {v:?}");
        };
        assert_eq!(pipe.met, Some(false));
        let floor = pipe
            .missed_by_floor(&v[0])
            .expect("the bare pipe missed too");
        assert_eq!(floor.mechanism, "pipe");
        assert!((floor.value - 126.0).abs() < 1e-9);
        assert_eq!(uds.met, Some(false));
        assert_eq!(
            uds.floor.as_ref().map(|f| f.mechanism.as_str()),
            Some("socketpair")
        );
        assert!(
            uds.missed_by_floor(&v[0]).is_none(),
            "the socketpair met it"
        );
        assert_eq!(shm.met, Some(true));
        assert!(shm.missed_by_floor(&v[0]).is_none());
        // The headline still counts both misses, and names the one that
        // is the machine's.
        let line = crate::report::verdict_line(&v, crate::report::Baseline::Missing("none"), 0);
        assert!(line.starts_with("2 of 3 target checks missed"), "{line}");
        assert!(
            line.contains("this machine cannot meet: p95_round_trip (pipe, as the bare pipe)"),
            "{line}"
        );
        assert!(!line.contains("socketpair"), "{line}");
    }
}
