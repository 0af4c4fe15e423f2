//! The dimensions a figure is measured along besides its transport: the
//! regime of the traffic, the bare mechanism beside it, the codec.

use serde::{Deserialize, Serialize};

/// How the traffic of a measurement flows: the regime a figure was
/// measured in. One list, so reports, comparisons and exports name
/// regimes alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regime {
    /// Round trips one after another: both sides stay hot.
    BackToBack,
    /// Round trips with a pause between them: the receiver goes to sleep
    /// and must be woken.
    Parked,
    /// Streaming one way, as fast as the receiver verifies.
    OneWay,
    /// [`OneWay`](Regime::OneWay) through the async API: the parent sends
    /// on a current-thread runtime, the agent receives on one of its own.
    /// Pinned as the blocking stream is, when the plan pins.
    OneWayAsync,
    /// [`OneWayAsync`](Regime::OneWayAsync) with the parent sending on a
    /// multi-thread runtime (from its main future, as `#[tokio::main]`).
    OneWayAsyncMultiThread,
    /// Events emitted back to back (logging).
    Burst,
    /// Events emitted with a pause between them (logging).
    Paced,
    /// Connected agents doing nothing.
    Idle,
    /// Connect/disconnect cycles.
    Churn,
    /// The hub sends to every agent in turn and gathers the replies.
    FanOut,
    /// Every agent streams to the hub.
    FanIn,
    /// The hub sends every message to every agent.
    Broadcast,
    /// The hub sends every 1 MiB result to every agent.
    BulkBroadcast,
    /// Messages pass through a chain of agents.
    Pipeline,
    /// Every agent exchanges with every other.
    AllToAll,
    /// Encoding a message type (codecs).
    Encode(Message),
    /// Decoding a message type (codecs).
    Decode(Message),
    /// Typed round trip: encode, send, echo, receive, decode.
    Typed(CodecKind),
    /// The raw round trip of the same encoded frame.
    Raw(CodecKind),
    /// Blocking round trips one after another, unpinned as a runtime
    /// runs: the like-with-like floor of [`Async`](Regime::Async).
    BackToBackUnpinned,
    /// Round trips through the async API, both ends on current-thread
    /// runtimes, unpinned.
    Async,
    /// Round trips through the async API, the parent on a multi-thread
    /// runtime, unpinned.
    AsyncMultiThread,
    /// [`Async`](Regime::Async) with the two processes pinned to two CPUs
    /// as the blocking round trip is: the like-with-like ratio of the
    /// async API over the blocking one.
    AsyncPinned,
    /// A typed call through `ipc-hub` (hub on a multi-thread runtime, the
    /// agent serving it on a current-thread one), unpinned.
    HubCall,
    /// The same call made from a task spawned on the hub's runtime (as a
    /// runtime serving requests makes it), not from the runtime's main
    /// future (`block_on`, as `#[tokio::main]` runs): a reply then
    /// completes its caller on the worker that read it. Unpinned.
    HubCallTask,
    /// The same call with the hub's process and the agent pinned to two
    /// CPUs.
    HubCallPinned,
    /// The unpinned hub call answered by a Python agent (`ipc_agent`).
    HubCallPython,
    /// A Rust agent handing the hub a large result over shared memory (a
    /// call answered by writing it into a loan), unpinned.
    BulkReply,
    /// The same, from a Python agent (`reply_bytes` of a `bytes`).
    BulkReplyPython,
    /// One hub with many agents (the scale group).
    Scale,
}

impl Regime {
    /// Measured unpinned, as a runtime runs: on two CPUs such figures
    /// move between trials by whether the scheduler put the two processes
    /// on one CPU or two (bimodal), so they are reported, not judged.
    pub fn unpinned(self) -> bool {
        matches!(
            self,
            Regime::BackToBackUnpinned
                | Regime::Async
                | Regime::AsyncMultiThread
                | Regime::HubCall
                | Regime::HubCallTask
                | Regime::HubCallPython
                | Regime::BulkReply
                | Regime::BulkReplyPython
        )
    }

    /// Its name in reports and keys.
    pub fn name(self) -> String {
        match self {
            Regime::BackToBack => "back-to-back".into(),
            Regime::Parked => "parked".into(),
            Regime::OneWay => "one-way".into(),
            Regime::OneWayAsync => "one-way-async".into(),
            Regime::OneWayAsyncMultiThread => "one-way-async-multi-thread".into(),
            Regime::Burst => "burst".into(),
            Regime::Paced => "paced".into(),
            Regime::Idle => "idle".into(),
            Regime::Churn => "churn".into(),
            Regime::FanOut => "fan-out".into(),
            Regime::FanIn => "fan-in".into(),
            Regime::Broadcast => "broadcast".into(),
            Regime::BulkBroadcast => "bulk-broadcast".into(),
            Regime::Pipeline => "pipeline".into(),
            Regime::AllToAll => "all-to-all".into(),
            Regime::Encode(m) => format!("encode {}", m.name()),
            Regime::Decode(m) => format!("decode {}", m.name()),
            Regime::Typed(c) => format!("typed {}", c.name()),
            Regime::Raw(c) => format!("raw {}", c.name()),
            Regime::BackToBackUnpinned => "back-to-back-unpinned".into(),
            Regime::Async => "async".into(),
            Regime::AsyncMultiThread => "async-multi-thread".into(),
            Regime::AsyncPinned => "async-pinned".into(),
            Regime::HubCall => "hub-call".into(),
            Regime::HubCallTask => "hub-call-task".into(),
            Regime::HubCallPinned => "hub-call-pinned".into(),
            Regime::HubCallPython => "hub-call-python".into(),
            Regime::BulkReply => "bulk-reply".into(),
            Regime::BulkReplyPython => "bulk-reply-python".into(),
            Regime::Scale => "scale".into(),
        }
    }
}

/// A codec of ipc-core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CodecKind {
    /// postcard (the default).
    Postcard,
    /// bincode 2.
    Bincode,
    /// serde_json.
    Json,
}

impl CodecKind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Postcard => "postcard",
            CodecKind::Bincode => "bincode",
            CodecKind::Json => "json",
        }
    }
}

/// A bare mechanism measured beside the transports, with no library on
/// top. Each does the same per-message work as the transport compared
/// with it: the payload is filled before and verified after the timed
/// part, and every byte crosses between the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    /// A child's stdin/stdout pipes, echoing blocks (the mechanism of `pipe`).
    Pipe,
    /// A socketpair with a child, echoing blocks (the mechanism of `uds`).
    Socketpair,
    /// A shared buffer with both sides spinning: copy in, publish a flag,
    /// copy out (round trips), or two slots streamed one way (throughput).
    /// The mechanism of `shm`.
    SharedBuffer,
    /// The shared buffer, but the receiver sleeps on a futex after a
    /// brief spin, as the adaptive wait does; the parked regime's
    /// mechanism.
    Futex,
    /// A TCP connection over loopback with a child, echoing blocks (no
    /// Nagle delay): the mechanism of `zenoh`.
    TcpLoopback,
    /// `memcpy` between two buffers in one process (cache-hot; for
    /// reference, not a cross-process figure).
    Memcpy,
    /// Not a bare mechanism: iceoryx2 (crates.io), the zero-copy
    /// shared-memory crate people use instead, publish-subscribe between
    /// two processes, both sides spinning on `receive`. Measured in the
    /// peers group beside `shm`.
    Iceoryx2,
}

impl Mechanism {
    /// Its name in reports and keys.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Pipe => "pipe",
            Mechanism::Socketpair => "socketpair",
            Mechanism::TcpLoopback => "tcp-loopback",
            Mechanism::SharedBuffer => "shared-buffer",
            Mechanism::Futex => "futex",
            Mechanism::Memcpy => "memcpy",
            Mechanism::Iceoryx2 => "iceoryx2",
        }
    }
}

/// A sample agent message of the serialization group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Message {
    /// A structured log record.
    LogRecord,
    /// A tool call with nested arguments.
    ToolCall,
    /// A tool result carrying 64 KiB.
    ToolResult64k,
}

impl Message {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Message::LogRecord => "log-record",
            Message::ToolCall => "tool-call",
            Message::ToolResult64k => "tool-result-64k",
        }
    }
}
