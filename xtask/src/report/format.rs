//! How numbers are written: durations, rates, sizes, figures with their
//! intervals, table cells and Markdown tables.

use std::fmt::Write;

use harness::figure::Unit;
use harness::{Figure, Subject, Variant};

/// A duration in nanoseconds, readably.
pub fn ns(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} s", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} ms", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} µs", v / 1e3)
    } else {
        format!("{v:.0} ns")
    }
}

/// A count per second, readably.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Bytes, readably (binary units).
pub fn bytes(v: f64) -> String {
    if v >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", v / (1u64 << 30) as f64)
    } else if v >= (1 << 20) as f64 {
        format!("{:.1} MiB", v / (1 << 20) as f64)
    } else if v >= 1024.0 {
        format!("{:.0} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

/// A value in a figure's unit, readably.
pub fn in_unit(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ns => ns(v),
        Unit::PerS => format!("{}/s", rate(v)),
        Unit::BytesPerS => format!("{}/s", bytes(v)),
        Unit::PercentCore => format!("{v:.3} %"),
        Unit::Kib => bytes(v * 1024.0),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Times => format!("{v:.2}x"),
        Unit::Count => format!("{v:.0}"),
    }
}

/// A figure's median with its interval: `441 ns [430 ns–470 ns]`.
pub fn with_interval(f: &Figure) -> String {
    format!(
        "{} [{}–{}]",
        in_unit(f.median, f.unit),
        in_unit(f.low, f.unit),
        in_unit(f.high, f.unit)
    )
}

pub(crate) fn value(v: f64, unit: &str) -> String {
    match unit {
        "msg/s" => format!("{}msg/s", rate(v)),
        "x" => format!("{v:.2}x"),
        _ if v != 0.0 && v.abs() < 0.01 => format!("{v:.4} {unit}"),
        _ => format!("{v:.2} {unit}"),
    }
}

pub(crate) fn margin(m: f64) -> String {
    if m.is_infinite() || m > 1e6 {
        "∞".into()
    } else if m >= 10.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}

pub(crate) fn cell(f: Option<&Figure>) -> String {
    f.map_or("-".into(), |f| in_unit(f.median, f.unit))
}

pub(crate) fn cell_interval(f: Option<&Figure>) -> String {
    f.map_or("-".into(), with_interval)
}

pub(crate) fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or(String::new(), |f| f.to_uppercase().chain(c).collect())
}

/// `n` of `of`, as a percentage.
pub(crate) fn share(n: usize, of: usize) -> String {
    format!("{:.1} %", 100.0 * n as f64 / of.max(1) as f64)
}

pub(crate) fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

pub(crate) fn is_default(subject: &Subject) -> bool {
    matches!(subject, Subject::Transport(v) if *v == Variant::of(v.transport))
}
