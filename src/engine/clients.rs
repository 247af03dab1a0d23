//! The engine's three clients: the group consumer it reads its input with,
//! the assign-only reader it restores changelogs with, and its producer
//! (transactional for exactly-once), with the helper thread that producer's
//! `send_offsets_to_transaction` runs on.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::TopicPartitionList;

use super::contexts::{Deliveries, GroupEvents};
use super::options::{EngineOptions, Guarantee};
use crate::config::KafkaSettings;
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::clients::{self, FETCH_QUEUE_BACKOFF_MS, PREFETCH_KBYTES};
use crate::kafka::context::{Logged, ReportStatistics};

/// `transaction.timeout.ms` of an exactly-once engine's producer (why: at
/// the setting); a producer fenced in a transaction older than this was
/// most likely fenced by the coordinator for outliving it.
pub(super) const TRANSACTION_TIMEOUT_MS: &str = "10000";

pub type GroupConsumer = BaseConsumer<GroupEvents>;
pub type ChangelogReader = BaseConsumer<Logged>;
pub type Client = ThreadedProducer<Deliveries>;

/// Closes the group consumer (it leaves the group) on a thread of its own,
/// waiting at most `limit`: librdkafka's destroy of a group consumer can
/// hang for good after a broker went down and came back
/// (confluentinc/librdkafka#4674; seen once here, a SIGTERMed inventory
/// that never exited), and a service's stop must stay bounded. What it
/// read is committed by then; a consumer that never leaves is dropped
/// from the group when its session times out.
pub fn close_within(consumer: GroupConsumer, limit: Duration) {
    let (closed, done) = mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    if done.recv_timeout(limit).is_err() {
        tracing::warn!(
            limit_s = limit.as_secs(),
            "the consumer did not close in time; going on without it"
        );
    }
}

/// The consumer of the service's group; rebalances are queued in its
/// context for the engine to apply after `poll`.
pub fn group_consumer(settings: &KafkaSettings, options: &EngineOptions) -> Result<GroupConsumer> {
    clients::group_consumer(settings, &options.group)
        .report_statistics_to(&options.metrics)
        .create_with_context(GroupEvents::new(Arc::clone(&options.metrics)))
        .while_("creating the consumer")
}

/// Reads changelog partitions on assignment; never joins a group (the
/// group id is `<group>.restore`, librdkafka's requirement only).
pub fn changelog_reader(
    settings: &KafkaSettings,
    options: &EngineOptions,
) -> Result<ChangelogReader> {
    let group = format!("{}.restore", options.group);
    clients::assign_only_reader(
        settings,
        &group,
        &[
            // As for the group consumer: restoring is catching up too.
            ("queued.max.messages.kbytes", PREFETCH_KBYTES),
            ("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS),
            // A restore reads to the end and stops: the broker should
            // answer at once at the end, not hold the fetch for
            // librdkafka's default 500 ms hoping for more. Restoring three
            // empty partitions took 1.5 s, with records waiting.
            ("fetch.wait.max.ms", "10"),
        ],
    )
    .create_with_context(Logged)
    .while_("creating the changelog reader")
}

/// The engine's producer: idempotent, transactional for exactly-once.
pub struct EngineProducer {
    client: Arc<Client>,
    /// The helper thread's queue of `send_offsets_to_transaction` calls.
    offsets: mpsc::Sender<OffsetsCall>,
}

struct OffsetsCall {
    offsets: TopicPartitionList,
    metadata: ConsumerGroupMetadata,
    timeout: Duration,
    answer: mpsc::Sender<KafkaResult<()>>,
}

impl EngineProducer {
    /// A new producer. `batch_size` caps librdkafka's batches at the
    /// smallest record size limit among the topics the engine writes to, so
    /// that a batch the broker refuses as too large holds one record, the
    /// one at fault, and never records that fit on their own.
    pub fn create(
        settings: &KafkaSettings,
        options: &EngineOptions,
        batch_size: Option<usize>,
    ) -> Result<Self> {
        let batch_size = batch_size.map(|b| b.to_string());
        let mut extra: Vec<(&str, &str)> = Vec::new();
        if let Some(size) = &batch_size {
            extra.push(("batch.size", size));
        }
        let message_timeout = match options.guarantee {
            Guarantee::ExactlyOnce => {
                extra.extend([
                    ("transactional.id", options.transactional_id.as_str()),
                    // As Kafka Streams does for exactly-once: an instance
                    // that dies and never comes back blocks read_committed
                    // readers (and the instance taking over its partitions)
                    // until the coordinator aborts its open transaction:
                    // after 10 s, not a minute. A restart with the same
                    // transactional.id aborts it at once.
                    ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
                ]);
                // librdkafka requires deliveries to give up within the
                // transaction timeout; a failed delivery redoes the batch.
                "10000"
            }
            // A lost cluster, or a topic deleted under us (whose records
            // librdkafka retries until they time out), is an error in 30 s:
            // the service ends within a minute, as exactly-once does.
            Guarantee::AtLeastOnce => "30000",
        };
        let client: Client = clients::idempotent_producer(settings, message_timeout, &extra)
            .report_statistics_to(&options.metrics)
            .create_with_context(Deliveries::new(Arc::clone(&options.metrics)))
            .while_("creating the producer")?;
        let client = Arc::new(client);
        let (offsets, calls) = mpsc::channel::<OffsetsCall>();
        let helper = Arc::clone(&client);
        // Long-lived: it serves every batch's call, and ends when the
        // producer is replaced or dropped (its queue closes).
        std::thread::Builder::new()
            .name("send-offsets".into())
            .spawn(move || {
                for call in calls {
                    let outcome = helper.send_offsets_to_transaction(
                        &call.offsets,
                        &call.metadata,
                        call.timeout,
                    );
                    let _ = call.answer.send(outcome);
                }
            })
            .map_err(|cause| Error::Panicked {
                what: "starting the send-offsets thread".into(),
                cause: cause.to_string(),
            })?;
        Ok(Self { client, offsets })
    }

    /// `send_offsets_to_transaction`, on the helper thread. librdkafka's
    /// call can block past its timeout when the group coordinator goes away
    /// (confluentinc/librdkafka#5456, #5511): a call with no answer at
    /// twice its timeout is reported as wedged, and the engine then replaces
    /// this producer (the helper stays blocked until librdkafka lets go).
    pub fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        metadata: ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<KafkaResult<()>> {
        const CALL: &str = "send_offsets_to_transaction";
        let (answer, outcome) = mpsc::channel();
        let wedged = Error::Wedged {
            call: CALL.into(),
            waited: timeout * 2,
        };
        let call = OffsetsCall {
            offsets: offsets.clone(),
            metadata,
            timeout,
            answer,
        };
        if self.offsets.send(call).is_err() {
            return Err(wedged); // the helper is gone: as good as wedged
        }
        outcome.recv_timeout(timeout * 2).map_err(|_| wedged)
    }

    /// Destroys the producer on a thread of its own: destroying a client
    /// waits for its broker threads, and one may be stuck connecting to a
    /// node that is down.
    pub fn destroy_elsewhere(self) {
        std::thread::spawn(move || drop(self));
    }
}

impl std::ops::Deref for EngineProducer {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}
