//! Reading the one record at a given offset of each partition, for its
//! timestamp: lag in time is the age of a group's oldest unconsumed record,
//! the one at its committed offset.
//!
//! The reader is assigned partitions directly (it never joins a group and
//! never commits) and is kept between calls, so that `lag --watch` and the
//! dashboard do not build a client per refresh.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::error::{KafkaResultExt, Result};
use crate::kafka::clients;
use crate::kafka::context::Logged;
use crate::wait;

/// Reads single records by offset.
pub struct Peeker {
    consumer: BaseConsumer<Logged>,
    timeout: Duration,
}

impl Peeker {
    pub fn new(settings: &KafkaSettings) -> Result<Self> {
        // The services read committed records only: so does the age.
        let consumer = clients::assign_only_reader(
            settings,
            "orderflow-peek",
            &[
                // An offset no longer in the log (retention deleted it):
                // the oldest record still there is the oldest unconsumed.
                ("auto.offset.reset", "earliest"),
                // One record per partition is wanted, not a megabyte of
                // them (the broker still sends a larger first record whole).
                ("max.partition.fetch.bytes", "16384"),
                // At a partition's end, answer at once rather than holding
                // the fetch for librdkafka's default 500 ms.
                ("fetch.wait.max.ms", "10"),
            ],
        )
        .create_with_context(Logged)
        .while_("creating the record reader")?;
        Ok(Self {
            consumer,
            timeout: settings.timeout,
        })
    }

    /// The timestamp (ms since the epoch) of the first committed record at or
    /// after each given offset of `topic`; None for a partition with no
    /// such record (only transaction markers or aborted records there) or
    /// with no usable timestamp.
    pub fn timestamps(
        &self,
        topic: &str,
        offsets: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, Option<i64>>> {
        let mut found: BTreeMap<i32, Option<i64>> = offsets.keys().map(|&p| (p, None)).collect();
        if offsets.is_empty() {
            return Ok(found);
        }
        let mut list = TopicPartitionList::new();
        for (&p, &offset) in offsets {
            list.add_partition_offset(topic, p, Offset::Offset(offset))
                .while_("building the partitions to read")?;
        }
        self.consumer
            .assign(&list)
            .while_(format!("reading {topic}"))?;
        let mut pending: BTreeSet<i32> = offsets.keys().copied().collect();
        // Partitions not read by the deadline keep None.
        let _ = wait::until(self.timeout, Duration::ZERO, || {
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) if pending.remove(&message.partition()) => {
                    // No timestamp, or one at or before the epoch, says
                    // nothing about age: unknown rather than 56 years.
                    let timestamp = message.timestamp().to_millis().filter(|&t| t > 0);
                    found.insert(message.partition(), timestamp);
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    pending.remove(&p);
                }
                // Later records of a partition already read, or an error
                // librdkafka retries on its own: keep polling until the
                // deadline.
                _ => {}
            }
            Ok::<_, std::convert::Infallible>(pending.is_empty().then_some(()))
        });
        self.consumer
            .unassign()
            .while_(format!("done reading {topic}"))?;
        Ok(found)
    }
}
