//! `orderflow lag`: per partition, the group's committed offset, the log-end
//! offset and the difference, with the same figures `kafka-consumer-groups
//! --describe` prints for the group.

use std::fmt::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::kafka::admin::Admin;

/// Lag of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; None when it has committed nothing here.
    pub committed: Option<i64>,
    pub log_end: i64,
    /// log_end - committed; None without a committed offset (as
    /// kafka-consumer-groups prints "-").
    pub lag: Option<i64>,
}

/// Lag of a group over the partitions of one or more topics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partitions' lag.
    pub total_lag: i64,
}

impl PartitionLag {
    pub fn new(topic: &str, partition: i32, committed: Option<i64>, log_end: i64) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            committed,
            log_end,
            lag: committed.map(|c| (log_end - c).max(0)),
        }
    }
}

impl GroupLag {
    fn new(group: &str, partitions: Vec<PartitionLag>) -> Self {
        let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
        Self {
            group: group.to_owned(),
            partitions,
            total_lag,
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<24}{:<22}{:>10}{:>16}{:>16}{:>12}",
            "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
        );
        let dash = || "-".to_string();
        for p in &self.partitions {
            let _ = writeln!(
                out,
                "{:<24}{:<22}{:>10}{:>16}{:>16}{:>12}",
                self.group,
                p.topic,
                p.partition,
                p.committed.map_or_else(dash, |c| c.to_string()),
                p.log_end,
                p.lag.map_or_else(dash, |l| l.to_string()),
            );
        }
        let _ = writeln!(out, "total lag: {}", self.total_lag);
        out
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("lag serializes")
    }
}

/// Measures `group`'s lag on `topic`, or, without a topic, on every topic the
/// group has committed offsets for.
pub fn measure(admin: &Admin, group: &str, topic: Option<&str>) -> Result<GroupLag> {
    let topics = match topic {
        Some(topic) => vec![topic.to_owned()],
        None => admin.topics()?,
    };
    let mut rows = Vec::new();
    for topic in &topics {
        let partitions = admin.partitions(topic)?;
        let committed = admin.committed(group, topic, &partitions)?;
        if topics.len() > 1 && committed.values().all(Option::is_none) {
            continue; // not a topic this group reads
        }
        for partition in partitions {
            let (_, log_end) = admin.watermarks(topic, partition)?;
            let offset = committed.get(&partition).copied().flatten();
            rows.push(PartitionLag::new(topic, partition, offset, log_end));
        }
    }
    if rows.is_empty() && topic.is_none() {
        return Err(Error::Config(format!(
            "group {group:?} has no committed offsets on any topic"
        )));
    }
    Ok(GroupLag::new(group, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_log_end_minus_committed() {
        let group = GroupLag::new(
            "g",
            vec![
                PartitionLag::new("t", 0, Some(5), 12),
                PartitionLag::new("t", 1, None, 4),
                PartitionLag::new("t", 2, Some(9), 9),
            ],
        );
        let lags: Vec<_> = group.partitions.iter().map(|p| p.lag).collect();
        assert_eq!(lags, vec![Some(7), None, Some(0)]);
        assert_eq!(group.total_lag, 7);
        let text = group.to_text();
        assert!(
            text.lines().nth(2).unwrap().trim_end().ends_with('-'),
            "{text}"
        );
        assert!(group.to_json().contains(r#""total_lag":7"#));
    }
}
