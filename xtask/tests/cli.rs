//! `cargo xtask` as a user runs it: reports from a fixture record, exit
//! codes, and bad input that must fail with a message and write nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn report_from_a_fixture_has_every_part() {
    let out = tempfile::tempdir().unwrap();
    let record = fixture("record_tiny.json");
    let run = xtask(&[
        "report",
        record.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    // 0 (every target met) or 2 (a tiny run's figure missed one): not an
    // error, and never 3 without a baseline.
    assert!(
        matches!(run.status.code(), Some(0 | 2)),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = std::fs::read_to_string(out.path().join("LATEST_SUMMARY.md")).unwrap();
    assert!(summary.starts_with("# Benchmark summary\n\n**Verdict:** "));
    assert!(summary.contains("target checks"));
    assert!(summary.contains("no baseline given"));
    for section in [
        "## Targets",
        "## Recommendations",
        "## Comparison",
        "## Method",
        "## Charts",
        "## Latency (round trip)",
        "## Throughput",
        "## Baselines and ratios",
        "## Serialization",
        "## Resources",
        "## Patterns",
        "## Event logging",
    ] {
        assert!(summary.contains(section), "missing {section}");
    }
    // The target table has a column per transport and a row per target.
    assert!(summary.contains("| target | limit | pipe | uds | shm |"));
    assert_eq!(
        summary.matches("headroom)").count() + summary.matches("of limit)").count(),
        21
    );
    // Medians come with their intervals, and the method says how many trials.
    assert!(summary.contains("independent trials"));
    assert!(summary.contains("p50 [interval]"));
    for file in [
        "LATEST_bencher_bmf.json",
        "LATEST_github_action_benchmark.json",
        "latency_percentiles.svg",
        "throughput_by_size.svg",
        "patterns_by_agents.svg",
        "idle_cpu.svg",
        "idle_rss.svg",
    ] {
        assert!(
            files_in(out.path()).contains(&file.to_string()),
            "missing {file}"
        );
    }
    let bmf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("LATEST_bencher_bmf.json")).unwrap(),
    )
    .unwrap();
    let p50 = &bmf["latency/shm/back-to-back/64B"]["latency"];
    assert!(p50["value"].as_f64().unwrap() > 0.0);
    assert!(p50["lower_value"].as_f64().unwrap() <= p50["value"].as_f64().unwrap());
    let console = String::from_utf8_lossy(&run.stdout);
    assert!(console.contains("small_message_throughput"));
}

#[test]
fn compare_exit_codes_follow_the_rule() {
    // The regressed record: the same tiny preset with a 300 µs handicap on
    // every uds message (IPC_BENCH_HANDICAP=uds:300000).
    let quick = fixture("record_tiny.json");
    let regressed = fixture("record_regressed.json");
    let same = xtask(&["compare", quick.to_str().unwrap(), quick.to_str().unwrap()]);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).contains("No regression."));
    let worse = xtask(&[
        "compare",
        quick.to_str().unwrap(),
        regressed.to_str().unwrap(),
    ]);
    assert_eq!(
        worse.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&worse.stdout)
    );
    let text = String::from_utf8_lossy(&worse.stdout);
    assert!(text.contains("REGRESSION"));
    // Only the handicapped transport's figures regress.
    for line in text.lines().filter(|l| l.starts_with("REGRESSION")) {
        assert!(line.contains("/uds"), "{line}");
    }
    // A report against a regressed baseline the other way round: improvements only.
    let better = xtask(&[
        "compare",
        regressed.to_str().unwrap(),
        quick.to_str().unwrap(),
    ]);
    assert_eq!(better.status.code(), Some(0));
}

#[test]
fn a_missed_target_is_exit_2() {
    let out = tempfile::tempdir().unwrap();
    let strict = out.path().join("targets.toml");
    std::fs::write(&strict, "[p95_round_trip]\nlimit = 0.001\n").unwrap();
    let record = fixture("record_tiny.json");
    let run = xtask(&[
        "report",
        record.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--targets",
        strict.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2));
    let summary = std::fs::read_to_string(out.path().join("LATEST_SUMMARY.md")).unwrap();
    assert!(summary.contains("❌"));
}

#[test]
fn bad_input_fails_with_a_message_and_writes_nothing() {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("results");
    let dir_arg = dir.to_str().unwrap();
    let foreign = out.path().join("foreign.json");
    std::fs::write(&foreign, r#"{"hello": "world"}"#).unwrap();
    let bad_targets = out.path().join("bad.toml");
    std::fs::write(&bad_targets, "[no_such_target]\nlimit = 1\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["bench", "latencies", "--out", dir_arg],
            "unknown group",
        ),
        (
            vec!["bench", "--transports", "tcp", "--out", dir_arg],
            "unknown transport",
        ),
        (
            vec!["bench", "--sizes", "12 parsecs", "--out", dir_arg],
            "bad size",
        ),
        (
            vec!["bench", "--agents", "0", "--out", dir_arg],
            "agent count",
        ),
        (
            vec![
                "bench",
                "--targets",
                bad_targets.to_str().unwrap(),
                "--out",
                dir_arg,
            ],
            "unknown target",
        ),
        (
            vec![
                "bench",
                "--baseline",
                foreign.to_str().unwrap(),
                "--out",
                dir_arg,
            ],
            "not a benchmark record",
        ),
        (
            vec![
                "bench",
                "--baseline",
                "/no/such/file.json",
                "--out",
                dir_arg,
            ],
            "No such file",
        ),
        (
            vec![
                "compare",
                foreign.to_str().unwrap(),
                foreign.to_str().unwrap(),
            ],
            "not a benchmark record",
        ),
        (vec!["report", "/no/such/file.json"], "No such file"),
        (
            vec![
                "bench",
                "--against",
                "no-such-revision-xyz",
                "--out",
                dir_arg,
            ],
            "neither a runner's path nor a git revision",
        ),
        (
            vec!["bench", "--handicap", "shm", "--out", dir_arg],
            "expected LABEL:NANOSECONDS",
        ),
        (
            vec!["bench", "--extra-budget=-1", "--out", dir_arg],
            "--extra-budget must be 0 or more",
        ),
        (vec!["soak", "--duration", "ten"], "bad duration"),
        (vec!["fuzz", "no_such_target"], "unknown fuzz target"),
    ];
    for (args, expected) in cases {
        let run = xtask(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !dir.exists() || files_in(&dir).is_empty(),
            "{args:?} wrote {:?}",
            files_in(&dir)
        );
    }
}

/// An A/B record (`--against`): the fixture as the new side, and as the
/// old side the same with one judged figure three times faster in every
/// trial. `report` judges it by the paired ratios: exactly that figure
/// regresses (exit 3), and the summary gives old, new and new / old.
#[test]
fn an_ab_record_is_judged_by_its_paired_ratios() {
    let out = tempfile::tempdir().unwrap();
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("record_tiny.json")).unwrap()).unwrap();
    let mut old = record["results"].clone();
    let figures = old["figures"].as_array_mut().unwrap();
    let slowed = figures
        .iter_mut()
        .find(|f| {
            f["judged"] == true
                && f["id"]["statistic"] == "p50"
                && f["id"]["group"] == "latency"
                && f["trials"].as_array().is_some_and(|t| t.len() >= 2)
        })
        .expect("a judged p50 in the fixture");
    for t in slowed["trials"].as_array_mut().unwrap() {
        *t = serde_json::json!(t.as_f64().unwrap() / 3.0);
    }
    let id = slowed["id"].clone();
    record["against"] = serde_json::json!({
        "reference": "HEAD~1",
        "commit": null,
        "results": old,
    });
    let path = out.path().join("benchmark_20260101T000000Z.json");
    std::fs::write(&path, serde_json::to_vec(&record).unwrap()).unwrap();
    // Every target met, so the exit code speaks of the comparison alone.
    let lenient = out.path().join("targets.toml");
    std::fs::write(&lenient, "[p95_round_trip]\nlimit = 1e12\n").unwrap();
    let run = xtask(&[
        "report",
        path.to_str().unwrap(),
        "--targets",
        lenient.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(3), "{stdout}");
    let regressions: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("REGRESSION"))
        .collect();
    assert_eq!(regressions.len(), 1, "{stdout}");
    let subject = id["subject"]["transport"]["transport"].as_str().unwrap();
    assert!(
        regressions[0].contains(&format!("latency/{subject}")),
        "{stdout}"
    );
    let summary = std::fs::read_to_string(out.path().join("LATEST_SUMMARY.md")).unwrap();
    assert!(
        summary.contains("A/B against HEAD~1: 1 regression(s)"),
        "{summary}"
    );
    assert!(summary.contains("## A/B: this build against HEAD~1"));
    assert!(summary.contains("| figure | old | new | new / old (worse >1) | verdict |"));
    assert!(summary.contains("3.000 [3.000–3.000]"), "{summary}");
}
