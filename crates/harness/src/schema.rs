//! The versioned, machine-readable result of a run.
//!
//! Every figure the runner produces lands here; `cargo xtask bench` wraps
//! it with machine facts and writes it as JSON. Bump [`SCHEMA_VERSION`]
//! on any change a reader of old files would trip over.

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::stats::LatencyStats;

/// The schema version of [`RunResults`].
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResults {
    /// [`SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// What was asked for.
    pub plan: Plan,
    /// One-way streaming throughput.
    pub throughput: Vec<ThroughputResult>,
    /// Round-trip latency.
    pub latency: Vec<LatencyResult>,
    /// The bare mechanisms, measured in the same run.
    pub baselines: Baselines,
    /// Transports relative to the mechanism each rides on.
    pub ratios: Vec<Ratio>,
    /// Codec costs on agent messages.
    pub serialization: Vec<CodecResult>,
    /// Typed (encode + send + receive + decode) round trips.
    pub typed_round_trips: Vec<TypedRoundTrip>,
    /// CPU and memory of idle connected agents.
    pub idle: Vec<IdleResult>,
    /// Memory growth over connect/disconnect cycles.
    pub churn: Vec<ChurnResult>,
    /// Multi-agent patterns.
    pub patterns: Vec<PatternResult>,
    /// Tracing events shipped to a collector.
    pub logging: Vec<LoggingResult>,
    /// Scenarios that failed, with why; their figures are absent.
    pub failures: Vec<Failure>,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
}

/// Streaming `messages` messages of `size` bytes one way, parent to agent,
/// every message verified by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// Transport variant label.
    pub transport: String,
    /// Message size, bytes.
    pub size: usize,
    /// Messages sent and verified.
    pub messages: u64,
    /// Wall time from first send to the agent's report, seconds.
    pub seconds: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload bytes per second.
    pub bytes_per_s: f64,
    /// CPU time of both processes per message, nanoseconds.
    pub cpu_ns_per_msg: f64,
    /// Parent and agent pinned to two different CPUs.
    pub pinned: bool,
}

/// Round-trip latency of `size`-byte messages to an echoing agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Transport variant label.
    pub transport: String,
    /// Message size, bytes.
    pub size: usize,
    /// `back-to-back` (the peer is hot) or `parked` (a pause between round
    /// trips lets the peer go to sleep).
    pub regime: String,
    /// Parent and agent pinned to two different CPUs.
    pub pinned: bool,
    /// Round-trip percentiles.
    pub stats: LatencyStats,
}

/// The bare operating-system mechanisms, no library on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Round trips over each mechanism.
    pub latency: Vec<BaselineLatency>,
    /// Memory copy bandwidth.
    pub memcpy: Vec<MemcpyResult>,
}

/// Round trips over a bare mechanism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineLatency {
    /// `pipe`, `socketpair`, `cache-line` or `futex`.
    pub mechanism: String,
    /// Bytes per round trip each way (the cache line and futex carry a word).
    pub size: usize,
    /// Parent and child pinned to two different CPUs.
    pub pinned: bool,
    /// Round-trip percentiles.
    pub stats: LatencyStats,
}

/// `memcpy` bandwidth at one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemcpyResult {
    /// Bytes per copy.
    pub size: usize,
    /// Bytes copied per second.
    pub bytes_per_s: f64,
}

/// A transport's figure divided by its mechanism's figure, same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// Transport variant label.
    pub transport: String,
    /// The mechanism it is compared with.
    pub mechanism: String,
    /// What is compared (e.g. `p50 round trip, 64 B`).
    pub metric: String,
    /// The transport's value.
    pub transport_value: f64,
    /// The mechanism's value.
    pub mechanism_value: f64,
    /// `transport_value / mechanism_value`.
    pub ratio: f64,
}

/// One codec on one message type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodecResult {
    /// `postcard`, `bincode` or `json`.
    pub codec: String,
    /// `log-record`, `tool-call` or `tool-result-64k`.
    pub message: String,
    /// Encoded size, bytes.
    pub encoded_bytes: usize,
    /// Median encode time, nanoseconds.
    pub encode_ns: f64,
    /// Median decode time, nanoseconds.
    pub decode_ns: f64,
}

/// A typed round trip through a transport: encode, send, echo, receive,
/// decode; beside the raw-bytes round trip of the same frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedRoundTrip {
    /// Transport variant label.
    pub transport: String,
    /// Codec.
    pub codec: String,
    /// Message type.
    pub message: String,
    /// Median typed round trip, nanoseconds.
    pub typed_p50_ns: u64,
    /// Median raw round trip of the encoded frame, nanoseconds.
    pub raw_p50_ns: u64,
}

/// Idle connected agents over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// Transport variant label.
    pub transport: String,
    /// Agents connected.
    pub agents: usize,
    /// Window, seconds.
    pub window_s: f64,
    /// CPU of all agents together, percent of one core.
    pub agents_cpu_percent: f64,
    /// CPU of the parent holding the connections, percent of one core.
    pub parent_cpu_percent: f64,
    /// Mean resident set of one agent, KiB.
    pub rss_kib_mean: f64,
    /// Largest resident set of one agent, KiB.
    pub rss_kib_max: u64,
}

/// Connect/disconnect cycles: does memory grow?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    /// Transport variant label.
    pub transport: String,
    /// Cycles run.
    pub cycles: u32,
    /// Connecting agent's RSS growth after warm-up, KiB (pipes: none, each
    /// cycle is a new agent).
    pub agent_rss_growth_kib: Option<i64>,
    /// Accepting parent's RSS growth after warm-up, KiB.
    pub parent_rss_growth_kib: i64,
    /// Growth allowed before a leak is suspected, KiB.
    pub tolerance_kib: i64,
    /// True if either growth exceeds the tolerance.
    pub leak_suspected: bool,
}

/// A multi-agent pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternResult {
    /// `fan-out`, `fan-in`, `pipeline`, `broadcast` or `all-to-all`.
    pub pattern: String,
    /// Transport variant label.
    pub transport: String,
    /// Agent processes.
    pub agents: usize,
    /// Message deliveries counted.
    pub messages: u64,
    /// Message size, bytes.
    pub size: usize,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Deliveries per second.
    pub msgs_per_s: f64,
    /// Round-trip (fan-out, pipeline) latency, if measured.
    pub latency: Option<LatencyStats>,
}

/// Tracing events shipped from an agent to the collecting parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggingResult {
    /// Transport variant label.
    pub transport: String,
    /// `burst` (back to back) or `paced` (with a pause between events).
    pub regime: String,
    /// Events received.
    pub events: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// End-to-end latency: emitted (agent) to decoded (collector).
    pub latency: LatencyStats,
}

/// A scenario that did not produce its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Its group.
    pub group: String,
    /// What it was.
    pub scenario: String,
    /// Why it failed.
    pub error: String,
}
