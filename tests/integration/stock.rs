//! One stock per SKU, whatever the partition count: on 12 partitions with
//! two instances of each service, orders competing for a SKU draw on all
//! of its units, no SKU is oversold, what a rejected order's lines took goes
//! back, and SIGKILLed instances change none of that.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use orderflow::domain::generator::{GeneratorConfig, OrderGenerator};

use crate::common::{json, signal, stock_file, units_reserved, wait_until, Names, Service};

const PARTITIONS: i32 = 12;

/// The units the first `count` orders of `seed` ask for, per SKU, as
/// `orderflow produce --seed` generates them.
fn demand(seed: u64, count: usize) -> BTreeMap<String, u64> {
    let mut units = BTreeMap::new();
    for order in OrderGenerator::new(GeneratorConfig {
        seed,
        ..GeneratorConfig::default()
    })
    .take(count)
    {
        for item in order.items {
            *units.entry(item.sku).or_default() += u64::from(item.quantity);
        }
    }
    units
}

fn inventory(names: &Names, instance: &str, stock: &str) -> Service {
    let mut args = names.inventory_args();
    args.extend([
        "--instance-id",
        instance,
        "--stock-file",
        stock,
        "--initial-stock",
        "0",
        "--failure-rate",
        "0",
    ]);
    names.cluster.spawn_service(&args)
}

fn analytics(names: &Names, instance: &str) -> Service {
    let mut args = names.analytics_args();
    args.extend(["--instance-id", instance]);
    names.cluster.spawn_service(&args)
}

/// order id → status, each order once, from the decisions topic.
fn decisions(names: &Names, count: usize) -> BTreeMap<String, String> {
    let lines = names.cluster.read_topic(&names.inventory, count);
    let decided: BTreeMap<String, String> = lines
        .iter()
        .map(|line| {
            let value = json(line.splitn(3, '\t').nth(2).unwrap().as_bytes());
            (
                value["order_id"].as_str().unwrap().to_owned(),
                value["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(decided.len(), count, "every order answered exactly once");
    decided
}

#[test]
fn with_exactly_the_units_ordered_every_order_is_reserved() {
    const ORDERS: usize = 3_000;
    let names = Names::new("sku-exact");
    names.create_topics_with(&["--partitions", &PARTITIONS.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let wanted = demand(61, ORDERS);
    let stock = stock_file(dir.path(), &wanted);
    names.produce(ORDERS as u64, 61);
    let services = [
        inventory(&names, "a", &stock),
        inventory(&names, "b", &stock),
    ];
    names.wait_drained(false);
    for service in services {
        assert!(signal(service, "TERM").status.success());
    }
    let decided = decisions(&names, ORDERS);
    let rejected: Vec<_> = decided.iter().filter(|(_, s)| *s != "Reserved").collect();
    assert!(
        rejected.is_empty(),
        "{} rejected: {rejected:?}",
        rejected.len()
    );

    // The counter-example: stock split across the 12 partitions, each
    // deciding its own orders (what inventory did before), rejects orders
    // while units sit on other partitions.
    let orders = names.cluster.read_topic(&names.orders, ORDERS);
    let share = |units: u64, p: u64| units / 12 + u64::from(p < units % 12);
    let mut levels: BTreeMap<(u64, String), u64> = BTreeMap::new();
    let mut split_rejected = 0;
    for line in &orders {
        let mut cols = line.splitn(3, '\t');
        let partition: u64 = cols.next().unwrap().parse().unwrap();
        let order = json(cols.nth(1).unwrap().as_bytes());
        let items: Vec<(String, u64)> = order["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["sku"].as_str().unwrap().to_owned(),
                    i["quantity"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut level = |sku: &str| {
            *levels
                .entry((partition, sku.to_owned()))
                .or_insert_with(|| share(wanted[sku], partition))
        };
        if items.iter().all(|(sku, q)| *q <= level(sku)) {
            for (sku, q) in &items {
                *levels.get_mut(&(partition, sku.clone())).unwrap() -= q;
            }
        } else {
            split_rejected += 1;
        }
    }
    assert!(
        split_rejected > ORDERS / 10,
        "the per-partition split rejects many: {split_rejected}"
    );
}

#[test]
fn with_half_the_units_no_sku_is_oversold_and_nine_tenths_are_used_through_crashes() {
    // Units given back late (after the kill, and in the run's last round
    // trip through the stages) find fewer orders after them in a short run:
    // 12,000 orders at 1,000 a second left the worst SKU 91.4% used on a
    // quiet machine (89.3% on a busy one), 24,000 left it 99.5% used.
    const ORDERS: usize = 24_000;
    let names = Names::new("sku-half");
    names.create_topics_with(&["--partitions", &PARTITIONS.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let half: BTreeMap<String, u64> = demand(62, ORDERS)
        .into_iter()
        .map(|(sku, units)| (sku, units / 2))
        .collect();
    let stock = stock_file(dir.path(), &half);
    let producer = names.spawn_producer(ORDERS, 62, 1_000);
    let mut inventories = vec![
        inventory(&names, "a", &stock),
        inventory(&names, "b", &stock),
    ];
    let mut analyses = vec![analytics(&names, "a"), analytics(&names, "b")];
    // Mid-run, one instance of each is SIGKILLed and comes back.
    wait_until("orders are flowing through both services", || {
        names.cluster.committed_total(&names.analytics_group) > 3_000
    });
    assert!(!signal(inventories.remove(0), "KILL").status.success());
    assert!(!signal(analyses.remove(0), "KILL").status.success());
    std::thread::sleep(Duration::from_secs(2));
    inventories.push(inventory(&names, "a", &stock));
    analyses.push(analytics(&names, "a"));
    let produced = producer.wait(Duration::from_secs(120));
    assert!(produced.status.success());
    names.wait_drained(true);
    for service in inventories.into_iter().chain(analyses) {
        assert!(signal(service, "TERM").status.success());
    }

    let decided = decisions(&names, ORDERS);
    let orders = names.cluster.read_topic(&names.orders, ORDERS);
    let taken = units_reserved(&orders, |id| decided[id] == "Reserved");
    for (sku, &stock) in &half {
        let used = taken.get(sku).copied().unwrap_or(0);
        assert!(used <= stock, "{sku} oversold: {used} of {stock}");
        assert!(used * 10 >= stock * 9, "{sku}: only {used} of {stock} used");
    }
    // Analytics merged every partition: one record a window, adding up to
    // the decisions.
    let mut windows = BTreeSet::new();
    let (mut counted, mut failed) = (0, 0);
    for line in names
        .cluster
        .read_all(&names.metrics, "read_committed", &[])
    {
        let value = json(line.split('\t').nth(2).unwrap().as_bytes());
        assert!(windows.insert(value["window_start"].as_str().unwrap().to_owned()));
        counted += value["orders"].as_u64().unwrap();
        failed += value["failed"].as_u64().unwrap();
    }
    let rejected = decided.values().filter(|s| *s == "Rejected").count() as u64;
    // Windows still open when the services stopped are not published yet.
    assert!(counted <= ORDERS as u64 && failed <= rejected);
    assert!(rejected > 0);
}
