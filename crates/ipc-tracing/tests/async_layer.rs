//! The async layer: a 10,000-event burst loses nothing in lossless mode;
//! in the non-blocking mode the logging thread never waits on a stalled
//! transport and the drop count is exact; spans travel with events.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipc_core::{AsyncFrameSender, SendError};
use ipc_tracing::{AsyncShippingLayer, Delivery, FieldValue, ShipperOptions, decode};
use tokio::sync::watch;
use tracing_subscriber::layer::SubscriberExt;

const BURST: u64 = 10_000;
/// Bounds waits that should end much sooner.
const SAFETY: Duration = Duration::from_secs(60);

/// Collects frames; while its gate is closed every send waits (a transport
/// that has stalled).
#[derive(Clone)]
struct Collector {
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
    gate: watch::Receiver<bool>,
}

impl Collector {
    fn new(open: bool) -> (Self, watch::Sender<bool>) {
        let (tx, gate) = watch::channel(open);
        (
            Collector {
                frames: Arc::default(),
                gate,
            },
            tx,
        )
    }
    fn records(&self) -> Vec<ipc_tracing::EventRecord> {
        let frames = self.frames.lock().unwrap();
        frames.iter().map(|f| decode(f).unwrap()).collect()
    }
}

impl AsyncFrameSender for Collector {
    async fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        let _ = self.gate.wait_for(|open| *open).await;
        self.frames.lock().unwrap().push(frame.to_vec());
        Ok(())
    }
    async fn send_timeout(&mut self, frame: &[u8], _: Duration) -> Result<(), SendError> {
        self.send(frame).await
    }
    async fn flush(&mut self) -> Result<(), SendError> {
        Ok(())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn burst() {
    for seq in 0..BURST {
        tracing::info!(seq, "event");
    }
}

fn seq_of(record: &ipc_tracing::EventRecord) -> Option<u64> {
    record
        .fields
        .iter()
        .find_map(|(name, value)| match (name.as_str(), value) {
            ("seq", FieldValue::U64(seq)) => Some(*seq),
            _ => None,
        })
}

#[test]
fn lossless_burst_loses_nothing() {
    let (sink, _gate) = Collector::new(true);
    let options = ShipperOptions::new("burst")
        .with_capacity(64)
        .with_delivery(Delivery::Lossless { max_wait: SAFETY });
    let (layer, shipper) = AsyncShippingLayer::new(sink.clone(), options).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), burst);
    let report = runtime().block_on(shipper.shutdown(SAFETY));
    assert_eq!((report.sent, report.dropped), (BURST, 0), "{report:?}");
    assert!(report.closed_cleanly);
    let records = sink.records();
    let seqs: Vec<u64> = records.iter().filter_map(seq_of).collect();
    assert_eq!(
        seqs,
        (0..BURST).collect::<Vec<_>>(),
        "every event, in order"
    );
    let closing = records.last().unwrap();
    assert_eq!(
        (closing.message.as_str(), closing.dropped),
        ("shipper closed", 0)
    );
}

#[test]
fn stalled_transport_never_blocks_logging_and_drops_are_counted_exactly() {
    let (sink, gate) = Collector::new(false);
    let capacity = 100;
    let options = ShipperOptions::new("burst").with_capacity(capacity);
    let (layer, shipper) = AsyncShippingLayer::new(sink.clone(), options).unwrap();
    // The transport accepts nothing during the whole burst: a layer that
    // waited on it would never get through.
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), burst);
    let dropped_during_burst = shipper.dropped();
    // At most one batch in flight (stuck) and one queue full were kept.
    assert!(
        dropped_during_burst >= BURST - 2 * capacity as u64,
        "only {dropped_during_burst} dropped"
    );
    gate.send_replace(true);
    let report = runtime().block_on(shipper.shutdown(SAFETY));
    assert_eq!(report.sent + report.dropped, BURST, "{report:?}");
    assert_eq!(
        report.dropped, dropped_during_burst,
        "nothing more was lost after"
    );
    let records = sink.records();
    let shipped = records.iter().filter(|r| seq_of(r).is_some()).count() as u64;
    assert_eq!(shipped, report.sent);
    // The collector learns the exact count from the closing record.
    let closing = records.last().unwrap();
    assert_eq!(closing.message, "shipper closed");
    assert_eq!(closing.dropped, report.dropped);
}

#[test]
fn a_shutdown_on_a_dead_transport_still_counts_everything() {
    let (sink, _gate) = Collector::new(false);
    let (layer, shipper) =
        AsyncShippingLayer::new(sink, ShipperOptions::new("x").with_capacity(10)).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq in 0..50u64 {
            tracing::info!(seq, "event");
        }
    });
    let report = runtime().block_on(shipper.shutdown(Duration::from_millis(200)));
    assert_eq!(report.sent + report.dropped, 50, "{report:?}");
    assert!(!report.closed_cleanly);
}

#[test]
fn spans_and_their_fields_travel_with_events() {
    let (sink, _gate) = Collector::new(true);
    let (layer, shipper) =
        AsyncShippingLayer::new(sink.clone(), ShipperOptions::new("planner")).unwrap();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let outer = tracing::info_span!("session", user = "ada");
        let _outer = outer.enter();
        let call = tracing::info_span!(
            "tool_call",
            tool = "search",
            call_id = 42u64,
            status = tracing::field::Empty
        );
        let _call = call.enter();
        call.record("status", "ok");
        tracing::warn!(took_ms = 7u64, "slow tool");
    });
    runtime().block_on(shipper.shutdown(SAFETY));
    let record = &sink.records()[0];
    assert_eq!(record.agent, "planner");
    assert_eq!(record.pid, std::process::id());
    assert_eq!(
        (record.level.as_str(), record.message.as_str()),
        ("WARN", "slow tool")
    );
    let spans: Vec<(&str, &[(String, FieldValue)])> = record
        .spans
        .iter()
        .map(|s| (s.name.as_str(), &s.fields[..]))
        .collect();
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].0, "session");
    assert_eq!(
        spans[0].1,
        &[("user".to_string(), FieldValue::Str("ada".into()))]
    );
    assert_eq!(spans[1].0, "tool_call");
    assert_eq!(
        spans[1].1,
        &[
            ("tool".to_string(), FieldValue::Str("search".into())),
            ("call_id".to_string(), FieldValue::U64(42)),
            ("status".to_string(), FieldValue::Str("ok".into())),
        ]
    );
}
