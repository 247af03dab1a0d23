//! The analytics service: consumes `InventoryChecked` events and counts them
//! into one-minute windows of the orders' event time; renders the report. It
//! runs on the stream engine (`kafka::engine`), exactly-once by default.
//!
//! Window counts are kept per input partition and every change is written to
//! the compacted changelog `<group>-windows-changelog` in the same transaction
//! as the consumed offsets. A restart (even after SIGKILL) restores the counts
//! and goes on from the committed offsets, so its final report is
//! byte-identical to an uninterrupted run's. A replay (`orderflow replay`)
//! moves the offsets; the engine then starts the counts afresh from there.
//!
//! An event that is not a valid `InventoryChecked` is dead-lettered to
//! `<inventory-topic>.DLQ` and counted in the report's `malformed_events`.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::InventoryChecked;
use crate::domain::report::Report;
use crate::domain::windows::{window_start, WindowCounts, Windows};
use crate::error::{Error, Result};
use crate::kafka::admin::Admin;
use crate::kafka::engine::{self, EngineOptions, Guarantee};
use crate::kafka::task::{OutRecord, Poison, Task, Versioned};

#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    pub inventory_topic: String,
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
}

/// The compacted topic holding the window counts of `group`.
pub fn windows_changelog(group: &str) -> String {
    format!("{group}-windows-changelog")
}

/// Changelog key of a partition's count of dead-lettered events.
const MALFORMED_KEY: &[u8] = b"malformed";

/// Runs until `shutdown` fires or, with `exit_at_end`, until caught up; then
/// returns the report of the committed counts of its partitions.
pub async fn run(
    settings: &KafkaSettings,
    options: &AnalyticsOptions,
    shutdown: &CancellationToken,
) -> Result<Report> {
    let admin = Admin::connect(settings)?;
    admin.partitions(&options.inventory_topic)?;
    let changelog = windows_changelog(&options.group);
    admin
        .ensure_internal_topics(&options.inventory_topic, Some(&changelog))
        .await?;

    let engine_options = EngineOptions {
        group: options.group.clone(),
        input_topic: options.inventory_topic.clone(),
        changelog_topic: Some(changelog.clone()),
        guarantee: options.guarantee,
        transactional_id: format!("orderflow-{}-{}", options.group, options.instance_id),
        commit_interval: options.commit_interval,
        exit_at_end: options.exit_at_end,
    };
    let mut task = AnalyticsTask {
        changelog,
        throttle: options.throttle,
        state: Versioned::default(),
    };
    let (settings, stop) = (settings.clone(), shutdown.clone());
    tokio::task::spawn_blocking(move || {
        engine::run(&settings, &engine_options, &mut task, &stop)?;
        Ok(task.report())
    })
    .await
    .map_err(|e| Error::Config(format!("the analytics engine failed: {e}")))?
}

/// Window counts per assigned partition of the inventory topic.
#[derive(Debug, Clone, Default)]
struct AnalyticsState {
    windows: BTreeMap<i32, Windows>,
    malformed: BTreeMap<i32, u64>,
}

struct AnalyticsTask {
    changelog: String,
    throttle: Duration,
    state: Versioned<AnalyticsState>,
}

impl AnalyticsTask {
    /// The report over every partition this instance holds, as committed.
    fn report(&self) -> Report {
        let state = self.state.committed();
        let mut all = Windows::default();
        for windows in state.windows.values() {
            all.merge(windows);
        }
        Report::from_windows(&all, state.malformed.values().sum())
    }

    fn changelog_record(&self, partition: i32, key: Vec<u8>, payload: Vec<u8>) -> OutRecord {
        OutRecord {
            topic: self.changelog.clone(),
            partition: Some(partition),
            key,
            payload,
        }
    }
}

impl Task for AnalyticsTask {
    fn assigned(&mut self, partition: i32) {
        self.state.both_mut(|s| {
            s.windows.insert(partition, Windows::default());
            s.malformed.insert(partition, 0);
        });
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        if key == MALFORMED_KEY {
            let count = serde_json::from_slice::<u64>(value).unwrap_or_default();
            self.state.both_mut(|s| {
                s.malformed.insert(partition, count);
            });
            return;
        }
        let start = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.parse::<i64>().ok());
        let counts = serde_json::from_slice::<WindowCounts>(value).ok();
        let (Some(start), Some(counts)) = (start, counts) else {
            tracing::warn!(partition, "ignoring an unreadable windows changelog record");
            return;
        };
        self.state.both_mut(|s| {
            s.windows.entry(partition).or_default().set(start, counts);
        });
    }

    fn revoked(&mut self, partition: i32) {
        self.state.both_mut(|s| {
            s.windows.remove(&partition);
            s.malformed.remove(&partition);
        });
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
        windows.record(event.event_time, event.failed());
        let start = window_start(event.event_time);
        let counts = windows.get(start);
        let payload = serde_json::to_vec(&counts).expect("counts serialize");
        out.push(self.changelog_record(partition, start.to_string().into_bytes(), payload));
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
        let payload = count.to_string().into_bytes();
        out.push(self.changelog_record(partition, MALFORMED_KEY.to_vec(), payload));
    }

    fn commit(&mut self) {
        self.state.commit();
    }

    fn rollback(&mut self) {
        self.state.rollback();
    }
}
