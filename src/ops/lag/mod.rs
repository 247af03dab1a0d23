//! `orderflow lag`: per partition, the group's committed offset, the log-end
//! offset and the difference, with the same figures `kafka-consumer-groups
//! --describe` prints for the group; then lag in time (the age of the oldest
//! unconsumed record, from its timestamp) and a Burrow-style status over the
//! last samples (`status`), as a [`Monitor`] takes them again and again.

pub mod status;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::config::KafkaSettings;
use crate::error::{Error, Result};
use crate::kafka::admin::Admin;
use crate::kafka::peek::Peeker;
use status::{Observation, Status, Window};

/// Lag of one partition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; None when it has committed nothing here.
    pub committed: Option<i64>,
    pub log_end: i64,
    /// log_end - committed; None without a committed offset (as
    /// kafka-consumer-groups prints "-").
    pub lag: Option<i64>,
    /// Age of the oldest unconsumed record, in seconds: now minus the
    /// timestamp of the record at the committed offset (0 when caught up).
    /// None when not measured, or when that record has no timestamp.
    pub lag_seconds: Option<f64>,
    /// Burrow-style status over the monitor's window; None when not evaluated.
    pub status: Option<Status>,
}

/// Lag of a group over the partitions of one or more topics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partitions' lag.
    pub total_lag: i64,
    /// The oldest unconsumed record's age over all partitions, in seconds.
    pub lag_seconds: Option<f64>,
    /// The worst of the partitions' statuses.
    pub status: Option<Status>,
    /// Active members of the group when sampled.
    pub members: Option<usize>,
}

impl PartitionLag {
    pub fn new(topic: &str, partition: i32, committed: Option<i64>, log_end: i64) -> Self {
        Self {
            topic: topic.to_owned(),
            partition,
            committed,
            log_end,
            lag: committed.map(|c| (log_end - c).max(0)),
            lag_seconds: None,
            status: None,
        }
    }
}

impl GroupLag {
    pub fn new(group: &str, partitions: Vec<PartitionLag>) -> Self {
        let total_lag = partitions.iter().filter_map(|p| p.lag).sum();
        Self {
            group: group.to_owned(),
            partitions,
            total_lag,
            lag_seconds: None,
            status: None,
            members: None,
        }
    }

    /// The table `kafka-consumer-groups --describe` prints, with lag in time
    /// and status when measured, and a summary.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<24}{:<22}{:>10}{:>16}{:>16}{:>12}{:>10}  STATUS",
            "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "LAG-TIME"
        );
        let dash = || "-".to_string();
        for p in &self.partitions {
            let _ = writeln!(
                out,
                "{:<24}{:<22}{:>10}{:>16}{:>16}{:>12}{:>10}  {}",
                self.group,
                p.topic,
                p.partition,
                p.committed.map_or_else(dash, |c| c.to_string()),
                p.log_end,
                p.lag.map_or_else(dash, |l| l.to_string()),
                p.lag_seconds.map_or_else(dash, seconds),
                p.status.map_or_else(dash, |s| s.to_string()),
            );
        }
        let _ = writeln!(out, "total lag: {}", self.total_lag);
        if let (Some(status), Some(members)) = (self.status, self.members) {
            let _ = writeln!(
                out,
                "group {}: {status}, oldest unconsumed record {} old, {members} active member(s)",
                self.group,
                self.lag_seconds
                    .map_or_else(|| "of unknown age,".into(), seconds),
            );
        }
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
        return Err(Error::NothingCommitted {
            group: group.to_owned(),
            on: "on any topic".into(),
        });
    }
    Ok(GroupLag::new(group, rows))
}

/// Seconds as the table shows them: "12.3s".
fn seconds(value: f64) -> String {
    format!("{value:.1}s")
}

/// Samples one group's lag again and again (`lag`, `lag --watch`, the
/// dashboard): offsets, the age of each partition's oldest unconsumed record,
/// and statuses over the last `window` samples.
pub struct Monitor {
    group: String,
    topic: Option<String>,
    peeker: Peeker,
    window: Window,
}

impl Monitor {
    pub fn new(
        settings: &KafkaSettings,
        group: &str,
        topic: Option<&str>,
        window: usize,
    ) -> Result<Self> {
        Ok(Self {
            group: group.to_owned(),
            topic: topic.map(str::to_owned),
            peeker: Peeker::new(settings)?,
            window: Window::new(window),
        })
    }

    /// Takes a sample now and evaluates it with the samples before it.
    pub fn sample(&mut self, admin: &Admin) -> Result<GroupLag> {
        let mut lag = measure(admin, &self.group, self.topic.as_deref())?;
        let members = admin.active_members(&self.group)?;
        self.window.push(
            lag.partitions
                .iter()
                .map(|p| {
                    let observation = Observation {
                        committed: p.committed,
                        lag: p.lag,
                    };
                    ((p.topic.clone(), p.partition), observation)
                })
                .collect(),
        );
        let ages = self.ages(&lag)?;
        for p in &mut lag.partitions {
            let key = (p.topic.clone(), p.partition);
            p.status = Some(self.window.status(&key, members > 0));
            p.lag_seconds = match p.lag {
                Some(0) => Some(0.0),
                Some(_) => ages.get(&key).copied().flatten(),
                None => None,
            };
        }
        lag.members = Some(members);
        lag.status = lag.partitions.iter().filter_map(|p| p.status).max();
        lag.lag_seconds = lag
            .partitions
            .iter()
            .filter_map(|p| p.lag_seconds)
            .reduce(f64::max);
        Ok(lag)
    }

    /// Per lagging partition, how old the record at its committed offset is.
    fn ages(&self, lag: &GroupLag) -> Result<BTreeMap<(String, i32), Option<f64>>> {
        let mut behind: BTreeMap<&str, BTreeMap<i32, i64>> = BTreeMap::new();
        for p in &lag.partitions {
            if let (Some(committed), Some(1..)) = (p.committed, p.lag) {
                behind
                    .entry(&p.topic)
                    .or_default()
                    .insert(p.partition, committed);
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut ages = BTreeMap::new();
        for (topic, offsets) in behind {
            for (partition, timestamp) in self.peeker.timestamps(topic, &offsets)? {
                let age = timestamp.map(|t| (now - t).max(0) as f64 / 1_000.0);
                ages.insert((topic.to_owned(), partition), age);
            }
        }
        Ok(ages)
    }
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

    #[test]
    fn measured_time_and_status_show_in_text_and_json() {
        let mut partition = PartitionLag::new("t", 0, Some(5), 12);
        partition.lag_seconds = Some(12.34);
        partition.status = Some(Status::Stop);
        let mut group = GroupLag::new("g", vec![partition]);
        group.lag_seconds = Some(12.34);
        group.status = Some(Status::Stop);
        group.members = Some(0);
        let text = group.to_text();
        let row = text.lines().nth(1).unwrap();
        assert!(row.ends_with("12.3s  STOP"), "{text}");
        assert!(
            text.contains("group g: STOP, oldest unconsumed record 12.3s old, 0 active member(s)"),
            "{text}"
        );
        let json = group.to_json();
        assert!(json.contains(r#""status":"STOP""#) && json.contains(r#""lag_seconds":12.34"#));
    }
}
