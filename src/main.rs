//! The `orderflow` binary: parses arguments, starts tracing, runs one
//! subcommand on a tokio runtime, and turns errors into a message and exit
//! status 1 (clap exits with 2 for bad flags).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;

use orderflow::cli::{Cli, Command, LogFormat};
use orderflow::config::KafkaSettings;
use orderflow::domain::report::Format;
use orderflow::kafka::admin::{Admin, BROKER_DEFAULT_REPLICATION};
use orderflow::metrics::{self, Service};
use orderflow::ops::demo::{self, DemoOptions};
use orderflow::ops::{bench, dashboard};
use orderflow::ops::{lag, local_kafka, replay, topics};
use orderflow::services::analytics::{self, AnalyticsOptions};
use orderflow::services::inventory::{self, InventoryOptions};
use orderflow::services::produce::{self, ProduceOptions};
use orderflow::services::stats::RunStats;
use orderflow::shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // librdkafka is chatty at info (connections, group joins): warn and up.
    // The demo tells its own story on stdout, so there everything logs at
    // warn, and librdkafka's retried warnings (a transaction coordinator still
    // loading on a broker that just started) only at error.
    let default_filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn,librdkafka=error",
        _ => "info,librdkafka=warn",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::new(filter),
        _ => EnvFilter::new(default_filter),
    };
    let log_format = cli.log_format;
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match log_format {
        LogFormat::Text => logs.init(),
        // One JSON object a line, for log shippers.
        LogFormat::Json => logs.json().init(),
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            match log_format {
                LogFormat::Text => eprintln!("error: {error:#}"),
                LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "failed"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.kafka.settings()?;
    let stop = shutdown::on_signals();
    match cli.command {
        Command::Topics(args) => {
            let admin = Admin::connect(&settings)?;
            let names = [
                args.topics.orders_topic.as_str(),
                args.topics.inventory_topic.as_str(),
                args.metrics.metrics_topic.as_str(),
            ];
            for (name, created) in topics::ensure(
                &admin,
                &names,
                args.partitions,
                args.replication_factor
                    .unwrap_or(BROKER_DEFAULT_REPLICATION),
            )
            .await?
            {
                let state = if created { "created" } else { "exists" };
                println!("{state}: {name}");
            }
        }
        Command::Produce(args) => {
            let options = ProduceOptions {
                topic: args.orders_topic,
                count: args.count,
                generator: args.generator.config()?,
                rate: args.rate,
                metrics: metrics::server::start(Service::Produce, args.metrics.metrics_addr)
                    .await?,
            };
            let progress = progress_bar(options.count);
            let summary = produce::run(&settings, &options, &progress, &stop).await?;
            progress.finish_and_clear();
            println!(
                "produced {} events to {} in {:.2} s ({:.0} events/s)",
                summary.events,
                options.topic,
                summary.elapsed.as_secs_f64(),
                summary.events_per_second()
            );
            if let Some(path) = &args.stats_file {
                RunStats::new("produce", summary.events, summary.elapsed, None).write(path)?;
            }
        }
        Command::Inventory(args) => {
            let options = InventoryOptions {
                orders_topic: args.topics.orders_topic,
                inventory_topic: args.topics.inventory_topic,
                group: args.group,
                stock: args.stock.config()?,
                guarantee: args.run.guarantee,
                instance_id: args.run.instance_id(),
                exit_at_end: args.run.exit_at_end,
                commit_interval: args.run.commit_interval(),
                metrics: metrics::server::start(Service::Inventory, args.run.metrics.metrics_addr)
                    .await?,
            };
            let s = inventory::run(&settings, &options, &stop).await?;
            println!(
                "inventory: consumed {}, reserved {}, rejected {}, malformed {} (dead-lettered), \
                 {} transactions, {} aborted",
                s.consumed, s.reserved, s.rejected, s.malformed, s.transactions, s.aborts
            );
            if let Some(path) = &args.run.stats_file {
                RunStats::new("inventory", s.consumed, s.busy, Some(s.latency)).write(path)?;
            }
        }
        Command::Analytics(args) => {
            let options = AnalyticsOptions {
                inventory_topic: args.inventory_topic,
                metrics_topic: args.metrics.metrics_topic,
                group: args.group,
                guarantee: args.run.guarantee,
                instance_id: args.run.instance_id(),
                exit_at_end: args.run.exit_at_end,
                throttle: Duration::from_millis(args.throttle_ms),
                commit_interval: args.run.commit_interval(),
                grace: Duration::from_millis(args.grace_ms),
                metrics: metrics::server::start(Service::Analytics, args.run.metrics.metrics_addr)
                    .await?,
            };
            let outcome = analytics::run(&settings, &options, &stop).await?;
            if let Some(path) = &args.run.stats_file {
                let stats = &outcome.stats;
                RunStats::new("analytics", stats.consumed, stats.busy, Some(stats.latency))
                    .write(path)?;
            }
            let report = outcome.report.render(args.format);
            match args.report {
                Some(path) => std::fs::write(&path, report)
                    .with_context(|| format!("writing the report to {}", path.display()))?,
                None => print!("{report}"),
            }
        }
        Command::Replay(args) => {
            let admin = Admin::connect(&settings)?;
            let plan = replay::plan(&admin, &args.group, &args.topic, args.target())?;
            print!("{}", plan.to_text());
            if let Some(path) = &args.export {
                std::fs::write(path, plan.to_csv())
                    .with_context(|| format!("writing the plan to {}", path.display()))?;
                println!("plan written to {}", path.display());
            }
            if args.execute {
                replay::execute(&admin, &plan).await?;
                println!(
                    "reset group {} on {} to {}",
                    plan.group, plan.topic, plan.target
                );
            } else {
                println!("dry run: nothing changed (add --execute to apply)");
            }
        }
        Command::Lag(args) => {
            let admin = Admin::connect(&settings)?;
            let window = usize::from(args.window);
            let mut monitor =
                lag::Monitor::new(&settings, &args.group, args.topic.as_deref(), window)?;
            // Once: a window of samples a second apart, then the last.
            // Watching: a sample every SECS, each judged with those before.
            let (every, quiet_samples) = match args.watch {
                Some(every) => (Duration::from_secs(every.max(1)), 0),
                None => (Duration::from_secs(1), window - 1),
            };
            let mut screen = LagScreen::new(args.format);
            for taken in 0.. {
                let lag = monitor.sample(&admin)?;
                if taken >= quiet_samples {
                    screen.show(&lag);
                    if args.watch.is_none() {
                        break;
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        }
        Command::Bench(args) => {
            ensure_local_kafka(&settings, args.no_local_kafka)?;
            let options = args.options()?;
            let results = bench::run(&settings, &options, &stop).await?;
            let markdown = results.to_markdown();
            println!("\n{markdown}");
            if let Some(path) = &options.out {
                std::fs::write(path, &markdown)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        Command::Dashboard(args) => {
            let options = args.options();
            dashboard::run(&settings, &options, &stop, |addr| {
                println!("dashboard at http://{addr}/ (Ctrl-C stops it)");
            })
            .await?;
        }
        Command::Demo(args) => {
            ensure_local_kafka(&settings, args.no_local_kafka)?;
            let options = DemoOptions {
                orders_topic: args.topics.orders_topic,
                inventory_topic: args.topics.inventory_topic,
                metrics_topic: args.metrics.metrics_topic,
                inventory_group: args.inventory_group,
                analytics_group: args.analytics_group,
                partitions: args.partitions,
                replication_factor: args
                    .replication_factor
                    .unwrap_or(BROKER_DEFAULT_REPLICATION),
                count: args.count,
                generator: args.generator.config()?,
                stock: args.stock.config()?,
                burst: args.burst,
                burst_rate: (args.burst_rate > 0.0).then_some(args.burst_rate),
                throttle: Duration::from_millis(args.throttle_ms),
                out: args.out,
            };
            let outcome = demo::run(&settings, &options, &stop).await?;
            println!(
                "demo done: {} orders, failure rate {:.2}%, replay {}, peak lag {}, final lag {}",
                outcome.report.total_orders,
                outcome.report.failure_rate * 100.0,
                if outcome.identical {
                    "identical"
                } else {
                    "DIFFERENT"
                },
                outcome.peak_lag,
                outcome.final_lag
            );
            if !outcome.identical {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// For the demo on a loopback address where nothing listens: start the
/// project's local Kafka first. Anything else is left to the demo's own
/// connection check, which names the address if it fails.
fn ensure_local_kafka(settings: &KafkaSettings, disabled: bool) -> anyhow::Result<()> {
    match local_kafka::loopback_port(&settings.brokers) {
        Some(port) if !disabled && !local_kafka::listening(port) => {
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
