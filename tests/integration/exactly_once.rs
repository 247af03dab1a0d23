//! Exactly-once through crashes: services SIGKILLed mid-run lose nothing,
//! duplicate nothing, keep every SKU's one stock whole, and report exactly
//! as uninterrupted runs do.
//! Kafka's console consumer in read_committed mode is the judge; in
//! read_uncommitted mode it shows the aborted writes the crashes left.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::{
    committed_total, heavy, json, orderflow_ok, read_all, read_topic, signal, spawn_service,
    units_reserved, wait_until, Names,
};

const ORDERS: usize = 100_000;

fn inventory_args<'a>(names: &'a Names, group: &'a str, output: &'a str) -> Vec<&'a str> {
    vec![
        "inventory",
        "--orders-topic",
        &names.orders,
        "--inventory-topic",
        output,
        "--group",
        group,
        "--instance-id",
        "crash-test",
        // Little stock, so that many orders run out of it: out-of-stock
        // decisions must survive the crashes too.
        "--initial-stock",
        "6000",
    ]
}

/// order id -> (status, order partition) from lines "partition\tkey\tvalue".
fn decisions(lines: &[String]) -> HashMap<String, String> {
    lines
        .iter()
        .map(|line| {
            let value = json(line.splitn(3, '\t').nth(2).unwrap().as_bytes());
            (
                value["order_id"].as_str().unwrap().to_owned(),
                value["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn inventory_killed_three_times_answers_every_order_exactly_once() {
    let _turn = heavy();
    let names = Names::new("eos-inv");
    names.create_topics();
    // Orders keep arriving while inventory is killed and restarted.
    let producer = names.spawn_producer(ORDERS, 77, 20_000);
    let mut progress = 0;
    for _ in 0..3 {
        let service = spawn_service(&inventory_args(
            &names,
            &names.inventory_group,
            &names.inventory,
        ));
        // Kill it only once it has committed more than before: mid-run.
        wait_until("inventory makes progress", || {
            committed_total(&names.inventory_group) > progress + 2_000
        });
        std::thread::sleep(Duration::from_millis(300));
        let killed = signal(service, "KILL");
        assert!(!killed.status.success());
        progress = committed_total(&names.inventory_group);
    }
    let produced = producer.wait(Duration::from_secs(120));
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let mut last = inventory_args(&names, &names.inventory_group, &names.inventory);
    last.push("--exit-at-end");
    // The rest of 100,000 orders through three stages, in a debug build:
    // over the 240 s any one command gets, once, on a loaded machine.
    let finished = spawn_service(&last).wait(Duration::from_secs(600));
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );

    // read_committed: every order answered exactly once.
    let orders = read_topic(&names.orders, ORDERS);
    let answers = read_topic(&names.inventory, ORDERS);
    let decided = decisions(&answers);
    assert_eq!(decided.len(), ORDERS, "no order answered twice");
    let order_ids: HashSet<String> = orders
        .iter()
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(decided.keys().cloned().collect::<HashSet<_>>(), order_ids);

    // read_uncommitted: the crashes did leave aborted writes behind, in the
    // decisions or in the stages' own topics (a kill may find the deciding
    // stage between two batches, never all three stages).
    let [stock_topic, orders_topic] = [
        orderflow::services::inventory::stock_topic(&names.inventory_group),
        orderflow::services::inventory::orders_topic(&names.inventory_group),
    ];
    let aborted: Vec<(String, usize, usize)> = [names.inventory.clone(), stock_topic, orders_topic]
        .into_iter()
        .map(|topic| {
            let all = read_all(&topic, "read_uncommitted", &[]).len();
            let committed = read_all(&topic, "read_committed", &[]).len();
            (topic, all, committed)
        })
        .collect();
    assert!(
        aborted.iter().any(|(_, all, committed)| all > committed),
        "aborted writes are visible (topic, read_uncommitted, read_committed): {aborted:?}"
    );

    // One stock per SKU: the units Reserved orders hold never exceed it
    // (stock never below zero), and with demand far above it, it is used
    // up (what rejected orders' other lines took went back and was used).
    // Decisions are a function of the stock topic's log, which the crashes
    // may interleave differently from an uninterrupted run: these hold
    // whatever the interleaving.
    assert!(
        decided.values().any(|s| s == "Rejected"),
        "some orders ran out of stock"
    );
    let taken = units_reserved(&orders, |id| decided[id] == "Reserved");
    assert_eq!(taken.len(), 50, "every SKU of the catalog");
    for (sku, &units) in &taken {
        assert!((5_400..=6_000).contains(&units), "{sku}: {units} of 6000");
    }
}

#[test]
fn analytics_killed_mid_run_reports_byte_identically() {
    let names = Names::new("eos-ana");
    names.create_topics();
    names.produce(20_000, 31);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    let uninterrupted = names.analytics_json(dir.path(), "uninterrupted.json");

    let group = crate::common::unique("eos-ana-killed");
    let metrics = crate::common::unique("eos-ana-killed-metrics");
    let report = dir.path().join("restarted.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "analytics",
            "--inventory-topic",
            &names.inventory,
            "--metrics-topic",
            &metrics,
            "--group",
            &group,
            "--instance-id",
            "crash-test",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // Slow, so that it is surely killed mid-run.
    let slow = args(&["--throttle-ms", "1"]);
    let service = spawn_service(&slow.iter().map(String::as_str).collect::<Vec<_>>());
    wait_until("analytics makes progress", || {
        committed_total(&group) > 2_000
    });
    let killed = signal(service, "KILL");
    assert!(!killed.status.success());
    assert!(committed_total(&group) < 20_000, "killed before the end");

    let rest = args(&[
        "--exit-at-end",
        "--format",
        "json",
        "--report",
        report.to_str().unwrap(),
    ]);
    orderflow_ok(&rest.iter().map(String::as_str).collect::<Vec<_>>());
    let restarted = std::fs::read(&report).unwrap();
    assert_eq!(json(&restarted)["total_orders"], 20_000);
    assert_eq!(
        restarted, uninterrupted,
        "the restarted report is byte-identical"
    );

    // The closed windows published to OrderMetrics: the same records, each
    // once, from the killed-and-restarted run as from the uninterrupted one.
    let published = |topic: &str| {
        let mut lines: Vec<String> = read_all(topic, "read_committed", &[])
            .into_iter()
            .map(|line| line.split_once('\t').unwrap().1.to_owned())
            .collect();
        lines.sort();
        lines
    };
    let expected = published(&names.metrics);
    assert!(expected.len() > 3, "windows closed: {expected:?}");
    assert_eq!(published(&metrics), expected);
}
