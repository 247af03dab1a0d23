//! Kafka's own transactions system test (tests/kafkatest/tests/core/
//! transactions_test.py in apache/kafka), with inventory as the copier, on
//! a 3-node cluster: while orders flow, every broker is restarted in turn
//! (two rounds: one clean, one SIGKILLed), and separately the inventory
//! instances are SIGKILLed and restarted twice each. Kafka's console
//! consumer in read_committed mode then finds every order answered exactly
//! once, and every SKU's one stock kept whole.
//!
//! Each test keeps three JVM brokers and two transactional instances busy
//! on two cores, and runs alone (`own_brokers`): their length is most of
//! the suite's. At three rounds of each the pair took 32 minutes run alone
//! on this kind of machine; two rounds bounce every broker both ways and
//! every instance more than once, which is what the guarantees are judged
//! through.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{own_brokers, signal, units_reserved, wait_until, LocalKafka, Names, Service};

/// Two instances, as the system test runs a copier per input partition.
const INSTANCES: [&str; 2] = ["a", "b"];
/// Units of each SKU: little, so that the orders want far more
/// ([`ORDERS`], the fewest a test waits for, ask about 2,250 units of each
/// of the 50 SKUs) and out-of-stock decisions are in the comparison; not so
/// little that the units given back by the last rejected orders, with no
/// order after them to take them, are a tenth of it (at 300 a run left 32
/// unused). At 3,000 a CI run's instance-kill test used only 2,216 of a
/// SKU: its orders wanted little more than that.
const STOCK: u64 = 1_000;
/// Orders each test sees decided before it stops them.
const ORDERS: i64 = 15_000;

fn inventory(names: &Names, instance: &str) -> Service {
    let mut args = names.inventory_args();
    let stock = STOCK.to_string();
    args.extend(["--instance-id", instance, "--initial-stock", &stock]);
    // A cluster just started on a busy machine may take longer than the
    // default 10 s to answer a first metadata request (it once did, and
    // both instances ended at start as if the cluster were unreachable).
    args.extend(["--timeout", "30"]);
    names.cluster.spawn_service(&args)
}

/// Orders at 100/s until stopped: they flow through every disruption.
/// Fewer than inventory decides on three replicas on a busy 2-core machine
/// (under 200/s while its brokers restart), so that the backlog stays
/// small: at 1,000/s a CI run left a million orders behind after its
/// restarts, more than the test could wait for. A delivery may take five minutes rather than the
/// producer's one: this producer is the test's load, not what it judges,
/// and on a loaded machine a partition once took over a minute to take
/// writes again while its nodes restarted in turn (the producer then
/// ended, and the test with it).
fn start_orders(names: &Names) -> Service {
    names.cluster.spawn_service(&[
        "produce",
        "--orders-topic",
        &names.orders,
        "--count",
        "10000000",
        "--seed",
        "71",
        "--rate",
        "100",
        "-X",
        "message.timeout.ms=300000",
    ])
}

/// Waits until inventory has committed `more` orders past what it had.
fn progress(names: &Names, more: i64) {
    let from = names.cluster.committed_total(&names.inventory_group);
    wait_until("inventory makes progress", || {
        names.cluster.committed_total(&names.inventory_group) > from + more
    });
}

/// order id → status, from console-consumer lines "partition\tkey\tvalue".
fn decisions(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line.splitn(3, '\t').nth(2).unwrap()).unwrap();
            (
                value["order_id"].as_str().unwrap().to_owned(),
                value["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Once [`ORDERS`] are taken in, stops the orders and the services, and
/// judges what they wrote.
fn finish_and_check(names: &Names, producer: Service, services: Vec<Service>) {
    wait_until("the orders taken in", || {
        names.cluster.committed_total(&names.inventory_group) > ORDERS
    });
    let produced = signal(producer, "INT");
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let cluster = &names.cluster;
    names.wait_drained(false);
    for service in services {
        let output = signal(service, "TERM");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let orders = cluster.read_all(&names.orders, "read_committed", &[]);
    let ordered: BTreeSet<&str> = orders
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(ordered.len(), orders.len(), "each order published once");
    assert!(
        orders.len() as i64 > ORDERS,
        "orders flowed: {}",
        orders.len()
    );
    let answers = cluster.read_topic(&names.inventory, orders.len());
    let decided = decisions(&answers);
    assert_eq!(decided.len(), orders.len(), "no order answered twice");
    assert!(decided
        .keys()
        .map(String::as_str)
        .eq(ordered.iter().copied()));

    // One stock per SKU, kept whole: the Reserved orders hold no more, and
    // with demand far above it, most of it is used. (Decisions are a
    // function of the stock topic's log, which bounces may interleave
    // differently from an undisturbed run. Every bounce here leaves a
    // backlog, whose chains of waiting orders are cut at three links, and
    // a cut chain's order is rejected though units held for older orders
    // might have come back: on a loaded CI machine one SKU had 871 of its
    // 1,000 units used, so the bound is four fifths. stock.rs, without
    // broker or transaction bounces, holds nine tenths.)
    assert!(decided.values().any(|s| s == "Rejected"));
    let taken = units_reserved(&orders, |id| decided[id] == "Reserved");
    for (sku, &units) in &taken {
        assert!(
            (STOCK * 4 / 5..=STOCK).contains(&units),
            "{sku}: {units} of {STOCK}"
        );
    }
}

/// Whether every partition of the cluster has all its replicas in sync. A
/// cluster with a node just restarted may not answer the tool at all ("Timed
/// out waiting for a node assignment", as a loaded CI machine once saw):
/// that is not in sync yet, and `wait_until` bounds the asking.
fn fully_replicated(names: &Names) -> bool {
    let output = names.cluster.kafka_tool_output(
        "kafka-topics",
        &["--describe", "--under-replicated-partitions"],
        None,
    );
    output.status.success() && output.stdout.iter().all(u8::is_ascii_whitespace)
}

#[test]
fn every_broker_restarted_in_turn_twice_loses_and_duplicates_no_order() {
    let _turn = own_brokers();
    let kafka = LocalKafka::up(19692, 3);
    let names = Names::on(kafka.cluster.clone(), "broker-bounce");
    names.create_topics();
    let producer = start_orders(&names);
    let services: Vec<Service> = INSTANCES.iter().map(|i| inventory(&names, i)).collect();
    progress(&names, 2_000);
    for how in ["stop-node", "kill-node"] {
        for node in ["1", "2", "3"] {
            kafka.script(&[how, node]);
            kafka.script(&["start-node", node]);
            // As an operator rolls a cluster: the next node only once the
            // restarted one has caught up.
            wait_until("every partition is in sync again", || {
                fully_replicated(&names)
            });
            progress(&names, 500);
        }
    }
    finish_and_check(&names, producer, services);
}

#[test]
fn inventory_instances_killed_twice_each_lose_and_duplicate_no_order() {
    let _turn = own_brokers();
    let kafka = LocalKafka::up(19792, 3);
    let names = Names::on(kafka.cluster.clone(), "client-bounce");
    names.create_topics();
    let producer = start_orders(&names);
    let mut services: Vec<Service> = INSTANCES.iter().map(|i| inventory(&names, i)).collect();
    for _ in 0..2 {
        for (slot, instance) in INSTANCES.iter().enumerate() {
            progress(&names, 1_000);
            let killed = signal(services.remove(slot), "KILL");
            assert!(!killed.status.success());
            // The same instance id: its restart fences what the killed one
            // left open, as the system test's copier restarts do.
            services.insert(slot, inventory(&names, instance));
        }
    }
    progress(&names, 1_000);
    finish_and_check(&names, producer, services);
}
