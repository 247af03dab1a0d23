//! Dead letters: an input record the engine sets aside instead of
//! processing, copied to `<input>.DLQ` with headers saying why and whence.
//!
//! A record is set aside when the task cannot make sense of it (poison: not
//! JSON, not a valid event) or when Kafka refuses for good what the task
//! wrote for it (a record too large for its topic): then the reason is
//! Kafka's. Either way the copy goes into the batch's transaction, and the
//! input's offset is committed like any other: a partition never gets stuck.

use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::task::SetAside;

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.DLQ")
}

/// Header names on dead letters.
pub mod dlq_headers {
    /// Why it was set aside.
    pub const ERROR: &str = "orderflow.error";
    /// Where it was read: topic, partition, offset.
    pub const TOPIC: &str = "orderflow.source.topic";
    pub const PARTITION: &str = "orderflow.source.partition";
    pub const OFFSET: &str = "orderflow.source.offset";
}

/// The reason written when Kafka refused a record the task wrote for an
/// input: which topic, and what Kafka said.
pub fn refused_reason(topic: &str, kafka_says: &str) -> String {
    format!("{topic} refused the record written for this event: {kafka_says}")
}

/// The dead letter of `message`: its key, payload and timestamp, to the
/// DLQ partition of the same number (the DLQ has the input's partition
/// count, so dead letters keep their order per source partition).
pub fn dead_letter<'a>(
    dlq: &'a str,
    message: &'a BorrowedMessage<'_>,
    error: &str,
    delivery_opaque: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    letter(
        dlq,
        message,
        message.key(),
        message.payload().unwrap_or_default(),
        error,
        delivery_opaque,
    )
}

/// The dead letter of what the task set aside while processing `message`
/// (a decision it cannot write): its own key and payload, with `message`
/// as the source that led to it.
pub fn set_aside_letter<'a>(
    dlq: &'a str,
    message: &'a BorrowedMessage<'_>,
    aside: &'a SetAside,
    delivery_opaque: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    letter(
        dlq,
        message,
        Some(&aside.key),
        &aside.payload,
        &aside.reason,
        delivery_opaque,
    )
}

fn letter<'a>(
    dlq: &'a str,
    message: &'a BorrowedMessage<'_>,
    key: Option<&'a [u8]>,
    payload: &'a [u8],
    error: &str,
    delivery_opaque: usize,
) -> BaseRecord<'a, [u8], [u8], usize> {
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: dlq_headers::ERROR,
            value: Some(error),
        })
        .insert(Header {
            key: dlq_headers::TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: dlq_headers::PARTITION,
            value: Some(&message.partition().to_string()),
        })
        .insert(Header {
            key: dlq_headers::OFFSET,
            value: Some(&message.offset().to_string()),
        });
    let mut record = BaseRecord::with_opaque_to(dlq, delivery_opaque)
        .partition(message.partition())
        .payload(payload)
        .headers(headers);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(timestamp) = message.timestamp().to_millis() {
        record = record.timestamp(timestamp);
    }
    record
}
