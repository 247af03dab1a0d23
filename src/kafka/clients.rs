//! One builder per kind of client orderflow creates, each setting written
//! once with the reason it is set. A caller adds what only its own use needs
//! (`extra`, applied after the kind's settings); the user's `-X` properties
//! come last of all (`KafkaSettings::client_config`), once
//! `config::overrides` has checked they void no guarantee.
//!
//! - the idempotent producer: the order producer, and the engine's producer
//!   (which adds its transactional id);
//! - the group consumer: the engine's, which joins the service's group;
//! - the assign-only reader: reads or asks about partitions it is given,
//!   never joins a group and never commits on its own (changelog restores,
//!   the record peeker, the dashboard's OrderMetrics reader, the admin's
//!   offsets clients).

use rdkafka::ClientConfig;

use crate::config::KafkaSettings;

/// The engine's consumers' prefetch limit and their pause when it is
/// reached (measured in the README's Performance section).
pub const PREFETCH_KBYTES: &str = "16384";
pub const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A producer that never duplicates or reorders on retries and counts a
/// record written once every in-sync replica has it.
pub fn idempotent_producer(
    settings: &KafkaSettings,
    message_timeout_ms: &str,
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut role = vec![
        // No duplicates and no reordering when librdkafka retries a batch
        // after a timeout or a leader change; implies acks=all.
        ("enable.idempotence", "true"),
        // A record counts as written once every in-sync replica has it.
        ("acks", "all"),
        // How long a delivery may take before it fails, so that a lost
        // cluster becomes an error in bounded time, not librdkafka's five
        // minutes (callers choose: see their comments).
        ("message.timeout.ms", message_timeout_ms),
        // Writing to a topic that does not exist is a mistake to report,
        // not a reason to create one with the broker's default settings.
        ("allow.auto.create.topics", "false"),
    ];
    role.extend_from_slice(extra);
    settings.client_config(&role)
}

/// A member of `group` whose offsets are committed by the engine only.
pub fn group_consumer(settings: &KafkaSettings, group: &str) -> ClientConfig {
    settings.client_config(&[
        ("group.id", group),
        // Offsets are committed by the engine, with the batch they end.
        ("enable.auto.commit", "false"),
        // A group with no committed offsets starts from the oldest event:
        // a new analytics group sees the whole history, as does a replay.
        ("auto.offset.reset", "earliest"),
        // Report reaching the end of a partition, so that batch runs
        // (--exit-at-end) know when they have caught up.
        ("enable.partition.eof", "true"),
        // A dead instance's partitions move to a live one after 10 s
        // without heartbeats, not librdkafka's 45 s.
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "3000"),
        // Never read the outputs of aborted transactions upstream; and
        // fetch committed offsets only once no transaction holding offsets
        // for them is pending (KIP-447's require_stable).
        ("isolation.level", "read_committed"),
        // Prefetch at most 16 MB (librdkafka's default is 64 MB): a service
        // catching up on a backlog holds a full prefetch queue, and that
        // queue was most of its memory.
        ("queued.max.messages.kbytes", PREFETCH_KBYTES),
        // When the queue is full, fetch again 10 ms later, not after
        // librdkafka's default second: a busy consumer empties it in well
        // under that and then sat idle, at half its throughput.
        ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
    ])
}

/// A consumer that is assigned partitions (or asks about a group's
/// offsets) and never joins a group. librdkafka's consumer API wants a
/// `group.id` even so: `group` names whose offsets it asks about, or only
/// what it is for.
pub fn assign_only_reader(
    settings: &KafkaSettings,
    group: &str,
    extra: &[(&str, &str)],
) -> ClientConfig {
    let mut role = vec![
        ("group.id", group),
        // It never commits on its own: what it reads is not consumed.
        ("enable.auto.commit", "false"),
        // Report a partition's end: its readers stop there.
        ("enable.partition.eof", "true"),
        // Only what committed transactions wrote, as the services read.
        ("isolation.level", "read_committed"),
    ];
    role.extend_from_slice(extra);
    settings.client_config(&role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_extra_settings_follow_the_kinds_and_overrides_follow_both() {
        let mut settings = KafkaSettings::new("127.0.0.1:9092");
        settings.overrides.push(("linger.ms".into(), "20".into()));
        let config = idempotent_producer(&settings, "60000", &[("linger.ms", "5")]);
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("message.timeout.ms"), Some("60000"));
        assert_eq!(config.get("linger.ms"), Some("20"));
        let reader = assign_only_reader(&settings, "g", &[("fetch.wait.max.ms", "10")]);
        assert_eq!(reader.get("isolation.level"), Some("read_committed"));
        assert_eq!(reader.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(group_consumer(&settings, "g").get("group.id"), Some("g"));
    }
}
