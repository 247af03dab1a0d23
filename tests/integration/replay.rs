//! Replay: resetting the analytics group reproduces the report byte for byte;
//! resets follow kafka-consumer-groups' semantics and are refused while the
//! group is active.

use std::time::Duration;

use crate::common::{
    caught_up, describe_group, json, kafka_tool, orderflow_command, orderflow_ok, run, signal,
    spawn_service, wait_until, Names,
};

fn replay(names: &Names, to: &str, execute: bool) -> std::process::Output {
    let mut args = vec![
        "replay",
        "--group",
        &names.analytics_group,
        "--topic",
        &names.inventory,
        "--to",
        to,
    ];
    if execute {
        args.push("--execute");
    }
    run(orderflow_command(&args))
}

/// `orderflow replay` of `group` on `topic` with `args`, which must succeed;
/// returns its stdout.
fn replay_ok(group: &str, topic: &str, args: &[&str]) -> String {
    let mut all = vec!["replay", "--group", group, "--topic", topic];
    all.extend(args);
    orderflow_ok(&all)
}

fn committed(group: &str) -> Vec<Option<i64>> {
    describe_group(group)
        .into_iter()
        .map(|row| row.current)
        .collect()
}

#[test]
fn replay_to_earliest_reproduces_the_report_byte_for_byte() {
    let names = Names::new("replay");
    names.create_topics();
    names.produce(3_000, 11);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    let first = names.analytics_json(dir.path(), "run1.json");
    assert_eq!(json(&first)["total_orders"], 3_000);
    assert!(caught_up(&names.analytics_group));
    let at_end = committed(&names.analytics_group);

    // A dry run shows the plan and changes nothing.
    let dry = replay(&names, "earliest", false);
    assert!(dry.status.success());
    assert!(String::from_utf8_lossy(&dry.stdout).contains("dry run"));
    assert_eq!(committed(&names.analytics_group), at_end);

    assert!(replay(&names, "earliest", true).status.success());
    assert_eq!(
        committed(&names.analytics_group),
        vec![Some(0); at_end.len()]
    );

    let second = names.analytics_json(dir.path(), "run2.json");
    assert_eq!(first, second, "the replayed report is byte-identical");
}

#[test]
fn replay_to_a_time_or_an_offset_follows_kafka_consumer_groups() {
    let names = Names::new("replay-to");
    names.create_topics();
    names.produce(400, 1);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    names.analytics_json(dir.path(), "all.json");

    // Everything written after `boundary` is the second batch.
    std::thread::sleep(Duration::from_millis(1100));
    let boundary = chrono::Utc::now().to_rfc3339();
    std::thread::sleep(Duration::from_millis(1100));
    names.produce(250, 2);
    names.inventory();

    assert!(replay(&names, &boundary, true).status.success());
    let report = json(&names.analytics_json(dir.path(), "since.json"));
    assert_eq!(report["total_orders"], 250, "only events after {boundary}");

    // offset:n is clamped to what the log holds, per partition.
    assert!(replay(&names, "offset:5", true).status.success());
    assert_eq!(committed(&names.analytics_group), vec![Some(5); 3]);
    assert!(replay(&names, "offset:999999", true).status.success());
    let ends: Vec<Option<i64>> = describe_group(&names.analytics_group)
        .iter()
        .map(|r| Some(r.log_end))
        .collect();
    assert_eq!(committed(&names.analytics_group), ends);

    let bad = replay(&names, "yesterday", true);
    assert_eq!(bad.status.code(), Some(2), "clap rejects an unknown target");
}

#[test]
fn replay_is_refused_while_the_group_is_active() {
    let names = Names::new("replay-active");
    names.create_topics();
    names.produce(200, 5);
    names.inventory();

    // A long-running analytics instance: the group has an active member.
    let service = spawn_service(&[
        "analytics",
        "--inventory-topic",
        &names.inventory,
        "--group",
        &names.analytics_group,
        "--commit-interval-ms",
        "100",
    ]);
    wait_until("analytics has caught up", || {
        caught_up(&names.analytics_group)
    });
    let at_end = committed(&names.analytics_group);

    let refused = replay(&names, "earliest", true);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("active member"), "{stderr}");
    assert_eq!(committed(&names.analytics_group), at_end);

    // SIGINT: the service commits, prints its report and exits 0.
    let output = signal(service, "INT");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(report.contains("total orders:      200"), "{report}");

    names.replay_analytics_to_earliest();
    assert_eq!(committed(&names.analytics_group), vec![Some(0); 3]);
}

#[test]
fn shift_by_and_export_match_kafka_consumer_groups() {
    let names = Names::new("replay-shift");
    names.create_topics();
    names.produce(300, 4);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    names.analytics_json(dir.path(), "all.json");

    // Kafka's own tool computes the same reset, as CSV, without applying it.
    let theirs = kafka_tool(
        "kafka-consumer-groups",
        &[
            "--reset-offsets",
            "--group",
            &names.analytics_group,
            "--topic",
            &names.inventory,
            "--shift-by",
            "-40",
            "--dry-run",
            "--export",
        ],
    );
    let export = dir.path().join("plan.csv");
    replay_ok(
        &names.analytics_group,
        &names.inventory,
        &["--shift-by", "-40", "--export", export.to_str().unwrap()],
    );
    let ours = std::fs::read_to_string(&export).unwrap();
    let lines = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with(&format!("\"{}\",", names.inventory)))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    };
    assert_eq!(lines(&ours).len(), 3, "{ours}");
    assert_eq!(lines(&ours), lines(&theirs));

    // Applied: every partition 40 back from where it was.
    let before = committed(&names.analytics_group);
    replay_ok(
        &names.analytics_group,
        &names.inventory,
        &["--shift-by", "-40", "--execute"],
    );
    let expected: Vec<Option<i64>> = before.iter().map(|c| c.map(|c| c - 40)).collect();
    assert_eq!(committed(&names.analytics_group), expected);
}

#[test]
fn by_duration_resets_to_the_first_message_that_recent() {
    let names = Names::new("replay-ago");
    names.create_topics();
    names.produce(200, 6);
    names.inventory();
    // Where the second batch starts, per partition.
    let first_batch_ends: Vec<Option<i64>> = describe_group(&names.inventory_group)
        .iter()
        .map(|r| Some(r.log_end))
        .collect();
    std::thread::sleep(Duration::from_secs(15));
    names.produce(150, 7);
    names.inventory();

    // The second batch is seconds old, the first at least 15 s.
    replay_ok(
        &names.inventory_group,
        &names.orders,
        &["--by-duration", "10s", "--execute"],
    );
    assert_eq!(committed(&names.inventory_group), first_batch_ends);

    let bad = run(orderflow_command(&[
        "replay",
        "--group",
        &names.inventory_group,
        "--topic",
        &names.orders,
        "--by-duration",
        "10 minutes",
    ]));
    assert_eq!(bad.status.code(), Some(2), "clap rejects a bad duration");
}
