//! What a run measures, with presets.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{HarnessError, Result};
use crate::variant::Transport;

/// A group of scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// The bare mechanisms alone (with latency or throughput in the run
    /// they are measured inside those groups, beside the transports), and
    /// in-process memcpy.
    Baselines,
    /// One-way streaming msg/s and bytes/s.
    Throughput,
    /// Round-trip percentiles.
    Latency,
    /// The path a runtime takes: each transport's async API and a typed
    /// call through `ipc-hub`, paired with its blocking round trip.
    Hub,
    /// `shm` against the crates people use instead (iceoryx2), round
    /// trips interleaved; needs the runner built with feature `peers`
    /// (`cargo xtask bench` does).
    Peers,
    /// Codec costs and typed round trips.
    Serialization,
    /// CPU and RSS of idle agents; RSS over connect/disconnect cycles.
    Resources,
    /// Fan-out, fan-in, pipeline, broadcast, all-to-all.
    Patterns,
    /// Tracing events shipped to a collector.
    Logging,
    /// One hub with many agents: threads, memory, join time, call_each,
    /// idle CPU by agent count.
    Scale,
}

impl Group {
    /// Every group, in run order (baselines first: ratios need them).
    pub const ALL: [Group; 10] = [
        Group::Baselines,
        Group::Throughput,
        Group::Latency,
        Group::Hub,
        Group::Peers,
        Group::Serialization,
        Group::Resources,
        Group::Patterns,
        Group::Logging,
        Group::Scale,
    ];

    /// The group's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Group::Baselines => "baselines",
            Group::Throughput => "throughput",
            Group::Latency => "latency",
            Group::Hub => "hub",
            Group::Peers => "peers",
            Group::Serialization => "serialization",
            Group::Resources => "resources",
            Group::Patterns => "patterns",
            Group::Logging => "logging",
            Group::Scale => "scale",
        }
    }
}

impl FromStr for Group {
    type Err = HarnessError;
    fn from_str(s: &str) -> Result<Self> {
        Group::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Group::ALL.iter().map(|g| g.name()).collect();
                HarnessError::Invalid(format!(
                    "unknown group `{s}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses a size: `64`, `4KiB`, `1MiB` (also `k`, `K`, `KB`, `m`, `M`, `MB`
/// as binary units).
pub fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| {
        HarnessError::Invalid(format!("bad size `{s}`; expected e.g. 64, 4KiB, 1MiB"))
    })?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => {
            return Err(HarnessError::Invalid(format!(
                "bad size unit in `{s}`; use B, KiB or MiB"
            )));
        }
    };
    let size = n
        .checked_mul(scale)
        .filter(|&b| b <= ipc_core::DEFAULT_MAX_MESSAGE_SIZE)
        .ok_or_else(|| {
            HarnessError::Invalid(format!("size `{s}` exceeds the 16 MiB message limit"))
        })?;
    Ok(size)
}

/// What a run measures and how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Groups to run, in order.
    pub groups: Vec<Group>,
    /// Transports to measure.
    pub transports: Vec<Transport>,
    /// Message sizes for throughput and latency.
    pub sizes: Vec<usize>,
    /// Agent counts for the patterns.
    pub agent_counts: Vec<usize>,
    /// The preset it started from: `full`, `quick` or `tiny`.
    pub preset: String,
    /// Whether this is the quick (or tiny) preset.
    pub quick: bool,
    /// Pin the two processes of latency, throughput and baseline scenarios
    /// to two different CPUs (when the machine has two).
    pub pin: bool,
    /// Round trips recorded per latency figure (after the warm-up).
    pub latency_samples: u64,
    /// Round trips before recording starts.
    pub latency_warmup: u64,
    /// Round trips recorded in the parked regime.
    pub parked_samples: u64,
    /// Pause between parked round trips, microseconds.
    pub parked_gap_us: u64,
    /// Bytes to stream per throughput figure (message count = this / size).
    pub throughput_bytes: u64,
    /// Fewest messages per throughput figure.
    pub throughput_min_messages: u64,
    /// Most messages per throughput figure.
    pub throughput_max_messages: u64,
    /// Idle agent counts measured.
    pub idle_agents: Vec<usize>,
    /// Agent counts of the scale group.
    #[serde(default)]
    pub scale_agents: Vec<usize>,
    /// Idle measurement window, milliseconds.
    pub idle_window_ms: u64,
    /// Connect/disconnect cycles in the leak check.
    pub churn_cycles: u32,
    /// Messages per pattern figure (per agent where the pattern says so),
    /// before calibration: a pattern whose pilot run is shorter than
    /// `pattern_window_ms` is run with proportionally more.
    pub pattern_messages: u64,
    /// Shortest measuring window of a pattern figure, milliseconds.
    #[serde(default)]
    pub pattern_window_ms: u64,
    /// Events per burst logging figure (paced figures send a fiftieth,
    /// 1 ms apart).
    pub log_events: u64,
    /// Timed batches per codec figure and trial (each batch at least
    /// 50 µs of calls).
    pub codec_batches: u64,
    /// Independent trials of every scenario, interleaved.
    pub trials: u32,
    /// A deliberate slowdown of one variant (to prove the regression rule
    /// catches it); never set by a preset.
    #[serde(default)]
    pub handicap: Option<crate::handicap::Handicap>,
}

/// The message sizes every transport is measured at by default.
pub const DEFAULT_SIZES: [usize; 6] = [64, 256, 512, 1024, 4096, 1 << 20];

impl Default for Plan {
    fn default() -> Self {
        Plan::full()
    }
}

impl Plan {
    /// The full preset: eight trials of every figure (so the median's
    /// interval can drop the most extreme trial at each end).
    pub fn full() -> Self {
        Plan {
            groups: Group::ALL.to_vec(),
            transports: Transport::ALL.to_vec(),
            sizes: DEFAULT_SIZES.to_vec(),
            agent_counts: vec![2, 4, 8],
            preset: "full".into(),
            quick: false,
            pin: true,
            latency_samples: 10_000,
            latency_warmup: 1_000,
            parked_samples: 300,
            parked_gap_us: 1_000,
            throughput_bytes: 512 << 20,
            throughput_min_messages: 256,
            throughput_max_messages: 1_000_000,
            idle_agents: vec![1, 4, 16],
            scale_agents: vec![16, 64, 256, 1000],
            idle_window_ms: 2_000,
            churn_cycles: 500,
            pattern_messages: 20_000,
            pattern_window_ms: 100,
            log_events: 50_000,
            codec_batches: 101,
            trials: 8,
            handicap: None,
        }
    }

    /// The quick preset: every figure, five trials of shorter windows
    /// (under 90 s of measuring on two cores).
    pub fn quick() -> Self {
        Plan {
            preset: "quick".into(),
            quick: true,
            agent_counts: vec![2, 4],
            latency_samples: 1_000,
            latency_warmup: 200,
            parked_samples: 60,
            throughput_bytes: 128 << 20,
            throughput_min_messages: 64,
            throughput_max_messages: 200_000,
            idle_agents: vec![16],
            scale_agents: vec![16],
            idle_window_ms: 500,
            churn_cycles: 100,
            pattern_messages: 5_000,
            pattern_window_ms: 25,
            log_events: 20_000,
            codec_batches: 31,
            trials: 5,
            ..Plan::full()
        }
    }

    /// A tiny preset for smoke tests: every scenario runs, figures are not
    /// meaningful.
    pub fn tiny() -> Self {
        Plan {
            preset: "tiny".into(),
            sizes: vec![64, 4096, 1 << 20],
            agent_counts: vec![2],
            latency_samples: 50,
            latency_warmup: 10,
            parked_samples: 10,
            throughput_bytes: 2 << 20,
            throughput_min_messages: 4,
            throughput_max_messages: 500,
            idle_agents: vec![2],
            scale_agents: vec![4],
            idle_window_ms: 100,
            churn_cycles: 20,
            pattern_messages: 100,
            pattern_window_ms: 0,
            log_events: 100,
            codec_batches: 5,
            trials: 2,
            ..Plan::quick()
        }
    }

    /// Round trips recorded per latency figure at `size`: large messages
    /// take milliseconds each, so they get a twentieth of the samples (at
    /// least 50).
    pub fn latency_samples_at(&self, size: usize) -> u64 {
        if size > 64 << 10 {
            (self.latency_samples / 20)
                .max(50)
                .min(self.latency_samples)
        } else {
            self.latency_samples
        }
    }

    /// Messages per throughput figure at `size`.
    pub fn throughput_messages(&self, size: usize) -> u64 {
        (self.throughput_bytes / size.max(1) as u64)
            .clamp(self.throughput_min_messages, self.throughput_max_messages)
    }

    /// Checks the plan can run.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(HarnessError::Invalid(what.to_owned()));
        if self.groups.is_empty() {
            return bad("no group to run");
        }
        if self.transports.is_empty() {
            return bad("no transport to measure");
        }
        if self.sizes.is_empty()
            || self
                .sizes
                .iter()
                .any(|&s| s > ipc_core::DEFAULT_MAX_MESSAGE_SIZE)
        {
            return bad("sizes must be given and at most 16 MiB");
        }
        if self.agent_counts.is_empty() || self.agent_counts.iter().any(|&n| n == 0 || n > 64) {
            return bad("agent counts must be between 1 and 64");
        }
        if self.latency_samples == 0 || self.log_events == 0 || self.pattern_messages == 0 {
            return bad("sample counts must be positive");
        }
        if self.scale_agents.iter().any(|&n| n == 0 || n > 10_000) {
            return bad("scale agent counts must be between 1 and 10000");
        }
        if self.trials == 0 || self.trials > 100 {
            return bad("trials must be between 1 and 100");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_reject_nonsense() {
        assert_eq!(parse_size("64").unwrap(), 64);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        for bad in ["", "x", "12 parsecs", "-1", "32MiB", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn groups_and_transports_parse_by_name() {
        for g in Group::ALL {
            assert_eq!(g.name().parse::<Group>().unwrap(), g);
        }
        assert!(
            "latencies"
                .parse::<Group>()
                .unwrap_err()
                .to_string()
                .contains("expected one of")
        );
        assert!("tcp".parse::<Transport>().is_err());
    }

    #[test]
    fn presets_validate_and_scale_message_counts() {
        for plan in [Plan::full(), Plan::quick(), Plan::tiny()] {
            plan.validate().unwrap();
            assert!(plan.throughput_messages(64) >= plan.throughput_messages(1 << 20));
            assert!(plan.throughput_messages(1 << 20) >= plan.throughput_min_messages);
        }
        let mut plan = Plan::quick();
        plan.agent_counts = vec![0];
        assert!(plan.validate().is_err());
    }
}
