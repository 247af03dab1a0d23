//! The analytics report: totals, failure rate, orders per minute and the
//! per-window counts, as text for people and as JSON for programs.
//!
//! Both renderings are pure functions of the counts, so equal counts always
//! give byte-identical files (the replay check in the demo compares bytes).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::windows::{Windows, WINDOW_MS};

/// The report the analytics service writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub total_orders: u64,
    pub failed_orders: u64,
    /// failed_orders / total_orders; 0 when there were no orders.
    pub failure_rate: f64,
    /// total_orders over the minutes from the first window's start to the last
    /// window's end (event time); 0 when there were no orders.
    pub orders_per_minute: f64,
    /// Events on the inventory topic that were not valid InventoryChecked events.
    pub malformed_events: u64,
    /// Events that arrived after their window had closed (past the grace
    /// period): counted here, not in any window.
    pub late_events: u64,
    /// Windows that saw at least one order, in event-time order.
    pub windows: Vec<WindowRow>,
}

/// One window of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowRow {
    #[serde(with = "rfc3339_seconds")]
    pub start: DateTime<Utc>,
    pub orders: u64,
    pub failed: u64,
}

/// Output format of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

impl Report {
    pub fn from_windows(windows: &Windows, malformed_events: u64) -> Self {
        let rows: Vec<WindowRow> = windows
            .iter()
            .map(|(start, counts)| WindowRow {
                start: DateTime::from_timestamp_millis(start).expect("window start in range"),
                orders: counts.orders,
                failed: counts.failed,
            })
            .collect();
        let total_orders: u64 = rows.iter().map(|w| w.orders).sum();
        let failed_orders: u64 = rows.iter().map(|w| w.failed).sum();
        let minutes = match (rows.first(), rows.last()) {
            (Some(first), Some(last)) => {
                ((last.start - first.start).num_milliseconds() / WINDOW_MS + 1) as f64
            }
            _ => 0.0,
        };
        Report {
            total_orders,
            failed_orders,
            failure_rate: ratio(failed_orders as f64, total_orders as f64),
            orders_per_minute: ratio(total_orders as f64, minutes),
            malformed_events,
            late_events: windows.late(),
            windows: rows,
        }
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let mut json = serde_json::to_string_pretty(self).expect("a report serializes");
                json.push('\n');
                json
            }
            Format::Text => self.to_text(),
        }
    }

    fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "orderflow analytics report (one-minute windows by event time)"
        );
        if let (Some(first), Some(last)) = (self.windows.first(), self.windows.last()) {
            let _ = writeln!(
                out,
                "event time:        {} .. {}",
                rfc3339_seconds::format(&first.start),
                rfc3339_seconds::format(&(last.start + chrono::Duration::milliseconds(WINDOW_MS))),
            );
            let _ = writeln!(out, "minutes w/ orders: {}", self.windows.len());
        }
        let _ = writeln!(out, "total orders:      {}", self.total_orders);
        let _ = writeln!(out, "failed orders:     {}", self.failed_orders);
        let _ = writeln!(out, "failure rate:      {:.2}%", self.failure_rate * 100.0);
        let _ = writeln!(out, "orders per minute: {:.2}", self.orders_per_minute);
        let _ = writeln!(out, "malformed events:  {}", self.malformed_events);
        let _ = writeln!(out, "late events:       {}", self.late_events);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<22}{:>8}{:>8}",
            "window start (UTC)", "orders", "failed"
        );
        for row in &self.windows {
            let start = rfc3339_seconds::format(&row.start);
            let _ = writeln!(out, "{start:<22}{:>8}{:>8}", row.orders, row.failed);
        }
        out
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// Window starts are whole minutes: RFC 3339 UTC without fractional seconds.
mod rfc3339_seconds {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::Serializer;

    pub fn format(time: &DateTime<Utc>) -> String {
        time.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One partition's windows, with a minute of grace.
    fn windows(events: &[(&str, bool)]) -> Windows {
        let mut windows = Windows::default();
        for (time, failed) in events {
            windows.record(time.parse().unwrap(), *failed, 60_000);
        }
        windows
    }

    #[test]
    fn totals_rates_and_windows() {
        let report = Report::from_windows(
            &windows(&[
                ("2026-01-01T00:00:10Z", false),
                ("2026-01-01T00:00:20Z", true),
                ("2026-01-01T00:02:30Z", false),
                ("2026-01-01T00:02:31Z", false),
            ]),
            3,
        );
        assert_eq!((report.total_orders, report.failed_orders), (4, 1));
        assert_eq!(report.failure_rate, 0.25);
        // Three minutes from 00:00 to 00:03, one of them without orders.
        assert_eq!(report.orders_per_minute, 4.0 / 3.0);
        assert_eq!(report.windows.len(), 2);
        let json = report.render(Format::Json);
        assert!(
            json.contains(r#""start": "2026-01-01T00:02:00Z""#),
            "{json}"
        );
        assert!(json.contains(r#""malformed_events": 3"#), "{json}");
        let text = report.render(Format::Text);
        assert!(text.contains("failure rate:      25.00%"), "{text}");
        assert!(
            text.contains("2026-01-01T00:00:00Z         2       1"),
            "{text}"
        );
    }

    #[test]
    fn partitions_merged_in_any_order_give_identical_bytes() {
        let a = windows(&[
            ("2026-01-01T00:00:10Z", false),
            ("2026-01-01T00:05:20Z", true),
            ("2026-01-01T00:01:30Z", false),
        ]);
        let b = windows(&[("2026-01-01T00:01:10Z", true)]);
        let merged = |first: &Windows, second: &Windows| {
            let mut all = Windows::default();
            all.merge(first);
            all.merge(second);
            all
        };
        for format in [Format::Json, Format::Text] {
            assert_eq!(
                Report::from_windows(&merged(&a, &b), 0).render(format),
                Report::from_windows(&merged(&b, &a), 0).render(format)
            );
        }
        let report = Report::from_windows(&merged(&a, &b), 0);
        assert_eq!((report.total_orders, report.late_events), (3, 1));
        assert!(report.render(Format::Text).contains("late events:       1"));
    }

    #[test]
    fn empty_report_has_zero_rates() {
        let report = Report::from_windows(&Windows::default(), 0);
        assert_eq!((report.failure_rate, report.orders_per_minute), (0.0, 0.0));
        assert!(report.windows.is_empty());
    }
}
