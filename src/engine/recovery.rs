//! A batch that failed: abort it (exactly-once), wait until every record
//! it sent has reported back, judge from the error and those reports what
//! went wrong (`judge`, by class, see `classify`), forget the batch, and
//! then do what the verdict says: set records aside and redo, replace a
//! fenced producer and redo, redo after a pause, or stop.
//!
//! A redo starts from the group's committed offsets: the consumer is
//! rewound there and the task rolled back to its committed state, so the
//! batch is processed again from scratch. At-least-once has no transaction
//! to abort: what the failed batch wrote stays written, and the redo writes
//! it again (at-least-once allows that; it never commits past a loss).

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::producer::Producer;
use rdkafka::Offset;

use super::batch::{Batch, Input, ENGINE_RECORD};
use super::classify::{classify, is_fencing, Class};
use super::clients::{EngineProducer, GroupConsumer};
use super::contexts::Failure;
use super::core::{read_limits, Core};
use super::dead_letters::refused_reason;
use super::limits::Limits;
use super::retry;
use super::task::Task;
use crate::error::{Error, KafkaResultExt, Result};
use crate::wait;

/// What to do about a failed batch.
#[derive(Debug)]
pub enum Verdict {
    /// Kafka refused for good records written for these inputs: redo the
    /// batch with them dead-lettered, for these reasons.
    SetAside(Vec<(Input, String)>),
    /// The producer cannot go on (fenced, or in a fatal state): replace
    /// it, then redo. `fenced`: another producer took its transactional id
    /// (an epoch bump), which is counted.
    Renew { cause: String, fenced: bool },
    /// Redo the batch, after a pause; the cause, for the logs.
    Redo(String),
    /// Stop the service with this error.
    Stop(Error),
}

/// Judges a failed batch from the error that ended it and the failed
/// deliveries of its records. A delivery failure says more than the error
/// (which is often only "the transaction must be aborted"), so failures
/// decide first: a fatal one stops the run naming its topic; records
/// refused for good are set aside, unless no single input of this batch
/// wrote them (the changelog, the DLQ), which stops the run too. A record
/// the broker refused as too large although it fits its topic's limit
/// (`limits`, as read after the refusal) was refused with others in one
/// batch: it is not set aside, the batch is redone. Failures that are only
/// the consequence of another (records purged by the abort, sends refused
/// in a failed transaction) say nothing.
pub fn judge(
    error: Error,
    failures: &[Failure],
    batch: Option<&Batch>,
    dlq: &str,
    limits: &Limits,
) -> Verdict {
    let mut set_aside: Vec<(Input, String)> = Vec::new();
    let mut fenced = None;
    let mut cause = None;
    for failure in failures {
        let reason = failure.error.to_string();
        match classify(&failure.error) {
            Class::Fatal => {
                return Verdict::Stop(Error::TopicRefused {
                    topic: failure.topic.clone(),
                    reason,
                })
            }
            Class::Record if batched_with_others(failure, limits) => {
                cause.get_or_insert_with(|| format!("{}: {reason}", failure.topic));
            }
            Class::Record => {
                let input = batch.and_then(|b| b.input(failure.input));
                match input {
                    Some(input) if failure.topic != dlq => {
                        let known = set_aside.iter().any(|(i, _)| *i == input);
                        if !known {
                            let why = match &failure.before_sending {
                                Some(why) => why.clone(),
                                None => refused_reason(&failure.topic, &reason),
                            };
                            set_aside.push((input, why));
                        }
                    }
                    // The engine's own record, or the dead letter itself:
                    // nothing can be set aside instead.
                    _ if failure.input == ENGINE_RECORD || failure.topic == dlq => {
                        return Verdict::Stop(Error::TopicRefused {
                            topic: failure.topic.clone(),
                            reason,
                        })
                    }
                    // An earlier batch's record, reported late: judged then.
                    _ => {}
                }
            }
            Class::Fenced => fenced = Some((reason, is_fencing(&failure.error))),
            Class::Retry | Class::Redo if !is_consequence(&failure.error) => {
                cause.get_or_insert_with(|| format!("{}: {reason}", failure.topic));
            }
            Class::Retry | Class::Redo => {}
        }
    }
    if !set_aside.is_empty() {
        return Verdict::SetAside(set_aside);
    }
    if let Some((cause, fenced)) = fenced {
        return Verdict::Renew { cause, fenced };
    }
    match class_of(&error) {
        Class::Fatal => Verdict::Stop(fatal(error)),
        Class::Fenced => Verdict::Renew {
            fenced: matches!(&error, Error::Kafka { cause, .. } if is_fencing(cause)),
            cause: error.to_string(),
        },
        Class::Retry | Class::Redo | Class::Record => {
            Verdict::Redo(cause.unwrap_or_else(|| error.to_string()))
        }
    }
}

/// Whether a record the broker refused as too large fits its topic on its
/// own, so that only its batch was too large.
fn batched_with_others(failure: &Failure, limits: &Limits) -> bool {
    failure.before_sending.is_none()
        && is_size_refusal(&failure.error)
        && limits.fits(&failure.topic, failure.size)
}

/// The broker's "too large" refusals.
fn is_size_refusal(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::MessageSizeTooLarge | Code::MessageBatchTooLarge)
    )
}

/// Failures that only follow from another: records purged by an abort,
/// sends refused by a transaction already failed.
fn is_consequence(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::PurgeQueue | Code::PurgeInflight | Code::State | Code::OperationNotAttempted)
    )
}

/// The class of an error of ours: a Kafka error's own, and for the
/// engine's other errors, what they mean.
fn class_of(error: &Error) -> Class {
    match error {
        Error::Kafka { cause, .. } | Error::Delivery { cause, .. } => classify(cause),
        // Recovery has replaced the wedged producer already (a new one
        // aborts its transaction): what is left is a redo, counted.
        Error::Wedged { .. } => Class::Redo,
        _ => Class::Fatal,
    }
}

/// A fatal error, naming what Kafka refused.
fn fatal(error: Error) -> Error {
    match error {
        Error::Delivery { topic, cause } => Error::TopicRefused {
            topic,
            reason: cause.to_string(),
        },
        Error::Kafka { action, cause } => Error::Refused {
            what: format!("what we asked while {action}"),
            reason: cause.to_string(),
        },
        other => other,
    }
}

impl<T: Task> Core<'_, T> {
    /// Recovers from a failed batch (see the module's paragraph); Err when
    /// the verdict is to stop.
    pub(super) fn recover(&mut self, consumer: &GroupConsumer, error: Error) -> Result<()> {
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
                    self.renew_producer(&cause, fenced)?;
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
        self.rewind(consumer)
    }

    /// Counts a redo without progress and pauses before it; Err once the
    /// batch has failed too often in a row.
    fn redo_after_pause(&mut self, cause: String) -> Result<()> {
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
        let mut topics = self.options.output_topics.clone();
        topics.extend(self.options.changelog_topic.clone());
        topics.push(self.dlq.clone());
        topics.push(self.options.input_topic.clone());
        match topics
            .into_iter()
            .find(|t| matches!(self.admin.topic_exists(t), Ok(false)))
        {
            Some(topic) => Error::TopicRefused {
                topic,
                reason: format!("it no longer exists ({reason})"),
            },
            None => Error::Refused { what, reason },
        }
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
                self.renew_producer(&error.to_string(), fenced)?;
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
    }

    /// Replaces a producer that cannot go on. The coordinator fences a
    /// producer whose transaction outlived `transaction.timeout.ms` (a long
    /// outage) by bumping its epoch; a new producer with the same
    /// transactional id carries on. Fenced again and again means another
    /// process runs with the same transactional id: that is an error, not a
    /// fight. Other fatal states (a transactional call in an invalid state,
    /// seen during rolling broker restarts) are not counted as fencing: the
    /// redos of the failed batch bound them.
    fn renew_producer(&mut self, cause: &str, fenced: bool) -> Result<()> {
        const WINDOW: Duration = Duration::from_secs(120);
        if fenced {
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
    /// an aborted batch is read again.
    fn rewind(&self, consumer: &GroupConsumer) -> Result<()> {
        for &partition in &self.assigned {
            let offset = match self.committed_offset(consumer, partition)? {
                Some(n) => Offset::Offset(n),
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

    fn failure(input: u64, topic: &str, code: Code) -> Failure {
        Failure {
            input,
            topic: topic.into(),
            error: KafkaError::MessageProduction(code),
            size: 400,
            before_sending: None,
        }
    }

    fn limits(limit: usize) -> Limits {
        Limits::new(
            std::collections::BTreeMap::from([("InventoryEvents".to_string(), limit)]),
            false,
        )
    }

    fn aborted() -> Error {
        Error::Kafka {
            action: "committing the transaction".into(),
            cause: KafkaError::MessageProduction(Code::State),
        }
    }

    /// The verdict on a failed batch of `batch()` whose DLQ is
    /// OrderEvents.DLQ and whose decisions topic takes 300 bytes.
    fn judged(failures: &[Failure]) -> Verdict {
        judge(
            aborted(),
            failures,
            Some(&batch()),
            "OrderEvents.DLQ",
            &limits(300),
        )
    }

    fn batch() -> Batch {
        let mut batch = Batch::open(5);
        batch.admit(0, 100); // input 5
        batch.admit(1, 200); // input 6
        batch.admit(0, 101); // input 7
        batch
    }

    #[test]
    fn records_too_large_set_their_inputs_aside_with_kafkas_reason() {
        let failures = [
            failure(6, "InventoryEvents", Code::MessageSizeTooLarge),
            failure(7, "InventoryEvents", Code::PurgeQueue),
            failure(6, "InventoryEvents", Code::MessageSizeTooLarge),
        ];
        match judged(&failures) {
            Verdict::SetAside(inputs) => {
                assert_eq!(inputs.len(), 1, "once per input");
                let ((partition, offset), reason) = &inputs[0];
                assert_eq!((*partition, *offset), (1, 200));
                assert!(reason.starts_with("InventoryEvents refused"), "{reason}");
                assert!(reason.contains("Message size too large"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_that_fits_on_its_own_was_refused_with_its_batch_and_is_not_blamed() {
        let failures = [failure(6, "InventoryEvents", Code::MessageSizeTooLarge)];
        let verdict = judge(
            aborted(),
            &failures,
            Some(&batch()),
            "OrderEvents.DLQ",
            &limits(500),
        );
        assert!(matches!(verdict, Verdict::Redo(_)), "{verdict:?}");
    }

    #[test]
    fn a_record_measured_too_large_is_set_aside_with_the_engines_reason() {
        let mut measured = failure(5, "InventoryEvents", Code::MessageSizeTooLarge);
        measured.before_sending = Some("too large: 400 > 300".into());
        match judge(
            aborted(),
            &[measured],
            Some(&batch()),
            "OrderEvents.DLQ",
            &limits(300),
        ) {
            Verdict::SetAside(inputs) => {
                assert_eq!(inputs, [((0, 100), "too large: 400 > 300".to_string())])
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_deleted_topic_stops_the_run_naming_it() {
        let failures = [
            failure(5, "InventoryEvents", Code::MessageTimedOut),
            failure(6, "InventoryEvents", Code::UnknownTopic),
        ];
        match judged(&failures) {
            Verdict::Stop(error) => {
                let message = error.to_string();
                assert!(
                    message.starts_with("topic InventoryEvents cannot be used"),
                    "{message}"
                );
                assert!(message.contains("Unknown topic"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_record_with_no_input_to_blame_stops_the_run() {
        for failure in [
            failure(
                ENGINE_RECORD,
                "inventory-stock-changelog",
                Code::MessageSizeTooLarge,
            ),
            failure(5, "OrderEvents.DLQ", Code::MessageSizeTooLarge),
        ] {
            match judge(
                aborted(),
                &[failure],
                Some(&batch()),
                "OrderEvents.DLQ",
                &limits(300),
            ) {
                Verdict::Stop(Error::TopicRefused { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_late_report_of_an_earlier_batch_is_not_blamed_on_this_one() {
        let failures = [failure(2, "InventoryEvents", Code::MessageSizeTooLarge)];
        assert!(matches!(judged(&failures), Verdict::Redo(_)));
    }

    #[test]
    fn a_timeout_is_redone_naming_the_first_real_cause() {
        let failures = [
            failure(5, "InventoryEvents", Code::PurgeInflight),
            failure(6, "InventoryEvents", Code::MessageTimedOut),
        ];
        match judged(&failures) {
            Verdict::Redo(cause) => {
                assert!(cause.starts_with("InventoryEvents: "), "{cause}");
                assert!(cause.contains("timed out"), "{cause}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(aborted(), &[], None, "OrderEvents.DLQ", &limits(300)),
            Verdict::Redo(_)
        ));
    }

    #[test]
    fn the_error_decides_when_no_delivery_failed() {
        let forbidden = Error::Kafka {
            action: "adding the input offsets to the transaction".into(),
            cause: KafkaError::MessageProduction(Code::GroupAuthorizationFailed),
        };
        assert!(matches!(
            judge(forbidden, &[], None, "x.DLQ", &limits(300)),
            Verdict::Stop(Error::Refused { .. })
        ));
        let wedged = Error::Wedged {
            call: "send_offsets_to_transaction".into(),
            waited: Duration::from_secs(20),
        };
        // Replaced before judging: a redo, counted like any other.
        assert!(matches!(
            judge(wedged, &[], None, "x.DLQ", &limits(300)),
            Verdict::Redo(_)
        ));
        let fenced = [failure(5, "InventoryEvents", Code::ProducerFenced)];
        assert!(matches!(
            judge(aborted(), &fenced, Some(&batch()), "x.DLQ", &limits(300)),
            Verdict::Renew { fenced: true, .. }
        ));
    }
}
