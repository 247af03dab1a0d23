//! The schema registry (Apicurio Registry, started by scripts/schema-registry
//! up): services register the public events' schemas under `<topic>-value`
//! with the subject's rule set; a schema the rule refuses stops a service
//! before it writes anything; an added optional field is a new version the
//! registry takes, a changed type one it refuses.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::common::http::{get, post};
use crate::common::{brokers, json, orderflow_command, orderflow_ok, run, Names};

/// Where the test registry listens (SCHEMA_REGISTRY_PORT, as the script).
fn registry_addr() -> SocketAddr {
    let port = std::env::var("SCHEMA_REGISTRY_PORT").unwrap_or_else(|_| "8081".into());
    format!("127.0.0.1:{port}").parse().unwrap()
}

const API: &str = "/apis/ccompat/v7";

pub fn registry_url() -> String {
    format!("http://{}{API}", registry_addr())
}

/// `orderflow schema NAME` in draft-07, as orderflow registers it, with
/// `change` applied: what another team would post.
fn our_schema_changed(layout: &str, change: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut schema: serde_json::Value =
        serde_json::from_str(&orderflow_ok(&["schema", layout])).unwrap();
    schema["$schema"] = "http://json-schema.org/draft-07/schema#".into();
    let defs = schema.as_object_mut().unwrap().remove("$defs");
    if let Some(defs) = defs {
        schema["definitions"] = defs;
    }
    let mut schema: serde_json::Value =
        serde_json::from_str(&schema.to_string().replace("#/$defs/", "#/definitions/")).unwrap();
    change(&mut schema);
    serde_json::json!({ "schemaType": "JSON", "schema": schema.to_string() }).to_string()
}

/// OrderPlaced with an optional coupon: a BACKWARD-compatible version 2.
fn with_coupon() -> String {
    our_schema_changed("OrderPlaced", |s| {
        s["properties"]["coupon"] = serde_json::json!({ "type": "string", "maxLength": 32 });
    })
}

/// OrderPlaced with `customer_id` a number: a breaking change.
fn customer_id_a_number() -> String {
    our_schema_changed("OrderPlaced", |s| {
        s["properties"]["customer_id"] = serde_json::json!({ "type": "integer" });
    })
}

/// Posts a new version of `subject`: the registry's status and answer.
fn register(subject: &str, body: &str) -> (u16, serde_json::Value) {
    let answer = post(
        registry_addr(),
        &format!("{API}/subjects/{subject}/versions"),
        "application/vnd.schemaregistry.v1+json",
        body.as_bytes(),
    );
    (answer.status, answer.json())
}

pub fn versions(subject: &str) -> Vec<u64> {
    let answer = get(
        registry_addr(),
        &format!("{API}/subjects/{subject}/versions"),
    );
    if answer.status == 404 {
        return Vec::new();
    }
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// `count` orders published to the test's orders topic, with the registry.
fn produce_with_registry(names: &Names, count: &str) -> String {
    let url = registry_url();
    let args = ["produce", "--orders-topic", &names.orders, "--count", count];
    orderflow_ok(&[&args[..], &["--schema-registry", &url]].concat())
}

/// Inventory over the test's topics as a batch, with the registry: its
/// summary.
fn inventory_with_registry(names: &Names) -> String {
    let url = registry_url();
    let mut inventory = names.inventory_args();
    inventory.extend(["--exit-at-end", "--schema-registry", &url]);
    orderflow_ok(&inventory)
}

#[test]
fn services_register_the_schemas_of_the_topics_they_write() {
    let names = Names::new("registry");
    names.create_topics();
    let url = registry_url();
    produce_with_registry(&names, "20");
    inventory_with_registry(&names);
    let mut analytics = names.analytics_args();
    analytics.extend([
        "--exit-at-end",
        "--schema-registry",
        &url,
        "--schema-compatibility",
        "FULL",
        "--format",
        "json",
    ]);
    // Analytics read inventory's framed decisions: every one counted.
    let report = json(orderflow_ok(&analytics).as_bytes());
    assert_eq!(report["total_orders"], 20, "{report}");
    assert_eq!(report["malformed_events"], 0, "{report}");

    for (topic, layout, rule) in [
        (&names.orders, "OrderPlaced", "BACKWARD"),
        (&names.inventory, "InventoryChecked", "BACKWARD"),
        (&names.metrics, "WindowClosed", "FULL"),
    ] {
        let subject = format!("{topic}-value");
        assert_eq!(versions(&subject), [1], "{subject}");
        let latest = get(
            registry_addr(),
            &format!("{API}/subjects/{subject}/versions/latest"),
        );
        let latest = latest.json();
        assert_eq!(latest["schemaType"], "JSON");
        // What is registered is the schema `orderflow schema` prints, in
        // draft-07 (its shared types under definitions, not $defs).
        let registered = latest["schema"].as_str().unwrap();
        let registered: serde_json::Value =
            serde_json::from_str(&registered.replace("#/definitions/", "#/$defs/")).unwrap();
        let printed: serde_json::Value =
            serde_json::from_str(&orderflow_ok(&["schema", layout])).unwrap();
        assert_eq!(registered["properties"], printed["properties"], "{subject}");
        assert_eq!(registered["required"], printed["required"], "{subject}");
        let config = get(registry_addr(), &format!("{API}/config/{subject}")).json();
        assert_eq!(config["compatibilityLevel"], rule, "{subject}");
    }
    // A second start finds its schema registered: no new version.
    produce_with_registry(&names, "20");
    assert_eq!(versions(&format!("{}-value", names.orders)), [1]);
}

#[test]
fn a_schema_the_subjects_rule_refuses_stops_the_service_before_it_writes() {
    let names = Names::new("registry-refused");
    names.create_topics();
    let subject = format!("{}-value", names.orders);
    // Another team registered OrderPlaced with customer_id a number.
    let theirs = customer_id_a_number();
    let (status, answer) = register(&subject, &theirs);
    assert_eq!(status, 200, "{answer}");

    let url = registry_url();
    let args = [
        "produce",
        "--orders-topic",
        &names.orders,
        "--count",
        "20",
        "--schema-registry",
        &url,
    ];
    let output = run(orderflow_command(&args));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for named in [subject.as_str(), "version 2", "version 1", "BACKWARD"] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    assert_eq!(versions(&subject), [1]);
    assert!(names
        .cluster
        .read_all(&names.orders, "read_committed", &[])
        .is_empty());

    // Under the rule NONE any change goes: it registers and publishes.
    let mut anything = args.to_vec();
    anything.extend(["--schema-compatibility", "NONE"]);
    orderflow_ok(&anything);
    assert_eq!(versions(&subject), [1, 2]);
    assert_eq!(
        names
            .cluster
            .read_all(&names.orders, "read_committed", &[])
            .len(),
        20
    );
}

#[test]
fn an_added_optional_field_is_a_new_version_and_a_changed_type_is_refused() {
    let names = Names::new("registry-evolve");
    names.create_topics();
    let subject = format!("{}-value", names.orders);
    produce_with_registry(&names, "5");

    // Version 2: OrderPlaced with an optional coupon, BACKWARD-compatible.
    let with_coupon = with_coupon();
    let (status, answer) = register(&subject, &with_coupon);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(versions(&subject), [1, 2]);

    // A changed type breaks BACKWARD: the registry refuses it.
    let retyped = customer_id_a_number();
    let (status, answer) = register(&subject, &retyped);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(versions(&subject), [1, 2]);

    // This build's producer still starts: its schema is version 1.
    produce_with_registry(&names, "5");
    assert_eq!(versions(&subject), [1, 2]);
}

#[test]
fn an_unreachable_registry_is_an_error_naming_its_url() {
    let names = Names::new("registry-down");
    names.create_topics();
    let args = [
        "produce",
        "--orders-topic",
        &names.orders,
        "--count",
        "5",
        "--schema-registry",
        "http://127.0.0.1:1/apis/ccompat/v7",
        "--timeout",
        "3",
    ];
    let output = run(orderflow_command(&args));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the schema registry at http://127.0.0.1:1/apis/ccompat/v7"),
        "{stderr}"
    );
}

/// Runs scripts/interop/confluent_json.py with the confluent-kafka that
/// scripts/setup installs; its stdout's lines.
fn confluent_json(args: &[&str]) -> Vec<String> {
    let home = std::env::var("HOME").expect("HOME is set");
    let python = std::path::Path::new(&home).join(".cache/orderflow/confluent-kafka/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/interop/confluent_json.py");
    let mut command = std::process::Command::new(python);
    command.arg(script).args(args);
    let output = run(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "confluent_json.py {args:?}: {stderr}"
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Reads `count` records of `topic` with Confluent's JSONDeserializer.
fn read_with_confluent(topic: &str, count: usize) -> Vec<serde_json::Value> {
    let (brokers, url) = (brokers(), registry_url());
    confluent_json(&["read", &brokers, &url, topic, &count.to_string()])
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn order_ids(records: &[serde_json::Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn confluent_kafkas_deserializer_reads_and_validates_what_orderflow_writes() {
    let names = Names::new("registry-confluent-reads");
    names.create_topics();
    produce_with_registry(&names, "100");
    let summary = inventory_with_registry(&names);
    assert!(
        summary.contains("consumed 100,") && summary.contains("malformed 0 "),
        "{summary}"
    );

    // Framed: a zero byte first, then the schema id.
    for line in names
        .cluster
        .read_all(&names.inventory, "read_committed", &[])
    {
        let value = line.rsplit('\t').next().unwrap();
        assert!(value.starts_with('\0'), "{value}");
    }
    let orders = read_with_confluent(&names.orders, 100);
    let decisions = read_with_confluent(&names.inventory, 100);
    assert!(orders.iter().all(|o| o["event_type"] == "OrderPlaced"));
    assert!(decisions
        .iter()
        .all(|d| d["event_type"] == "InventoryChecked"));
    assert_eq!(order_ids(&orders).len(), 100);
    assert_eq!(order_ids(&orders), order_ids(&decisions));
}

#[test]
fn orders_from_confluent_kafkas_serializer_are_decided_and_bad_frames_dead_lettered() {
    let names = Names::new("registry-confluent-writes");
    names.create_topics();
    let (brokers, url) = (brokers(), registry_url());
    let subject = format!("{}-value", names.orders);
    // orderflow registers version 1 and places 30 orders.
    produce_with_registry(&names, "30");
    let v1 = get(
        registry_addr(),
        &format!("{API}/subjects/{subject}/versions/1"),
    )
    .json();
    let v1_id = v1["id"].as_u64().unwrap().to_string();

    // Confluent's serializer places 30 with version 1...
    let mut theirs: BTreeSet<String> =
        confluent_json(&["produce", &brokers, &url, &names.orders, "30"])
            .into_iter()
            .collect();
    // ...and, once another team has registered version 2 (an optional
    // coupon), 10 with a coupon.
    let with_coupon = with_coupon();
    assert_eq!(register(&subject, &with_coupon).0, 200);
    let coupons = confluent_json(&[
        "produce",
        &brokers,
        &url,
        &names.orders,
        "10",
        r#"coupon="SPRING""#,
    ]);
    theirs.extend(coupons);
    assert_eq!(theirs.len(), 40);
    // Framed by hand: an id the registry never gave, and version 1's id on
    // a record version 1 does not allow (a field it does not name).
    let order = r#"{"event_type":"OrderPlaced","schema_version":1,"order_id":"00000000-0000-4000-8000-000000000001","customer_id":"c","items":[{"sku":"SKU-0001","quantity":1,"unit_price_cents":1}],"total_cents":1,"event_time":"2026-01-01T00:00:00.000Z","coupon":"X"}"#;
    confluent_json(&["raw", &brokers, &names.orders, "999999", order]);
    confluent_json(&["raw", &brokers, &names.orders, &v1_id, order]);

    let summary = inventory_with_registry(&names);
    assert!(summary.contains("consumed 72,"), "{summary}");
    assert!(summary.contains("malformed 2 "), "{summary}");

    // Every order Confluent's client placed is decided, as orderflow's are.
    let decided = order_ids(&read_with_confluent(&names.inventory, 70));
    assert_eq!(decided.len(), 70);
    assert!(theirs.is_subset(&decided));

    let dead = names.cluster.read_all(
        &format!("{}.DLQ", names.orders),
        "read_committed",
        &["print.headers=true"],
    );
    assert_eq!(dead.len(), 2, "{dead:?}");
    let reasons = dead.join("\n");
    assert!(
        reasons.contains("schema id 999999 is unknown to the registry"),
        "{reasons}"
    );
    assert!(
        reasons.contains(&format!("does not meet its schema (id {v1_id})")),
        "{reasons}"
    );
}
