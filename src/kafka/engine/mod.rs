//! The stream engine: runs a [`Task`] over an input topic with the chosen
//! delivery guarantee, the way Kafka Streams runs a topology.
//!
//! **Exactly-once** (default): records are processed in batches, each inside
//! one Kafka transaction holding the batch's outputs, its changelog records,
//! its dead letters and its input offsets (`send_offsets_to_transaction` with
//! the consumer's group metadata, KIP-447). Readers with
//! `isolation.level=read_committed` see a batch entirely or not at all. When a
//! transaction is aborted (an error, or a rebalance), the task's state rolls
//! back to the last commit and the consumer rewinds to the committed offsets,
//! so the batch is processed again from scratch. A zombie instance is fenced:
//! by its transactional id when it restarts, and by the group generation when
//! it commits offsets for partitions it no longer owns.
//!
//! **At-least-once**: the same batches without transactions. At the end of a
//! batch the producer is flushed (every output acknowledged) and only then are
//! the input offsets committed. A crash repeats the uncommitted batch.
//!
//! Outputs carry the timestamp of the input record they came from, as in
//! Kafka Streams: an order's creation time travels with its decision, so a
//! reader downstream can tell how old the event it processes is. The engine
//! records that age for every record it processes (`EngineStats::latency`).
//!
//! What it commits is counted in the service's [`Metrics`] too: records in
//! and out, dead letters, latencies, transactions, and per partition the
//! committed offset (for the lag) and whether it has been taken over.
//!
//! Either way, a record the task rejects as poison goes to `<input>.DLQ` with
//! headers naming the error and its source, and its offset is committed like
//! any other: a partition never gets stuck.
//!
//! The engine is synchronous and runs on a thread of its own
//! (`spawn_blocking`): librdkafka's transactional calls block, and rebalance
//! callbacks run inside `poll`, on this same thread, between two records.

mod changelog;
mod contexts;

pub use changelog::{changelogs_of, reset_record};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::latency::{Latencies, LatencySummary};
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::context::{Logged, ReportStatistics};
use crate::kafka::task::{OutRecord, Poison, Task};
use crate::metrics::{Metrics, TopicLabel};
use contexts::{Assignment, Deliveries, GroupEvents};

/// Which delivery guarantee a service gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

/// How the engine runs a task.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub group: String,
    pub input_topic: String,
    /// The compacted topic the task's state is restored from, if it has state.
    pub changelog_topic: Option<String>,
    pub guarantee: Guarantee,
    /// Identifies this instance's producer across restarts, so that a restart
    /// aborts what a crashed predecessor left open (exactly-once only).
    pub transactional_id: String,
    /// How long a batch (transaction) collects records before it commits.
    pub commit_interval: Duration,
    /// Stop once every assigned partition has been read to its end.
    pub exit_at_end: bool,
    /// Where what the engine commits is counted.
    pub metrics: Arc<Metrics>,
}

/// What the engine did, counting committed work only.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EngineStats {
    /// Input records processed (dead letters included).
    pub consumed: u64,
    /// Input records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Batches committed.
    pub commits: u64,
    /// Batches aborted (and processed again).
    pub aborts: u64,
    /// From the first record processed to the last batch committed: the
    /// time the run spent working, without start-up and idle waiting before.
    pub busy: Duration,
    /// Age of each committed input record when it was processed: processing
    /// time minus the record's timestamp. Only records created after their
    /// partition was taken over count: older ones waited for the service to
    /// start (or to take over), which is lag, not processing latency.
    pub latency: LatencySummary,
}

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.DLQ")
}

/// Header names on dead letters.
pub mod dlq_headers {
    pub const ERROR: &str = "orderflow.error";
    pub const TOPIC: &str = "orderflow.source.topic";
    pub const PARTITION: &str = "orderflow.source.partition";
    pub const OFFSET: &str = "orderflow.source.offset";
}

/// Runs `task` until `stop` is cancelled or, with `exit_at_end`, until caught
/// up; commits what is open and returns. Blocks the calling thread.
pub fn run<T: Task>(
    settings: &KafkaSettings,
    options: &EngineOptions,
    task: &mut T,
    stop: &CancellationToken,
) -> Result<EngineStats> {
    let (consumer, mut core) = Core::new(settings, options, task)?;
    core.run(&consumer, stop)?;
    core.stats.latency = core.latencies.summary();
    Ok(core.stats)
}

type GroupConsumer = BaseConsumer<GroupEvents>;

/// The engine's consumers' prefetch limit and their pause when it is
/// reached (see `Core::new`; measured in the README's Performance section).
const PREFETCH_KBYTES: &str = "16384";
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// A changelog value waiting for its batch's commit, and its timestamp.
type ChangelogValue = (Vec<u8>, Option<i64>);

/// Everything but the consumer, so that a record borrowed from the consumer
/// can be processed while the engine's own state changes.
struct Core<'a, T: Task> {
    settings: &'a KafkaSettings,
    options: &'a EngineOptions,
    task: &'a mut T,
    /// Shared with the helper thread of `send_offsets`.
    producer: Arc<ThreadedProducer<Deliveries>>,
    /// Reads changelog partitions on assignment; never joins a group.
    restorer: BaseConsumer<Logged>,
    dlq: String,
    /// Partitions currently assigned to us.
    assigned: BTreeSet<i32>,
    /// Assigned partitions read to their end (for exit_at_end).
    at_end: BTreeSet<i32>,
    /// The group's committed offset per assigned partition, as far as known.
    committed: BTreeMap<i32, i64>,
    /// Next offset per partition of the open batch.
    next: BTreeMap<i32, i64>,
    /// Partitions whose state was dropped after a replay; the next batch
    /// writes their reset records.
    resets: BTreeSet<i32>,
    /// When the open batch started; None when no batch is open.
    batch_started: Option<Instant>,
    /// Counts of the open batch, added to `stats` when it commits.
    pending: EngineStats,
    stats: EngineStats,
    /// The open batch's changelog writes, latest value per (partition, key),
    /// with the timestamp of the input that wrote it. Written at commit: a
    /// key changed by a thousand records in one batch costs one record.
    changelog_writes: BTreeMap<(i32, Vec<u8>), ChangelogValue>,
    /// Latencies of the committed batches, and of the open one.
    latencies: Latencies,
    batch_latencies: Latencies,
    /// When the first record was processed.
    first_record: Option<Instant>,
    /// Per assigned partition, when it was taken over (state restored), in
    /// ms since the epoch: latency counts records created since.
    ready_at: BTreeMap<i32, i64>,
    /// When the producer was last replaced after being fenced.
    renewals: Vec<Instant>,
    /// Records the open batch wrote per output topic (changelog aside).
    batch_outputs: BTreeMap<String, u64>,
}

impl<'a, T: Task> Core<'a, T> {
    fn new(
        settings: &'a KafkaSettings,
        options: &'a EngineOptions,
        task: &'a mut T,
    ) -> Result<(GroupConsumer, Self)> {
        let consumer: GroupConsumer = settings
            .client_config(&[
                ("group.id", options.group.as_str()),
                // Offsets are committed by the engine, with the batch they end.
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "true"),
                // A dead instance's partitions move to a live one after 10 s
                // without heartbeats, not librdkafka's 45 s.
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "3000"),
                // Never read the outputs of aborted transactions upstream; and
                // fetch committed offsets only once no transaction holding
                // offsets for them is pending (KIP-447's require_stable).
                ("isolation.level", "read_committed"),
                // Prefetch at most 16 MB (librdkafka's default is 64 MB): a
                // service catching up on a backlog holds a full prefetch
                // queue, and that queue was most of its memory.
                ("queued.max.messages.kbytes", PREFETCH_KBYTES),
                // When the queue is full, fetch again 10 ms later, not after
                // librdkafka's default second: a busy consumer empties it in
                // well under that and then sat idle, at half its throughput.
                ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
            ])
            .report_statistics_to(&options.metrics)
            .create_with_context(GroupEvents::new(Arc::clone(&options.metrics)))
            .while_("creating the consumer")?;
        let producer = Arc::new(create_producer(settings, options)?);
        // librdkafka's consumer API wants a group id even for assign(); this
        // one never joins its group (no subscribe) and never commits.
        let restore_group = format!("{}.restore", options.group);
        let restorer: BaseConsumer<Logged> = settings
            .client_config(&[
                ("group.id", restore_group.as_str()),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                // State is only what committed transactions wrote.
                ("isolation.level", "read_committed"),
                // As for the group consumer: restoring is catching up too.
                ("queued.max.messages.kbytes", PREFETCH_KBYTES),
                ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
                // A restore reads to the end and stops: the broker should
                // answer at once at the end, not hold the fetch for
                // librdkafka's default 500 ms hoping for more. Restoring
                // three empty partitions took 1.5 s, with records waiting.
                ("fetch.wait.max.ms", "10"),
            ])
            .create_with_context(Logged)
            .while_("creating the changelog reader")?;
        let core = Self {
            settings,
            options,
            task,
            producer,
            restorer,
            dlq: dlq_topic(&options.input_topic),
            assigned: BTreeSet::new(),
            at_end: BTreeSet::new(),
            committed: BTreeMap::new(),
            next: BTreeMap::new(),
            resets: BTreeSet::new(),
            batch_started: None,
            pending: EngineStats::default(),
            stats: EngineStats::default(),
            changelog_writes: BTreeMap::new(),
            latencies: Latencies::default(),
            batch_latencies: Latencies::default(),
            first_record: None,
            ready_at: BTreeMap::new(),
            renewals: Vec::new(),
            batch_outputs: BTreeMap::new(),
        };
        Ok((consumer, core))
    }

    fn exactly_once(&self) -> bool {
        self.options.guarantee == Guarantee::ExactlyOnce
    }

    fn run(&mut self, consumer: &GroupConsumer, stop: &CancellationToken) -> Result<()> {
        if self.exactly_once() {
            // Fences any earlier producer with our transactional.id and aborts
            // what it left open.
            retrying("initialising transactions", || {
                self.producer.init_transactions(self.settings.timeout)
            })?;
        }
        let topic = self.options.input_topic.clone();
        consumer
            .subscribe(&[&topic])
            .while_(format!("subscribing to {topic}"))?;
        let mut last_error = None;
        loop {
            if stop.is_cancelled() {
                break;
            }
            let polled = consumer.poll(Duration::from_millis(100));
            // A rebalance callback may have run inside that poll; the record it
            // returned, if any, belongs to the new assignment.
            self.handle_rebalances(consumer)?;
            let handled = match polled {
                None => Ok(()),
                Some(Ok(message)) => {
                    last_error = None;
                    self.process(&message)
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.reached_end(consumer, partition)
                }
                // librdkafka retries what can be retried; report and go on.
                // An outage repeats the same error on every poll: once is
                // enough.
                Some(Err(error)) => {
                    let error = error.to_string();
                    if last_error.as_ref() != Some(&error) {
                        tracing::warn!(%error, "consumer error");
                        last_error = Some(error);
                    }
                    Ok(())
                }
            };
            if let Err(error) = handled {
                self.recover(consumer, error)?;
            }
            if self
                .batch_started
                .is_some_and(|t| t.elapsed() >= self.options.commit_interval)
            {
                self.commit(consumer)?;
            }
            if self.options.exit_at_end
                && !self.assigned.is_empty()
                && self.assigned.is_subset(&self.at_end)
            {
                break;
            }
        }
        if self.batch_started.is_some() {
            self.commit(consumer)?;
        }
        Ok(())
    }

    /// Applies the assignment changes the consumer reported. Whatever batch is
    /// open is aborted first: its offsets may belong to partitions that are
    /// gone, and the group generation it would commit under is over.
    fn handle_rebalances(&mut self, consumer: &GroupConsumer) -> Result<()> {
        let events = consumer.context().take();
        if events.is_empty() {
            return Ok(());
        }
        // No rewind: librdkafka has already taken the revoked partitions
        // away, and starts assigned ones at their committed offsets.
        if self.batch_started.is_some() {
            self.abort_batch()?;
        }
        for event in events {
            match event {
                Assignment::Revoked(partitions) => {
                    for p in partitions {
                        self.task.revoked(p);
                        self.assigned.remove(&p);
                        self.ready_at.remove(&p);
                        self.options
                            .metrics
                            .forget_partition(&self.options.input_topic, p);
                        self.committed.remove(&p);
                        self.resets.remove(&p);
                    }
                }
                Assignment::Assigned(partitions) => self.adopt(consumer, &partitions)?,
            }
        }
        self.at_end.clear();
        self.options
            .metrics
            .assigned_partitions
            .set(self.ready_at.len() as i64);
        Ok(())
    }

    /// Takes over newly assigned partitions: their committed offsets first
    /// (which waits for any transaction still holding offsets for them), then
    /// their state.
    fn adopt(&mut self, consumer: &GroupConsumer, partitions: &[i32]) -> Result<()> {
        let mut committed = BTreeMap::new();
        for &p in partitions {
            let offset = self.committed_offset(consumer, p)?;
            if let Some(offset) = offset {
                self.committed.insert(p, offset);
                self.options
                    .metrics
                    .committed(&self.options.input_topic, p, offset);
            }
            committed.insert(p, offset);
            self.task.assigned(p);
            self.assigned.insert(p);
        }
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            let markers = changelog::restore(
                &self.restorer,
                changelog,
                partitions,
                self.task,
                self.settings.timeout,
            )?;
            self.check_markers(&committed, markers);
        }
        let now = chrono::Utc::now().timestamp_millis();
        for &p in partitions {
            self.ready_at.insert(p, now);
        }
        Ok(())
    }

    /// Starts a partition's state afresh where its changelog's offset
    /// marker disagrees with the group's committed offset.
    fn check_markers(
        &mut self,
        committed: &BTreeMap<i32, Option<i64>>,
        markers: BTreeMap<i32, Option<i64>>,
    ) {
        for (partition, marker) in markers {
            // State and offsets commit together, so they agree unless the
            // group's offsets were moved since without resetting the state:
            // then the state is of another position. (At-least-once may
            // legitimately leave the state ahead of the offsets: keep it.)
            let offset = committed.get(&partition).copied().flatten();
            if self.exactly_once() && marker.is_some() && marker != offset {
                tracing::info!(
                    partition,
                    state_at = ?marker,
                    committed = ?offset,
                    "the group's offsets were moved: starting this partition's state afresh"
                );
                self.task.revoked(partition);
                self.task.assigned(partition);
                self.resets.insert(partition);
            }
        }
    }

    fn committed_offset(&self, consumer: &GroupConsumer, partition: i32) -> Result<Option<i64>> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.options.input_topic, partition);
        // Unstable while a transaction holding offsets for the partition is
        // open, e.g. one of a killed instance: wait for it to end.
        let found = retrying("fetching the committed offset", || {
            consumer.committed_offsets(list.clone(), self.settings.timeout)
        })?;
        Ok(found.elements().first().and_then(|e| match e.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        }))
    }

    /// A partition was read to its end. The consumer's position there may be
    /// past the last record (transaction markers take offsets too): commit it,
    /// or the group would show a lag of one marker forever.
    fn reached_end(&mut self, consumer: &GroupConsumer, partition: i32) -> Result<()> {
        self.at_end.insert(partition);
        let positions = consumer
            .position()
            .while_("reading the consumer position")?;
        let position = positions
            .elements()
            .iter()
            .find(|e| e.partition() == partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            });
        let known = self
            .next
            .get(&partition)
            .or(self.committed.get(&partition))
            .copied();
        if let Some(position) = position.filter(|&p| Some(p) > known) {
            self.open_batch()?;
            self.next.insert(partition, position);
        }
        Ok(())
    }

    /// Opens a batch (and its transaction) unless one is open.
    fn open_batch(&mut self) -> Result<()> {
        if self.batch_started.is_some() {
            return Ok(());
        }
        if self.exactly_once() {
            self.producer
                .begin_transaction()
                .while_("beginning a transaction")?;
        }
        self.batch_started = Some(Instant::now());
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            for &p in &self.resets {
                self.send(&changelog::reset_record(changelog, p), None)?;
            }
        }
        Ok(())
    }

    fn process(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        if !self.assigned.contains(&partition) {
            return Ok(()); // fetched before a revoke; its new owner handles it
        }
        self.open_batch()?;
        self.first_record.get_or_insert_with(Instant::now);
        let timestamp = message.timestamp().to_millis();
        let ready = self.ready_at.get(&partition).copied().unwrap_or(i64::MAX);
        if let Some(created) = timestamp.filter(|&t| t >= ready) {
            self.batch_latencies
                .record_millis(created, chrono::Utc::now().timestamp_millis());
        }
        let mut out = Vec::new();
        let payload = message.payload().unwrap_or_default();
        if let Err(Poison(error)) = self.task.process(partition, payload, &mut out) {
            tracing::warn!(
                topic = message.topic(),
                partition,
                offset,
                %error,
                dlq = %self.dlq,
                "dead-lettering an event"
            );
            self.dead_letter(message, &error)?;
            self.task.dead_lettered(partition, &mut out);
            self.pending.dead_lettered += 1;
        }
        for record in out {
            match record.partition {
                Some(p)
                    if Some(record.topic.as_str()) == self.options.changelog_topic.as_deref() =>
                {
                    self.changelog_writes
                        .insert((p, record.key), (record.payload, timestamp));
                }
                _ => {
                    self.send(&record, timestamp)?;
                    count_output(&mut self.batch_outputs, &record.topic);
                }
            }
        }
        self.pending.consumed += 1;
        self.next.insert(partition, offset + 1);
        Ok(())
    }

    /// Sends the original record to the DLQ, with headers saying why and whence.
    fn dead_letter(&self, message: &BorrowedMessage<'_>, error: &str) -> Result<()> {
        let (partition, offset) = (
            message.partition().to_string(),
            message.offset().to_string(),
        );
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: dlq_headers::ERROR,
                value: Some(error),
            })
            .insert(Header {
                key: dlq_headers::TOPIC,
                value: Some(message.topic()),
            })
            .insert(Header {
                key: dlq_headers::PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: dlq_headers::OFFSET,
                value: Some(&offset),
            });
        // Same partition number: the DLQ has the input's partition count, so
        // dead letters keep their order per source partition.
        let mut record = BaseRecord::to(&self.dlq)
            .partition(message.partition())
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(timestamp) = message.timestamp().to_millis() {
            record = record.timestamp(timestamp);
        }
        self.enqueue(record)
    }

    /// Sends a record of the task's; `timestamp` is that of the input record
    /// it came from (None: the time of sending).
    fn send(&self, record: &OutRecord, timestamp: Option<i64>) -> Result<()> {
        let mut base = BaseRecord::to(&record.topic)
            .key(record.key.as_slice())
            .payload(record.payload.as_slice());
        if let Some(p) = record.partition {
            base = base.partition(p);
        }
        if let Some(timestamp) = timestamp {
            base = base.timestamp(timestamp);
        }
        self.enqueue(base)
    }

    /// Hands a record to librdkafka, waiting while its local queue is full
    /// (it drains on librdkafka's own threads).
    fn enqueue(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((cause, returned)) => {
                    return Err(Error::Delivery {
                        topic: returned.topic.to_owned(),
                        cause,
                    })
                }
            }
        }
    }

    /// Ends the open batch: commits it, or, when Kafka says the transaction
    /// must be aborted, aborts it and rewinds.
    fn commit(&mut self, consumer: &GroupConsumer) -> Result<()> {
        let started = Instant::now();
        let outcome = self.write_changelog().and_then(|()| {
            self.write_offset_markers()?;
            if self.exactly_once() {
                self.commit_transaction(consumer)
            } else {
                self.flush_then_commit(consumer)
            }
        });
        match outcome {
            Ok(()) => {
                self.task.commit();
                self.count_committed();
                self.options
                    .metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                self.stats.consumed += self.pending.consumed;
                self.stats.dead_lettered += self.pending.dead_lettered;
                self.stats.commits += 1;
                if let Some(first) = self.first_record {
                    self.stats.busy = first.elapsed();
                }
                self.latencies.add(&self.batch_latencies);
                self.batch_latencies.clear();
                self.pending = EngineStats::default();
                self.committed.extend(std::mem::take(&mut self.next));
                self.resets.clear();
                self.batch_started = None;
                Ok(())
            }
            Err(error) => self.recover(consumer, error),
        }
    }

    /// Adds the batch being committed to the metrics.
    fn count_committed(&mut self) {
        let metrics = &self.options.metrics;
        let topic = |name: &str| TopicLabel { topic: name.into() };
        let input = &self.options.input_topic;
        metrics
            .events_consumed
            .get_or_create(&topic(input))
            .inc_by(self.pending.consumed);
        if self.pending.dead_lettered > 0 {
            metrics
                .dead_letters
                .get_or_create(&topic(&self.dlq))
                .inc_by(self.pending.dead_lettered);
        }
        for (name, count) in std::mem::take(&mut self.batch_outputs) {
            metrics
                .events_produced
                .get_or_create(&topic(&name))
                .inc_by(count);
        }
        metrics.observe_latencies(&self.batch_latencies);
        for (&partition, &next) in &self.next {
            metrics.committed(input, partition, next);
        }
        if self.exactly_once() {
            metrics.transactions_committed.inc();
        }
    }

    /// Sends the batch's changelog writes (the last value of each key).
    fn write_changelog(&mut self) -> Result<()> {
        let Some(changelog) = self.options.changelog_topic.as_deref() else {
            return Ok(());
        };
        for ((partition, key), (payload, timestamp)) in std::mem::take(&mut self.changelog_writes) {
            let mut record = BaseRecord::to(changelog)
                .partition(partition)
                .key(key.as_slice())
                .payload(payload.as_slice());
            if let Some(timestamp) = timestamp {
                record = record.timestamp(timestamp);
            }
            self.enqueue(record)?;
        }
        Ok(())
    }

    /// Records in each changelog partition the batch advanced where its
    /// input now stands.
    fn write_offset_markers(&self) -> Result<()> {
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            for (&p, &next) in &self.next {
                self.send(&changelog::offset_marker(changelog, p, next), None)?;
            }
        }
        Ok(())
    }

    /// Survives a failed batch, exactly-once: a broker restart, a
    /// coordinator moving, a delivery timing out are all survived by aborting
    /// and doing the batch again. At-least-once has no transaction to abort:
    /// the error ends the run (a restart repeats the uncommitted batch).
    fn recover(&mut self, consumer: &GroupConsumer, error: Error) -> Result<()> {
        if !self.exactly_once() {
            return Err(error);
        }
        tracing::warn!(%error, "the batch failed; aborting it and processing it again");
        if let Error::Wedged { .. } = error {
            // Aborting would wait behind the wedged call: a new producer
            // aborts the transaction instead.
            self.start_new_producer()?;
            self.discard_batch();
        } else if self.batch_started.is_some() {
            // (A batch fails before its transaction began when beginning it
            // failed: nothing to abort then.)
            self.abort_batch()?;
        }
        self.rewind(consumer)
    }

    /// Replaces a fenced producer. The coordinator fences a producer whose
    /// transaction outlived `transaction.timeout.ms` (a long outage) by
    /// bumping its epoch; a new producer with the same transactional id
    /// carries on. Fenced again and again means another process runs with
    /// the same transactional id: that is an error, not a fight.
    fn renew_producer(&mut self, fenced: Error) -> Result<()> {
        const WINDOW: Duration = Duration::from_secs(120);
        self.renewals.retain(|t| t.elapsed() < WINDOW);
        if self.renewals.len() >= 3 {
            return Err(Error::Config(format!(
                "fenced repeatedly ({fenced}): is another instance running with transactional id {}? \
                 give each instance its own --instance-id",
                self.options.transactional_id
            )));
        }
        self.renewals.push(Instant::now());
        tracing::warn!(error = %fenced, "the producer was fenced; starting a new one");
        self.start_new_producer()
    }

    /// Replaces the producer with a new one of the same transactional id,
    /// whose `init_transactions` fences the old one and aborts its open
    /// transaction.
    fn start_new_producer(&mut self) -> Result<()> {
        let old = std::mem::replace(
            &mut self.producer,
            Arc::new(create_producer(self.settings, self.options)?),
        );
        // Destroying a client waits for its broker threads, and one may be
        // stuck connecting to a node that is down: not on this thread.
        std::thread::spawn(move || drop(old));
        retrying("initialising transactions", || {
            self.producer.init_transactions(self.settings.timeout)
        })
    }

    /// Adds the batch's input offsets to its transaction, retrying what Kafka
    /// calls retriable. librdkafka's `send_offsets_to_transaction` can block
    /// past its timeout when the group coordinator goes away
    /// (confluentinc/librdkafka#5456, #5511), so it runs on a helper thread,
    /// and a call still blocked at twice its timeout is reported as wedged.
    fn send_offsets(&self, consumer: &GroupConsumer) -> Result<()> {
        const CALL: &str = "send_offsets_to_transaction";
        let offsets = self.offsets()?;
        let started = Instant::now();
        loop {
            let metadata = consumer
                .group_metadata()
                .ok_or_else(|| Error::Config("the consumer has no group metadata".into()))?;
            let (done, outcome) = mpsc::channel();
            let (producer, offsets, timeout) = (
                Arc::clone(&self.producer),
                offsets.clone(),
                self.settings.timeout,
            );
            std::thread::spawn(move || {
                let _ =
                    done.send(producer.send_offsets_to_transaction(&offsets, &metadata, timeout));
            });
            match outcome.recv_timeout(timeout * 2) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(error)) if retriable(&error) && started.elapsed() < RETRY_FOR => {
                    tracing::warn!(%error, "adding the input offsets to the transaction: retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Ok(Err(error)) => {
                    return Err(error).while_("adding the input offsets to the transaction")
                }
                Err(_) => {
                    return Err(Error::Wedged {
                        call: CALL,
                        waited: timeout * 2,
                    })
                }
            }
        }
    }

    fn commit_transaction(&self, consumer: &GroupConsumer) -> Result<()> {
        if !self.next.is_empty() {
            self.send_offsets(consumer)?;
        }
        // rdkafka's commit_transaction flushes first, with the slow flush
        // (see `flush`); with nothing left in flight its flush returns at once.
        self.flush()?;
        // A commit that times out goes on in the background; calling again
        // resumes it (aborting instead would conflict with it). An error that
        // needs an abort is not retriable and ends up in `commit`'s abort.
        retrying("committing the transaction", || {
            self.producer.commit_transaction(self.settings.timeout)
        })
    }

    fn flush_then_commit(&self, consumer: &GroupConsumer) -> Result<()> {
        self.flush()?;
        self.producer.context().check()?;
        if !self.next.is_empty() {
            consumer
                .commit(&self.offsets()?, CommitMode::Sync)
                .while_("committing offsets")?;
        }
        Ok(())
    }

    /// Waits until every record sent is acknowledged (or failed).
    ///
    /// Not `Producer::flush(timeout)`: between its checks, rdkafka's flush
    /// polls the producer for up to 100 ms, and on a ThreadedProducer the
    /// events that poll waits for are served by the producer's own thread, so
    /// every flush took 100 ms, stalling the engine for that long per batch.
    /// A flush with no timeout still tells librdkafka to send at once,
    /// without lingering; between those the engine sleeps a millisecond.
    fn flush(&self) -> Result<()> {
        let deadline = Instant::now() + self.settings.timeout * 6;
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => return Ok(()),
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(error) => return Err(error).while_("waiting for acknowledgements"),
            }
        }
    }

    /// Discards the open batch: aborts its transaction and rolls the task
    /// back. The consumer's positions are the caller's business.
    fn abort_batch(&mut self) -> Result<()> {
        if self.exactly_once() {
            let aborted = retrying("aborting the transaction", || {
                self.producer.abort_transaction(self.settings.timeout)
            });
            match aborted {
                Ok(()) => {}
                // Fenced: its transaction is aborted already, by the broker.
                Err(error) if is_fatal(&error) => self.renew_producer(error)?,
                Err(error) => return Err(error),
            }
        }
        self.discard_batch();
        Ok(())
    }

    /// Forgets the open batch: the task goes back to its committed state.
    fn discard_batch(&mut self) {
        self.task.rollback();
        self.stats.aborts += 1;
        if self.exactly_once() {
            self.options.metrics.transactions_aborted.inc();
        }
        self.batch_outputs.clear();
        self.pending = EngineStats::default();
        self.batch_latencies.clear();
        self.changelog_writes.clear();
        self.next.clear();
        self.batch_started = None;
        self.at_end.clear();
    }

    /// Moves every assigned partition back to its committed offset, so that
    /// an aborted batch is read again.
    fn rewind(&self, consumer: &GroupConsumer) -> Result<()> {
        for &partition in &self.assigned {
            let offset = match self.committed_offset(consumer, partition)? {
                Some(n) => Offset::Offset(n),
                None => Offset::Beginning,
            };
            consumer
                .seek(
                    &self.options.input_topic,
                    partition,
                    offset,
                    self.settings.timeout,
                )
                .while_(format!(
                    "rewinding {}[{partition}]",
                    self.options.input_topic
                ))?;
        }
        Ok(())
    }

    fn offsets(&self) -> Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (&partition, &next) in &self.next {
            list.add_partition_offset(&self.options.input_topic, partition, Offset::Offset(next))
                .while_("building the offsets to commit")?;
        }
        Ok(list)
    }
}

/// The engine's producer: idempotent, and transactional for exactly-once.
fn create_producer(
    settings: &KafkaSettings,
    options: &EngineOptions,
) -> Result<ThreadedProducer<Deliveries>> {
    let mut producer_config: Vec<(&str, &str)> = vec![
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("allow.auto.create.topics", "false"),
    ];
    if options.guarantee == Guarantee::ExactlyOnce {
        producer_config.extend([
            ("transactional.id", options.transactional_id.as_str()),
            // As Kafka Streams does for exactly-once: an instance that dies
            // and never comes back blocks read_committed readers (and the
            // instance taking over its partitions) until the coordinator
            // aborts its open transaction: after 10 s, not a minute. A
            // restart with the same transactional.id aborts it at once.
            ("transaction.timeout.ms", "10000"),
            // librdkafka requires deliveries to give up within that time;
            // a failed delivery aborts the batch, which is then redone.
            ("message.timeout.ms", "10000"),
        ]);
    } else {
        // As for the plain producer: a lost cluster is an error in a minute.
        producer_config.push(("message.timeout.ms", "60000"));
    }
    settings
        .client_config(&producer_config)
        .report_statistics_to(&options.metrics)
        .create_with_context(Deliveries::new(Arc::clone(&options.metrics)))
        .while_("creating the producer")
}

/// Counts a record written to `topic` by the open batch.
fn count_output(counts: &mut BTreeMap<String, u64>, topic: &str) {
    match counts.get_mut(topic) {
        Some(count) => *count += 1,
        None => {
            counts.insert(topic.to_owned(), 1);
        }
    }
}

/// How long a call Kafka calls retriable is retried: past a transaction
/// timeout, a coordinator's failover, and a broker restart.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Runs `call` until it succeeds, fails for good, or has been retried for
/// `RETRY_FOR`.
fn retrying<R>(action: &str, mut call: impl FnMut() -> KafkaResult<R>) -> Result<R> {
    let started = Instant::now();
    loop {
        match call() {
            Ok(result) => return Ok(result),
            Err(error) if retriable(&error) && started.elapsed() < RETRY_FOR => {
                tracing::warn!(%error, "{action}: retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(error) => return Err(error).while_(action),
        }
    }
}

/// Errors that say "not now" rather than "no".
fn retriable(error: &KafkaError) -> bool {
    if let KafkaError::Transaction(e) = error {
        // A transaction that needs an abort is not retried, however
        // retriable the cause. A timed-out commit or abort is: librdkafka
        // documents it as "call again to resume".
        return !e.txn_requires_abort()
            && !e.is_fatal()
            && (e.is_retriable() || e.code() == RDKafkaErrorCode::OperationTimedOut);
    }
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::RequestTimedOut
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::UnstableOffsetCommit
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// Whether an error leaves the producer unusable.
fn is_fatal(error: &Error) -> bool {
    match error {
        Error::Kafka {
            cause: KafkaError::Transaction(e),
            ..
        } => e.is_fatal(),
        _ => false,
    }
}
