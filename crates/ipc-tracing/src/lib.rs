#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ipc_core::{Codec, CodecError, FrameSender, Postcard};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

#[cfg(feature = "tokio")]
mod shipper;
#[cfg(feature = "tokio")]
pub use shipper::{AsyncShippingLayer, Delivery, ShipReport, Shipper, ShipperOptions};

/// One tracing event as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// `CLOCK_MONOTONIC` nanoseconds when the event was emitted.
    pub emitted_ns: u64,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN` or `ERROR`.
    pub level: String,
    /// The event's target (module path unless set).
    pub target: String,
    /// The `message` field.
    pub message: String,
    /// Every other field, in order.
    pub fields: Vec<(String, FieldValue)>,
    /// The spans the event happened in, outermost first, with their
    /// fields (`tool_call{tool=search, call_id=42}`).
    pub spans: Vec<SpanRecord>,
    /// The agent's name, as its layer was told (empty if not).
    pub agent: String,
    /// The emitting process.
    pub pid: u32,
    /// Events this agent's layer dropped before this record was shipped
    /// (a running total, so the newest record has the exact count).
    pub dropped: u64,
}

/// A span around an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// The span's name.
    pub name: String,
    /// Its fields, as recorded so far.
    pub fields: Vec<(String, FieldValue)>,
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    /// Text, including `Debug`-formatted values.
    Str(String),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
}

/// `CLOCK_MONOTONIC` now, in nanoseconds; comparable across processes.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Decodes a frame sent by a [`ShippingLayer`].
pub fn decode(frame: &[u8]) -> Result<EventRecord, CodecError> {
    Postcard.decode(frame)
}

/// A layer that sends every event over a blocking connection, on the
/// thread that logs. See the crate docs; async agents want
/// [`AsyncShippingLayer`] (feature `tokio`).
#[derive(Debug)]
pub struct ShippingLayer<C> {
    conn: Mutex<C>,
    dropped: DroppedEvents,
    agent: String,
}

/// Counts the events a [`ShippingLayer`] could not send (connection full
/// or gone); a handle stays readable after the layer moves into a
/// subscriber.
#[derive(Debug, Clone, Default)]
pub struct DroppedEvents(Arc<AtomicU64>);

impl DroppedEvents {
    /// Events dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<C> ShippingLayer<C> {
    /// Ships events over `conn`.
    pub fn new(conn: C) -> Self {
        ShippingLayer {
            conn: Mutex::new(conn),
            dropped: DroppedEvents::default(),
            agent: String::new(),
        }
    }

    /// Names the agent in every record.
    pub fn with_agent(mut self, name: impl Into<String>) -> Self {
        self.agent = name.into();
        self
    }

    /// A handle on the count of events that could not be sent.
    pub fn dropped(&self) -> DroppedEvents {
        self.dropped.clone()
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: Vec<(String, FieldValue)>,
}

impl Collect {
    fn push(&mut self, field: &Field, value: FieldValue) {
        match (field.name(), value) {
            ("message", FieldValue::Str(s)) => self.message = s,
            (name, value) => self.fields.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Str(format!("{value:?}")));
    }
}

/// A span's fields, kept in the span's extensions by the layers.
struct SpanFields(Vec<(String, FieldValue)>);

/// Remembers a new span's fields (both layers call it).
fn on_new_span<S>(attrs: &span::Attributes<'_>, id: &span::Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut collect = Collect::default();
    attrs.record(&mut collect);
    if let Some(span) = ctx.span(id) {
        let mut fields = collect.fields;
        if !collect.message.is_empty() {
            fields.insert(0, ("message".into(), FieldValue::Str(collect.message)));
        }
        span.extensions_mut().insert(SpanFields(fields));
    }
}

/// Adds fields recorded on a span later (`span.record(..)`).
fn on_record<S>(id: &span::Id, values: &span::Record<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut collect = Collect::default();
    values.record(&mut collect);
    if let Some(span) = ctx.span(id) {
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            for (name, value) in collect.fields {
                match fields.iter_mut().find(|(n, _)| *n == name) {
                    Some(slot) => slot.1 = value,
                    None => fields.push((name, value)),
                }
            }
        }
    }
}

/// The record of `event`, with its spans; `dropped` is filled when shipped.
fn record_of<S>(event: &Event<'_>, ctx: &Context<'_, S>, agent: &str) -> EventRecord
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let emitted_ns = monotonic_ns();
    let mut collect = Collect::default();
    event.record(&mut collect);
    let meta = event.metadata();
    let spans = ctx
        .event_scope(event)
        .map(|scope| {
            scope
                .from_root()
                .map(|span| SpanRecord {
                    name: span.name().to_owned(),
                    fields: span
                        .extensions()
                        .get::<SpanFields>()
                        .map(|f| f.0.clone())
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    EventRecord {
        emitted_ns,
        level: meta.level().to_string(),
        target: meta.target().to_owned(),
        message: collect.message,
        fields: collect.fields,
        spans,
        agent: agent.to_owned(),
        pid: std::process::id(),
        dropped: 0,
    }
}

impl<S, C> Layer<S> for ShippingLayer<C>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    C: FrameSender + Send + 'static,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        on_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        on_record(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut record = record_of(event, &ctx, &self.agent);
        record.dropped = self.dropped.get();
        let mut frame = Vec::with_capacity(128);
        let sent = Postcard.encode(&record, &mut frame).is_ok()
            && self
                .conn
                .lock()
                .map(|mut conn| conn.send(&frame).is_ok())
                .unwrap_or(false);
        if !sent {
            self.dropped.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_core::{Bytes, SendError};
    use std::time::Duration;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Queue(Arc<Mutex<Vec<Bytes>>>, bool);
    impl FrameSender for Queue {
        fn send(&mut self, f: &[u8]) -> Result<(), SendError> {
            if self.1 {
                return Err(SendError::Full);
            }
            self.0.lock().unwrap().push(Bytes::copy_from_slice(f));
            Ok(())
        }
        fn try_send(&mut self, f: &[u8]) -> Result<(), SendError> {
            self.send(f)
        }
        fn send_timeout(&mut self, f: &[u8], _: Duration) -> Result<(), SendError> {
            self.send(f)
        }
    }

    #[test]
    fn events_keep_level_target_message_and_typed_fields() {
        let queue = Queue::default();
        let subscriber = tracing_subscriber::registry().with(ShippingLayer::new(queue.clone()));
        let before = monotonic_ns();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "runtime", seq = 7u64, delta = -3i64, ok = true, ratio = 0.5, who = ?"x", "hello {}", 1);
        });
        let frames = queue.0.lock().unwrap();
        assert_eq!(frames.len(), 1);
        let r = decode(&frames[0]).unwrap();
        assert!(r.emitted_ns >= before && r.emitted_ns <= monotonic_ns());
        assert_eq!(
            (r.level.as_str(), r.target.as_str(), r.message.as_str()),
            ("WARN", "runtime", "hello 1")
        );
        assert_eq!(
            r.fields,
            vec![
                ("seq".into(), FieldValue::U64(7)),
                ("delta".into(), FieldValue::I64(-3)),
                ("ok".into(), FieldValue::Bool(true)),
                ("ratio".into(), FieldValue::F64(0.5)),
                ("who".into(), FieldValue::Str("\"x\"".into())),
            ]
        );
    }

    #[test]
    fn failed_sends_are_counted_not_lost_silently() {
        let queue = Queue(Arc::default(), true);
        let layer = ShippingLayer::new(queue);
        let dropped = layer.dropped();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("a");
            tracing::info!("b");
        });
        assert_eq!(dropped.get(), 2);
        assert!(decode(b"\xff\xff").is_err());
    }
}
