//! One-minute tumbling windows over event time: how many orders were decided,
//! and how many of them were rejected, per minute of the orders' own clock.
//!
//! Counts are sums, so the result does not depend on the order in which
//! partitions deliver their events: that is what makes two runs over the same
//! events produce the same report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Window length: one minute, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// Counts for one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowCounts {
    pub orders: u64,
    pub failed: u64,
}

/// All windows seen so far, keyed by their start (ms since the Unix epoch).
#[derive(Debug, Default, Clone)]
pub struct Windows {
    by_start: BTreeMap<i64, WindowCounts>,
}

impl Windows {
    /// Counts one decided order into the window its event time falls in.
    pub fn record(&mut self, event_time: DateTime<Utc>, failed: bool) {
        let counts = self.by_start.entry(window_start(event_time)).or_default();
        counts.orders += 1;
        counts.failed += u64::from(failed);
    }

    /// Counts of the window starting at `start` (ms since the epoch).
    pub fn get(&self, start: i64) -> WindowCounts {
        self.by_start.get(&start).copied().unwrap_or_default()
    }

    /// Sets a window's counts, as restored from a changelog.
    pub fn set(&mut self, start: i64, counts: WindowCounts) {
        self.by_start.insert(start, counts);
    }

    /// Adds every window of `other` into these (windows of different partitions).
    pub fn merge(&mut self, other: &Windows) {
        for (&start, counts) in &other.by_start {
            let mine = self.by_start.entry(start).or_default();
            mine.orders += counts.orders;
            mine.failed += counts.failed;
        }
    }

    /// Windows in event-time order, as (start in ms since the epoch, counts).
    pub fn iter(&self) -> impl Iterator<Item = (i64, WindowCounts)> + '_ {
        self.by_start
            .iter()
            .map(|(&start, &counts)| (start, counts))
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

/// Start of the window holding `time`: floored to the minute, also before 1970.
pub fn window_start(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis().div_euclid(WINDOW_MS) * WINDOW_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn counts_land_in_the_minute_of_their_event_time() {
        let mut windows = Windows::default();
        windows.record(at("2026-01-01T00:00:59.999Z"), false);
        windows.record(at("2026-01-01T00:00:00Z"), true);
        windows.record(at("2026-01-01T00:01:00Z"), false);
        let all: Vec<_> = windows.iter().collect();
        let minute = at("2026-01-01T00:00:00Z").timestamp_millis();
        assert_eq!(
            all,
            vec![
                (
                    minute,
                    WindowCounts {
                        orders: 2,
                        failed: 1
                    }
                ),
                (
                    minute + WINDOW_MS,
                    WindowCounts {
                        orders: 1,
                        failed: 0
                    }
                ),
            ]
        );
    }

    #[test]
    fn merging_adds_window_by_window() {
        let mut a = Windows::default();
        a.record(at("2026-01-01T00:00:01Z"), true);
        let mut b = Windows::default();
        b.record(at("2026-01-01T00:00:02Z"), false);
        b.record(at("2026-01-01T00:05:00Z"), false);
        a.merge(&b);
        let minute = at("2026-01-01T00:00:00Z").timestamp_millis();
        assert_eq!(
            a.get(minute),
            WindowCounts {
                orders: 2,
                failed: 1
            }
        );
        assert_eq!(a.iter().count(), 2);
    }

    #[test]
    fn floors_times_before_the_epoch() {
        assert_eq!(window_start(at("1969-12-31T23:59:59Z")), -WINDOW_MS);
    }
}
