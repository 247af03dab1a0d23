//! Analytics' second stage, per partition of the merge topic: adds up every
//! input partition's shares of a window (all shares of a window meet in one
//! merge partition, by key), follows each input partition's progress, and
//! closes a window once the watermark (the least stream time over the input
//! partitions, idle ones left out: `domain::watermark`) passes its end plus
//! the grace period. A closed window is published to OrderMetrics once, as
//! one WindowClosed for all partitions, in the transaction that closes it; a
//! share that comes after its window closed counts its orders as late.
//!
//! State per merge partition, in `<group>-merge-changelog`: each window's
//! counts (`w:<start>`), each input partition's progress (`src:<n>`), the
//! watermark that last closed windows (`through`) and the late count
//! (`late`). A window closed before a restore is known by `through`: it is
//! restored into the closed list, not published again.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::DateTime;

use crate::domain::events::WindowClosed;
use crate::domain::partials::Partial;
use crate::domain::watermark::{Source, Watermark};
use crate::domain::windows::{ClosedWindows, MergedWindows, WindowCounts, Windows};
use crate::engine::{Journaled, OutRecord, Poison, Task};
use crate::metrics::Metrics;

const WINDOW_PREFIX: &str = "w:";
const SOURCE_PREFIX: &str = "src:";
const THROUGH_KEY: &[u8] = b"through";
const LATE_KEY: &[u8] = b"late";

/// One merge partition's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Merged {
    windows: MergedWindows,
    watermark: Watermark,
}

/// A source's progress in the changelog.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct StoredSource {
    stream_time: Option<i64>,
    idle: bool,
    finished: bool,
}

pub struct MergeTask {
    pub changelog: String,
    pub metrics_topic: String,
    /// Partitions of the input (inventory) topic: the watermark's sources.
    pub sources: usize,
    pub grace_ms: i64,
    /// Per merge partition: journaled, so that a commit copies only the
    /// partitions the batch touched.
    state: Journaled<i32, Merged>,
    /// Closed windows per merge partition, for the report.
    closed: BTreeMap<i32, ClosedWindows>,
    /// What the open batch closed and counted late, for the metrics.
    batch_closed: u64,
    batch_late: u64,
    metrics: Arc<Metrics>,
}

impl MergeTask {
    pub fn new(
        changelog: String,
        metrics_topic: String,
        sources: usize,
        grace_ms: i64,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            changelog,
            metrics_topic,
            sources,
            grace_ms,
            state: Journaled::default(),
            closed: BTreeMap::new(),
            batch_closed: 0,
            batch_late: 0,
            metrics,
        }
    }

    /// Every window of the partitions held, closed and open, as committed,
    /// with the late count: what the report is made of.
    pub fn windows(&self) -> Windows {
        let mut all = Windows::default();
        let mut late = 0;
        for merged in self.closed.keys().filter_map(|p| self.state.committed(p)) {
            for (start, counts) in merged.windows.open() {
                all.add(start, counts);
            }
            late += merged.windows.late();
        }
        for closed in self.closed.values() {
            for &(start, counts) in closed.committed() {
                all.add(start, counts);
            }
        }
        all.set_late(late);
        all
    }

    /// Closes what the watermark at `now_ms` closes in `partition`, and
    /// publishes each closed window.
    fn close(&mut self, partition: i32, now_ms: i64, out: &mut Vec<OutRecord>) {
        let grace = self.grace_ms;
        // Looked at first, changed only when the watermark moved: a tick
        // that closes nothing touches no state.
        let Some(merged) = self.state.get(&partition) else {
            return;
        };
        let Some(watermark) = merged.watermark.current(now_ms) else {
            return;
        };
        if merged.windows.closed_through() >= Some(watermark) {
            return;
        }
        let merged = self.state.get_mut(&partition).expect("held");
        let closed = merged.windows.advance(watermark, grace);
        out.push(OutRecord::state(
            &self.changelog,
            partition,
            THROUGH_KEY,
            watermark,
        ));
        for &(start, counts) in &closed {
            let start = DateTime::from_timestamp_millis(start).expect("window start in range");
            let event = WindowClosed::new(start, counts.orders, counts.failed);
            out.push(OutRecord {
                topic: self.metrics_topic.clone(),
                partition: None,
                key: event.key().into_bytes(),
                payload: event.encode(),
                timestamp: None,
            });
        }
        self.batch_closed += closed.len() as u64;
        self.closed.entry(partition).or_default().extend(closed);
    }
}

impl Task for MergeTask {
    fn assigned(&mut self, partition: i32) {
        let fresh = Merged {
            windows: MergedWindows::default(),
            watermark: Watermark::new(self.sources),
        };
        self.state.insert_committed(partition, fresh);
        self.closed.insert(partition, ClosedWindows::default());
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let key = String::from_utf8_lossy(key);
        let Some(merged) = self.state.get_mut_committed(&partition) else {
            return;
        };
        // Every window goes to the open ones here, whatever `through` says
        // so far: a batch writes its changelog keys in key order, `through`
        // before `w:...`, so only the end of the restore knows which are
        // closed (`restored`).
        let restored = if let Some(start) = key.strip_prefix(WINDOW_PREFIX) {
            match (
                start.parse::<i64>(),
                serde_json::from_slice::<WindowCounts>(value),
            ) {
                (Ok(start), Ok(counts)) => {
                    merged.windows.restore_window(start, counts);
                    true
                }
                _ => false,
            }
        } else if let Some(source) = key.strip_prefix(SOURCE_PREFIX) {
            match (
                source.parse::<usize>(),
                serde_json::from_slice::<StoredSource>(value),
            ) {
                (Ok(source), Ok(stored)) => {
                    merged.watermark.restore(
                        source,
                        Source {
                            stream_time: stored.stream_time,
                            idle: stored.idle,
                            finished: stored.finished,
                        },
                    );
                    true
                }
                _ => false,
            }
        } else if key.as_bytes() == THROUGH_KEY {
            serde_json::from_slice::<i64>(value)
                .map(|through| merged.windows.restore_closed_through(through))
                .is_ok()
        } else if key.as_bytes() == LATE_KEY {
            serde_json::from_slice::<u64>(value)
                .map(|late| merged.windows.restore_late(late))
                .is_ok()
        } else {
            false
        };
        if !restored {
            tracing::warn!(partition, %key, "ignoring an unreadable merge changelog record");
        }
    }

    /// The windows the last `through` closed were published before: they
    /// go to the closed list, not out again.
    fn restored(&mut self, partition: i32) {
        let grace = self.grace_ms;
        let Some(merged) = self.state.get_mut_committed(&partition) else {
            return;
        };
        if let Some(through) = merged.windows.closed_through() {
            let closed = self.closed.entry(partition).or_default();
            closed.extend(merged.windows.advance(through, grace));
            closed.commit();
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.state.remove_committed(&partition);
        self.closed.remove(&partition);
    }

    fn process(
        &mut self,
        partition: i32,
        _timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let partial = Partial::decode(payload).map_err(|e| Poison(e.to_string()))?;
        let grace = self.grace_ms;
        let merged = self
            .state
            .get_mut(&partition)
            .expect("only assigned partitions are processed");
        match partial {
            Partial::Share {
                window_start,
                orders,
                failed,
                ..
            } => {
                if failed > orders {
                    return Err(Poison("more failed orders than orders in a share".into()));
                }
                let share = WindowCounts { orders, failed };
                if merged.windows.add(window_start, share, grace) {
                    let counts = merged.windows.get(window_start);
                    let key = format!("{WINDOW_PREFIX}{window_start}");
                    out.push(OutRecord::state(
                        &self.changelog,
                        partition,
                        key.as_bytes(),
                        counts,
                    ));
                } else {
                    let late = merged.windows.late();
                    self.batch_late += orders;
                    out.push(OutRecord::state(&self.changelog, partition, LATE_KEY, late));
                }
            }
            Partial::Progress {
                source_partition,
                progress,
            } => {
                let source = usize::try_from(source_partition)
                    .map_err(|_| Poison(format!("source partition {source_partition}")))?;
                merged.watermark.report(source, progress);
                let known = merged.watermark.sources()[source];
                let stored = StoredSource {
                    stream_time: known.stream_time,
                    idle: known.idle,
                    finished: known.finished,
                };
                let key = format!("{SOURCE_PREFIX}{source}");
                out.push(OutRecord::state(
                    &self.changelog,
                    partition,
                    key.as_bytes(),
                    stored,
                ));
                self.close(partition, chrono::Utc::now().timestamp_millis(), out);
            }
        }
        Ok(())
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<OutRecord>) {
        // Only a watermark that follows the wall clock (every source idle)
        // moves without records.
        let partitions: Vec<i32> = self.state.keys().copied().collect();
        for partition in partitions {
            self.close(partition, now_ms, out);
        }
    }

    fn may_stop(&self) -> bool {
        self.state.values().all(|m| m.watermark.all_finished())
    }

    fn commit(&mut self) {
        self.state.commit();
        self.closed.values_mut().for_each(ClosedWindows::commit);
        self.metrics
            .windows_closed
            .inc_by(std::mem::take(&mut self.batch_closed));
        self.metrics
            .late_events
            .inc_by(std::mem::take(&mut self.batch_late));
    }

    fn rollback(&mut self) {
        self.batch_closed = 0;
        self.batch_late = 0;
        self.state.rollback();
        self.closed.values_mut().for_each(ClosedWindows::rollback);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::watermark::Progress;
    use crate::metrics::Service;

    const MINUTE: i64 = 60_000;

    fn task() -> MergeTask {
        let mut task = MergeTask::new(
            "g-merge-changelog".into(),
            "OrderMetrics".into(),
            2,
            10_000,
            Arc::new(Metrics::new(Service::Analytics)),
        );
        task.assigned(0);
        task
    }

    fn feed(task: &mut MergeTask, partial: Partial) -> Vec<OutRecord> {
        let mut out = Vec::new();
        task.process(0, None, &partial.encode(), &mut out).unwrap();
        out
    }

    fn published(out: &[OutRecord]) -> Vec<WindowClosed> {
        out.iter()
            .filter(|r| r.topic == "OrderMetrics")
            .map(|r| WindowClosed::decode(&r.payload).unwrap())
            .collect()
    }

    fn at(source: i32, stream_time: i64) -> Partial {
        Partial::Progress {
            source_partition: source,
            progress: Progress::At { stream_time },
        }
    }

    #[test]
    fn a_window_is_published_once_for_all_partitions_when_the_slowest_passes_it() {
        let mut task = task();
        let counts = |orders, failed| WindowCounts { orders, failed };
        feed(&mut task, Partial::share(0, 0, counts(3, 1)));
        feed(&mut task, Partial::share(1, 0, counts(2, 1)));
        // Partition 0 is far ahead; partition 1 holds the window open.
        assert!(published(&feed(&mut task, at(0, 10 * MINUTE))).is_empty());
        assert!(published(&feed(&mut task, at(1, MINUTE + 9_999))).is_empty());
        let out = feed(&mut task, at(1, MINUTE + 10_000));
        let closed = published(&out);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].orders, closed[0].failed), (5, 2));
        // A share for the closed window is late, and nothing is published again.
        let out = feed(&mut task, Partial::share(1, 0, counts(4, 0)));
        assert!(published(&out).is_empty());
        task.commit();
        let windows = task.windows();
        assert_eq!(windows.late(), 4);
        assert_eq!(windows.iter().collect::<Vec<_>>(), [(0, counts(5, 2))]);
    }

    #[test]
    fn when_every_source_is_idle_the_wall_clock_closes_windows() {
        let mut task = task();
        feed(
            &mut task,
            Partial::share(
                0,
                0,
                WindowCounts {
                    orders: 1,
                    failed: 0,
                },
            ),
        );
        feed(&mut task, at(0, 1_000));
        for source in 0..2 {
            feed(
                &mut task,
                Partial::Progress {
                    source_partition: source,
                    progress: Progress::Idle,
                },
            );
        }
        // Processing the idle reports already used the wall clock; a tick
        // later closes nothing more.
        task.commit();
        assert_eq!(task.windows().iter().count(), 1);
        let mut out = Vec::new();
        task.tick(chrono::Utc::now().timestamp_millis(), &mut out);
        assert!(published(&out).is_empty());
        assert!(
            task.closed[&0].committed().len() == 1,
            "closed by the idle reports"
        );
    }

    #[test]
    fn a_restore_knows_closed_windows_and_does_not_publish_them_again() {
        let mut first = task();
        let counts = WindowCounts {
            orders: 2,
            failed: 0,
        };
        let mut changelog = Vec::new();
        changelog.extend(feed(&mut first, Partial::share(0, 0, counts)));
        changelog.extend(feed(&mut first, Partial::share(0, 5 * MINUTE, counts)));
        changelog.extend(feed(&mut first, at(0, 2 * MINUTE)));
        changelog.extend(feed(&mut first, at(1, 2 * MINUTE)));
        first.commit();
        // The engine writes a batch's changelog keys in key order, and the
        // last value of each: `through` comes before the windows.
        let mut latest: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for record in changelog.iter().filter(|r| r.topic == "g-merge-changelog") {
            latest.insert(record.key.clone(), record.payload.clone());
        }
        let mut second = task();
        for (key, value) in &latest {
            second.restore(0, key, value);
        }
        second.restored(0);
        assert_eq!(second.state.committed(&0), first.state.committed(&0));
        assert_eq!(second.closed[&0].committed(), first.closed[&0].committed());
        assert_eq!(
            second.windows().iter().collect::<Vec<_>>(),
            first.windows().iter().collect::<Vec<_>>()
        );
    }
}
