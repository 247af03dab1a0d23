//! What the dashboard shows, as plain data the page receives as JSON, and
//! the arithmetic behind it: rates from successive counts, and the window
//! totals rebuilt from OrderMetrics' records. No Kafka here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::events::WindowClosed;
use crate::domain::report::Report;
use crate::domain::windows::{WindowCounts, Windows};
use crate::ops::lag::status::Status;
use crate::ops::lag::GroupLag;

/// One sample of the pipeline, taken every `--interval-ms`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When it was taken, in ms since the epoch.
    pub time: i64,
    /// Orders published so far (the orders topic's log end) and how fast.
    pub orders: Throughput,
    /// The inventory and analytics groups.
    pub groups: Vec<GroupView>,
    /// The API's requests, when its instances are watched.
    pub api: Option<ApiView>,
    /// What could not be read this time (a topic missing, a broker down).
    pub problems: Vec<String>,
}

/// A count and its rate since the previous sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    pub topic: String,
    pub total: i64,
    /// Per second since the previous sample; None for the first.
    pub per_second: Option<f64>,
}

/// One consumer group as the page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupView {
    /// What the group does: "inventory", "analytics".
    pub role: String,
    pub group: String,
    pub status: Option<Status>,
    pub members: Option<usize>,
    pub total_lag: i64,
    pub lag_seconds: Option<f64>,
    /// The group's committed offsets, summed, and how fast they move: the
    /// service's throughput (transaction markers take offsets too, a few
    /// per commit).
    pub committed: Throughput,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub lag: Option<i64>,
    pub lag_seconds: Option<f64>,
    pub status: Option<Status>,
}

impl GroupView {
    /// The page's view of a group's lag; `before` is the previous sample's.
    pub fn new(role: &str, lag: &GroupLag, time: i64, before: Option<(i64, &GroupView)>) -> Self {
        let topic = lag
            .partitions
            .first()
            .map(|p| p.topic.clone())
            .unwrap_or_default();
        let committed: i64 = lag.partitions.iter().filter_map(|p| p.committed).sum();
        let previous = before.map(|(at, view)| (at, view.committed.total));
        Self {
            role: role.to_owned(),
            group: lag.group.clone(),
            status: lag.status,
            members: lag.members,
            total_lag: lag.total_lag,
            lag_seconds: lag.lag_seconds,
            committed: Throughput {
                topic,
                total: committed,
                per_second: rate(previous, (time, committed)),
            },
            partitions: lag
                .partitions
                .iter()
                .map(|p| PartitionView {
                    partition: p.partition,
                    lag: p.lag,
                    lag_seconds: p.lag_seconds,
                    status: p.status,
                })
                .collect(),
        }
    }
}

/// The API's requests, over the instances that answered the scrape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiView {
    pub instances: usize,
    pub requests: i64,
    pub per_second: Option<f64>,
    /// Answered 5xx.
    pub server_errors: i64,
    pub server_errors_per_second: Option<f64>,
}

impl ApiView {
    /// The counts now; `before` is the previous sample's (time, view).
    pub fn new(
        instances: usize,
        requests: i64,
        server_errors: i64,
        time: i64,
        before: Option<(i64, &ApiView)>,
    ) -> Self {
        Self {
            instances,
            requests,
            per_second: rate(before.map(|(at, b)| (at, b.requests)), (time, requests)),
            server_errors,
            server_errors_per_second: rate(
                before.map(|(at, b)| (at, b.server_errors)),
                (time, server_errors),
            ),
        }
    }
}

/// Per second, between a count at one time (ms) and another; None without
/// an earlier count, or when the count went back (a replay).
pub fn rate(before: Option<(i64, i64)>, now: (i64, i64)) -> Option<f64> {
    let (then, count_then) = before?;
    let (at, count) = now;
    let seconds = (at - then) as f64 / 1_000.0;
    (seconds > 0.0 && count >= count_then).then(|| (count - count_then) as f64 / seconds)
}

/// The closed windows published to OrderMetrics, as a table: one record a
/// window, its final counts over every partition; the last record of a
/// window wins, as a compacted topic's reader would have it (a replay
/// publishes its windows again).
#[derive(Debug, Clone, Default)]
pub struct WindowTable {
    by_start: BTreeMap<i64, WindowCounts>,
}

/// The windows part of the page: totals over every closed window, and the
/// most recent windows for the charts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowsView {
    pub windows: usize,
    pub total_orders: u64,
    pub failed_orders: u64,
    pub failure_rate: f64,
    pub orders_per_minute: f64,
    /// The latest windows, oldest first: start (ms since the epoch), orders,
    /// failed.
    pub recent: Vec<(i64, u64, u64)>,
}

impl WindowTable {
    pub fn apply(&mut self, event: &WindowClosed) {
        let counts = WindowCounts {
            orders: event.orders,
            failed: event.failed,
        };
        let start = event.window_start.timestamp_millis();
        self.by_start.insert(start, counts);
    }

    /// Totals as the analytics report computes them, and the last `recent`
    /// windows.
    pub fn view(&self, recent: usize) -> WindowsView {
        let mut windows = Windows::default();
        for (&start, &counts) in &self.by_start {
            windows.add(start, counts);
        }
        let report = Report::from_windows(&windows, 0);
        let skip = report.windows.len().saturating_sub(recent);
        WindowsView {
            windows: report.windows.len(),
            total_orders: report.total_orders,
            failed_orders: report.failed_orders,
            failure_rate: report.failure_rate,
            orders_per_minute: report.orders_per_minute,
            recent: report.windows[skip..]
                .iter()
                .map(|w| (w.start.timestamp_millis(), w.orders, w.failed))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::lag::PartitionLag;

    #[test]
    fn rates_need_two_counts_going_forward() {
        assert_eq!(rate(None, (1_000, 50)), None);
        assert_eq!(rate(Some((1_000, 50)), (3_000, 250)), Some(100.0));
        assert_eq!(rate(Some((1_000, 250)), (3_000, 50)), None);
        assert_eq!(rate(Some((1_000, 50)), (1_000, 50)), None);
    }

    #[test]
    fn the_last_record_of_a_window_wins() {
        let minute = |m: u32| format!("2026-01-01T00:{m:02}:00Z").parse().unwrap();
        let mut table = WindowTable::default();
        for event in [
            WindowClosed::new(minute(0), 30, 3),
            WindowClosed::new(minute(1), 30, 0),
            // A replay publishes minute 0 again.
            WindowClosed::new(minute(0), 30, 3),
        ] {
            table.apply(&event);
        }
        let view = table.view(1);
        assert_eq!(view.windows, 2);
        assert_eq!((view.total_orders, view.failed_orders), (60, 3));
        assert!((view.failure_rate - 0.05).abs() < 1e-12);
        assert!((view.orders_per_minute - 30.0).abs() < 1e-12);
        assert_eq!(view.recent, vec![(60_000 + 1_767_225_600_000, 30, 0)]);
    }

    #[test]
    fn a_group_view_sums_committed_offsets_into_a_rate() {
        let mut lag = GroupLag::new(
            "analytics",
            vec![
                PartitionLag::new("InventoryEvents", 0, Some(100), 150),
                PartitionLag::new("InventoryEvents", 1, None, 20),
            ],
        );
        lag.status = Some(Status::Warn);
        let before = GroupView::new("analytics", &lag, 0, None);
        assert_eq!(before.committed.total, 100);
        assert_eq!(before.committed.per_second, None);
        lag.partitions[0].committed = Some(300);
        let after = GroupView::new("analytics", &lag, 2_000, Some((0, &before)));
        assert_eq!(after.committed.per_second, Some(100.0));
        assert_eq!(after.committed.topic, "InventoryEvents");
        assert_eq!(after.status, Some(Status::Warn));
        let lags: Vec<_> = after.partitions.iter().map(|p| p.lag).collect();
        assert_eq!(lags, vec![Some(50), None]);
    }
}
