//! The raw command line: one clap struct per subcommand, as the user typed
//! it. Nothing here is checked beyond what clap checks; `validated.rs` turns
//! these into the library's options.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::config::parse_override;
use crate::config::security::{SaslMechanism, PASSWORD_ENV};
use crate::domain::report::Format;
use crate::engine::Guarantee;
use crate::ops::replay::{parse_duration, ResetTarget};
use crate::registry::Compatibility;

#[derive(Debug, Parser)]
#[command(
    name = "orderflow",
    version,
    about = "An event-driven order pipeline on Apache Kafka"
)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Logs on stderr as text, or one JSON object a line
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Connection flags every subcommand takes.
#[derive(Debug, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port...]
    #[arg(
        long,
        global = true,
        env = "KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// A librdkafka property, passed as-is (repeatable), e.g. -X linger.ms=20
    #[arg(short = 'X', global = true, value_name = "KEY=VALUE", value_parser = parse_override)]
    pub overrides: Vec<(String, String)>,
    /// Seconds to wait for the cluster before reporting it unreachable
    #[arg(long, global = true, value_name = "SECS", default_value_t = 10)]
    pub timeout: u64,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Schema registry flags every subcommand takes.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// A Confluent-compatible schema registry's API, e.g.
    /// http://127.0.0.1:8081/apis/ccompat/v7: services register the public
    /// events' schemas under <topic>-value before they start
    #[arg(long, global = true, env = "SCHEMA_REGISTRY_URL", value_name = "URL")]
    pub schema_registry: Option<String>,
    /// The registry's user name (HTTP basic auth)
    #[arg(
        long,
        global = true,
        env = "SCHEMA_REGISTRY_USERNAME",
        requires = "schema_registry_password"
    )]
    pub schema_registry_username: Option<String>,
    /// The registry's password (better from the environment)
    #[arg(
        long,
        global = true,
        env = "SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "schema_registry_username"
    )]
    pub schema_registry_password: Option<String>,
    /// The compatibility rule set on the subjects orderflow registers
    #[arg(long, global = true, value_enum, default_value_t = Compatibility::Backward)]
    pub schema_compatibility: Compatibility,
}

/// SASL and TLS flags, for secure clusters.
#[derive(Debug, Args)]
pub struct SecurityArgs {
    /// Log in with SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(long, global = true, env = "KAFKA_SASL_MECHANISM", value_enum)]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name
    #[arg(long, global = true, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password (better from the environment than on a command line
    /// other users can see)
    #[arg(long, global = true, env = PASSWORD_ENV, hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// Encrypt connections with TLS (implied by the other --tls-* flags)
    #[arg(long, global = true, env = "KAFKA_TLS")]
    pub tls: bool,
    /// PEM file of the CA that signed the brokers' certificates (default:
    /// the system's CAs)
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate, for mutual TLS
    #[arg(long, global = true, value_name = "PATH", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM file of this client's private key, for mutual TLS
    #[arg(long, global = true, value_name = "PATH", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the orders and inventory topics (existing ones are kept)
    Topics(TopicsArgs),
    /// Publish seeded OrderPlaced events
    Produce(ProduceArgs),
    /// Run the inventory service: orders in, stock decisions out
    Inventory(InventoryArgs),
    /// Run the analytics service: stock decisions in, report out
    Analytics(AnalyticsArgs),
    /// Reset a consumer group's committed offsets (dry run unless --execute)
    Replay(ReplayArgs),
    /// Show a consumer group's lag per partition
    Lag(LagArgs),
    /// Run the whole pipeline: 10,000 orders, a replay, and lag under throttling
    Demo(DemoArgs),
    /// Measure throughput, latency and memory beside Kafka's own perf tools
    Bench(BenchArgs),
    /// Serve a live web page of the pipeline: orders, failures, lag, throughput
    Dashboard(DashboardArgs),
    /// Serve the HTTP API: place orders and ask what became of them
    Api(ApiArgs),
    /// Print the JSON Schemas of the records orderflow writes and reads, or
    /// the AsyncAPI document of its topics
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Only this record's schema [default: every record's, by name]
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::contracts::schemas::names()),
          conflicts_with = "asyncapi")]
    pub name: Option<String>,
    /// Print the AsyncAPI 3.0 document of every topic instead (docs/asyncapi.json)
    #[arg(long)]
    pub asyncapi: bool,
}

/// The pipeline's topic names.
#[derive(Debug, Clone, Args)]
pub struct TopicNames {
    /// Topic of OrderPlaced events
    #[arg(long, default_value = "OrderEvents")]
    pub orders_topic: String,
    /// Topic of InventoryChecked events
    #[arg(long, default_value = "InventoryEvents")]
    pub inventory_topic: String,
}

/// Where analytics publishes closed windows.
#[derive(Debug, Clone, Args)]
pub struct MetricsTopic {
    /// Topic of closed one-minute windows (WindowClosed events, from analytics)
    #[arg(long, default_value = "OrderMetrics")]
    pub metrics_topic: String,
}

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub topics: TopicNames,
    #[command(flatten)]
    pub metrics: MetricsTopic,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replicas per partition [default: the cluster's default.replication.factor,
    /// 1 on `scripts/kafka up`, 3 on `scripts/kafka up --nodes 3`]
    #[arg(long)]
    pub replication_factor: Option<i32>,
}

/// What the generated orders look like.
#[derive(Debug, Clone, Args)]
pub struct GeneratorArgs {
    /// Seed of the order generator: the same seed gives the same orders
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event time the simulated clock starts at (RFC 3339)
    #[arg(long, default_value = "2026-01-01T00:00:00Z")]
    pub start_time: DateTime<Utc>,
    /// Mean orders per minute on the simulated clock
    #[arg(long, default_value_t = 200.0)]
    pub orders_per_minute: f64,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic of OrderPlaced events
    #[arg(long, default_value = "OrderEvents")]
    pub orders_topic: String,
    /// Number of orders to publish
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    /// Publish at most this many events per second (default: as fast as possible)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Write the run's statistics (events/s, peak memory) as JSON to this file
    #[arg(long, value_name = "PATH")]
    pub stats_file: Option<PathBuf>,
    #[command(flatten)]
    pub metrics: MetricsAddr,
}

/// Where a service serves its Prometheus metrics.
#[derive(Debug, Clone, Args)]
pub struct MetricsAddr {
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (default: not served)
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// The stock table and the simulated failures.
#[derive(Debug, Clone, Args)]
pub struct StockArgs {
    /// Share of orders the simulated stock check rejects, 0..1
    #[arg(long, default_value_t = 0.05)]
    pub failure_rate: f64,
    /// Seed of the simulated failures (which orders fail)
    #[arg(long = "failure-seed", default_value_t = 42)]
    pub failure_seed: u64,
    /// Units on hand per SKU at start
    #[arg(long, default_value_t = 5_000)]
    pub initial_stock: u64,
    /// JSON object of units on hand for particular SKUs, {"SKU-0001": 10, ...}
    #[arg(long)]
    pub stock_file: Option<PathBuf>,
}

/// How a service runs.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Stop once everything in the assigned partitions has been read (batch mode)
    #[arg(long)]
    pub exit_at_end: bool,
    /// Commit a batch (a transaction, exactly-once) this often while running
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub commit_interval_ms: u64,
    /// Delivery guarantee: transactions, or flush-then-commit
    #[arg(long, value_enum, default_value_t = Guarantee::ExactlyOnce)]
    pub guarantee: Guarantee,
    /// Names this instance among the group's instances; each running instance
    /// needs its own, and keeping it across restarts lets a restart abort what
    /// a crashed predecessor left open (default: the host name)
    #[arg(long)]
    pub instance_id: Option<String>,
    /// Write the run's statistics (events/s, latency from record timestamp to
    /// processing, peak memory) as JSON to this file on exit
    #[arg(long, value_name = "PATH")]
    pub stats_file: Option<PathBuf>,
    #[command(flatten)]
    pub metrics: MetricsAddr,
}

#[derive(Debug, Args)]
pub struct InventoryArgs {
    #[command(flatten)]
    pub topics: TopicNames,
    /// Consumer group
    #[arg(long, default_value = "inventory")]
    pub group: String,
    /// Stock requests the stock stage may have unread before the split
    /// stage stops reading orders (bounds the orders in flight)
    #[arg(long, default_value_t = 50_000, value_name = "REQUESTS",
          value_parser = clap::value_parser!(i64).range(1..))]
    pub max_stock_lag: i64,
    #[command(flatten)]
    pub stock: StockArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct AnalyticsArgs {
    /// Topic of InventoryChecked events
    #[arg(long, default_value = "InventoryEvents")]
    pub inventory_topic: String,
    #[command(flatten)]
    pub metrics: MetricsTopic,
    /// Consumer group
    #[arg(long, default_value = "analytics")]
    pub group: String,
    /// How long past its end (in event time) a window still takes events;
    /// later events are counted as late
    #[arg(long, default_value_t = crate::services::analytics::DEFAULT_GRACE.as_millis() as u64, value_name = "MS")]
    pub grace_ms: u64,
    /// How long a partition without records holds the watermark back (wall
    /// clock); when every partition is idle, windows close on the wall clock
    #[arg(long, default_value_t = crate::services::analytics::DEFAULT_IDLE_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub idle_timeout_ms: u64,
    /// Write the report to this file instead of standard output
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Report format
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Sleep this many milliseconds per event (a deliberately slow consumer)
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub throttle_ms: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["to", "by_duration", "shift_by"])))]
pub struct ReplayArgs {
    /// Consumer group whose offsets to reset
    #[arg(long)]
    pub group: String,
    /// Topic to reset the group's offsets on
    #[arg(long)]
    pub topic: String,
    /// earliest, latest, an RFC 3339 time, or offset:<n>
    #[arg(long)]
    pub to: Option<ResetTarget>,
    /// To the first message this long before now: 10m, 1h30m, 2d, or ISO 8601 (PT10M)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub by_duration: Option<std::time::Duration>,
    /// Move the committed offsets by N (negative: back), within the log
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Also write the plan as CSV ("topic",partition,offset), the format of
    /// kafka-consumer-groups --export and --from-file
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
    /// Apply the plan (without it, only show it)
    #[arg(long)]
    pub execute: bool,
}

#[derive(Debug, Args)]
pub struct LagArgs {
    /// Consumer group
    #[arg(long)]
    pub group: String,
    /// Topic (default: every topic the group has committed offsets on)
    #[arg(long)]
    pub topic: Option<String>,
    /// Refresh every SECS seconds until interrupted
    #[arg(long, value_name = "SECS")]
    pub watch: Option<u64>,
    /// Samples the status is evaluated over (Burrow's window). Without
    /// --watch, lag takes them a second apart before printing: 1 answers at
    /// once, with statuses only OK or STOP
    #[arg(long, value_name = "SAMPLES", default_value_t = 3,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub window: u16,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    #[command(flatten)]
    pub topics: TopicNames,
    #[command(flatten)]
    pub metrics: MetricsTopic,
    /// Orders in the main run
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    #[command(flatten)]
    pub generator: GeneratorArgs,
    #[command(flatten)]
    pub stock: StockArgs,
    /// Orders published while analytics is throttled, to show lag
    #[arg(long, default_value_t = 5_000)]
    pub burst: u64,
    /// Orders per second of the burst (0: as fast as possible)
    #[arg(long, default_value_t = 1000.0)]
    pub burst_rate: f64,
    /// Analytics' sleep per event during the lag run
    #[arg(long, default_value_t = 2, value_name = "MS")]
    pub throttle_ms: u64,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Replicas per partition [default: the cluster's default.replication.factor,
    /// 1 on `scripts/kafka up`, 3 on `scripts/kafka up --nodes 3`]
    #[arg(long)]
    pub replication_factor: Option<i32>,
    /// Consumer group of the inventory service
    #[arg(long, default_value = "inventory")]
    pub inventory_group: String,
    /// Consumer group of the analytics service
    #[arg(long, default_value = "analytics")]
    pub analytics_group: String,
    /// Group of the API (names its internal topics)
    #[arg(long, default_value = "api")]
    pub api_group: String,
    /// Directory for the reports and the lag CSV
    #[arg(long, default_value = "demo-output")]
    pub out: PathBuf,
    /// Never start the local Kafka (scripts/kafka up), even when none answers
    #[arg(long)]
    pub no_local_kafka: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to serve the page (loopback by default: it has no login)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub topics: TopicNames,
    #[command(flatten)]
    pub metrics: MetricsTopic,
    /// Consumer group of the inventory service
    #[arg(long, default_value = "inventory")]
    pub inventory_group: String,
    /// Consumer group of the analytics service
    #[arg(long, default_value = "analytics")]
    pub analytics_group: String,
    /// The metrics address (its --metrics-addr) of an API instance whose
    /// requests to show; once per instance
    #[arg(long, value_name = "ADDR")]
    pub api_metrics: Vec<SocketAddr>,
    /// Sample the pipeline this often
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub interval_ms: u64,
    /// Samples kept for the charts of a page opened later
    #[arg(long, default_value_t = 900)]
    pub history: usize,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Where to serve the API (loopback by default: it has no login)
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub topics: TopicNames,
    /// Names the API's internal topics and its keys stage's consumer group
    #[arg(long, default_value = "api")]
    pub group: String,
    /// Consumer group of the inventory whose stock GET /stock/{sku} answers
    /// from (its <group>-stock-changelog)
    #[arg(long, default_value = "inventory")]
    pub inventory_group: String,
    /// Names this instance among the group's instances (its transactional
    /// id); each running instance needs its own (default: the host name)
    #[arg(long)]
    pub instance_id: Option<String>,
    /// How long an Idempotency-Key is remembered after its order: 24h, 30m, P1D
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub key_retention: std::time::Duration,
    /// How long the keys stage's batches (transactions) collect requests: the
    /// least a request under an Idempotency-Key waits
    #[arg(long, default_value_t = 20, value_name = "MS")]
    pub commit_interval_ms: u64,
    /// Where the views of every order are kept on disk: a fresh file each
    /// start, deleted at exit [default: the system's temp directory]
    #[arg(long)]
    pub views_dir: Option<std::path::PathBuf>,
    /// The most memory the views' page cache takes, in MiB
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub views_cache_mb: usize,
    /// Write the run's statistics (orders placed, peak memory) as JSON to
    /// this file on exit
    #[arg(long, value_name = "PATH")]
    pub stats_file: Option<PathBuf>,
    #[command(flatten)]
    pub metrics: MetricsAddr,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events in each throughput run
    #[arg(long, default_value_t = 1_000_000)]
    pub count: u64,
    /// Orders per second in the latency runs
    #[arg(long, default_value_t = 20_000.0)]
    pub rate: f64,
    /// Orders in each latency run (at most --count)
    #[arg(long, default_value_t = 200_000)]
    pub latency_count: u64,
    /// Also measure analytics' memory after this many events (e.g. 10000000;
    /// 0: only after 10,000 and --count)
    #[arg(long, default_value_t = 0)]
    pub memory_count: u64,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Orders per second posted to the API in its latency run
    #[arg(long, default_value_t = 500.0)]
    pub api_rate: f64,
    /// Orders posted to the API in its latency run
    #[arg(long, default_value_t = 10_000)]
    pub api_count: u64,
    /// How long wrk posts orders to the API, in seconds
    #[arg(long, default_value_t = 20, value_name = "SECONDS")]
    pub api_seconds: u64,
    /// The services' commit interval (a transaction per interval)
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub commit_interval_ms: u64,
    /// Where to write the report ("-": only print it)
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Directory for the services' logs and stats files
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// Prefix of the bench's topics and groups; topics starting with it are
    /// deleted before and after the run
    #[arg(long, default_value = crate::ops::bench::DEFAULT_PREFIX)]
    pub topic_prefix: String,
    /// Never start the local Kafka (scripts/kafka up), even when none answers
    #[arg(long)]
    pub no_local_kafka: bool,
}
