//! The versioned, machine-readable result of a run.
//!
//! Every scenario run (one *trial*: fresh processes, one measuring window)
//! lands here as a raw record tagged with its trial number;
//! `figures::figures` turns the trials into the one typed list of figures
//! (median and interval over trials) that every report, comparison, target
//! and export reads. Bump [`SCHEMA_VERSION`] on any change a reader of old
//! files would trip over.

use serde::{Deserialize, Serialize};

pub use crate::dimension::{CodecKind, Mechanism, Message, Regime};
use crate::figure::Figure;
use crate::plan::Plan;
use crate::stats::LatencyStats;
use crate::variant::Variant;

/// The schema version of [`RunResults`].
pub const SCHEMA_VERSION: u32 = 2;

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResults {
    /// [`SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// What was asked for.
    pub plan: Plan,
    /// Every figure, summarized over trials (derived from the raw records
    /// below by `figures::figures`).
    pub figures: Vec<Figure>,
    /// One-way streaming throughput, one record per trial.
    pub throughput: Vec<ThroughputResult>,
    /// Round-trip latency, one record per trial.
    pub latency: Vec<LatencyResult>,
    /// The runtime's path: async round trips and calls through the hub,
    /// with the blocking round trip measured beside them (absent in
    /// records from before the hub group).
    #[serde(default)]
    pub hub: Vec<LatencyResult>,
    /// One hub with many agents (absent in records from before the scale
    /// group).
    #[serde(default)]
    pub scale: Vec<ScaleResult>,
    /// The bare mechanisms, measured interleaved with the transports.
    pub baselines: Baselines,
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
    /// `shm` against the crates people use instead (absent in records
    /// from before the peers group).
    #[serde(default)]
    pub peers: PeerResults,
    /// Scenarios that failed, with why; their figures are absent.
    pub failures: Vec<Failure>,
    /// Trials added where figures were still too noisy after the planned
    /// ones (absent when the run was not driven with a budget for them).
    #[serde(default)]
    pub extra_trials: Option<ExtraTrials>,
    /// Wall time of the run, seconds.
    pub duration_s: f64,
}

/// Streaming `messages` messages of `size` bytes one way, parent to agent,
/// every message verified by the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThroughputResult {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
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
    /// CPU time of both processes per message, nanoseconds, both measured
    /// over the same window (first send to the report).
    pub cpu_ns_per_msg: f64,
    /// Parent and agent pinned to two different CPUs.
    pub pinned: bool,
    /// How the parent sent: blocking ([`Regime::OneWay`], and in records
    /// from before the async streams) or through the async API.
    #[serde(default = "one_way")]
    pub regime: Regime,
}

fn one_way() -> Regime {
    Regime::OneWay
}

/// Round-trip latency of `size`-byte messages to an echoing agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
    /// Message size, bytes.
    pub size: usize,
    /// Back to back or parked.
    pub regime: Regime,
    /// Parent and agent pinned to two different CPUs.
    pub pinned: bool,
    /// CPU time of both processes per round trip over the measured
    /// window, nanoseconds (in the parked regime: what spinning costs).
    pub cpu_ns_per_op: f64,
    /// Round-trip percentiles.
    pub stats: LatencyStats,
}

/// The bare operating-system mechanisms, no library on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// Round trips over each mechanism.
    pub latency: Vec<BaselineLatency>,
    /// Bandwidth of copying mechanisms (cross-process shared buffer,
    /// in-process memcpy).
    pub bandwidth: Vec<BaselineBandwidth>,
}

/// The peers group: round trips over `shm` and over another crate, in the
/// same blocks, trial by trial.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerResults {
    /// Ours.
    pub ours: Vec<LatencyResult>,
    /// Theirs (`mechanism` names the crate).
    pub others: Vec<BaselineLatency>,
    /// The floor: the bare shared buffer doing the same copies (copy in,
    /// copy out and back, copy out), in the same blocks. No copying
    /// transport is faster, so `floor / other` is the best ratio against
    /// a peer that copying can reach on this machine.
    #[serde(default)]
    pub floor: Vec<BaselineLatency>,
}

/// Round trips over a bare mechanism.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineLatency {
    /// Which mechanism.
    pub mechanism: Mechanism,
    /// Trial number.
    pub trial: u32,
    /// Bytes per round trip each way.
    pub size: usize,
    /// Back to back or parked.
    pub regime: Regime,
    /// Parent and child pinned to two different CPUs.
    pub pinned: bool,
    /// CPU time of both processes per round trip, nanoseconds.
    pub cpu_ns_per_op: f64,
    /// Round-trip percentiles.
    pub stats: LatencyStats,
}

/// Copy bandwidth of a mechanism at one block size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineBandwidth {
    /// `shared-buffer` (two processes) or `memcpy` (one).
    pub mechanism: Mechanism,
    /// Trial number.
    pub trial: u32,
    /// Bytes per block.
    pub size: usize,
    /// Blocks moved.
    pub blocks: u64,
    /// Bytes moved per second.
    pub bytes_per_s: f64,
}

/// One codec on one message type: one trial of many timed batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodecResult {
    /// The codec.
    pub codec: CodecKind,
    /// The message type.
    pub message: Message,
    /// Trial number.
    pub trial: u32,
    /// Encoded size, bytes.
    pub encoded_bytes: usize,
    /// Median encode time over the trial's batches, nanoseconds.
    pub encode_ns: f64,
    /// Median decode time over the trial's batches, nanoseconds.
    pub decode_ns: f64,
}

/// A typed round trip through a transport: encode, send, echo, receive,
/// decode; beside the raw-bytes round trip of the same frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedRoundTrip {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
    /// Codec.
    pub codec: CodecKind,
    /// Message type.
    pub message: Message,
    /// Median typed round trip, nanoseconds.
    pub typed_p50_ns: u64,
    /// Median raw round trip of the encoded frame, nanoseconds.
    pub raw_p50_ns: u64,
}

/// One `ipc-hub` hub with `agents` agent processes serving typed calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleResult {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
    /// Agent processes.
    pub agents: usize,
    /// From spawning the first agent until the last had joined, ns.
    pub join_ns: u64,
    /// A 64 B `call_each` to every agent, one sample per round.
    pub call_each: LatencyStats,
    /// Threads of the hub's process with every agent connected.
    pub hub_threads: usize,
    /// Growth of the hub process's resident memory per agent, KiB.
    pub hub_kib_per_agent: f64,
    /// CPU of the hub and every agent together while idle, percent of one
    /// core.
    pub idle_cpu_percent: f64,
}

/// Idle connected agents over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleResult {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
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
    /// Shared memory the parent's connections hold, per agent, KiB (the
    /// pages of each agent's segment the kernel has backed; shared memory
    /// only).
    #[serde(default)]
    pub shm_kib_per_agent: Option<f64>,
    /// The agents' program: `ipc-idle-<transport>` (links only its
    /// transport), or the runner where that was not built (records from
    /// before it: the runner).
    #[serde(default = "runner_program")]
    pub agent_program: String,
}

fn runner_program() -> String {
    "ipc-bench".into()
}

/// Connect/disconnect cycles: does memory grow?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
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
    /// Fan-out, fan-in, pipeline, broadcast or all-to-all.
    pub pattern: Regime,
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
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
    /// The transport variant.
    pub variant: Variant,
    /// Trial number.
    pub trial: u32,
    /// Burst (back to back) or paced (with a pause between events).
    pub regime: Regime,
    /// Events received.
    pub events: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// End-to-end latency: emitted (agent) to decoded (collector).
    pub latency: LatencyStats,
}

/// Trials added to blocks whose judged figures were still too noisy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtraTrials {
    /// The wall time they were allowed, seconds.
    pub budget_s: f64,
    /// The wall time they took, seconds.
    pub seconds: f64,
    /// The blocks that got them.
    pub blocks: Vec<ExtraBlock>,
}

/// A block that got extra trials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraBlock {
    /// Its group.
    pub group: String,
    /// Its cells.
    pub cells: Vec<String>,
    /// Trials it has now.
    pub trials: u32,
    /// Figures too noisy after the planned trials.
    pub noisy_before: Vec<String>,
    /// Figures still too noisy after the extra ones.
    pub noisy_after: Vec<String>,
}

/// A scenario that did not produce its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// Its group.
    pub group: String,
    /// What it was.
    pub scenario: String,
    /// Trial number.
    pub trial: u32,
    /// Why it failed.
    pub error: String,
}
