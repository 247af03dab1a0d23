//! The inventory service: consumes `OrderPlaced` events, decides each against
//! the stock, and publishes one `InventoryChecked` per order, keyed by order
//! id. It runs on the stream engine (`crate::engine`), exactly-once by default.
//!
//! Stock is sharded by order partition, as Kafka Streams keeps state per task:
//! each partition of the orders topic has its own share of every SKU's units
//! (`StockConfig::shard`), decided only by that partition's orders in their
//! log order. Every reservation writes the new levels to the compacted
//! changelog `<group>-stock-changelog` (partition = order partition) in the
//! same transaction as the outputs and input offsets, and an assigned
//! partition's stock is rebuilt from it. So a restarted or rebalanced instance
//! decides every order exactly as an uninterrupted one would, and stock never
//! goes below zero.
//!
//! An order that is not JSON or not a valid `OrderPlaced` is dead-lettered to
//! `<orders-topic>.DLQ` in the same transaction and processing goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::{InventoryChecked, OrderPlaced, Status, SCHEMA_VERSION};
use crate::domain::latency::LatencySummary;
use crate::domain::stock::{Inventory, StockConfig};
use crate::engine::{self, EngineOptions, Guarantee, OutRecord, Poison, Task, Versioned};
use crate::error::Result;
use crate::kafka::admin::Admin;
use crate::metrics::{DecisionLabel, Metrics};

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub orders_topic: String,
    pub inventory_topic: String,
    pub group: String,
    /// The whole stock, split across the order partitions.
    pub stock: StockConfig,
    pub guarantee: Guarantee,
    /// Distinguishes instances of one group (their transactional ids).
    pub instance_id: String,
    /// Stop once every assigned partition has been read to its end.
    pub exit_at_end: bool,
    /// How long a batch (transaction) collects orders before it commits.
    pub commit_interval: Duration,
    /// Where the engine and the decisions are counted.
    pub metrics: Arc<Metrics>,
}

/// What a run committed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InventorySummary {
    pub consumed: u64,
    pub reserved: u64,
    pub rejected: u64,
    /// Orders that were not valid events, sent to the dead-letter topic.
    pub malformed: u64,
    pub transactions: u64,
    pub aborts: u64,
    /// How long it worked and how old orders were when decided.
    pub busy: Duration,
    pub latency: LatencySummary,
}

/// The compacted topic holding the stock levels of `group`.
pub fn stock_changelog(group: &str) -> String {
    format!("{group}-stock-changelog")
}

/// Runs until `shutdown` fires or, with `exit_at_end`, until caught up.
pub async fn run(
    settings: &KafkaSettings,
    options: &InventoryOptions,
    shutdown: &CancellationToken,
) -> Result<InventorySummary> {
    let admin = Admin::connect(settings)?;
    let shards = admin
        .partitions_once_visible(&options.orders_topic)
        .await?
        .len() as u32;
    admin
        .partitions_once_visible(&options.inventory_topic)
        .await?;
    let changelog = stock_changelog(&options.group);
    admin
        .ensure_internal_topics(&options.orders_topic, Some(&changelog))
        .await?;

    let engine_options = EngineOptions {
        group: options.group.clone(),
        input_topic: options.orders_topic.clone(),
        output_topics: vec![options.inventory_topic.clone()],
        changelog_topic: Some(changelog.clone()),
        guarantee: options.guarantee,
        transactional_id: format!("orderflow-{}-{}", options.group, options.instance_id),
        commit_interval: options.commit_interval,
        exit_at_end: options.exit_at_end,
        metrics: Arc::clone(&options.metrics),
    };
    let mut task = InventoryTask {
        stock: options.stock.clone(),
        shards,
        output_topic: options.inventory_topic.clone(),
        changelog_topic: changelog,
        state: Versioned::default(),
        metrics: Arc::clone(&options.metrics),
    };
    let (settings, stop) = (settings.clone(), shutdown.clone());
    crate::threads::run("inventory engine", move || {
        let stats = engine::run(&settings, &engine_options, &mut task, &stop)?;
        let counts = task.state.committed();
        Ok(InventorySummary {
            consumed: stats.consumed,
            reserved: counts.reserved,
            rejected: counts.rejected,
            malformed: stats.dead_lettered,
            transactions: stats.commits,
            aborts: stats.aborts,
            busy: stats.busy,
            latency: stats.latency,
        })
    })
    .await
}

/// The inventory's state: a stock shard per assigned order partition.
#[derive(Debug, Clone, Default)]
struct InventoryState {
    shards: BTreeMap<i32, Inventory>,
    reserved: u64,
    rejected: u64,
}

struct InventoryTask {
    stock: StockConfig,
    shards: u32,
    output_topic: String,
    changelog_topic: String,
    state: Versioned<InventoryState>,
    metrics: Arc<Metrics>,
}

impl Task for InventoryTask {
    fn assigned(&mut self, partition: i32) {
        let shard = Inventory::new(self.stock.shard(partition as u32, self.shards));
        self.state.both_mut(|s| {
            s.shards.insert(partition, shard.clone());
        });
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let (Ok(sku), Ok(units)) = (
            std::str::from_utf8(key),
            serde_json::from_slice::<u64>(value),
        ) else {
            tracing::warn!(partition, "ignoring an unreadable stock changelog record");
            return;
        };
        self.state.both_mut(|s| {
            if let Some(shard) = s.shards.get_mut(&partition) {
                shard.set_level(sku, units);
            }
        });
    }

    fn revoked(&mut self, partition: i32) {
        self.state.both_mut(|s| {
            s.shards.remove(&partition);
        });
    }

    fn process(
        &mut self,
        partition: i32,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let order = OrderPlaced::decode(payload).map_err(|e| Poison(e.to_string()))?;
        let state = self.state.working_mut();
        let shard = state
            .shards
            .get_mut(&partition)
            .expect("only assigned partitions are processed");
        let decision = shard.decide(&order);
        if decision.status == Status::Reserved {
            state.reserved += 1;
            // The new level of every SKU the order took from.
            for item in &order.items {
                out.push(OutRecord {
                    topic: self.changelog_topic.clone(),
                    partition: Some(partition),
                    key: item.sku.clone().into_bytes(),
                    payload: shard.level(&item.sku).to_string().into_bytes(),
                });
            }
        } else {
            state.rejected += 1;
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
        out.push(OutRecord {
            topic: self.output_topic.clone(),
            partition: None,
            key: order.order_id.to_string().into_bytes(),
            payload: outcome.encode(),
        });
        Ok(())
    }

    fn commit(&mut self) {
        let (working, committed) = (self.state.working(), self.state.committed());
        for (status, now, before) in [
            ("reserved", working.reserved, committed.reserved),
            ("rejected", working.rejected, committed.rejected),
        ] {
            self.metrics
                .decisions
                .get_or_create(&DecisionLabel { status })
                .inc_by(now - before);
        }
        self.state.commit();
    }

    fn rollback(&mut self) {
        self.state.rollback();
    }
}
