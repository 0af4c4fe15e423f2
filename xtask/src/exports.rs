//! Results in the formats CI trackers read: Bencher's Metric Format and
//! github-action-benchmark's `customSmallerIsBetter`.

use harness::RunResults;
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Bencher Metric Format: `{benchmark: {measure: {value, lower_value?,
/// upper_value?}}}`.
pub fn bencher_bmf(r: &RunResults) -> Value {
    let mut out = Map::new();
    let mut put = |bench: String, measure: &str, value: Value| {
        out.entry(bench)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("objects only")
            .insert(measure.to_owned(), value);
    };
    for l in &r.latency {
        put(
            format!("latency/{}/{}B/{}", l.transport, l.size, l.regime),
            "latency",
            json!({"value": l.stats.p50_ns as f64, "lower_value": l.stats.min_ns as f64, "upper_value": l.stats.p99_ns as f64}),
        );
    }
    for t in &r.throughput {
        put(
            format!("throughput/{}/{}B", t.transport, t.size),
            "throughput",
            json!({"value": t.msgs_per_s}),
        );
    }
    for p in &r.patterns {
        put(
            format!("patterns/{}/{}/x{}", p.pattern, p.transport, p.agents),
            "throughput",
            json!({"value": p.msgs_per_s}),
        );
    }
    for l in &r.logging {
        put(
            format!("logging/{}/{}", l.transport, l.regime),
            "latency",
            json!({"value": l.latency.p50_ns as f64, "upper_value": l.latency.p99_ns as f64}),
        );
    }
    for i in &r.idle {
        put(
            format!("idle/{}/x{}", i.transport, i.agents),
            "cpu-percent",
            json!({"value": i.agents_cpu_percent}),
        );
        put(
            format!("idle/{}/x{}", i.transport, i.agents),
            "rss-kib",
            json!({"value": i.rss_kib_max as f64}),
        );
    }
    Value::Object(out)
}

/// One entry of github-action-benchmark's custom format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomEntry {
    /// Benchmark name.
    pub name: String,
    /// Unit.
    pub unit: String,
    /// Value (smaller is better).
    pub value: f64,
    /// Spread, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// Extra text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// `customSmallerIsBetter`: latencies, and throughput as time per message.
pub fn smaller_is_better(r: &RunResults) -> Vec<CustomEntry> {
    let mut out = Vec::new();
    for l in &r.latency {
        out.push(CustomEntry {
            name: format!("latency {} {} B {} p50", l.transport, l.size, l.regime),
            unit: "ns".into(),
            value: l.stats.p50_ns as f64,
            range: Some(format!("p99 {}", l.stats.p99_ns)),
            extra: Some(format!("{} samples", l.stats.count)),
        });
    }
    for t in &r.throughput {
        out.push(CustomEntry {
            name: format!("throughput {} {} B, time per message", t.transport, t.size),
            unit: "ns".into(),
            value: 1e9 / t.msgs_per_s,
            range: None,
            extra: Some(format!("{:.0} msg/s", t.msgs_per_s)),
        });
    }
    for l in &r.logging {
        out.push(CustomEntry {
            name: format!("event logging {} {} p50", l.transport, l.regime),
            unit: "ns".into(),
            value: l.latency.p50_ns as f64,
            range: Some(format!("p99 {}", l.latency.p99_ns)),
            extra: None,
        });
    }
    for i in &r.idle {
        out.push(CustomEntry {
            name: format!("idle CPU {} x{} agents", i.transport, i.agents),
            unit: "% of a core".into(),
            value: i.agents_cpu_percent,
            range: None,
            extra: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::schema::ThroughputResult;

    #[test]
    fn exports_carry_the_figures() {
        let r = RunResults {
            throughput: vec![ThroughputResult {
                transport: "uds".into(),
                size: 64,
                messages: 10,
                seconds: 1.0,
                msgs_per_s: 1e6,
                bytes_per_s: 64e6,
                cpu_ns_per_msg: 5.0,
                pinned: true,
            }],
            ..RunResults::default()
        };
        let bmf = bencher_bmf(&r);
        assert_eq!(bmf["throughput/uds/64B"]["throughput"]["value"], 1e6);
        let custom = smaller_is_better(&r);
        assert_eq!(custom.len(), 1);
        assert!((custom[0].value - 1000.0).abs() < 1e-9 && custom[0].unit == "ns");
        let json = serde_json::to_value(&custom).unwrap();
        assert!(json[0].get("range").is_none());
    }
}
