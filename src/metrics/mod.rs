//! Prometheus metrics of one service process, served on `--metrics-addr`.
//!
//! Names follow Prometheus conventions: `orderflow_` first, counters end in
//! `_total`, durations are `_seconds`. What the engine counts is committed
//! work, like `--stats-file`: a batch that is aborted and redone counts once.
//!
//! - every service: `orderflow_events_produced_total{topic}` and librdkafka's
//!   own figures (`statistics`): producer queue depth, broker round trips;
//! - the engine's services (inventory, analytics), besides:
//!   `orderflow_events_consumed_total{topic}`,
//!   `orderflow_dead_letters_total{topic}` (the DLQ),
//!   `orderflow_processing_latency_seconds` (a record's timestamp, its event
//!   time, to its processing), `orderflow_consumer_lag_records{topic,partition}`,
//!   `orderflow_assigned_partitions{topic}` (taken over: state restored; a
//!   service of two stages has a series per input),
//!   `orderflow_commit_duration_seconds`,
//!   `orderflow_transactions_committed_total` and `..._aborted_total`, and the
//!   consumer's fetch queue;
//! - inventory: `orderflow_inventory_decisions_total{status}`;
//! - analytics: `orderflow_windows_closed_total`, `orderflow_late_events_total`;
//! - the API: `orderflow_http_requests_total{method,route,status}` and
//!   `orderflow_http_request_duration_seconds{method,route}` (`route` is the
//!   route's pattern, `/orders/{id}`: one series per route, not per order),
//!   besides its keys stage's engine metrics.
//!
//! The values are atomics shared with the engine's thread; a scrape encodes
//! them as OpenMetrics text (`server`).

pub mod scrape;
pub mod server;
mod statistics;

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::domain::latency::Latencies;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use statistics::ClientRole;

/// Which service a process runs: decides the service-specific metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Produce,
    Inventory,
    Analytics,
    Api,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    /// "reserved" or "rejected", as `InventoryChecked::status` says.
    pub status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRoute {
    pub method: String,
    /// The route's pattern (`/orders/{id}`), or "unmatched".
    pub route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpAnswer {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// A histogram per label set, each with the latency buckets.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BrokerLabels {
    /// Which of the service's clients measured it ("producer", "consumer").
    pub client: &'static str,
    /// host:port/id, as librdkafka names brokers.
    pub broker: String,
    /// "0.5" or "0.99": librdkafka's own percentiles over its last window.
    pub quantile: String,
}

/// Latency buckets, in seconds: from a millisecond to a minute.
const LATENCY_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every metric of one process, and the registry that serves them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_consumed: Family<TopicLabel, Counter>,
    pub events_produced: Family<TopicLabel, Counter>,
    pub dead_letters: Family<TopicLabel, Counter>,
    pub processing_latency: Histogram,
    pub commit_duration: Histogram,
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    pub assigned_partitions: Family<TopicLabel, Gauge>,
    pub transactions_committed: Counter,
    pub transactions_aborted: Counter,
    pub decisions: Family<DecisionLabel, Counter>,
    pub windows_closed: Counter,
    pub late_events: Counter,
    pub http_requests: Family<HttpAnswer, Counter>,
    pub http_duration: LatencyFamily<HttpRoute>,
    pub producer_queue: Gauge,
    pub fetch_queue: Family<PartitionLabels, Gauge>,
    pub broker_rtt: Family<BrokerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Whether clients should report librdkafka's statistics (see
    /// `statistics`): only when the metrics are served.
    librdkafka_statistics: bool,
    /// The last committed offset of each consumed partition, and its log's
    /// last stable offset as the consumer last saw it: lag is the difference.
    offsets: Mutex<BTreeMap<(String, i32), PartitionOffsets>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PartitionOffsets {
    committed: Option<i64>,
    end: Option<i64>,
}

impl Metrics {
    pub fn new(service: Service) -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("orderflow"),
            events_consumed: Family::default(),
            events_produced: Family::default(),
            dead_letters: Family::default(),
            processing_latency: Histogram::new(LATENCY_BUCKETS),
            commit_duration: Histogram::new(LATENCY_BUCKETS),
            consumer_lag: Family::default(),
            assigned_partitions: Family::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Counter::default(),
            decisions: Family::default(),
            windows_closed: Counter::default(),
            late_events: Counter::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            producer_queue: Gauge::default(),
            fetch_queue: Family::default(),
            broker_rtt: Family::default(),
            librdkafka_statistics: false,
            offsets: Mutex::new(BTreeMap::new()),
        };
        metrics.register(service);
        metrics
    }

    fn register(&mut self, service: Service) {
        let r = &mut self.registry;
        r.register(
            "events_produced",
            "Records written to each output topic, committed",
            self.events_produced.clone(),
        );
        r.register(
            "librdkafka_producer_queue_messages",
            "Messages waiting in librdkafka's producer queue",
            self.producer_queue.clone(),
        );
        r.register_with_unit(
            "librdkafka_broker_rtt",
            "Round-trip time of requests to each broker, librdkafka's percentiles",
            Unit::Seconds,
            self.broker_rtt.clone(),
        );
        if service == Service::Produce {
            return;
        }
        r.register(
            "events_consumed",
            "Input records processed and committed (dead letters included)",
            self.events_consumed.clone(),
        );
        r.register(
            "dead_letters",
            "Input records set aside to each dead-letter topic, committed",
            self.dead_letters.clone(),
        );
        r.register_with_unit(
            "processing_latency",
            "From a record's timestamp (its event's creation) to its processing, \
             for records created after their partition was taken over",
            Unit::Seconds,
            self.processing_latency.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "How long committing a batch took: its changelog writes, waiting for \
             every output's acknowledgement, and the transaction commit (or, \
             at-least-once, the offset commit)",
            Unit::Seconds,
            self.commit_duration.clone(),
        );
        r.register(
            "consumer_lag_records",
            "Records in each assigned partition past the group's committed offset",
            self.consumer_lag.clone(),
        );
        r.register(
            "assigned_partitions",
            "Input partitions this instance holds, state restored",
            self.assigned_partitions.clone(),
        );
        r.register(
            "transactions_committed",
            "Transactions (batches) committed",
            self.transactions_committed.clone(),
        );
        r.register(
            "transactions_aborted",
            "Transactions (batches) aborted, to be processed again",
            self.transactions_aborted.clone(),
        );
        r.register(
            "librdkafka_consumer_fetch_queue_messages",
            "Messages prefetched by librdkafka for each partition",
            self.fetch_queue.clone(),
        );
        match service {
            Service::Inventory => r.register(
                "inventory_decisions",
                "Orders decided, committed, by outcome",
                self.decisions.clone(),
            ),
            Service::Analytics => {
                r.register(
                    "windows_closed",
                    "One-minute windows closed and published, committed",
                    self.windows_closed.clone(),
                );
                r.register(
                    "late_events",
                    "Events for a window already closed, committed",
                    self.late_events.clone(),
                );
            }
            Service::Api => {
                r.register(
                    "http_requests",
                    "HTTP requests answered, by method, route and status",
                    self.http_requests.clone(),
                );
                r.register_with_unit(
                    "http_request_duration",
                    "From a request's arrival to its answer, by method and route",
                    Unit::Seconds,
                    self.http_duration.clone(),
                );
            }
            Service::Produce => {}
        }
    }

    /// Has the clients report librdkafka's statistics into these metrics.
    pub fn with_librdkafka_statistics(mut self) -> Self {
        self.librdkafka_statistics = true;
        self
    }

    /// The client setting that turns librdkafka's statistics on, when wanted.
    pub fn statistics_setting(&self) -> Option<(&'static str, &'static str)> {
        self.librdkafka_statistics
            .then_some(("statistics.interval.ms", statistics::STATISTICS_INTERVAL_MS))
    }

    /// Adds a committed batch's latencies to the histogram.
    pub fn observe_latencies(&self, latencies: &Latencies) {
        latencies.for_each_seconds(|seconds, count| {
            for _ in 0..count {
                self.processing_latency.observe(seconds);
            }
        });
    }

    /// The registry as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The group committed `offset` (the next to read) on `topic[partition]`.
    pub fn committed(&self, topic: &str, partition: i32, offset: i64) {
        self.update_offsets(topic, partition, |o| o.committed = Some(offset));
    }

    /// The consumer saw `topic[partition]`'s log end (last stable offset) at `end`.
    fn log_end(&self, topic: &str, partition: i32, end: i64) {
        self.update_offsets(topic, partition, |o| o.end = Some(end));
    }

    /// The partition is no longer this instance's: no lag is reported for it.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let mut offsets = self.offsets.lock().expect("never poisoned");
        offsets.remove(&(topic.to_owned(), partition));
        let labels = PartitionLabels {
            topic: topic.to_owned(),
            partition,
        };
        self.consumer_lag.remove(&labels);
        self.fetch_queue.remove(&labels);
    }

    fn update_offsets(
        &self,
        topic: &str,
        partition: i32,
        change: impl FnOnce(&mut PartitionOffsets),
    ) {
        let mut offsets = self.offsets.lock().expect("never poisoned");
        let entry = offsets.entry((topic.to_owned(), partition)).or_default();
        change(entry);
        if let PartitionOffsets {
            committed: Some(committed),
            end: Some(end),
        } = *entry
        {
            let labels = PartitionLabels {
                topic: topic.to_owned(),
                partition,
            };
            self.consumer_lag
                .get_or_create(&labels)
                .set((end - committed).max(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new(Service::Inventory);
        metrics
            .events_consumed
            .get_or_create(&TopicLabel {
                topic: "OrderEvents".into(),
            })
            .inc_by(3);
        metrics
            .decisions
            .get_or_create(&DecisionLabel { status: "rejected" })
            .inc();
        metrics.processing_latency.observe(0.02);
        let text = metrics.encode();
        assert!(
            line(
                &text,
                r#"orderflow_events_consumed_total{topic="OrderEvents"} 3"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                r#"orderflow_inventory_decisions_total{status="rejected"} 1"#
            )
            .is_some(),
            "{text}"
        );
        assert!(
            line(
                &text,
                r#"orderflow_processing_latency_seconds_bucket{le="0.025"} 1"#
            )
            .is_some(),
            "{text}"
        );
        assert!(line(&text, "orderflow_processing_latency_seconds_count 1").is_some());
        assert!(text.contains("# TYPE orderflow_transactions_committed counter"));
        // Analytics' metrics are not inventory's.
        assert!(!text.contains("windows_closed"), "{text}");
    }

    #[test]
    fn lag_is_log_end_minus_committed_once_both_are_known() {
        let metrics = Metrics::new(Service::Analytics);
        let labels = PartitionLabels {
            topic: "t".into(),
            partition: 1,
        };
        metrics.log_end("t", 1, 120);
        assert!(metrics.consumer_lag.get(&labels).is_none());
        metrics.committed("t", 1, 100);
        assert_eq!(metrics.consumer_lag.get(&labels).unwrap().get(), 20);
        metrics.log_end("t", 1, 100);
        assert_eq!(metrics.consumer_lag.get(&labels).unwrap().get(), 0);
        metrics.forget_partition("t", 1);
        assert!(metrics.consumer_lag.get(&labels).is_none());
        assert!(!metrics.encode().contains(r#"partition="1""#));
    }
}
