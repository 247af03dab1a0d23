//! Analytics' first stage, per partition of the inventory topic: counts each
//! batch's decisions per one-minute window of their event time and writes
//! those shares to the merge topic keyed by window start, with each
//! partition's progress in event time sent to every merge partition (see
//! `domain::partials`). It decides nothing about closing windows: the merge
//! stage does, by the watermark over all partitions.
//!
//! An event whose window its own partition has already passed (the
//! partition's stream time is past the window's end plus the grace period)
//! is late, counted here and in no share, as it always was: per partition,
//! in log order, so lateness does not depend on how batches fall. The merge
//! stage closes a window only once every partition's stream time (as
//! reported after its shares) has passed it, so it sees no share for a
//! closed window unless a partition went idle and came back with old times.
//!
//! Its state, per input partition, is small: the stream time (the latest
//! event time seen), the late count and the count of dead-lettered events,
//! in `<group>-counts-changelog`. A partition without records for the idle
//! timeout (wall clock) is reported idle; a batch run that has read a
//! partition to its end reports it finished, after its last shares.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::domain::events::InventoryChecked;
use crate::domain::partials::Partial;
use crate::domain::watermark::Progress;
use crate::domain::windows::{window_start, WindowCounts, WINDOW_MS};
use crate::engine::{Journaled, OutRecord, Poison, Task};
use crate::metrics::Metrics;

/// Changelog key of a partition's count of dead-lettered events.
const MALFORMED_KEY: &[u8] = b"malformed";
/// Changelog key of a partition's stream time (ms since the epoch).
const STREAM_TIME_KEY: &[u8] = b"stream-time";
/// Changelog key of a partition's count of late events.
const LATE_KEY: &[u8] = b"late";

/// One input partition's state.
#[derive(Debug, Clone, Copy, Default)]
struct Counted {
    /// The latest event time seen.
    stream_time: Option<i64>,
    malformed: u64,
    late: u64,
    /// Reported idle since its last record.
    idle: bool,
}

pub struct CountsTask {
    pub changelog: String,
    pub merge_topic: String,
    /// Partitions of the merge topic: progress goes to each.
    pub merge_partitions: i32,
    pub idle_timeout: Duration,
    pub grace_ms: i64,
    /// Sleep this long per event: a deliberately slow consumer.
    pub throttle: Duration,
    /// Per input partition held.
    state: Journaled<i32, Counted>,
    /// The open batch's shares, per (input partition, window start).
    shares: BTreeMap<(i32, i64), WindowCounts>,
    /// Input partitions whose stream time the open batch moved.
    moved: BTreeSet<i32>,
    /// When each held partition last had a record (or was taken over),
    /// wall clock in ms: idleness is about time passing, not state.
    last_record: BTreeMap<i32, i64>,
    /// Late events of the open batch, for the metrics.
    batch_late: u64,
    metrics: Arc<Metrics>,
}

impl CountsTask {
    pub fn new(
        changelog: String,
        merge_topic: String,
        merge_partitions: i32,
        idle_timeout: Duration,
        grace_ms: i64,
        throttle: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            changelog,
            merge_topic,
            merge_partitions,
            idle_timeout,
            grace_ms,
            throttle,
            state: Journaled::default(),
            shares: BTreeMap::new(),
            moved: BTreeSet::new(),
            last_record: BTreeMap::new(),
            batch_late: 0,
            metrics,
        }
    }

    /// Dead-lettered events of the partitions held, as committed.
    pub fn malformed(&self) -> u64 {
        self.committed().map(|c| c.malformed).sum()
    }

    /// Late events of the partitions held, as committed.
    pub fn late(&self) -> u64 {
        self.committed().map(|c| c.late).sum()
    }

    /// The committed state of each partition held.
    fn committed(&self) -> impl Iterator<Item = &Counted> {
        self.last_record
            .keys()
            .filter_map(|partition| self.state.committed(partition))
    }

    /// `partition`'s progress, to every partition of the merge topic.
    fn progress(&self, partition: i32, progress: Progress, out: &mut Vec<OutRecord>) {
        let payload = Partial::Progress {
            source_partition: partition,
            progress,
        }
        .encode();
        out.extend(OutRecord::to_every(
            &self.merge_topic,
            self.merge_partitions,
            partition.to_string().as_bytes(),
            &payload,
            None,
        ));
    }

    /// The open batch's shares, then the progress of the partitions it
    /// moved (after their shares: a merge partition that sees a partition's
    /// progress has seen its shares up to there).
    fn write_shares(&mut self, out: &mut Vec<OutRecord>) {
        for ((partition, start), counts) in std::mem::take(&mut self.shares) {
            out.push(OutRecord {
                topic: self.merge_topic.clone(),
                partition: None,
                key: start.to_string().into_bytes(),
                payload: Partial::share(partition, start, counts).encode(),
                timestamp: None,
            });
        }
        for partition in std::mem::take(&mut self.moved) {
            let Some(stream_time) = self.state.get(&partition).and_then(|c| c.stream_time) else {
                continue;
            };
            self.progress(partition, Progress::At { stream_time }, out);
            out.push(OutRecord::state(
                &self.changelog,
                partition,
                STREAM_TIME_KEY,
                stream_time,
            ));
        }
    }
}

impl Task for CountsTask {
    fn assigned(&mut self, partition: i32) {
        self.state.insert_committed(partition, Counted::default());
        self.last_record
            .insert(partition, chrono::Utc::now().timestamp_millis());
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let Ok(number) = serde_json::from_slice::<i64>(value) else {
            tracing::warn!(partition, "ignoring an unreadable counts changelog record");
            return;
        };
        let Some(counted) = self.state.get_mut_committed(&partition) else {
            return;
        };
        match key {
            MALFORMED_KEY => counted.malformed = number.max(0) as u64,
            STREAM_TIME_KEY => counted.stream_time = Some(number),
            LATE_KEY => counted.late = number.max(0) as u64,
            _ => {}
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.state.remove_committed(&partition);
        self.last_record.remove(&partition);
    }

    fn process(
        &mut self,
        partition: i32,
        _timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let event = InventoryChecked::decode(payload).map_err(|e| Poison(e.to_string()))?;
        let time = event.event_time.timestamp_millis();
        let start = window_start(event.event_time);
        let counted = self
            .state
            .get_mut(&partition)
            .expect("only assigned partitions are processed");
        counted.idle = false;
        if counted
            .stream_time
            .is_some_and(|now| start + WINDOW_MS + self.grace_ms <= now)
        {
            counted.late += 1;
            let late = counted.late;
            self.batch_late += 1;
            tracing::debug!(partition, order_id = %event.order_id, "late event");
            out.push(OutRecord::state(&self.changelog, partition, LATE_KEY, late));
        } else {
            let share = self.shares.entry((partition, start)).or_default();
            share.orders += 1;
            share.failed += u64::from(event.failed());
            counted.stream_time = Some(counted.stream_time.map_or(time, |t| t.max(time)));
        }
        self.moved.insert(partition);
        self.last_record
            .insert(partition, chrono::Utc::now().timestamp_millis());
        if !self.throttle.is_zero() {
            std::thread::sleep(self.throttle);
        }
        Ok(())
    }

    fn dead_lettered(&mut self, partition: i32, _payload: &[u8], out: &mut Vec<OutRecord>) {
        let Some(counted) = self.state.get_mut(&partition) else {
            return;
        };
        counted.malformed += 1;
        let count = counted.malformed;
        out.push(OutRecord::state(
            &self.changelog,
            partition,
            MALFORMED_KEY,
            count,
        ));
    }

    fn before_commit(&mut self, out: &mut Vec<OutRecord>) {
        self.write_shares(out);
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<OutRecord>) {
        let timeout = self.idle_timeout.as_millis() as i64;
        let gone_idle: Vec<i32> = self
            .last_record
            .iter()
            .filter(|&(p, &last)| {
                now_ms - last >= timeout
                    && !self.moved.contains(p)
                    && !self.state.get(p).is_some_and(|c| c.idle)
            })
            .map(|(&p, _)| p)
            .collect();
        for partition in gone_idle {
            tracing::debug!(
                partition,
                "no records for the idle timeout: reporting it idle"
            );
            self.progress(partition, Progress::Idle, out);
            if let Some(counted) = self.state.get_mut(&partition) {
                counted.idle = true;
            }
        }
    }

    fn reached_end(&mut self, partitions: &[i32], out: &mut Vec<OutRecord>) {
        self.write_shares(out);
        for &partition in partitions {
            self.progress(partition, Progress::Finished, out);
        }
    }

    fn commit(&mut self) {
        self.state.commit();
        self.metrics
            .late_events
            .inc_by(std::mem::take(&mut self.batch_late));
    }

    fn rollback(&mut self) {
        self.batch_late = 0;
        self.shares.clear();
        self.moved.clear();
        self.state.rollback();
    }
}
