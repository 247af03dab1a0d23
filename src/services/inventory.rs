//! The inventory service: consumes `OrderPlaced` events, decides each against
//! the stock table, and publishes one `InventoryChecked` per order, keyed by
//! order id.
//!
//! Guarantee: at-least-once. An order's input offset is committed only after
//! the broker acknowledged its output and the outputs of every earlier order
//! on that partition (deliveries are awaited in the order they were sent). A
//! crash between the two re-processes the uncommitted orders, which can
//! publish a second `InventoryChecked` for them; nothing is ever skipped.
//! Stock levels live in memory and start afresh on every run.
//!
//! A malformed order (not JSON, or not a valid `OrderPlaced`) is logged with
//! its topic, partition and offset, counted, and passed over; its offset is
//! committed like any other, so it never blocks the partition.

use std::time::Duration;

use chrono::Utc;
use futures::future::{self, BoxFuture};
use futures::stream::{FuturesOrdered, StreamExt};
use futures::FutureExt;
use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::FutureRecord;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::{InventoryChecked, OrderPlaced, SCHEMA_VERSION};
use crate::domain::stock::{Inventory, StockConfig};
use crate::error::Result;
use crate::kafka::admin::Admin;
use crate::kafka::consumer::{self, CaughtUp, OffsetBook};
use crate::kafka::producer::{self, acknowledged, Producer};

/// Orders whose output is not yet acknowledged, at most; past this the
/// service stops reading until acknowledgements catch up.
const MAX_IN_FLIGHT: usize = 20_000;

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub orders_topic: String,
    pub inventory_topic: String,
    pub group: String,
    pub stock: StockConfig,
    /// Stop once every assigned partition has been read to its end.
    pub exit_at_end: bool,
    /// How often finished offsets are committed while running.
    pub commit_interval: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InventorySummary {
    pub consumed: u64,
    pub reserved: u64,
    pub rejected: u64,
    pub malformed: u64,
}

/// An input offset that is finished once its future resolves.
type Pending = BoxFuture<'static, Result<(i32, i64)>>;

/// Runs until `shutdown` fires or, with `exit_at_end`, until caught up; then
/// waits for outstanding acknowledgements and commits.
pub async fn run(
    settings: &KafkaSettings,
    options: &InventoryOptions,
    shutdown: &CancellationToken,
) -> Result<InventorySummary> {
    let admin = Admin::connect(settings)?;
    admin.partitions(&options.orders_topic)?;
    admin.partitions(&options.inventory_topic)?;
    let consumer = consumer::subscribe(settings, &options.group, &options.orders_topic)?;
    let producer = producer::idempotent(settings)?;

    let mut inventory = Inventory::new(options.stock.clone());
    let mut summary = InventorySummary::default();
    let mut book = OffsetBook::new(&options.orders_topic);
    let mut caught_up = CaughtUp::default();
    let mut in_flight: FuturesOrdered<Pending> = FuturesOrdered::new();
    let mut commit_timer = tokio::time::interval(options.commit_interval);

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(finished) = in_flight.next() => {
                let (partition, offset) = finished?;
                book.done(partition, offset);
            }
            _ = commit_timer.tick() => book.commit(&consumer, CommitMode::Async)?,
            received = consumer.recv(), if in_flight.len() < MAX_IN_FLIGHT => match received {
                Ok(message) => {
                    summary.consumed += 1;
                    let pending =
                        process(&message, &mut inventory, &producer, options, &mut summary).await?;
                    in_flight.push_back(pending);
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    caught_up.reached_end(partition);
                    if options.exit_at_end && caught_up.all(&consumer) {
                        break;
                    }
                }
                // librdkafka retries what can be retried; report and go on.
                Err(error) => tracing::warn!(%error, "consumer error"),
            },
        }
    }

    while let Some(finished) = in_flight.next().await {
        let (partition, offset) = finished?;
        book.done(partition, offset);
    }
    book.commit(&consumer, CommitMode::Sync)?;
    Ok(summary)
}

/// Decides one order and sends its outcome; returns the future that resolves
/// once the outcome is acknowledged (at once for a malformed order).
async fn process(
    message: &BorrowedMessage<'_>,
    inventory: &mut Inventory,
    producer: &Producer,
    options: &InventoryOptions,
    summary: &mut InventorySummary,
) -> Result<Pending> {
    let (partition, offset) = (message.partition(), message.offset());
    let order = match OrderPlaced::decode(message.payload().unwrap_or_default()) {
        Ok(order) => order,
        Err(error) => {
            summary.malformed += 1;
            tracing::warn!(
                topic = message.topic(),
                partition,
                offset,
                %error,
                "skipping malformed order event"
            );
            return Ok(future::ready(Ok((partition, offset))).boxed());
        }
    };
    let decision = inventory.decide(&order);
    match decision.reason {
        None => summary.reserved += 1,
        Some(_) => summary.rejected += 1,
    }
    let outcome = InventoryChecked {
        event_type: InventoryChecked::EVENT_TYPE.into(),
        schema_version: SCHEMA_VERSION,
        order_id: order.order_id,
        status: decision.status,
        reason: decision.reason,
        detail: decision.detail,
        event_time: order.event_time,
        processed_at: Utc::now(),
    };
    let key = order.order_id.to_string();
    let payload = outcome.encode();
    let topic = options.inventory_topic.clone();
    let record = FutureRecord::to(&topic)
        .key(key.as_bytes())
        .payload(payload.as_slice());
    let delivery = producer::send(producer, record).await?;
    Ok(async move {
        acknowledged(delivery, &topic).await?;
        Ok((partition, offset))
    }
    .boxed())
}
