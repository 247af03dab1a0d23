//! Following a topic into the API's views: a reader assigned every
//! partition of the topic from its beginning (it never joins a group or
//! commits: every API instance reads everything, so any instance answers
//! for any order), read_committed as the services read, on a thread of its
//! own, each record decoded and applied to the views.
//!
//! A record that is not a valid event is skipped: inventory dead-letters
//! it, and it is no order to answer for. (The same goes for the engine's
//! own records in the changelogs: offset markers, resets.) An error the
//! cluster will never get over (the topic deleted, reading it forbidden)
//! ends the follower, and the API with it, naming the topic; lost
//! connections are retried by librdkafka.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::views::{Update, Views};
use crate::config::KafkaSettings;
use crate::engine::{classify, Class};
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::clients;
use crate::kafka::context::Logged;
use crate::registry::Schemas;

/// Records applied under one lock of the views at most.
const BATCH: usize = 1_000;

/// What a follower reads, and how its records become updates.
pub struct Followed {
    pub topic: String,
    pub partitions: Vec<i32>,
    /// A record's key and payload (empty: a tombstone) as an update;
    /// None: not a valid event of the topic, or not one the views keep.
    pub decode: fn(&[u8], &[u8]) -> Option<Update>,
    /// Framed values are checked against their schemas first (one that
    /// fails is skipped: inventory dead-letters it).
    pub schemas: Schemas,
}

/// Reads `followed` into `views` until `stop` fires; tells the views once
/// it has read every partition to the end it had at start.
pub fn follow(
    settings: &KafkaSettings,
    followed: &Followed,
    views: &Views,
    stop: &CancellationToken,
) -> Result<()> {
    let topic = followed.topic.as_str();
    let consumer: BaseConsumer<Logged> = clients::assign_only_reader(
        settings,
        "orderflow-api-views",
        &[
            // A decision is read back well within a long poll: a fetch at
            // a partition's end waits at most 100 ms for more, not 500.
            ("fetch.wait.max.ms", "100"),
            // Prefetch as the engine's consumers do (README: Performance):
            // a view catching up on history holds a full queue.
            ("queued.max.messages.kbytes", clients::PREFETCH_KBYTES),
            ("fetch.queue.backoff.ms", clients::FETCH_QUEUE_BACKOFF_MS),
        ],
    )
    .create_with_context(Logged)
    .while_("creating the views' reader")?;
    let mut list = TopicPartitionList::new();
    for &p in &followed.partitions {
        list.add_partition_offset(topic, p, Offset::Beginning)
            .while_("building the views' assignment")?;
    }
    consumer.assign(&list).while_(format!("reading {topic}"))?;

    let mut behind: BTreeSet<i32> = followed.partitions.iter().copied().collect();
    let mut caught_up = behind.is_empty();
    if caught_up {
        views.caught_up();
    }
    let mut updates = Vec::with_capacity(BATCH);
    while !stop.is_cancelled() {
        let mut wait = Duration::from_millis(100);
        while updates.len() < BATCH {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(record)) => {
                    let key = record.key().unwrap_or_default();
                    let payload = record.payload().unwrap_or_default();
                    if let Ok(json) = followed.schemas.read(payload)? {
                        updates.extend((followed.decode)(key, json));
                    }
                }
                // The end, under read_committed: the last stable offset.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    behind.remove(&partition);
                }
                Some(Err(error)) if classify(&error) == Class::Fatal => {
                    return Err(Error::TopicRefused {
                        topic: topic.to_owned(),
                        reason: error.to_string(),
                    });
                }
                Some(Err(error)) => tracing::debug!(topic, %error, "views read error"),
            }
            // What is already fetched is applied with this batch.
            wait = Duration::ZERO;
        }
        views.apply(updates.drain(..))?;
        if !caught_up && behind.is_empty() {
            caught_up = true;
            let orders = views.len()?;
            tracing::info!(topic, orders, "the views have caught up");
            views.caught_up();
        }
    }
    Ok(())
}
