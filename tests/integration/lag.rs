//! `orderflow lag` agrees with kafka-consumer-groups, and drains to zero.

use crate::common::{describe_group, json, orderflow_ok, GroupRow, Names};

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
