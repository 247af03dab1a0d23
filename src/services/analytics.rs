//! The analytics service: consumes `InventoryChecked` events and counts them
//! into one-minute windows of the orders' event time; renders the report. It
//! runs on the stream engine (`crate::engine`), exactly-once by default.
//!
//! Window counts are kept per input partition and every change is written to
//! the compacted changelog `<group>-windows-changelog` in the same transaction
//! as the consumed offsets. A restart (even after SIGKILL) restores the counts
//! and goes on from the committed offsets, so its final report is
//! byte-identical to an uninterrupted run's. A replay (`orderflow replay`)
//! moves the offsets; the engine then starts the counts afresh from there.
//!
//! Each partition's windows close as its stream time (latest event time)
//! passes their end plus the grace period (`--grace-ms`). A closed window is
//! published to OrderMetrics as a `WindowClosed` event, in the same
//! transaction, so downstream users see each window once per partition; an
//! event for a window already closed is counted in the report's
//! `late_events`. Stream time and the late count are in the changelog too.
//! A closed window leaves the working state (which every commit copies) for
//! an append-only list of final counts, 24 bytes a window, kept for the
//! report: memory follows the minutes of event time covered, not the events.
//!
//! An event that is not a valid `InventoryChecked` is dead-lettered to
//! `<inventory-topic>.DLQ` and counted in the report's `malformed_events`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::{InventoryChecked, WindowClosed};
use crate::domain::report::Report;
use crate::domain::windows::{ClosedWindows, Recorded, WindowCounts, Windows};
use crate::engine::{
    self, EngineOptions, EngineStats, Guarantee, OutRecord, Poison, Task, Versioned,
};
use crate::error::Result;
use crate::kafka::admin::{Admin, TopicSpec};
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    pub inventory_topic: String,
    /// Where closed windows are published.
    pub metrics_topic: String,
    pub group: String,
    pub guarantee: Guarantee,
    /// Distinguishes instances of one group (their transactional ids).
    pub instance_id: String,
    /// Stop once every assigned partition has been read to its end.
    pub exit_at_end: bool,
    /// Sleep this long per event: a deliberately slow consumer, to build lag.
    pub throttle: Duration,
    /// How long a batch (transaction) collects events before it commits.
    pub commit_interval: Duration,
    /// How long past its end (in stream time) a window still takes events.
    pub grace: Duration,
    /// Where the engine, closed windows and late events are counted.
    pub metrics: Arc<Metrics>,
}

/// The grace period `orderflow analytics` uses unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// The compacted topic holding the window counts of `group`.
pub fn windows_changelog(group: &str) -> String {
    format!("{group}-windows-changelog")
}

/// Changelog key of a partition's count of dead-lettered events.
const MALFORMED_KEY: &[u8] = b"malformed";
/// Changelog key of a partition's stream time (ms since the epoch).
const STREAM_TIME_KEY: &[u8] = b"stream-time";
/// Changelog key of a partition's count of late events.
const LATE_KEY: &[u8] = b"late";

/// What a run ends with: the report of the committed counts of its
/// partitions, and what the engine did.
#[derive(Debug, Clone)]
pub struct AnalyticsOutcome {
    pub report: Report,
    pub stats: EngineStats,
}

/// Runs until `shutdown` fires or, with `exit_at_end`, until caught up.
pub async fn run(
    settings: &KafkaSettings,
    options: &AnalyticsOptions,
    shutdown: &CancellationToken,
) -> Result<AnalyticsOutcome> {
    let admin = Admin::connect(settings)?;
    let partitions = admin
        .partitions_once_visible(&options.inventory_topic)
        .await?
        .len() as i32;
    let changelog = windows_changelog(&options.group);
    admin
        .ensure_internal_topics(&options.inventory_topic, Some(&changelog))
        .await?;
    // OrderMetrics is normally made by `orderflow topics`; made here like the
    // input topic when it is missing, so that analytics alone is enough.
    let replication = admin.replication_factor(&options.inventory_topic)?;
    admin
        .create_topics(&[TopicSpec::new(
            options.metrics_topic.clone(),
            partitions,
            replication,
        )])
        .await?;

    let engine_options = EngineOptions {
        group: options.group.clone(),
        input_topic: options.inventory_topic.clone(),
        output_topics: vec![options.metrics_topic.clone()],
        changelog_topic: Some(changelog.clone()),
        guarantee: options.guarantee,
        transactional_id: format!("orderflow-{}-{}", options.group, options.instance_id),
        commit_interval: options.commit_interval,
        exit_at_end: options.exit_at_end,
        metrics: Arc::clone(&options.metrics),
    };
    let mut task = AnalyticsTask {
        changelog,
        metrics_topic: options.metrics_topic.clone(),
        grace_ms: i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX / 2),
        throttle: options.throttle,
        state: Versioned::default(),
        closed: BTreeMap::new(),
        batch: BatchCounts::default(),
        metrics: Arc::clone(&options.metrics),
    };
    let (settings, stop) = (settings.clone(), shutdown.clone());
    crate::threads::run("analytics engine", move || {
        let stats = engine::run(&settings, &engine_options, &mut task, &stop)?;
        Ok(AnalyticsOutcome {
            report: task.report(),
            stats,
        })
    })
    .await
}

/// Open windows per assigned partition of the inventory topic.
#[derive(Debug, Clone, Default)]
struct AnalyticsState {
    windows: BTreeMap<i32, Windows>,
    malformed: BTreeMap<i32, u64>,
}

struct AnalyticsTask {
    changelog: String,
    metrics_topic: String,
    grace_ms: i64,
    throttle: Duration,
    state: Versioned<AnalyticsState>,
    /// Closed windows per assigned partition.
    closed: BTreeMap<i32, ClosedWindows>,
    /// What the open batch published and counted late, for the metrics.
    batch: BatchCounts,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Clone, Copy, Default)]
struct BatchCounts {
    windows_closed: u64,
    late_events: u64,
}

impl AnalyticsTask {
    /// The report over every partition this instance holds, as committed.
    fn report(&self) -> Report {
        let state = self.state.committed();
        let mut all = Windows::default();
        for windows in state.windows.values() {
            all.merge(windows);
        }
        for closed in self.closed.values() {
            for &(start, counts) in closed.committed() {
                all.add(start, counts);
            }
        }
        Report::from_windows(&all, state.malformed.values().sum())
    }

    fn changelog_record(
        &self,
        partition: i32,
        key: &[u8],
        value: impl serde::Serialize,
    ) -> OutRecord {
        OutRecord {
            topic: self.changelog.clone(),
            partition: Some(partition),
            key: key.to_vec(),
            payload: serde_json::to_vec(&value).expect("state serializes"),
        }
    }

    /// The OrderMetrics record of a window that closed in `partition`.
    fn window_closed(&self, partition: i32, start: i64, counts: WindowCounts) -> OutRecord {
        let start = chrono::DateTime::from_timestamp_millis(start).expect("window start in range");
        let event = WindowClosed::new(start, partition, counts.orders, counts.failed);
        OutRecord {
            topic: self.metrics_topic.clone(),
            partition: None,
            key: event.key().into_bytes(),
            payload: event.encode(),
        }
    }
}

impl Task for AnalyticsTask {
    fn assigned(&mut self, partition: i32) {
        self.state.both_mut(|s| {
            s.windows.insert(partition, Windows::default());
            s.malformed.insert(partition, 0);
        });
        self.closed.insert(partition, ClosedWindows::default());
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let number = serde_json::from_slice::<i64>(value).ok();
        let restored = match key {
            MALFORMED_KEY => number.map(|n| {
                self.state.both_mut(|s| {
                    s.malformed.insert(partition, n as u64);
                })
            }),
            STREAM_TIME_KEY => number.map(|time| {
                self.state.both_mut(|s| {
                    s.windows
                        .entry(partition)
                        .or_default()
                        .set_stream_time(time)
                })
            }),
            LATE_KEY => number.map(|late| {
                self.state.both_mut(|s| {
                    s.windows
                        .entry(partition)
                        .or_default()
                        .set_late(late as u64)
                })
            }),
            window => {
                let start = std::str::from_utf8(window)
                    .ok()
                    .and_then(|k| k.parse::<i64>().ok());
                let counts = serde_json::from_slice::<WindowCounts>(value).ok();
                start.zip(counts).map(|(start, counts)| {
                    self.state
                        .both_mut(|s| s.windows.entry(partition).or_default().set(start, counts))
                })
            }
        };
        if restored.is_none() {
            tracing::warn!(partition, "ignoring an unreadable windows changelog record");
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.state.both_mut(|s| {
            s.windows.remove(&partition);
            s.malformed.remove(&partition);
        });
        self.closed.remove(&partition);
    }

    fn process(
        &mut self,
        partition: i32,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let event = InventoryChecked::decode(payload).map_err(|e| Poison(e.to_string()))?;
        let windows = self
            .state
            .working_mut()
            .windows
            .entry(partition)
            .or_default();
        match windows.record(event.event_time, event.failed(), self.grace_ms) {
            Recorded::Late => {
                tracing::debug!(partition, order_id = %event.order_id, "late event");
                let late = windows.late();
                out.push(self.changelog_record(partition, LATE_KEY, late));
                self.batch.late_events += 1;
            }
            Recorded::Counted { window, closed } => {
                let counts = windows.get(window);
                let stream_time = windows.stream_time().unwrap_or(window);
                // Those closed now, and after a restore the windows that had
                // closed before it, leave the working state.
                let evicted = windows.evict_closed(self.grace_ms);
                self.closed.entry(partition).or_default().extend(evicted);
                let key = window.to_string();
                out.push(self.changelog_record(partition, key.as_bytes(), counts));
                out.push(self.changelog_record(partition, STREAM_TIME_KEY, stream_time));
                self.batch.windows_closed += closed.len() as u64;
                for (start, counts) in closed {
                    out.push(self.window_closed(partition, start, counts));
                }
            }
        }
        if !self.throttle.is_zero() {
            std::thread::sleep(self.throttle);
        }
        Ok(())
    }

    fn dead_lettered(&mut self, partition: i32, out: &mut Vec<OutRecord>) {
        let count = self
            .state
            .working_mut()
            .malformed
            .entry(partition)
            .or_default();
        *count += 1;
        let count = *count;
        out.push(self.changelog_record(partition, MALFORMED_KEY, count));
    }

    fn commit(&mut self) {
        self.state.commit();
        self.closed.values_mut().for_each(ClosedWindows::commit);
        let batch = std::mem::take(&mut self.batch);
        self.metrics.windows_closed.inc_by(batch.windows_closed);
        self.metrics.late_events.inc_by(batch.late_events);
    }

    fn rollback(&mut self) {
        self.batch = BatchCounts::default();
        self.state.rollback();
        self.closed.values_mut().for_each(ClosedWindows::rollback);
    }
}
