//! The producer every service writes with, and sending without waiting for
//! each acknowledgement.
//!
//! Awaiting every delivery before sending the next message caps throughput at
//! one round trip per event. Instead callers keep many deliveries in flight and
//! check them as they complete, in order; the output counts as written only
//! once its delivery future says the broker acknowledged it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use crate::config::overrides::{self, Promise};
use crate::config::KafkaSettings;
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::clients;
use crate::kafka::context::{Logged, Measured, ReportStatistics};
use crate::metrics::{ClientRole, Metrics};

/// A producer whose context is `C`: `Logged`, or `Measured` for a service
/// whose metrics take librdkafka's statistics.
pub type Producer<C = Logged> = FutureProducer<C>;

/// An idempotent producer that waits for all in-sync replicas; `-X`
/// properties that would void that are refused.
pub fn idempotent(settings: &KafkaSettings) -> Result<Producer> {
    overrides::check(&settings.overrides, Promise::IdempotentWrites)?;
    idempotent_config(settings)
        .create_with_context(Logged)
        .while_("creating the producer")
}

/// The same producer, reporting librdkafka's statistics to `metrics` when
/// they are served.
pub fn idempotent_measured(
    settings: &KafkaSettings,
    metrics: &Arc<Metrics>,
) -> Result<Producer<Measured>> {
    overrides::check(&settings.overrides, Promise::IdempotentWrites)?;
    idempotent_config(settings)
        .report_statistics_to(metrics)
        .create_with_context(Measured {
            role: ClientRole::Producer,
            metrics: Arc::clone(metrics),
        })
        .while_("creating the producer")
}

/// The same producer for a caller that answers someone waiting (the API's
/// requests): a delivery fails after `timeout`, so the wait is bounded by
/// it, not by the minute the services allow.
pub fn idempotent_within(settings: &KafkaSettings, timeout: Duration) -> Result<Producer> {
    overrides::check(&settings.overrides, Promise::IdempotentWrites)?;
    let timeout_ms = timeout.as_millis().to_string();
    clients::idempotent_producer(settings, &timeout_ms, &[])
        .create_with_context(Logged)
        .while_("creating the producer")
}

fn idempotent_config(settings: &KafkaSettings) -> ClientConfig {
    // A delivery gives up after a minute rather than librdkafka's five, so
    // a lost cluster becomes an error the user sees in bounded time.
    clients::idempotent_producer(settings, "60000", &[])
}

/// Connects `producer` to the leaders of `topic` before the first send.
///
/// librdkafka connects lazily: the first records wait in its queue for
/// the connection, the topic's metadata and (idempotence) a producer id,
/// close to a second on a busy broker, while their timestamps already run.
/// Fetching the topic's metadata through the producer does that work
/// first, so a rate-limited run's first orders are not born late.
pub async fn connect<C: ClientContext + 'static>(
    producer: &Producer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<()> {
    let (producer, topic) = (producer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), timeout)
            .map(drop)
            .while_(format!("connecting the producer to {topic}"))
    })
    .await
    .map_err(|e| Error::Panicked {
        what: "connecting the producer".into(),
        cause: e.to_string(),
    })?
}

/// Hands a record to librdkafka and returns the future of its delivery.
///
/// When librdkafka's local queue is full the record is retried after a short
/// pause: the queue drains on librdkafka's own threads, so waiting is enough.
pub async fn send<'a, C: ClientContext + 'static>(
    producer: &Producer<C>,
    mut record: FutureRecord<'a, [u8], [u8]>,
) -> Result<DeliveryFuture> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((error, returned)) => {
                return Err(Error::Delivery {
                    topic: returned.topic.to_owned(),
                    cause: error,
                })
            }
        }
    }
}

/// Waits for one delivery and turns a failure into an error naming the topic.
pub async fn acknowledged(delivery: DeliveryFuture, topic: &str) -> Result<()> {
    check_delivery(delivery.await, topic)
}

/// What a finished delivery future says: acknowledged, or an error naming the topic.
pub fn check_delivery(outcome: <DeliveryFuture as Future>::Output, topic: &str) -> Result<()> {
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((cause, _message))) => Err(Error::Delivery {
            topic: topic.to_owned(),
            cause,
        }),
        // The producer was dropped with the message still queued.
        Err(_canceled) => Err(Error::Delivery {
            topic: topic.to_owned(),
            cause: KafkaError::Canceled,
        }),
    }
}
