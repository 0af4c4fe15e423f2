//! The transports under test and their variants (wait strategy, ring
//! size, large-message path, network): pure data, below everything that
//! connects or measures.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipc_core::{Config, WaitStrategy};
use serde::{Deserialize, Serialize};

use crate::dimension::{Mechanism, Regime};
use crate::error::{HarnessError, Result};

/// A transport crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `ipc-pipe`: the agent's stdin/stdout.
    Pipe,
    /// `ipc-uds`: Unix domain sockets.
    Uds,
    /// `ipc-shm`: shared-memory rings.
    Shm,
    /// `ipc-zenoh`: zenoh over TCP (on loopback, or through a veth pair).
    Zenoh,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Transport; 4] = [
        Transport::Pipe,
        Transport::Uds,
        Transport::Shm,
        Transport::Zenoh,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Pipe => "pipe",
            Transport::Uds => "uds",
            Transport::Shm => "shm",
            Transport::Zenoh => "zenoh",
        }
    }

    /// True if agents can reach each other by address (not only their parent).
    pub fn has_addresses(self) -> bool {
        !matches!(self, Transport::Pipe)
    }
}

impl FromStr for Transport {
    type Err = HarnessError;
    fn from_str(s: &str) -> Result<Self> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                HarnessError::Invalid(format!(
                    "unknown transport `{s}`; expected pipe, uds, shm or zenoh"
                ))
            })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shared-memory wait strategy, as results name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Spin, then park on a futex (the default).
    Adaptive,
    /// Busy-spin.
    Spin,
    /// Spin, then yield.
    SpinYield,
    /// Park on a futex at once, no spinning.
    Blocking,
}

impl Strategy {
    /// Every strategy.
    pub const ALL: [Strategy; 4] = [
        Strategy::Adaptive,
        Strategy::Spin,
        Strategy::SpinYield,
        Strategy::Blocking,
    ];

    fn wait_strategy(self) -> WaitStrategy {
        match self {
            Strategy::Adaptive => WaitStrategy::Adaptive,
            Strategy::Spin => WaitStrategy::Spin,
            Strategy::SpinYield => WaitStrategy::SpinYield,
            Strategy::Blocking => WaitStrategy::Blocking,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Strategy::Adaptive => "adaptive",
            Strategy::Spin => "spin",
            Strategy::SpinYield => "spin-yield",
            Strategy::Blocking => "blocking",
        }
    }
}

/// How shared memory carries a message larger than a ring record.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Large {
    /// As a connection does by default: a blob above
    /// `ipc_shm::DEFAULT_BLOB_THRESHOLD` (copied into it by `send`).
    #[default]
    Default,
    /// Copied through the ring in chunks (blobs off).
    Copy,
    /// Written by the sender straight into a blob (`BlobBuf`), read in
    /// place by the receiver.
    Blob,
}

/// Where a zenoh agent runs: on this host's loopback, or in a network
/// namespace behind a veth pair (traffic crosses an interface).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Net {
    /// Loopback.
    #[default]
    Loopback,
    /// Another network namespace, through a veth pair (as root).
    Veth,
}

/// A transport as a scenario uses it: which crate, how shared memory
/// waits, and whether messages are written and read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Variant {
    /// The transport crate.
    pub transport: Transport,
    /// Wait strategy (shared memory only).
    pub strategy: Strategy,
    /// Use `reserve`/`recv_in_place` (shared memory only).
    pub zero_copy: bool,
    /// Ring size in KiB, if not the default (shared memory only).
    pub ring_kib: Option<u32>,
    /// How messages larger than a record travel (shared memory only).
    #[serde(default)]
    pub large: Large,
    /// Where the agent runs (zenoh only).
    #[serde(default)]
    pub net: Net,
}

impl Variant {
    /// The bare mechanism this variant's round trip rides on in `regime`:
    /// what its same-run ratios are taken over.
    pub fn mechanism(self, regime: Regime) -> Mechanism {
        match (regime, self.transport) {
            (Regime::Parked, _) => Mechanism::Futex,
            (_, Transport::Pipe) => Mechanism::Pipe,
            (_, Transport::Uds) => Mechanism::Socketpair,
            (_, Transport::Shm) => Mechanism::SharedBuffer,
            (_, Transport::Zenoh) => Mechanism::TcpLoopback,
        }
    }

    /// The transport with its defaults.
    pub fn of(transport: Transport) -> Self {
        Variant {
            transport,
            strategy: Strategy::Adaptive,
            zero_copy: false,
            ring_kib: None,
            large: Large::Default,
            net: Net::Loopback,
        }
    }

    /// Zenoh with the agent in a network namespace behind a veth pair.
    pub fn zenoh_veth() -> Self {
        Variant {
            net: Net::Veth,
            ..Variant::of(Transport::Zenoh)
        }
    }

    /// Shared memory carrying large messages as `large` says.
    pub fn shm_large(large: Large) -> Self {
        Variant {
            large,
            ..Variant::of(Transport::Shm)
        }
    }

    /// Shared memory with `strategy`.
    pub fn shm(strategy: Strategy) -> Self {
        Variant {
            strategy,
            ..Variant::of(Transport::Shm)
        }
    }

    /// Shared memory with rings of `kib` KiB.
    pub fn shm_ring(kib: u32) -> Self {
        Variant {
            ring_kib: Some(kib),
            ..Variant::of(Transport::Shm)
        }
    }

    /// A label for reports: `pipe`, `uds`, `shm`, `shm-spin`,
    /// `shm-zero-copy`, `shm-ring-256k`, `shm-copy`, `shm-blob`, `zenoh`,
    /// `zenoh-veth`.
    pub fn label(&self) -> String {
        if self.net == Net::Veth {
            return format!("{}-veth", self.transport.name());
        }
        match (self.transport, self.large) {
            (Transport::Shm, Large::Copy) => return "shm-copy".into(),
            (Transport::Shm, Large::Blob) => return "shm-blob".into(),
            _ => {}
        }
        if let (Transport::Shm, Some(kib), false) = (self.transport, self.ring_kib, self.zero_copy)
        {
            return format!("shm-ring-{kib}k");
        }
        match (self.transport, self.strategy, self.zero_copy) {
            (Transport::Shm, _, true) => "shm-zero-copy".into(),
            (Transport::Shm, Strategy::Adaptive, false) => "shm".into(),
            (Transport::Shm, s, false) => format!("shm-{}", s.name()),
            (t, _, _) => t.name().into(),
        }
    }

    /// The connection config agents and parents use for this variant. The
    /// zero-copy variant uses 4 MiB rings, so that a 1 MiB message fits in
    /// one record and is written and read in place.
    pub fn config(&self) -> Config {
        let config = Config::default()
            .with_wait_strategy(self.strategy.wait_strategy())
            .with_recv_timeout(Some(SCENARIO_TIMEOUT))
            .with_send_timeout(Some(SCENARIO_TIMEOUT));
        match (self.zero_copy, self.ring_kib) {
            (true, _) => config.with_buffer_size(Some(ZERO_COPY_RING)),
            (false, Some(kib)) => config.with_buffer_size(Some(kib as usize * 1024)),
            (false, None) => config,
        }
    }

    /// Shared memory with zero copy.
    pub fn shm_zero_copy() -> Self {
        Variant {
            zero_copy: true,
            ..Variant::of(Transport::Shm)
        }
    }
}

/// Ring size of the zero-copy variant.
pub const ZERO_COPY_RING: usize = 4 << 20;

/// Longest any single wait in a scenario may take before the scenario is
/// declared failed (a hang guard, not a performance limit).
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);
