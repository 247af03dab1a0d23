//! The inventory service: consumes `OrderPlaced` events and publishes one
//! `InventoryChecked` per order, keyed by order id, deciding every order
//! against one stock per SKU, whatever the partition count. Three stages,
//! each on the stream engine, exactly-once by default, joined by internal
//! repartition topics as Kafka Streams joins sub-topologies (and as
//! Confluent's microservices example re-keys orders by product and joins
//! the results back by order id):
//!
//! ```text
//! OrderEvents ─▶ split (group <group>) ─▶ <group>-stock-repartition ─▶ stock (group <group>-stock) ─▶ <group>-orders-repartition ─▶ orders (group <group>-orders) ─▶ InventoryEvents
//!                an order's lines,         keyed by SKU                 one stock per SKU:              keyed by order id              an order's answers gathered:
//!                one request per SKU           ▲                        reserve or refuse a line                                       Reserved if every line is,
//!                                              └──────────── releases: what a rejected order's lines took ◀──────────────────────────── else Rejected
//! ```
//!
//! `split` (`split.rs`) keeps no state; `stock` (`stock.rs`) keeps the
//! levels of its SKUs (`<group>-stock-changelog`); `orders` (`orders.rs`)
//! keeps the orders with answers missing (`<group>-orders-changelog`, each
//! deleted once decided). Every hop is a transaction holding its input
//! offsets, outputs and state, so every stage survives SIGKILL and restores
//! its state; stock never goes below zero and no unit is leaked: a rejected
//! order's reserved lines are released in the transaction that rejects it.
//!
//! An order that is not JSON or not a valid `OrderPlaced` is dead-lettered
//! to `<orders-topic>.DLQ` and processing goes on.

mod orders;
mod split;
mod stock;

pub use stock::{read_change, StockChange};

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::latency::LatencySummary;
use crate::domain::stock::StockConfig;
use crate::engine::{self, EngineOptions, Guarantee, HoldBack};
use crate::error::{Error, Result};
use crate::kafka::admin::{Admin, TopicSpec};
use crate::metrics::Metrics;
use crate::services::stages;
use orders::OrdersTask;
use split::SplitTask;
use stock::StockTask;

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    pub orders_topic: String,
    pub inventory_topic: String,
    pub group: String,
    /// Stock requests the stock stage may have unread before the split
    /// stage holds back (`engine::HoldBack`).
    pub max_stock_lag: i64,
    /// Units on hand per SKU at start (each SKU's one stock).
    pub stock: StockConfig,
    pub guarantee: Guarantee,
    /// Distinguishes instances of one group (their transactional ids).
    pub instance_id: String,
    /// A batch run: stop once every order read is decided and every
    /// release applied; taking only some partitions is an error.
    pub exit_at_end: bool,
    /// How long a batch (transaction) collects records before it commits.
    pub commit_interval: Duration,
    /// Where the engines and the decisions are counted.
    pub metrics: Arc<Metrics>,
    /// The schema registry's framing and checks (`--schema-registry`);
    /// the default is plain JSON.
    pub schemas: crate::registry::Schemas,
}

/// What a run committed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InventorySummary {
    /// Orders read (dead letters included).
    pub consumed: u64,
    pub reserved: u64,
    pub rejected: u64,
    /// Orders that were not valid events, sent to the dead-letter topic.
    pub malformed: u64,
    /// Transactions (batches) committed and aborted, over the stages.
    pub transactions: u64,
    pub aborts: u64,
    /// How long it worked, and how old orders were when decided (from
    /// their creation to the decision, the last stage).
    pub busy: Duration,
    pub latency: LatencySummary,
}

/// How far the stock stage may be behind by default: 50,000 requests, about
/// as many orders in flight (a few tens of MB in the orders stage), a second
/// or more of the stock stage's work.
pub const MAX_STOCK_LAG: i64 = 50_000;

/// The internal topic from the split stage (and the orders stage's
/// releases) to the stock stage, keyed by SKU.
pub fn stock_topic(group: &str) -> String {
    format!("{group}-stock-repartition")
}

/// The internal topic from the stock stage to the orders stage, keyed by
/// order id.
pub fn orders_topic(group: &str) -> String {
    format!("{group}-orders-repartition")
}

/// The compacted topic holding the stock levels of `group`.
pub fn stock_changelog(group: &str) -> String {
    format!("{group}-stock-changelog")
}

/// The compacted topic holding the orders in flight of `group`.
pub fn orders_changelog(group: &str) -> String {
    format!("{group}-orders-changelog")
}

/// The consumer groups of the stock and orders stages.
pub fn stage_groups(group: &str) -> [String; 2] {
    [format!("{group}-stock"), format!("{group}-orders")]
}

/// Every internal topic inventory makes for `group` (beside the orders
/// topic's DLQ).
pub fn internal_topics(group: &str) -> Vec<String> {
    vec![
        stock_topic(group),
        orders_topic(group),
        stock_changelog(group),
        orders_changelog(group),
        engine::dlq_topic(&stock_topic(group)),
        engine::dlq_topic(&orders_topic(group)),
    ]
}

/// Makes `group`'s internal topics (those missing) for inventory over
/// `orders_topic`, and the orders topic's DLQ; returns the orders topic's
/// partitions. The API calls it too, to follow the stock changelog of an
/// inventory that may not have started yet: made here, they are the same
/// whichever service comes first.
pub async fn create_internal_topics(admin: &Admin, orders_topic: &str, group: &str) -> Result<i32> {
    let layout = admin.layout_once_visible(orders_topic).await?;
    let (partitions, replication) = (layout.partitions.len() as i32, layout.replication);
    // The internal topics have the input's partitions: as many tasks of
    // each stage as of the first can run in parallel.
    admin
        .create_topics(&[
            TopicSpec::new(stock_topic(group), partitions, replication),
            TopicSpec::new(self::orders_topic(group), partitions, replication),
        ])
        .await?;
    // An order's home in the orders stage is its partition number here.
    let homes = admin
        .partitions_once_visible(&self::orders_topic(group))
        .await?
        .len() as i32;
    if homes < partitions {
        return Err(Error::Config(format!(
            "{} has {homes} partitions, fewer than the {partitions} of {orders_topic}: \
             delete it (with the group's other internal topics) to have it made again",
            self::orders_topic(group),
        )));
    }
    admin.ensure_internal_topics(orders_topic, None).await?;
    admin
        .ensure_internal_topics(&stock_topic(group), Some(&stock_changelog(group)))
        .await?;
    admin
        .ensure_internal_topics(&self::orders_topic(group), Some(&orders_changelog(group)))
        .await?;
    Ok(partitions)
}

/// Runs until `shutdown` fires or, with `exit_at_end`, until every order
/// read is decided.
pub async fn run(
    settings: &KafkaSettings,
    options: &InventoryOptions,
    shutdown: &CancellationToken,
) -> Result<InventorySummary> {
    let admin = Admin::connect(settings)?;
    admin
        .partitions_once_visible(&options.inventory_topic)
        .await?;
    let group = &options.group;
    let partitions = create_internal_topics(&admin, &options.orders_topic, group).await?;

    let [stock_group, orders_group] = stage_groups(group);
    let stage = |group: &str, input: String, outputs: Vec<String>, changelog: Option<String>| {
        EngineOptions {
            group: group.to_owned(),
            input_topic: input,
            output_topics: outputs,
            changelog_topic: changelog,
            guarantee: options.guarantee,
            transactional_id: format!("orderflow-{group}-{}", options.instance_id),
            commit_interval: options.commit_interval,
            exit_at_end: options.exit_at_end,
            metrics: Arc::clone(&options.metrics),
            hold_back: None,
            schemas: options.schemas.clone(),
        }
    };
    // The split stage is by far the fastest: with a backlog it would send
    // the whole of it on at once, and the orders stage would hold every
    // order until the stock stage answers it. It waits instead while the
    // stock stage is far behind.
    let split_options = EngineOptions {
        hold_back: Some(HoldBack {
            group: stock_group.clone(),
            topic: stock_topic(group),
            max_lag: options.max_stock_lag,
        }),
        ..stage(
            group,
            options.orders_topic.clone(),
            vec![stock_topic(group), orders_topic(group)],
            None,
        )
    };
    let stock_options = stage(
        &stock_group,
        stock_topic(group),
        vec![orders_topic(group)],
        Some(stock_changelog(group)),
    );
    let orders_options = stage(
        &orders_group,
        orders_topic(group),
        vec![options.inventory_topic.clone(), stock_topic(group)],
        Some(orders_changelog(group)),
    );
    // Names this run in the markers of a batch run's end: those an earlier
    // run left (in the internal topics, restored from a changelog) do not
    // end this one.
    let run = format!(
        "{}-{}-{}",
        options.instance_id,
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    let mut split_task = SplitTask {
        run: run.clone(),
        stock_topic: stock_topic(group),
        orders_topic: orders_topic(group),
        stock_partitions: partitions,
        last_timestamp: Default::default(),
    };
    let mut stock_task = StockTask::new(
        stock_changelog(group),
        orders_topic(group),
        partitions,
        partitions,
        partitions,
        options.stock.clone(),
        run.clone(),
    );
    let mut orders_task = OrdersTask::new(
        orders_changelog(group),
        options.inventory_topic.clone(),
        stock_topic(group),
        partitions,
        run,
        Arc::clone(&options.metrics),
    );

    // One stop for all: a stage failing stops the others.
    let stop = shutdown.child_token();
    let split = {
        let (settings, stop) = (settings.clone(), stop.clone());
        crate::threads::run("inventory split", move || {
            let stats = engine::run(&settings, &split_options, &mut split_task, &stop)?;
            Ok((stats, ()))
        })
    };
    let stock = {
        let (settings, stop) = (settings.clone(), stop.clone());
        crate::threads::run("inventory stock", move || {
            let stats = engine::run(&settings, &stock_options, &mut stock_task, &stop)?;
            Ok((stats, ()))
        })
    };
    let orders = {
        let (settings, stop) = (settings.clone(), stop.clone());
        crate::threads::run("inventory orders", move || {
            let stats = engine::run(&settings, &orders_options, &mut orders_task, &stop)?;
            Ok((stats, orders_task))
        })
    };
    let covered = |stats: &engine::EngineStats, topic: &str| {
        stages::covered(stats, topic, partitions, options.exit_at_end)
    };
    let downstream = stages::side_by_side(&stop, stock, orders, |_| Ok(()));
    let ((split_stats, ()), ((stock_stats, ()), (orders_stats, orders_task))) =
        stages::side_by_side(&stop, split, downstream, |stats| {
            covered(stats, &options.orders_topic)
        })
        .await?;
    covered(&stock_stats, &stock_topic(group))?;
    covered(&orders_stats, &orders_topic(group))?;
    let decided = orders_task.decided();
    let all = [&split_stats, &stock_stats, &orders_stats];
    Ok(InventorySummary {
        consumed: split_stats.consumed,
        reserved: decided.reserved,
        rejected: decided.rejected,
        // Dead letters of every stage: a poison order, or an answer whose
        // decision Kafka refused.
        malformed: all.iter().map(|s| s.dead_lettered).sum(),
        transactions: all.iter().map(|s| s.commits).sum(),
        aborts: all.iter().map(|s| s.aborts).sum(),
        busy: all.iter().map(|s| s.busy).max().unwrap_or_default(),
        latency: orders_stats.latency,
    })
}
