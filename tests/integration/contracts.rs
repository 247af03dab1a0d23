//! The published contracts: the AsyncAPI document committed under docs/ is
//! the one the binary prints and passes the AsyncAPI Initiative's own
//! parser; the records orderflow writes to a real Kafka meet the JSON
//! Schemas it prints.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{orderflow_ok, run, Names};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_asyncapi_document_is_the_one_the_binary_prints() {
    let printed = orderflow_ok(&["schema", "--asyncapi"]);
    let committed = std::fs::read_to_string(repo().join("docs/asyncapi.json")).unwrap();
    assert!(
        printed == committed,
        "docs/asyncapi.json differs from `orderflow schema --asyncapi`: \
         run `cargo run -- schema --asyncapi > docs/asyncapi.json` and commit it"
    );
}

/// Runs scripts/validate-asyncapi.cjs on `document` with the parser
/// scripts/setup installs.
fn asyncapi_parser(document: &Path) -> std::process::Output {
    let home = std::env::var("HOME").expect("HOME is set");
    let modules = PathBuf::from(home).join(".cache/orderflow/asyncapi-parser/node_modules");
    let mut command = Command::new("node");
    command
        .arg(repo().join("scripts/validate-asyncapi.cjs"))
        .arg(document)
        .env("NODE_PATH", modules);
    run(command)
}

#[test]
fn the_asyncapi_document_passes_the_asyncapi_parser() {
    let output = asyncapi_parser(&repo().join("docs/asyncapi.json"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["version"], "3.0.0");

    // Every topic a service makes or uses is a channel, as the parser read it.
    let channels: Vec<&str> = summary["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let group = "{group}";
    let mut topics = vec![
        "OrderEvents".to_owned(),
        "InventoryEvents".to_owned(),
        "OrderMetrics".to_owned(),
        "OrderEvents.DLQ".to_owned(),
        "InventoryEvents.DLQ".to_owned(),
    ];
    topics.extend(orderflow::services::inventory::internal_topics(group));
    topics.extend(orderflow::services::analytics::internal_topics(group));
    topics.extend(orderflow::services::api::internal_topics(group));
    for topic in &topics {
        assert!(
            channels.contains(&topic.as_str()),
            "{topic} in {channels:?}"
        );
    }
    assert_eq!(channels.len(), topics.len(), "{channels:?}");

    // Who writes the orders, who reads the decisions.
    let operations = summary["operations"].as_array().unwrap();
    let does = |action: &str, channel: &str| -> Vec<String> {
        operations
            .iter()
            .filter(|o| o["action"] == action && o["channel"][0] == channel)
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        does("send", "OrderEvents"),
        ["produceSendOrderEvents", "apiSendOrderEvents"]
    );
    assert_eq!(
        does("receive", "InventoryEvents"),
        [
            "analyticsReceiveInventoryEvents",
            "apiReceiveInventoryEvents"
        ]
    );
    let order_fields = summary["messages"]["OrderPlaced"].as_array().unwrap();
    for field in ["order_id", "items", "total_cents", "event_time"] {
        assert!(order_fields.contains(&field.into()), "{field}");
    }
}

#[test]
fn the_asyncapi_parser_refuses_a_broken_document() {
    // The check can fail: an operation on a channel the document lacks.
    let mut document: serde_json::Value =
        serde_json::from_str(&orderflow_ok(&["schema", "--asyncapi"])).unwrap();
    document["channels"]
        .as_object_mut()
        .unwrap()
        .remove("orderEvents");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, document.to_string()).unwrap();
    let output = asyncapi_parser(&path);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("error(s)"));
}

#[test]
fn records_on_the_topics_meet_the_schemas_orderflow_prints() {
    let names = Names::new("contracts");
    names.create_topics();
    names.produce(300, 13);
    names.inventory();
    let mut analytics = names.analytics_args();
    analytics.push("--exit-at-end");
    orderflow_ok(&analytics);

    for (topic, layout) in [
        (&names.orders, "OrderPlaced"),
        (&names.inventory, "InventoryChecked"),
        (&names.metrics, "WindowClosed"),
    ] {
        let schema: serde_json::Value =
            serde_json::from_str(&orderflow_ok(&["schema", layout])).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let lines = names.cluster.read_all(topic, "read_committed", &[]);
        let expected = if layout == "WindowClosed" { 1 } else { 300 };
        assert!(lines.len() >= expected, "{topic}: {} records", lines.len());
        for line in lines {
            let value = line.rsplit('\t').next().unwrap();
            let record: serde_json::Value = serde_json::from_str(value).unwrap();
            if let Err(error) = validator.validate(&record) {
                panic!("{topic}: {record} fails {layout}: {error}");
            }
        }
    }
}
