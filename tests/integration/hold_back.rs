//! Flow control inside inventory: with a backlog of orders waiting, the
//! split stage (by far the fastest) stops reading while the stock stage has
//! more than `--max-stock-lag` requests unread, so the orders in flight stay
//! bounded; every order is still answered exactly once.
//! kafka-consumer-groups judges the stock stage's lag.

use std::collections::BTreeSet;

use crate::common::{json, signal, wait_until, Names};

#[test]
fn the_split_stage_waits_while_the_stock_stage_is_far_behind() {
    const ORDERS: usize = 20_000;
    const MAX_LAG: i64 = 1_000;
    let names = Names::new("hold-back");
    names.create_topics_with(&["--partitions", "4"]);
    // The whole backlog first: without holding back, the split stage would
    // send all of its 50,000 or so requests on at once.
    names.produce(ORDERS as u64, 71);
    let mut args = names.inventory_args();
    let max_lag = MAX_LAG.to_string();
    args.extend(["--max-stock-lag", &max_lag, "--instance-id", "held"]);
    let service = names.cluster.spawn_service(&args);

    let [stock_group, _] = orderflow::services::inventory::stage_groups(&names.inventory_group);
    let stock_topic = orderflow::services::inventory::stock_topic(&names.inventory_group);
    let (mut peak, mut samples) = (0, 0);
    wait_until("inventory has drained", || {
        // Unread requests, as kafka-consumer-groups counts them (from the
        // log end, which counts transaction markers and open transactions
        // too); a partition with nothing committed yet, from its start.
        let lag: i64 = names
            .cluster
            .describe_group(&stock_group)
            .iter()
            .filter(|row| row.topic == stock_topic)
            .map(|row| row.log_end - row.current.unwrap_or(0))
            .sum();
        peak = peak.max(lag);
        samples += 1;
        names.drained(false)
    });
    assert!(signal(service, "TERM").status.success());

    let answered: BTreeSet<String> = names
        .cluster
        .read_topic(&names.inventory, ORDERS)
        .iter()
        .map(|line| {
            let value = json(line.splitn(3, '\t').nth(2).unwrap().as_bytes());
            value["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(answered.len(), ORDERS, "every order answered exactly once");
    assert!(
        samples >= 3,
        "the lag was sampled during the run: {samples}"
    );
    // The bound, give or take a batch or two of the split stage's (what it
    // writes between two readings of the lag) and the transaction markers.
    // (Without holding back the peak here was 9,409.)
    assert!(
        peak <= 3 * MAX_LAG,
        "the stock stage was at most about {MAX_LAG} requests behind; it was {peak}"
    );
}
