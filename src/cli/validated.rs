//! Raw arguments become validated options, in this one place: the Kafka
//! settings (security included), and per subcommand the library's option
//! structs, with files read, numbers checked and `-X` keys checked against
//! the promise of what runs. An [`Invocation`] is something the binary can
//! run without checking anything again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::args::{
    AnalyticsArgs, ApiArgs, BenchArgs, Cli, Command, DashboardArgs, DemoArgs, GeneratorArgs,
    InventoryArgs, KafkaArgs, LagArgs, LogFormat, ProduceArgs, RegistryArgs, ReplayArgs, RunArgs,
    SecurityArgs, StockArgs, TopicsArgs,
};
use crate::config::overrides::{self, Promise};
use crate::config::security::{Sasl, Security, Tls, PASSWORD_ENV};
use crate::config::KafkaSettings;
use crate::domain::generator::GeneratorConfig;
use crate::domain::report::Format;
use crate::domain::stock::StockConfig;
use crate::error::{Error, Result};
use crate::kafka::admin::BROKER_DEFAULT_REPLICATION;
use crate::metrics::server::metrics_for;
use crate::metrics::{Metrics, Service};
use crate::ops::bench::BenchOptions;
use crate::ops::dashboard::{DashboardOptions, Watched, WatchedGroup};
use crate::ops::demo::DemoOptions;
use crate::ops::replay::ResetTarget;
use crate::registry::RegistryOptions;
use crate::services::analytics::AnalyticsOptions;
use crate::services::api::ApiOptions;
use crate::services::inventory::InventoryOptions;
use crate::services::produce::ProduceOptions;

/// A command line, validated: what to run, against which cluster.
#[derive(Debug)]
pub struct Invocation {
    pub settings: KafkaSettings,
    /// `--schema-registry`, when given.
    pub registry: Option<RegistryOptions>,
    pub log_format: LogFormat,
    pub run: Run,
}

/// One subcommand's validated options.
#[derive(Debug)]
pub enum Run {
    Topics(TopicsRun),
    Produce(ProduceRun),
    Inventory(InventoryRun),
    Analytics(AnalyticsRun),
    Replay(ReplayRun),
    Lag(LagRun),
    Demo(DemoRun),
    Bench(BenchRun),
    Dashboard(DashboardOptions),
    Api(ApiRun),
    Schema(SchemaRun),
}

/// Which contract `orderflow schema` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaRun {
    /// Every record's JSON Schema, by name.
    All,
    /// One record's.
    One(String),
    /// The AsyncAPI document.
    AsyncApi,
}

#[derive(Debug)]
pub struct TopicsRun {
    pub names: Vec<String>,
    pub partitions: i32,
    /// `BROKER_DEFAULT_REPLICATION` for the cluster's default.
    pub replication_factor: i32,
}

/// What a service reports besides its work: metrics while it runs, a
/// stats file when it ends.
#[derive(Debug, Clone)]
pub struct Reporting {
    /// Serve the service's metrics here (they are kept either way).
    pub metrics_addr: Option<SocketAddr>,
    pub stats_file: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ProduceRun {
    pub options: ProduceOptions,
    pub reporting: Reporting,
}

#[derive(Debug)]
pub struct InventoryRun {
    pub options: InventoryOptions,
    pub reporting: Reporting,
}

#[derive(Debug)]
pub struct AnalyticsRun {
    pub options: AnalyticsOptions,
    pub reporting: Reporting,
    pub format: Format,
    /// Where the report goes; None: standard output.
    pub report: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ApiRun {
    pub options: ApiOptions,
    pub reporting: Reporting,
}

#[derive(Debug)]
pub struct ReplayRun {
    pub group: String,
    pub topic: String,
    pub target: ResetTarget,
    pub export: Option<PathBuf>,
    pub execute: bool,
}

#[derive(Debug)]
pub struct LagRun {
    pub group: String,
    pub topic: Option<String>,
    /// Refresh this often until stopped; None: one answer.
    pub watch: Option<Duration>,
    /// Samples a status is judged over.
    pub window: usize,
    pub format: Format,
}

#[derive(Debug)]
pub struct DemoRun {
    pub options: DemoOptions,
    /// May start the local Kafka when none answers on a loopback address.
    pub local_kafka: bool,
}

#[derive(Debug)]
pub struct BenchRun {
    pub options: BenchOptions,
    pub local_kafka: bool,
}

impl Cli {
    /// Checks every argument and builds what the subcommand runs with.
    pub fn validate(self) -> Result<Invocation> {
        let settings = kafka_settings(&self.kafka)?;
        let run = match self.command {
            Command::Topics(args) => Run::Topics(topics(args)),
            Command::Produce(args) => {
                overrides::check(&settings.overrides, Promise::IdempotentWrites)?;
                Run::Produce(produce(args)?)
            }
            Command::Inventory(args) => {
                overrides::check(&settings.overrides, args.run.guarantee.promise())?;
                Run::Inventory(inventory(args)?)
            }
            Command::Analytics(args) => {
                overrides::check(&settings.overrides, args.run.guarantee.promise())?;
                Run::Analytics(analytics(args))
            }
            Command::Replay(args) => Run::Replay(replay(args)),
            Command::Lag(args) => Run::Lag(lag(args)),
            Command::Demo(args) => {
                // The demo's services run exactly-once.
                overrides::check(&settings.overrides, Promise::ExactlyOnce)?;
                Run::Demo(demo(args)?)
            }
            Command::Bench(args) => {
                overrides::check(&settings.overrides, Promise::ExactlyOnce)?;
                Run::Bench(bench(args)?)
            }
            Command::Dashboard(args) => Run::Dashboard(dashboard(&args)),
            Command::Api(args) => {
                overrides::check(&settings.overrides, Promise::IdempotentWrites)?;
                Run::Api(api(args))
            }
            Command::Schema(args) => Run::Schema(match (args.asyncapi, args.name) {
                (true, _) => SchemaRun::AsyncApi,
                (false, Some(name)) => SchemaRun::One(name),
                (false, None) => SchemaRun::All,
            }),
        };
        let registry = registry(&self.registry, settings.timeout)?;
        Ok(Invocation {
            settings,
            registry,
            log_format: self.log_format,
            run,
        })
    }
}

fn registry(args: &RegistryArgs, timeout: Duration) -> Result<Option<RegistryOptions>> {
    let Some(url) = &args.schema_registry else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(Error::Config(format!(
            "--schema-registry {url}: not an http:// or https:// URL"
        )));
    }
    let credentials = args
        .schema_registry_username
        .clone()
        .zip(args.schema_registry_password.clone());
    Ok(Some(RegistryOptions {
        url: url.clone(),
        credentials,
        compatibility: args.schema_compatibility,
        timeout,
    }))
}

fn kafka_settings(args: &KafkaArgs) -> Result<KafkaSettings> {
    Ok(KafkaSettings {
        brokers: args.brokers.clone(),
        overrides: args.overrides.clone(),
        timeout: Duration::from_secs(args.timeout.max(1)),
        security: security(&args.security)?,
    })
}

fn security(args: &SecurityArgs) -> Result<Security> {
    let sasl = match (
        &args.sasl_mechanism,
        &args.sasl_username,
        &args.sasl_password,
    ) {
        (None, None, None) => None,
        (Some(mechanism), Some(username), Some(password)) => Some(Sasl {
            mechanism: *mechanism,
            username: username.clone(),
            password: password.clone(),
        }),
        (None, _, _) => {
            return Err(Error::Config(
                "--sasl-username and --sasl-password need --sasl-mechanism".into(),
            ))
        }
        (Some(mechanism), _, _) => {
            return Err(Error::Config(format!(
                "SASL {} needs --sasl-username and --sasl-password (or {PASSWORD_ENV})",
                mechanism.name()
            )))
        }
    };
    let any_file = args.tls_ca_file.is_some() || args.tls_cert_file.is_some();
    let tls = (args.tls || any_file).then(|| Tls {
        ca_file: args.tls_ca_file.clone(),
        cert_file: args.tls_cert_file.clone(),
        key_file: args.tls_key_file.clone(),
    });
    Ok(Security { sasl, tls })
}

fn topics(args: TopicsArgs) -> TopicsRun {
    TopicsRun {
        names: vec![
            args.topics.orders_topic,
            args.topics.inventory_topic,
            args.metrics.metrics_topic,
        ],
        partitions: args.partitions,
        replication_factor: args
            .replication_factor
            .unwrap_or(BROKER_DEFAULT_REPLICATION),
    }
}

fn generator(args: &GeneratorArgs) -> Result<GeneratorConfig> {
    if !(args.orders_per_minute > 0.0 && args.orders_per_minute.is_finite()) {
        return Err(Error::Config(
            "--orders-per-minute must be a positive number".into(),
        ));
    }
    Ok(GeneratorConfig {
        seed: args.seed,
        start: args.start_time,
        orders_per_minute: args.orders_per_minute,
        ..GeneratorConfig::default()
    })
}

fn stock(args: &StockArgs) -> Result<StockConfig> {
    if !(0.0..=1.0).contains(&args.failure_rate) {
        return Err(Error::Config(
            "--failure-rate must be between 0 and 1".into(),
        ));
    }
    let initial: BTreeMap<String, u64> = match &args.stock_file {
        None => BTreeMap::new(),
        Some(path) => {
            let text = std::fs::read(path).map_err(|cause| Error::Io {
                action: "reading",
                path: path.clone(),
                cause,
            })?;
            serde_json::from_slice(&text).map_err(|e| {
                Error::Config(format!(
                    "{}: expected a JSON object of SKU to units: {e}",
                    path.display()
                ))
            })?
        }
    };
    Ok(StockConfig {
        initial_per_sku: args.initial_stock,
        initial,
        failure_rate: args.failure_rate,
        seed: args.failure_seed,
    })
}

/// A service's metrics, kept, and with librdkafka's statistics when served.
fn service_metrics(service: Service, addr: Option<SocketAddr>) -> Arc<Metrics> {
    metrics_for(service, addr.is_some())
}

fn produce(args: ProduceArgs) -> Result<ProduceRun> {
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Config("--rate must be a positive number".into()));
    }
    Ok(ProduceRun {
        options: ProduceOptions {
            // Set once the schemas are registered (commands.rs).
            schemas: Default::default(),
            topic: args.orders_topic,
            count: args.count,
            generator: generator(&args.generator)?,
            rate: args.rate,
            metrics: service_metrics(Service::Produce, args.metrics.metrics_addr),
        },
        reporting: Reporting {
            metrics_addr: args.metrics.metrics_addr,
            stats_file: args.stats_file,
        },
    })
}

/// How a service runs: its commit interval and its instance id.
struct Running {
    commit_interval: Duration,
    instance_id: String,
    reporting: Reporting,
}

fn running(args: &RunArgs) -> Running {
    Running {
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
        instance_id: args.instance_id.clone().unwrap_or_else(host_name),
        reporting: Reporting {
            metrics_addr: args.metrics.metrics_addr,
            stats_file: args.stats_file.clone(),
        },
    }
}

fn inventory(args: InventoryArgs) -> Result<InventoryRun> {
    let run = running(&args.run);
    Ok(InventoryRun {
        options: InventoryOptions {
            // Set once the schemas are registered (commands.rs).
            schemas: Default::default(),
            orders_topic: args.topics.orders_topic,
            inventory_topic: args.topics.inventory_topic,
            group: args.group,
            max_stock_lag: args.max_stock_lag,
            stock: stock(&args.stock)?,
            guarantee: args.run.guarantee,
            instance_id: run.instance_id,
            exit_at_end: args.run.exit_at_end,
            commit_interval: run.commit_interval,
            metrics: service_metrics(Service::Inventory, run.reporting.metrics_addr),
        },
        reporting: run.reporting,
    })
}

fn analytics(args: AnalyticsArgs) -> AnalyticsRun {
    let run = running(&args.run);
    AnalyticsRun {
        options: AnalyticsOptions {
            // Set once the schemas are registered (commands.rs).
            schemas: Default::default(),
            inventory_topic: args.inventory_topic,
            metrics_topic: args.metrics.metrics_topic,
            group: args.group,
            guarantee: args.run.guarantee,
            instance_id: run.instance_id,
            exit_at_end: args.run.exit_at_end,
            throttle: Duration::from_millis(args.throttle_ms),
            commit_interval: run.commit_interval,
            grace: Duration::from_millis(args.grace_ms),
            idle_timeout: Duration::from_millis(args.idle_timeout_ms.max(1)),
            metrics: service_metrics(Service::Analytics, run.reporting.metrics_addr),
        },
        reporting: run.reporting,
        format: args.format,
        report: args.report,
    }
}

fn replay(args: ReplayArgs) -> ReplayRun {
    let target = match (args.to, args.by_duration, args.shift_by) {
        (Some(to), _, _) => to,
        (_, Some(ago), _) => ResetTarget::Ago(ago),
        (_, _, Some(n)) => ResetTarget::ShiftBy(n),
        // clap's group requires exactly one of them.
        (None, None, None) => unreachable!("clap requires a target"),
    };
    ReplayRun {
        group: args.group,
        topic: args.topic,
        target,
        export: args.export,
        execute: args.execute,
    }
}

fn lag(args: LagArgs) -> LagRun {
    LagRun {
        group: args.group,
        topic: args.topic,
        watch: args.watch.map(|every| Duration::from_secs(every.max(1))),
        window: usize::from(args.window),
        format: args.format,
    }
}

fn demo(args: DemoArgs) -> Result<DemoRun> {
    Ok(DemoRun {
        options: DemoOptions {
            // Set once the schemas are registered (commands.rs).
            schemas: Default::default(),
            orders_topic: args.topics.orders_topic,
            inventory_topic: args.topics.inventory_topic,
            metrics_topic: args.metrics.metrics_topic,
            inventory_group: args.inventory_group,
            analytics_group: args.analytics_group,
            api_group: args.api_group,
            partitions: args.partitions,
            replication_factor: args
                .replication_factor
                .unwrap_or(BROKER_DEFAULT_REPLICATION),
            count: args.count,
            generator: generator(&args.generator)?,
            stock: stock(&args.stock)?,
            burst: args.burst,
            burst_rate: (args.burst_rate > 0.0).then_some(args.burst_rate),
            throttle: Duration::from_millis(args.throttle_ms),
            out: args.out,
        },
        local_kafka: !args.no_local_kafka,
    })
}

fn dashboard(args: &DashboardArgs) -> DashboardOptions {
    let group = |role: &str, group: &str, topic: &str| WatchedGroup {
        role: role.into(),
        group: group.into(),
        topic: topic.into(),
    };
    DashboardOptions {
        listen: args.listen,
        watched: Watched {
            orders_topic: args.topics.orders_topic.clone(),
            metrics_topic: args.metrics.metrics_topic.clone(),
            groups: vec![
                group(
                    "inventory",
                    &args.inventory_group,
                    &args.topics.orders_topic,
                ),
                group(
                    "analytics",
                    &args.analytics_group,
                    &args.topics.inventory_topic,
                ),
            ],
            api_metrics: args.api_metrics.clone(),
        },
        interval: Duration::from_millis(args.interval_ms.max(100)),
        history: args.history.max(1),
    }
}

fn bench(args: BenchArgs) -> Result<BenchRun> {
    if !(args.rate > 0.0 && args.rate.is_finite()) || args.count == 0 {
        return Err(Error::Config("--rate and --count must be positive".into()));
    }
    if !(args.api_rate > 0.0 && args.api_rate.is_finite())
        || args.api_count == 0
        || args.api_seconds == 0
    {
        return Err(Error::Config(
            "--api-rate, --api-count and --api-seconds must be positive".into(),
        ));
    }
    if args.topic_prefix.trim().is_empty() {
        return Err(Error::Config("--topic-prefix must not be empty".into()));
    }
    Ok(BenchRun {
        options: BenchOptions {
            count: args.count,
            rate: args.rate,
            latency_count: args.latency_count,
            memory_count: args.memory_count,
            partitions: args.partitions,
            api_rate: args.api_rate,
            api_count: args.api_count,
            api_duration: Duration::from_secs(args.api_seconds),
            commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
            out: (args.out.as_os_str() != "-").then(|| args.out.clone()),
            work_dir: args.work_dir,
            prefix: args.topic_prefix,
        },
        local_kafka: !args.no_local_kafka,
    })
}

/// The host name, the default instance id.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

fn api(args: ApiArgs) -> ApiRun {
    ApiRun {
        options: ApiOptions {
            // Set once the schemas are registered (commands.rs).
            schemas: Default::default(),
            listen: args.listen,
            orders_topic: args.topics.orders_topic,
            inventory_topic: args.topics.inventory_topic,
            group: args.group,
            inventory_group: args.inventory_group,
            instance_id: args.instance_id.unwrap_or_else(host_name),
            key_retention: args.key_retention,
            commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
            views_dir: args.views_dir.unwrap_or_else(std::env::temp_dir),
            views_cache_bytes: args.views_cache_mb.max(1) << 20,
            metrics: service_metrics(Service::Api, args.metrics.metrics_addr),
        },
        reporting: Reporting {
            metrics_addr: args.metrics.metrics_addr,
            stats_file: args.stats_file,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Guarantee;
    use clap::Parser;

    fn validate(args: &[&str]) -> Result<Invocation> {
        Cli::try_parse_from(std::iter::once("orderflow").chain(args.iter().copied()))
            .expect("clap parses")
            .validate()
    }

    #[test]
    fn a_service_is_validated_into_the_librarys_options() {
        let invocation = validate(&[
            "inventory",
            "--group",
            "g",
            "--commit-interval-ms",
            "0",
            "--instance-id",
            "i1",
            "--guarantee",
            "at-least-once",
        ])
        .unwrap();
        let Run::Inventory(run) = invocation.run else {
            panic!("an inventory run");
        };
        assert_eq!(run.options.group, "g");
        assert_eq!(run.options.instance_id, "i1");
        assert_eq!(run.options.guarantee, Guarantee::AtLeastOnce);
        assert_eq!(run.options.commit_interval, Duration::from_millis(1));
        assert_eq!(run.reporting.metrics_addr, None);
    }

    #[test]
    fn bad_values_and_unsafe_overrides_are_refused_before_anything_runs() {
        for (args, says) in [
            (&["inventory", "--failure-rate", "2"][..], "--failure-rate"),
            (&["produce", "--rate", "0"], "--rate"),
            (
                &["produce", "--orders-per-minute=-1"],
                "--orders-per-minute",
            ),
            (&["-X", "acks=1", "produce"], "-X acks=1 is refused"),
            (
                &["-X", "isolation.level=read_uncommitted", "analytics"],
                "-X isolation.level=read_uncommitted is refused",
            ),
            (&["--sasl-username", "u", "topics"], "--sasl-mechanism"),
            (&["bench", "--topic-prefix", " "], "--topic-prefix"),
        ] {
            let error = validate(args).unwrap_err().to_string();
            assert!(error.contains(says), "{args:?}: {error}");
        }
        // What the services refuse, the read-only tools take.
        assert!(validate(&[
            "-X",
            "isolation.level=read_uncommitted",
            "lag",
            "--group",
            "g"
        ])
        .is_ok());
    }
}
