//! The rdkafka contexts of the engine's clients: the consumer's records
//! rebalances for the engine to apply after `poll` returns; the producer's
//! keeps failed deliveries, with the input each record was written for. Both
//! log like every orderflow client and report librdkafka's statistics to the
//! service's metrics (`Measured`).

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;

use super::limits::record_batch_bytes;
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

/// Both contexts log and measure as `Measured` does.
macro_rules! measured_client_context {
    ($context:ty) => {
        impl ClientContext for $context {
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
    };
}

measured_client_context!(GroupEvents);

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

/// A record the broker, librdkafka or the engine refused.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The sequence number of the input the record was written for
    /// (`batch::ENGINE_RECORD` for the engine's own records).
    pub input: u64,
    pub topic: String,
    pub error: KafkaError,
    /// The record's size as a batch of one (see `limits`).
    pub size: usize,
    /// Why, when it was refused before it was sent (by librdkafka at
    /// send, or by the engine's size check); None for a failed delivery.
    pub before_sending: Option<String>,
}

/// Producer context that keeps failed deliveries until the engine takes
/// them: at a commit, so that no batch commits past an output not written,
/// and after a failure, so that the engine knows which input a refused
/// record was written for.
pub struct Deliveries {
    failures: Mutex<Vec<Failure>>,
    measured: Measured,
}

impl Deliveries {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            failures: Mutex::default(),
            measured: Measured {
                role: ClientRole::Producer,
                metrics,
            },
        }
    }

    /// The failures reported since the last call.
    pub fn take_failures(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.failures.lock().expect("never poisoned"))
    }

    /// The first failure reported since the last `take_failures`, which
    /// stays for recovery to take.
    pub fn first_failure(&self) -> Option<Failure> {
        self.failures
            .lock()
            .expect("never poisoned")
            .first()
            .cloned()
    }

    /// Records a failure the engine saw itself, when librdkafka refused a
    /// record before sending it.
    pub fn refused(&self, failure: Failure) {
        self.failures.lock().expect("never poisoned").push(failure);
    }
}

measured_client_context!(Deliveries);

impl ProducerContext for Deliveries {
    /// The sequence number of the input a record was written for.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, input: usize) {
        if let Err((error, message)) = result {
            let headers: Vec<(usize, Option<usize>)> = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.len(), h.value.map(<[u8]>::len)))
                        .collect()
                })
                .unwrap_or_default();
            self.refused(Failure {
                input: input as u64,
                topic: message.topic().to_owned(),
                error: error.clone(),
                size: record_batch_bytes(
                    message.key().map(<[u8]>::len),
                    message.payload().map(<[u8]>::len),
                    &headers,
                ),
                before_sending: None,
            });
        }
    }
}
