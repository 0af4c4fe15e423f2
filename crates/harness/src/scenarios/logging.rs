//! Event logging: an agent's `tracing` events shipped over a transport by
//! `ipc_tracing::ShippingLayer` to the parent, which collects them.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender};
use tracing_subscriber::layer::SubscriberExt;

use crate::agent::{AgentTask, Role};
use crate::error::{HarnessError, Result};
use crate::schema::LoggingResult;
use crate::stats::Recorder;
use crate::transport::{AnyConnection, Variant, spawn_agent};

/// Collects `events` events emitted `interval` apart and measures each
/// one's latency from emission (in the agent) to decoding (here).
pub fn collect(variant: Variant, events: u64, interval: Duration) -> Result<LoggingResult> {
    let mut agent = spawn_agent(&AgentTask {
        role: Role::LogEmitter {
            events,
            interval_us: interval.as_micros() as u64,
        },
        variant,
    })?;
    let conn = agent.conn();
    let mut latency = Recorder::new();
    conn.send(b"go")?;
    let start = Instant::now();
    for seq in 0..events {
        let frame = conn.recv()?;
        let now = ipc_tracing::monotonic_ns();
        let record = ipc_tracing::decode(&frame).map_err(|e| HarnessError::Agent(e.to_string()))?;
        let carried = record
            .fields
            .iter()
            .find(|(k, _)| k == "seq")
            .map(|(_, v)| v.clone());
        if carried != Some(ipc_tracing::FieldValue::U64(seq)) {
            return Err(HarnessError::Agent(format!(
                "event {seq} arrived as {carried:?}"
            )));
        }
        latency.record_ns(now.saturating_sub(record.emitted_ns));
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(LoggingResult {
        transport: variant.label(),
        regime: if interval.is_zero() { "burst" } else { "paced" }.into(),
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        latency: latency.summary(),
    })
}

/// The agent side: wait for the collector's start frame, then emit.
pub(crate) fn emit(mut conn: AnyConnection, events: u64, interval: Duration) -> Result<()> {
    conn.recv()?;
    let layer = ipc_tracing::ShippingLayer::new(conn);
    let dropped = layer.dropped();
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        for seq in 0..events {
            tracing::info!(target: "agent", seq, "tool call finished");
            if !interval.is_zero() {
                std::thread::sleep(interval);
            }
        }
    });
    match dropped.get() {
        0 => Ok(()),
        n => Err(HarnessError::Agent(format!(
            "{n} events could not be shipped"
        ))),
    }
}
