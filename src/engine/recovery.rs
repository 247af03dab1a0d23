//! A batch that failed: abort it (exactly-once), wait until every record
//! it sent has reported back, judge from the error and those reports what
//! went wrong (`verdict`), forget the batch, and
//! then do what the verdict says: set records aside and redo, replace a
//! fenced producer and redo, redo after a pause, or stop.
//!
//! A redo starts from the group's committed offsets: the consumer is
//! rewound there and the task rolled back to its committed state, so the
//! batch is processed again from scratch. A batch whose commit failed
//! other than by an error requiring an abort may have committed all the
//! same (the commit timed out, or the producer was fenced or stuck, while
//! the coordinator finished it; an abort then fails as in an invalid
//! state): the group's committed offsets tell, and a batch Kafka committed
//! is committed here too. When they cannot tell (a batch that read no
//! input), its partitions are taken over again from Kafka, as on
//! assignment (the committed offsets, then the changelog).
//!
//! At-least-once has no transaction to abort: what the failed batch wrote
//! stays written, and the redo writes it again (at-least-once allows that;
//! it never commits past a loss).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::Offset;

use super::classify::{is_fencing, Class};
use super::clients::{EngineProducer, GroupConsumer, TRANSACTION_TIMEOUT_MS};
use super::core::{read_limits, Core};
use super::retry;
use super::task::Task;
use super::verdict::{class_of, is_size_refusal, judge, Verdict};
use crate::error::{Error, KafkaResultExt, Result};
use crate::wait;

/// What became of a batch whose commit failed.
enum Outcome {
    Committed,
    NotCommitted,
    Unknown,
}

impl<T: Task> Core<'_, T> {
    /// Recovers from a failed batch (see the module's paragraph); Err when
    /// the verdict is to stop.
    pub(super) fn recover(&mut self, consumer: &GroupConsumer, error: Error) -> Result<()> {
        let unknown_outcome = self.batch.as_ref().is_some_and(|b| b.may_have_committed);
        let transaction_age = self.batch.as_ref().map(|b| b.started.elapsed());
        let mut renewed = false;
        if let Error::Wedged { call, waited } = &error {
            // Aborting would wait behind the wedged call: a new producer
            // aborts the transaction instead.
            tracing::warn!(
                call,
                waited_s = waited.as_secs(),
                "the producer is stuck; starting a new one"
            );
            self.replace_producer()?;
            renewed = true;
        } else if self.batch.is_some() && self.exactly_once() {
            renewed = self.abort_transaction()?;
        }
        self.drain_deliveries();
        let failures = self.producer.context().take_failures();
        let mut take_over = false;
        if unknown_outcome {
            match self.commit_outcome(consumer)? {
                Outcome::Committed => {
                    tracing::warn!(%error, "the batch's commit failed, yet Kafka committed it: going on from there");
                    self.committed_batch(Instant::now());
                    return Ok(());
                }
                Outcome::NotCommitted => {}
                Outcome::Unknown => take_over = true,
            }
        }
        // A topic's limit may have been lowered since it was read: read
        // them again before judging, and cap the producer's batches anew.
        let mut resized = false;
        if failures
            .iter()
            .any(|f| f.before_sending.is_none() && is_size_refusal(&f.error))
        {
            resized = self.refresh_limits()?;
            renewed |= resized;
        }
        let verdict = judge(
            error,
            &failures,
            self.batch.as_ref(),
            &self.dlq,
            &self.limits,
        );
        self.discard_batch();
        match verdict {
            Verdict::Stop(error) => return Err(self.name_the_topic(error)),
            Verdict::SetAside(inputs) => {
                // Each is logged again when it is dead-lettered.
                let ((partition, offset), reason) = &inputs[0];
                tracing::warn!(
                    topic = %self.options.input_topic,
                    events = inputs.len(),
                    first_partition = partition,
                    first_offset = offset,
                    %reason,
                    "Kafka refuses what some events produce: redoing the batch with them dead-lettered"
                );
                self.set_aside.extend(inputs);
                // Each such redo sets aside one record more: progress.
                self.redos.progressed();
            }
            Verdict::Renew { cause, fenced } => {
                if !renewed {
                    self.renew_producer(&cause, fenced, transaction_age)?;
                }
                // Fencing is bounded by its own count; any other fatal
                // state of the producer by the redos.
                if !fenced {
                    self.redo_after_pause(cause)?;
                }
            }
            // Batches capped anew is progress: redo at once.
            Verdict::Redo(cause) if resized => {
                tracing::warn!(%cause, "a topic's record size limit changed: redoing the batch in smaller batches");
                self.redos.progressed();
            }
            Verdict::Redo(cause) => self.redo_after_pause(cause)?,
        }
        if take_over {
            // The state rolled back may be behind what Kafka holds.
            tracing::warn!("the batch's commit has an unknown outcome: taking the state over again from the changelog");
            self.adopt_again(consumer)?;
        }
        self.rewind(consumer)
    }

    /// Whether a batch whose commit failed was committed all the same, told
    /// by the group's committed offsets (fetched stable, so once its
    /// transaction has ended either way): at the batch's offsets it was, at
    /// the ones before it it was not. A batch that read no input (only what
    /// time passing wrote), or offsets someone else moved, cannot tell.
    fn commit_outcome(&self, consumer: &GroupConsumer) -> Result<Outcome> {
        let next = self.batch.as_ref().expect("a batch is open").next_offsets();
        if next.is_empty() {
            return Ok(Outcome::Unknown);
        }
        let (mut committed, mut before) = (true, true);
        for (&partition, &offset) in next {
            let now = self.committed_offset(consumer, partition)?;
            committed &= now == Some(offset);
            before &= now == self.committed.get(&partition).copied();
        }
        Ok(match (committed, before) {
            (true, _) => Outcome::Committed,
            (false, true) => Outcome::NotCommitted,
            (false, false) => Outcome::Unknown,
        })
    }

    /// Counts a redo without progress and pauses before it; Err once the
    /// batch has failed too often in a row, or, from its second failure
    /// on, once a topic the engine uses no longer exists (a transaction it
    /// broke may say only "Erroneous state", and librdkafka calls a deleted
    /// topic unknown only after `topic.metadata.propagation.max.ms`).
    fn redo_after_pause(&mut self, cause: String) -> Result<()> {
        let failing = self.redos.attempts() > 0;
        if let Some(topic) = failing.then(|| self.missing_topic()).flatten() {
            return Err(Error::TopicRefused {
                topic,
                reason: format!("it no longer exists (the batch failed: {cause})"),
            });
        }
        let Some(pause) = self.redos.failed() else {
            return Err(Error::BatchFailing {
                attempts: self.redos.attempts(),
                cause,
            });
        };
        tracing::warn!(
            %cause,
            attempt = self.redos.attempts(),
            pause_ms = pause.as_millis() as u64,
            "the batch failed; aborting it and doing it again"
        );
        self.pause(pause);
        Ok(())
    }

    /// A fatal error that names no topic (a transactional call's, which
    /// says "unknown topic or partition" but not which), named after the
    /// first topic the engine uses that no longer exists, if one does not.
    fn name_the_topic(&self, error: Error) -> Error {
        let Error::Refused { what, reason } = error else {
            return error;
        };
        match self.missing_topic() {
            Some(topic) => Error::TopicRefused {
                topic,
                reason: format!("it no longer exists ({reason})"),
            },
            None => Error::Refused { what, reason },
        }
    }

    /// The first topic the engine uses that the cluster says no longer
    /// exists; None when the cluster does not answer (an outage: the
    /// redos bound it).
    fn missing_topic(&self) -> Option<String> {
        let mut topics = self.options.output_topics.clone();
        topics.extend(self.options.changelog_topic.clone());
        topics.push(self.dlq.clone());
        topics.push(self.options.input_topic.clone());
        self.admin.first_missing(&topics).ok().flatten()
    }

    /// Aborts the open batch because partitions moved: not a failure, so
    /// it counts against no limit, and nothing needs rewinding.
    pub(super) fn abort_for_rebalance(&mut self) -> Result<()> {
        if self.exactly_once() {
            self.abort_transaction()?;
        }
        self.drain_deliveries();
        self.producer.context().take_failures();
        self.discard_batch();
        Ok(())
    }

    /// Aborts the open transaction; a producer fenced meanwhile is replaced
    /// (its transaction is aborted already, by the broker). Returns whether
    /// it was.
    fn abort_transaction(&mut self) -> Result<bool> {
        let aborted = retry::transactional("aborting the transaction", || {
            Ok(self.producer.abort_transaction(self.settings.timeout))
        });
        match aborted {
            Ok(()) => Ok(false),
            // Stuck: a new producer aborts the transaction instead.
            Err(Error::Wedged { call, waited }) => {
                tracing::warn!(
                    call,
                    waited_s = waited.as_secs(),
                    "the producer is stuck; starting a new one"
                );
                self.replace_producer()?;
                Ok(true)
            }
            Err(error) if class_of(&error) == Class::Fenced => {
                let fenced = matches!(&error, Error::Kafka { cause, .. } if is_fencing(cause));
                let age = self.batch.as_ref().map(|b| b.started.elapsed());
                self.renew_producer(&error.to_string(), fenced, age)?;
                Ok(true)
            }
            Err(error) => Err(error),
        }
    }

    /// Waits (bounded) until every record sent has been acknowledged or
    /// has reported its failure, so that the failures are all known.
    fn drain_deliveries(&self) {
        let _ = self.producer.flush(Duration::ZERO);
        let drained: Result<Option<()>> =
            wait::until(self.settings.timeout * 2, Duration::from_millis(2), || {
                Ok((self.producer.in_flight_count() == 0).then_some(()))
            });
        if !matches!(drained, Ok(Some(()))) {
            tracing::warn!(
                in_flight = self.producer.in_flight_count(),
                "records of the failed batch have not all reported back"
            );
        }
    }

    /// Forgets the open batch: the task goes back to its committed state.
    fn discard_batch(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        self.task.rollback();
        self.stats.aborts += 1;
        if self.exactly_once() {
            self.options.metrics.transactions_aborted.inc();
        }
        self.next_input = batch.following();
        self.at_end.clear();
        // What the task was told with the batch is gone with it.
        self.told_end = false;
    }

    /// Replaces a producer that cannot go on. The coordinator fences a
    /// producer whose transaction outlived `transaction.timeout.ms` (a long
    /// outage, a stalled machine) by bumping its epoch, and librdkafka
    /// reports that as fenced too; a new producer with the same
    /// transactional id carries on. Only a fence in a transaction younger
    /// than that timeout (`transaction_age`; None: no batch open) is
    /// another producer's doing: three of those in two minutes mean another
    /// process runs with the same transactional id, an error, not a fight.
    /// Other fatal states (a transactional call in an invalid state, seen
    /// during rolling broker restarts) are not counted as fencing: the
    /// redos of the failed batch bound them.
    fn renew_producer(
        &mut self,
        cause: &str,
        fenced: bool,
        transaction_age: Option<Duration>,
    ) -> Result<()> {
        const WINDOW: Duration = Duration::from_secs(120);
        let timeout = Duration::from_millis(TRANSACTION_TIMEOUT_MS.parse().expect("a number"));
        let timed_out = transaction_age.is_some_and(|age| age >= timeout);
        if fenced && !timed_out {
            self.renewals.retain(|t| t.elapsed() < WINDOW);
            if self.renewals.len() >= 3 {
                return Err(Error::Fenced {
                    transactional_id: self.options.transactional_id.clone(),
                    cause: cause.to_owned(),
                });
            }
            self.renewals.push(Instant::now());
        }
        tracing::warn!(%cause, fenced, "the producer cannot go on; starting a new one");
        self.replace_producer()
    }

    /// Replaces the producer with a new one of the same transactional id,
    /// whose `init_transactions` fences the old one and aborts its open
    /// transaction.
    fn replace_producer(&mut self) -> Result<()> {
        let new = EngineProducer::create(self.settings, self.options, self.limits.batch_cap())?;
        std::mem::replace(&mut self.producer, new).destroy_elsewhere();
        if self.exactly_once() {
            retry::in_place("initialising transactions", || {
                self.producer.init_transactions(self.settings.timeout)
            })?;
        }
        Ok(())
    }

    /// Reads the topics' record size limits again; when the producer's
    /// batch cap changes with them, replaces the producer (a batch size is
    /// fixed when a producer is made). Returns whether it did.
    fn refresh_limits(&mut self) -> Result<bool> {
        let limits = read_limits(&self.admin, self.settings, self.options)?;
        let changed = limits.batch_cap() != self.limits.batch_cap();
        self.limits = limits;
        self.task.limits(&self.limits);
        if changed {
            tracing::warn!(
                batch_size = ?self.limits.batch_cap(),
                "capping the producer's batches at the smallest max.message.bytes of the topics written to"
            );
            self.replace_producer()?;
        }
        Ok(changed)
    }

    /// Moves every assigned partition back to its committed offset, so that
    /// an aborted batch is read again. The offsets are the engine's own
    /// books (taken over with the partition, moved by every commit), not
    /// asked of the group coordinator: after a broker stall the consumer's
    /// group may wait for `poll` to serve a rebalance, and a fetch of
    /// committed offsets then times out until it is (two minutes of that
    /// ended a service after a broker fenced itself for 2 s).
    fn rewind(&self, consumer: &GroupConsumer) -> Result<()> {
        for &partition in &self.assigned {
            let offset = match self.committed.get(&partition) {
                Some(&n) => Offset::Offset(n),
                None => Offset::Beginning,
            };
            consumer
                .seek(
                    &self.options.input_topic,
                    partition,
                    offset,
                    self.settings.timeout,
                )
                .while_(format!(
                    "rewinding {}[{partition}]",
                    self.options.input_topic
                ))?;
        }
        Ok(())
    }
}
