//! Malformed orders are set aside and counted; the partition never gets stuck.

use crate::common::{describe_group, kafka_tool_with_input, read_topic, Names};

#[test]
fn malformed_orders_are_skipped_and_counted() {
    let names = Names::new("malformed");
    names.create_topics();
    names.produce(100, 21);
    // Written with Kafka's own console producer: not JSON, JSON of the wrong
    // shape, an unknown schema version, and a negative quantity.
    let poison = [
        "{not json",
        "hello",
        r#"{"event_type":"OrderPlaced"}"#,
        r#"{"event_type":"OrderPlaced","schema_version":9,"order_id":"6f1c0c1e-0b8e-4a43-9d5a-3a2d1f0e9b7c","customer_id":"c","items":[{"sku":"A","quantity":1,"unit_price_cents":1}],"total_cents":1,"event_time":"2026-01-01T00:00:00.000Z"}"#,
        r#"{"event_type":"OrderPlaced","schema_version":1,"order_id":"6f1c0c1e-0b8e-4a43-9d5a-3a2d1f0e9b7d","customer_id":"c","items":[{"sku":"A","quantity":-1,"unit_price_cents":1}],"total_cents":1,"event_time":"2026-01-01T00:00:00.000Z"}"#,
    ];
    kafka_tool_with_input(
        "kafka-console-producer",
        &["--topic", &names.orders],
        Some(&format!("{}\n", poison.join("\n"))),
    );
    names.produce(100, 22);

    let summary = names.inventory();
    assert!(summary.contains("consumed 205,"), "{summary}");
    assert!(summary.contains("malformed 5"), "{summary}");
    read_topic(&names.inventory, 200);
    // Every offset, poison included, is committed: nothing is stuck.
    let rows = describe_group(&names.inventory_group);
    assert_eq!(rows.iter().map(|r| r.log_end).sum::<i64>(), 205);
    assert!(rows.iter().all(|r| r.lag == Some(0)), "{rows:?}");
}
