//! The one place that decides what an error from librdkafka means for the
//! engine, in the manner of vector's Kafka sink (retriable, permanent,
//! other). Every error the engine sees (from a poll, a send, a delivery
//! report, a transactional call, an offsets request) goes through
//! [`classify`], and the engine acts on the class alone:
//!
//! | class | what it means | what the engine does |
//! |---|---|---|
//! | [`Class::Retry`] | not now: a coordinator loading, a request timed out, brokers unreachable | the same call again after a pause, in place, for a bounded time |
//! | [`Class::Redo`] | this batch cannot commit, but a redo can (a delivery timed out, a rebalance, a transaction that must be aborted) | abort the batch, rewind, do it again; a bounded number of times in a row |
//! | [`Class::Record`] | one record can never be written (too large for its topic, invalid) | abort, and redo the batch with the input that produced it dead-lettered, Kafka's reason in its header |
//! | [`Class::Fenced`] | the producer was fenced (its transaction outlived its timeout) or is in another fatal state (its records fail with `Fatal`) | replace it with a new one of the same transactional id, a bounded number of times |
//! | [`Class::Fatal`] | never going to work: the topic deleted, authorization refused, a broken configuration | end the service with an error naming the topic and Kafka's reason |
//!
//! An error the table does not know is a `Redo`: bounded, so an unknown
//! permanent error ends the service after a few attempts rather than never.

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

/// What to do about an error; see the module's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Retry,
    Redo,
    Record,
    Fenced,
    Fatal,
}

/// The class of any error the engine sees.
pub fn classify(error: &KafkaError) -> Class {
    match error {
        KafkaError::Transaction(e) => {
            let code = e.code();
            if matches!(classify_code(code), Class::Fatal) {
                // Authorization refused stays refused, fatal flag or not.
                Class::Fatal
            } else if e.is_fatal() {
                Class::Fenced
            } else if e.txn_requires_abort() {
                Class::Redo
            } else if e.is_retriable() || code == Code::OperationTimedOut {
                // A timed-out commit or abort goes on in the background;
                // librdkafka documents calling again as resuming it.
                Class::Retry
            } else {
                classify_code(code)
            }
        }
        // Consuming stopped for good (e.g. a static member fenced).
        KafkaError::MessageConsumptionFatal(_) => Class::Fatal,
        // Bad settings never get better.
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) => Class::Fatal,
        KafkaError::Canceled => Class::Redo,
        other => other
            .rdkafka_error_code()
            .map_or(Class::Redo, classify_code),
    }
}

/// Whether an error says another producer took our transactional id (its
/// epoch bumped past ours), as opposed to another fatal state.
pub fn is_fencing(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(Code::ProducerFenced | Code::InvalidProducerEpoch | Code::Fenced)
    )
}

/// The class of a librdkafka or broker error code.
pub fn classify_code(code: Code) -> Class {
    match code {
        // Not now.
        Code::OperationTimedOut
        | Code::RequestTimedOut
        | Code::CoordinatorLoadInProgress
        | Code::CoordinatorNotAvailable
        | Code::NotCoordinator
        | Code::WaitingForCoordinator
        | Code::UnstableOffsetCommit
        | Code::ConcurrentTransactions
        | Code::BrokerTransportFailure
        | Code::AllBrokersDown
        | Code::QueueFull
        | Code::Retry
        | Code::ThrottlingQuotaExceeded => Class::Retry,

        // This record, and only it, can never be written.
        Code::MessageSizeTooLarge
        | Code::InvalidMessageSize
        | Code::InvalidMessage
        | Code::InvalidRecord
        | Code::InvalidTimestamp
        | Code::MessageBatchTooLarge
        | Code::BadMessage => Class::Record,

        // A record failed with `Fatal` because its producer raised a fatal
        // error (fenced, or its sequence numbers out of step with a broker's
        // after a restart): the producer must be replaced, the topic is fine.
        Code::ProducerFenced | Code::InvalidProducerEpoch | Code::Fenced | Code::Fatal => {
            Class::Fenced
        }

        // The topic is gone or not ours; the cluster refuses us; the
        // configuration is broken.
        Code::UnknownTopicOrPartition
        | Code::UnknownTopic
        | Code::UnknownPartition
        | Code::UnknownTopicId
        | Code::InvalidTopic
        | Code::TopicAuthorizationFailed
        | Code::GroupAuthorizationFailed
        | Code::ClusterAuthorizationFailed
        | Code::TransactionalIdAuthorizationFailed
        | Code::SaslAuthenticationFailed
        | Code::Authentication
        | Code::PolicyViolation
        | Code::InvalidTransactionTimeout
        | Code::InvalidRequiredAcks
        | Code::UnsupportedVersion
        | Code::UnsupportedForMessageFormat
        | Code::UnsupportedCompressionType
        | Code::InvalidConfig
        | Code::InvalidArgument
        | Code::NotImplemented
        | Code::UnsupportedFeature => Class::Fatal,

        // Everything else, among them a delivery timed out, not enough
        // replicas, a leader moving, a rebalance, a transaction in a failed
        // state, records purged by an abort: this batch is lost, redo it.
        _ => Class::Redo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn produced(code: Code) -> Class {
        classify(&KafkaError::MessageProduction(code))
    }

    #[test]
    fn a_record_too_large_or_invalid_is_the_records_fault() {
        for code in [
            Code::MessageSizeTooLarge,
            Code::InvalidRecord,
            Code::InvalidMessage,
            Code::MessageBatchTooLarge,
        ] {
            assert_eq!(produced(code), Class::Record, "{code:?}");
        }
    }

    #[test]
    fn a_deleted_or_forbidden_topic_is_fatal() {
        for code in [
            Code::UnknownTopic,
            Code::UnknownTopicOrPartition,
            Code::TopicAuthorizationFailed,
            Code::GroupAuthorizationFailed,
            Code::TransactionalIdAuthorizationFailed,
        ] {
            assert_eq!(produced(code), Class::Fatal, "{code:?}");
        }
        assert_eq!(
            classify(&KafkaError::MessageConsumption(
                Code::UnknownTopicOrPartition
            )),
            Class::Fatal
        );
        assert_eq!(
            classify(&KafkaError::MessageConsumptionFatal(Code::FencedInstanceId)),
            Class::Fatal
        );
    }

    #[test]
    fn waiting_for_a_coordinator_or_a_broker_is_retried_in_place() {
        for code in [
            Code::CoordinatorLoadInProgress,
            Code::NotCoordinator,
            Code::UnstableOffsetCommit,
            Code::AllBrokersDown,
            Code::QueueFull,
        ] {
            assert_eq!(
                classify(&KafkaError::OffsetFetch(code)),
                Class::Retry,
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_lost_batch_is_redone() {
        for code in [
            Code::MessageTimedOut,
            Code::NotEnoughReplicas,
            Code::State,
            Code::PurgeQueue,
            Code::RebalanceInProgress,
            Code::IllegalGeneration,
            Code::OperationNotAttempted,
        ] {
            assert_eq!(produced(code), Class::Redo, "{code:?}");
        }
        assert_eq!(classify(&KafkaError::Canceled), Class::Redo);
    }

    #[test]
    fn a_fenced_producer_is_replaced() {
        assert_eq!(produced(Code::ProducerFenced), Class::Fenced);
        assert_eq!(produced(Code::Fenced), Class::Fenced);
        // A record of a producer in a fatal state (seen after broker
        // restarts: sequence numbers out of step) blames no topic.
        assert_eq!(produced(Code::Fatal), Class::Fenced);
        assert!(!is_fencing(&KafkaError::MessageProduction(Code::Fatal)));
        assert!(is_fencing(&KafkaError::MessageProduction(
            Code::ProducerFenced
        )));
        assert!(!is_fencing(&KafkaError::MessageProduction(
            Code::InvalidTransactionalState
        )));
    }

    #[test]
    fn an_unknown_error_is_redone_not_retried_forever() {
        assert_eq!(produced(Code::KafkaStorageError), Class::Redo);
        assert_eq!(classify(&KafkaError::Seek("whatever".into())), Class::Redo);
    }
}
