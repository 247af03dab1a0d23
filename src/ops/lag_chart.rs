//! The demo's picture of lag over time (`lag.svg`, beside `lag.csv`): the
//! total lag and each partition's as lines over the seconds of the run, the
//! picture the original project showed as a screenshot. Plain SVG text,
//! readable by any browser, no Kafka here.

use std::fmt::Write as _;

/// One sample of a group's lag.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSample {
    pub elapsed_s: f64,
    /// Lag per partition, in the order of the chart's partitions.
    pub partitions: Vec<i64>,
    pub total: i64,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Line colours of the partitions, in turn.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
];

/// The chart as an SVG document.
pub fn render(title: &str, partitions: &[i32], samples: &[LagSample]) -> String {
    let max_x = samples.iter().map(|s| s.elapsed_s).fold(1.0_f64, f64::max);
    let max_y = nice_ceiling(samples.iter().map(|s| s.total).max().unwrap_or(0).max(1));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: f64| LEFT + t / max_x * plot_w;
    let y = |lag: i64| TOP + plot_h - lag as f64 / max_y as f64 * plot_h;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    // Grid and axis labels: five steps up, five across.
    for step in 0..=5 {
        let lag = max_y * step / 5;
        let gy = y(lag);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{gy:.1}" x2="{:.1}" y2="{gy:.1}" stroke="#dddddd"/>"##,
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{lag}</text>"#,
            LEFT - 8.0,
            gy + 4.0
        );
        let t = max_x * step as f64 / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            TOP + plot_h + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" text-anchor="middle" transform="rotate(-90 16 {:.1})">lag (messages)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );

    let mut line = |points: Vec<(f64, i64)>, colour: &str, width: f64, label: &str, row: usize| {
        let path: Vec<String> = points
            .iter()
            .map(|&(t, lag)| format!("{:.1},{:.1}", x(t), y(lag)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 10.0 + row as f64 * 18.0;
        let lx = WIDTH - RIGHT + 16.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="{width}"/><text x="{}" y="{}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(label)
        );
    };
    for (i, partition) in partitions.iter().enumerate() {
        let points = samples
            .iter()
            .map(|s| (s.elapsed_s, s.partitions.get(i).copied().unwrap_or(0)))
            .collect();
        let colour = COLOURS[i % COLOURS.len()];
        line(
            points,
            colour,
            1.5,
            &format!("partition {partition}"),
            i + 1,
        );
    }
    let total = samples.iter().map(|s| (s.elapsed_s, s.total)).collect();
    line(total, "#222222", 2.5, "total", 0);
    svg.push_str("</svg>\n");
    svg
}

/// The smallest 1, 2 or 5 times a power of ten at or above `n`.
fn nice_ceiling(n: i64) -> i64 {
    let mut power = 1;
    loop {
        for step in [1, 2, 5] {
            if step * power >= n {
                return step * power;
            }
        }
        power *= 10;
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(elapsed_s: f64, partitions: Vec<i64>) -> LagSample {
        let total = partitions.iter().sum();
        LagSample {
            elapsed_s,
            partitions,
            total,
        }
    }

    #[test]
    fn lines_span_the_plot() {
        let samples = [
            sample(0.0, vec![0, 0]),
            sample(5.0, vec![600, 400]),
            sample(10.0, vec![0, 0]),
        ];
        let svg = render("lag of <analytics>", &[0, 1], &samples);
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("lag of &lt;analytics&gt;"));
        // The total peaks at 1000, the top of a 0..1000 axis, mid-run; it
        // starts and ends on the time axis at either edge.
        let total = svg
            .lines()
            .find(|l| l.contains(r##"stroke="#222222" stroke-width="2.5" points"##))
            .unwrap();
        assert!(
            total.contains(r#"points="72.0,330.0 341.0,40.0 610.0,330.0""#),
            "{total}"
        );
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">partition 1</text>"));
    }

    #[test]
    fn axes_end_on_round_numbers() {
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(4090), 5000);
        assert_eq!(nice_ceiling(10_001), 20_000);
    }
}
