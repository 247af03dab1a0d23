//! Poison messages go to the dead-letter topics with headers saying why and
//! whence; everything else is processed; no partition gets stuck.

use crate::common::{
    caught_up, describe_group, json, kafka_tool_with_input, read_all, read_topic, Names,
};

/// 1,000 poison lines of four kinds: not JSON, a missing field, an unknown
/// schema version, a negative quantity.
fn poison(count: usize) -> String {
    let valid_but = |schema: u32, quantity: i32, n: usize| {
        format!(
            r#"{{"event_type":"OrderPlaced","schema_version":{schema},"order_id":"00000000-0000-4000-8000-{n:012}","customer_id":"c","items":[{{"sku":"SKU-0001","quantity":{quantity},"unit_price_cents":100}}],"total_cents":100,"event_time":"2026-01-01T00:00:00.000Z"}}"#
        )
    };
    (0..count)
        .map(|n| match n % 4 {
            0 => format!("not json {n}"),
            1 => r#"{"event_type":"OrderPlaced","schema_version":1}"#.to_owned(),
            2 => valid_but(9, 1, n),
            _ => valid_but(1, -1, n),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn poison_orders_go_to_the_dlq_with_headers_and_the_rest_is_processed() {
    let names = Names::new("dlq");
    names.create_topics();
    names.produce(5_000, 21);
    // Written with Kafka's own console producer, between two batches of orders.
    kafka_tool_with_input(
        "kafka-console-producer",
        &["--topic", &names.orders],
        Some(&poison(1_000)),
    );
    names.produce(5_000, 22);

    let summary = names.inventory();
    assert!(summary.contains("consumed 11000,"), "{summary}");
    assert!(summary.contains("malformed 1000 "), "{summary}");
    read_topic(&names.inventory, 10_000);

    let dead = read_all(
        &format!("{}.DLQ", names.orders),
        "read_committed",
        &["print.headers=true"],
    );
    assert_eq!(dead.len(), 1_000);
    let mut offsets = std::collections::BTreeSet::new();
    for line in &dead {
        let cols: Vec<&str> = line.split('\t').collect();
        let (partition, headers) = (cols[0], cols[1]);
        assert!(headers.contains("orderflow.error:"), "{line}");
        assert!(
            headers.contains(&format!("orderflow.source.topic:{}", names.orders)),
            "{line}"
        );
        assert!(
            headers.contains(&format!("orderflow.source.partition:{partition}")),
            "{line}"
        );
        let offset = headers
            .split("orderflow.source.offset:")
            .nth(1)
            .expect("an offset header");
        offsets.insert((partition.to_owned(), offset.to_owned()));
    }
    assert_eq!(
        offsets.len(),
        1_000,
        "each poison message dead-lettered once"
    );
    // Every offset, poison included, is committed: nothing is stuck.
    let rows = describe_group(&names.inventory_group);
    assert_eq!(rows.iter().map(|r| r.log_end).sum::<i64>(), 11_000);
    assert!(caught_up(&names.inventory_group), "{rows:?}");
}

#[test]
fn poison_inventory_events_are_dead_lettered_and_counted_by_analytics() {
    let names = Names::new("dlq-analytics");
    names.create_topics();
    names.produce(300, 23);
    names.inventory();
    kafka_tool_with_input(
        "kafka-console-producer",
        &["--topic", &names.inventory],
        Some(&poison(10)),
    );
    let dir = tempfile::tempdir().unwrap();
    let report = json(&names.analytics_json(dir.path(), "report.json"));
    assert_eq!(report["total_orders"], 300);
    assert_eq!(report["malformed_events"], 10);
    let dead = read_all(&format!("{}.DLQ", names.inventory), "read_committed", &[]);
    assert_eq!(dead.len(), 10);
}
