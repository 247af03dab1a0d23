//! The services of the pipeline, each a loop that wires the domain to
//! Kafka: `produce` publishes generated orders, `inventory` turns orders into
//! stock decisions, `analytics` turns decisions into a report, and `api`
//! takes orders over HTTP and answers what became of them. `stats` is what
//! each says about a run when asked (`--stats-file`).

pub mod analytics;
pub mod api;
pub mod inventory;
pub mod produce;
pub mod stages;
pub mod stats;

/// Every (consumer group, input topic) of the pipeline, in the order a
/// record flows through them: inventory's split, stock and orders stages,
/// the stock stage again (the orders stage's releases), then analytics'
/// counts and merge stages. Each caught up, taken in this order, means
/// everything upstream of it was processed: the pipeline is drained.
pub fn flow(
    orders_topic: &str,
    inventory_topic: &str,
    inventory_group: &str,
    analytics_group: &str,
) -> Vec<(String, String)> {
    let [stock_group, orders_group] = inventory::stage_groups(inventory_group);
    let stock = (stock_group, inventory::stock_topic(inventory_group));
    vec![
        (inventory_group.to_owned(), orders_topic.to_owned()),
        stock.clone(),
        (orders_group, inventory::orders_topic(inventory_group)),
        stock,
        (analytics_group.to_owned(), inventory_topic.to_owned()),
        (
            analytics::merge_group(analytics_group),
            analytics::merge_topic(analytics_group),
        ),
    ]
}
