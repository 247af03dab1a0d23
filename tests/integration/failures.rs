//! Errors that end, and errors that do not: a record Kafka refuses is set
//! aside with the reason and the rest goes on; a topic deleted under a
//! running service ends it with exit status 1 naming the topic; a batch job
//! that cannot process what it read never exits 0; and a `-X` property
//! that would void the guarantee is refused at start.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use orderflow::domain::events::{InventoryChecked, Status, SCHEMA_VERSION};

use crate::common::{
    committed_total, kafka_tool, orderflow_ok, read_all, read_topic, run, signal, unique,
    wait_until, wait_with_limit, Cluster, Names,
};

/// The size, as the broker measures it (a record batch of one), of a
/// Reserved decision: the topic limit below which decisions of rejected
/// orders (longer: they say why) no longer fit.
fn reserved_decision_bytes() -> usize {
    let decision = InventoryChecked {
        event_type: InventoryChecked::EVENT_TYPE.into(),
        schema_version: SCHEMA_VERSION,
        order_id: uuid::Uuid::nil(),
        status: Status::Reserved,
        reason: None,
        detail: None,
        event_time: Utc::now(),
        processed_at: Utc::now(),
    };
    let key = decision.order_id.to_string().len();
    orderflow::engine::record_batch_bytes(Some(key), Some(decision.encode().len()), &[])
}

fn create_topic(topic: &str, config: &[&str]) {
    let mut args = vec!["--create", "--topic", topic, "--partitions", "3"];
    for c in config {
        args.extend(["--config", c]);
    }
    kafka_tool("kafka-topics", &args);
}

/// The decisions on `topic`, order id → status.
fn decisions(topic: &str) -> Vec<(String, String)> {
    read_all(topic, "read_committed", &[])
        .iter()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line.split('\t').nth(2).unwrap()).unwrap();
            (
                value["order_id"].as_str().unwrap().to_owned(),
                value["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Dead letters of `dlq`: (order id, the orderflow.error header).
fn dead_letters(dlq: &str) -> Vec<(String, String)> {
    read_all(dlq, "read_committed", &["print.headers=true"])
        .iter()
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            let error = cols[1]
                .split("orderflow.error:")
                .nth(1)
                .and_then(|rest| rest.split(",orderflow.source.topic:").next())
                .expect("an orderflow.error header")
                .to_owned();
            (cols[2].to_owned(), error)
        })
        .collect()
}

#[test]
fn outputs_too_large_for_their_topic_set_their_orders_aside_and_the_rest_is_decided_as_before() {
    let names = Names::new("too-large");
    names.create_topics();
    names.produce(2_000, 31);
    // The reference: every order decided, on a topic with the default limit.
    names.inventory();
    let reference = decisions(&names.inventory);
    assert_eq!(reference.len(), 2_000);

    // The same orders again, decided onto a topic that takes a Reserved
    // decision exactly and no rejection.
    let limit = reserved_decision_bytes();
    let limited = unique("too-large-decisions");
    create_topic(&limited, &[&format!("max.message.bytes={limit}")]);
    let group = unique("too-large-g");
    let summary = orderflow_ok(&[
        "inventory",
        "--orders-topic",
        &names.orders,
        "--inventory-topic",
        &limited,
        "--group",
        &group,
        "--exit-at-end",
    ]);

    let reserved: BTreeSet<&str> = reference
        .iter()
        .filter(|(_, status)| status == "Reserved")
        .map(|(id, _)| id.as_str())
        .collect();
    let rejected: BTreeSet<&str> = reference
        .iter()
        .filter(|(_, status)| status == "Rejected")
        .map(|(id, _)| id.as_str())
        .collect();
    assert!(!reserved.is_empty() && !rejected.is_empty());
    // What fits is decided as an undisturbed run decides it (a rejection
    // takes no stock, so setting one aside changes no other decision).
    let written = read_topic(&limited, reserved.len());
    let written_ids: BTreeSet<String> = decisions(&limited)
        .into_iter()
        .map(|(id, status)| {
            assert_eq!(status, "Reserved");
            id
        })
        .collect();
    assert_eq!(written.len(), written_ids.len());
    assert_eq!(
        written_ids
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        reserved
    );
    // What does not fit is dead-lettered, each order once, with the reason:
    // by the stage that decides, so its input (the answer that completed
    // the order, keyed by order id) is the dead letter.
    let dead = dead_letters(&format!("{group}-orders-repartition.DLQ"));
    let dead_ids: BTreeSet<&str> = dead.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(dead.len(), rejected.len());
    assert_eq!(dead_ids, rejected);
    for (_, error) in &dead {
        assert!(
            error.contains(&limited) && error.contains(&format!("max.message.bytes of {limit}")),
            "{error}"
        );
    }
    assert!(
        summary.contains(&format!(
            "consumed 2000, reserved {}, rejected 0, malformed {} (dead-lettered)",
            reserved.len(),
            rejected.len()
        )),
        "{summary}"
    );
    assert!(Cluster::shared().caught_up(&group));
}

#[test]
fn a_limit_lowered_while_running_is_met_with_kafkas_own_refusal_and_the_orders_set_aside() {
    let names = Names::new("limit-lowered");
    names.create_topics();
    // No stock: every order is rejected, and a rejection's decision is
    // larger than the limit set below.
    let mut args = names.inventory_args();
    args.extend(["--initial-stock", "0"]);
    let service = names.cluster.spawn_service(&args);
    // The deciding stage reads the limits when it starts.
    let deciding = format!("{}-orders", names.inventory_group);
    wait_until("inventory's stages hold every partition", || {
        [&names.inventory_group, &deciding]
            .iter()
            .all(|group| names.cluster.member_partitions(group).iter().sum::<usize>() == 3)
    });
    // Lowered after inventory read the limits: only the broker knows.
    kafka_tool(
        "kafka-configs",
        &[
            "--alter",
            "--entity-type",
            "topics",
            "--entity-name",
            &names.inventory,
            "--add-config",
            "max.message.bytes=300",
        ],
    );
    wait_until("the broker applies the new limit", || {
        kafka_tool(
            "kafka-configs",
            &[
                "--describe",
                "--entity-type",
                "topics",
                "--entity-name",
                &names.inventory,
            ],
        )
        .contains("max.message.bytes=300")
    });
    names.produce(500, 32);
    wait_until("inventory has decided every order", || {
        names.cluster.caught_up(&names.inventory_group) && names.cluster.caught_up(&deciding)
    });
    let output = signal(service, "TERM");
    assert!(output.status.success());

    let dead = dead_letters(&format!("{deciding}-repartition.DLQ"));
    let decided = decisions(&names.inventory);
    let ids: BTreeSet<&str> = dead
        .iter()
        .map(|(id, _)| id.as_str())
        .chain(decided.iter().map(|(id, _)| id.as_str()))
        .collect();
    assert_eq!(dead.len() + decided.len(), 500, "every order once");
    assert_eq!(ids.len(), 500);
    // The first refused came back from the broker with its reason; once
    // the engine had read the new limit, it set the rest aside itself.
    let kafkas = dead
        .iter()
        .filter(|(_, e)| e.contains("refused the record") && e.contains("Message size too large"))
        .count();
    let measured = dead
        .iter()
        .filter(|(_, e)| e.contains("max.message.bytes of 300"))
        .count();
    assert!(kafkas > 0, "{dead:?}");
    assert_eq!(kafkas + measured, dead.len(), "{dead:?}");
}

#[test]
fn a_deleted_output_topic_ends_the_service_with_an_error_naming_it() {
    let runs: Vec<_> = ["exactly-once", "at-least-once"]
        .into_iter()
        .map(|guarantee| {
            std::thread::spawn(move || {
                let names = Names::new(&format!("deleted-{guarantee}"));
                names.create_topics();
                let producer = names.spawn_producer(20_000, 33, 200);
                let mut args = names.inventory_args();
                args.extend(["--guarantee", guarantee]);
                let service = names.cluster.spawn_service(&args);
                wait_until("decisions are committed", || {
                    committed_total(&names.inventory_group) > 0
                });
                kafka_tool("kafka-topics", &["--delete", "--topic", &names.inventory]);
                // Not a timing assertion: a guard against a service that
                // never ends (about a minute on a quiet machine, more on a
                // loaded one: several redos time out first).
                let output = service.wait(Duration::from_secs(300));
                drop(producer);
                let stderr = String::from_utf8_lossy(&output.stderr);
                assert_eq!(output.status.code(), Some(1), "{guarantee}: {stderr}");
                let last = stderr.lines().last().unwrap_or_default();
                assert!(
                    last.starts_with(&format!("error: topic {} cannot be used", names.inventory)),
                    "{guarantee}: {stderr}"
                );
            })
        })
        .collect();
    for run in runs {
        run.join().unwrap();
    }
}

#[test]
fn a_batch_job_that_cannot_set_aside_what_it_cannot_write_never_exits_0() {
    let names = Names::new("no-way-out");
    // Decisions do not fit their topic, and what would be set aside (the
    // answer that completes an order) does not fit the deciding stage's
    // DLQ: no order can be decided and none can be set aside.
    let dlq = format!("{}-orders-repartition.DLQ", names.inventory_group);
    create_topic(&names.orders, &[]);
    create_topic(&names.inventory, &["max.message.bytes=200"]);
    create_topic(&dlq, &["max.message.bytes=200"]);
    names.produce(100, 34);
    let mut args = names.inventory_args();
    args.push("--exit-at-end");
    let output = wait_with_limit(
        {
            let mut command = names.cluster.orderflow_command(&args);
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            command.spawn().unwrap()
        },
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: topic {dlq} cannot be used")),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&output.stdout).is_empty());
    // The deciding stage may have committed orders placed with it (they
    // need no output), never the answers that would decide them.
    let deciding = format!("{}-orders", names.inventory_group);
    assert!(!Cluster::shared().caught_up(&deciding));
    assert!(read_all(&names.inventory, "read_committed", &[]).is_empty());
}

#[test]
fn a_flag_that_would_void_the_guarantee_is_refused_at_start() {
    let names = Names::new("unsafe-x");
    names.create_topics();
    names.produce(10, 35);
    let inventory = names.inventory_args();
    let analytics = names.analytics_args();
    let with = |base: &[&str], extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (args, key) in [
        (
            with(&inventory, &["-X", "isolation.level=read_uncommitted"]),
            "isolation.level",
        ),
        (
            with(&inventory, &["-X", "transactional.id=mine"]),
            "transactional.id",
        ),
        (
            with(&inventory, &["-X", "enable.idempotence=false"]),
            "enable.idempotence",
        ),
        (
            with(
                &inventory,
                &["--guarantee", "at-least-once", "-X", "acks=1"],
            ),
            "acks",
        ),
        (
            with(&analytics, &["-X", "enable.auto.commit=true"]),
            "enable.auto.commit",
        ),
        (
            with(
                &["produce", "--orders-topic", &names.orders],
                &["-X", "acks=0"],
            ),
            "acks",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = run(names.cluster.orderflow_command(&args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("error: -X {key}=")) && stderr.contains("is refused: "),
            "{args:?}: {stderr}"
        );
    }
    // Nothing was consumed or written by the refused runs.
    assert_eq!(committed_total(&names.inventory_group), 0);
    // A harmless property still passes through.
    let mut args = inventory.clone();
    args.extend(["-X", "linger.ms=20", "--exit-at-end"]);
    let summary = orderflow_ok(&args);
    assert!(summary.contains("consumed 10,"), "{summary}");
}
