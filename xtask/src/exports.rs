//! Results in the formats CI trackers read: Bencher's Metric Format and
//! github-action-benchmark's `customSmallerIsBetter`. Both carry every
//! judged figure: the median over trials, with its interval.

use harness::figure::{Better, Unit};
use harness::{Figure, RunResults, Statistic};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// The measure name Bencher files a figure under.
fn measure(f: &Figure) -> &'static str {
    match (f.id.statistic, f.unit) {
        (Statistic::Ratio, _) => "ratio",
        (_, Unit::Ns) => "latency",
        (_, Unit::PerS | Unit::BytesPerS) => "throughput",
        (_, Unit::PercentCore) => "cpu-percent",
        (_, Unit::Kib) => "rss-kib",
        _ => "value",
    }
}

/// The figure's key without its statistic (Bencher's benchmark name).
fn bench_name(f: &Figure) -> String {
    let key = f.id.key();
    key.rsplit_once('/')
        .map_or(key.clone(), |(b, _)| b.to_owned())
}

/// Bencher Metric Format: `{benchmark: {measure: {value, lower_value,
/// upper_value}}}`, value the median, bounds its interval.
pub fn bencher_bmf(r: &RunResults) -> Value {
    let mut out = Map::new();
    for f in r.figures.iter().filter(|f| f.judged) {
        let slot = out
            .entry(bench_name(f))
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("objects only");
        slot.insert(
            measure(f).to_owned(),
            json!({"value": f.median, "lower_value": f.low, "upper_value": f.high}),
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
    /// The interval, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// Extra text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<String>,
}

/// `customSmallerIsBetter`: every judged figure, rates turned into time
/// per message so that smaller is better throughout.
pub fn smaller_is_better(r: &RunResults) -> Vec<CustomEntry> {
    r.figures
        .iter()
        .filter(|f| f.judged)
        .map(|f| {
            let trials = format!("median of {} trials", f.trials.len());
            match f.better {
                Better::Lower => CustomEntry {
                    name: f.id.key(),
                    unit: f.unit.symbol().into(),
                    value: f.median,
                    range: Some(format!("{:.4}..{:.4}", f.low, f.high)),
                    extra: Some(trials),
                },
                Better::Higher => {
                    let inverse = |v: f64| if v > 0.0 { 1.0 / v } else { f64::INFINITY };
                    let (unit, scale) = match f.unit {
                        Unit::PerS => ("ns per message", 1e9),
                        Unit::BytesPerS => ("ns per byte", 1e9),
                        _ => ("1 / value", 1.0),
                    };
                    CustomEntry {
                        name: format!("{} (inverse)", f.id.key()),
                        unit: unit.into(),
                        value: scale * inverse(f.median),
                        range: Some(format!(
                            "{:.4}..{:.4}",
                            scale * inverse(f.high),
                            scale * inverse(f.low)
                        )),
                        extra: Some(format!("{trials}: {:.4} {}", f.median, f.unit.symbol())),
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use harness::figure::FigureId;
    use harness::{Group, Regime, Subject, Transport, Variant};

    #[test]
    fn exports_carry_the_medians_and_intervals() {
        let id = FigureId {
            group: Group::Throughput,
            subject: Subject::Transport(Variant::of(Transport::Uds)),
            regime: Regime::OneWay,
            size: Some(64),
            agents: None,
            statistic: Statistic::Rate,
        };
        let r = RunResults {
            figures: vec![Figure::new(
                id,
                Unit::PerS,
                Better::Higher,
                vec![0.9e6, 1e6, 1.1e6],
            )],
            ..RunResults::default()
        };
        let bmf = bencher_bmf(&r);
        let entry = &bmf["throughput/uds/one-way/64B"]["throughput"];
        assert_eq!(entry["value"], 1e6);
        assert_eq!(entry["lower_value"], 0.9e6);
        let custom = smaller_is_better(&r);
        assert_eq!(custom.len(), 1);
        assert!((custom[0].value - 1000.0).abs() < 1e-9 && custom[0].unit == "ns per message");
    }
}
