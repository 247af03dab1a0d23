//! `orderflow bench`: how close to the broker's limit orderflow runs, measured
//! side by side with Kafka's own perf tools, on the same broker, in one run.
//!
//! In order, each on fresh topics named `orderflow-bench.<stage>.*` (the
//! prefix is `--topic-prefix`), with records the size of our OrderPlaced JSON:
//! 1. latency at a fixed rate: kafka-producer-perf-test's send-to-ack for
//!    reference, then the pipeline at that rate (inventory and analytics
//!    running, the producer publishing), at-least-once and exactly-once, from
//!    an order's creation to analytics processing it;
//! 2. kafka-producer-perf-test (with its defaults, then tuned for
//!    throughput: batch.size=1048576, linger.ms=10) and
//!    kafka-consumer-perf-test at full speed: the raw limits;
//! 3. `orderflow produce` alone, then `inventory` alone over the orders it
//!    wrote, then `analytics` alone over the decisions (each to the end of its
//!    input, `--exit-at-end`; rates from the service's busy time);
//! 4. the pipeline end to end: the producer publishing `count` orders at full
//!    speed, timed until analytics has committed the last decision, and the
//!    bytes each of its topics (internal ones included) holds per order;
//! 5. the HTTP API in front of inventory: orders posted at a fixed rate
//!    (`api_load`), each followed with the long poll, for the latency from
//!    POST to the 202 and to the decision seen in GET; then wrk posting as
//!    fast as the API accepts (`wrk`), for orders accepted per second;
//! 6. inventory's and analytics' peak memory after 10,000 events (and
//!    `--memory-count`): their state must not grow with the orders seen;
//!    the API's too, once its views hold that many orders and decisions.
//!
//! Stages 3 and 6 end with the API started over what the others wrote, and
//! timed until it is ready (its views caught up).
//!
//! Every orderflow service runs as its own process (`children`) and reports
//! its events, busy time, latency and peak memory through `--stats-file`.
//! Counts are checked against what was produced: a run that lost or
//! duplicated events is an error, not a figure.

mod api_load;
mod children;
pub mod perf_tools;
pub mod results;
mod wrk;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::generator::{GeneratorConfig, OrderGenerator};
use crate::engine::{dlq_topic, Guarantee};
use crate::error::{Error, Result};
use crate::kafka::admin::{Admin, BROKER_DEFAULT_REPLICATION};
use crate::ops::{lag, local_kafka, topics};
use crate::services::analytics;
use crate::services::api;
use crate::services::inventory;
use crate::services::stats::RunStats;
use children::Service;
use perf_tools::PerfTools;
use results::{BenchResults, LatencyRun, Setup, Throughput, TopicBytes};

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Events per throughput run.
    pub count: u64,
    /// Orders per second in the latency runs.
    pub rate: f64,
    /// Orders in each latency run (at most `count`).
    pub latency_count: u64,
    /// Events for a second memory check of analytics, beside 10,000 and
    /// `count` (0: none).
    pub memory_count: u64,
    pub partitions: i32,
    /// Orders per second in the API's latency run.
    pub api_rate: f64,
    /// Orders in the API's latency run.
    pub api_count: u64,
    /// How long wrk posts orders to the API.
    pub api_duration: Duration,
    /// The services' commit interval (one transaction per interval).
    pub commit_interval: Duration,
    /// Where the report goes (BENCHMARKS.md); None: only printed.
    pub out: Option<PathBuf>,
    /// Where the services' logs and stats files go.
    pub work_dir: PathBuf,
    /// Names every topic and group of the bench: `<prefix>.<stage>.*`.
    pub prefix: String,
}

/// Prefix of every topic and group the bench makes, unless told otherwise.
pub const DEFAULT_PREFIX: &str = "orderflow-bench";
/// How often progress is checked: each check asks the group coordinator
/// for two groups' offsets, a load on the same two cores being measured.
const POLL: Duration = Duration::from_millis(200);
/// A stage that makes no progress for this long has failed.
const STALL_LIMIT: Duration = Duration::from_secs(120);

pub async fn run(
    settings: &KafkaSettings,
    options: &BenchOptions,
    shutdown: &CancellationToken,
) -> Result<BenchResults> {
    let script = local_kafka::script();
    if !script.exists() {
        return Err(Error::Config(format!(
            "the bench runs Kafka's perf tools through {}, which is not there",
            script.display()
        )));
    }
    std::fs::create_dir_all(&options.work_dir).map_err(|cause| Error::Io {
        action: "creating",
        path: options.work_dir.clone(),
        cause,
    })?;
    let tools = PerfTools {
        script,
        brokers: settings.brokers.clone(),
        client_config: write_client_config(settings, &options.work_dir)?,
    };
    let bench = Bench {
        settings,
        options,
        admin: Admin::connect(settings)?,
        shutdown,
    };
    bench.clean().await?;
    let generator = GeneratorConfig::default();
    let record_bytes = mean_record_bytes(&generator);
    let count = options.count;
    let perf_topic = format!("{}.perf", options.prefix);
    let reference_topic = format!("{}.perf-latency", options.prefix);
    bench
        .create_topics(&[&perf_topic, &reference_topic])
        .await?;

    // Latency first, on a quiet broker: the throughput runs write gigabytes
    // that the broker deletes a minute later and the kernel writes back
    // meanwhile, which showed as second-long stalls in runs after them.
    let latency_count = options.latency_count.min(count).max(1);
    println!(
        "== latency, {}: {latency_count} records at {:.0}/s",
        results::RAW_PRODUCE,
        options.rate
    );
    let reference = tools
        .producer_perf_test(
            &reference_topic,
            latency_count,
            record_bytes,
            Some(options.rate),
            &[],
        )
        .await?;
    let mut latency = vec![LatencyRun {
        name: format!("{} (send to ack)", results::RAW_PRODUCE),
        rate: options.rate,
        events: reference.records,
        latency: reference.latency,
        p99_bound_ms: None,
    }];
    for (guarantee, label) in [
        (Guarantee::AtLeastOnce, "at-least-once"),
        (Guarantee::ExactlyOnce, "exactly-once"),
    ] {
        println!(
            "== latency, {label}: {latency_count} orders at {:.0}/s",
            options.rate
        );
        let stage = bench.stage(&format!("latency-{label}"));
        let run = bench
            .pipeline(&stage, guarantee, latency_count, Some(options.rate))
            .await?;
        latency.push(LatencyRun {
            name: format!("orderflow, {label}"),
            rate: options.rate,
            events: latency_count,
            latency: run.analytics.latency.unwrap_or_default(),
            p99_bound_ms: Some(options.commit_interval.as_secs_f64() * 1e3 + 20.0),
        });
        bench.drop_stage(&stage).await?;
    }

    println!("== Kafka's perf tools: {count} records of {record_bytes} bytes");
    let mut throughput = Vec::new();
    let produced = tools
        .producer_perf_test(&perf_topic, count, record_bytes, None, &[])
        .await?;
    throughput.push(row(
        results::RAW_PRODUCE,
        produced.records,
        produced.records_per_second,
    ));
    let tuned_topic = format!("{}.perf-tuned", options.prefix);
    bench.create_topics(&[&tuned_topic]).await?;
    let tuned = tools
        .producer_perf_test(
            &tuned_topic,
            count,
            record_bytes,
            None,
            &results::TUNED_PROPS,
        )
        .await?;
    throughput.push(row(
        results::RAW_PRODUCE_TUNED,
        tuned.records,
        tuned.records_per_second,
    ));
    let consumed = tools.consumer_perf_test(&perf_topic, count).await?;
    throughput.push(row(
        results::RAW_CONSUME,
        consumed.messages,
        consumed.messages_per_second,
    ));
    bench.check_stop()?;

    println!("== orderflow's services one at a time, each from a full topic");
    let alone = bench.one_at_a_time("alone", count).await?;
    throughput.push(measured(results::PRODUCE, &alone.produce));
    throughput.push(measured(
        "orderflow inventory (exactly-once)",
        &alone.inventory,
    ));
    throughput.push(measured(results::ANALYTICS_EOS, &alone.analytics));
    throughput.push(measured(results::API_VIEWS, &alone.api));
    bench.check_stop()?;

    println!("== the pipeline end to end: {count} orders at full speed");
    let stage = bench.stage("pipeline");
    let run = bench
        .pipeline(&stage, Guarantee::ExactlyOnce, count, None)
        .await?;
    let mut e2e = row(
        results::PIPELINE_EOS,
        count,
        count as f64 / run.elapsed.as_secs_f64(),
    );
    e2e.peak_rss = run.peak_rss();
    throughput.push(e2e);
    let bytes = bench.bytes_per_order(&tools, &stage, count).await?;
    bench.drop_stage(&stage).await?;
    bench.check_stop()?;

    println!(
        "== the HTTP API: {} orders at {:.0}/s, then wrk for {} s",
        options.api_count,
        options.api_rate,
        options.api_duration.as_secs()
    );
    let run = bench.api().await?;
    for (what, summary) in [
        ("POST /orders to 202", run.latency.accepted),
        ("POST /orders to the decision in GET", run.latency.decided),
    ] {
        latency.push(LatencyRun {
            name: format!("orderflow api, {what}"),
            rate: options.api_rate,
            events: options.api_count,
            latency: summary,
            p99_bound_ms: None,
        });
    }
    latency.push(LatencyRun {
        name: format!("orderflow api under wrk ({WRK_CONNECTIONS} connections), POST to 202"),
        rate: run.accepted.orders as f64 / run.accepted.seconds,
        events: run.accepted.orders,
        latency: run.accepted.latency,
        p99_bound_ms: None,
    });
    throughput.push(Throughput {
        peak_rss: vec![("api".into(), run.api.peak_rss_bytes.unwrap_or(0))],
        ..row(
            &format!("orderflow api, POST /orders (wrk, {WRK_CONNECTIONS} connections)"),
            run.accepted.orders,
            run.accepted.orders as f64 / run.accepted.seconds,
        )
    });

    // Analytics' memory must not grow with the events it has seen.
    for events in [MEMORY_SMALL, options.memory_count] {
        if events == 0 || events == count {
            continue;
        }
        println!("== inventory's and analytics' memory after {events} events");
        let run = bench.one_at_a_time("memory", events).await?;
        throughput.push(measured(
            &format!(
                "orderflow inventory (exactly-once) after {} events",
                results::group_digits(events)
            ),
            &run.inventory,
        ));
        throughput.push(measured(
            &format!(
                "{} after {} events",
                results::ANALYTICS_EOS,
                results::group_digits(events)
            ),
            &run.analytics,
        ));
        throughput.push(measured(
            &format!(
                "{} after {} events",
                results::API_VIEWS,
                results::group_digits(events)
            ),
            &run.api,
        ));
    }
    bench.clean().await?;

    Ok(BenchResults {
        setup: Setup {
            machine: machine(),
            brokers: settings.brokers.clone(),
            librdkafka: rdkafka::util::get_rdkafka_version().1,
            count,
            record_bytes,
            partitions: options.partitions,
            settings: bench.settings_described(),
        },
        throughput,
        latency,
        bytes,
    })
}

/// The topics and groups of one stage.
struct Stage {
    name: String,
}

impl Stage {
    fn new(prefix: &str, name: &str) -> Self {
        Self {
            name: format!("{prefix}.{name}"),
        }
    }

    fn orders(&self) -> String {
        format!("{}.orders", self.name)
    }

    fn inventory(&self) -> String {
        format!("{}.inventory", self.name)
    }

    fn metrics(&self) -> String {
        format!("{}.metrics", self.name)
    }

    fn inventory_group(&self) -> String {
        format!("{}.inventory-group", self.name)
    }

    fn analytics_group(&self) -> String {
        format!("{}.analytics-group", self.name)
    }

    fn api_group(&self) -> String {
        format!("{}.api-group", self.name)
    }

    fn topics(&self) -> Vec<String> {
        vec![self.orders(), self.inventory(), self.metrics()]
    }

    fn produce_args(&self, count: u64, rate: Option<f64>) -> Vec<String> {
        let mut args = vec![
            "produce".into(),
            "--orders-topic".into(),
            self.orders(),
            "--count".into(),
            count.to_string(),
        ];
        if let Some(rate) = rate {
            args.extend(["--rate".into(), rate.to_string()]);
        }
        args
    }
}

/// The small end of analytics' memory check: 10,000 events.
const MEMORY_SMALL: u64 = 10_000;

/// Each service's stats from running one after the other; the API's
/// `events` are the orders its views caught up with, over the time it took.
struct OneAtATime {
    produce: RunStats,
    inventory: RunStats,
    analytics: RunStats,
    api: RunStats,
}

/// Connections wrk posts orders over: as many clients as the API's tests
/// have.
const WRK_CONNECTIONS: u32 = 50;

/// The API stage's measurements.
struct ApiRun {
    latency: api_load::ApiLatency,
    accepted: wrk::Accepted,
    /// The API's own stats: the orders it placed, its peak memory.
    api: RunStats,
}

/// One pipeline run's measurements.
struct PipelineRun {
    /// From starting the producer to analytics having committed every event.
    elapsed: Duration,
    produce: RunStats,
    inventory: RunStats,
    analytics: RunStats,
}

impl PipelineRun {
    fn peak_rss(&self) -> Vec<(String, u64)> {
        [&self.produce, &self.inventory, &self.analytics]
            .into_iter()
            .filter_map(|s| Some((s.service.clone(), s.peak_rss_bytes?)))
            .collect()
    }
}

struct Bench<'a> {
    settings: &'a KafkaSettings,
    options: &'a BenchOptions,
    admin: Admin,
    shutdown: &'a CancellationToken,
}

impl Bench<'_> {
    fn stage(&self, name: &str) -> Stage {
        Stage::new(&self.options.prefix, name)
    }

    fn check_stop(&self) -> Result<()> {
        if self.shutdown.is_cancelled() {
            Err(Error::Stopped("the bench".into()))
        } else {
            Ok(())
        }
    }

    async fn create_topics<S: AsRef<str>>(&self, names: &[S]) -> Result<()> {
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        topics::ensure(
            &self.admin,
            &names,
            self.options.partitions,
            BROKER_DEFAULT_REPLICATION,
        )
        .await?;
        Ok(())
    }

    /// Deletes what earlier runs left: every `<prefix>.*` topic.
    async fn clean(&self) -> Result<()> {
        let ours: Vec<String> = self
            .admin
            .topics()?
            .into_iter()
            .filter(|t| t.starts_with(&format!("{}.", self.options.prefix)))
            .collect();
        let names: Vec<&str> = ours.iter().map(String::as_str).collect();
        self.admin.delete_topics(&names).await
    }

    /// Deletes a stage's topics (a million records each) and groups.
    async fn drop_stage(&self, stage: &Stage) -> Result<()> {
        let (inventory, analytics) = (stage.inventory_group(), stage.analytics_group());
        let mut names = stage.topics();
        names.extend([dlq_topic(&stage.orders()), dlq_topic(&stage.inventory())]);
        names.extend(inventory::internal_topics(&inventory));
        names.extend(analytics::internal_topics(&analytics));
        names.extend(api::internal_topics(&stage.api_group()));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        self.admin.delete_topics(&names).await?;
        let mut groups = vec![inventory.clone(), analytics.clone()];
        groups.push(api::keys_group(&stage.api_group()));
        groups.push(analytics::merge_group(&analytics));
        groups.extend(inventory::stage_groups(&inventory));
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        self.admin.delete_groups(&groups).await
    }

    /// What each topic of `stage` holds on the broker, per order, in the
    /// order orders flow through them; internal topics named after their
    /// group without the stage's prefix.
    async fn bytes_per_order(
        &self,
        tools: &PerfTools,
        stage: &Stage,
        orders: u64,
    ) -> Result<Vec<TopicBytes>> {
        let inventory = inventory::internal_topics(&stage.inventory_group());
        let analytics = analytics::internal_topics(&stage.analytics_group());
        let mut topics = vec![stage.orders()];
        topics.extend(inventory);
        topics.push(stage.inventory());
        topics.extend(analytics);
        topics.push(stage.metrics());
        let sizes = tools.topic_bytes(&topics).await?;
        let prefix = format!("{}.", stage.name);
        Ok(topics
            .iter()
            .filter_map(|topic| {
                let bytes = *sizes.get(topic)?;
                // DLQs of a clean run are empty: left out.
                (bytes > 0).then(|| TopicBytes {
                    topic: topic.strip_prefix(&prefix).unwrap_or(topic).to_owned(),
                    bytes,
                    orders,
                })
            })
            .collect())
    }

    fn expect(&self, stats: &RunStats, count: u64) -> Result<()> {
        if stats.events == count {
            Ok(())
        } else {
            Err(Error::Miscounted {
                what: format!("bench: {}", stats.service),
                expected: count,
                found: stats.events,
            })
        }
    }

    fn run_args(&self, guarantee: Guarantee, exit_at_end: bool) -> Vec<String> {
        let mut args = vec![
            "--guarantee".into(),
            match guarantee {
                Guarantee::ExactlyOnce => "exactly-once".into(),
                Guarantee::AtLeastOnce => "at-least-once".into(),
            },
            "--commit-interval-ms".into(),
            self.options.commit_interval.as_millis().to_string(),
            "--instance-id".into(),
            "bench".into(),
        ];
        if exit_at_end {
            args.push("--exit-at-end".into());
        }
        args
    }

    fn inventory_args(
        &self,
        stage: &Stage,
        guarantee: Guarantee,
        exit_at_end: bool,
    ) -> Vec<String> {
        let mut args = vec![
            "inventory".into(),
            "--orders-topic".into(),
            stage.orders(),
            "--inventory-topic".into(),
            stage.inventory(),
            "--group".into(),
            stage.inventory_group(),
        ];
        args.extend(self.run_args(guarantee, exit_at_end));
        args
    }

    fn analytics_args(
        &self,
        stage: &Stage,
        guarantee: Guarantee,
        exit_at_end: bool,
    ) -> Vec<String> {
        let report = self
            .options
            .work_dir
            .join(format!("{}.report.txt", stage.name));
        let mut args = vec![
            "analytics".into(),
            "--inventory-topic".into(),
            stage.inventory(),
            "--metrics-topic".into(),
            stage.metrics(),
            "--group".into(),
            stage.analytics_group(),
            "--report".into(),
            report.display().to_string(),
        ];
        args.extend(self.run_args(guarantee, exit_at_end));
        args
    }

    /// Runs produce, then inventory over its orders, then analytics over the
    /// decisions, each to the end of its input, on fresh topics.
    async fn one_at_a_time(&self, name: &str, count: u64) -> Result<OneAtATime> {
        let stage = self.stage(name);
        self.create_topics(&stage.topics()).await?;
        let produce = self
            .run_to_end(&stage, "produce", &stage.produce_args(count, None), count)
            .await?;
        let inventory = self
            .run_to_end(
                &stage,
                "inventory",
                &self.inventory_args(&stage, Guarantee::ExactlyOnce, true),
                count,
            )
            .await?;
        let analytics = self
            .run_to_end(
                &stage,
                "analytics",
                &self.analytics_args(&stage, Guarantee::ExactlyOnce, true),
                count,
            )
            .await?;
        let api = self.api_catching_up(&stage, count).await?;
        self.drop_stage(&stage).await?;
        Ok(OneAtATime {
            produce,
            inventory,
            analytics,
            api,
        })
    }

    /// Starts the API over a stage whose topics hold `count` orders and
    /// their decisions, and times it until it is ready; its stats then
    /// count those orders over that time, and its peak memory is what its
    /// views of them cost.
    async fn api_catching_up(&self, stage: &Stage, count: u64) -> Result<RunStats> {
        // Bounded, yet long enough for ten million orders (the views take
        // some 20,000 orders and decisions a second here).
        const SLOWEST: u64 = 2_000;
        let started = Instant::now();
        let (mut api, addr) = self.start_api(stage)?;
        self.wait_for_within(
            STALL_LIMIT + Duration::from_secs(count / SLOWEST),
            "the API to be ready",
            &mut [&mut api],
            || Ok(api_load::ready(addr)),
        )
        .await?;
        let ready_after = started.elapsed();
        let stats = api.stop().await?;
        Ok(RunStats {
            events: count,
            busy_seconds: ready_after.as_secs_f64(),
            events_per_second: count as f64 / ready_after.as_secs_f64(),
            ..stats
        })
    }

    /// Starts the API of `stage` on a free port of its own.
    fn start_api(&self, stage: &Stage) -> Result<(Service, SocketAddr)> {
        let listen = children::free_port()?;
        let args: Vec<String> = [
            "api",
            "--listen",
            &listen.to_string(),
            "--orders-topic",
            &stage.orders(),
            "--inventory-topic",
            &stage.inventory(),
            "--group",
            &stage.api_group(),
            "--inventory-group",
            &stage.inventory_group(),
            "--instance-id",
            "bench",
            // Ten million orders take gigabytes: beside the logs, deleted
            // at exit.
            "--views-dir",
            &self.options.work_dir.display().to_string(),
        ]
        .map(String::from)
        .into();
        Ok((self.start(stage, "api", &args)?, listen))
    }

    /// The API in front of inventory, on fresh topics: latency at a fixed
    /// rate, then orders accepted per second under wrk. Every order the API
    /// answered 202 must be in the orders topic, and nothing else but what
    /// was in flight when wrk stopped.
    async fn api(&self) -> Result<ApiRun> {
        let options = self.options;
        let stage = self.stage("api");
        self.create_topics(&stage.topics()).await?;
        let mut inventory = self.start(
            &stage,
            "inventory",
            &self.inventory_args(&stage, Guarantee::ExactlyOnce, false),
        )?;
        let (mut api, addr) = self.start_api(&stage)?;
        let partitions = i64::from(options.partitions);
        let inventory_metrics = inventory.metrics_addr();
        self.wait_for(
            "inventory to take over its partitions and the API to be ready",
            &mut [&mut inventory, &mut api],
            || Ok(children::taken_over(inventory_metrics, 3, partitions) && api_load::ready(addr)),
        )
        .await?;
        let latency = api_load::at_fixed_rate(addr, options.api_rate, options.api_count).await?;
        self.check_stop()?;
        let accepted = wrk::post_orders(
            addr,
            WRK_CONNECTIONS,
            options.api_duration,
            &options.work_dir,
        )
        .await?;
        let api = api.stop().await?;
        inventory.stop().await?;
        // wrk stops with up to a request per connection in flight: the API
        // may have placed those orders (`api.events`), or published them and
        // seen the client go before the acknowledgement came.
        let answered = options.api_count + accepted.orders;
        let in_topic = self.records_in(&stage.orders())?;
        let most = answered + u64::from(WRK_CONNECTIONS);
        if !(answered <= api.events && api.events <= in_topic && in_topic <= most) {
            return Err(Error::Miscounted {
                what: format!(
                    "bench: {} (its clients saw {answered} orders answered 202, the API \
                     placed {}, and wrk stopped with at most {WRK_CONNECTIONS} in flight)",
                    stage.orders(),
                    api.events
                ),
                expected: answered,
                found: in_topic,
            });
        }
        self.drop_stage(&stage).await?;
        Ok(ApiRun {
            latency,
            accepted,
            api,
        })
    }

    /// Records in `topic`, every partition's log end (a topic written
    /// without transactions: no markers among its offsets).
    fn records_in(&self, topic: &str) -> Result<u64> {
        let mut records = 0;
        for partition in self.admin.partitions(topic)? {
            let (low, high) = self.admin.watermarks(topic, partition)?;
            records += (high - low).max(0) as u64;
        }
        Ok(records)
    }

    /// Starts a service of `stage`; its log and stats files are named
    /// `<stage>.<service>` in the work directory.
    fn start(&self, stage: &Stage, service: &str, args: &[String]) -> Result<Service> {
        let name = format!("{}.{service}", stage.name);
        Service::start(self.settings, &self.options.work_dir, &name, args)
    }

    /// Runs a service that stops on its own, and checks it handled `count`
    /// events.
    async fn run_to_end(
        &self,
        stage: &Stage,
        service: &str,
        args: &[String],
        count: u64,
    ) -> Result<RunStats> {
        // Bounded, yet long enough for ten million events: a service
        // slower than SLOWEST events a second fails the bench.
        const SLOWEST: u64 = 5_000;
        let limit = children::STOP_LIMIT + Duration::from_secs(count / SLOWEST);
        let stats = self
            .start(stage, service, args)?
            .finish_within(limit)
            .await?;
        self.expect(&stats, count)?;
        Ok(stats)
    }

    /// Runs producer, inventory and analytics at once on fresh topics.
    async fn pipeline(
        &self,
        stage: &Stage,
        guarantee: Guarantee,
        count: u64,
        rate: Option<f64>,
    ) -> Result<PipelineRun> {
        self.create_topics(&stage.topics()).await?;
        let mut inventory = self.start(
            stage,
            "inventory",
            &self.inventory_args(stage, guarantee, false),
        )?;
        let mut analytics = self.start(
            stage,
            "analytics",
            &self.analytics_args(stage, guarantee, false),
        )?;
        // Both must have taken over every partition (state restored, so
        // processing) before the clock starts: orders published earlier
        // would wait for them, and have no latency.
        let partitions = i64::from(self.options.partitions);
        // Inventory reads three inputs (split, stock, orders stages);
        // analytics two (counts and merge).
        let metrics = [(inventory.metrics_addr(), 3), (analytics.metrics_addr(), 2)];
        self.wait_for(
            "the services to take over their partitions",
            &mut [&mut inventory, &mut analytics],
            || {
                Ok(metrics
                    .iter()
                    .all(|&(addr, inputs)| children::taken_over(addr, inputs, partitions)))
            },
        )
        .await?;
        let started = Instant::now();
        let produce = self
            .run_to_end(stage, "produce", &stage.produce_args(count, rate), count)
            .await?;
        // Every order is in the log now: drained means done.
        self.wait_for(
            "the pipeline to drain",
            &mut [&mut inventory, &mut analytics],
            || self.drained(stage),
        )
        .await?;
        let elapsed = started.elapsed();
        let inventory = inventory.stop().await?;
        let analytics = analytics.stop().await?;
        // At-least-once may repeat what a redone batch wrote (a rebalance, a
        // timeout on a loaded machine): at least every order, then.
        let expect = |stats: &RunStats| match guarantee {
            Guarantee::ExactlyOnce => self.expect(stats, count),
            Guarantee::AtLeastOnce if stats.events >= count => Ok(()),
            Guarantee::AtLeastOnce => self.expect(stats, count),
        };
        expect(&inventory)?;
        expect(&analytics)?;
        Ok(PipelineRun {
            elapsed,
            produce,
            inventory,
            analytics,
        })
    }

    /// Polls `done` until it holds; fails when a service exits early, when
    /// the user stops the bench, or after `STALL_LIMIT`.
    async fn wait_for(
        &self,
        what: &str,
        services: &mut [&mut Service],
        done: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        self.wait_for_within(STALL_LIMIT, what, services, done)
            .await
    }

    /// `wait_for`, failing after `within`.
    async fn wait_for_within(
        &self,
        within: Duration,
        what: &str,
        services: &mut [&mut Service],
        mut done: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let done = crate::wait::until_async(within, POLL, || {
            let answer = (|| {
                if done()? {
                    return Ok(Some(()));
                }
                self.check_stop()?;
                for service in services.iter_mut() {
                    service.check_running()?;
                }
                Ok::<_, Error>(None)
            })();
            async move { answer }
        })
        .await?;
        done.ok_or_else(|| Error::NotInTime {
            what: format!("bench: {what} did not happen"),
            within,
        })
    }

    /// Whether both groups have committed everything. Inventory is looked at
    /// first: once it is done its outputs are committed, so analytics being
    /// done afterwards means it has the last of them.
    fn drained(&self, stage: &Stage) -> Result<bool> {
        let done = |group: &str, topic: &str| -> Result<bool> {
            let lag = lag::measure(&self.admin, group, Some(topic))?;
            Ok(lag
                .partitions
                .iter()
                .all(|p| p.committed.unwrap_or(0) >= p.log_end))
        };
        for (group, topic) in crate::services::flow(
            &stage.orders(),
            &stage.inventory(),
            &stage.inventory_group(),
            &stage.analytics_group(),
        ) {
            if !done(&group, &topic)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn settings_described(&self) -> Vec<String> {
        let mut settings = vec![
            format!(
                "orderflow services: one process each, commit interval {} ms \
                 (one transaction per interval, exactly-once), their built-in client settings",
                self.options.commit_interval.as_millis()
            ),
            "Kafka's perf tools: their default client settings, and the producer \
             tuned for throughput (batch.size=1048576, linger.ms=10)"
                .into(),
            "replication factor: the cluster's default".into(),
        ];
        if !self.settings.overrides.is_empty() {
            let overrides: Vec<String> = self
                .settings
                .overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            settings.push(format!(
                "librdkafka overrides (-X): {}",
                overrides.join(", ")
            ));
        }
        settings
    }
}

fn row(name: &str, events: u64, events_per_second: f64) -> Throughput {
    Throughput {
        name: name.into(),
        events,
        events_per_second,
        peak_rss: Vec::new(),
    }
}

/// A row from a service's own stats: its events over its busy time.
fn measured(name: &str, stats: &RunStats) -> Throughput {
    Throughput {
        peak_rss: stats
            .peak_rss_bytes
            .map(|b| vec![(stats.service.clone(), b)])
            .unwrap_or_default(),
        ..row(name, stats.events, stats.events_per_second)
    }
}

/// For a secure cluster, the client properties Kafka's tools log in with,
/// written to the work directory.
fn write_client_config(settings: &KafkaSettings, dir: &Path) -> Result<Option<PathBuf>> {
    if settings.security == Default::default() {
        return Ok(None);
    }
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join("client.properties");
    // It holds the password: readable by its owner only.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(settings.security.java_client_properties().as_bytes()))
        .map_err(|cause| Error::Io {
            action: "writing",
            path: path.clone(),
            cause,
        })?;
    Ok(Some(path))
}

/// The mean size of an encoded OrderPlaced from `generator`.
fn mean_record_bytes(generator: &GeneratorConfig) -> usize {
    const SAMPLE: usize = 1_000;
    let total: usize = OrderGenerator::new(generator.clone())
        .take(SAMPLE)
        .map(|order| order.encode().len())
        .sum();
    total / SAMPLE
}

/// Cores, memory and CPU model, from what Linux tells.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = read_field(Path::new("/proc/meminfo"), "MemTotal:")
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or("memory unknown".into(), |kib| {
            format!("{:.0} GiB", kib as f64 / (1024.0 * 1024.0))
        });
    let cpu = read_field(Path::new("/proc/cpuinfo"), "model name")
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "CPU unknown".into());
    format!("{cores} cores, {memory}, {cpu}; the broker on the same machine")
}

fn read_field(path: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    Some(line[name.len()..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_the_size_of_an_order() {
        let bytes = mean_record_bytes(&GeneratorConfig::default());
        assert!((150..400).contains(&bytes), "{bytes}");
    }

    #[test]
    fn stage_names_are_prefixed() {
        let stage = Stage::new("orderflow-bench", "alone");
        assert_eq!(stage.orders(), "orderflow-bench.alone.orders");
        assert_eq!(
            stage.produce_args(5, Some(10.0))[3..],
            ["--count", "5", "--rate", "10"]
        );
    }
}
