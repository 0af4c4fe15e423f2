//! The agent side of every scenario: what a spawned process does. The
//! parts many scenarios share are played here; a scenario's own parts
//! ([`Role::Part`]) by its [`Scenario`](crate::scenarios).
//!
//! Scenarios re-run the current binary with [`TASK_ENV`] set to a JSON
//! [`AgentTask`]; `main_if_requested` (called first in `main`) runs it and
//! exits. So the runner, the divan benches and the tests all carry their
//! own agent, and no separate binary has to be found at run time.

use std::time::{Duration, Instant};

use ipc_core::{Address, FrameReceiver, FrameSender, RecvError, payload};

use crate::error::{HarnessError, Result};
use crate::procfs;
use crate::scenarios;
use crate::task::{AgentReport, AgentTask, Role, TASK_ENV};
use crate::transport::ConnectionExt;
use crate::transport::{AnyConnection, Variant, parent, wait_for_parent_to_leave};

/// Runs the task in [`TASK_ENV`], if any, and exits.
pub(crate) fn main_if_requested() {
    let Ok(task) = std::env::var(TASK_ENV) else {
        return;
    };
    let code = match serde_json::from_str::<AgentTask>(&task)
        .map_err(|e| HarnessError::Invalid(format!("bad task: {e}")))
        .and_then(|task| run(&task))
    {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("agent {}: {e}", std::process::id());
            1
        }
    };
    std::process::exit(code);
}

fn run(task: &AgentTask) -> Result<()> {
    if let Some(cpu) = task.cpu {
        crate::pin::pin_current_thread(cpu);
    }
    let v = &task.variant;
    match &task.role {
        Role::Echo => echo(&mut parent(v)?),
        Role::Sink { count, in_place } => sink(&mut parent(v)?, *count, *in_place),
        Role::Source { count, size } => source(&mut parent(v)?, *count, *size),
        Role::Idle => wait_for_parent_to_leave(&mut parent(v)?),
        Role::SlowSink { delay_us } => slow_sink(&mut parent(v)?, Duration::from_micros(*delay_us)),
        Role::Churn {
            cycles,
            address_base,
            per_cycle,
        } => churn(v, *cycles, address_base, *per_cycle),
        Role::Part { group, part } => scenarios::of(*group).agent(part.clone(), task),
    }
}

fn echo(conn: &mut AnyConnection) -> Result<()> {
    loop {
        match conn.recv() {
            Ok(frame) => conn.send(&frame)?,
            Err(RecvError::Disconnected) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn sink(conn: &mut AnyConnection, count: Option<u64>, in_place: bool) -> Result<()> {
    let mut report = AgentReport::begin();
    let start = Instant::now();
    while count.is_none_or(|n| report.received < n) {
        let seq = report.received;
        let outcome = match (in_place, conn.as_shm()) {
            (true, Some(shm)) => shm
                .recv_in_place()
                .map(|view| (payload::verify(seq, &view), view.len())),
            _ => conn
                .recv()
                .map(|frame| (payload::verify(seq, &frame), frame.len())),
        };
        match outcome {
            Ok((result, len)) => report.note(result, len),
            Err(RecvError::Disconnected) if count.is_none() => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    report.end(start);
    conn.send(&serde_json::to_vec(&report)?)?;
    wait_for_parent_to_leave(conn)
}

fn slow_sink(conn: &mut AnyConnection, delay: Duration) -> Result<()> {
    let mut report = AgentReport::default();
    loop {
        let frame = conn.recv()?;
        if frame.is_empty() {
            break;
        }
        if let Err(e) = payload::verify(report.received, &frame) {
            report.errors += 1;
            report.first_error.get_or_insert_with(|| e.to_string());
        }
        report.received += 1;
        std::thread::sleep(delay);
    }
    conn.send(&serde_json::to_vec(&report)?)?;
    wait_for_parent_to_leave(conn)
}

fn source(conn: &mut AnyConnection, count: u64, size: usize) -> Result<()> {
    conn.recv()?;
    let mut buf = vec![0; size];
    for seq in 0..count {
        payload::fill(seq, &mut buf);
        conn.send(&buf)?;
    }
    conn.flush()?;
    wait_for_parent_to_leave(conn)
}

fn churn(variant: &Variant, cycles: u32, base: &str, per_cycle: bool) -> Result<()> {
    let mut control = parent(variant)?;
    let mut report = AgentReport::default();
    for cycle in 0..cycles {
        if cycle == cycles / 10 {
            // Measure from after a warm-up, so allocator growth to a
            // steady state is not counted as a leak.
            report.rss_start_kib = procfs::rss_kib(std::process::id()).unwrap_or(0);
        }
        let address: Address = if per_cycle {
            format!("{base}-{cycle}").parse()
        } else {
            base.parse()
        }
        .map_err(|e| HarnessError::Invalid(format!("{e}")))?;
        let mut conn =
            crate::transport::connect_retrying(variant, &address, Duration::from_secs(10))?;
        conn.send(b"hi")?;
        conn.recv()?;
        report.received += 1;
    }
    report.rss_end_kib = procfs::rss_kib(std::process::id()).unwrap_or(0);
    report.cpu_ns = procfs::self_cpu_ns();
    control.send(&serde_json::to_vec(&report)?)?;
    wait_for_parent_to_leave(&mut control)
}
