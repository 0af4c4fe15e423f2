//! The soak and backpressure scenarios (`cargo xtask soak`), briefly: every
//! transport, several agents, mixed sizes, every message verified, memory
//! and descriptors flat; and the backpressure bound. Each transport's
//! behaviour under kills, hangs and garbage is proven by its own crate's
//! tests (the conformance kit's fault cases: `cargo test -p ipc-uds`).
//!
//! `harness = false`: this binary is also the agent it spawns.

use std::time::Duration;

use harness::transport::Transport;
use libtest_mimic::{Arguments, Failed, Trial};

fn short_soak() -> Result<(), Failed> {
    let report = harness::scenarios::soak::soak(&Transport::ALL, 2, Duration::from_secs(3))?;
    println!(
        "    {} round trips, {} bytes, {} errors, RSS {} -> {} KiB, fds {} -> {}",
        report.messages,
        report.bytes,
        report.errors,
        report.rss_start_kib,
        report.rss_end_kib,
        report.fds_start,
        report.fds_end
    );
    if report.passed && report.messages > 0 {
        Ok(())
    } else {
        Err(format!("{report:?}").into())
    }
}

fn short_backpressure(t: Transport) -> Result<(), Failed> {
    let report = harness::scenarios::soak::backpressure(
        t,
        Duration::from_secs(2),
        Duration::from_millis(1),
    )?;
    println!(
        "    {t}: {} committed, {} timed out, {} delivered, RSS {} -> peak {} KiB",
        report.committed,
        report.timed_out,
        report.delivered,
        report.rss_start_kib,
        report.rss_peak_kib
    );
    if report.passed {
        Ok(())
    } else {
        Err(format!("{report:?}").into())
    }
}

fn main() {
    harness::agent_main_if_requested();
    let mut trials = vec![Trial::test("short_soak", short_soak)];
    for t in Transport::ALL {
        trials.push(Trial::test(format!("{t}::short_backpressure"), move || {
            short_backpressure(t)
        }));
    }
    // Both read this process's memory and descriptors: one at a time.
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit();
}
