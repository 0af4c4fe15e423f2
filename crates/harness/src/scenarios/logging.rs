//! Event logging: an agent's `tracing` events shipped over a transport by
//! `ipc_tracing::ShippingLayer` to the parent, which collects them.

use std::time::{Duration, Instant};

use ipc_core::{FrameReceiver, FrameSender};
use tracing_subscriber::layer::SubscriberExt;

use serde::{Deserialize, Serialize};

use crate::block::{Block, cell, per_transport};
use crate::error::{HarnessError, Result};
use crate::figure::{Better, FigureId, Statistic, Subject, Unit};
use crate::gather::Gather;
use crate::plan::{Group, Plan};
use crate::scenarios::{Scenario, part};
use crate::schema::{LoggingResult, Regime, RunResults};
use crate::stats::Recorder;
use crate::task::{AgentTask, Role};
use crate::transport::{AnyConnection, Variant, parent, spawn_agent};

/// The logging group: a burst of events, then events 1 ms apart, over
/// every transport.
pub(crate) struct Logging;

impl Scenario for Logging {
    fn group(&self) -> Group {
        Group::Logging
    }

    fn blocks(&self, p: &Plan) -> Vec<Block> {
        let events = p.log_events;
        // Paced events are 1 ms apart: a fiftieth of the burst keeps
        // their window near a second in the full preset.
        let paced = (events / 50).max(10);
        let mut blocks = Vec::new();
        for (count, interval, weight) in [
            (events, Duration::ZERO, 1.0),
            (paced, Duration::from_millis(1), 2.0),
        ] {
            let what = if interval.is_zero() {
                "burst"
            } else {
                "1 ms apart"
            };
            let cells = per_transport(p, |t| {
                let variant = Variant::of(t);
                cell(
                    format!("{t}: {count} events, {what}"),
                    weight,
                    move |r, trial| {
                        let mut out = collect(variant, count, interval)?;
                        out.trial = trial;
                        r.logging.push(out);
                        Ok(())
                    },
                )
            });
            blocks.push(Block {
                group: Group::Logging,
                cells,
            });
        }
        blocks
    }

    fn figures(&self, r: &RunResults, g: &mut Gather) {
        for l in &r.logging {
            let base = FigureId {
                group: Group::Logging,
                subject: Subject::Transport(l.variant),
                regime: l.regime,
                size: None,
                agents: None,
                statistic: Statistic::Rate,
            };
            if l.regime == Regime::Burst {
                // A burst's latency is queueing, all or nothing from run
                // to run; its rate is the figure.
                g.put(base, Unit::PerS, Better::Higher, l.trial, l.events_per_s);
            } else {
                let p50 = FigureId {
                    statistic: Statistic::P50,
                    ..base
                };
                g.percentiles(p50, l.trial, &l.latency);
            }
        }
    }

    fn agent(&self, task: serde_json::Value, t: &AgentTask) -> Result<()> {
        match part(task)? {
            Part::Emitter {
                events,
                interval_us,
            } => emit(
                parent(&t.variant)?,
                events,
                Duration::from_micros(interval_us),
            ),
            Part::Echo => echo_as_events(parent(&t.variant)?),
        }
    }
}

/// The agent parts of the logging group.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Part {
    /// Emit `events` tracing events through the shipping layer.
    Emitter {
        /// Events to emit.
        events: u64,
        /// Pause between events, in microseconds (0: back to back).
        interval_us: u64,
    },
    /// For every frame received, emit one tracing event (shipped back).
    Echo,
}

/// Collects `events` events emitted `interval` apart and measures each
/// one's latency from emission (in the agent) to decoding (here).
pub fn collect(variant: Variant, events: u64, interval: Duration) -> Result<LoggingResult> {
    let mut agent = spawn_agent(&AgentTask {
        cpu: None,
        role: Role::part(
            Group::Logging,
            &Part::Emitter {
                events,
                interval_us: interval.as_micros() as u64,
            },
        )?,
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
                role: Role::part(Group::Logging, &Part::Echo)?,
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
fn echo_as_events(conn: AnyConnection) -> Result<()> {
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
fn emit(mut conn: AnyConnection, events: u64, interval: Duration) -> Result<()> {
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
