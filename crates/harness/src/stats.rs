//! Latency statistics from per-operation samples, via `hdrhistogram`.

use std::time::Duration;

use base64::Engine;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

/// Samples of one latency measurement, in nanoseconds.
#[derive(Debug, Clone)]
pub struct Recorder {
    hist: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder for 1 ns .. 100 s at 3 significant digits.
    pub fn new() -> Self {
        Recorder {
            hist: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
        }
    }

    /// Records one sample (clamped into range, never lost).
    pub fn record(&mut self, sample: Duration) {
        self.hist
            .saturating_record((sample.as_nanos() as u64).max(1));
    }

    /// Records one sample given in nanoseconds.
    pub fn record_ns(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The summary, with the histogram serialized (HdrHistogram V2 +
    /// deflate, base64) so later tools can merge or re-plot it.
    pub fn summary(&self) -> LatencyStats {
        let q = |p: f64| self.hist.value_at_quantile(p);
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.hist, &mut bytes)
            .expect("serializing to memory does not fail");
        LatencyStats {
            count: self.hist.len(),
            min_ns: self.hist.min(),
            p50_ns: q(0.50),
            p95_ns: q(0.95),
            p99_ns: q(0.99),
            p999_ns: q(0.999),
            max_ns: self.hist.max(),
            mean_ns: self.hist.mean(),
            histogram: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Percentiles of a latency measurement, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Samples behind the figures.
    pub count: u64,
    /// Smallest sample.
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 95th percentile.
    pub p95_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest sample.
    pub max_ns: u64,
    /// Mean.
    pub mean_ns: f64,
    /// The full histogram: HdrHistogram V2 deflate encoding, base64.
    pub histogram: String,
}

impl LatencyStats {
    /// Decodes the serialized histogram.
    pub fn decode_histogram(&self) -> Result<Histogram<u64>, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.histogram)
            .map_err(|e| e.to_string())?;
        hdrhistogram::serialization::Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("{e:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        for us in 1..=1000u64 {
            r.record(Duration::from_micros(us));
        }
        let s = r.summary();
        assert_eq!(s.count, 1000);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() <= want as f64 * 0.002;
        assert!(close(s.p50_ns, 500_000), "p50 {}", s.p50_ns);
        assert!(close(s.p95_ns, 950_000), "p95 {}", s.p95_ns);
        assert!(close(s.p99_ns, 990_000), "p99 {}", s.p99_ns);
        assert!(close(s.p999_ns, 999_000), "p99.9 {}", s.p999_ns);
        assert!(close(s.max_ns, 1_000_000) && close(s.min_ns, 1_000));
        assert!((s.mean_ns - 500_500.0).abs() < 500.0);
    }

    #[test]
    fn histogram_survives_serialization() {
        let mut r = Recorder::new();
        r.record_ns(0);
        r.record_ns(u64::MAX);
        r.record(Duration::from_millis(3));
        let s = r.summary();
        let back = s.decode_histogram().unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.value_at_quantile(0.5), r.hist.value_at_quantile(0.5));
        assert!(s.min_ns >= 1, "zero is clamped, not dropped");
    }
}
