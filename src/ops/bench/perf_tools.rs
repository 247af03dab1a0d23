//! Kafka's own perf tools, kafka-producer-perf-test and
//! kafka-consumer-perf-test, run through `scripts/kafka` (the same jars as the
//! broker), and the figures read from what they print. They measure the raw
//! limit of the broker on this machine, against which orderflow is judged.
//! kafka-log-dirs tells how many bytes each topic holds on the broker.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::domain::latency::LatencySummary;
use crate::error::{Error, Result};

/// What kafka-producer-perf-test printed last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProducerPerf {
    pub records: u64,
    pub records_per_second: f64,
    /// Send to acknowledgement.
    pub latency: LatencySummary,
}

/// What kafka-consumer-perf-test printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsumerPerf {
    pub messages: u64,
    /// fetch.nMsg.sec: the rate while fetching, without the group join.
    pub messages_per_second: f64,
}

/// Kafka's tools, pointed at one cluster.
#[derive(Debug, Clone)]
pub struct PerfTools {
    /// `scripts/kafka`, which runs them from the broker's jars.
    pub script: PathBuf,
    pub brokers: String,
    /// Client properties for a secure cluster (SASL, TLS), if it is one.
    pub client_config: Option<PathBuf>,
}

impl PerfTools {
    /// Publishes `count` records of `record_bytes` to `topic`, at `rate` per
    /// second or as fast as the tool can, with its default producer settings
    /// (acks=all, idempotent) and `props` beside them.
    pub async fn producer_perf_test(
        &self,
        topic: &str,
        count: u64,
        record_bytes: usize,
        rate: Option<f64>,
        props: &[&str],
    ) -> Result<ProducerPerf> {
        let mut args = vec![
            "--topic".to_owned(),
            topic.to_owned(),
            "--num-records".into(),
            count.to_string(),
            "--record-size".into(),
            record_bytes.to_string(),
            "--throughput".into(),
            rate.map_or("-1".into(), |r| format!("{r:.0}")),
            "--producer-props".into(),
            format!("bootstrap.servers={}", self.brokers),
        ];
        args.extend(props.iter().map(|&p| p.to_owned()));
        self.with_config("--producer.config", &mut args);
        let output = run_tool(&self.script, "kafka-producer-perf-test", &args).await?;
        parse_producer_perf(&output).ok_or_else(|| unreadable("kafka-producer-perf-test", &output))
    }

    /// Reads `count` records from `topic`.
    pub async fn consumer_perf_test(&self, topic: &str, count: u64) -> Result<ConsumerPerf> {
        let mut args = vec![
            "--bootstrap-server".to_owned(),
            self.brokers.clone(),
            "--topic".into(),
            topic.to_owned(),
            "--messages".into(),
            count.to_string(),
            // Give up rather than hang when the records are not all there.
            "--timeout".into(),
            "60000".into(),
        ];
        self.with_config("--consumer.config", &mut args);
        let output = run_tool(&self.script, "kafka-consumer-perf-test", &args).await?;
        parse_consumer_perf(&output).ok_or_else(|| unreadable("kafka-consumer-perf-test", &output))
    }

    /// The bytes each of `topics` holds in the broker's log directories
    /// (one replica: a partition on several brokers counts once).
    pub async fn topic_bytes(&self, topics: &[String]) -> Result<BTreeMap<String, u64>> {
        let mut args = vec![
            "--bootstrap-server".to_owned(),
            self.brokers.clone(),
            "--describe".into(),
            "--topic-list".into(),
            topics.join(","),
        ];
        self.with_config("--command-config", &mut args);
        let output = run_tool(&self.script, "kafka-log-dirs", &args).await?;
        parse_log_dirs(&output).ok_or_else(|| unreadable("kafka-log-dirs", &output))
    }

    fn with_config(&self, flag: &str, args: &mut Vec<String>) {
        if let Some(config) = &self.client_config {
            args.extend([flag.to_owned(), config.display().to_string()]);
        }
    }
}

async fn run_tool(script: &Path, tool: &str, args: &[String]) -> Result<String> {
    let output = tokio::process::Command::new(script)
        .arg(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|cause| Error::Io {
            action: "running",
            path: script.to_owned(),
            cause,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(Error::Tool {
            tool: tool.to_owned(),
            detail: format!(
                "({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    Ok(stdout)
}

fn unreadable(tool: &str, output: &str) -> Error {
    Error::Tool {
        tool: tool.to_owned(),
        detail: format!("no result in what it printed:\n{output}"),
    }
}

/// The final summary line: "N records sent, R records/sec (M MB/sec), ...".
/// (The tool also prints running totals in the same shape; the last wins.)
pub fn parse_producer_perf(output: &str) -> Option<ProducerPerf> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.contains(" records sent, "))?;
    let mut fields = line.split(", ");
    let records = fields.next()?.strip_suffix(" records sent")?.parse().ok()?;
    let rate = fields.next()?.split_whitespace().next()?.parse().ok()?;
    // "... 523.00 ms max latency, 3 ms 50th, 80 ms 95th, 93 ms 99th, 103 ms 99.9th."
    let ms = |suffix: &str| -> Option<f64> {
        let field = line
            .split(", ")
            .find(|f| f.trim_end_matches('.').ends_with(suffix))?;
        field.split_whitespace().next()?.parse().ok()
    };
    Some(ProducerPerf {
        records,
        records_per_second: rate,
        latency: LatencySummary {
            samples: records,
            p50_ms: ms(" ms 50th")?,
            p99_ms: ms(" ms 99th")?,
            p999_ms: ms(" ms 99.9th")?,
            max_ms: ms(" ms max latency")?,
        },
    })
}

/// kafka-log-dirs' JSON line: brokers → log dirs → partitions ("topic-N")
/// with their size; summed per topic, each partition once.
pub fn parse_log_dirs(output: &str) -> Option<BTreeMap<String, u64>> {
    #[derive(serde::Deserialize)]
    struct Described {
        brokers: Vec<Broker>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Broker {
        log_dirs: Vec<LogDir>,
    }
    #[derive(serde::Deserialize)]
    struct LogDir {
        partitions: Vec<Partition>,
    }
    #[derive(serde::Deserialize)]
    struct Partition {
        partition: String,
        size: u64,
    }
    let line = output.lines().find(|l| l.starts_with('{'))?;
    let described: Described = serde_json::from_str(line).ok()?;
    let mut per_partition: BTreeMap<String, u64> = BTreeMap::new();
    for partition in described
        .brokers
        .iter()
        .flat_map(|b| &b.log_dirs)
        .flat_map(|d| &d.partitions)
    {
        let size = per_partition
            .entry(partition.partition.clone())
            .or_default();
        *size = (*size).max(partition.size);
    }
    let mut per_topic = BTreeMap::new();
    for (partition, size) in per_partition {
        let (topic, _) = partition.rsplit_once('-')?;
        *per_topic.entry(topic.to_owned()).or_default() += size;
    }
    Some(per_topic)
}

/// A header line naming the columns, then one line of values.
pub fn parse_consumer_perf(output: &str) -> Option<ConsumerPerf> {
    let mut lines = output.lines().skip_while(|l| !l.starts_with("start.time"));
    let header: Vec<&str> = lines.next()?.split(", ").collect();
    let values: Vec<&str> = lines.next()?.split(", ").collect();
    let column = |name: &str| -> Option<f64> {
        let i = header.iter().position(|h| h.trim() == name)?;
        values.get(i)?.trim().parse().ok()
    };
    Some(ConsumerPerf {
        messages: column("data.consumed.in.nMsg")? as u64,
        messages_per_second: column("fetch.nMsg.sec")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_producer_summary() {
        let output = "\
186046 records sent, 37186.9 records/sec (8.87 MB/sec), 1498.4 ms avg latency, 1907.0 ms max latency.
300000 records sent, 47468.4 records/sec (11.32 MB/sec), 1482.99 ms avg latency, 1907.00 ms max latency, 1584 ms 50th, 1832 ms 95th, 1874 ms 99th, 1900 ms 99.9th.
";
        assert_eq!(
            parse_producer_perf(output),
            Some(ProducerPerf {
                records: 300_000,
                records_per_second: 47_468.4,
                latency: LatencySummary {
                    samples: 300_000,
                    p50_ms: 1584.0,
                    p99_ms: 1874.0,
                    p999_ms: 1900.0,
                    max_ms: 1907.0,
                }
            })
        );
        assert_eq!(parse_producer_perf("Exception in thread main"), None);
    }

    #[test]
    fn reads_topic_sizes_counting_each_partition_once() {
        let output = r#"Querying brokers for log directories information
Received log directory information from brokers 1,2
{"brokers":[{"broker":1,"logDirs":[{"partitions":[{"partition":"a-b-0","size":100,"offsetLag":0,"isFuture":false},{"partition":"a-b-1","size":50,"offsetLag":0,"isFuture":false}],"error":null,"logDir":"/k/1"}]},{"broker":2,"logDirs":[{"partitions":[{"partition":"a-b-0","size":100,"offsetLag":0,"isFuture":false},{"partition":"c-0","size":7,"offsetLag":0,"isFuture":false}],"error":null,"logDir":"/k/2"}]}],"version":1}
"#;
        assert_eq!(
            parse_log_dirs(output),
            Some(BTreeMap::from([
                ("a-b".to_owned(), 150),
                ("c".to_owned(), 7)
            ]))
        );
        assert_eq!(parse_log_dirs("Exception"), None);
    }

    #[test]
    fn reads_the_consumer_columns() {
        let output = "\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-11-25 15:02:00:429, 2026-11-25 15:02:02:301, 71.5256, 38.2081, 300000, 160256.4103, 527, 1345, 53.1789, 223048.3271
";
        assert_eq!(
            parse_consumer_perf(output),
            Some(ConsumerPerf {
                messages: 300_000,
                messages_per_second: 223_048.327_1
            })
        );
        assert_eq!(parse_consumer_perf("start.time, end.time\n"), None);
    }
}
