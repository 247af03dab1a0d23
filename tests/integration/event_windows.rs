//! Event-time windows on the real broker: an event for a window its
//! partition's stream time has passed (end plus grace) is counted as late;
//! every window is published to the metrics topic once, for all partitions,
//! when final (a batch run's end makes every window final).

use crate::common::{json, kafka_tool_with_input, read_all, Names};

/// An InventoryChecked event as another producer might write it.
fn checked(n: u32, event_time: &str, rejected: bool) -> String {
    let (status, reason) = if rejected {
        ("Rejected", r#""mock_failure""#)
    } else {
        ("Reserved", "null")
    };
    format!(
        r#"{{"event_type":"InventoryChecked","schema_version":1,"order_id":"00000000-0000-4000-8000-{n:012}","status":"{status}","reason":{reason},"detail":null,"event_time":"{event_time}","processed_at":"2026-01-01T00:00:00.000Z"}}"#
    )
}

#[test]
fn a_late_event_is_counted_and_a_closed_window_is_published_once() {
    let names = Names::new("late");
    names.create_topics_with(&["--partitions", "1"]);
    let events = [
        checked(1, "2026-01-01T00:00:30.000Z", false),
        checked(2, "2026-01-01T00:00:45.000Z", true),
        // Within the minute's 10 s of grace: still counted.
        checked(3, "2026-01-01T00:01:05.000Z", false),
        checked(4, "2026-01-01T00:00:50.000Z", false),
        // Closes 00:00 (and 00:01, which closes at 00:02:10).
        checked(5, "2026-01-01T00:05:00.000Z", false),
        // Late: 00:00 closed at 00:01:10.
        checked(6, "2026-01-01T00:00:55.000Z", true),
        checked(7, "2026-01-01T00:05:30.000Z", false),
    ];
    kafka_tool_with_input(
        "kafka-console-producer",
        &["--topic", &names.inventory],
        Some(&(events.join("\n") + "\n")),
    );

    let dir = tempfile::tempdir().unwrap();
    let report = names.analytics_json_with(dir.path(), "report.json", &["--grace-ms", "10000"]);
    let report = json(&report);
    assert_eq!(report["total_orders"], 6);
    assert_eq!(report["failed_orders"], 1);
    assert_eq!(report["late_events"], 1);
    let windows: Vec<(String, u64, u64)> = report["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["start"].as_str().unwrap().to_owned(),
                w["orders"].as_u64().unwrap(),
                w["failed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        windows,
        [
            ("2026-01-01T00:00:00Z".to_owned(), 3, 1),
            ("2026-01-01T00:01:00Z".to_owned(), 1, 0),
            ("2026-01-01T00:05:00Z".to_owned(), 2, 0),
        ]
    );

    // Kafka's console consumer: every window, once, keyed by its start.
    let published = read_all(&names.metrics, "read_committed", &[]);
    assert_eq!(published.len(), 3, "{published:?}");
    let records: Vec<(&str, serde_json::Value)> = published
        .iter()
        .map(|line| {
            let mut cols = line.splitn(3, '\t');
            let (_partition, key, value) = (cols.next(), cols.next().unwrap(), cols.next());
            (key, json(value.unwrap().as_bytes()))
        })
        .collect();
    let mut keys: Vec<&str> = records.iter().map(|(key, _)| *key).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "2026-01-01T00:00:00.000Z",
            "2026-01-01T00:01:00.000Z",
            "2026-01-01T00:05:00.000Z"
        ]
    );
    for (key, event) in &records {
        assert_eq!(event["event_type"], "WindowClosed");
        assert_eq!(event["schema_version"], 2);
        assert_eq!(event["window_start"], *key);
        let expected = match &key[..16] {
            "2026-01-01T00:00" => (3, 1),
            "2026-01-01T00:01" => (1, 0),
            _ => (2, 0),
        };
        assert_eq!(
            (event["orders"].clone(), event["failed"].clone()),
            (expected.0.into(), expected.1.into())
        );
    }
}
