//! Windows close by the watermark over every partition, not per partition:
//! one window record for all partitions, equal to the report; a partition
//! that is behind holds windows open until it goes idle; and when the orders
//! stop, every window is published once the partitions go idle.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::{json, read_all, signal, wait_until, Names};

/// The windows in OrderMetrics (read_committed): start → (orders, failed),
/// failing on a window published twice.
fn published(topic: &str) -> BTreeMap<String, (u64, u64)> {
    let mut windows = BTreeMap::new();
    for line in read_all(topic, "read_committed", &[]) {
        let value = json(line.split('\t').nth(2).unwrap().as_bytes());
        let start = value["window_start"].as_str().unwrap().to_owned();
        let counts = (
            value["orders"].as_u64().unwrap(),
            value["failed"].as_u64().unwrap(),
        );
        assert!(
            windows.insert(start.clone(), counts).is_none(),
            "window {start} published twice"
        );
    }
    windows
}

/// An InventoryChecked event of order `n` at `event_time`.
fn decision(n: u32, event_time: &str) -> String {
    format!(
        r#"{{"event_type":"InventoryChecked","schema_version":1,"order_id":"00000000-0000-4000-8000-{n:012}","status":"Reserved","reason":null,"detail":null,"event_time":"{event_time}","processed_at":"2026-01-01T00:00:00.000Z"}}"#
    )
}

/// Writes `values` into one partition of `topic`, acknowledged by every
/// in-sync replica. (Kafka's console producer cannot choose a partition:
/// librdkafka, through rdkafka, can.)
fn write_to_partition(names: &Names, topic: &str, partition: i32, values: &[String]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &names.cluster.brokers)
        .set("acks", "all")
        .create()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for value in values {
            let record = FutureRecord::<(), str>::to(topic)
                .partition(partition)
                .payload(value.as_str());
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
}

#[test]
fn twelve_partitions_make_one_window_record_each_and_they_add_up_to_the_report() {
    let names = Names::new("merged");
    names.create_topics_with(&["--partitions", "12"]);
    names.produce(6_000, 51);
    names.inventory();
    let dir = tempfile::tempdir().unwrap();
    let report = json(&names.analytics_json(dir.path(), "report.json"));
    let windows = published(&names.metrics);
    let reported: BTreeMap<String, (u64, u64)> = report["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let start = w["start"].as_str().unwrap().replace('Z', ".000Z");
            (
                start,
                (w["orders"].as_u64().unwrap(), w["failed"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        windows, reported,
        "one record a window, the report's counts"
    );
    assert_eq!(windows.values().map(|c| c.0).sum::<u64>(), 6_000);
    assert_eq!(
        windows.values().map(|c| c.1).sum::<u64>(),
        report["failed_orders"].as_u64().unwrap()
    );
}

#[test]
fn a_batch_report_refuses_to_cover_a_share_of_the_partitions() {
    let names = Names::new("share");
    names.create_topics();
    names.produce(300, 52);
    names.inventory();
    // Another member of the group holds some partitions, and keeps them.
    let mut args = names.analytics_args();
    args.extend(["--instance-id", "other"]);
    let other = names.cluster.spawn_service(&args);
    wait_until("the other member holds every partition", || {
        names.cluster.member_partitions(&names.analytics_group) == [3]
    });
    let mut batch = names.analytics_args();
    batch.extend(["--instance-id", "batch", "--exit-at-end"]);
    let output = crate::common::run(names.cluster.orderflow_command(&batch));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: the report would cover only part of {}: partitions [",
            names.inventory
        )),
        "{stderr}"
    );
    assert!(signal(other, "TERM").status.success());
}

#[test]
fn a_partition_behind_holds_windows_open_until_it_goes_idle() {
    let names = Names::new("behind");
    names.create_topics_with(&["--partitions", "2"]);
    // Partition 0 is five minutes ahead; partition 1 stops at 00:00:30.
    let ahead: Vec<String> = (0..6)
        .map(|m| decision(m, &format!("2026-01-01T00:0{m}:30.000Z")))
        .collect();
    write_to_partition(&names, &names.inventory, 0, &ahead);
    write_to_partition(
        &names,
        &names.inventory,
        1,
        &[decision(100, "2026-01-01T00:00:30.000Z")],
    );
    // The default idle timeout, 30 s.
    let analytics = names.cluster.spawn_service(&names.analytics_args());
    let merge_group = format!("{}-merge", names.analytics_group);
    wait_until("both stages have committed everything", || {
        names.cluster.caught_up(&names.analytics_group) && names.cluster.caught_up(&merge_group)
    });
    // Partition 1, at 00:00:30, holds every window open (within its idle
    // timeout, 30 s: the stages caught up, and the console consumer read
    // OrderMetrics, in far less).
    assert!(published(&names.metrics).is_empty());
    // Once it is idle, partition 0 alone moves the watermark: the windows it
    // has passed by a minute and the grace period close; 00:05 stays open.
    // (Partition 0 keeps getting records meanwhile, so that it never idles.)
    let done = std::sync::atomic::AtomicBool::new(false);
    let windows = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 1_000;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                write_to_partition(
                    &names,
                    &names.inventory,
                    0,
                    &[decision(n, "2026-01-01T00:05:30.000Z")],
                );
                n += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        wait_until("the windows partition 0 has passed are published", || {
            published(&names.metrics).len() >= 5
        });
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        published(&names.metrics)
    });
    assert_eq!(windows.len(), 5, "{windows:?}");
    assert_eq!(
        windows["2026-01-01T00:00:00.000Z"],
        (2, 0),
        "both partitions' orders"
    );
    assert!(!windows.contains_key("2026-01-01T00:05:00.000Z"));
    assert!(signal(analytics, "TERM").status.success());
}

#[test]
fn every_window_is_published_once_the_orders_stop_and_the_partitions_go_idle() {
    let names = Names::new("idle");
    names.create_topics();
    names.produce(1_000, 53);
    names.inventory();
    let mut args = names.analytics_args();
    args.extend(["--idle-timeout-ms", "3000", "--format", "json"]);
    let analytics = names.cluster.spawn_service(&args);
    // No batch end and no later orders: only idleness closes the last
    // windows (the promise: soon after the idle timeout).
    wait_until("every window is published", || {
        published(&names.metrics).values().map(|c| c.0).sum::<u64>() == 1_000
    });
    let stopped = signal(analytics, "TERM");
    assert!(stopped.status.success());
    let report = json(&stopped.stdout);
    let windows = published(&names.metrics);
    assert_eq!(report["windows"].as_array().unwrap().len(), windows.len());
    assert_eq!(report["total_orders"], 1_000);
    assert_eq!(
        report["failed_orders"].as_u64().unwrap(),
        windows.values().map(|c| c.1).sum::<u64>()
    );
}
