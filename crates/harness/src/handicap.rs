//! A deliberate slowdown, for proving that the regression rule catches a
//! real one. A plan's [`Handicap`] (from `IPC_BENCH_HANDICAP=LABEL:NS`
//! for `ipc-bench`, which `cargo xtask bench --handicap LABEL:NS` sets
//! for the build under test only) makes the parent spin `NS`
//! nanoseconds before every message it sends over the variant labelled
//! `LABEL` (`shm`, `uds`, `shm-spin`, ...), inside the timed part. Only
//! the harness applies it, no transport changes, and the record's plan
//! says it was there.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::variant::Variant;

/// The environment variable `ipc-bench` reads.
pub const HANDICAP_ENV: &str = "IPC_BENCH_HANDICAP";

/// A slowdown of one variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handicap {
    /// The variant's label.
    pub label: String,
    /// Nanoseconds spun before each message.
    pub ns: u64,
}

impl Handicap {
    /// Parses `LABEL:NS`.
    pub fn parse(text: &str) -> Option<Self> {
        let (label, ns) = text.split_once(':')?;
        Some(Handicap {
            label: label.trim().to_owned(),
            ns: ns.trim().parse().ok()?,
        })
    }
}

static ACTIVE: RwLock<Option<Handicap>> = RwLock::new(None);

/// Makes `handicap` the one in force (the runner calls this with its plan's).
pub fn set(handicap: Option<Handicap>) {
    *ACTIVE.write().unwrap_or_else(|e| e.into_inner()) = handicap;
}

/// The handicap to apply to one variant, resolved once per scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Label(Option<Duration>);

impl Label {
    /// The handicap in force for `variant`, if any.
    pub fn of(variant: &Variant) -> Self {
        let active = ACTIVE.read().unwrap_or_else(|e| e.into_inner());
        Label(
            active
                .as_ref()
                .filter(|h| h.label == variant.label())
                .map(|h| Duration::from_nanos(h.ns)),
        )
    }
}

/// Spins for the handicap of `label`, if any.
#[inline]
pub fn delay(label: Label) {
    if let Some(d) = label.0 {
        let start = Instant::now();
        while start.elapsed() < d {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_and_nanoseconds() {
        assert_eq!(
            Handicap::parse("shm:500"),
            Some(Handicap {
                label: "shm".into(),
                ns: 500
            })
        );
        assert_eq!(Handicap::parse("shm"), None);
        assert_eq!(Handicap::parse("shm:fast"), None);
        let start = Instant::now();
        delay(Label(Some(Duration::from_micros(200))));
        assert!(start.elapsed() >= Duration::from_micros(200));
    }
}
