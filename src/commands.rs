//! The binary's subcommands, one function each: run the library with the
//! validated options (`orderflow::cli::validated`) and print what happened.
//! Everything here is output: summaries and reports to stdout, the lag table
//! redrawn on a terminal, the producer's progress bar.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use orderflow::cli::validated::{
    AnalyticsRun, ApiRun, BenchRun, DemoRun, InventoryRun, LagRun, ProduceRun, ReplayRun,
    Reporting, SchemaRun, TopicsRun,
};
use orderflow::cli::{Invocation, Run};
use orderflow::config::KafkaSettings;
use orderflow::contracts::{asyncapi, schemas};
use orderflow::domain::report::Format;
use orderflow::kafka::admin::Admin;
use orderflow::metrics::{server, Metrics};
use orderflow::ops::dashboard::{self, DashboardOptions};
use orderflow::ops::{bench, demo, lag, local_kafka, replay, topics};
use orderflow::registry;
use orderflow::services::stats::RunStats;
use orderflow::services::{analytics, api, inventory, produce};

/// Runs the invocation's subcommand until it is done or `stop` fires.
pub async fn run(invocation: Invocation, stop: &CancellationToken) -> anyhow::Result<ExitCode> {
    let settings = &invocation.settings;
    let registry = invocation.registry.as_ref();
    // The public topics each service writes, whose schemas it registers
    // (with --schema-registry) before it starts.
    let writes: Vec<(&str, &str)> = match &invocation.run {
        Run::Produce(run) => vec![(&run.options.topic, "OrderPlaced")],
        Run::Api(run) => vec![(&run.options.orders_topic, "OrderPlaced")],
        Run::Inventory(run) => vec![(&run.options.inventory_topic, "InventoryChecked")],
        Run::Analytics(run) => vec![(&run.options.metrics_topic, "WindowClosed")],
        Run::Demo(run) => vec![
            (&run.options.orders_topic, "OrderPlaced"),
            (&run.options.inventory_topic, "InventoryChecked"),
            (&run.options.metrics_topic, "WindowClosed"),
        ],
        _ => Vec::new(),
    };
    let schemas = registry::register_all(registry, &writes).await?;
    match invocation.run {
        Run::Topics(run) => topics(settings, run).await,
        Run::Produce(mut run) => {
            run.options.schemas = schemas;
            produce(settings, run, stop).await
        }
        Run::Inventory(mut run) => {
            run.options.schemas = schemas;
            inventory(settings, run, stop).await
        }
        Run::Analytics(mut run) => {
            run.options.schemas = schemas;
            analytics(settings, run, stop).await
        }
        Run::Replay(run) => replay(settings, run).await,
        Run::Lag(run) => lag(settings, run, stop).await,
        Run::Demo(mut run) => {
            run.options.schemas = schemas;
            demo(settings, run, stop).await
        }
        Run::Bench(run) => bench(settings, run, stop).await,
        Run::Dashboard(options) => dashboard(settings, options, stop).await,
        Run::Api(mut run) => {
            run.options.schemas = schemas;
            api(settings, run, stop).await
        }
        Run::Schema(run) => schema(run),
    }
}

fn schema(run: SchemaRun) -> anyhow::Result<ExitCode> {
    let document = match run {
        SchemaRun::All => schemas::json_schemas(),
        SchemaRun::One(name) => schemas::json_schema(&name).context("no such record")?,
        SchemaRun::AsyncApi => asyncapi::document(),
    };
    println!("{}", serde_json::to_string_pretty(&document)?);
    Ok(ExitCode::SUCCESS)
}

async fn topics(settings: &KafkaSettings, run: TopicsRun) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(settings)?;
    let names: Vec<&str> = run.names.iter().map(String::as_str).collect();
    for (name, created) in
        topics::ensure(&admin, &names, run.partitions, run.replication_factor).await?
    {
        let state = if created { "created" } else { "exists" };
        println!("{state}: {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Serves a service's metrics when asked to.
async fn serve_metrics(
    metrics: &std::sync::Arc<Metrics>,
    reporting: &Reporting,
) -> anyhow::Result<()> {
    if let Some(addr) = reporting.metrics_addr {
        server::serve_at(metrics, addr).await?;
    }
    Ok(())
}

async fn produce(
    settings: &KafkaSettings,
    run: ProduceRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let options = run.options;
    serve_metrics(&options.metrics, &run.reporting).await?;
    let progress = progress_bar(options.count);
    let summary = produce::run(settings, &options, &progress, stop).await?;
    progress.finish_and_clear();
    println!(
        "produced {} events to {} in {:.2} s ({:.0} events/s)",
        summary.events,
        options.topic,
        summary.elapsed.as_secs_f64(),
        summary.events_per_second()
    );
    if let Some(path) = &run.reporting.stats_file {
        RunStats::new("produce", summary.events, summary.elapsed, None).write(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn api(
    settings: &KafkaSettings,
    run: ApiRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    serve_metrics(&run.options.metrics, &run.reporting).await?;
    let summary = api::run(settings, &run.options, stop).await?;
    if let Some(path) = &run.reporting.stats_file {
        RunStats::new("api", summary.placed, summary.served, None).write(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn inventory(
    settings: &KafkaSettings,
    run: InventoryRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    serve_metrics(&run.options.metrics, &run.reporting).await?;
    let s = inventory::run(settings, &run.options, stop).await?;
    println!(
        "inventory: consumed {}, reserved {}, rejected {}, malformed {} (dead-lettered), \
         {} transactions, {} aborted",
        s.consumed, s.reserved, s.rejected, s.malformed, s.transactions, s.aborts
    );
    if let Some(path) = &run.reporting.stats_file {
        RunStats::new("inventory", s.consumed, s.busy, Some(s.latency)).write(path)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn analytics(
    settings: &KafkaSettings,
    run: AnalyticsRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    serve_metrics(&run.options.metrics, &run.reporting).await?;
    let outcome = analytics::run(settings, &run.options, stop).await?;
    if let Some(path) = &run.reporting.stats_file {
        let stats = &outcome.stats;
        RunStats::new("analytics", stats.consumed, stats.busy, Some(stats.latency)).write(path)?;
    }
    let report = outcome.report.render(run.format);
    match run.report {
        Some(path) => std::fs::write(&path, report)
            .with_context(|| format!("writing the report to {}", path.display()))?,
        None => print!("{report}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn replay(settings: &KafkaSettings, run: ReplayRun) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(settings)?;
    let plan = replay::plan(&admin, &run.group, &run.topic, run.target)?;
    print!("{}", plan.to_text());
    if let Some(path) = &run.export {
        std::fs::write(path, plan.to_csv())
            .with_context(|| format!("writing the plan to {}", path.display()))?;
        println!("plan written to {}", path.display());
    }
    if run.execute {
        replay::execute(&admin, &plan).await?;
        println!(
            "reset group {} on {} to {}",
            plan.group, plan.topic, plan.target
        );
    } else {
        println!("dry run: nothing changed (add --execute to apply)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn lag(
    settings: &KafkaSettings,
    run: LagRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    let admin = Admin::connect(settings)?;
    let mut monitor = lag::Monitor::new(settings, &run.group, run.topic.as_deref(), run.window)?;
    // Once: a window of samples a second apart, then the last.
    // Watching: a sample every SECS, each judged with those before.
    let (every, quiet_samples) = match run.watch {
        Some(every) => (every, 0),
        None => (Duration::from_secs(1), run.window - 1),
    };
    let mut screen = LagScreen::new(run.format);
    for taken in 0.. {
        let lag = monitor.sample(&admin)?;
        if taken >= quiet_samples {
            screen.show(&lag);
            if run.watch.is_none() {
                break;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn bench(
    settings: &KafkaSettings,
    run: BenchRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    ensure_local_kafka(settings, run.local_kafka)?;
    let results = bench::run(settings, &run.options, stop).await?;
    let markdown = results.to_markdown();
    println!("\n{markdown}");
    if let Some(path) = &run.options.out {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

async fn dashboard(
    settings: &KafkaSettings,
    options: DashboardOptions,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    dashboard::run(settings, &options, stop, |addr| {
        println!("dashboard at http://{addr}/ (Ctrl-C stops it)");
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(
    settings: &KafkaSettings,
    run: DemoRun,
    stop: &CancellationToken,
) -> anyhow::Result<ExitCode> {
    ensure_local_kafka(settings, run.local_kafka)?;
    let outcome = demo::run(settings, &run.options, stop).await?;
    let decided = outcome
        .placed
        .iter()
        .filter(|placed| placed.status != "pending")
        .count();
    println!(
        "demo done: {} orders, failure rate {:.2}%, replay {}, peak lag {}, final lag {}, \
         {decided} of {} orders placed over HTTP decided",
        outcome.report.total_orders,
        outcome.report.failure_rate * 100.0,
        if outcome.identical {
            "identical"
        } else {
            "DIFFERENT"
        },
        outcome.peak_lag,
        outcome.final_lag,
        outcome.placed.len(),
    );
    Ok(if outcome.identical && decided == outcome.placed.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// For the demo and the bench on a loopback address where nothing
/// listens: start the project's local Kafka first. Anything else is left to
/// their own connection check, which names the address if it fails.
fn ensure_local_kafka(settings: &KafkaSettings, allowed: bool) -> anyhow::Result<()> {
    match local_kafka::loopback_port(&settings.brokers) {
        Some(port) if allowed && !local_kafka::listening(port) => {
            Ok(local_kafka::start(&settings.brokers)?)
        }
        _ => Ok(()),
    }
}

/// Where `orderflow lag` prints its samples: JSON, a line each; text on a
/// terminal, each table in place of the last; text elsewhere, one after the
/// other.
struct LagScreen {
    format: Format,
    terminal: Option<console::Term>,
    /// Lines the last table took, to clear them on a terminal.
    shown: usize,
}

impl LagScreen {
    fn new(format: Format) -> Self {
        let term = console::Term::stdout();
        Self {
            format,
            terminal: (format == Format::Text && term.is_term()).then_some(term),
            shown: 0,
        }
    }

    fn show(&mut self, lag: &lag::GroupLag) {
        if self.format == Format::Json {
            println!("{}", lag.to_json());
            return;
        }
        let text = lag.to_text();
        match &self.terminal {
            Some(term) => {
                let _ = term.clear_last_lines(self.shown);
                self.shown = text.lines().count();
            }
            None if self.shown > 0 => println!(),
            None => self.shown = 1,
        }
        print!("{text}");
    }
}

/// A progress bar on a terminal; a hidden one otherwise (pipes, CI, tests).
fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} events  {elapsed} elapsed, eta {eta}",
        )
        .expect("a valid template"),
    );
    bar
}
