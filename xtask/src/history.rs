//! `cargo xtask history`: headline figures of every stored run, oldest
//! first, so trends show. The machine column tells runs from different
//! machines apart: compare only within one machine.

use std::fmt::Write;
use std::path::Path;

use harness::figure::FigureId;
use harness::{Group, Regime, Statistic, Subject, Transport, Variant};

use crate::record;
use crate::report::format::{bytes, ns};
use crate::targets;

/// The history table of the runs in `dir`.
pub fn table(dir: &Path) -> Result<String, String> {
    let runs = record::stored_runs(dir);
    if runs.is_empty() {
        return Err(format!("no stored runs in {}", dir.display()));
    }
    let targets = targets::load(None)?;
    let here = record::Machine::detect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:<10} {:<6} {:<8} {:>11} {:>11} {:>11} {:>11} {:>12} {:>12} {:>8}",
        "run (UTC)",
        "commit",
        "preset",
        "machine",
        "pipe p50",
        "uds p50",
        "shm p50",
        "zenoh p50",
        "shm / buffer",
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
        let find = |subject, group, statistic, size| {
            r.figures
                .iter()
                .find(|f| {
                    f.id == FigureId {
                        group,
                        subject,
                        regime: if group == Group::Throughput {
                            Regime::OneWay
                        } else {
                            Regime::BackToBack
                        },
                        size: Some(size),
                        agents: None,
                        statistic,
                    }
                })
                .map(|f| f.median)
        };
        let p50 = |t: Transport| {
            find(
                Subject::Transport(Variant::of(t)),
                Group::Latency,
                Statistic::P50,
                small,
            )
            .map_or("-".into(), ns)
        };
        let ratio = find(
            Subject::Over(
                Variant::of(Transport::Shm),
                harness::schema::Mechanism::SharedBuffer,
            ),
            Group::Latency,
            Statistic::Ratio,
            small,
        )
        .map_or("-".into(), |x| format!("{x:.2}x"));
        let best = r
            .figures
            .iter()
            .filter(|f| {
                f.id.group == Group::Throughput
                    && f.id.regime == Regime::OneWay
                    && f.id.size == Some(1 << 20)
                    && f.id.statistic == Statistic::Bandwidth
            })
            .map(|f| f.median)
            .reduce(f64::max)
            .map_or("-".into(), |b| format!("{}/s", bytes(b)));
        let missed = targets::tally(&targets::evaluate(r, &targets)).1;
        let commit = record.git.as_ref().map_or("-".to_string(), |g| {
            format!(
                "{}{}",
                &g.commit[..g.commit.len().min(8)],
                if g.dirty { "+" } else { "" }
            )
        });
        let machine = if record.machine.same_as(&here) {
            "this".to_string()
        } else {
            "other".to_string()
        };
        let _ = writeln!(
            out,
            "{:<22} {:<10} {:<6} {:<8} {:>11} {:>11} {:>11} {:>11} {:>12} {:>12} {:>8}",
            record.started_utc.chars().take(20).collect::<String>(),
            commit,
            r.plan.preset,
            machine,
            p50(Transport::Pipe),
            p50(Transport::Uds),
            p50(Transport::Shm),
            p50(Transport::Zenoh),
            ratio,
            best,
            missed
        );
    }
    Ok(out)
}
