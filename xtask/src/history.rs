//! `cargo xtask history`: headline figures of every stored run, oldest
//! first, so trends show.

use std::fmt::Write;
use std::path::Path;

use crate::record;
use crate::report::{bytes, ns};
use crate::targets;

/// The history table of the runs in `dir`.
pub fn table(dir: &Path) -> Result<String, String> {
    let runs = record::stored_runs(dir);
    if runs.is_empty() {
        return Err(format!("no stored runs in {}", dir.display()));
    }
    let targets = targets::load(None)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<10} {:<6} {:>11} {:>11} {:>11} {:>11} {:>12} {:>8}",
        "run (UTC)",
        "commit",
        "preset",
        "pipe p50",
        "uds p50",
        "shm p50",
        "shm-spin",
        "best 1 MiB",
        "missed"
    );
    for path in runs {
        let record = match record::load(&path) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{:<22} skipped: {e}",
                    path.file_name()
                        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
                );
                continue;
            }
        };
        let r = &record.results;
        let small = r.plan.sizes.iter().copied().min().unwrap_or(64);
        let p50 = |label: &str| {
            r.latency
                .iter()
                .find(|l| l.transport == label && l.size == small && l.regime == "back-to-back")
                .map_or("-".into(), |l| ns(l.stats.p50_ns as f64))
        };
        let large = r.plan.sizes.iter().copied().max().unwrap_or(1 << 20);
        let best = r
            .throughput
            .iter()
            .filter(|t| t.size == large)
            .map(|t| t.bytes_per_s)
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
            .map_or("-".into(), |b| format!("{}/s", bytes(b)));
        let missed: usize = targets::evaluate(r, &targets)
            .iter()
            .map(|v| v.transports.iter().filter(|t| t.met == Some(false)).count())
            .sum();
        let commit = record.git.as_ref().map_or("-".to_string(), |g| {
            format!(
                "{}{}",
                &g.commit[..g.commit.len().min(8)],
                if g.dirty { "+" } else { "" }
            )
        });
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:<6} {:>11} {:>11} {:>11} {:>11} {:>12} {:>8}",
            record.started_utc.chars().take(20).collect::<String>(),
            commit,
            if r.plan.quick { "quick" } else { "full" },
            p50("pipe"),
            p50("uds"),
            p50("shm"),
            p50("shm-spin"),
            best,
            missed
        );
    }
    Ok(out)
}
