//! librdkafka's statistics, the JSON document a client emits every
//! `statistics.interval.ms`, turned into the few gauges that matter when a
//! service falls behind: how many messages wait in the producer's queue and
//! in the consumer's fetch queue, how long brokers take to answer, and where
//! each consumed partition's log ends (for the lag).

use rdkafka::statistics::Statistics;

use super::{BrokerLabels, Metrics, PartitionLabels};

/// Which client of a service a statistics report comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Producer,
    Consumer,
}

impl ClientRole {
    fn label(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Consumer => "consumer",
        }
    }
}

/// How often librdkafka reports when metrics are served: fresh enough for a
/// scrape every few seconds. Each report is a JSON document of a few KB,
/// parsed on the thread that polls the client: negligible at once a second.
pub const STATISTICS_INTERVAL_MS: &str = "1000";

impl Metrics {
    /// Takes in one statistics report of a `role` client.
    pub fn record_statistics(&self, role: ClientRole, stats: &Statistics) {
        if role == ClientRole::Producer {
            self.producer_queue
                .set(i64::try_from(stats.msg_cnt).unwrap_or(i64::MAX));
        }
        for broker in stats.brokers.values() {
            // Bootstrap connections (id -1) are replaced by the brokers they
            // name; a window without requests has no percentiles.
            let Some(rtt) = broker.rtt.as_ref().filter(|w| w.cnt > 0) else {
                continue;
            };
            if broker.nodeid < 0 {
                continue;
            }
            for (quantile, micros) in [("0.5", rtt.p50), ("0.99", rtt.p99)] {
                let labels = BrokerLabels {
                    client: role.label(),
                    broker: broker.name.clone(),
                    quantile: quantile.into(),
                };
                self.broker_rtt
                    .get_or_create(&labels)
                    .set(micros as f64 / 1e6);
            }
        }
        if role != ClientRole::Consumer {
            return;
        }
        for (topic, t) in &stats.topics {
            // Partition -1 is librdkafka's internal "unassigned" queue;
            // undesired partitions are ones it still lists after a revoke.
            for p in t
                .partitions
                .values()
                .filter(|p| p.partition >= 0 && p.desired)
            {
                let labels = PartitionLabels {
                    topic: topic.clone(),
                    partition: p.partition,
                };
                self.fetch_queue.get_or_create(&labels).set(p.fetchq_cnt);
                // With read_committed, the last stable offset is where what
                // the consumer may read ends (-1: not known yet).
                if p.ls_offset >= 0 {
                    self.log_end(topic, p.partition, p.ls_offset);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Service;

    use rdkafka::statistics::{Broker, Partition, Topic, Window};

    /// A consumer's report with only the fields read filled in.
    fn report() -> Statistics {
        let broker = |name: &str, nodeid: i32, p50: i64, p99: i64| Broker {
            name: name.into(),
            nodeid,
            rtt: Some(Window {
                cnt: 3,
                p50,
                p99,
                ..Window::default()
            }),
            ..Broker::default()
        };
        let partition = |partition: i32, desired: bool, ls_offset: i64, fetchq_cnt: i64| {
            let p = Partition {
                partition,
                desired,
                ls_offset,
                fetchq_cnt,
                ..Partition::default()
            };
            (partition, p)
        };
        let topic = Topic {
            topic: "OrderEvents".into(),
            partitions: [partition(0, true, 1200, 7), partition(-1, false, -1, 0)].into(),
            ..Topic::default()
        };
        Statistics {
            brokers: [
                ("a".into(), broker("127.0.0.1:9092/1", 1, 1500, 9000)),
                ("b".into(), broker("127.0.0.1:9092/bootstrap", -1, 1, 1)),
            ]
            .into(),
            topics: [("OrderEvents".into(), topic)].into(),
            ..Statistics::default()
        }
    }

    #[test]
    fn a_consumer_report_gives_rtt_fetch_queue_and_lag() {
        let metrics = Metrics::new(Service::Inventory);
        metrics.committed("OrderEvents", 0, 1000);
        metrics.record_statistics(ClientRole::Consumer, &report());
        let text = metrics.encode();
        for expected in [
            r#"orderflow_librdkafka_broker_rtt_seconds{client="consumer",broker="127.0.0.1:9092/1",quantile="0.99"} 0.009"#,
            r#"orderflow_librdkafka_consumer_fetch_queue_messages{topic="OrderEvents",partition="0"} 7"#,
            r#"orderflow_consumer_lag_records{topic="OrderEvents",partition="0"} 200"#,
        ] {
            assert!(text.lines().any(|l| l == expected), "{expected} in\n{text}");
        }
        assert!(!text.contains("bootstrap"), "{text}");
        assert!(!text.contains(r#"partition="-1""#), "{text}");
    }
}
