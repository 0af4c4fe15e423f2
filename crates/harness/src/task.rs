//! What a scenario asks of an agent process: the task it is spawned with
//! (carried in [`TASK_ENV`]) and the report it sends back. Pure data, so
//! the scenarios that spawn agents and the agent side (`agent.rs`) that
//! plays them both sit above it.

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::plan::Group;
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

/// An agent's part in a scenario: one of the parts many scenarios share,
/// or a part of one scenario's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Role {
    /// Send every frame back.
    Echo,
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
    /// A part only the scenario of `group` plays: that scenario defines
    /// its type and reads it back (see [`Role::part`]).
    Part {
        /// Whose part.
        group: Group,
        /// The part, in the scenario's own type.
        part: serde_json::Value,
    },
}

impl Role {
    /// A part of `group`'s own (a value of the type that scenario reads).
    pub fn part(group: Group, part: &impl Serialize) -> Result<Role> {
        Ok(Role::Part {
            group,
            part: serde_json::to_value(part)?,
        })
    }
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
    /// A report begun now: this process's memory at the start of the
    /// measured part.
    pub fn begin() -> Self {
        AgentReport {
            rss_start_kib: crate::procfs::rss_kib(std::process::id()).unwrap_or(0),
            ..AgentReport::default()
        }
    }

    /// Ends the measured part begun at `start`: its time, and this
    /// process's CPU and memory now.
    pub fn end(&mut self, start: std::time::Instant) {
        self.elapsed_ns = start.elapsed().as_nanos() as u64;
        self.cpu_ns = crate::procfs::self_cpu_ns();
        self.rss_end_kib = crate::procfs::rss_kib(std::process::id()).unwrap_or(0);
    }

    /// Counts a message of `len` bytes received, and how its check went.
    pub fn note(
        &mut self,
        checked: std::result::Result<(), ipc_core::payload::IntegrityError>,
        len: usize,
    ) {
        self.received += 1;
        self.bytes += len as u64;
        if let Err(e) = checked {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| e.to_string());
        }
    }

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
