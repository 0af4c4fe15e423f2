//! `cargo xtask`: the project's automation, reached through the cargo alias
//! in `.cargo/config.toml`. One module per subcommand.

#![forbid(unsafe_code)]

mod ab;
mod bench;
mod charts;
mod cycles;
mod exports;
mod fuzz;
mod history;
mod pytest;
mod record;
mod report;
mod soak;
mod targets;
mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXIT_CODES: &str = "Exit codes: 0 all targets met and no regression; 1 error (bad input, \
a failed build or scenario); 2 a target missed; 3 a regression against the baseline. When several \
apply, the lowest non-zero code wins (an error hides a missed target, a missed target hides a \
regression).";

/// Benchmark automation for the IPC workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build in release mode, run the benchmark groups across real
    /// processes, and write `benchmark_<UTC>.json`, `LATEST_SUMMARY.md`, SVG
    /// charts and CI-tracker exports into --out.
    #[command(after_help = EXIT_CODES)]
    Bench(bench::BenchArgs),
    /// Regenerate the summary, charts and exports from a stored record.
    Report {
        /// The record (`benchmark_<UTC>.json`).
        record: PathBuf,
        /// Where to write (default: beside the record).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Targets file.
        #[arg(long)]
        targets: Option<PathBuf>,
        /// Compare with this record.
        #[arg(long)]
        baseline: Option<PathBuf>,
    },
    /// Compare two stored records figure by figure (exit 3 on a
    /// regression). Records from different machines are compared as asked,
    /// with a warning.
    Compare {
        /// The baseline record.
        baseline: PathBuf,
        /// The record to judge.
        current: PathBuf,
        /// Regression factor: same-run ratios are judged at half the excess
        /// (2.0 -> 1.5); absolute figures that move this much are reported.
        #[arg(long, default_value_t = harness::compare::Rule::default().factor)]
        threshold: f64,
    },
    /// Soak every transport (mixed sizes, several agents, every message
    /// verified) and check memory and descriptors stay flat; optionally
    /// run the backpressure bound too. Exit 1 unless everything passed.
    Soak {
        /// How long, e.g. 60s, 10m.
        #[arg(long, default_value = "60s")]
        duration: String,
        /// Also run the backpressure bound (consumer 100x slower) for this
        /// long per transport, e.g. 30s.
        #[arg(long)]
        backpressure: Option<String>,
        /// Transports, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        transports: Vec<String>,
    },
    /// Replay the saved crash inputs, then fuzz each target (frame decoder,
    /// address parsing, codec decoding, shared-memory ring, blob handles,
    /// segments handed over) with cargo-fuzz on nightly. Exit 1 on a crash.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        time: u64,
        /// Targets (default: all).
        targets: Vec<String>,
    },
    /// The README's test command: `cargo test --workspace`, then the
    /// Python package's tests (a venv under target/ with pinned maturin
    /// and pytest, the wheel built and installed, pytest against a Rust
    /// hub over pipe, uds and shm). Exit 1 if any fails.
    Test {
        /// Only the Python tests.
        #[arg(long)]
        python_only: bool,
        /// Passed to pytest (after `--`).
        #[arg(last = true)]
        pytest_args: Vec<String>,
    },
    /// List import cycles between the modules of each crate (exit 1 if
    /// there is one; `cargo test -p xtask` fails on one too).
    Cycles {
        /// The workspace to scan (default: this one).
        root: Option<PathBuf>,
    },
    /// Show the headline figures of every stored run, oldest first.
    History {
        /// Where the records are.
        #[arg(long, default_value = "benchmark_results")]
        dir: PathBuf,
    },
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: nothing was run or written.
    Input(String),
    /// Something failed along the way.
    Error(String),
}

/// What a run found, for the exit code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Some scenarios failed.
    pub failed_scenarios: bool,
    /// Some target was missed.
    pub target_missed: bool,
    /// Some figure regressed.
    pub regression: bool,
}

impl Outcome {
    fn code(self) -> u8 {
        if self.failed_scenarios {
            1
        } else if self.target_missed {
            2
        } else if self.regression {
            3
        } else {
            0
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Cmd::Bench(args) => Ok(bench::run(&args)?.code()),
        Cmd::Report {
            record,
            out,
            targets,
            baseline,
        } => {
            let loaded = record::load(&record).map_err(|e| Failure::Input(e.to_string()))?;
            let base = baseline
                .map(|p| record::load(&p).map(|r| (p.display().to_string(), r)))
                .transpose()
                .map_err(|e| Failure::Input(e.to_string()))?;
            let dir = out.unwrap_or_else(|| {
                record
                    .parent()
                    .map_or_else(|| PathBuf::from("."), |p| p.to_owned())
            });
            std::fs::create_dir_all(&dir).map_err(|e| Failure::Error(e.to_string()))?;
            let outcome = bench::publish(
                &dir,
                &loaded,
                targets.as_deref(),
                base.as_ref()
                    .map(|(n, r)| (n.clone(), r))
                    .ok_or_else(|| "no baseline given (--baseline FILE)".to_string()),
                harness::compare::Rule::default(),
            )?;
            Ok(outcome.code())
        }
        Cmd::Compare {
            baseline,
            current,
            threshold,
        } => {
            if threshold.is_nan() || threshold <= 1.0 {
                return Err(Failure::Input("--threshold must be above 1.0".into()));
            }
            let a = record::load(&baseline).map_err(|e| Failure::Input(e.to_string()))?;
            let b = record::load(&current).map_err(|e| Failure::Input(e.to_string()))?;
            if !a.machine.same_as(&b.machine) {
                eprintln!(
                    "warning: the two records come from different machines ({} / {}); \
                     absolute figures are not comparable across machines, ratios roughly are",
                    a.machine.cpu_model, b.machine.cpu_model
                );
            }
            let rule = bench::rule(threshold);
            let c = harness::compare::compare(&a.results.figures, &b.results.figures, rule);
            println!("Rule: {}.", rule.describe());
            println!(
                "{} same-run ratios judged, {} too noisy to judge; {} absolute figures reported.",
                c.compared,
                c.noisy.len(),
                c.reported
            );
            for ch in &c.changes {
                println!(
                    "{:<12} {}: {:.4} [{:.4}–{:.4}] -> {:.4} [{:.4}–{:.4}] ({}{})",
                    format!("{:?}", ch.outcome).to_uppercase(),
                    ch.figure,
                    ch.baseline.0,
                    ch.baseline.1,
                    ch.baseline.2,
                    ch.current.0,
                    ch.current.1,
                    ch.current.2,
                    ch.factor(),
                    ch.host
                        .map_or(String::new(), |h| format!("; host drift {h:.2}x"))
                );
            }
            let regressed = c.regressions().next().is_some();
            println!(
                "{}",
                if regressed {
                    "Regressions found."
                } else {
                    "No regression."
                }
            );
            Ok(if regressed { 3 } else { 0 })
        }
        Cmd::Soak {
            duration,
            backpressure,
            transports,
        } => soak::run(&duration, backpressure.as_deref(), &transports),
        Cmd::Fuzz { time, targets } => fuzz::run(time, &targets),
        Cmd::Test {
            python_only,
            pytest_args,
        } => pytest::run(python_only, &pytest_args),
        Cmd::Cycles { root } => {
            let root = root.unwrap_or_else(workspace::workspace_root);
            let clean = cycles::report(&root).map_err(|e| Failure::Error(e.to_string()))?;
            Ok(if clean { 0 } else { 1 })
        }
        Cmd::History { dir } => {
            print!("{}", history::table(&dir).map_err(Failure::Input)?);
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Input(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(Failure::Error(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
