//! What a scenario asks of an agent process: the task it is spawned with
//! (carried in [`TASK_ENV`]) and the report it sends back. Pure data, so
//! the scenarios that spawn agents and the agent side (`agent.rs`) that
//! plays them both sit above it.

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::variant::Variant;

/// The environment variable that carries an agent's task.
pub const TASK_ENV: &str = "IPC_HARNESS_TASK";

/// What an agent process is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentTask {
    /// Its part in the scenario.
    pub role: Role,
    /// The transport to the parent (and to other agents).
    pub variant: Variant,
    /// The CPU to pin this agent to, if the scenario is pinned.
    #[serde(default)]
    pub cpu: Option<usize>,
}

/// An agent's part in a scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Role {
    /// Send every frame back.
    Echo,
    /// Send every frame back through the async API.
    AsyncEcho,
    /// Join a hub and answer every call with its request.
    HubEcho,
    /// Join a hub over shared memory and answer every call with `size`
    /// bytes written into a loan.
    HubBulk {
        /// Bytes each answer.
        size: usize,
    },
    /// Receive and verify `count` payload messages (or until the parent
    /// leaves, if `None`), then send an [`AgentReport`].
    Sink {
        /// Messages to expect.
        count: Option<u64>,
        /// Read them in place (shared memory).
        in_place: bool,
    },
    /// Wait for a start frame, send `count` payload messages of `size`
    /// bytes, then wait for the parent to leave.
    Source {
        /// Messages to send.
        count: u64,
        /// Bytes each.
        size: usize,
    },
    /// Stay connected and idle until the parent leaves.
    Idle,
    /// Receive and verify one message per `delay_us` until an empty frame,
    /// then report.
    SlowSink {
        /// Pause after each message, microseconds.
        delay_us: u64,
    },
    /// Connect to `address` and disconnect, `cycles` times, reporting RSS
    /// before and after.
    Churn {
        /// Connect/disconnect cycles.
        cycles: u32,
        /// Listener addresses, one per cycle for one-to-one transports
        /// (`{base}-{i}`), else the same every time.
        address_base: String,
        /// Whether each cycle has its own address.
        per_cycle: bool,
    },
    /// Pipeline stage: forward every frame from upstream to downstream.
    Relay {
        /// Where this stage accepts its upstream.
        listen: String,
        /// Where its downstream listens.
        downstream: String,
    },
    /// All-to-all member: exchange with every other member.
    Mesh(MeshTask),
    /// Emit `events` tracing events through the shipping layer.
    LogEmitter {
        /// Events to emit.
        events: u64,
        /// Pause between events, in microseconds (0: back to back).
        interval_us: u64,
    },
    /// For every frame received, emit one tracing event (shipped back).
    LogEcho,
    /// Raw baseline: echo `size`-byte blocks on stdin/stdout, no library.
    RawPipeEcho {
        /// Block size.
        size: usize,
    },
    /// Raw baseline: echo `size`-byte blocks on the socket at fd 0.
    RawSocketEcho {
        /// Block size.
        size: usize,
    },
    /// Raw baseline: echo `size`-byte blocks through a shared buffer
    /// (memfd at fd 0).
    SharedEcho {
        /// Block size.
        size: usize,
        /// How each side waits.
        hand: Hand,
    },
    /// Raw baseline: receive and verify `size`-byte blocks streamed
    /// through two shared slots (memfd at fd 0).
    SharedSink {
        /// Block size.
        size: usize,
    },
    /// The peers group: echo `size`-byte samples over iceoryx2 services
    /// `SERVICE/ping` (in) and `SERVICE/pong` (out).
    Iceoryx2Echo {
        /// Sample size.
        size: usize,
        /// The services' name prefix.
        service: String,
    },
}

/// What a sink (or churn, mesh) agent reports at the end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentReport {
    /// Messages received.
    pub received: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Messages that failed verification.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// The agent's CPU time (user + system) so far, in nanoseconds.
    pub cpu_ns: u64,
    /// The agent's resident set size at the start of the measured part, KiB.
    pub rss_start_kib: u64,
    /// Its resident set size at the end, KiB.
    pub rss_end_kib: u64,
    /// Time the measured part took, in nanoseconds.
    pub elapsed_ns: u64,
}

impl AgentReport {
    /// Fails if the agent saw any bad message.
    pub fn check(&self, expected: Option<u64>) -> Result<()> {
        if self.errors > 0 {
            return Err(HarnessError::Agent(format!(
                "{} of {} messages failed verification; first: {}",
                self.errors,
                self.received,
                self.first_error.as_deref().unwrap_or("?")
            )));
        }
        if let Some(n) = expected
            && self.received != n
        {
            return Err(HarnessError::Agent(format!(
                "agent received {} of {n} messages",
                self.received
            )));
        }
        Ok(())
    }
}

/// One member of an all-to-all mesh.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MeshTask {
    /// This member's index.
    pub index: usize,
    /// Members in all.
    pub members: usize,
    /// Exchange rounds (one message to and from every other member each).
    pub rounds: u64,
    /// Name stem of the pair addresses.
    pub run: String,
    /// The key of every pair's zenoh listener (made by the parent, so
    /// both members of a pair know it).
    #[serde(default)]
    pub key: Option<String>,
}

/// How a side of the shared buffer waits for the other's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hand {
    /// Spin on the word.
    Spin,
    /// Spin for 50 µs (the baselines' `ADAPTIVE_SPIN`), then sleep on a futex (announced in a
    /// waiting word so the other side wakes it only when needed).
    Adaptive,
}
