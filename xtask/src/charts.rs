//! Small SVG charts for the report: line charts with optional log axes and
//! grouped bar charts. Hand-written because the charts are simple and a
//! plotting crate would need system fonts for text layout.

use std::fmt::Write;

const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// How an axis maps values.
#[derive(Debug, Clone)]
pub enum Axis {
    /// Linear.
    Linear,
    /// Base-10 logarithmic.
    Log,
    /// Categories at x = 0, 1, 2, ... with these labels.
    Categories(Vec<String>),
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X mapping.
    pub x_axis: Axis,
    /// Y mapping (`Log` or `Linear`).
    pub y_axis: Axis,
    /// The lines.
    pub series: Vec<Series>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A short label for a value: 1.2k, 3.4M, 56.
pub fn si(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if scaled.abs() >= 100.0 || scaled.fract() == 0.0 {
        format!("{scaled:.0}{suffix}")
    } else if a < 1.0 {
        // Two significant digits for small values (0.012, not 0.0).
        let decimals = (-a.log10()).ceil() as usize + 1;
        format!("{v:.decimals$}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

struct Scale {
    log: bool,
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl Scale {
    fn new(log: bool, values: impl Iterator<Item = f64>, from: f64, to: f64) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil().max(lo.log10() + 1.0));
        } else {
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            hi *= 1.05;
        }
        Scale {
            log,
            lo,
            hi,
            from,
            to,
        }
    }

    fn map(&self, v: f64) -> f64 {
        let t = if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        self.from + t * (self.to - self.from)
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (self.lo.log10() as i32, self.hi.log10() as i32);
            (a..=b).map(|e| 10f64.powi(e)).collect()
        } else {
            let step = nice_step((self.hi - self.lo) / 5.0);
            let mut v = (self.lo / step).ceil() * step;
            let mut out = Vec::new();
            while v <= self.hi + step * 1e-9 {
                out.push(v);
                v += step;
            }
            out
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn frame(svg: &mut String, title: &str, x_label: &str, y_label: &str) {
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        svg,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 15.0,
        escape(x_label)
    );
    let _ = write!(
        svg,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        escape(y_label)
    );
}

fn y_grid(svg: &mut String, y: &Scale) {
    for t in y.ticks() {
        let py = y.map(t);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            si(t)
        );
    }
}

fn legend(svg: &mut String, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            W - RIGHT + 12.0,
            y - 10.0,
            COLORS[i % COLORS.len()],
            W - RIGHT + 30.0,
            y,
            escape(name)
        );
    }
}

impl LineChart {
    /// The chart as an SVG document.
    pub fn render(&self) -> String {
        let mut svg = String::new();
        frame(&mut svg, &self.title, &self.x_label, &self.y_label);
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1));
        let x = match &self.x_axis {
            Axis::Categories(c) => Scale {
                log: false,
                lo: -0.5,
                hi: c.len() as f64 - 0.5,
                from: LEFT,
                to: W - RIGHT,
            },
            Axis::Log => Scale::new(true, xs, LEFT, W - RIGHT),
            Axis::Linear => Scale::new(false, xs, LEFT, W - RIGHT),
        };
        let y = Scale::new(matches!(self.y_axis, Axis::Log), ys, H - BOTTOM, TOP);
        y_grid(&mut svg, &y);
        let x_ticks: Vec<(f64, String)> = match &self.x_axis {
            Axis::Categories(c) => c
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, l.clone()))
                .collect(),
            _ => x.ticks().into_iter().map(|t| (t, si(t))).collect(),
        };
        for (t, label) in x_ticks {
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x.map(t),
                H - BOTTOM + 18.0,
                escape(&label)
            );
        }
        let _ = write!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            W - RIGHT - LEFT,
            H - BOTTOM - TOP
        );
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points: Vec<String> = s
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1}", x.map(px), y.map(py)))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for &(px, py) in &s.points {
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    x.map(px),
                    y.map(py)
                );
            }
        }
        legend(
            &mut svg,
            &self
                .series
                .iter()
                .map(|s| s.name.clone())
                .collect::<Vec<_>>(),
        );
        svg.push_str("</svg>\n");
        svg
    }
}

/// A grouped bar chart: one group per category, one bar per series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// Y axis label.
    pub y_label: String,
    /// Group labels.
    pub categories: Vec<String>,
    /// (series name, one value per category).
    pub series: Vec<(String, Vec<f64>)>,
}

impl BarChart {
    /// The chart as an SVG document.
    pub fn render(&self) -> String {
        let mut svg = String::new();
        frame(&mut svg, &self.title, "", &self.y_label);
        let y = Scale::new(
            false,
            self.series.iter().flat_map(|s| s.1.iter().copied()),
            H - BOTTOM,
            TOP,
        );
        y_grid(&mut svg, &y);
        let groups = self.categories.len().max(1) as f64;
        let group_w = (W - RIGHT - LEFT) / groups;
        let bar_w = group_w * 0.8 / self.series.len().max(1) as f64;
        for (g, label) in self.categories.iter().enumerate() {
            let gx = LEFT + g as f64 * group_w;
            let _ = write!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                gx + group_w / 2.0,
                H - BOTTOM + 18.0,
                escape(label)
            );
            for (i, (_, values)) in self.series.iter().enumerate() {
                let v = values.get(g).copied().unwrap_or(0.0);
                let top = y.map(v);
                let _ = write!(
                    svg,
                    r#"<rect x="{:.1}" y="{top:.1}" width="{bar_w:.1}" height="{:.1}" fill="{}"/>"#,
                    gx + group_w * 0.1 + i as f64 * bar_w,
                    (H - BOTTOM - top).max(0.0),
                    COLORS[i % COLORS.len()]
                );
            }
        }
        let _ = write!(
            svg,
            r#"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="black"/>"#,
            W - RIGHT - LEFT,
            H - BOTTOM - TOP
        );
        legend(
            &mut svg,
            &self.series.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        );
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_renders_every_series_inside_the_plot() {
        let chart = LineChart {
            title: "a <b>".into(),
            x_label: "size".into(),
            y_label: "ns".into(),
            x_axis: Axis::Log,
            y_axis: Axis::Log,
            series: vec![
                Series {
                    name: "uds".into(),
                    points: vec![(64.0, 9000.0), (1048576.0, 5e5)],
                },
                Series {
                    name: "shm".into(),
                    points: vec![(64.0, 450.0), (1048576.0, 6e4)],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a &lt;b&gt;"), "titles are escaped");
        for cap in svg.split("cy=\"").skip(1) {
            let y: f64 = cap.split('"').next().unwrap().parse().unwrap();
            assert!(
                (TOP..=H - BOTTOM).contains(&y),
                "point at y={y} outside the plot"
            );
        }
    }

    #[test]
    fn bar_chart_has_a_bar_per_value_and_labels() {
        let chart = BarChart {
            title: "idle".into(),
            y_label: "%".into(),
            categories: vec!["pipe".into(), "shm".into()],
            series: vec![
                ("cpu".into(), vec![0.1, 0.2]),
                ("rss".into(), vec![3.0, 3.5]),
            ],
        };
        let svg = chart.render();
        // Two series bars per category, plus the background and frame.
        assert_eq!(svg.matches("<rect").count(), 4 + 2 + 2);
        assert!(svg.contains(">pipe<") && svg.contains(">shm<"));
    }

    #[test]
    fn si_labels() {
        assert_eq!(si(64.0), "64");
        assert_eq!(si(1536.0), "1.5k");
        assert_eq!(si(2_000_000.0), "2M");
        assert_eq!(si(0.5), "0.50");
        assert_eq!(si(0.012), "0.012");
    }
}
