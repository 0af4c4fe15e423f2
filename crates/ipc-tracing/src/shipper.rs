//! The layer for async agents: the thread that logs only queues; a
//! shipper thread of its own sends.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipc_core::{AsyncFrameSender, Codec, Postcard};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::{EventRecord, FieldValue, monotonic_ns, on_new_span, on_record, record_of};

/// What the logging thread does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Never wait: the event is dropped and counted. The default.
    DropNewest,
    /// Wait up to `max_wait` for room (the logging thread blocks that
    /// long at most), then drop and count the event.
    ///
    /// The connection is driven by the agent's runtime: on a
    /// current-thread runtime, a runtime thread that waits here also stops
    /// the connection, so every wait runs to `max_wait`. Log from another
    /// thread (`spawn_blocking`) or use the multi-thread runtime.
    Lossless {
        /// Longest wait per event.
        max_wait: Duration,
    },
}

/// Settings of an [`AsyncShippingLayer`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShipperOptions {
    /// Records queued between the logging threads and the shipper
    /// (at least 1). Default 1024.
    pub capacity: usize,
    /// What happens when the queue is full. Default [`Delivery::DropNewest`].
    pub delivery: Delivery,
    /// The agent's name in every record.
    pub agent: String,
    /// Longest wait for one send on the connection. Default 10 s.
    pub send_timeout: Duration,
}

impl ShipperOptions {
    /// Default settings for the agent called `agent`.
    pub fn new(agent: impl Into<String>) -> Self {
        ShipperOptions {
            capacity: 1024,
            delivery: Delivery::DropNewest,
            agent: agent.into(),
            send_timeout: Duration::from_secs(10),
        }
    }
    /// Sets [`ShipperOptions::capacity`].
    pub fn with_capacity(mut self, records: usize) -> Self {
        self.capacity = records;
        self
    }
    /// Sets [`ShipperOptions::delivery`].
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }
    /// Sets [`ShipperOptions::send_timeout`].
    pub fn with_send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = timeout;
        self
    }
}

/// What a shipper did, from [`Shipper::shutdown`]. `sent + dropped` is
/// every event the layer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShipReport {
    /// Records the connection accepted.
    pub sent: u64,
    /// Events dropped: queue full, a failed send, or still queued when
    /// the shutdown deadline passed.
    pub dropped: u64,
    /// Whether the closing record (with the final counts) was sent.
    pub closed_cleanly: bool,
}

#[derive(Debug, Default)]
struct State {
    records: VecDeque<EventRecord>,
    /// Taken by the shipper and not yet sent or dropped.
    in_flight: u64,
    closing: bool,
    /// Set once the shipper thread has stopped.
    report: Option<ShipReport>,
}

#[derive(Debug)]
struct Queue {
    state: Mutex<State>,
    capacity: usize,
    /// Logging threads waiting for room (lossless mode).
    room: Condvar,
    /// The shipper waiting for records.
    work: Condvar,
    /// Flushes and shutdowns waiting for the shipper.
    progress: tokio::sync::Notify,
    accepted: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A `tracing_subscriber::Layer` for async agents. The thread that logs
/// never touches the connection: it puts the event in a bounded queue
/// (never waiting, or waiting at most a set time in
/// [`Delivery::Lossless`]) and a shipper thread sends it. Every event is
/// either shipped or counted as dropped; each record carries the running
/// drop count and the closing record the final one, so the collector
/// learns the exact number. Spans and their fields travel with each event.
///
/// ```
/// # use ipc_core::{AsyncFrameSender, SendError};
/// # use std::{sync::{Arc, Mutex}, time::Duration};
/// use ipc_tracing::{AsyncShippingLayer, ShipperOptions};
/// use tracing_subscriber::layer::SubscriberExt;
/// # #[derive(Clone, Default)] struct Collector(Arc<Mutex<Vec<Vec<u8>>>>);
/// # impl AsyncFrameSender for Collector {
/// #   async fn send(&mut self, f: &[u8]) -> Result<(), SendError> { self.0.lock().unwrap().push(f.to_vec()); Ok(()) }
/// #   async fn send_timeout(&mut self, f: &[u8], _: Duration) -> Result<(), SendError> { self.send(f).await }
/// #   async fn flush(&mut self) -> Result<(), SendError> { Ok(()) }
/// # }
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
/// # rt.block_on(async {
/// // `sink` is any async sender: an agent's `log_sink()` in a hub, or a
/// // connection's write half.
/// let sink = Collector::default();
/// let (layer, shipper) = AsyncShippingLayer::new(sink.clone(), ShipperOptions::new("planner"))?;
/// let subscriber = tracing_subscriber::registry().with(layer);
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("tool_call", tool = "search", call_id = 42);
///     let _in = span.enter();
///     tracing::info!("started");
/// });
/// let report = shipper.shutdown(Duration::from_secs(5)).await;
/// assert_eq!((report.sent, report.dropped), (1, 0));
/// let record = ipc_tracing::decode(&sink.0.lock().unwrap()[0])?;
/// assert_eq!(record.spans[0].name, "tool_call");
/// assert_eq!(record.agent, "planner");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AsyncShippingLayer {
    queue: Arc<Queue>,
    delivery: Delivery,
    agent: String,
}

/// The shipper of an [`AsyncShippingLayer`]: flush and shut it down from
/// async code. Dropping it lets the shipper finish the queue on its own.
#[derive(Debug)]
pub struct Shipper {
    queue: Arc<Queue>,
}

impl AsyncShippingLayer {
    /// A layer whose events go to `sink`, and its shipper (a thread named
    /// `ipc-tracing-shipper`, with its own small runtime, so it ships even
    /// when the agent's runtime is busy or single-threaded).
    pub fn new<W>(sink: W, options: ShipperOptions) -> std::io::Result<(Self, Shipper)>
    where
        W: AsyncFrameSender + 'static,
    {
        if options.capacity == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "ShipperOptions::capacity must be at least 1",
            ));
        }
        let queue = Arc::new(Queue {
            state: Mutex::default(),
            capacity: options.capacity,
            room: Condvar::new(),
            work: Condvar::new(),
            progress: tokio::sync::Notify::new(),
            accepted: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let for_thread = Arc::clone(&queue);
        let send_timeout = options.send_timeout;
        let agent = options.agent.clone();
        std::thread::Builder::new()
            .name("ipc-tracing-shipper".into())
            .spawn(move || ship(&for_thread, sink, &runtime, send_timeout, &agent))?;
        Ok((
            AsyncShippingLayer {
                queue: Arc::clone(&queue),
                delivery: options.delivery,
                agent: options.agent,
            },
            Shipper { queue },
        ))
    }

    fn enqueue(&self, record: EventRecord) {
        let queue = &self.queue;
        let mut state = queue.lock();
        if state.closing {
            drop(state);
            queue.drop_one();
            return;
        }
        if state.records.len() >= queue.capacity {
            let Delivery::Lossless { max_wait } = self.delivery else {
                drop(state);
                queue.drop_one();
                return;
            };
            let deadline = Instant::now() + max_wait;
            while state.records.len() >= queue.capacity && !state.closing {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    drop(state);
                    queue.drop_one();
                    return;
                }
                state = queue
                    .room
                    .wait_timeout(state, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if state.closing {
                drop(state);
                queue.drop_one();
                return;
            }
        }
        state.records.push_back(record);
        queue.accepted.fetch_add(1, Ordering::Relaxed);
        drop(state);
        queue.work.notify_one();
    }
}

impl<S> Layer<S> for AsyncShippingLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        on_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        on_record(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.enqueue(record_of(event, &ctx, &self.agent));
    }
}

impl Shipper {
    /// Events dropped so far.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Records sent so far.
    pub fn sent(&self) -> u64 {
        self.queue.sent.load(Ordering::Relaxed)
    }

    /// Waits until every event queued so far is sent (or dropped), at
    /// most `timeout`. Returns whether it got there.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progress = self.queue.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            {
                let state = self.queue.lock();
                if (state.records.is_empty() && state.in_flight == 0) || state.report.is_some() {
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return false;
            }
        }
    }

    /// Stops taking events, ships what is queued and a closing record with
    /// the final counts, waiting at most `timeout`. Whatever is still
    /// queued then counts as dropped (a record already being sent may
    /// still arrive).
    pub async fn shutdown(self, timeout: Duration) -> ShipReport {
        {
            let mut state = self.queue.lock();
            state.closing = true;
        }
        self.queue.work.notify_all();
        self.queue.room.notify_all();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let progress = self.queue.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if let Some(report) = self.queue.lock().report {
                return report;
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                break;
            }
        }
        // Out of time: the shipper is stuck on the connection. Count what
        // it has not sent as dropped, so the total stays exact.
        let mut state = self.queue.lock();
        let abandoned = state.records.len() as u64 + state.in_flight;
        state.records.clear();
        state.in_flight = 0;
        self.queue.dropped.fetch_add(abandoned, Ordering::Relaxed);
        ShipReport {
            sent: self.queue.sent.load(Ordering::Relaxed),
            dropped: self.queue.dropped.load(Ordering::Relaxed),
            closed_cleanly: false,
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.queue.lock().closing = true;
        self.queue.work.notify_all();
        self.queue.room.notify_all();
    }
}

/// The shipper thread: takes records in batches and sends them one by one.
fn ship<W: AsyncFrameSender>(
    queue: &Queue,
    mut sink: W,
    runtime: &tokio::runtime::Runtime,
    send_timeout: Duration,
    agent: &str,
) {
    let mut frame = Vec::with_capacity(256);
    let mut send = |record: &EventRecord, frame: &mut Vec<u8>| -> bool {
        frame.clear();
        Postcard.encode(record, frame).is_ok()
            && runtime
                .block_on(sink.send_timeout(frame, send_timeout))
                .is_ok()
    };
    loop {
        let batch = {
            let mut state = queue.lock();
            while state.records.is_empty() && !state.closing {
                state = queue.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.records.is_empty() {
                break;
            }
            let batch = std::mem::take(&mut state.records);
            state.in_flight = batch.len() as u64;
            batch
        };
        queue.room.notify_all();
        for mut record in batch {
            if queue.lock().in_flight == 0 {
                // A shutdown gave up on this batch and counted it dropped.
                break;
            }
            record.dropped = queue.dropped.load(Ordering::Relaxed);
            let sent = send(&record, &mut frame);
            let mut state = queue.lock();
            if state.in_flight == 0 {
                break;
            }
            // Counted under the lock, so a flush or shutdown never sees a
            // record neither in flight nor counted.
            state.in_flight -= 1;
            if sent {
                queue.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                queue.drop_one();
            }
        }
        queue.progress.notify_waiters();
    }
    let closing = EventRecord {
        emitted_ns: monotonic_ns(),
        level: "INFO".into(),
        target: "ipc_tracing".into(),
        message: "shipper closed".into(),
        fields: vec![
            (
                "sent".into(),
                FieldValue::U64(queue.sent.load(Ordering::Relaxed)),
            ),
            (
                "dropped".into(),
                FieldValue::U64(queue.dropped.load(Ordering::Relaxed)),
            ),
        ],
        spans: Vec::new(),
        agent: agent.to_owned(),
        pid: std::process::id(),
        dropped: queue.dropped.load(Ordering::Relaxed),
    };
    let closed_cleanly = send(&closing, &mut frame);
    let _ = runtime.block_on(sink.flush());
    let report = ShipReport {
        sent: queue.sent.load(Ordering::Relaxed),
        dropped: queue.dropped.load(Ordering::Relaxed),
        closed_cleanly,
    };
    queue.lock().report = Some(report);
    queue.progress.notify_waiters();
}
