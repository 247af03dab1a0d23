//! `orderflow replay`: move a consumer group's committed offsets on a topic to
//! the earliest or latest offset, to the first message at a point in time, or
//! to a given offset, through the Kafka protocol.
//!
//! The semantics follow `kafka-consumer-groups --reset-offsets`: a plan is
//! computed and shown first (a dry run unless executed); an explicit offset is
//! clamped to what the log still holds; a time past the last message resolves
//! to the log end; and offsets are only written while the group has no active
//! members, since a running consumer would overwrite them with its own.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use rdkafka::producer::FutureRecord;

use crate::kafka::admin::Admin;
use crate::kafka::engine::{changelogs_of, reset_record};
use crate::kafka::producer::{self, acknowledged};

/// Where to move the offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// The first message whose timestamp is at or after this instant.
    Time(DateTime<Utc>),
    /// This offset in every partition, clamped to [earliest, latest].
    Offset(i64),
}

impl FromStr for ResetTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "earliest" => Ok(Self::Earliest),
            "latest" => Ok(Self::Latest),
            _ => {
                if let Some(n) = text.strip_prefix("offset:") {
                    return n
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .map(Self::Offset)
                        .ok_or_else(|| format!("offset:{n} is not a non-negative offset"));
                }
                DateTime::parse_from_rfc3339(text)
                    .map(|t| Self::Time(t.with_timezone(&Utc)))
                    .map_err(|_| {
                        format!(
                            "expected earliest, latest, an RFC 3339 time \
                             (2026-01-01T12:00:00Z) or offset:<n>, got {text:?}"
                        )
                    })
            }
        }
    }
}

impl fmt::Display for ResetTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Earliest => f.write_str("earliest"),
            Self::Latest => f.write_str("latest"),
            Self::Time(t) => write!(f, "{}", t.to_rfc3339()),
            Self::Offset(n) => write!(f, "offset:{n}"),
        }
    }
}

/// One partition of a reset plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRow {
    pub partition: i32,
    /// The committed offset now (None: nothing committed).
    pub current: Option<i64>,
    pub new: i64,
}

/// What a reset would do.
#[derive(Debug, Clone)]
pub struct ResetPlan {
    pub group: String,
    pub topic: String,
    pub target: ResetTarget,
    pub rows: Vec<ResetRow>,
    /// The group's state changelogs (`<group>-<store>-changelog`), emptied
    /// with the reset so that state and offsets start again together.
    pub changelogs: Vec<String>,
}

/// Resolves `target` to an offset in a partition holding [low, high).
/// `at_time` is the time lookup's answer, for `Time` targets.
pub fn resolve(target: ResetTarget, low: i64, high: i64, at_time: Option<i64>) -> i64 {
    match target {
        ResetTarget::Earliest => low,
        ResetTarget::Latest => high,
        ResetTarget::Time(_) => at_time.unwrap_or(high),
        ResetTarget::Offset(n) => n.clamp(low, high),
    }
}

/// Computes the plan without changing anything.
pub fn plan(admin: &Admin, group: &str, topic: &str, target: ResetTarget) -> Result<ResetPlan> {
    let partitions = admin.partitions(topic)?;
    let committed = admin.committed(group, topic, &partitions)?;
    let at_time = match target {
        ResetTarget::Time(t) => admin.offsets_for_time(topic, &partitions, t.timestamp_millis())?,
        _ => BTreeMap::new(),
    };
    let mut rows = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = admin.watermarks(topic, partition)?;
        rows.push(ResetRow {
            partition,
            current: committed.get(&partition).copied().flatten(),
            new: resolve(
                target,
                low,
                high,
                at_time.get(&partition).copied().flatten(),
            ),
        });
    }
    let topics = admin.topics()?;
    let changelogs = changelogs_of(group, &topics)
        .into_iter()
        .map(str::to_owned)
        .collect();
    Ok(ResetPlan {
        group: group.to_owned(),
        topic: topic.to_owned(),
        target,
        rows,
        changelogs,
    })
}

/// Applies the plan; refuses while the group has active members. The state
/// changelogs are reset first: were the offsets moved and the state not, the
/// services would notice the mismatch and start afresh anyway.
pub async fn execute(admin: &Admin, plan: &ResetPlan) -> Result<()> {
    let members = admin.active_members(&plan.group)?;
    if members > 0 {
        return Err(Error::GroupActive {
            group: plan.group.clone(),
            members,
        });
    }
    if !plan.changelogs.is_empty() {
        let producer = producer::idempotent(admin.settings())?;
        for changelog in &plan.changelogs {
            for partition in admin.partitions(changelog)? {
                let reset = reset_record(changelog, partition);
                let record = FutureRecord::to(changelog)
                    .partition(partition)
                    .key(reset.key.as_slice())
                    .payload(reset.payload.as_slice());
                acknowledged(producer::send(&producer, record).await?, changelog).await?;
            }
        }
    }
    let offsets: BTreeMap<i32, i64> = plan.rows.iter().map(|r| (r.partition, r.new)).collect();
    admin.commit(&plan.group, &plan.topic, &offsets)
}

impl ResetPlan {
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for changelog in &self.changelogs {
            let _ = writeln!(out, "state: {changelog} is reset with the offsets");
        }
        let _ = writeln!(
            out,
            "{:<24}{:<22}{:>10}{:>16}{:>14}",
            "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"
        );
        for row in &self.rows {
            let current = row
                .current
                .map_or_else(|| "-".to_string(), |c| c.to_string());
            let _ = writeln!(
                out,
                "{:<24}{:<22}{:>10}{:>16}{:>14}",
                self.group, self.topic, row.partition, current, row.new
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!("earliest".parse(), Ok(ResetTarget::Earliest));
        assert_eq!("latest".parse(), Ok(ResetTarget::Latest));
        assert_eq!("offset:42".parse(), Ok(ResetTarget::Offset(42)));
        let t: ResetTarget = "2026-01-01T12:00:00+02:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-01-01T10:00:00+00:00");
        for bad in ["offset:-1", "offset:x", "yesterday", ""] {
            assert!(bad.parse::<ResetTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_like_kafka_consumer_groups() {
        assert_eq!(resolve(ResetTarget::Earliest, 3, 10, None), 3);
        assert_eq!(resolve(ResetTarget::Latest, 3, 10, None), 10);
        assert_eq!(resolve(ResetTarget::Offset(1), 3, 10, None), 3);
        assert_eq!(resolve(ResetTarget::Offset(99), 3, 10, None), 10);
        assert_eq!(resolve(ResetTarget::Offset(7), 3, 10, None), 7);
        let now = ResetTarget::Time(Utc::now());
        assert_eq!(resolve(now, 3, 10, Some(5)), 5);
        assert_eq!(resolve(now, 3, 10, None), 10);
    }
}
