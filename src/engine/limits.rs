//! How large a record the topics the engine writes to take, and whether a
//! record fits, known before sending it.
//!
//! A broker refuses a record batch larger than its topic's
//! `max.message.bytes` (the batch header included), and in a transaction
//! that refusal fails the whole transaction. Two things follow, both here:
//! - the producer's batches are capped at the smallest limit
//!   ([`Limits::batch_cap`]), so that a refused batch holds one record, the
//!   one at fault, and never records that fit on their own;
//! - a record is measured before it is sent ([`record_batch_bytes`]: the
//!   exact size of an uncompressed one-record batch, the unit the broker
//!   checks): one too large for its topic is set aside at once, not after
//!   an abort per record the broker refuses.
//!
//! The limits are read from the cluster at start and again whenever the
//! broker refuses a record as too large (a topic's limit may be lowered
//! while the service runs). With compression on, sizes are not known
//! before sending and the broker is the only judge.

use std::collections::BTreeMap;

/// librdkafka's default `batch.size`: a cap above it changes nothing.
const LIBRDKAFKA_BATCH_SIZE: usize = 1_000_000;

/// The record size limits of the topics the engine writes to.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Each topic's `max.message.bytes`; a topic missing here could not
    /// be read (no DescribeConfigs permission).
    per_topic: BTreeMap<String, usize>,
    /// Whether records are compressed (`-X compression.type`): then their
    /// size on the wire is not known before sending.
    compressed: bool,
}

impl Limits {
    pub fn new(per_topic: BTreeMap<String, usize>, compressed: bool) -> Self {
        Self {
            per_topic,
            compressed,
        }
    }

    /// The producer's `batch.size`: the smallest limit, when it is below
    /// librdkafka's default.
    pub fn batch_cap(&self) -> Option<usize> {
        self.per_topic
            .values()
            .copied()
            .min()
            .filter(|&limit| limit < LIBRDKAFKA_BATCH_SIZE)
    }

    /// Whether a one-record batch of `size` bytes fits `topic`'s limit, as
    /// far as known (an unknown limit: no).
    pub fn fits(&self, topic: &str, size: usize) -> bool {
        self.per_topic
            .get(topic)
            .is_some_and(|&limit| size <= limit)
    }

    /// Why a record of `size` bytes cannot go to `topic`, when it is
    /// known now that it cannot.
    pub fn too_large(&self, topic: &str, size: usize) -> Option<String> {
        if self.compressed {
            return None;
        }
        let limit = *self.per_topic.get(topic)?;
        (size > limit).then(|| {
            format!(
                "the record written for this event to {topic} is {size} bytes as a record batch, \
                 over the topic's max.message.bytes of {limit}: Kafka refuses it as too large"
            )
        })
    }
}

/// The size in bytes of a record batch (message format v2, uncompressed)
/// holding one record with a key and value of these lengths (None: null)
/// and these headers: the number the broker compares with
/// `max.message.bytes`.
pub fn record_batch_bytes(
    key: Option<usize>,
    value: Option<usize>,
    headers: &[(usize, Option<usize>)],
) -> usize {
    /// Offset, length, leader epoch, magic, CRC, attributes, last offset
    /// delta, first and max timestamp, producer id and epoch, base
    /// sequence, record count.
    const BATCH_HEADER: usize = 8 + 4 + 4 + 1 + 4 + 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
    let bytes = |len: Option<usize>| match len {
        Some(len) => varint_len(len as i64) + len,
        None => varint_len(-1),
    };
    // Attributes, then the timestamp and offset deltas (0 in a batch of one).
    let mut body = 1 + varint_len(0) + varint_len(0);
    body += bytes(key) + bytes(value) + varint_len(headers.len() as i64);
    for &(name, value) in headers {
        body += bytes(Some(name)) + bytes(value);
    }
    BATCH_HEADER + varint_len(body as i64) + body
}

/// Bytes of a zigzag varint (Kafka's record fields).
fn varint_len(value: i64) -> usize {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    let mut len = 1;
    while zigzag >= 0x80 {
        zigzag >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_have_kafkas_lengths() {
        for (value, len) in [
            (0, 1),
            (-1, 1),
            (63, 1),
            (64, 2),
            (-65, 2),
            (8191, 2),
            (8192, 3),
        ] {
            assert_eq!(varint_len(value), len, "{value}");
        }
    }

    #[test]
    fn a_one_record_batch_is_its_header_and_its_record() {
        // Null key and value, no headers: a 6-byte record, 1 byte of length.
        assert_eq!(record_batch_bytes(None, None, &[]), 61 + 7);
        // A 36-byte key (an order id) and a 200-byte value: the record is
        // 3 + 1+36 + 2+200 + 1 = 243 bytes, its length 2 bytes.
        assert_eq!(record_batch_bytes(Some(36), Some(200), &[]), 61 + 2 + 243);
        // A header "e" = "xy" adds 1+1 + 1+2 bytes.
        assert_eq!(
            record_batch_bytes(None, None, &[(1, Some(2))]),
            record_batch_bytes(None, None, &[]) + 5
        );
    }

    #[test]
    fn only_known_limits_are_judged_and_capped() {
        let limits = Limits::new(
            BTreeMap::from([("small".to_string(), 300), ("big".to_string(), 1_048_588)]),
            false,
        );
        assert_eq!(limits.batch_cap(), Some(300));
        assert!(limits.fits("small", 300));
        assert!(!limits.fits("small", 301));
        assert!(!limits.fits("unknown", 1), "an unknown limit is no promise");
        assert!(limits
            .too_large("small", 301)
            .unwrap()
            .contains("max.message.bytes of 300"));
        assert_eq!(limits.too_large("small", 300), None);
        assert_eq!(limits.too_large("unknown", 10_000_000), None);
        let defaults = Limits::new(BTreeMap::from([("big".to_string(), 1_048_588)]), false);
        assert_eq!(defaults.batch_cap(), None);
        let compressed = Limits::new(BTreeMap::from([("small".to_string(), 300)]), true);
        assert_eq!(
            compressed.too_large("small", 10_000),
            None,
            "the broker judges"
        );
    }
}
