//! `orderflow replay`: move a consumer group's committed offsets on a topic to
//! the earliest or latest offset, to the first message at a point in time or
//! a duration ago, to a given offset, or by a number of offsets, through the
//! Kafka protocol.
//!
//! The semantics follow `kafka-consumer-groups --reset-offsets` (`--to-earliest`,
//! `--to-latest`, `--to-datetime`, `--by-duration`, `--to-offset`,
//! `--shift-by`, `--export`): a plan is computed and shown first (a dry run
//! unless executed); an explicit or shifted offset is clamped to what the log
//! still holds; a time past the last message resolves to the log end; a shift
//! needs a committed offset to shift; and offsets are only written while the
//! group has no active members, since a running consumer would overwrite them
//! with its own. The plan exports as the CSV `kafka-consumer-groups` writes
//! and reads back with `--from-file`.

use std::collections::BTreeMap;
use std::fmt::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use rdkafka::producer::FutureRecord;

use crate::engine::{changelogs_of, reset_record, stages_of};
use crate::kafka::admin::Admin;
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
    /// The first message at or after this long before now.
    Ago(Duration),
    /// The committed offset moved by this many (negative: back), clamped.
    ShiftBy(i64),
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
            Self::Ago(d) => write!(f, "{} s before now", d.as_secs_f64()),
            Self::ShiftBy(n) => write!(f, "shift by {n}"),
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
    /// The group's internal stages downstream (a stage reading
    /// `<group>-<stage>-repartition` as group `<group>-<stage>`): moved to
    /// the end of their topic, as Kafka Streams' reset tool moves internal
    /// topics, so that only what the group writes from now on reaches them.
    pub stages: Vec<StageReset>,
}

/// An internal stage's offsets, all moved to its topic's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReset {
    pub group: String,
    pub topic: String,
    pub offsets: BTreeMap<i32, i64>,
}

/// Resolves `target` to an offset in a partition holding [low, high).
/// `at_time` is the time lookup's answer, for `Time` and `Ago` targets;
/// `current` the committed offset. None: a shift with nothing to shift.
pub fn resolve(
    target: ResetTarget,
    low: i64,
    high: i64,
    at_time: Option<i64>,
    current: Option<i64>,
) -> Option<i64> {
    Some(match target {
        ResetTarget::Earliest => low,
        ResetTarget::Latest => high,
        ResetTarget::Time(_) | ResetTarget::Ago(_) => at_time.unwrap_or(high),
        ResetTarget::Offset(n) => n.clamp(low, high),
        ResetTarget::ShiftBy(n) => current?.saturating_add(n).clamp(low, high),
    })
}

/// A duration as `kafka-consumer-groups --by-duration` takes it (ISO 8601,
/// `PnDTnHnMnS`, e.g. `PT10M`), or written short: `10m`, `1h30m`, `2d`, `90s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration such as 10m, 1h30m, 2d or PT10M, got {text:?}");
    let upper = text.trim().to_ascii_uppercase();
    let (body, iso) = match upper.strip_prefix('P') {
        Some(rest) => (rest.to_owned(), true),
        None => (upper, false),
    };
    let mut seconds = 0.0;
    let mut number = String::new();
    let mut in_time = !iso; // ISO: minutes only after the T
    let mut any = false;
    for c in body.chars() {
        match c {
            '0'..='9' | '.' => number.push(c),
            'T' if iso && number.is_empty() => in_time = true,
            'D' | 'H' | 'M' | 'S' => {
                let n: f64 = number.parse().map_err(|_| bad())?;
                let unit = match (c, in_time) {
                    ('D', _) => 86_400.0,
                    ('H', true) => 3_600.0,
                    ('M', true) => 60.0,
                    ('S', true) => 1.0,
                    _ => return Err(bad()),
                };
                seconds += n * unit;
                number.clear();
                any = true;
            }
            _ => return Err(bad()),
        }
    }
    if !any || !number.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Computes the plan without changing anything.
pub fn plan(admin: &Admin, group: &str, topic: &str, target: ResetTarget) -> Result<ResetPlan> {
    let partitions = admin.partitions(topic)?;
    let committed = admin.committed(group, topic, &partitions)?;
    let time = match target {
        ResetTarget::Time(t) => Some(t),
        ResetTarget::Ago(d) => Some(Utc::now() - chrono::Duration::from_std(d).unwrap_or_default()),
        _ => None,
    };
    let at_time = match time {
        Some(t) => admin.offsets_for_time(topic, &partitions, t.timestamp_millis())?,
        None => BTreeMap::new(),
    };
    let mut rows = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = admin.watermarks(topic, partition)?;
        let current = committed.get(&partition).copied().flatten();
        let at_time = at_time.get(&partition).copied().flatten();
        let new = resolve(target, low, high, at_time, current).ok_or_else(|| {
            Error::NothingCommitted {
                group: group.to_owned(),
                on: format!("on {topic}[{partition}] to shift"),
            }
        })?;
        rows.push(ResetRow {
            partition,
            current,
            new,
        });
    }
    let topics = admin.topics()?;
    let changelogs = changelogs_of(group, &topics)
        .into_iter()
        .map(str::to_owned)
        .collect();
    let mut stages = Vec::new();
    for (stage_topic, stage_group) in stages_of(group, &topics) {
        let mut offsets = BTreeMap::new();
        for partition in admin.partitions(&stage_topic)? {
            offsets.insert(partition, admin.watermarks(&stage_topic, partition)?.1);
        }
        stages.push(StageReset {
            group: stage_group,
            topic: stage_topic,
            offsets,
        });
    }
    Ok(ResetPlan {
        group: group.to_owned(),
        topic: topic.to_owned(),
        target,
        rows,
        changelogs,
        stages,
    })
}

/// Applies the plan; refuses while the group has active members. The state
/// changelogs are reset first: were the offsets moved and the state not, the
/// services would notice the mismatch and start afresh anyway.
pub async fn execute(admin: &Admin, plan: &ResetPlan) -> Result<()> {
    for group in std::iter::once(&plan.group).chain(plan.stages.iter().map(|s| &s.group)) {
        let members = admin.active_members(group)?;
        if members > 0 {
            return Err(Error::GroupActive {
                group: group.clone(),
                members,
            });
        }
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
    for stage in &plan.stages {
        admin.commit(&stage.group, &stage.topic, &stage.offsets)?;
    }
    let offsets: BTreeMap<i32, i64> = plan.rows.iter().map(|r| (r.partition, r.new)).collect();
    admin.commit(&plan.group, &plan.topic, &offsets)
}

impl ResetPlan {
    /// The plan as `kafka-consumer-groups --reset-offsets --export` writes it
    /// (and `--from-file` reads it): `"topic",partition,offset` per line.
    /// (Topic names cannot hold a quote or a comma: quoting is all it takes.)
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for row in &self.rows {
            let _ = writeln!(out, "\"{}\",{},{}", self.topic, row.partition, row.new);
        }
        out
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for changelog in &self.changelogs {
            let _ = writeln!(out, "state: {changelog} is reset with the offsets");
        }
        for stage in &self.stages {
            let _ = writeln!(
                out,
                "stage: group {} moves to the end of {}",
                stage.group, stage.topic
            );
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
        assert_eq!(resolve(ResetTarget::Earliest, 3, 10, None, None), Some(3));
        assert_eq!(resolve(ResetTarget::Latest, 3, 10, None, None), Some(10));
        assert_eq!(resolve(ResetTarget::Offset(1), 3, 10, None, None), Some(3));
        assert_eq!(
            resolve(ResetTarget::Offset(99), 3, 10, None, None),
            Some(10)
        );
        assert_eq!(resolve(ResetTarget::Offset(7), 3, 10, None, None), Some(7));
        let now = ResetTarget::Time(Utc::now());
        assert_eq!(resolve(now, 3, 10, Some(5), None), Some(5));
        assert_eq!(resolve(now, 3, 10, None, None), Some(10));
        let ago = ResetTarget::Ago(Duration::from_secs(600));
        assert_eq!(resolve(ago, 3, 10, Some(4), None), Some(4));
        assert_eq!(resolve(ago, 3, 10, None, None), Some(10));
        let back = ResetTarget::ShiftBy(-5);
        assert_eq!(resolve(back, 3, 10, None, Some(9)), Some(4));
        assert_eq!(resolve(back, 3, 10, None, Some(6)), Some(3));
        assert_eq!(
            resolve(ResetTarget::ShiftBy(5), 3, 10, None, Some(9)),
            Some(10)
        );
        assert_eq!(resolve(back, 3, 10, None, None), None);
    }

    #[test]
    fn parses_durations_short_and_iso() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("1h30m"), Ok(5_400));
        assert_eq!(secs("2d"), Ok(172_800));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("PT10M"), Ok(600));
        assert_eq!(secs("P1DT2H"), Ok(93_600));
        assert_eq!(secs("pt0.5s").map(|_| ()), Ok(()));
        // ISO 8601 months are not minutes; numbers need units.
        for bad in ["P10M", "10", "m", "10x", "", "-5m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exports_the_csv_kafka_consumer_groups_reads() {
        let plan = ResetPlan {
            group: "g".into(),
            topic: "InventoryEvents".into(),
            target: ResetTarget::ShiftBy(-2),
            rows: vec![
                ResetRow {
                    partition: 0,
                    current: Some(5),
                    new: 3,
                },
                ResetRow {
                    partition: 1,
                    current: None,
                    new: 0,
                },
            ],
            changelogs: vec![],
            stages: Vec::new(),
        };
        assert_eq!(
            plan.to_csv(),
            "\"InventoryEvents\",0,3\n\"InventoryEvents\",1,0\n"
        );
    }
}
