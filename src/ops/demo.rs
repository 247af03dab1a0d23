//! `orderflow demo`: the whole pipeline on fresh topics, proving the three
//! claims of the project it replaces, with the evidence saved under `--out`:
//!
//! 1. `run1.txt`/`run1.json`: N orders flow through inventory into analytics;
//! 2. `run2.txt`/`run2.json`: the analytics group is reset to the earliest
//!    offset and re-reads history into a byte-identical report;
//! 3. `lag.csv` and its chart `lag.svg`: with analytics throttled, a burst of
//!    orders builds up lag, sampled every second as it grows and drains;
//!
//! and then orderflow's front door: orders placed over HTTP through the
//! API and answered by the pipeline (`demo_api.rs`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::generator::GeneratorConfig;
use crate::domain::lines::initial_level;
use crate::domain::report::{Format, Report};
use crate::domain::stock::StockConfig;
use crate::engine::{dlq_topic, Guarantee};
use crate::error::{Error, Result};
use crate::kafka::admin::Admin;
use crate::metrics::{Metrics, Service};
use crate::ops::demo_api::{self, Placed};
use crate::ops::lag_chart::{self, LagSample};
use crate::ops::{lag, replay, topics};
use crate::services::analytics::{self, merge_group, AnalyticsOptions};
use crate::services::api::{self, ApiOptions};
use crate::services::inventory::{self, InventoryOptions, InventorySummary};
use crate::services::produce::{self, ProduceOptions};

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub orders_topic: String,
    pub inventory_topic: String,
    pub metrics_topic: String,
    pub inventory_group: String,
    pub analytics_group: String,
    pub api_group: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Orders in the main run.
    pub count: u64,
    pub generator: GeneratorConfig,
    pub stock: StockConfig,
    /// Orders in the lag run, published at `burst_rate` per second while
    /// analytics sleeps `throttle` per event: lag grows, then drains.
    pub burst: u64,
    pub burst_rate: Option<f64>,
    pub throttle: Duration,
    /// Where the evidence goes.
    pub out: PathBuf,
    /// The schema registry's framing and checks (`--schema-registry`);
    /// the default is plain JSON.
    pub schemas: crate::registry::Schemas,
}

/// What the demo found.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub report: Report,
    pub identical: bool,
    pub peak_lag: i64,
    pub final_lag: i64,
    /// The orders placed over HTTP, and their status.
    pub placed: Vec<Placed>,
}

/// How often the drain check and the lag sampler look at offsets.
const POLL: Duration = Duration::from_millis(250);
const SAMPLE: Duration = Duration::from_secs(1);
/// A stage that makes no progress for this long has failed.
const STALL_LIMIT: Duration = Duration::from_secs(120);

pub async fn run(
    settings: &KafkaSettings,
    options: &DemoOptions,
    shutdown: &CancellationToken,
) -> Result<DemoOutcome> {
    let admin = Admin::connect(settings)?;
    let out = &options.out;
    std::fs::create_dir_all(out).map_err(|source| io_error("creating", out, source))?;

    println!(
        "== 1. fresh topics {}, {} and {}",
        options.orders_topic, options.inventory_topic, options.metrics_topic
    );
    fresh_topics(&admin, options).await?;

    println!(
        "== 2. {} orders through inventory and analytics",
        options.count
    );
    let pipeline = Pipeline::start(settings, options, Duration::ZERO, shutdown);
    publish(
        settings,
        options,
        options.generator.clone(),
        options.count,
        None,
        shutdown,
    )
    .await?;
    pipeline.wait_until_drained(&admin, options).await?;
    let (summary, report) = pipeline.stop().await?;
    println!(
        "   inventory: {} reserved, {} rejected, {} malformed",
        summary.reserved, summary.rejected, summary.malformed
    );
    let run1 = save_report(out, "run1", &report)?;
    print!("{}", indent(&first_lines(&report.render(Format::Text), 7)));
    println!("   saved {}", run1.display());

    println!(
        "== 3. replay: reset group {} to earliest",
        options.analytics_group
    );
    let plan = replay::plan(
        &admin,
        &options.analytics_group,
        &options.inventory_topic,
        replay::ResetTarget::Earliest,
    )?;
    print!("{}", indent(&plan.to_text()));
    replay::execute(&admin, &plan).await?;
    let rerun = AnalyticsOptions {
        exit_at_end: true,
        ..analytics_options(options, Duration::ZERO)
    };
    let replayed = analytics::run(settings, &rerun, shutdown).await?.report;
    let run2 = save_report(out, "run2", &replayed)?;
    let identical = read(&run1)? == read(&run2)?
        && read(&run1.with_extension("txt"))? == read(&run2.with_extension("txt"))?;
    println!(
        "   saved {}: {}",
        run2.display(),
        if identical {
            "identical to run1"
        } else {
            "DIFFERENT from run1"
        }
    );

    println!(
        "== 4. lag: {} more orders at {} while analytics sleeps {} ms per event",
        options.burst,
        options
            .burst_rate
            .map_or("full speed".into(), |r| format!("{r:.0}/s")),
        options.throttle.as_millis()
    );
    let (peak_lag, final_lag) = lag_run(settings, &admin, options, shutdown).await?;
    println!(
        "   peak lag {peak_lag}, final lag {final_lag}; samples in {}, chart in {}",
        out.join("lag.csv").display(),
        out.join("lag.svg").display()
    );

    println!("== 5. the HTTP API: orders placed over HTTP, and what became of them");
    let placed = api_run(settings, &admin, options, shutdown).await?;

    Ok(DemoOutcome {
        report,
        identical,
        peak_lag,
        final_lag,
        placed,
    })
}

/// The pipeline with the API in front of it, while `demo_api::show`
/// plays a client.
async fn api_run(
    settings: &KafkaSettings,
    admin: &Admin,
    options: &DemoOptions,
    shutdown: &CancellationToken,
) -> Result<Vec<Placed>> {
    let pipeline = Pipeline::start(settings, options, Duration::ZERO, shutdown);
    let api_options = ApiOptions {
        schemas: options.schemas.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        orders_topic: options.orders_topic.clone(),
        inventory_topic: options.inventory_topic.clone(),
        group: options.api_group.clone(),
        inventory_group: options.inventory_group.clone(),
        instance_id: "demo".into(),
        key_retention: api::DEFAULT_KEY_RETENTION,
        commit_interval: Duration::from_millis(20),
        views_dir: std::env::temp_dir(),
        views_cache_bytes: 16 << 20,
        metrics: Arc::new(Metrics::new(Service::Api)),
    };
    let stop = shutdown.child_token();
    let (bound, address) = tokio::sync::oneshot::channel();
    let serving = {
        let (settings, stop) = (settings.clone(), stop.clone());
        tokio::spawn(async move {
            let tell = move |addr| {
                let _ = bound.send(addr);
            };
            api::run_telling(&settings, &api_options, &stop, tell).await
        })
    };
    let shown = match address.await {
        Ok(addr) => {
            println!("   serving at http://{addr} (README: HTTP API)");
            let sku_stock = initial_level(&options.stock, "SKU-0003");
            tokio::task::spawn_blocking(move || demo_api::show(addr, sku_stock))
                .await
                .map_err(join_error)?
        }
        // It ended before it served: its own error says why.
        Err(_) => Ok(Vec::new()),
    };
    stop.cancel();
    serving.await.map_err(join_error)??;
    let shown = shown?;
    // Analytics counts them too before the demo ends.
    pipeline.wait_until_drained(admin, options).await?;
    pipeline.stop().await?;
    Ok(shown)
}

/// Deletes the demo's topics and groups and creates the topics anew.
async fn fresh_topics(admin: &Admin, options: &DemoOptions) -> Result<()> {
    let names = [
        options.orders_topic.as_str(),
        options.inventory_topic.as_str(),
        options.metrics_topic.as_str(),
    ];
    // The services' own topics go too: stock lives in the changelog.
    let mut internal = vec![
        dlq_topic(&options.orders_topic),
        dlq_topic(&options.inventory_topic),
    ];
    internal.extend(inventory::internal_topics(&options.inventory_group));
    internal.extend(analytics::internal_topics(&options.analytics_group));
    internal.extend(api::internal_topics(&options.api_group));
    let mut all: Vec<&str> = names.to_vec();
    all.extend(internal.iter().map(String::as_str));
    admin.delete_topics(&all).await?;
    let mut groups = vec![
        options.inventory_group.clone(),
        options.analytics_group.clone(),
        merge_group(&options.analytics_group),
        api::keys_group(&options.api_group),
    ];
    groups.extend(inventory::stage_groups(&options.inventory_group));
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    admin.delete_groups(&groups).await?;
    // Deletion finishes asynchronously on the brokers; creation can briefly
    // still see the old topic.
    let started = Instant::now();
    loop {
        let created = topics::ensure(
            admin,
            &names,
            options.partitions,
            options.replication_factor,
        )
        .await?;
        if created.iter().all(|(_, now)| *now) || started.elapsed() > STALL_LIMIT {
            return Ok(());
        }
        admin.delete_topics(&names).await?;
        tokio::time::sleep(POLL).await;
    }
}

async fn publish(
    settings: &KafkaSettings,
    options: &DemoOptions,
    generator: GeneratorConfig,
    count: u64,
    rate: Option<f64>,
    shutdown: &CancellationToken,
) -> Result<()> {
    let produce = ProduceOptions {
        schemas: options.schemas.clone(),
        topic: options.orders_topic.clone(),
        count,
        generator,
        rate,
        metrics: Arc::new(Metrics::new(Service::Produce)),
    };
    let summary = produce::run(settings, &produce, &ProgressBar::hidden(), shutdown).await?;
    println!(
        "   produced {} orders in {:.2} s ({:.0} events/s)",
        summary.events,
        summary.elapsed.as_secs_f64(),
        summary.events_per_second()
    );
    Ok(())
}

/// Publishes the burst with analytics throttled, sampling its lag every
/// second until it has drained. Returns (peak lag, final lag).
async fn lag_run(
    settings: &KafkaSettings,
    admin: &Admin,
    options: &DemoOptions,
    shutdown: &CancellationToken,
) -> Result<(i64, i64)> {
    let pipeline = Pipeline::start(settings, options, options.throttle, shutdown);
    let burst = GeneratorConfig {
        seed: options.generator.seed.wrapping_add(1),
        ..options.generator.clone()
    };
    let producer = {
        let (settings, options, shutdown) = (settings.clone(), options.clone(), shutdown.clone());
        tokio::spawn(async move {
            let (count, rate) = (options.burst, options.burst_rate);
            publish(&settings, &options, burst, count, rate, &shutdown).await
        })
    };

    let csv_path = options.out.join("lag.csv");
    let mut csv =
        std::fs::File::create(&csv_path).map_err(|e| io_error("creating", &csv_path, e))?;
    let partitions = admin.partitions(&options.inventory_topic)?;
    let header: Vec<String> = partitions
        .iter()
        .map(|p| format!("partition_{p}"))
        .collect();
    writeln!(csv, "elapsed_s,{},total_lag", header.join(","))
        .map_err(|e| io_error("writing", &csv_path, e))?;

    let started = Instant::now();
    let mut peak = 0;
    let mut last_change = Instant::now();
    let mut last_total = -1;
    let mut sampler = tokio::time::interval(SAMPLE);
    sampler.tick().await; // the first tick is immediate
    let mut chart = Vec::new();
    let mut sample = || -> Result<i64> {
        let sample = lag::measure(
            admin,
            &options.analytics_group,
            Some(&options.inventory_topic),
        )?;
        let per_partition: Vec<String> = sample
            .partitions
            .iter()
            .map(|p| p.lag.unwrap_or(0).to_string())
            .collect();
        let elapsed = started.elapsed().as_secs_f64();
        writeln!(
            csv,
            "{elapsed:.1},{},{}",
            per_partition.join(","),
            sample.total_lag
        )
        .map_err(|e| io_error("writing", &csv_path, e))?;
        println!(
            "   t={elapsed:>5.1}s  lag {:>6}  [{}]",
            sample.total_lag,
            per_partition.join(" ")
        );
        chart.push(LagSample {
            elapsed_s: elapsed,
            partitions: sample
                .partitions
                .iter()
                .map(|p| p.lag.unwrap_or(0))
                .collect(),
            total: sample.total_lag,
        });
        Ok(sample.total_lag)
    };
    let final_lag = loop {
        sampler.tick().await;
        let total = sample()?;
        peak = peak.max(total);
        if total != last_total {
            last_total = total;
            last_change = Instant::now();
        }
        let produced = producer.is_finished();
        if produced && pipeline.drained(admin, options)? {
            // Drained since the sample above: the last row shows it.
            break if total == 0 { total } else { sample()? };
        }
        // stop() below reports a service's error; a stall ends the run too.
        if pipeline.ended() || last_change.elapsed() > STALL_LIMIT {
            break total;
        }
    };
    let svg_path = options.out.join("lag.svg");
    let title = format!(
        "lag of group {} on {}, analytics throttled",
        options.analytics_group, options.inventory_topic
    );
    std::fs::write(&svg_path, lag_chart::render(&title, &partitions, &chart))
        .map_err(|e| io_error("writing", &svg_path, e))?;
    producer.await.map_err(join_error)??;
    pipeline.stop().await?;
    Ok((peak, final_lag))
}

/// Inventory and analytics running as tasks until stopped.
struct Pipeline {
    stop: CancellationToken,
    inventory: JoinHandle<Result<InventorySummary>>,
    analytics: JoinHandle<Result<Report>>,
}

impl Pipeline {
    fn start(
        settings: &KafkaSettings,
        options: &DemoOptions,
        throttle: Duration,
        shutdown: &CancellationToken,
    ) -> Self {
        // A child token: the user's Ctrl-C stops the services too.
        let stop = shutdown.child_token();
        let inventory = {
            let (settings, stop) = (settings.clone(), stop.clone());
            let options = InventoryOptions {
                schemas: options.schemas.clone(),
                orders_topic: options.orders_topic.clone(),
                inventory_topic: options.inventory_topic.clone(),
                group: options.inventory_group.clone(),
                max_stock_lag: inventory::MAX_STOCK_LAG,
                stock: options.stock.clone(),
                guarantee: Guarantee::ExactlyOnce,
                instance_id: "demo".into(),
                exit_at_end: false,
                commit_interval: Duration::from_millis(100),
                // The demo tells its story on stdout; nothing scrapes it.
                metrics: Arc::new(Metrics::new(Service::Inventory)),
            };
            tokio::spawn(async move { inventory::run(&settings, &options, &stop).await })
        };
        let analytics = {
            let (settings, stop) = (settings.clone(), stop.clone());
            let options = analytics_options(options, throttle);
            tokio::spawn(async move {
                let outcome = analytics::run(&settings, &options, &stop).await?;
                Ok(outcome.report)
            })
        };
        Self {
            stop,
            inventory,
            analytics,
        }
    }

    /// True when both groups have committed everything on their input topics
    /// and inventory has answered every order.
    fn drained(&self, admin: &Admin, options: &DemoOptions) -> Result<bool> {
        let caught_up = |group: &str, topic: &str| -> Result<(bool, i64)> {
            let lag = lag::measure(admin, group, Some(topic))?;
            let done = lag
                .partitions
                .iter()
                .all(|p| p.committed.unwrap_or(0) >= p.log_end);
            Ok((done, lag.partitions.iter().map(|p| p.log_end).sum()))
        };
        let flow = crate::services::flow(
            &options.orders_topic,
            &options.inventory_topic,
            &options.inventory_group,
            &options.analytics_group,
        );
        let mut all_done = true;
        for (group, topic) in &flow {
            all_done &= caught_up(group, topic)?.0;
        }
        let orders = caught_up(&options.inventory_group, &options.orders_topic)?.1;
        let results = caught_up(&options.analytics_group, &options.inventory_topic)?.1;
        Ok(all_done && results >= orders)
    }

    /// True when a service returned on its own (an error) or a stop was asked for.
    fn ended(&self) -> bool {
        self.inventory.is_finished() || self.analytics.is_finished() || self.stop.is_cancelled()
    }

    async fn wait_until_drained(&self, admin: &Admin, options: &DemoOptions) -> Result<()> {
        // A service that ended (stop() reports why) ends the wait too.
        let done = crate::wait::until_async(STALL_LIMIT, POLL, || async {
            Ok::<_, Error>((self.ended() || self.drained(admin, options)?).then_some(()))
        })
        .await?;
        done.ok_or_else(|| Error::NotInTime {
            what: "the pipeline did not drain".into(),
            within: STALL_LIMIT,
        })
    }

    async fn stop(self) -> Result<(InventorySummary, Report)> {
        self.stop.cancel();
        let summary = self.inventory.await.map_err(join_error)??;
        let report = self.analytics.await.map_err(join_error)??;
        Ok((summary, report))
    }
}

fn analytics_options(options: &DemoOptions, throttle: Duration) -> AnalyticsOptions {
    AnalyticsOptions {
        schemas: options.schemas.clone(),
        inventory_topic: options.inventory_topic.clone(),
        metrics_topic: options.metrics_topic.clone(),
        group: options.analytics_group.clone(),
        guarantee: Guarantee::ExactlyOnce,
        instance_id: "demo".into(),
        exit_at_end: false,
        throttle,
        commit_interval: Duration::from_millis(100),
        grace: analytics::DEFAULT_GRACE,
        idle_timeout: analytics::DEFAULT_IDLE_TIMEOUT,
        metrics: Arc::new(Metrics::new(Service::Analytics)),
    }
}

/// Writes `<name>.json` and `<name>.txt`; returns the JSON path.
fn save_report(out: &Path, name: &str, report: &Report) -> Result<PathBuf> {
    for format in [Format::Json, Format::Text] {
        let ext = if format == Format::Json {
            "json"
        } else {
            "txt"
        };
        let path = out.join(format!("{name}.{ext}"));
        std::fs::write(&path, report.render(format)).map_err(|e| io_error("writing", &path, e))?;
    }
    Ok(out.join(format!("{name}.json")))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_error("reading", path, e))
}

fn io_error(action: &'static str, path: &Path, cause: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_owned(),
        cause,
    }
}

fn join_error(error: tokio::task::JoinError) -> Error {
    Error::Panicked {
        what: "a pipeline task".into(),
        cause: error.to_string(),
    }
}

fn first_lines(text: &str, n: usize) -> String {
    text.lines().take(n).map(|l| format!("{l}\n")).collect()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
