//! Event logging: an agent's `tracing` events shipped over a transport by
//! `ipc_tracing::ShippingLayer` to the parent, which collects them.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender};
use tracing_subscriber::layer::SubscriberExt;

use crate::error::{HarnessError, Result};
use crate::schema::{LoggingResult, Regime};
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::transport::{AnyConnection, Variant, spawn_agent};

/// Collects `events` events emitted `interval` apart and measures each
/// one's latency from emission (in the agent) to decoding (here).
pub fn collect(variant: Variant, events: u64, interval: Duration) -> Result<LoggingResult> {
    let mut agent = spawn_agent(&AgentTask {
        cpu: None,
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
        variant,
        trial: 0,
        regime: if interval.is_zero() {
            Regime::Burst
        } else {
            Regime::Paced
        },
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        latency: latency.summary(),
    })
}

/// An agent that answers each frame with one tracing event: for benches
/// that time a single event end to end.
#[derive(Debug)]
pub struct EventRoundTrip {
    agent: crate::transport::Agent,
    seq: u64,
}

impl EventRoundTrip {
    /// Spawns the agent.
    pub fn start(variant: Variant) -> Result<Self> {
        Ok(EventRoundTrip {
            agent: spawn_agent(&AgentTask {
                cpu: None,
                role: Role::LogEcho,
                variant,
            })?,
            seq: 0,
        })
    }

    /// Asks for one event and receives and decodes it; returns its latency
    /// from emission to decoding.
    pub fn once(&mut self) -> Result<Duration> {
        let conn = self.agent.conn();
        conn.send(&self.seq.to_le_bytes())?;
        let frame = conn.recv()?;
        let now = ipc_tracing::monotonic_ns();
        let record = ipc_tracing::decode(&frame).map_err(|e| HarnessError::Agent(e.to_string()))?;
        if record.fields.first().map(|(_, v)| v) != Some(&ipc_tracing::FieldValue::U64(self.seq)) {
            return Err(HarnessError::Agent(format!(
                "event {} came back wrong",
                self.seq
            )));
        }
        self.seq += 1;
        Ok(Duration::from_nanos(now.saturating_sub(record.emitted_ns)))
    }
}

/// The agent side of [`EventRoundTrip`].
pub(crate) fn echo_as_events(conn: AnyConnection) -> Result<()> {
    // The layer and the request loop share the one connection.
    let conn = std::sync::Arc::new(std::sync::Mutex::new(conn));
    let layer = ipc_tracing::ShippingLayer::new(SharedConn(std::sync::Arc::clone(&conn)));
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || -> Result<()> {
        loop {
            let request = conn
                .lock()
                .map_err(|_| HarnessError::Agent("poisoned".into()))?
                .recv();
            match request {
                Ok(frame) => {
                    let seq = u64::from_le_bytes(frame[..].try_into().unwrap_or_default());
                    tracing::info!(target: "agent", seq, "requested event");
                }
                Err(ipc_core::RecvError::Disconnected) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    })
}

/// A connection shared between the receive loop and the shipping layer.
struct SharedConn(std::sync::Arc<std::sync::Mutex<AnyConnection>>);

impl FrameSender for SharedConn {
    fn send(&mut self, frame: &[u8]) -> std::result::Result<(), ipc_core::SendError> {
        self.0
            .lock()
            .map_err(|_| ipc_core::SendError::Disconnected)?
            .send(frame)
    }
    fn try_send(&mut self, frame: &[u8]) -> std::result::Result<(), ipc_core::SendError> {
        self.0
            .lock()
            .map_err(|_| ipc_core::SendError::Disconnected)?
            .try_send(frame)
    }
    fn send_timeout(
        &mut self,
        frame: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), ipc_core::SendError> {
        self.0
            .lock()
            .map_err(|_| ipc_core::SendError::Disconnected)?
            .send_timeout(frame, timeout)
    }
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
