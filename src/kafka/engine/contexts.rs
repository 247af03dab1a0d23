//! The rdkafka contexts of the engine's clients: the consumer's records
//! rebalances for the engine to apply after `poll` returns; the producer's
//! remembers failed deliveries. Both log like every orderflow client and
//! report librdkafka's statistics to the service's metrics (`Measured`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

use crate::error::{Error, Result};
use crate::kafka::context::{describe, Measured};
use crate::metrics::{ClientRole, Metrics};

/// An assignment change reported by the consumer.
#[derive(Debug)]
pub enum Assignment {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

/// Consumer context that records rebalances, so that the engine can abort,
/// restore and rewind after `poll` returns rather than inside librdkafka's
/// callback.
pub struct GroupEvents {
    events: Mutex<Vec<Assignment>>,
    measured: Measured,
}

impl GroupEvents {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            events: Mutex::default(),
            measured: Measured {
                role: ClientRole::Consumer,
                metrics,
            },
        }
    }

    pub fn take(&self) -> Vec<Assignment> {
        std::mem::take(&mut *self.events.lock().expect("never poisoned"))
    }
}

impl ClientContext for GroupEvents {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.measured.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.measured.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.measured.stats(statistics);
    }
}

impl ConsumerContext for GroupEvents {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements().iter().map(|e| e.partition()).collect()
        };
        let event = match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = %describe(list), "partitions assigned");
                Assignment::Assigned(partitions(list))
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = %describe(list), "partitions revoked");
                Assignment::Revoked(partitions(list))
            }
            Rebalance::Error(error) => {
                tracing::error!(%error, "rebalance failed");
                return;
            }
        };
        self.events.lock().expect("never poisoned").push(event);
    }
}

/// Producer context that remembers failed deliveries, so that an
/// at-least-once batch never commits offsets past an output not written.
pub struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<(String, KafkaError)>>,
    measured: Measured,
}

impl Deliveries {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            failed: AtomicU64::new(0),
            first_error: Mutex::default(),
            measured: Measured {
                role: ClientRole::Producer,
                metrics,
            },
        }
    }

    /// Err with the first failure when any delivery failed.
    pub fn check(&self) -> Result<()> {
        if self.failed.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let first = self.first_error.lock().expect("never poisoned").clone();
        let (topic, cause) = first.unwrap_or_else(|| (String::new(), KafkaError::Canceled));
        Err(Error::Delivery { topic, cause })
    }
}

impl ClientContext for Deliveries {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.measured.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.measured.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.measured.stats(statistics);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, message)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            let mut first = self.first_error.lock().expect("never poisoned");
            first.get_or_insert_with(|| (message.topic().to_owned(), error.clone()));
        }
    }
}
