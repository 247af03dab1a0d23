//! Ending a batch: its state changes and offset markers go to the
//! changelog, then, exactly-once, its input offsets join its transaction
//! and the transaction commits; at-least-once, every output is awaited and
//! then the offsets are committed. A failure on the way goes to recovery.

use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::batch::{Batch, ENGINE_RECORD};
use super::changelog;
use super::clients::GroupConsumer;
use super::core::Core;
use super::retry;
use super::task::Task;
use crate::error::{Error, KafkaResultExt, Result};
use crate::metrics::TopicLabel;
use crate::wait;

impl<T: Task> Core<'_, T> {
    /// Ends the open batch: commits it, or, when that fails, recovers
    /// (see `recovery.rs`).
    pub(super) fn commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        let started = Instant::now();
        match self.try_commit(consumer) {
            Ok(()) => {
                self.committed_batch(started);
                Ok(())
            }
            Err(error) => self.recover(consumer, error),
        }
    }

    fn try_commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        // A record refused already (measured too large, or refused at
        // send) means this batch cannot commit as it is.
        if let Some(failure) = self.producer.context().first_failure() {
            return Err(Error::Delivery {
                topic: failure.topic,
                cause: failure.error,
            });
        }
        let mut out = Vec::new();
        self.task.before_commit(&mut out);
        self.emit(out, None, ENGINE_RECORD)?;
        self.write_changelog()?;
        self.write_offset_markers()?;
        if self.exactly_once() {
            self.commit_transaction(consumer)
        } else {
            self.flush_then_commit(consumer)
        }
    }

    /// The batch is committed: the task's state and the engine's books
    /// move on.
    pub(super) fn committed_batch(&mut self, started: Instant) {
        let batch = self.batch.take().expect("a batch was committed");
        self.task.commit();
        self.count_committed(&batch);
        self.options
            .metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        self.stats.consumed += batch.consumed;
        self.stats.dead_lettered += batch.dead_lettered;
        self.stats.commits += 1;
        if let Some(first) = self.first_record {
            self.stats.busy = first.elapsed();
        }
        self.latencies.add(&batch.latencies);
        self.committed.extend(batch.next_offsets());
        let committed = &self.committed;
        self.set_aside
            .retain(|(p, offset), _| committed.get(p).is_none_or(|&c| *offset >= c));
        self.resets.clear();
        self.next_input = batch.following();
        self.redos.progressed();
    }

    /// Adds the batch being committed to the metrics.
    fn count_committed(&self, batch: &Batch) {
        let metrics = &self.options.metrics;
        let topic = |name: &str| TopicLabel { topic: name.into() };
        let input = &self.options.input_topic;
        metrics
            .events_consumed
            .get_or_create(&topic(input))
            .inc_by(batch.consumed);
        if batch.dead_lettered > 0 {
            metrics
                .dead_letters
                .get_or_create(&topic(&self.dlq))
                .inc_by(batch.dead_lettered);
        }
        for (name, &count) in batch.outputs() {
            metrics
                .events_produced
                .get_or_create(&topic(name))
                .inc_by(count);
        }
        metrics.observe_latencies(&batch.latencies);
        for (&partition, &next) in batch.next_offsets() {
            metrics.committed(input, partition, next);
        }
        if self.exactly_once() {
            metrics.transactions_committed.inc();
        }
    }

    /// Sends the batch's changelog writes (the last value of each key).
    fn write_changelog(&mut self) -> Result<()> {
        let Some(changelog) = self.options.changelog_topic.as_deref() else {
            return Ok(());
        };
        let state = self.batch.as_mut().expect("a batch is open").take_state();
        for ((partition, key), (payload, timestamp)) in state {
            let mut record = BaseRecord::with_opaque_to(changelog, ENGINE_RECORD as usize)
                .partition(partition)
                .key(key.as_slice());
            // An empty value is a tombstone: compaction drops the key.
            if !payload.is_empty() {
                record = record.payload(payload.as_slice());
            }
            if let Some(timestamp) = timestamp {
                record = record.timestamp(timestamp);
            }
            self.enqueue(record)?;
        }
        Ok(())
    }

    /// Records in each changelog partition the batch advanced where its
    /// input now stands.
    fn write_offset_markers(&self) -> Result<()> {
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            for (&p, &next) in self.next_offsets() {
                self.send(
                    &changelog::offset_marker(changelog, p, next),
                    None,
                    ENGINE_RECORD,
                )?;
            }
        }
        Ok(())
    }

    /// Marks whether the open batch may have committed although its commit
    /// failed (see `Batch::may_have_committed`).
    fn may_have_committed(&mut self, may: bool) {
        self.batch
            .as_mut()
            .expect("a batch is open")
            .may_have_committed = may;
    }

    fn next_offsets(&self) -> &std::collections::BTreeMap<i32, i64> {
        self.batch.as_ref().expect("a batch is open").next_offsets()
    }

    fn commit_transaction(&mut self, consumer: &GroupConsumer) -> Result<()> {
        if !self.next_offsets().is_empty() {
            self.send_offsets(consumer)?;
        }
        // rdkafka's commit_transaction flushes first, with the slow flush
        // (see `flush`); with nothing left in flight its flush returns at once.
        self.flush()?;
        self.may_have_committed(true);
        // A commit that times out goes on in the background; calling again
        // resumes it (aborting instead would conflict with it). An error that
        // needs an abort is not retried and goes to recovery.
        let committed = retry::transactional("committing the transaction", || {
            Ok(self.producer.commit_transaction(self.settings.timeout))
        });
        // Such an error says the transaction did not commit; any other
        // (retries run out, the producer fenced or stuck) leaves it open.
        if let Err(Error::Kafka {
            cause: KafkaError::Transaction(error),
            ..
        }) = &committed
        {
            if error.txn_requires_abort() {
                self.may_have_committed(false);
            }
        }
        committed
    }

    /// Adds the batch's input offsets to its transaction, retrying what is
    /// retriable; a call that never returns is reported as wedged (see
    /// `EngineProducer::send_offsets`) and ends the retries.
    fn send_offsets(&self, consumer: &GroupConsumer) -> Result<()> {
        let offsets = self.offsets()?;
        retry::transactional("adding the input offsets to the transaction", || {
            // None only outside a group, which a subscribed consumer is not;
            // a redo asks again.
            let metadata = consumer.group_metadata().ok_or(Error::Kafka {
                action: "reading the consumer's group metadata".into(),
                cause: KafkaError::Canceled,
            })?;
            self.producer
                .send_offsets(&offsets, metadata, self.settings.timeout)
        })
    }

    fn flush_then_commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        self.flush()?;
        if let Some(failure) = self.producer.context().first_failure() {
            return Err(Error::Delivery {
                topic: failure.topic,
                cause: failure.error,
            });
        }
        if !self.next_offsets().is_empty() {
            // A failed offset commit may have reached the coordinator.
            self.may_have_committed(true);
            consumer
                .commit(&self.offsets()?, CommitMode::Sync)
                .while_("committing offsets")?;
        }
        Ok(())
    }

    /// Waits until every record sent is acknowledged (or failed).
    ///
    /// Not `Producer::flush(timeout)`: between its checks, rdkafka's flush
    /// polls the producer for up to 100 ms, and on a ThreadedProducer the
    /// events that poll waits for are served by the producer's own thread, so
    /// every flush took 100 ms, stalling the engine for that long per batch.
    /// A flush with no timeout still tells librdkafka to send at once,
    /// without lingering; between those the engine sleeps a millisecond.
    pub(super) fn flush(&self) -> Result<()> {
        let flushed = wait::until(
            self.settings.timeout * 6,
            Duration::from_millis(1),
            || match self.producer.flush(Duration::ZERO) {
                Ok(()) => Ok(Some(())),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => Ok(None),
                Err(error) => Err(error),
            },
        )
        .while_("waiting for acknowledgements")?;
        flushed.ok_or(Error::Kafka {
            action: "waiting for acknowledgements".into(),
            cause: KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut),
        })
    }

    fn offsets(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in self.next_offsets() {
            list.add_partition_offset(&self.options.input_topic, partition, Offset::Offset(next))
                .while_("building the offsets to commit")?;
        }
        Ok(list)
    }
}
