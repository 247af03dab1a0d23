//! The rdkafka client contexts of orderflow's clients. `Logged`, which every
//! client uses: librdkafka's log lines and errors go to `tracing` (so
//! `RUST_LOG` and the log format apply to them too), and consumer-group
//! rebalances and failed commits are logged. `Measured`, for a service's
//! producers and consumers: logs the same way and hands librdkafka's
//! statistics to the service's metrics.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, TopicPartitionList};

use crate::metrics::{ClientRole, Metrics};

/// Routes librdkafka's callbacks into `tracing`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Logged;

impl ClientContext for Logged {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // With enable.partition.eof, reaching the end of a partition arrives
        // here too; it is news for --exit-at-end, not an error.
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::PartitionEOF) {
            return;
        }
        // Lost connections are retried by librdkafka and surface as our own
        // timeout errors when they persist: a warning, not an error, here.
        let transient = matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown)
        );
        if transient {
            tracing::warn!(target: "librdkafka", "{reason}");
        } else {
            tracing::error!(target: "librdkafka", %error, "{reason}");
        }
    }
}

impl ConsumerContext for Logged {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions assigned")
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = %describe(partitions), "partitions revoked")
            }
            Rebalance::Error(error) => tracing::error!(%error, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            // "No offset stored" only means there was nothing new to commit.
            if error.rdkafka_error_code() != Some(RDKafkaErrorCode::NoOffset) {
                tracing::warn!(%error, offsets = %describe(offsets), "offset commit failed");
            }
        }
    }
}

/// Logs like [`Logged`]; statistics (when the client was configured to
/// report them, see `Metrics::statistics_setting`) go to `metrics`.
#[derive(Debug, Clone)]
pub struct Measured {
    pub role: ClientRole,
    pub metrics: Arc<Metrics>,
}

impl ClientContext for Measured {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        Logged.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        Logged.error(error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        self.metrics.record_statistics(self.role, &statistics);
    }
}

/// Turns librdkafka's statistics on for a client whose context is
/// [`Measured`], when `metrics` wants them (they are served).
pub trait ReportStatistics {
    fn report_statistics_to(&mut self, metrics: &Metrics) -> &mut Self;
}

impl ReportStatistics for ClientConfig {
    fn report_statistics_to(&mut self, metrics: &Metrics) -> &mut Self {
        if let Some((key, value)) = metrics.statistics_setting() {
            self.set(key, value);
        }
        self
    }
}

/// "topic[0,1,2]"-style summary of a partition list, for logs.
pub fn describe(list: &TopicPartitionList) -> String {
    let mut parts: Vec<String> = list
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    parts.sort();
    parts.join(",")
}
