//! The order producer: publishes generated `OrderPlaced` events, keyed by
//! order id, through an idempotent producer, optionally at a fixed rate.
//!
//! Guarantee: when `run` returns Ok, every event it counts was acknowledged by
//! all in-sync replicas, exactly once in the log (idempotence removes the
//! duplicates librdkafka's own retries could cause). Running it twice with the
//! same seed publishes the same orders twice: the seed decides the content,
//! not whether it was already sent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use indicatif::ProgressBar;
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::OrderPlaced;
use crate::domain::generator::{GeneratorConfig, OrderGenerator};
use crate::error::Result;
use crate::kafka::admin::Admin;
use crate::kafka::context::Measured;
use crate::kafka::producer::{self, acknowledged, check_delivery};
use crate::metrics::{Metrics, TopicLabel};
use crate::registry::Schemas;

/// Deliveries awaited at most at once; bounds memory and keeps errors prompt,
/// well below librdkafka's local queue (100,000 messages by default).
const MAX_IN_FLIGHT: usize = 20_000;

#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub topic: String,
    pub count: u64,
    pub generator: GeneratorConfig,
    /// Events per second of wall-clock time; None publishes as fast as possible.
    pub rate: Option<f64>,
    /// Where acknowledged events and librdkafka's statistics are counted.
    pub metrics: Arc<Metrics>,
    /// The schema registry's framing and checks (`--schema-registry`);
    /// the default is plain JSON.
    pub schemas: crate::registry::Schemas,
}

/// What a run published.
#[derive(Debug, Clone, Copy)]
pub struct ProduceSummary {
    /// Events acknowledged by the broker.
    pub events: u64,
    pub elapsed: Duration,
}

impl ProduceSummary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes `count` orders; stops early (after flushing) when `shutdown` fires.
pub async fn run(
    settings: &KafkaSettings,
    options: &ProduceOptions,
    progress: &ProgressBar,
    shutdown: &CancellationToken,
) -> Result<ProduceSummary> {
    Admin::connect(settings)?
        .partitions_once_visible(&options.topic)
        .await?;
    let producer = producer::idempotent_measured(settings, &options.metrics)?;
    let topic = options.topic.as_str();
    let produced = options
        .metrics
        .events_produced
        .get_or_create_owned(&TopicLabel {
            topic: topic.to_owned(),
        });
    let acknowledged_one = |events: &mut u64| {
        *events += 1;
        produced.inc();
        progress.inc(1);
    };
    producer::connect(&producer, topic, settings.timeout).await?;
    let mut orders = OrderGenerator::new(options.generator.clone()).take(options.count as usize);
    let mut events = 0;
    // The first order goes alone, and is awaited before the clock starts: an
    // idempotent producer asks the broker for its producer id only once a
    // record is queued, and records queued meanwhile wait for it (half a
    // second and more on a busy broker) while their timestamps run, which
    // showed as the whole latency tail of a rate-limited run.
    if let Some(first) = orders.next() {
        acknowledged(
            send_order(&producer, topic, &first, &options.schemas).await?,
            topic,
        )
        .await?;
        acknowledged_one(&mut events);
    }
    let started = Instant::now();
    let mut pending = VecDeque::with_capacity(MAX_IN_FLIGHT);
    for (sent, order) in orders.enumerate() {
        if shutdown.is_cancelled() {
            tracing::info!(sent, "stopping early: shutdown requested");
            break;
        }
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(sent as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        pending.push_back(send_order(&producer, topic, &order, &options.schemas).await?);
        // Count what the broker has acknowledged so far, without waiting;
        // wait only when too many deliveries are outstanding.
        loop {
            let full = pending.len() >= MAX_IN_FLIGHT;
            let Some(oldest) = pending.front_mut() else {
                break;
            };
            let delivery = if full {
                Some(oldest.await)
            } else {
                oldest.now_or_never()
            };
            let Some(delivery) = delivery else { break };
            pending.pop_front();
            check_delivery(delivery, topic)?;
            acknowledged_one(&mut events);
        }
    }
    for delivery in pending {
        acknowledged(delivery, topic).await?;
        acknowledged_one(&mut events);
    }
    Ok(ProduceSummary {
        events,
        elapsed: started.elapsed(),
    })
}

/// Hands one order to librdkafka, keyed by its id (framed with its
/// schema's id with `--schema-registry`).
async fn send_order(
    producer: &producer::Producer<Measured>,
    topic: &str,
    order: &OrderPlaced,
    schemas: &Schemas,
) -> Result<DeliveryFuture> {
    let key = order.order_id.to_string();
    let payload = schemas.frame(topic, order.encode());
    let record = FutureRecord::to(topic)
        .key(key.as_bytes())
        .payload(payload.as_slice());
    producer::send(producer, record).await
}
