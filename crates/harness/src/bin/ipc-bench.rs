//! The scenario runner: runs a plan and writes its results as JSON.
//!
//! `cargo xtask bench` drives this; it can also be run alone:
//! `cargo run --release -p harness --bin ipc-bench -- --quick --groups latency`.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;
use harness::plan::parse_size;
use harness::{Group, Plan, Transport};

/// Runs benchmark scenarios across real processes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Groups to run (default: all): baselines, throughput, latency, hub, peers,
    /// serialization, resources, patterns, logging, scale.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Quick preset (fewer samples).
    #[arg(long)]
    quick: bool,
    /// Tiny preset (smoke test; figures not meaningful).
    #[arg(long, conflicts_with = "quick")]
    tiny: bool,
    /// Transports (default: pipe,uds,shm,zenoh).
    #[arg(long, value_delimiter = ',')]
    transports: Vec<String>,
    /// Message sizes, e.g. 64,4KiB,1MiB.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<String>,
    /// Agent counts for the patterns, e.g. 2,4,8.
    #[arg(long, value_delimiter = ',')]
    agents: Vec<usize>,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Instead of the groups: soak every chosen transport for SECS seconds
    /// and print the soak report (exit 1 unless it passed).
    #[arg(long, value_name = "SECS")]
    soak: Option<u64>,
    /// Instead of the groups: run the backpressure bound for SECS seconds
    /// per transport and print the reports (exit 1 unless all passed).
    #[arg(long, value_name = "SECS")]
    backpressure: Option<u64>,
    /// Instead of running the plan: hold it and run one cell at a time as
    /// asked, one JSON request per line on standard input (how `cargo
    /// xtask bench` interleaves two builds, see `harness::serve`).
    #[arg(long)]
    serve: bool,
}

/// Runs a long reliability mode; returns whether it passed.
fn long_run(args: &Args, transports: &[Transport]) -> Result<bool, harness::HarnessError> {
    use harness::scenarios::soak;
    use std::time::Duration;
    let mut passed = true;
    let mut reports = Vec::new();
    if let Some(secs) = args.soak {
        eprintln!("soaking {transports:?} for {secs} s...");
        let report = soak::soak(transports, 2, Duration::from_secs(secs))?;
        passed &= report.passed;
        reports.push(serde_json::to_value(&report).expect("serializes"));
    }
    if let Some(secs) = args.backpressure {
        for &t in transports {
            eprintln!("backpressure on {t} for {secs} s...");
            let report =
                soak::backpressure(t, Duration::from_secs(secs), Duration::from_millis(1))?;
            passed &= report.passed;
            reports.push(serde_json::to_value(&report).expect("serializes"));
        }
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&reports).expect("serializes")
    );
    Ok(passed)
}

fn plan(args: &Args) -> Result<Plan, harness::HarnessError> {
    let mut plan = if args.tiny {
        Plan::tiny()
    } else if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if !args.groups.is_empty() {
        plan.groups = args
            .groups
            .iter()
            .map(|g| g.parse())
            .collect::<Result<Vec<Group>, _>>()?;
        plan.groups.sort();
        plan.groups.dedup();
    }
    if !args.transports.is_empty() {
        plan.transports = args
            .transports
            .iter()
            .map(|t| t.parse())
            .collect::<Result<Vec<Transport>, _>>()?;
    }
    if !args.sizes.is_empty() {
        plan.sizes = args
            .sizes
            .iter()
            .map(|s| parse_size(s))
            .collect::<Result<_, _>>()?;
    }
    if !args.agents.is_empty() {
        plan.agent_counts = args.agents.clone();
    }
    if let Ok(text) = std::env::var(harness::handicap::HANDICAP_ENV) {
        plan.handicap = Some(harness::handicap::Handicap::parse(&text).ok_or_else(|| {
            harness::HarnessError::Invalid(format!(
                "{}={text}: expected LABEL:NANOSECONDS, e.g. shm:500",
                harness::handicap::HANDICAP_ENV
            ))
        })?);
    }
    plan.validate()?;
    Ok(plan)
}

fn main() {
    harness::agent_main_if_requested();
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if args.soak.is_some() || args.backpressure.is_some() {
        match long_run(&args, &plan.transports) {
            Ok(true) => return,
            Ok(false) => {
                eprintln!("FAILED: see the report");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    if args.serve {
        let stdin = std::io::stdin().lock();
        if let Err(e) = harness::serve::serve(&plan, stdin, std::io::stdout().lock()) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let results = harness::runner::run(&plan, |p| eprintln!("{p}"));
    let results = match results {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let json = serde_json::to_string_pretty(&results).expect("results serialize");
    let written = match &args.out {
        Some(path) => std::fs::write(path, json),
        None => std::io::stdout().write_all(json.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("error: writing results: {e}");
        std::process::exit(1);
    }
    if !results.failures.is_empty() {
        eprintln!("{} scenario(s) failed", results.failures.len());
        std::process::exit(1);
    }
}
