//! Orders flow end to end, and the producer is reproducible.

use std::collections::{BTreeMap, HashSet};

use crate::common::{
    committed_total, json, orderflow_ok, read_all, read_topic, signal, spawn_service, wait_until,
    Names,
};

#[test]
fn ten_thousand_orders_flow_end_to_end() {
    let names = Names::new("e2e");
    names.create_topics();
    let produced = names.produce(10_000, 42);
    assert!(produced.starts_with("produced 10000 events"), "{produced}");
    let summary = names.inventory();
    assert!(
        summary.contains("consumed 10000,") && summary.contains("malformed 0"),
        "{summary}"
    );
    let dir = tempfile::tempdir().unwrap();
    let report = json(&names.analytics_json(dir.path(), "report.json"));

    // Kafka's console consumer is the judge of what landed in each topic.
    let orders = read_topic(&names.orders, 10_000);
    let order_ids: HashSet<&str> = orders
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap())
        .collect();
    assert_eq!(order_ids.len(), 10_000, "order ids are unique keys");

    let outcomes = read_topic(&names.inventory, 10_000);
    let mut outcome_ids = HashSet::new();
    let mut rejected = 0;
    for line in &outcomes {
        let mut cols = line.splitn(3, '\t');
        let (_partition, key, value) = (cols.next(), cols.next().unwrap(), cols.next().unwrap());
        let event = json(value.as_bytes());
        assert_eq!(
            event["order_id"], key,
            "inventory events are keyed by order id"
        );
        outcome_ids.insert(key.to_owned());
        match event["status"].as_str().unwrap() {
            "Rejected" => rejected += 1,
            "Reserved" => assert!(event["reason"].is_null()),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        outcome_ids
            .iter()
            .map(String::as_str)
            .collect::<HashSet<_>>(),
        order_ids
    );

    assert_eq!(report["total_orders"], 10_000);
    assert_eq!(report["failed_orders"], rejected);
    let failure_rate = report["failure_rate"].as_f64().unwrap();
    assert!((0.03..0.08).contains(&failure_rate), "{failure_rate}");
    let windows = report["windows"].as_array().unwrap();
    let summed: u64 = windows.iter().map(|w| w["orders"].as_u64().unwrap()).sum();
    assert_eq!(summed, 10_000);
    assert!(report["orders_per_minute"].as_f64().unwrap() > 0.0);
}

#[test]
fn decisions_carry_their_orders_timestamps_and_stats_are_written() {
    let names = Names::new("timestamps");
    names.create_topics();
    names.produce(300, 3);
    let dir = tempfile::tempdir().unwrap();
    let stats_file = dir.path().join("inventory.json");
    let mut args = names.inventory_args();
    args.extend([
        "--exit-at-end",
        "--stats-file",
        stats_file.to_str().unwrap(),
    ]);
    orderflow_ok(&args);

    // Kafka's console consumer shows each record's timestamp: an order's
    // decision has the order's, as Kafka Streams carries timestamps on.
    let timestamps = |topic: &str| -> BTreeMap<String, String> {
        read_all(topic, "read_committed", &["print.timestamp=true"])
            .iter()
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                let time = fields.iter().find(|f| f.starts_with("CreateTime:"));
                let key = fields[fields.len() - 2];
                (key.to_owned(), time.expect("a timestamp").to_string())
            })
            .collect()
    };
    let orders = timestamps(&names.orders);
    assert_eq!(orders.len(), 300);
    assert_eq!(timestamps(&names.inventory), orders);

    let stats = json(&std::fs::read(&stats_file).unwrap());
    assert_eq!(stats["service"], "inventory");
    assert_eq!(stats["events"], 300);
    // Every order was older than the service: how long they waited for it
    // is lag, not processing latency, and is not counted as latency.
    assert_eq!(stats["latency"]["samples"], 0);
    assert!(stats["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
}

#[test]
fn same_seed_publishes_the_same_events() {
    let a = Names::new("seed-a");
    let b = Names::new("seed-b");
    let c = Names::new("seed-c");
    for names in [&a, &b, &c] {
        names.create_topics();
    }
    a.produce(300, 7);
    b.produce(300, 7);
    c.produce(300, 8);
    // Same events, same keys, hence the same partitions; the order within a
    // partition is the order of publishing, so compare per partition.
    let by_partition = |names: &Names| -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in read_topic(&names.orders, 300) {
            let (partition, rest) = line.split_once('\t').unwrap();
            map.entry(partition.to_owned())
                .or_default()
                .push(rest.to_owned());
        }
        map
    };
    let (first, second, other) = (by_partition(&a), by_partition(&b), by_partition(&c));
    assert_eq!(first, second);
    assert_ne!(first, other);
}

#[test]
fn inventory_runs_until_sigterm_then_commits_and_exits_zero() {
    let names = Names::new("sigterm");
    names.create_topics();
    let service = spawn_service(&[
        "inventory",
        "--orders-topic",
        &names.orders,
        "--inventory-topic",
        &names.inventory,
        "--group",
        &names.inventory_group,
    ]);
    // Published while the service runs: it keeps consuming, it is no batch job.
    names.produce(500, 9);
    // Offsets are committed only after the outputs are acknowledged: once
    // every stage has committed all it was given, every order is decided.
    wait_until("inventory has decided all 500", || {
        committed_total(&names.inventory_group) == 500 && names.drained(false)
    });
    let output = signal(service, "TERM");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8(output.stdout).unwrap();
    assert!(summary.contains("consumed 500,"), "{summary}");
    assert_eq!(committed_total(&names.inventory_group), 500);
    read_topic(&names.inventory, 500);
}
