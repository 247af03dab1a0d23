//! What `orderflow bench` found, as plain data: throughput rows, latency
//! rows, the targets checked against them, and BENCHMARKS.md.
//!
//! Every throughput is shown as a ratio to the raw produce limit (what
//! kafka-producer-perf-test reached on the same broker in the same run, with
//! its defaults and tuned for throughput): absolute numbers depend on the
//! machine, ratios say how close to the broker's limit orderflow runs.

use std::fmt::Write as _;

use crate::domain::latency::LatencySummary;

/// One throughput measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Throughput {
    /// What ran, e.g. "orderflow inventory (exactly-once)".
    pub name: String,
    pub events: u64,
    pub events_per_second: f64,
    /// Peak resident memory of the process(es) measured, where known.
    pub peak_rss: Vec<(String, u64)>,
}

/// Latency at a fixed rate: orderflow's end to end for one guarantee, or
/// the raw producer's send-to-acknowledgement for reference.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRun {
    pub name: String,
    pub rate: f64,
    pub events: u64,
    /// orderflow: order creation (the OrderPlaced record's timestamp, which
    /// the inventory's output carries on) to analytics processing it.
    pub latency: LatencySummary,
    /// The bound on p99 (commit interval + 20 ms); None for the
    /// reference run.
    pub p99_bound_ms: Option<f64>,
}

/// The machine and settings a run used.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    pub machine: String,
    pub brokers: String,
    pub librdkafka: String,
    pub count: u64,
    pub record_bytes: usize,
    pub partitions: i32,
    pub settings: Vec<String>,
}

/// What one topic of the pipeline holds on the broker after a run, per
/// order that went through.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicBytes {
    /// Its part in the pipeline, e.g. "orders" or "<group>-stock-repartition".
    pub topic: String,
    pub bytes: u64,
    pub orders: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BenchResults {
    pub setup: Setup,
    /// Rows include kafka-producer-perf-test with its defaults and tuned:
    /// the raw produce limits.
    pub throughput: Vec<Throughput>,
    pub latency: Vec<LatencyRun>,
    /// The end-to-end pipeline's topics, internal ones included.
    pub bytes: Vec<TopicBytes>,
}

/// A target of the issue, and whether this run met it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: bool,
}

/// Row names the targets refer to.
pub const RAW_PRODUCE: &str = "kafka-producer-perf-test";
pub const RAW_PRODUCE_TUNED: &str = "kafka-producer-perf-test (batch.size=1048576, linger.ms=10)";
/// The tuned run's producer properties.
pub const TUNED_PROPS: [&str; 2] = ["batch.size=1048576", "linger.ms=10"];
pub const RAW_CONSUME: &str = "kafka-consumer-perf-test";
pub const PRODUCE: &str = "orderflow produce";
pub const PIPELINE_EOS: &str = "pipeline end to end (exactly-once)";
pub const ANALYTICS_EOS: &str = "orderflow analytics (exactly-once)";
/// The API started over a full topic, until its views caught up.
pub const API_VIEWS: &str = "orderflow api, views caught up";

const MIB: f64 = 1024.0 * 1024.0;

impl BenchResults {
    /// Records/s of kafka-producer-perf-test.
    pub fn raw_limit(&self) -> Option<f64> {
        self.row(RAW_PRODUCE).map(|r| r.events_per_second)
    }

    fn row(&self, name: &str) -> Option<&Throughput> {
        self.throughput.iter().find(|r| r.name == name)
    }

    /// Records/s of kafka-producer-perf-test tuned for throughput: the
    /// broker's real ingest limit here.
    pub fn tuned_limit(&self) -> Option<f64> {
        self.row(RAW_PRODUCE_TUNED).map(|r| r.events_per_second)
    }

    /// `events_per_second` as a share of the raw produce limit.
    pub fn ratio(&self, events_per_second: f64) -> Option<f64> {
        share(events_per_second, self.raw_limit())
    }

    /// `events_per_second` as a share of the tuned produce limit.
    pub fn tuned_ratio(&self, events_per_second: f64) -> Option<f64> {
        share(events_per_second, self.tuned_limit())
    }

    /// The targets, for the rows this run has.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let mut ratio_target = |row: &str, at_least: f64, label: &str| {
            if let Some(ratio) = self.row(row).and_then(|r| self.ratio(r.events_per_second)) {
                targets.push(Target {
                    what: format!("{label} >= {at_least} x {RAW_PRODUCE}"),
                    measured: format!("{ratio:.2} x"),
                    met: ratio >= at_least,
                });
            }
        };
        ratio_target(PRODUCE, 0.9, "orderflow produce");
        if let Some(ratio) = self
            .row(PIPELINE_EOS)
            .and_then(|r| self.tuned_ratio(r.events_per_second))
        {
            targets.push(Target {
                what: format!("pipeline, exactly-once, every hop, >= 0.2 x {RAW_PRODUCE_TUNED}"),
                measured: format!("{ratio:.2} x"),
                met: ratio >= 0.2,
            });
        }
        for run in &self.latency {
            let Some(bound) = run.p99_bound_ms else {
                continue;
            };
            targets.push(Target {
                what: format!(
                    "p99 latency at {:.0}/s, {}, <= commit interval + 20 ms = {bound:.0} ms",
                    run.rate, run.name
                ),
                measured: format!("{:.1} ms", run.latency.p99_ms),
                met: run.latency.samples > 0 && run.latency.p99_ms <= bound,
            });
        }
        for row in &self.throughput {
            for (service, bytes) in &row.peak_rss {
                if service == "analytics" {
                    let mib = *bytes as f64 / MIB;
                    targets.push(Target {
                        what: format!(
                            "analytics peak RSS < 100 MB after {} events ({})",
                            row.events, row.name
                        ),
                        measured: format!("{mib:.1} MiB"),
                        met: (*bytes as f64) < 100.0 * 1e6,
                    });
                }
            }
        }
        targets
    }

    /// The whole report, as Markdown: BENCHMARKS.md and the terminal alike.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let _ = writeln!(out, "# orderflow benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `orderflow bench` (see the README's Performance section). \
             Every figure below comes from one run on one broker; throughput is \
             also given as a ratio to what Kafka's own kafka-producer-perf-test \
             reached on that broker in that run.\n"
        );
        let _ = writeln!(out, "## Machine and settings\n");
        let _ = writeln!(out, "- machine: {}", s.machine);
        let _ = writeln!(out, "- brokers: {}", s.brokers);
        let _ = writeln!(out, "- librdkafka: {}", s.librdkafka);
        let _ = writeln!(
            out,
            "- {} events per throughput run, {} partitions per topic, records of {} bytes \
             (the mean OrderPlaced JSON)",
            group_digits(s.count),
            s.partitions,
            s.record_bytes
        );
        for setting in &s.settings {
            let _ = writeln!(out, "- {setting}");
        }

        let _ = writeln!(out, "\n## Throughput\n");
        let _ = writeln!(
            out,
            "| run | events | events/s | x raw produce | x tuned produce | peak RSS |\n\
             |---|---:|---:|---:|---:|---|"
        );
        for row in &self.throughput {
            let ratio = self
                .ratio(row.events_per_second)
                .map_or("-".into(), |r| format!("{r:.2}"));
            let tuned = self
                .tuned_ratio(row.events_per_second)
                .map_or("-".into(), |r| format!("{r:.2}"));
            let rss = if row.peak_rss.is_empty() {
                "-".to_owned()
            } else {
                row.peak_rss
                    .iter()
                    .map(|(service, bytes)| format!("{service} {:.1} MiB", *bytes as f64 / MIB))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {ratio} | {tuned} | {rss} |",
                row.name,
                group_digits(row.events),
                group_digits(row.events_per_second.round() as u64),
            );
        }

        if !self.latency.is_empty() {
            let _ = writeln!(out, "\n## End-to-end latency\n");
            let _ = writeln!(
                out,
                "orderflow: from an order's creation (its record timestamp, carried onto the \
                 inventory's output) to analytics processing its stock decision, with producer, \
                 inventory and analytics running at once. For reference, {RAW_PRODUCE} at the \
                 same rate: from sending a record to its acknowledgement, the broker's own \
                 latency on this machine. `measured`: the orders created after both services \
                 had taken over their partitions; the ones before waited for them to start, \
                 which is lag, not latency. The API's rows: with inventory behind it, from the \
                 instant an order was due on the client's fixed schedule to its 202, and to its \
                 decision seen with the long poll (GET /orders/{{id}}?wait_ms=30000); under wrk, \
                 from each request to its answer, as wrk measures it, at the rate the API \
                 sustained.\n"
            );
            let _ = writeln!(
                out,
                "| run | rate/s | events | measured | p50 ms | p99 ms | p99.9 ms | max ms |\n\
                 |---|---:|---:|---:|---:|---:|---:|---:|"
            );
            for run in &self.latency {
                let l = &run.latency;
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    run.name,
                    group_digits(run.rate.round() as u64),
                    group_digits(run.events),
                    group_digits(l.samples),
                    l.p50_ms,
                    l.p99_ms,
                    l.p999_ms,
                    l.max_ms
                );
            }
        }

        if !self.bytes.is_empty() {
            let _ = writeln!(out, "\n## Bytes through the broker per order\n");
            let _ = writeln!(
                out,
                "What each topic of the end-to-end run holds on the broker (kafka-log-dirs: \
                 record batches with their headers, transaction markers included, one replica), \
                 divided by the orders that went through.\n"
            );
            let _ = writeln!(out, "| topic | bytes | bytes per order |\n|---|---:|---:|");
            let mut total = 0;
            for t in &self.bytes {
                total += t.bytes;
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} |",
                    t.topic,
                    group_digits(t.bytes),
                    t.bytes as f64 / t.orders.max(1) as f64
                );
            }
            let orders = self.bytes.first().map_or(1, |t| t.orders.max(1));
            let _ = writeln!(
                out,
                "| all | {} | {:.1} |",
                group_digits(total),
                total as f64 / orders as f64
            );
        }

        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(out, "\n## Targets\n");
            let _ = writeln!(out, "| target | measured | met |\n|---|---:|---|");
            for t in &targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    t.what,
                    t.measured,
                    if t.met { "yes" } else { "**no**" }
                );
            }
        }
        out
    }
}

fn share(events_per_second: f64, limit: Option<f64>) -> Option<f64> {
    limit
        .filter(|limit| *limit > 0.0)
        .map(|limit| events_per_second / limit)
}

/// 1234567 -> "1,234,567".
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> BenchResults {
        let row = |name: &str, eps: f64, rss: Vec<(String, u64)>| Throughput {
            name: name.into(),
            events: 1_000_000,
            events_per_second: eps,
            peak_rss: rss,
        };
        BenchResults {
            setup: Setup {
                machine: "2 cores, 24 GiB".into(),
                brokers: "127.0.0.1:9092".into(),
                librdkafka: "2.12.1".into(),
                count: 1_000_000,
                record_bytes: 250,
                partitions: 3,
                settings: vec!["commit interval 100 ms".into()],
            },
            throughput: vec![
                row(RAW_PRODUCE, 100_000.0, vec![]),
                row(RAW_PRODUCE_TUNED, 200_000.0, vec![]),
                row(PRODUCE, 95_000.0, vec![("produce".into(), 30 << 20)]),
                row(
                    PIPELINE_EOS,
                    25_000.0,
                    vec![("analytics".into(), 120_000_000)],
                ),
            ],
            latency: vec![LatencyRun {
                name: "exactly-once".into(),
                rate: 20_000.0,
                events: 200_000,
                latency: LatencySummary {
                    samples: 200_000,
                    p50_ms: 60.0,
                    p99_ms: 110.0,
                    p999_ms: 130.0,
                    max_ms: 150.0,
                },
                p99_bound_ms: Some(120.0),
            }],
            bytes: vec![
                TopicBytes {
                    topic: "orders".into(),
                    bytes: 300_000_000,
                    orders: 1_000_000,
                },
                TopicBytes {
                    topic: "g-stock-repartition".into(),
                    bytes: 150_000_000,
                    orders: 1_000_000,
                },
            ],
        }
    }

    #[test]
    fn ratios_are_against_the_raw_produce_limit() {
        let r = results();
        assert_eq!(r.raw_limit(), Some(100_000.0));
        assert_eq!(r.ratio(25_000.0), Some(0.25));
        assert_eq!(r.tuned_ratio(25_000.0), Some(0.125));
        let no_raw = BenchResults {
            throughput: vec![],
            ..results()
        };
        assert_eq!(no_raw.ratio(1.0), None);
    }

    #[test]
    fn targets_are_checked() {
        let targets = results().targets();
        let met: Vec<(bool, &str)> = targets
            .iter()
            .map(|t| (t.met, t.measured.as_str()))
            .collect();
        assert_eq!(
            met,
            vec![
                (true, "0.95 x"),
                (false, "0.12 x"),
                (true, "110.0 ms"),
                (false, "114.4 MiB"),
            ]
        );
    }

    #[test]
    fn markdown_has_every_row() {
        let md = results().to_markdown();
        assert!(md.contains("| kafka-producer-perf-test | 1,000,000 | 100,000 | 1.00 | 0.50 | - |"));
        assert!(md.contains(
            "| orderflow produce | 1,000,000 | 95,000 | 0.95 | 0.47 | produce 30.0 MiB |"
        ));
        assert!(md.contains("| g-stock-repartition | 150,000,000 | 150.0 |"));
        assert!(md.contains("| all | 450,000,000 | 450.0 |"));
        assert!(md.contains(
            "| exactly-once | 20,000 | 200,000 | 200,000 | 60.0 | 110.0 | 130.0 | 150.0 |"
        ));
        assert!(md.contains("- machine: 2 cores, 24 GiB"));
        assert!(md.contains("| **no** |"));
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
