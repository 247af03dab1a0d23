//! `orderflow bench` as a smoke test: every stage runs on the real broker
//! with a small count and the table comes out. Its figures are not judged
//! here (tests never assert timings); its counts are, and what it leaves.

use crate::common::{kafka_tool, orderflow_ok, unique};

#[test]
fn bench_runs_every_stage_and_writes_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("BENCHMARKS.md");
    let work = dir.path().join("work");
    let prefix = unique("bench");
    let stdout = orderflow_ok(&[
        "bench",
        "--count",
        "3000",
        "--latency-count",
        "2000",
        "--rate",
        "2000",
        "--api-rate",
        "200",
        "--api-count",
        "300",
        "--api-seconds",
        "2",
        "--topic-prefix",
        &prefix,
        "--out",
        out.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        // The first test to run, right after the broker started: a stall
        // of the machine then (the broker fenced itself for 12 s once)
        // must not read as an unreachable cluster.
        "--timeout",
        "30",
        "--no-local-kafka",
    ]);
    let table = std::fs::read_to_string(&out).unwrap();
    // The services' own stats files, one per stage and service.
    let stats = |stage: &str, service: &str| -> serde_json::Value {
        let path = work.join(format!("{prefix}.{stage}.{service}.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert!(
        stdout.contains(&table),
        "the table is printed too:\n{stdout}"
    );

    // Every throughput row ran its events and measured a rate.
    for name in [
        "kafka-producer-perf-test",
        "kafka-producer-perf-test (batch.size=1048576, linger.ms=10)",
        "kafka-consumer-perf-test",
        "orderflow produce",
        "orderflow inventory (exactly-once)",
        "orderflow analytics (exactly-once)",
        "pipeline end to end (exactly-once)",
    ] {
        let cells = row(&table, name);
        assert_eq!(cells[1], "3,000", "{name}: {cells:?}");
        assert!(number(&cells[2]) > 0.0, "{name}: {cells:?}");
    }
    for service in ["inventory", "analytics"] {
        let memory = row(
            &table,
            &format!("orderflow {service} (exactly-once) after 10,000 events"),
        );
        assert_eq!(memory[1], "10,000");
        assert!(memory[5].starts_with(&format!("{service} ")), "{memory:?}");
    }

    // Bytes per order: every topic an order goes through holds some, the
    // internal ones included, and they add up.
    let group = format!("{prefix}.pipeline.inventory-group");
    let mut sum = 0;
    for topic in [
        "orders".to_owned(),
        format!("{group}-stock-repartition"),
        format!("{group}-orders-repartition"),
        format!("{group}-stock-changelog"),
        "inventory".to_owned(),
        format!("{prefix}.pipeline.analytics-group-merge-repartition"),
        "metrics".to_owned(),
    ] {
        let topic = topic
            .trim_start_matches(&format!("{prefix}.pipeline."))
            .to_owned();
        let cells = row(&table, &topic);
        let bytes = number(&cells[1]) as u64;
        assert!(bytes > 0 && number(&cells[2]) > 0.0, "{topic}: {cells:?}");
        sum += bytes;
    }
    let all = number(&row(&table, "all")[1]) as u64;
    assert!(all >= sum, "{all} < {sum}");

    // The latency runs: every order's latency recorded (the bench starts
    // the clock once the services have taken over their partitions, as their
    // metrics say), percentiles in order.
    // (At-least-once may count an order twice, when a batch was redone.)
    for (name, measured_ok) in [
        (
            "orderflow, at-least-once",
            (|m| m >= 2000.0) as fn(f64) -> bool,
        ),
        ("orderflow, exactly-once", |m| m == 2000.0),
        ("kafka-producer-perf-test (send to ack)", |m| {
            m > 0.0 && m <= 2000.0
        }),
    ] {
        let cells = row(&table, name);
        assert_eq!(cells[2], "2,000", "{name}: {cells:?}");
        let measured = number(&cells[3]);
        assert!(measured_ok(measured), "{name}: {cells:?}");
        let (p50, p99, max) = (number(&cells[4]), number(&cells[5]), number(&cells[7]));
        assert!(p50 <= p99 && p99 <= max, "{name}: {cells:?}");
    }
    assert!(table.contains("## Targets"), "{table}");

    // The API: every order of the fixed-rate run accepted and decided, and
    // a decision never seen before its 202.
    let accepted = row(&table, "orderflow api, POST /orders to 202");
    let decided = row(&table, "orderflow api, POST /orders to the decision in GET");
    for cells in [&accepted, &decided] {
        assert_eq!(
            (cells[2].as_str(), cells[3].as_str()),
            ("300", "300"),
            "{cells:?}"
        );
        let (p50, p99, max) = (number(&cells[4]), number(&cells[5]), number(&cells[7]));
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{cells:?}");
    }
    for column in 4..8 {
        assert!(
            number(&decided[column]) >= number(&accepted[column]),
            "{accepted:?} {decided:?}"
        );
    }
    // wrk's run: orders answered 202, and the API's own count of what it
    // placed (which the bench checked against OrderEvents) holds them and
    // the fixed-rate run's.
    let wrk = row(&table, "orderflow api, POST /orders (wrk, 50 connections)");
    let under_wrk = number(&wrk[1]) as u64;
    assert!(under_wrk > 0 && number(&wrk[2]) > 0.0, "{wrk:?}");
    assert!(wrk[5].starts_with("api "), "{wrk:?}");
    let api = stats("api", "api");
    let placed = api["events"].as_u64().unwrap();
    assert!(
        (300 + under_wrk..=300 + under_wrk + 50).contains(&placed),
        "{api} against {wrk:?}"
    );
    // The API over full topics, until ready: every order read.
    for (name, events) in [
        ("orderflow api, views caught up", "3,000"),
        (
            "orderflow api, views caught up after 10,000 events",
            "10,000",
        ),
    ] {
        let cells = row(&table, name);
        assert_eq!(cells[1], events, "{cells:?}");
        assert!(cells[5].starts_with("api "), "{cells:?}");
    }

    let memory = stats("memory", "analytics");
    assert_eq!(memory["events"], 10_000);
    assert!(memory["peak_rss_bytes"].as_u64().unwrap() > 1 << 20);
    // Every order was published after the services had taken over their
    // partitions: each has a latency.
    let latency = stats("latency-exactly-once", "analytics");
    assert_eq!(latency["events"], 2_000);
    assert_eq!(latency["latency"]["samples"], 2_000, "{latency}");

    // It cleaned up after itself: no topic of its prefix is left.
    let topics = kafka_tool("kafka-topics", &["--list"]);
    let left: Vec<&str> = topics.lines().filter(|t| t.starts_with(&prefix)).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The cells of the table row whose first cell is `name`.
fn row(table: &str, name: &str) -> Vec<String> {
    table
        .lines()
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells[0] == name)
        .unwrap_or_else(|| panic!("no row {name:?} in\n{table}"))
}

fn number(cell: &str) -> f64 {
    cell.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {cell:?}"))
}
