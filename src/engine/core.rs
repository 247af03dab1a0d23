//! The engine's loop: poll a record, process it into the open batch, commit
//! the batch once its interval is over, apply rebalances between records,
//! and stop on a signal or, with `--exit-at-end`, once everything assigned
//! has been read and committed.
//!
//! [`Core`] holds everything but the consumer, so that a record borrowed
//! from the consumer can be processed while the engine's own state changes.
//! Its other duties live beside this file: `assignment.rs` (rebalances,
//! restoring state), `commit.rs` (ending a batch), `recovery.rs` (a batch
//! that failed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, Input, ENGINE_RECORD};
use super::changelog;
use super::classify::{classify, Class};
use super::clients::{self, ChangelogReader, EngineProducer, GroupConsumer};
use super::contexts::Failure;
use super::dead_letters::{dead_letter, dlq_topic, refused_reason, set_aside_letter};
use super::hold_back::Gate;
use super::limits::{record_batch_bytes, Limits};
use super::options::{EngineOptions, EngineStats, Guarantee};
use super::redo::Redos;
use super::retry;
use super::task::{OutRecord, Poison, Task};
use crate::config::KafkaSettings;
use crate::domain::latency::Latencies;
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::admin::Admin;

pub(super) struct Core<'a, T: Task> {
    pub(super) settings: &'a KafkaSettings,
    pub(super) options: &'a EngineOptions,
    pub(super) task: &'a mut T,
    /// Cancelled on SIGINT/SIGTERM: the loop stops, and so do pauses.
    pub(super) stop: CancellationToken,
    pub(super) producer: EngineProducer,
    /// Reads the record size limits of the topics written to.
    pub(super) admin: Admin,
    /// Those limits, and so the producer's batch size cap.
    pub(super) limits: Limits,
    pub(super) restorer: ChangelogReader,
    pub(super) dlq: String,
    /// Partitions currently assigned to us.
    pub(super) assigned: BTreeSet<i32>,
    /// Assigned partitions read to their end (for exit_at_end).
    pub(super) at_end: BTreeSet<i32>,
    /// The group's committed offset per assigned partition, as far as known.
    pub(super) committed: BTreeMap<i32, i64>,
    /// Partitions whose state was dropped after a replay; the next batch
    /// writes their reset records.
    pub(super) resets: BTreeSet<i32>,
    /// The open batch, if any.
    pub(super) batch: Option<Batch>,
    /// The sequence number the next batch's first input gets.
    pub(super) next_input: u64,
    pub(super) stats: EngineStats,
    /// Latencies of the committed batches.
    pub(super) latencies: Latencies,
    /// When the first record was processed.
    pub(super) first_record: Option<Instant>,
    /// Per assigned partition, when it was taken over (state restored), in
    /// ms since the epoch: latency counts records created since.
    pub(super) ready_at: BTreeMap<i32, i64>,
    /// When the producer was last replaced after being fenced.
    pub(super) renewals: Vec<Instant>,
    /// Redos of the batch in hand without progress.
    pub(super) redos: Redos,
    /// Inputs to dead-letter when read again, and why: Kafka refused for
    /// good a record the task wrote for them.
    pub(super) set_aside: BTreeMap<Input, String>,
    /// Whether the task has been told (in the open or a committed batch)
    /// that every partition was read to its end.
    pub(super) told_end: bool,
    /// Whether to read on, with `options.hold_back`.
    pub(super) gate: Option<Gate>,
    /// Whether the assigned partitions are paused by the gate.
    pub(super) held_back: bool,
}

impl<'a, T: Task> Core<'a, T> {
    pub(super) fn new(
        settings: &'a KafkaSettings,
        options: &'a EngineOptions,
        task: &'a mut T,
        stop: &CancellationToken,
    ) -> Result<(GroupConsumer, Self)> {
        let consumer = clients::group_consumer(settings, options)?;
        // The service checked the connection already.
        let admin = Admin::without_probe(settings)?;
        let limits = read_limits(&admin, settings, options)?;
        task.limits(&limits);
        let gate = match &options.hold_back {
            Some(hold_back) => Some(Gate::start(settings, hold_back)?),
            None => None,
        };
        let core = Self {
            settings,
            options,
            task,
            stop: stop.clone(),
            producer: EngineProducer::create(settings, options, limits.batch_cap())?,
            admin,
            limits,
            restorer: clients::changelog_reader(settings, options)?,
            dlq: dlq_topic(&options.input_topic),
            assigned: BTreeSet::new(),
            at_end: BTreeSet::new(),
            committed: BTreeMap::new(),
            resets: BTreeSet::new(),
            batch: None,
            next_input: ENGINE_RECORD + 1,
            stats: EngineStats::default(),
            latencies: Latencies::default(),
            first_record: None,
            ready_at: BTreeMap::new(),
            renewals: Vec::new(),
            redos: Redos::default(),
            set_aside: BTreeMap::new(),
            told_end: false,
            gate,
            held_back: false,
        };
        Ok((consumer, core))
    }

    pub(super) fn exactly_once(&self) -> bool {
        self.options.guarantee == Guarantee::ExactlyOnce
    }

    pub(super) fn run(&mut self, consumer: &GroupConsumer) -> Result<()> {
        if self.exactly_once() {
            // Fences any earlier producer with our transactional.id and aborts
            // what it left open.
            retry::in_place("initialising transactions", || {
                self.producer.init_transactions(self.settings.timeout)
            })?;
        }
        let topic = self.options.input_topic.clone();
        consumer
            .subscribe(&[&topic])
            .while_(format!("subscribing to {topic}"))?;
        let mut last_error = None;
        let mut rebalanced = false;
        while !self.stop.is_cancelled() {
            self.hold_back(consumer, rebalanced)?;
            let polled = consumer.poll(Duration::from_millis(100));
            // A rebalance callback may have run inside that poll; the record it
            // returned, if any, belongs to the new assignment.
            rebalanced = self.handle_rebalances(consumer)?;
            let handled = match polled {
                None => Ok(()),
                Some(Ok(message)) => {
                    last_error = None;
                    self.process(&message)
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.reached_end(consumer, partition)
                }
                Some(Err(error)) => {
                    self.consumer_error(error, &mut last_error)?;
                    Ok(())
                }
            };
            let handled = handled.and_then(|()| self.tick());
            if let Err(error) = handled {
                self.recover(consumer, error)?;
            }
            let interval_over = self
                .batch
                .as_ref()
                .is_some_and(|b| b.started.elapsed() >= self.options.commit_interval);
            if interval_over {
                self.commit(consumer)?;
            }
            if self.options.exit_at_end && self.caught_up() {
                if !self.told_end {
                    let told = self.tell_end();
                    if let Err(error) = told {
                        self.recover(consumer, error)?;
                        continue;
                    }
                }
                if self.batch.is_none() && self.task.may_stop() {
                    return Ok(());
                }
                // Commit what is read; if that fails the batch is redone
                // (and the ends read again) before the run may end.
                if self.batch.is_some() {
                    self.commit(consumer)?;
                }
            }
        }
        if self.batch.is_some() {
            let commits = self.stats.commits;
            self.commit(consumer)?;
            if self.stats.commits == commits {
                tracing::warn!("stopping with the last batch aborted: the next run does it again");
            }
        }
        Ok(())
    }

    /// Pauses every assigned partition while the gate holds the stage back,
    /// and resumes them once it lets it go on; after a rebalance the pause
    /// is applied anew (newly assigned partitions start unpaused). Records
    /// already fetched are dropped by the pause and fetched again on
    /// resume, from the position reached: none is skipped or read twice.
    fn hold_back(&mut self, consumer: &GroupConsumer, rebalanced: bool) -> Result<()> {
        let Some(gate) = &self.gate else {
            return Ok(());
        };
        let holding = gate.holding();
        if holding == self.held_back && !rebalanced {
            return Ok(());
        }
        let mut partitions = TopicPartitionList::new();
        for &p in &self.assigned {
            partitions.add_partition(&self.options.input_topic, p);
        }
        if holding {
            consumer.pause(&partitions).while_("pausing the input")?;
        } else {
            consumer.resume(&partitions).while_("resuming the input")?;
        }
        if holding != self.held_back {
            tracing::debug!(
                holding,
                "holding back while the stage downstream catches up"
            );
        }
        self.held_back = holding;
        Ok(())
    }

    /// Whether every assigned partition has been read to its end.
    fn caught_up(&self) -> bool {
        !self.assigned.is_empty() && self.assigned.is_subset(&self.at_end)
    }

    /// Lets the task write what depends on time passing.
    fn tick(&mut self) -> Result<()> {
        let mut out = Vec::new();
        self.task
            .tick(chrono::Utc::now().timestamp_millis(), &mut out);
        self.emit(out, None, ENGINE_RECORD)
    }

    /// Tells the task that every partition it holds was read to its end.
    fn tell_end(&mut self) -> Result<()> {
        let partitions: Vec<i32> = self.assigned.iter().copied().collect();
        let mut out = Vec::new();
        self.task.reached_end(&partitions, &mut out);
        self.told_end = true;
        self.emit(out, None, ENGINE_RECORD)
    }

    /// Writes records of the task's into the open batch (opening one when
    /// there are any): state changes coalesce into the batch's changelog
    /// writes, the rest is sent. `timestamp` and `input` as for `send`.
    pub(super) fn emit(
        &mut self,
        out: Vec<OutRecord>,
        timestamp: Option<i64>,
        input: u64,
    ) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.open_batch()?;
        for mut record in out {
            let timestamp = record.timestamp.or(timestamp);
            let payload = std::mem::take(&mut record.payload);
            record.payload = self.options.schemas.frame(&record.topic, payload);
            let batch = self.batch.as_mut().expect("a batch is open");
            match record.partition {
                Some(p)
                    if Some(record.topic.as_str()) == self.options.changelog_topic.as_deref() =>
                {
                    batch.write_state(p, record.key, (record.payload, timestamp));
                }
                _ => {
                    batch.wrote(&record.topic);
                    self.send(&record, timestamp, input)?;
                }
            }
        }
        Ok(())
    }

    /// An error from the consumer's poll. librdkafka retries what can be
    /// retried, so those are logged (once per outage: it repeats the same
    /// error on every poll) and polling goes on; a fatal one (the input
    /// topic deleted, reading it forbidden) ends the run.
    fn consumer_error(&self, error: KafkaError, last: &mut Option<String>) -> Result<()> {
        if classify(&error) == Class::Fatal {
            return Err(Error::TopicRefused {
                topic: self.options.input_topic.clone(),
                reason: error.to_string(),
            });
        }
        let error = error.to_string();
        if last.as_ref() != Some(&error) {
            tracing::warn!(%error, "consumer error");
            *last = Some(error);
        }
        Ok(())
    }

    /// Opens a batch (and its transaction) unless one is open.
    pub(super) fn open_batch(&mut self) -> Result<()> {
        if self.batch.is_some() {
            return Ok(());
        }
        if self.exactly_once() {
            self.producer
                .begin_transaction()
                .while_("beginning a transaction")?;
        }
        self.batch = Some(Batch::open(self.next_input));
        if let Some(changelog) = self.options.changelog_topic.as_deref() {
            for &p in &self.resets {
                self.send(&changelog::reset_record(changelog, p), None, ENGINE_RECORD)?;
            }
        }
        Ok(())
    }

    fn process(&mut self, message: &BorrowedMessage<'_>) -> Result<()> {
        let (partition, offset) = (message.partition(), message.offset());
        if !self.assigned.contains(&partition) {
            return Ok(()); // fetched before a revoke; its new owner handles it
        }
        // More came after the end: it is not at its end again until the
        // consumer says so, and the batch grows until then.
        self.at_end.remove(&partition);
        self.open_batch()?;
        self.first_record.get_or_insert_with(Instant::now);
        let timestamp = message.timestamp().to_millis();
        let ready = self.ready_at.get(&partition).copied().unwrap_or(i64::MAX);
        let batch = self.batch.as_mut().expect("a batch is open");
        if let Some(created) = timestamp.filter(|&t| t >= ready) {
            batch
                .latencies
                .record_millis(created, chrono::Utc::now().timestamp_millis());
        }
        let input = batch.admit(partition, offset);
        let mut out = Vec::new();
        // An input whose output Kafka refused is not processed again; a
        // framed one that does not meet its schema is not processed at all.
        let poison = match self.set_aside.get(&(partition, offset)) {
            Some(reason) => Some(reason.clone()),
            None => match self
                .options
                .schemas
                .read(message.payload().unwrap_or_default())?
            {
                Err(refused) => Some(refused),
                Ok(json) => match self.task.process(partition, timestamp, json, &mut out) {
                    Ok(()) => None,
                    Err(Poison(error)) => Some(error),
                },
            },
        };
        if let Some(error) = poison {
            tracing::warn!(
                topic = message.topic(),
                partition,
                offset,
                %error,
                dlq = %self.dlq,
                "dead-lettering an event"
            );
            self.enqueue(dead_letter(&self.dlq, message, &error, input as usize))?;
            self.task
                .dead_lettered(partition, message.payload().unwrap_or_default(), &mut out);
            self.batch.as_mut().expect("a batch is open").dead_lettered += 1;
        }
        for aside in self.task.take_set_aside() {
            self.enqueue(set_aside_letter(&self.dlq, message, &aside, input as usize))?;
            self.batch.as_mut().expect("a batch is open").dead_lettered += 1;
        }
        self.emit(out, timestamp, input)
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
            .batch
            .as_ref()
            .and_then(|b| b.next_offsets().get(&partition))
            .or(self.committed.get(&partition))
            .copied();
        if let Some(position) = position.filter(|&p| Some(p) > known) {
            self.open_batch()?;
            self.batch
                .as_mut()
                .expect("a batch is open")
                .advance(partition, position);
        }
        Ok(())
    }

    /// Sends a record of the task's (or the engine's); `timestamp` is that
    /// of the input record it came from (None: the time of sending), `input`
    /// that input's sequence number. A record too large for its topic is
    /// not sent but reported as refused: the batch will be redone with its
    /// input set aside.
    pub(super) fn send(
        &self,
        record: &OutRecord,
        timestamp: Option<i64>,
        input: u64,
    ) -> Result<()> {
        let size = record_batch_bytes(Some(record.key.len()), Some(record.payload.len()), &[]);
        if let Some(reason) = self.limits.too_large(&record.topic, size) {
            self.producer.context().refused(Failure {
                input,
                topic: record.topic.clone(),
                error: KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                size,
                before_sending: Some(reason),
            });
            return Ok(());
        }
        if let Some(gate) = &self.gate {
            gate.wrote(&record.topic);
        }
        let mut base = BaseRecord::with_opaque_to(&record.topic, input as usize)
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
    /// (it drains on librdkafka's own threads). A record librdkafka refuses
    /// outright is reported like a failed delivery, so that recovery knows
    /// which input it was written for.
    pub(super) fn enqueue(&self, mut record: BaseRecord<'_, [u8], [u8], usize>) -> Result<()> {
        let started = Instant::now();
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                // Bounded: the queue drains as deliveries succeed or time out.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                    if started.elapsed() < self.settings.timeout * 6 =>
                {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((cause, returned)) => {
                    let topic = returned.topic.to_owned();
                    let size = record_batch_bytes(
                        returned.key.map(<[u8]>::len),
                        returned.payload.map(<[u8]>::len),
                        &[],
                    );
                    self.producer.context().refused(Failure {
                        input: returned.delivery_opaque as u64,
                        topic: topic.clone(),
                        error: cause.clone(),
                        size,
                        before_sending: Some(refused_reason(&topic, &cause.to_string())),
                    });
                    return Err(Error::Delivery { topic, cause });
                }
            }
        }
    }

    /// Sleeps `pause`, or less when the service is told to stop.
    pub(super) fn pause(&self, pause: Duration) {
        let until = Instant::now() + pause;
        while !self.stop.is_cancelled() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20).min(pause));
        }
    }
}

/// The record size limits of every topic the engine writes to: the task's
/// outputs, the dead-letter topic and the changelog.
pub(super) fn read_limits(
    admin: &Admin,
    settings: &KafkaSettings,
    options: &EngineOptions,
) -> Result<Limits> {
    let mut topics = options.output_topics.clone();
    topics.push(dlq_topic(&options.input_topic));
    topics.extend(options.changelog_topic.clone());
    let per_topic = futures::executor::block_on(admin.max_message_bytes(&topics))?;
    // Compressed records have no size before they are sent.
    let compressed = settings.overrides.iter().any(|(key, value)| {
        matches!(key.as_str(), "compression.type" | "compression.codec") && value != "none"
    });
    Ok(Limits::new(per_topic, compressed))
}
