//! A task's changelog: replaying one partition into the task on assignment,
//! and the engine's own records in it.
//!
//! Besides the task's state records, every transaction writes an offset
//! marker (`__orderflow.offset`: the next input offset) to each changelog
//! partition it advanced. State and marker are committed with the group's
//! input offsets, so on assignment they agree, unless someone moved the
//! group's offsets since (`orderflow replay`). Then the restored state belongs
//! to another position in the input and is dropped: a reset record
//! (`__orderflow.reset`) makes later restores drop it too, as Kafka's streams
//! reset tool empties a changelog.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::classify::{classify, Class};
use super::task::{OutRecord, Task};
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::context::Logged;

/// How long a restore may read nothing before it is given up. A changelog
/// partition is read under read_committed, so it stalls at an open
/// transaction: one a SIGKILLed instance left stays open until its
/// transaction timeout (10 s) and the broker's next sweep for timed-out
/// transactions (every 10 s), later on a loaded machine; the group
/// coordinator moving (NOT_COORDINATOR, retried for up to
/// [`RETRY_FOR`](super::retry::RETRY_FOR)) stalls it too. Both end; an
/// outage that does not is an error within this time.
const RESTORE_STALL: Duration = super::retry::RETRY_FOR;

/// How long a restore waits, at the end of a partition, for state that is
/// behind the group's committed offset to catch up with it. Every batch
/// writes its offset marker before its offsets commit, so the state is never
/// behind them; a restore that ends behind read too little. Seen after a
/// node was killed: a partition's new leader answers with a high watermark
/// that has not caught up yet, and the coordinator writes a transaction's
/// markers to each partition on its own, so the group's offsets may be
/// stable before a changelog partition shows the transaction. State still
/// behind after this is taken as offsets moved since (another tool's reset).
const CATCH_UP: Duration = Duration::from_secs(30);

/// Key of the engine's offset marker records.
pub const OFFSET_KEY: &[u8] = b"__orderflow.offset";
/// Key of the engine's reset records.
pub const RESET_KEY: &[u8] = b"__orderflow.reset";

/// The offset marker for `partition`: input up to `next` is in the state.
pub fn offset_marker(changelog: &str, partition: i32, next: i64) -> OutRecord {
    OutRecord {
        topic: changelog.to_owned(),
        partition: Some(partition),
        key: OFFSET_KEY.to_vec(),
        payload: next.to_string().into_bytes(),
        timestamp: None,
    }
}

/// The reset record for `partition`: state before it no longer counts.
pub fn reset_record(changelog: &str, partition: i32) -> OutRecord {
    OutRecord {
        topic: changelog.to_owned(),
        partition: Some(partition),
        key: RESET_KEY.to_vec(),
        payload: b"reset".to_vec(),
        timestamp: None,
    }
}

/// The changelog topics of `group` among `topics`: `<group>-<store>-changelog`.
pub fn changelogs_of<'t>(group: &str, topics: &'t [String]) -> Vec<&'t str> {
    let prefix = format!("{group}-");
    topics
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with(&prefix) && t.ends_with("-changelog"))
        .filter(|t| !t[prefix.len()..t.len() - "-changelog".len()].contains('-'))
        .collect()
}

/// The internal stages downstream of `group` among `topics`: for each
/// repartition topic `<group>-<stage>-repartition`, that topic and the
/// group of the stage reading it, `<group>-<stage>`.
pub fn stages_of(group: &str, topics: &[String]) -> Vec<(String, String)> {
    let prefix = format!("{group}-");
    topics
        .iter()
        .filter_map(|t| {
            let stage = t.strip_prefix(&prefix)?.strip_suffix("-repartition")?;
            (!stage.is_empty() && !stage.contains('-'))
                .then(|| (t.clone(), format!("{group}-{stage}")))
        })
        .collect()
}

/// Replays the given partitions of `changelog` into `task` (committed
/// records only), all at once; returns per partition the last offset marker
/// seen after its last reset, if any. A partition whose state is behind
/// its `committed` offset (the group's) at the end is read on until it
/// catches up, for up to [`CATCH_UP`].
pub fn restore<T: Task>(
    reader: &BaseConsumer<Logged>,
    changelog: &str,
    partitions: &[i32],
    task: &mut T,
    timeout: Duration,
    committed: &BTreeMap<i32, Option<i64>>,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition_offset(changelog, p, Offset::Beginning)
            .while_("building the changelog assignment")?;
    }
    reader
        .assign(&list)
        .while_(format!("reading {changelog}"))?;
    let mut markers: BTreeMap<i32, Option<i64>> = partitions.iter().map(|&p| (p, None)).collect();
    let mut pending: BTreeSet<i32> = partitions.iter().copied().collect();
    // Partitions read to their end whose state is behind: since when.
    let mut behind: BTreeMap<i32, Instant> = BTreeMap::new();
    // Partitions whose last marker-or-reset so far is a reset.
    let mut reset: BTreeSet<i32> = BTreeSet::new();
    let mut records = 0u64;
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => {
                last_progress = Instant::now();
                records += 1;
                let partition = record.partition();
                behind.remove(&partition);
                pending.insert(partition);
                let key = record.key().unwrap_or_default();
                let value = record.payload().unwrap_or_default();
                if key == OFFSET_KEY {
                    let marker = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                    markers.insert(partition, marker);
                    reset.remove(&partition);
                } else if key == RESET_KEY {
                    task.revoked(partition);
                    task.assigned(partition);
                    markers.insert(partition, None);
                    reset.insert(partition);
                } else {
                    task.restore(partition, key, value);
                }
            }
            // The end, under read_committed: the last stable offset.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let marker = markers.get(&partition).copied().flatten();
                let wanted = committed.get(&partition).copied().flatten();
                // Behind: a marker short of the committed offset, or none
                // at all (no record read) where offsets were committed.
                let short = match (marker, wanted) {
                    (_, None) => false,
                    (Some(at), Some(wanted)) => at < wanted,
                    (None, Some(_)) => !reset.contains(&partition),
                };
                if short {
                    behind.entry(partition).or_insert_with(Instant::now);
                } else {
                    pending.remove(&partition);
                }
            }
            // The changelog deleted, or reading it forbidden.
            Some(Err(error)) if classify(&error) == Class::Fatal => {
                return Err(Error::TopicRefused {
                    topic: changelog.to_owned(),
                    reason: error.to_string(),
                })
            }
            // Lost connections are retried by librdkafka (and logged by the
            // context); the deadline below catches a lasting outage.
            Some(Err(error)) => tracing::debug!(%error, "changelog read error"),
            None => {}
        }
        behind.retain(|&partition, since| {
            if since.elapsed() < CATCH_UP {
                return true;
            }
            tracing::warn!(
                changelog,
                partition,
                waited_s = CATCH_UP.as_secs(),
                "the state stays behind the group's committed offset"
            );
            pending.remove(&partition);
            false
        });
        let limit = (timeout * 3).max(RESTORE_STALL);
        if last_progress.elapsed() > limit {
            return Err(Error::RestoreStalled {
                changelog: changelog.to_owned(),
                partitions: pending.into_iter().collect(),
                waited: limit,
            });
        }
    }
    reader
        .unassign()
        .while_("releasing the changelog partitions")?;
    tracing::info!(changelog, ?partitions, records, "state restored");
    Ok(markers)
}

/// The partitions whose restored state belongs to another position of the
/// input than the group's committed offset: their offset marker (where the
/// state stands) differs from the committed offset. State and offsets
/// commit together, so they agree unless the group's offsets were moved
/// since (`orderflow replay`) without resetting the state.
pub fn moved_since(
    committed: &BTreeMap<i32, Option<i64>>,
    markers: &BTreeMap<i32, Option<i64>>,
) -> Vec<i32> {
    markers
        .iter()
        .filter(|(p, marker)| marker.is_some() && **marker != committed.get(p).copied().flatten())
        .map(|(&p, _)| p)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_dropped_only_where_the_offsets_moved_since() {
        let committed = BTreeMap::from([(0, Some(10)), (1, Some(7)), (2, None), (3, Some(4))]);
        let markers = BTreeMap::from([
            (0, Some(10)), // agrees
            (1, Some(12)), // the group was rewound to 7 since
            (2, Some(3)),  // offsets deleted since
            (3, None),     // no marker: nothing to judge (a reset, or new)
        ]);
        assert_eq!(moved_since(&committed, &markers), [1, 2]);
    }

    #[test]
    fn finds_a_groups_stages_by_their_repartition_topics() {
        let topics: Vec<String> = [
            "analytics-merge-repartition",
            "analytics-eu-merge-repartition",
            "analytics-merge-changelog",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            stages_of("analytics", &topics),
            [(
                "analytics-merge-repartition".to_string(),
                "analytics-merge".to_string()
            )]
        );
    }

    #[test]
    fn finds_a_groups_changelogs_only() {
        let topics: Vec<String> = [
            "analytics-windows-changelog",
            "analytics-eu-windows-changelog",
            "analytics-windows",
            "inventory-stock-changelog",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            changelogs_of("analytics", &topics),
            vec!["analytics-windows-changelog"]
        );
        assert_eq!(
            changelogs_of("analytics-eu", &topics),
            vec!["analytics-eu-windows-changelog"]
        );
    }
}
