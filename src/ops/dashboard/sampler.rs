//! The dashboard's Kafka side: every interval, the orders topic's log end,
//! each group's lag (offsets, lag in time, Burrow status, through
//! `lag::Monitor`), and the closed windows analytics published to
//! OrderMetrics since the last sample; and the API's requests, from the
//! metrics of the instances it is told of (`--api-metrics`).
//!
//! Of the pipeline it reads only what any Kafka user can: topics and
//! committed offsets, never the services themselves, so it works against
//! any cluster the services run on. (The API's requests are in no topic:
//! those it scrapes, as Prometheus would.) A part that cannot be read (a topic not created yet, a broker down)
//! becomes a problem shown on the page, not the end of the dashboard.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::view::{rate, ApiView, GroupView, Sample, Throughput, WindowTable, WindowsView};
use crate::config::KafkaSettings;
use crate::contracts::wire;
use crate::domain::events::WindowClosed;
use crate::error::{KafkaResultExt, Result};
use crate::kafka::admin::Admin;
use crate::kafka::clients;
use crate::kafka::context::Logged;
use crate::metrics::scrape::scrape;
use crate::ops::lag::Monitor;

/// What the dashboard watches.
#[derive(Debug, Clone)]
pub struct Watched {
    pub orders_topic: String,
    pub metrics_topic: String,
    /// Inventory's group on the orders, analytics' on the decisions.
    pub groups: Vec<WatchedGroup>,
    /// The metrics addresses of the API's instances.
    pub api_metrics: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct WatchedGroup {
    /// What it does: "inventory", "analytics".
    pub role: String,
    pub group: String,
    /// The topic it consumes.
    pub topic: String,
}

/// Windows sent to the page for its charts: the last four hours of event
/// time. (Totals cover every window.)
const RECENT_WINDOWS: usize = 240;
/// The API's request counter (`services/api/measured.rs`).
const HTTP_REQUESTS: &str = "orderflow_http_requests_total";
/// An API instance that does not answer within this is a problem of the
/// sample, not a stalled dashboard.
const API_SCRAPE_TIMEOUT: Duration = Duration::from_millis(500);
/// Samples of lag status are judged over, as `lag --window`.
const STATUS_WINDOW: usize = 3;
/// Closed-window records read per sample at most, so that a long history
/// is caught up over a few samples rather than in one long pause.
const WINDOW_RECORDS_PER_SAMPLE: usize = 100_000;

pub struct Sampler {
    admin: Admin,
    watched: Watched,
    monitors: Vec<Monitor>,
    /// Reads OrderMetrics from the beginning; assigned once the topic exists.
    windows_reader: BaseConsumer<Logged>,
    reading_windows: bool,
    windows: WindowTable,
    previous: Option<Sample>,
}

impl Sampler {
    pub fn new(settings: &KafkaSettings, watched: Watched) -> Result<Self> {
        let admin = Admin::connect(settings)?;
        let monitors = watched
            .groups
            .iter()
            .map(|g| Monitor::new(settings, &g.group, Some(&g.topic), STATUS_WINDOW))
            .collect::<Result<Vec<_>>>()?;
        // Windows of committed transactions only, as analytics publishes
        // them.
        let windows_reader = clients::assign_only_reader(
            settings,
            "orderflow-dashboard",
            // It reads on as windows are published: a partition's end is
            // no news to it.
            &[("enable.partition.eof", "false")],
        )
        .create_with_context(Logged)
        .while_("creating the OrderMetrics reader")?;
        Ok(Self {
            admin,
            watched,
            monitors,
            windows_reader,
            reading_windows: false,
            windows: WindowTable::default(),
            previous: None,
        })
    }

    /// Takes a sample now.
    pub fn sample(&mut self) -> (Sample, WindowsView) {
        let time = chrono::Utc::now().timestamp_millis();
        let mut problems = Vec::new();
        let before = self.previous.as_ref().map(|p| (p.time, p));

        let mut groups = Vec::new();
        let mut orders_end = None;
        for (monitor, watched) in self.monitors.iter_mut().zip(&self.watched.groups) {
            match monitor.sample(&self.admin) {
                Ok(lag) => {
                    // Inventory's lag has read the orders topic's log end.
                    if watched.topic == self.watched.orders_topic {
                        orders_end = Some(lag.partitions.iter().map(|p| p.log_end).sum());
                    }
                    let previous = before.and_then(|(at, p)| {
                        let view = p.groups.iter().find(|g| g.group == lag.group)?;
                        Some((at, view))
                    });
                    groups.push(GroupView::new(&watched.role, &lag, time, previous));
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let orders_total = match orders_end {
            Some(total) => total,
            None => self
                .log_end(&self.watched.orders_topic)
                .unwrap_or_else(|e| {
                    problems.push(e.to_string());
                    0
                }),
        };
        let orders = Throughput {
            topic: self.watched.orders_topic.clone(),
            total: orders_total,
            per_second: rate(
                before.map(|(at, p)| (at, p.orders.total)),
                (time, orders_total),
            ),
        };

        if let Err(e) = self.read_windows() {
            problems.push(e.to_string());
        }
        let api = self.api_requests(time, &mut problems);
        let sample = Sample {
            time,
            orders,
            groups,
            api,
            problems,
        };
        self.previous = Some(sample.clone());
        (sample, self.windows.view(RECENT_WINDOWS))
    }

    /// The API's requests, summed over the instances that answered, and
    /// their rates; None when no instance is watched.
    fn api_requests(&self, time: i64, problems: &mut Vec<String>) -> Option<ApiView> {
        if self.watched.api_metrics.is_empty() {
            return None;
        }
        let (mut requests, mut server_errors, mut instances) = (0.0, 0.0, 0);
        for &addr in &self.watched.api_metrics {
            match scrape(addr, API_SCRAPE_TIMEOUT) {
                Ok(samples) => {
                    instances += 1;
                    for (series, count) in samples.series(HTTP_REQUESTS) {
                        requests += count;
                        if series.contains("status=\"5") {
                            server_errors += count;
                        }
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        let before = self
            .previous
            .as_ref()
            .and_then(|p| Some((p.time, p.api.as_ref()?)));
        Some(ApiView::new(
            instances,
            requests as i64,
            server_errors as i64,
            time,
            before,
        ))
    }

    /// The sum of a topic's log-end offsets (when no group's lag gave it).
    fn log_end(&self, topic: &str) -> Result<i64> {
        let mut total = 0;
        for partition in self.admin.partitions(topic)? {
            total += self.admin.watermarks(topic, partition)?.1;
        }
        Ok(total)
    }

    /// Reads the closed windows published since the last sample.
    fn read_windows(&mut self) -> Result<()> {
        let topic = self.watched.metrics_topic.clone();
        if !self.reading_windows {
            if !self.admin.topic_exists(&topic)? {
                return Ok(()); // analytics creates it when it starts
            }
            let mut list = TopicPartitionList::new();
            for partition in self.admin.partitions(&topic)? {
                list.add_partition_offset(&topic, partition, Offset::Beginning)
                    .while_("building the OrderMetrics assignment")?;
            }
            self.windows_reader
                .assign(&list)
                .while_(format!("reading {topic}"))?;
            self.reading_windows = true;
        }
        let mut unreadable = BTreeSet::new();
        for _ in 0..WINDOW_RECORDS_PER_SAMPLE {
            let Some(polled) = self.windows_reader.poll(Duration::from_millis(50)) else {
                break;
            };
            let message = polled.while_(format!("reading {topic}"))?;
            match WindowClosed::decode(wire::json(message.payload().unwrap_or_default())) {
                Ok(event) => self.windows.apply(&event),
                Err(_) => {
                    unreadable.insert((message.partition(), message.offset()));
                }
            }
        }
        if let Some((partition, offset)) = unreadable.first() {
            tracing::warn!(
                topic,
                partition,
                offset,
                count = unreadable.len(),
                "skipping records of the metrics topic that are not WindowClosed events"
            );
        }
        Ok(())
    }
}
