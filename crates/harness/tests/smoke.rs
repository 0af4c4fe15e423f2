//! Every group of the runner at a tiny size, across real processes; and
//! the integrity checks catching a corrupted, dropped or duplicated
//! message end to end.
//!
//! `harness = false`: this binary is also the agent the scenarios spawn.

use harness::task::{AgentReport, AgentTask, Role};
use harness::transport::{Strategy, Transport, Variant, spawn_agent};
use harness::{Group, Plan, Regime};
use ipc_core::{FrameReceiver, FrameSender, payload};
use libtest_mimic::{Arguments, Failed, Trial};

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(what().into()) }
}

fn run_group(group: Group) -> Result<(), Failed> {
    let plan = Plan {
        groups: vec![group],
        ..Plan::tiny()
    };
    let mut steps = 0;
    let r = harness::runner::run(&plan, |p| {
        steps = p.total;
        assert!(p.done <= p.total);
    })?;
    ensure(r.failures.is_empty(), || {
        format!("failures: {:?}", r.failures)
    })?;
    // Without iceoryx2 in the build, the peers group has no step at all.
    let unbuilt = group == Group::Peers && !harness::scenarios::peers::AVAILABLE;
    ensure(steps > 0 || unbuilt, || "no step ran".into())?;
    let transports = plan.transports.len();
    let sizes = plan.sizes.len();
    // Every scenario runs once per trial.
    let k = plan.trials as usize;
    ensure(k >= 2, || "the tiny preset runs two trials".into())?;
    match group {
        Group::Baselines => {
            // Each transport's mechanism at every size, and the parked one.
            ensure(
                r.baselines.latency.len() == k * (transports * sizes + 1),
                || format!("{:?}", r.baselines.latency.len()),
            )?;
            // The copy stream at the one bulk size, memcpy at five.
            ensure(r.baselines.bandwidth.len() == k * 6, || {
                format!("{:?}", r.baselines.bandwidth.len())
            })?;
            ensure(
                r.baselines.bandwidth.iter().all(|m| m.bytes_per_s > 0.0),
                || "bandwidth".into(),
            )?;
        }
        Group::Throughput => {
            // pipe, uds, shm, shm-zero-copy at every size; three ring sizes
            // at the smallest and the largest; shm-copy and shm-blob at the
            // sizes above a ring record; and shm, shm-copy, shm-blob at the
            // three blob sizes the plan does not have.
            // zenoh-veth beside zenoh where a namespace can be made (root).
            // Each transport through the async API too, on two runtimes,
            // at the smallest and the largest size.
            let large = plan.sizes.iter().filter(|&&s| s > 128 << 10).count();
            let veth = usize::from(ipc_zenoh::netns::unavailable().is_none());
            let ends = 2;
            ensure(
                r.throughput.len()
                    == k * ((transports + 1 + veth) * sizes
                        + 6
                        + 2 * large
                        + 3 * 3
                        + transports * 2 * ends),
                || format!("{}", r.throughput.len()),
            )?;
            // Every async stream is paired with the blocking one beside it.
            for &t in &plan.transports {
                for regime in harness::scenarios::throughput::ASYNC {
                    for size in [plan.sizes[0], plan.sizes[sizes - 1]] {
                        let paired = r.figures.iter().any(|f| {
                            f.id.group == Group::Throughput
                                && f.id.regime == regime
                                && f.id.size == Some(size)
                                && f.id.statistic == harness::Statistic::Ratio
                                && f.id.subject
                                    == harness::Subject::Path(Variant::of(t), Regime::OneWay)
                                && f.trials.len() == k
                        });
                        ensure(paired, || {
                            format!("no {regime:?} / blocking ratio for {t:?} at {size} B")
                        })?;
                    }
                }
            }
            ensure(
                (veth == 1)
                    == r.throughput
                        .iter()
                        .any(|t| t.variant.label() == "zenoh-veth"),
                || "zenoh-veth measured where no namespace can be made, or missing".into(),
            )?;
            ensure(
                r.throughput
                    .iter()
                    .any(|t| t.variant.label() == "shm-copy" && t.size == 16 << 20),
                || "no 16 MiB copies".into(),
            )?;
            ensure(
                r.throughput
                    .iter()
                    .all(|t| t.msgs_per_s > 0.0 && t.messages > 0),
                || "rates".into(),
            )?;
        }
        Group::Scale => {
            // One hub per agent count, over uds and shm.
            let hubs = plan.scale_agents.len() * 2;
            ensure(r.scale.len() == k * hubs, || {
                format!("{} scale records", r.scale.len())
            })?;
            for s in &r.scale {
                ensure(
                    s.call_each.count > 0 && s.join_ns > 0 && s.hub_threads > 0,
                    || format!("{s:?}"),
                )?;
            }
            let threads = r
                .figures
                .iter()
                .filter(|f| {
                    f.id.group == Group::Scale && f.id.statistic == harness::Statistic::Threads
                })
                .count();
            ensure(
                threads == hubs
                    && r.figures
                        .iter()
                        .filter(|f| f.id.group == Group::Scale)
                        .all(|f| !f.judged),
                || format!("{threads} thread figures for {hubs} hubs, or a scale figure judged"),
            )?;
        }
        Group::Hub => {
            // Per transport: the blocking round trip (pinned and not)
            // and the paths;
            // over shm, a 64 MiB result handed over by a Rust agent (no
            // Python agent here: IPC_BENCH_PYTHON is not set).
            // (A Python agent's figures, there when the environment names
            // an interpreter, are counted apart.)
            let python = |regime| matches!(regime, Regime::HubCallPython | Regime::BulkReplyPython);
            let paths = harness::scenarios::hub::PATHS.len();
            let bulk = usize::from(plan.transports.contains(&harness::Transport::Shm));
            let rust = r.hub.iter().filter(|l| !python(l.regime)).count();
            ensure(rust == k * (transports * (2 + paths) + bulk), || {
                format!("{rust} hub records")
            })?;
            for l in &r.hub {
                let samples = match l.regime {
                    Regime::BulkReply | Regime::BulkReplyPython => {
                        harness::scenarios::hub::BULK_CALLS.1
                    }
                    _ => plan.latency_samples_at(l.size),
                };
                ensure(
                    l.stats.count == samples
                        && l.stats.p50_ns > 0
                        && l.stats.p50_ns <= l.stats.max_ns,
                    || format!("{l:?}"),
                )?;
            }
            // Every path of every transport (and the unpinned blocking
            // round trip) over its blocking round trip, the async one
            // over the unpinned blocking one, the two unpinned hub calls
            // over the async one, the one from `block_on` over the
            // multi-thread async one too, the pinned hub call over the
            // pinned async one, and shm's three calls over uds's, each paired
            // over every trial.
            let ratios: Vec<_> = r
                .figures
                .iter()
                .filter(|f| f.id.group == Group::Hub && f.id.statistic == harness::Statistic::Ratio)
                .filter(|f| !python(f.id.regime))
                .collect();
            let over_blocking = ratios
                .iter()
                .filter(|f| matches!(f.id.subject, harness::Subject::Path(_, Regime::BackToBack)))
                .count();
            ensure(over_blocking == transports * (paths + 1), || {
                format!("{over_blocking} ratios over the blocking round trip")
            })?;
            let pinned_over_pinned = ratios
                .iter()
                .filter(|f| {
                    f.id.regime == Regime::HubCallPinned
                        && matches!(f.id.subject, harness::Subject::Path(_, Regime::AsyncPinned))
                })
                .count();
            ensure(pinned_over_pinned == transports, || {
                format!("{pinned_over_pinned} pinned hub calls over the pinned async round trip")
            })?;
            let same_runtime = ratios
                .iter()
                .filter(|f| {
                    f.id.regime == Regime::HubCall
                        && matches!(
                            f.id.subject,
                            harness::Subject::Path(_, Regime::AsyncMultiThread)
                        )
                })
                .count();
            ensure(same_runtime == transports, || {
                format!("{same_runtime} hub calls over the multi-thread async round trip")
            })?;
            ensure(
                ratios.len() == transports * (paths + 6) + 3
                    && ratios.iter().all(|f| f.trials.len() == k),
                || format!("{} hub ratios", ratios.len()),
            )?;
        }
        Group::Latency => {
            ensure(!r.latency.is_empty(), || "no latency".into())?;
            for l in &r.latency {
                let s = &l.stats;
                ensure(
                    s.count == plan.latency_samples_at(l.size) || s.count == plan.parked_samples,
                    || format!("{l:?}"),
                )?;
                ensure(
                    s.min_ns <= s.p50_ns && s.p50_ns <= s.p99_ns && s.p99_ns <= s.max_ns,
                    || format!("percentiles out of order: {s:?}"),
                )?;
            }
            ensure(
                r.latency
                    .iter()
                    .any(|l| l.regime == harness::schema::Regime::Parked),
                || "no parked regime".into(),
            )?;
            // Every transport's p50 has a ratio to its mechanism, paired
            // over every trial; and the default shm wait one to spinning
            // at every size, back to back.
            let ratios: Vec<_> = r
                .figures
                .iter()
                .filter(|f| f.id.statistic == harness::Statistic::Ratio)
                .collect();
            let versus = ratios
                .iter()
                .filter(|f| matches!(f.id.subject, harness::Subject::Versus(..)))
                .count();
            let shm_sizes = r
                .latency
                .iter()
                .filter(|l| l.variant == Variant::shm(Strategy::Spin))
                .map(|l| l.size)
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            ensure(versus == shm_sizes, || {
                format!("{versus} adaptive/spin ratios for {shm_sizes} sizes")
            })?;
            let p50s = r
                .figures
                .iter()
                .filter(|f| {
                    f.id.group == Group::Latency && f.id.statistic == harness::Statistic::P50
                })
                .count();
            ensure(ratios.len() == p50s + versus && p50s > 0, || {
                format!("{} ratios for {p50s} latency figures", ratios.len())
            })?;
            ensure(ratios.iter().all(|f| f.trials.len() == k), || {
                "a ratio missed a trial".into()
            })?;
        }
        Group::Peers => {
            let (ours, others) = (r.peers.ours.len(), r.peers.others.len());
            if !harness::scenarios::peers::AVAILABLE {
                // Built without iceoryx2 (plain `cargo test`): nothing is
                // measured, and nothing fails.
                ensure(ours == 0 && others == 0, || format!("{ours} / {others}"))?;
                return Ok(());
            }
            ensure(ours == k * sizes && others == k * sizes, || {
                format!("{ours} ours, {others} theirs")
            })?;
            let ratios = r
                .figures
                .iter()
                .filter(|f| {
                    f.id.group == Group::Peers && f.id.statistic == harness::Statistic::Ratio
                })
                .filter(|f| f.trials.len() == k)
                .count();
            // shm over iceoryx2 and over the bare shared buffer, per size.
            ensure(ratios == 2 * sizes, || format!("{ratios} paired ratios"))?;
        }
        Group::Serialization => {
            ensure(r.serialization.len() == 9 * k, || {
                format!("{}", r.serialization.len())
            })?;
            ensure(r.typed_round_trips.len() == 3 * transports * k, || {
                "typed".into()
            })?;
        }
        Group::Resources => {
            ensure(
                r.idle.len() == k * transports * plan.idle_agents.len(),
                || "idle".into(),
            )?;
            ensure(r.idle.iter().all(|i| i.rss_kib_max > 0), || "rss".into())?;
            // Each idle agent is its transport's own small program (cargo
            // builds the package's binaries for its tests), not this one.
            ensure(
                r.idle.iter().all(|i| {
                    i.agent_program == harness::idle_agent::program_name(i.variant.transport)
                }),
                || {
                    let programs: Vec<_> = r.idle.iter().map(|i| &i.agent_program).collect();
                    format!("idle agents were {programs:?}")
                },
            )?;
            // Shared memory per agent, for shm only (and well under the
            // rings' size: an idle connection gives its pages back).
            ensure(
                r.idle.iter().all(|i| {
                    (i.variant.transport == harness::Transport::Shm)
                        == i.shm_kib_per_agent
                            .is_some_and(|kib| kib > 0.0 && kib < 512.0)
                }),
                || {
                    format!(
                        "{:?}",
                        r.idle
                            .iter()
                            .map(|i| i.shm_kib_per_agent)
                            .collect::<Vec<_>>()
                    )
                },
            )?;
            ensure(r.churn.len() == k * transports, || "churn".into())?;
        }
        Group::Patterns => {
            // fan-out, fan-in, broadcast everywhere; pipeline and all-to-all
            // where agents have addresses; the bulk broadcast everywhere and
            // with shm-blob.
            ensure(
                r.patterns.len() == k * (4 * transports + 2 * (transports - 1) + 1),
                || format!("{}", r.patterns.len()),
            )?;
        }
        Group::Logging => {
            ensure(r.logging.len() == 2 * transports * k, || "logging".into())?;
            ensure(
                r.logging.iter().all(|l| l.latency.count == l.events),
                || "event counts".into(),
            )?;
        }
    }
    ensure(r.figures.iter().all(|f| f.trials.len() == k), || {
        "every figure has a value from every trial".into()
    })?;
    let json = serde_json::to_string(&r)?;
    let back: harness::RunResults = serde_json::from_str(&json)?;
    ensure(back.schema_version == harness::SCHEMA_VERSION, || {
        "schema round trip".into()
    })
}

/// Sends `seqs` (with an optional flipped byte in the last) to a sink that
/// expects 0, 1, 2, ... and returns its report.
fn sink_report(
    transport: Transport,
    seqs: &[u64],
    corrupt_last: bool,
) -> Result<AgentReport, Failed> {
    let mut agent = spawn_agent(&AgentTask {
        cpu: None,
        role: Role::Sink {
            count: Some(seqs.len() as u64),
            in_place: false,
        },
        variant: Variant::of(transport),
    })?;
    for (i, &seq) in seqs.iter().enumerate() {
        let mut msg = vec![0; 64];
        payload::fill(seq, &mut msg);
        if corrupt_last && i + 1 == seqs.len() {
            msg[40] ^= 1;
        }
        agent.conn().send(&msg)?;
    }
    Ok(serde_json::from_slice(&agent.conn().recv()?)?)
}

fn integrity_failures_are_caught() -> Result<(), Failed> {
    for transport in Transport::ALL {
        let clean = sink_report(transport, &[0, 1, 2], false)?;
        ensure(clean.check(Some(3)).is_ok() && clean.errors == 0, || {
            format!("{transport}: {clean:?}")
        })?;
        for (what, seqs, corrupt) in [
            ("corrupted", &[0, 1, 2][..], true),
            ("dropped", &[0, 2, 3][..], false),
            ("duplicated", &[0, 1, 1][..], false),
        ] {
            let report = sink_report(transport, seqs, corrupt)?;
            ensure(report.errors > 0 && report.check(Some(3)).is_err(), || {
                format!("{transport}: a {what} message went unnoticed: {report:?}")
            })?;
        }
    }
    Ok(())
}

/// The A/B gate end to end: the runner twice in serve mode, the new side
/// with the default shm variant made slower by 200 µs per message (the
/// harness's handicap), driven cell by cell in one run; the paired
/// comparison flags that variant's figures and nothing else.
fn a_real_slowdown_is_flagged() -> Result<(), Failed> {
    use harness::compare::{Rule, paired};
    use harness::drive::{Extra, drive};
    use harness::handicap::HANDICAP_ENV;
    use harness::serve::Client;
    let runner = |handicap: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ipc-bench"));
        c.args([
            "--tiny",
            "--groups=latency",
            "--transports=pipe,shm",
            "--sizes=64",
        ])
        .env_remove(HANDICAP_ENV);
        if let Some(h) = handicap {
            c.env(HANDICAP_ENV, h);
        }
        c
    };
    let sides = vec![
        Client::spawn(runner(None), "old")?,
        Client::spawn(runner(Some("shm:200000")), "new")?,
    ];
    let scratch = tempfile::tempdir()?;
    // The handicap adds 200 us to round trips of about 1 us (back to back)
    // and 50 us (parked): a change of 5x to 200x. A wide factor keeps a
    // figure's ordinary spread between two trials from passing for one.
    let rule = Rule {
        factor: 5.0,
        ratio_factor: 3.0,
    };
    let mut steps = 0;
    let d = drive(
        sides,
        Plan::tiny().trials,
        rule,
        Extra::NONE,
        scratch.path(),
        |p| {
            steps = p.done;
        },
    )?;
    let (old, new) = (&d.results[0], &d.results[1]);
    ensure(old.failures.is_empty() && new.failures.is_empty(), || {
        format!("failures: {:?} {:?}", old.failures, new.failures)
    })?;
    ensure(
        old.plan.handicap.is_none() && new.plan.handicap.is_some(),
        || "only the new side is handicapped".into(),
    )?;
    let c = paired(&old.figures, &new.figures, rule.ratio_factor);
    let flagged: Vec<&str> = c.regressions().map(|r| r.figure.as_str()).collect();
    println!(
        "    {steps} cells run; flagged: {flagged:?}; too noisy: {:?}",
        c.noisy
    );
    ensure(c.unpaired.is_empty(), || {
        format!("both sides ran the same cells: {:?}", c.unpaired)
    })?;
    ensure(
        flagged.contains(&"latency/shm/back-to-back/64B/p50"),
        || format!("the slowed-down figure was not flagged: {c:?}"),
    )?;
    ensure(
        flagged
            .iter()
            .all(|k| k.starts_with("latency/shm/") || k.starts_with("latency/shm-over-")),
        || format!("an unaffected figure was flagged: {flagged:?}"),
    )
}

/// Agents spawned on one address are each paired with their own process,
/// so dropping one closes the connection that process waits on (paired at
/// random, every drop waited 2 s for an agent whose connection was still
/// open elsewhere, then killed it).
fn spawned_agents_own_their_connections() -> Result<(), Failed> {
    use harness::task::{AgentTask, Role};
    for transport in [harness::Transport::Uds, harness::Transport::Shm] {
        let task = AgentTask {
            cpu: None,
            role: Role::Idle,
            variant: harness::Variant::of(transport),
        };
        let mut agents = harness::transport::spawn_agents(&task, 6)?;
        for agent in &mut agents {
            let pid = agent.pid();
            let peer = harness::transport::ConnectionExt::peer_pid(agent.conn());
            ensure(peer == Some(pid), || {
                format!("{transport}: the connection of agent {pid} leads to {peer:?}")
            })?;
        }
        drop(agents);
    }
    Ok(())
}

fn main() {
    harness::agent_main_if_requested();
    let mut trials: Vec<Trial> = Group::ALL
        .into_iter()
        .map(|g| Trial::test(format!("tiny_run::{g}"), move || run_group(g)))
        .collect();
    trials.push(Trial::test(
        "integrity_failures_are_caught",
        integrity_failures_are_caught,
    ));
    trials.push(Trial::test(
        "a_real_slowdown_is_flagged",
        a_real_slowdown_is_flagged,
    ));
    trials.push(Trial::test(
        "spawned_agents_own_their_connections",
        spawned_agents_own_their_connections,
    ));
    // Scenarios measure; running them side by side on two cores only adds
    // noise and risks timeouts, so one at a time.
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit();
}
