//! Rebalances, applied after `poll` returns: partitions revoked are
//! forgotten, partitions assigned are taken over (their committed offsets
//! first, which waits for any transaction still holding offsets for them,
//! then their state, restored from the changelog).

use std::collections::BTreeMap;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};

use super::changelog;
use super::clients::GroupConsumer;
use super::contexts::Assignment;
use super::core::Core;
use super::retry;
use super::task::Task;
use crate::error::Result;
use crate::metrics::TopicLabel;

impl<T: Task> Core<'_, T> {
    /// Applies the assignment changes the consumer reported, and says
    /// whether there were any. Whatever batch is open is aborted first: its
    /// offsets may belong to partitions that are gone, and the group
    /// generation it would commit under is over.
    pub(super) fn handle_rebalances(&mut self, consumer: &GroupConsumer) -> Result<bool> {
        let events = consumer.context().take();
        if events.is_empty() {
            return Ok(false);
        }
        // No rewind: librdkafka has already taken the revoked partitions
        // away, and starts assigned ones at their committed offsets.
        if self.batch.is_some() {
            self.abort_for_rebalance()?;
        }
        for event in events {
            match event {
                Assignment::Revoked(partitions) => {
                    for p in partitions {
                        self.task.revoked(p);
                        self.assigned.remove(&p);
                        self.ready_at.remove(&p);
                        self.options
                            .metrics
                            .forget_partition(&self.options.input_topic, p);
                        self.committed.remove(&p);
                        self.resets.remove(&p);
                        self.set_aside.retain(|&(partition, _), _| partition != p);
                    }
                }
                Assignment::Assigned(partitions) => self.adopt(consumer, &partitions)?,
            }
        }
        self.at_end.clear();
        self.told_end = false;
        self.options
            .metrics
            .assigned_partitions
            .get_or_create(&TopicLabel {
                topic: self.options.input_topic.clone(),
            })
            .set(self.ready_at.len() as i64);
        Ok(true)
    }

    /// Takes over newly assigned partitions: their committed offsets first
    /// (which waits for any transaction still holding offsets for them), then
    /// their state.
    fn adopt(&mut self, consumer: &GroupConsumer, partitions: &[i32]) -> Result<()> {
        let mut committed = BTreeMap::new();
        for &p in partitions {
            let offset = self.committed_offset(consumer, p)?;
            if let Some(offset) = offset {
                self.committed.insert(p, offset);
                self.options
                    .metrics
                    .committed(&self.options.input_topic, p, offset);
            }
            committed.insert(p, offset);
            self.task.assigned(p);
            self.assigned.insert(p);
        }
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            let markers = changelog::restore(
                &self.restorer,
                changelog,
                partitions,
                self.task,
                self.settings.timeout,
                &committed,
            )?;
            for &p in partitions {
                self.task.restored(p);
            }
            // At-least-once may legitimately leave the state ahead of the
            // offsets: it keeps its state.
            if self.exactly_once() {
                for partition in changelog::moved_since(&committed, &markers) {
                    tracing::info!(
                        partition,
                        state_at = ?markers.get(&partition).copied().flatten(),
                        committed = ?committed.get(&partition).copied().flatten(),
                        "the group's offsets were moved: starting this partition's state afresh"
                    );
                    self.task.revoked(partition);
                    self.task.assigned(partition);
                    self.resets.insert(partition);
                }
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        for &p in partitions {
            self.ready_at.insert(p, now);
        }
        Ok(())
    }

    /// Takes over every assigned partition again from what Kafka holds
    /// (their committed offsets, then their state): after a commit whose
    /// outcome is unknown, the state in hand may be behind Kafka's.
    pub(super) fn adopt_again(&mut self, consumer: &GroupConsumer) -> Result<()> {
        let partitions: Vec<i32> = self.assigned.iter().copied().collect();
        for &p in &partitions {
            self.task.revoked(p);
            self.committed.remove(&p);
            self.resets.remove(&p);
        }
        self.adopt(consumer, &partitions)
    }

    /// The group's committed offset of `partition` (None: nothing committed).
    pub(super) fn committed_offset(
        &self,
        consumer: &GroupConsumer,
        partition: i32,
    ) -> Result<Option<i64>> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.options.input_topic, partition);
        // Unstable while a transaction holding offsets for the partition is
        // open, e.g. one of a killed instance: wait for it to end.
        let found = retry::in_place("fetching the committed offset", || {
            consumer.committed_offsets(list.clone(), self.settings.timeout)
        })?;
        Ok(found.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }))
    }
}
