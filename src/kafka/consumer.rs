//! The group consumer every service reads with, the offsets it commits, and
//! how a batch run knows it has caught up.
//!
//! Offsets are never committed automatically: a service records the next
//! offset of a partition in an [`OffsetBook`] only once the work for every
//! earlier message is finished (for inventory: its output acknowledged), and
//! commits the book periodically and on exit. A crash therefore re-reads some
//! messages but never skips one: at-least-once.

use std::collections::{BTreeMap, BTreeSet};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::error::{KafkaResultExt, Result};
use crate::kafka::context::Logged;

pub type GroupConsumer = StreamConsumer<Logged>;

/// A consumer in `group`, subscribed to `topic`.
pub fn subscribe(settings: &KafkaSettings, group: &str, topic: &str) -> Result<GroupConsumer> {
    let consumer: GroupConsumer = settings
        .client_config(&[
            ("group.id", group),
            // We commit ourselves, only what is finished (see OffsetBook).
            ("enable.auto.commit", "false"),
            // A group with no committed offsets starts from the oldest event:
            // a new analytics group sees the whole history, as does a replay.
            ("auto.offset.reset", "earliest"),
            // Report reaching the end of a partition, so that batch runs
            // (--exit-at-end) know when they have caught up.
            ("enable.partition.eof", "true"),
            // Never see events from aborted transactions.
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(Logged)
        .while_("creating the consumer")?;
    consumer
        .subscribe(&[topic])
        .while_(format!("subscribing to {topic}"))?;
    Ok(consumer)
}

/// The next offset to commit per partition of one topic.
#[derive(Debug)]
pub struct OffsetBook {
    topic: String,
    next: BTreeMap<i32, i64>,
    /// What the last commit sent, to skip commits that would change nothing.
    committed: BTreeMap<i32, i64>,
}

impl OffsetBook {
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            next: BTreeMap::new(),
            committed: BTreeMap::new(),
        }
    }

    /// Records that every message of `partition` below `offset + 1` is done.
    pub fn done(&mut self, partition: i32, offset: i64) {
        let next = self.next.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    /// Commits the book. `Async` for the periodic commits of a running service
    /// sends only what changed since the last one (a failure is logged by the
    /// context and made good by a later commit); `Sync`, on exit, sends every
    /// partition and reports a failure as an error.
    pub fn commit(&mut self, consumer: &GroupConsumer, mode: CommitMode) -> Result<()> {
        let everything = matches!(mode, CommitMode::Sync);
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in &self.next {
            if everything || self.committed.get(&partition) != Some(&next) {
                list.add_partition_offset(&self.topic, partition, Offset::Offset(next))
                    .while_("building the offsets to commit")?;
            }
        }
        if list.count() == 0 {
            return Ok(());
        }
        consumer
            .commit(&list, mode)
            .while_(format!("committing offsets on {}", self.topic))?;
        self.committed.clone_from(&self.next);
        Ok(())
    }
}

/// Tracks which assigned partitions have been read to their end, for
/// `--exit-at-end`: the run is over once every assigned partition has reported
/// its end at least once (as `kcat -e` does).
#[derive(Debug, Default)]
pub struct CaughtUp {
    at_end: BTreeSet<i32>,
}

impl CaughtUp {
    pub fn reached_end(&mut self, partition: i32) {
        self.at_end.insert(partition);
    }

    /// True once the consumer has an assignment and every partition in it has
    /// been read to the end.
    pub fn all(&self, consumer: &GroupConsumer) -> bool {
        let Ok(assignment) = consumer.assignment() else {
            return false;
        };
        let elements = assignment.elements();
        !elements.is_empty()
            && elements
                .iter()
                .all(|e| self.at_end.contains(&e.partition()))
    }
}
