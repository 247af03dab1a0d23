//! `orderflow lag` agrees with kafka-consumer-groups and drains to zero; its
//! lag in time is the age of the oldest unconsumed record; its statuses
//! follow what the group does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    describe_group, json, orderflow_ok, signal, spawn_service, wait_until, GroupRow, Names,
};

fn our_lag(names: &Names) -> (Vec<GroupRow>, i64) {
    let out = orderflow_ok(&[
        "lag",
        "--group",
        &names.inventory_group,
        "--topic",
        &names.orders,
        "--format",
        "json",
    ]);
    let lag = json(out.as_bytes());
    let rows = lag["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| GroupRow {
            topic: p["topic"].as_str().unwrap().to_owned(),
            partition: p["partition"].as_i64().unwrap() as i32,
            current: p["committed"].as_i64(),
            log_end: p["log_end"].as_i64().unwrap(),
            lag: p["lag"].as_i64(),
        })
        .collect();
    (rows, lag["total_lag"].as_i64().unwrap())
}

#[test]
fn lag_agrees_with_kafka_consumer_groups_and_drains() {
    let names = Names::new("lag");
    names.create_topics();
    names.produce(1_000, 3);
    names.inventory();
    names.produce(600, 4);

    let (ours, total) = our_lag(&names);
    assert_eq!(ours, describe_group(&names.inventory_group));
    assert_eq!(total, 600);
    assert_eq!(ours.iter().map(|r| r.log_end).sum::<i64>(), 1_600);

    // Without --topic, the group's topics are found from its committed offsets.
    let text = orderflow_ok(&["lag", "--group", &names.inventory_group]);
    assert!(
        text.contains(&names.orders) && text.contains("total lag: 600"),
        "{text}"
    );

    names.inventory();
    let (ours, total) = our_lag(&names);
    assert_eq!(total, 0);
    assert_eq!(ours, describe_group(&names.inventory_group));
    assert!(ours.iter().all(|r| r.lag == Some(0)));
}

/// Seconds since the epoch, as the test's own clock reads it.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `orderflow lag` once, on one sample, for analytics' group; and the test's
/// clock just before and just after it.
fn analytics_lag_now(names: &Names) -> (serde_json::Value, f64, f64) {
    let before = now();
    let out = orderflow_ok(&[
        "lag",
        "--group",
        &names.analytics_group,
        "--topic",
        &names.inventory,
        "--window",
        "1",
        "--format",
        "json",
    ]);
    (json(out.as_bytes()), before, now())
}

/// Waits until `lag --watch` has printed, after line `from`, a sample whose
/// group status is `status`; returns that line's index and the sample.
fn wait_for_status(
    samples: &Arc<Mutex<Vec<String>>>,
    from: usize,
    status: &str,
) -> (usize, serde_json::Value) {
    let mut found = None;
    wait_until(&format!("lag --watch reports {status}"), || {
        let lines = samples.lock().unwrap();
        found = lines
            .iter()
            .enumerate()
            .skip(from)
            .map(|(i, line)| (i, json(line.as_bytes())))
            .find(|(_, sample)| sample["status"] == status);
        found.is_some()
    });
    found.unwrap()
}

/// Runs `produce` and returns the test's clock before and after: every
/// order's timestamp lies between the two.
fn produce_timed(names: &Names, count: u64, seed: u64) -> (f64, f64) {
    let before = now();
    names.produce(count, seed);
    (before, now())
}

#[test]
fn lag_in_time_and_burrow_statuses_follow_the_group() {
    let names = Names::new("lagstatus");
    names.create_topics();
    let (first_start, first_end) = produce_timed(&names, 600, 5);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    names.analytics_json(dir.path(), "caught-up.json");

    let mut watcher = spawn_service(&[
        "lag",
        "--group",
        &names.analytics_group,
        "--topic",
        &names.inventory,
        "--watch",
        "1",
        "--window",
        "3",
        "--format",
        "json",
    ]);
    let samples = watcher.follow_stdout();
    let (at, ok) = wait_for_status(&samples, 0, "OK");
    assert_eq!(ok["total_lag"], 0);
    assert_eq!(ok["lag_seconds"], 0.0);

    // 300 more decisions and no analytics running: STOP. Their age is the
    // age of their orders, which the test's clock brackets.
    let (start, end) = produce_timed(&names, 300, 6);
    names.inventory();
    let (at, stop) = wait_for_status(&samples, at + 1, "STOP");
    // (Lag counts offsets, and transaction markers take offsets too.)
    assert!(stop["total_lag"].as_i64().unwrap() >= 300, "{stop}");
    assert_eq!(stop["members"], 0);
    std::thread::sleep(Duration::from_secs(2));
    let (lag, before, after) = analytics_lag_now(&names);
    let age = lag["lag_seconds"].as_f64().unwrap();
    assert!(
        age >= before - end - 0.01 && age <= after - start + 0.01,
        "age {age} s, expected within [{}, {}]",
        before - end,
        after - start
    );
    for p in lag["partitions"].as_array().unwrap() {
        assert_eq!(p["status"], "STOP", "{lag}");
    }

    // A replay to the beginning: REWIND; the oldest unconsumed record is
    // the first decision, as old as the first orders, not the epoch.
    names.replay_analytics_to_earliest();
    let (at, rewind) = wait_for_status(&samples, at + 1, "REWIND");
    assert!(rewind["total_lag"].as_i64().unwrap() >= 900, "{rewind}");
    let (lag, before, after) = analytics_lag_now(&names);
    let age = lag["lag_seconds"].as_f64().unwrap();
    assert!(
        age >= before - first_end - 0.01 && age <= after - first_start + 0.01,
        "age after the replay {age} s, expected within [{}, {}]",
        before - first_end,
        after - first_start
    );

    // A member that holds its partitions but hardly moves (5 s an event):
    // STALL.
    let mut args = names.analytics_args();
    args.extend(["--throttle-ms", "5000"]);
    let stalled = spawn_service(&args);
    let (at, stall) = wait_for_status(&samples, at + 1, "STALL");
    assert_eq!(stall["members"], 1);
    assert!(signal(stalled, "TERM").status.success());

    // Orders arriving at 300/s, inventory keeping up, analytics taking
    // 10 ms an event: analytics moves but falls behind, WARN.
    let inventory = spawn_service(&names.inventory_args());
    let producer = names.spawn_producer(3_000, 7, 300);
    let mut args = names.analytics_args();
    args.extend(["--throttle-ms", "10"]);
    let slow = spawn_service(&args);
    let (_, warn) = wait_for_status(&samples, at + 1, "WARN");
    assert_eq!(warn["members"], 1);
    assert!(warn["total_lag"].as_i64().unwrap() > 0);

    for service in [producer, slow, inventory, watcher] {
        signal(service, "TERM");
    }
}
