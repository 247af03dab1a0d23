//! Judging a failed batch, no Kafka client in it: from the error that
//! ended the batch and the failed deliveries of its records, what went
//! wrong and what to do (a [`Verdict`]), by the classes of `classify`.
//! `recovery` carries the verdict out.

use super::batch::{Batch, Input, ENGINE_RECORD};
use super::classify::{classify, is_fencing, Class};
use super::contexts::Failure;
use super::dead_letters::refused_reason;
use super::limits::Limits;
use crate::error::Error;

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
pub(super) fn is_size_refusal(error: &rdkafka::error::KafkaError) -> bool {
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
pub(super) fn class_of(error: &Error) -> Class {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    use std::time::Duration;

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
