//! `cargo xtask bench`: build the runner, run the groups with progress,
//! and write the record, the summary, the charts and the exports.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use std::time::Duration;

use harness::compare::{self, Rule};
use harness::drive::{self, Extra};
use harness::handicap::{HANDICAP_ENV, Handicap};
use harness::plan::parse_size;
use harness::runner::Progress;
use harness::serve::Client;
use harness::{Group, Transport};

use crate::ab::{self, OldBuild};
use crate::record::{self, Against, BenchRecord, Machine};
use crate::report::Baseline;
use crate::workspace::{build_runner, target_dir, workspace_root};
use crate::{Failure, Outcome, exports, report, targets};

/// What `cargo xtask bench` was asked.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Groups to run (default: all): baselines, throughput, latency, hub,
    /// peers, serialization, resources, patterns, logging, scale.
    pub groups: Vec<String>,
    /// Quick preset: every figure, fewer samples (about a minute).
    #[arg(long)]
    pub quick: bool,
    /// Smoke-test preset: every scenario at a tiny size; figures are not
    /// meaningful (used by CI to exercise the main job).
    #[arg(long, conflicts_with = "quick")]
    pub tiny: bool,
    /// Transports, comma-separated (default: pipe,uds,shm,zenoh).
    #[arg(long, value_delimiter = ',')]
    pub transports: Vec<String>,
    /// Message sizes, comma-separated, e.g. 64,4KiB,1MiB.
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// Agent counts for the patterns, comma-separated, e.g. 2,4,8.
    #[arg(long, value_delimiter = ',')]
    pub agents: Vec<usize>,
    /// Where results go.
    #[arg(long, default_value = "benchmark_results")]
    pub out: PathBuf,
    /// Targets file (default: the built-in xtask/targets.toml).
    #[arg(long)]
    pub targets: Option<PathBuf>,
    /// Compare with this record (from any machine) instead of the
    /// previous run of the same preset on this machine in --out.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Regression factor. Across runs, absolute figures that move this
    /// much are reported (never a regression) and same-run ratios are
    /// judged at half the excess (2.0 -> 1.5); an A/B run judges each
    /// figure's paired ratio new / old at that half too.
    #[arg(long, default_value_t = Rule::default().factor)]
    pub threshold: f64,
    /// A/B mode, the gate: build the runner of this git revision (or take
    /// this runner's path), run both builds' trials interleaved cell by
    /// cell in this run, and judge every figure by its paired ratio new /
    /// old (exit 3 on a regression). E.g. `--against origin/main`.
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
    /// Leave out the Python agent's figures (by default the hub group
    /// measures one: a venv in target/python-venv with the release
    /// `ipc_agent` wheel, made when python3 with venv is there).
    #[arg(long)]
    pub no_python: bool,
    /// Slow down the build under test: spin NS nanoseconds before every
    /// message over the variant LABEL (e.g. shm:500), to show the gate's
    /// power. With --against, only the new side is handicapped.
    #[arg(long, value_name = "LABEL:NS")]
    pub handicap: Option<String>,
    /// Seconds of extra trials allowed for blocks whose judged figures are
    /// still too noisy after the planned trials (default: 20 with --quick,
    /// 120 full, 0 tiny; with --against 150 quick, 240 full).
    #[arg(long, value_name = "SECS")]
    pub extra_budget: Option<f64>,
}

/// The rule for a `--threshold`.
pub fn rule(threshold: f64) -> Rule {
    Rule {
        factor: threshold,
        ratio_factor: 1.0 + (threshold - 1.0) / 2.0,
    }
}

/// Checks every input before anything runs or is written.
fn validate(args: &BenchArgs) -> Result<Vec<String>, Failure> {
    let bad = |e: harness::HarnessError| Failure::Input(e.to_string());
    for g in &args.groups {
        g.parse::<Group>().map_err(bad)?;
    }
    for t in &args.transports {
        t.parse::<Transport>().map_err(bad)?;
    }
    for s in &args.sizes {
        parse_size(s).map_err(bad)?;
    }
    if let Some(&n) = args.agents.iter().find(|&&n| n == 0 || n > 64) {
        return Err(Failure::Input(format!("agent count {n} is outside 1..=64")));
    }
    if args.threshold.is_nan() || args.threshold <= 1.0 {
        return Err(Failure::Input("--threshold must be above 1.0".into()));
    }
    if let Some(h) = handicap_asked(args) {
        handicap(&h)?;
    }
    if let Some(b) = args.extra_budget
        && !(b.is_finite() && b >= 0.0)
    {
        return Err(Failure::Input(
            "--extra-budget must be 0 or more seconds".into(),
        ));
    }
    let mut runner_args = Vec::new();
    if !args.groups.is_empty() {
        runner_args.push(format!("--groups={}", args.groups.join(",")));
    }
    if args.quick {
        runner_args.push("--quick".into());
    }
    if args.tiny {
        runner_args.push("--tiny".into());
    }
    if !args.transports.is_empty() {
        runner_args.push(format!("--transports={}", args.transports.join(",")));
    }
    if !args.sizes.is_empty() {
        runner_args.push(format!("--sizes={}", args.sizes.join(",")));
    }
    if !args.agents.is_empty() {
        let agents: Vec<String> = args.agents.iter().map(|n| n.to_string()).collect();
        runner_args.push(format!("--agents={}", agents.join(",")));
    }
    Ok(runner_args)
}

/// `--handicap`, or else the runner's environment variable as before.
fn handicap_asked(args: &BenchArgs) -> Option<String> {
    args.handicap
        .clone()
        .or_else(|| std::env::var(HANDICAP_ENV).ok())
}

/// The handicap `LABEL:NS`, checked.
fn handicap(text: &str) -> Result<Handicap, Failure> {
    Handicap::parse(text).ok_or_else(|| {
        Failure::Input(format!(
            "--handicap {text}: expected LABEL:NANOSECONDS, e.g. shm:500"
        ))
    })
}

/// How long extra trials may take: `--extra-budget`, or by preset (an
/// A/B run's blocks cost twice as much and judge every figure, so it gets
/// more: its quick runs had 8 % too noisy with 40 s, most of them just
/// past the rule with five trials, and 3.6-5.9 % with 90 s, the budget
/// spent each time before the hub block's turn came).
fn extra(args: &BenchArgs, plan: &harness::Plan) -> Extra {
    let ab = args.against.is_some();
    let seconds = args
        .extra_budget
        .unwrap_or(match (args.tiny, args.quick, ab) {
            (true, _, _) => 0.0,
            (_, true, false) => 20.0,
            (_, true, true) => 150.0,
            (_, false, false) => 120.0,
            (_, false, true) => 240.0,
        });
    Extra {
        budget: Duration::from_secs_f64(seconds),
        // From five trials, two steps of three; from eight, two as well.
        most_trials: plan.trials + 6,
    }
}

/// The preset `args` asks for.
fn preset(args: &BenchArgs) -> harness::Plan {
    if args.tiny {
        harness::Plan::tiny()
    } else if args.quick {
        harness::Plan::quick()
    } else {
        harness::Plan::full()
    }
}

/// True if `plan` was run with the same preset as `want` (same trials,
/// samples and windows): other presets' figures are not comparable.
fn same_preset(plan: &harness::Plan, want: &harness::Plan) -> bool {
    plan.preset == want.preset
        && plan.trials == want.trials
        && plan.latency_samples == want.latency_samples
        && plan.throughput_bytes == want.throughput_bytes
}

/// The newest stored run in `dir` that is a fair baseline for this run:
/// same machine, same preset, no handicap. Says why there is none.
fn previous_run(dir: &Path, want: &harness::Plan) -> Result<(String, BenchRecord), String> {
    let here = Machine::detect();
    let mut elsewhere = 0;
    for path in record::stored_runs(dir).into_iter().rev() {
        let loaded = match record::load(&path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("note: not comparing with {}: {e}", path.display());
                continue;
            }
        };
        if !loaded.machine.same_as(&here) {
            elsewhere += 1;
            continue;
        }
        if same_preset(&loaded.results.plan, want) && loaded.results.plan.handicap.is_none() {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            return Ok((name, loaded));
        }
    }
    let mut why = "no baseline from this machine yet; this run becomes the baseline".to_string();
    if elsewhere > 0 {
        why.push_str(&format!(
            " ({elsewhere} stored run(s) in {} were measured on other machines and are not compared;              name one with --baseline to compare anyway)",
            dir.display()
        ));
    }
    Err(why)
}

/// Shows where a run is: on one line rewritten in place at a terminal,
/// a line per cell otherwise (and for every failure).
fn show_progress(p: &Progress<'_>, live: bool) {
    let text = p.to_string();
    if live && p.error.is_none() {
        eprint!("\r\x1b[2K{text}");
        let _ = std::io::stderr().flush();
    } else {
        if live {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }
}

/// A runner with the plan's arguments, handicapped if asked, told where
/// the Python agent's interpreter is (if there is one).
fn runner_command(
    runner: &Path,
    runner_args: &[String],
    handicap: Option<&str>,
    python: Option<&Path>,
) -> Command {
    let mut command = Command::new(runner);
    command
        .args(runner_args)
        .env_remove(HANDICAP_ENV)
        .env_remove(harness::scenarios::hub::PYTHON_ENV);
    if let Some(h) = handicap {
        command.env(HANDICAP_ENV, h);
    }
    if let Some(p) = python {
        command.env(harness::scenarios::hub::PYTHON_ENV, p);
    }
    command
}

/// Writes the summary, charts and exports for `record` into `dir`, and
/// prints the console summary.
pub fn publish(
    dir: &Path,
    record: &BenchRecord,
    targets_file: Option<&Path>,
    baseline: Result<(String, &BenchRecord), String>,
    rule: Rule,
) -> Result<Outcome, Failure> {
    let targets = targets::load(targets_file).map_err(Failure::Input)?;
    let verdicts = targets::evaluate(&record.results, &targets);
    // An A/B record is judged against its own old side, whatever else.
    let ab = record.against.as_ref().map(|old| {
        (
            describe_against(old),
            compare::paired(
                &old.results.figures,
                &record.results.figures,
                rule.ratio_factor,
            ),
        )
    });
    let comparison = baseline.map(|(name, b)| {
        (
            name,
            compare::compare(&b.results.figures, &record.results.figures, rule),
        )
    });
    let shown = match (&ab, &comparison) {
        (Some((name, c)), _) => Baseline::Ab(name, c),
        (None, Ok((name, c))) => Baseline::Compared(name, c),
        (None, Err(why)) => Baseline::Missing(why),
    };
    let io = |e: std::io::Error| Failure::Error(format!("writing the report: {e}"));
    let charts = report::write_charts(dir, &record.results).map_err(io)?;
    let summary = report::summary(record, &verdicts, shown, &charts);
    record::write_atomic(&dir.join("LATEST_SUMMARY.md"), summary.as_bytes()).map_err(io)?;
    let bmf =
        serde_json::to_vec_pretty(&exports::bencher_bmf(&record.results)).expect("serializes");
    record::write_atomic(&dir.join("LATEST_bencher_bmf.json"), &bmf).map_err(io)?;
    let gab = serde_json::to_vec_pretty(&exports::smaller_is_better(&record.results))
        .expect("serializes");
    record::write_atomic(&dir.join("LATEST_github_action_benchmark.json"), &gab).map_err(io)?;
    print!("{}", report::console(record, &verdicts, shown));
    println!("\nsummary: {}", dir.join("LATEST_SUMMARY.md").display());
    Ok(Outcome {
        failed_scenarios: !record.results.failures.is_empty(),
        target_missed: verdicts.iter().any(|v| v.missed()),
        regression: match &ab {
            Some((_, c)) => c.regressions().next().is_some(),
            None => comparison.is_ok_and(|(_, c)| c.regressions().next().is_some()),
        },
    })
}

/// `origin/main (commit abcdef123456)`.
fn describe_against(a: &Against) -> String {
    OldBuild {
        reference: a.reference.clone(),
        commit: a.commit.clone(),
        runner: PathBuf::new(),
    }
    .describe()
}

/// Runs `cargo xtask bench`.
pub fn run(args: &BenchArgs) -> Result<Outcome, Failure> {
    let runner_args = validate(args)?;
    // Load what the report needs before measuring, so bad input fails fast.
    targets::load(args.targets.as_deref()).map_err(Failure::Input)?;
    let plan = preset(args);
    let baseline = match (&args.baseline, &args.against) {
        (_, Some(_)) => Err("an A/B run is judged against the old build measured beside it".into()),
        (Some(path), None) => Ok((
            path.display().to_string(),
            record::load(path).map_err(|e| Failure::Input(e.to_string()))?,
        )),
        (None, None) => previous_run(&args.out, &plan),
    };
    let root = workspace_root();
    // What is measured is what is built now, whatever changes meanwhile.
    let git = record::git_state(&root);
    let old = match &args.against {
        Some(reference) => Some(ab::old_build(&root, &target_dir(&root), reference)?),
        None => None,
    };
    let runner = build_runner(&root)?;
    let measures_hub = args.groups.is_empty() || args.groups.iter().any(|g| g == "hub");
    let python = if measures_hub && !args.no_python {
        crate::pytest::bench_python(&root)
    } else {
        None
    };
    std::fs::create_dir_all(&args.out)
        .map_err(|e| Failure::Error(format!("creating {}: {e}", args.out.display())))?;
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .expect("formats");
    let bad = |e: harness::HarnessError| Failure::Error(e.to_string());
    let mut sides = Vec::new();
    if let Some(old) = &old {
        eprintln!(
            "A/B: {} (old) and this checkout (new), interleaved cell by cell",
            old.describe()
        );
        sides.push(
            Client::spawn(
                runner_command(&old.runner, &runner_args, None, python.as_deref()),
                "old",
            )
            .map_err(bad)?,
        );
    }
    let name = if old.is_some() { "new" } else { "this build" };
    let command = runner_command(
        &runner,
        &runner_args,
        handicap_asked(args).as_deref(),
        python.as_deref(),
    );
    sides.push(Client::spawn(command, name).map_err(bad)?);
    let live = std::io::stderr().is_terminal();
    let rule = rule(args.threshold);
    let driven = drive::drive(
        sides,
        plan.trials,
        rule,
        extra(args, &plan),
        &args.out,
        |p| show_progress(p, live),
    );
    if live {
        eprintln!();
    }
    let mut results = driven.map_err(bad)?.results;
    let new = results.pop().expect("one result per side");
    let against = old.zip(results.pop()).map(|(old, results)| Against {
        reference: old.reference,
        commit: old.commit,
        results,
    });
    let record = BenchRecord {
        record_schema: record::RECORD_SCHEMA,
        started_utc: now
            .format(&time::format_description::well_known::Rfc3339)
            .expect("formats"),
        machine: Machine::detect(),
        toolchain: record::toolchain(),
        git,
        command: std::env::args().collect(),
        against,
        results: new,
    };
    let path = args.out.join(format!("benchmark_{stamp}.json"));
    let json = serde_json::to_vec_pretty(&record).expect("records serialize");
    record::write_atomic(&path, &json)
        .map_err(|e| Failure::Error(format!("writing {}: {e}", path.display())))?;
    eprintln!("record: {}", path.display());
    let mut outcome = publish(
        &args.out,
        &record,
        args.targets.as_deref(),
        baseline
            .as_ref()
            .map(|(n, r)| (n.clone(), r))
            .map_err(Clone::clone),
        rule,
    )?;
    if let Some(a) = &record.against {
        outcome.failed_scenarios |= !a.results.failures.is_empty();
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> BenchRecord {
        let path = workspace_root().join("xtask/tests/fixtures/record_tiny.json");
        record::load(&path).expect("the fixture loads")
    }

    fn store(dir: &Path, name: &str, record: &BenchRecord) {
        let json = serde_json::to_vec(record).unwrap();
        record::write_atomic(&dir.join(name), &json).unwrap();
    }

    #[test]
    fn only_runs_from_this_machine_and_preset_are_baselines() {
        let dir = tempfile::tempdir().unwrap();
        let tiny = harness::Plan::tiny();
        let mut elsewhere = fixture();
        elsewhere.machine = Machine {
            cpu_model: "Some Other CPU".into(),
            ..Machine::detect()
        };
        store(dir.path(), "benchmark_20260101T000000Z.json", &elsewhere);
        let why = previous_run(dir.path(), &tiny).unwrap_err();
        assert!(
            why.starts_with("no baseline from this machine yet; this run becomes the baseline"),
            "{why}"
        );
        assert!(why.contains("1 stored run(s)"), "{why}");

        // A handicapped run and another preset from this machine: still none.
        let mut here = fixture();
        here.machine = Machine::detect();
        let mut handicapped = here.clone();
        handicapped.results.plan.handicap = Some(harness::handicap::Handicap {
            label: "shm".into(),
            ns: 1,
        });
        store(dir.path(), "benchmark_20260102T000000Z.json", &handicapped);
        let mut quick = here.clone();
        quick.results.plan.preset = "quick".into();
        store(dir.path(), "benchmark_20260103T000000Z.json", &quick);
        assert!(previous_run(dir.path(), &tiny).is_err());

        // The newest fair one wins.
        store(dir.path(), "benchmark_20260104T000000Z.json", &here);
        let (name, _) = previous_run(dir.path(), &tiny).unwrap();
        assert_eq!(name, "benchmark_20260104T000000Z.json");
    }

    #[test]
    fn the_threshold_sets_both_factors() {
        let r = rule(2.0);
        assert_eq!((r.factor, r.ratio_factor), (2.0, 1.5));
        assert_eq!(rule(3.0).ratio_factor, 2.0);
    }
}
