//! The demo runs the pipeline, proves the replay, and records lag; here with
//! the schema registry (the dashboard's test runs it without), so every
//! service writes and reads the Confluent wire format.

use crate::common::{json, orderflow_ok, unique};
use crate::registry::{registry_url, versions};

#[test]
fn demo_runs_end_to_end_with_identical_replay_and_drained_lag() {
    let out = tempfile::tempdir().unwrap();
    let (orders, decisions) = (unique("demo-orders"), unique("demo-inventory"));
    let stdout = orderflow_ok(&[
        "demo",
        "--count",
        "2000",
        "--burst",
        "1500",
        "--orders-topic",
        &orders,
        "--inventory-topic",
        &decisions,
        "--metrics-topic",
        &unique("demo-metrics"),
        "--inventory-group",
        &unique("demo-inv"),
        "--analytics-group",
        &unique("demo-ana"),
        "--api-group",
        &unique("demo-api"),
        "--out",
        out.path().to_str().unwrap(),
        "--no-local-kafka",
        "--schema-registry",
        &registry_url(),
    ]);
    assert!(stdout.contains("replay identical"), "{stdout}");
    // It registered its schemas, and its services wrote the wire format.
    assert_eq!(versions(&format!("{orders}-value")), [1]);
    assert_eq!(versions(&format!("{decisions}-value")), [1]);
    // The API's part: a retry under its key is the same order, an order
    // for more than the stock is rejected, the others are decided.
    assert!(stdout.contains("202, the same order"), "{stdout}");
    let decided: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("GET /orders/"))
        .map(|l| l.rsplit("→ ").next().unwrap())
        .collect();
    assert_eq!(decided.len(), 3, "{stdout}");
    assert!(decided.iter().all(|s| *s != "pending"), "{stdout}");
    assert!(decided[2].starts_with("rejected"), "{stdout}");
    assert!(stdout.contains("GET /stock/SKU-0001"), "{stdout}");

    let run1 = std::fs::read(out.path().join("run1.json")).unwrap();
    let run2 = std::fs::read(out.path().join("run2.json")).unwrap();
    assert_eq!(run1, run2);
    assert_eq!(json(&run1)["total_orders"], 2000);
    assert_eq!(
        std::fs::read(out.path().join("run1.txt")).unwrap(),
        std::fs::read(out.path().join("run2.txt")).unwrap()
    );

    let csv = std::fs::read_to_string(out.path().join("lag.csv")).unwrap();
    let totals: Vec<i64> = csv
        .lines()
        .skip(1)
        .map(|line| line.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(totals.iter().any(|&t| t > 0), "lag built up: {csv}");
    assert_eq!(totals.last(), Some(&0), "lag drained: {csv}");

    // The chart draws the same samples: one point of the total per row.
    let svg = std::fs::read_to_string(out.path().join("lag.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    let total = svg
        .lines()
        .find(|l| l.contains(r##"stroke="#222222""##) && l.contains("<polyline"))
        .expect("the total's line");
    let points = total.split("points=\"").nth(1).unwrap();
    assert_eq!(points.split_whitespace().count(), totals.len(), "{total}");
    assert_eq!(
        svg.matches("<polyline").count(),
        4,
        "total and 3 partitions"
    );
}
