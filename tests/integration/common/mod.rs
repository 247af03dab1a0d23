//! Helpers for tests against the real local broker (`scripts/kafka up`):
//! unique topic and group names per test, running the `orderflow` binary, and
//! running Kafka's own CLI tools as the independent judge of what it wrote.
//!
//! A [`Cluster`] names the brokers both run against: the shared one most tests
//! use, or a [`LocalKafka`] a test starts on ports of its own (to stop or kill
//! brokers without disturbing the tests running beside it).

#![allow(dead_code)] // each test module uses its own share of these

pub mod http;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any one command may take before the test fails (not a timing
/// assertion: a guard against hanging forever).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(240);

/// The shared test broker's address.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Brokers to run orderflow and Kafka's tools against.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub brokers: String,
    /// How to log in, on a SASL cluster.
    pub sasl: Option<SaslLogin>,
}

/// A SASL login, for orderflow (flags and the password's environment
/// variable) and for Kafka's tools (a client properties file).
#[derive(Debug, Clone)]
pub struct SaslLogin {
    pub mechanism: String,
    pub username: String,
    pub password: String,
    pub tool_config: PathBuf,
    /// The CA to trust, on a cluster whose listener speaks TLS.
    pub tls_ca: Option<PathBuf>,
}

impl Cluster {
    pub fn shared() -> Self {
        Self {
            brokers: brokers(),
            sasl: None,
        }
    }

    /// The `orderflow` binary built for these tests, talking to this cluster.
    pub fn orderflow_command(&self, args: &[&str]) -> Command {
        let mut command = orderflow_at(&self.brokers, args);
        if let Some(login) = &self.sasl {
            command
                .args(["--sasl-mechanism", &login.mechanism])
                .args(["--sasl-username", &login.username])
                .env("KAFKA_SASL_PASSWORD", &login.password);
            if let Some(ca) = &login.tls_ca {
                command.arg("--tls-ca-file").arg(ca);
            }
        }
        command
    }

    /// Runs orderflow; the test fails unless it exits 0. Returns stdout.
    pub fn orderflow_ok(&self, args: &[&str]) -> String {
        let output = run(self.orderflow_command(args));
        stdout_of(&format!("orderflow {args:?}"), output)
    }

    /// Starts a long-running orderflow service (stop it with `signal`).
    pub fn spawn_service(&self, args: &[&str]) -> Service {
        let mut command = self.orderflow_command(args);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Service::new(command.spawn().expect("orderflow starts"))
    }

    /// Runs one of Kafka's own CLI tools through scripts/kafka; returns stdout.
    pub fn kafka_tool(&self, tool: &str, args: &[&str], input: Option<&str>) -> String {
        stdout_of(
            &format!("{tool} {args:?}"),
            self.kafka_tool_output(tool, args, input),
        )
    }

    /// What one of Kafka's tools printed and how it ended, for a caller
    /// that expects it may fail (a cluster with a node restarting).
    pub fn kafka_tool_output(&self, tool: &str, args: &[&str], input: Option<&str>) -> Output {
        // The connection flags go first: kafka-transactions takes them only
        // before its subcommand, and the other tools anywhere.
        let mut command = Command::new(kafka_script());
        command
            .arg(tool)
            .arg("--bootstrap-server")
            .arg(&self.brokers);
        if let Some(login) = &self.sasl {
            let flag = match tool {
                "kafka-console-consumer" => "--consumer.config",
                "kafka-console-producer" => "--producer.config",
                _ => "--command-config",
            };
            command.arg(flag).arg(&login.tool_config);
        }
        command.args(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("scripts/kafka starts");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
        }
        wait_with_limit(child, COMMAND_LIMIT)
    }

    /// Every message of `topic` with the given isolation level, as lines
    /// "partition\tkey\tvalue", until none has arrived for 10 s; `extra` adds
    /// console-consumer properties.
    pub fn read_all(&self, topic: &str, isolation: &str, extra: &[&str]) -> Vec<String> {
        self.read_all_within(topic, isolation, extra, "10000")
    }

    /// `read_all`, stopping after `silence_ms` without a message.
    fn read_all_within(
        &self,
        topic: &str,
        isolation: &str,
        extra: &[&str],
        silence_ms: &str,
    ) -> Vec<String> {
        let mut args = vec![
            "--topic",
            topic,
            "--from-beginning",
            // Stop once no message has arrived for this long: all were read.
            "--timeout-ms",
            silence_ms,
            "--isolation-level",
            isolation,
            "--property",
            "print.partition=true",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=\t",
        ];
        for property in extra {
            args.extend(["--property", property]);
        }
        let out = self.kafka_tool("kafka-console-consumer", &args, None);
        out.lines()
            .map(|l| l.strip_prefix("Partition:").unwrap_or(l).to_owned())
            .collect()
    }

    /// Every committed message of `topic`; exactly `expected` of them, or the
    /// test fails.
    pub fn read_topic(&self, topic: &str, expected: usize) -> Vec<String> {
        let mut lines = self.read_all(topic, "read_committed", &[]);
        // A console consumer on a loaded machine may take longer than the
        // silence it stops after to join its group and fetch (a CI run's
        // 3-node cluster once paused it for over 45 s): read the whole
        // topic again, waiting longer each time, and judge the last read.
        for silence in ["45000", "120000"] {
            if lines.len() == expected {
                break;
            }
            lines = self.read_all_within(topic, "read_committed", &[], silence);
        }
        if lines.len() != expected {
            panic!(
                "{} messages read back from {topic} under read_committed, not {expected}; \
                 per partition {:?}\n{}",
                lines.len(),
                per_partition(&lines),
                self.why_short(topic)
            );
        }
        lines
    }

    /// What a short read_committed read of `topic` may be missing: every
    /// message written, committed or not, per partition, and the producers
    /// Kafka says hold a transaction open on each partition (an open
    /// transaction holds read_committed consumers at its first offset).
    fn why_short(&self, topic: &str) -> String {
        let written = self.read_all(topic, "read_uncommitted", &[]);
        let counts = per_partition(&written);
        let mut why = format!(
            "{} written, committed or not; per partition {counts:?}",
            written.len()
        );
        for partition in counts.keys() {
            let producers = self.kafka_tool_output(
                "kafka-transactions",
                &[
                    "describe-producers",
                    "--topic",
                    topic,
                    "--partition",
                    partition,
                ],
                None,
            );
            why += &format!(
                "\nproducers on partition {partition}:\n{}{}",
                String::from_utf8_lossy(&producers.stdout),
                String::from_utf8_lossy(&producers.stderr)
            );
        }
        why
    }

    /// What kafka-consumer-groups says of `group`, by topic and partition.
    pub fn describe_group(&self, group: &str) -> Vec<GroupRow> {
        let out = self.kafka_tool(
            "kafka-consumer-groups",
            &["--describe", "--group", group],
            None,
        );
        let number = |s: &str| {
            if s == "-" {
                None
            } else {
                Some(s.parse::<i64>().unwrap())
            }
        };
        let mut rows: Vec<GroupRow> = out
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|cols| cols.len() >= 6 && cols[0] == group)
            .map(|cols| GroupRow {
                topic: cols[1].to_owned(),
                partition: cols[2].parse().unwrap(),
                current: number(cols[3]),
                log_end: cols[4].parse().unwrap(),
                lag: number(cols[5]),
            })
            .collect();
        rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        rows
    }

    /// Whether `group` has committed up to the log end of every partition.
    /// (On a transactional topic the log end counts transaction markers too,
    /// so message counts and offsets differ.) A partition that has no
    /// committed offset and no member (mid-rebalance) is missing from
    /// kafka-consumer-groups' rows: every partition of the topic must be there.
    pub fn caught_up(&self, group: &str) -> bool {
        let rows = self.describe_group(group);
        if rows.is_empty() || rows.iter().any(|r| r.current != Some(r.log_end)) {
            return false;
        }
        let topics: std::collections::BTreeSet<&str> =
            rows.iter().map(|r| r.topic.as_str()).collect();
        let complete = topics.iter().all(|&topic| {
            let described =
                self.kafka_tool("kafka-topics", &["--describe", "--topic", topic], None);
            let partitions = described.matches("\tPartition: ").count();
            rows.iter().filter(|r| r.topic == topic).count() == partitions
        });
        complete
    }

    /// How many partitions each active member of `group` holds, as
    /// `kafka-consumer-groups --describe --members` says.
    pub fn member_partitions(&self, group: &str) -> Vec<usize> {
        let out = self.kafka_tool(
            "kafka-consumer-groups",
            &["--describe", "--group", group, "--members"],
            None,
        );
        out.lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|cols| cols.len() >= 5 && cols[0] == group)
            .filter_map(|cols| cols.last().and_then(|n| n.parse().ok()))
            .collect()
    }

    /// Sum of a group's committed offsets.
    pub fn committed_total(&self, group: &str) -> i64 {
        self.describe_group(group)
            .iter()
            .filter_map(|r| r.current)
            .sum()
    }
}

/// A running orderflow process. Dropped without `signal` (a test failed
/// midway), it is killed and its stderr printed, to explain the failure.
pub struct Service {
    child: Option<Child>,
    /// Its stderr, read as it is written: a service that logs more than a
    /// pipe holds (64 KiB) would otherwise block on its next line.
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Service {
    fn new(mut child: Child) -> Self {
        let mut pipe = child.stderr.take().expect("stderr piped");
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        });
        Self {
            child: Some(child),
            stderr: Some(reader),
        }
    }

    /// Waits for the service to exit by itself (within `limit`).
    pub fn wait(mut self, limit: Duration) -> Output {
        let (child, stderr) = self.take();
        let mut output = wait_with_limit(child, limit);
        output.stderr = stderr.join().unwrap_or_default();
        output
    }

    /// Collects its stdout, line by line as written, from now on.
    pub fn follow_stdout(&mut self) -> Arc<Mutex<Vec<String>>> {
        let stdout = self
            .child
            .as_mut()
            .and_then(|child| child.stdout.take())
            .expect("a running service with its stdout piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                sink.lock().unwrap().push(line);
            }
        });
        lines
    }

    fn take(&mut self) -> (Child, std::thread::JoinHandle<Vec<u8>>) {
        (
            self.child.take().expect("running"),
            self.stderr.take().expect("running"),
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let (Some(mut child), Some(reader)) = (self.child.take(), self.stderr.take()) else {
            return;
        };
        let _ = child.kill();
        if child.wait_with_output().is_err() {
            return;
        }
        let stderr = reader.join().unwrap_or_default();
        // The whole log goes to a file; the end of it to the test's output.
        let saved = save_log(&stderr);
        let stderr = String::from_utf8_lossy(&stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("brokers are down") && !l.contains("Connect to"))
            .rev()
            .take(40)
            .collect();
        eprintln!("--- an abandoned service's stderr ({saved}), last lines ---");
        for line in tail.iter().rev() {
            eprintln!("{line}");
        }
    }
}

/// A turn for one of the tests that load the machine most (100,000 orders
/// through a killed inventory, 20,000 orders over HTTP from 50 clients):
/// run side by side on two cores, each slowed the other past its guards.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Tests that run brokers of their own take turns: on two cores, several
/// extra JVM brokers starting at once would starve everything else. Hold
/// the guard for the test's length.
pub fn own_brokers() -> std::sync::MutexGuard<'static, ()> {
    static OWN_BROKERS: Mutex<()> = Mutex::new(());
    OWN_BROKERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A Kafka of a test's own, on its own ports, stopped when dropped.
pub struct LocalKafka {
    port: u16,
    pub cluster: Cluster,
}

impl LocalKafka {
    /// Starts `nodes` fresh nodes from `port` (node i on port + 2(i-1)).
    pub fn up(port: u16, nodes: u32) -> Self {
        let kafka = Self {
            port,
            cluster: Cluster {
                brokers: (0..nodes)
                    .map(|i| format!("127.0.0.1:{}", port as u32 + 2 * i))
                    .collect::<Vec<_>>()
                    .join(","),
                sasl: None,
            },
        };
        kafka.script(&["up", "--nodes", &nodes.to_string()]);
        kafka
    }

    /// Starts one node whose clients must log in (`scripts/kafka up
    /// --sasl`, and `--tls` with `tls`); the cluster logs in as its known
    /// user with PLAIN (trusting the cluster's CA with `tls`).
    pub fn up_sasl(port: u16, tls: bool) -> Self {
        let state = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".kafka")
            .join(port.to_string());
        let kafka = Self {
            port,
            cluster: Cluster {
                brokers: format!("127.0.0.1:{port}"),
                sasl: Some(SaslLogin {
                    mechanism: "PLAIN".into(),
                    username: "orderflow".into(),
                    password: "orderflow-secret".into(),
                    tool_config: state.join("client.properties"),
                    tls_ca: tls.then(|| state.join("tls").join("ca.pem")),
                }),
            },
        };
        if tls {
            kafka.script(&["up", "--sasl", "--tls"]);
        } else {
            kafka.script(&["up", "--sasl"]);
        }
        kafka
    }

    /// Runs scripts/kafka for this cluster; fails the test unless it succeeds.
    pub fn script(&self, args: &[&str]) {
        let mut command = Command::new(kafka_script());
        command.args(args).env("KAFKA_PORT", self.port.to_string());
        // Longer than the 240 s `scripts/kafka` itself gives a node to start.
        let output = run_within(command, Duration::from_secs(300));
        assert!(
            output.status.success(),
            "scripts/kafka {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for LocalKafka {
    fn drop(&mut self) {
        let _ = Command::new(kafka_script())
            .arg("down")
            .env("KAFKA_PORT", self.port.to_string())
            .stdout(Stdio::null())
            .status();
    }
}

/// The topics and groups of one test, on one cluster.
#[derive(Debug, Clone)]
pub struct Names {
    pub cluster: Cluster,
    pub orders: String,
    pub inventory: String,
    /// Where analytics publishes closed windows.
    pub metrics: String,
    pub inventory_group: String,
    pub analytics_group: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        Self::on(Cluster::shared(), test)
    }

    pub fn on(cluster: Cluster, test: &str) -> Self {
        Self {
            cluster,
            orders: unique(&format!("{test}-orders")),
            inventory: unique(&format!("{test}-inventory")),
            metrics: unique(&format!("{test}-metrics")),
            inventory_group: unique(&format!("{test}-inv")),
            analytics_group: unique(&format!("{test}-ana")),
        }
    }

    /// Creates the pipeline's topics with `orderflow topics`.
    pub fn create_topics(&self) {
        self.create_topics_with(&[]);
    }

    pub fn create_topics_with(&self, extra: &[&str]) {
        // A stall of the machine (the broker once fenced itself for 12 s
        // as the suite began) must not read as an unreachable cluster.
        let mut args = vec!["topics", "--timeout", "30"];
        args.extend(self.topic_flags());
        args.extend(extra);
        self.cluster.orderflow_ok(&args);
    }

    pub fn produce(&self, count: u64, seed: u64) -> String {
        self.cluster.orderflow_ok(&[
            "produce",
            "--orders-topic",
            &self.orders,
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
        ])
    }

    /// The arguments of an inventory service for this test.
    pub fn inventory_args(&self) -> Vec<&str> {
        vec![
            "inventory",
            "--orders-topic",
            &self.orders,
            "--inventory-topic",
            &self.inventory,
            "--group",
            &self.inventory_group,
        ]
    }

    /// The API's group in this test (its internal topics are named after it).
    pub fn api_group(&self) -> String {
        format!("{}-api", self.orders)
    }

    /// API instance `instance` for these topics, serving on `addr` (with
    /// `extra` flags), once it is ready.
    pub fn api(&self, addr: std::net::SocketAddr, instance: &str, extra: &[&str]) -> Service {
        let (listen, group) = (addr.to_string(), self.api_group());
        let mut args = vec![
            "api",
            "--listen",
            &listen,
            "--orders-topic",
            &self.orders,
            "--inventory-topic",
            &self.inventory,
            "--group",
            &group,
            "--inventory-group",
            &self.inventory_group,
            "--instance-id",
            instance,
        ];
        args.extend(extra);
        let service = self.cluster.spawn_service(&args);
        wait_until("the API is ready", || {
            std::net::TcpStream::connect(addr).is_ok() && http::get(addr, "/health").status == 200
        });
        service
    }

    /// The arguments of an analytics service for this test.
    pub fn analytics_args(&self) -> Vec<&str> {
        vec![
            "analytics",
            "--inventory-topic",
            &self.inventory,
            "--metrics-topic",
            &self.metrics,
            "--group",
            &self.analytics_group,
        ]
    }

    /// The flags naming this test's three topics.
    pub fn topic_flags(&self) -> Vec<&str> {
        vec![
            "--orders-topic",
            &self.orders,
            "--inventory-topic",
            &self.inventory,
            "--metrics-topic",
            &self.metrics,
        ]
    }

    /// The topic and group flags of `demo` and `dashboard` for this test.
    pub fn pipeline_flags(&self) -> Vec<&str> {
        let mut flags = self.topic_flags();
        flags.extend([
            "--inventory-group",
            &self.inventory_group,
            "--analytics-group",
            &self.analytics_group,
        ]);
        flags
    }

    /// Whether every stage of inventory has committed all it was given,
    /// looked at in the order records flow (what a stage wrote is in the
    /// next one's input by the time it has committed): every order read is
    /// decided. With `with_analytics`, analytics' stages too.
    pub fn drained(&self, with_analytics: bool) -> bool {
        orderflow::services::flow(
            &self.orders,
            &self.inventory,
            &self.inventory_group,
            &self.analytics_group,
        )
        .iter()
        .filter(|(group, _)| with_analytics || !group.starts_with(&self.analytics_group))
        .all(|(group, _)| self.cluster.caught_up(group))
    }

    /// Waits until `drained(with_analytics)`. A long backlog may take longer
    /// than `wait_until`'s three minutes on a loaded machine (a CI run's
    /// broker-restart test left ten minutes of orders behind), so the test
    /// fails only once three minutes pass with no stage committing anything:
    /// a stuck stage still fails it, a slow one does not.
    pub fn wait_drained(&self, with_analytics: bool) {
        let groups: Vec<String> = orderflow::services::flow(
            &self.orders,
            &self.inventory,
            &self.inventory_group,
            &self.analytics_group,
        )
        .into_iter()
        .map(|(group, _)| group)
        .filter(|group| with_analytics || !group.starts_with(&self.analytics_group))
        .collect();
        let committed = || -> i64 { groups.iter().map(|g| self.cluster.committed_total(g)).sum() };
        let mut last = committed();
        let mut since = Instant::now();
        while !self.drained(with_analytics) {
            let now = committed();
            if now != last {
                (last, since) = (now, Instant::now());
            }
            if since.elapsed() > Duration::from_secs(180) {
                let behind: Vec<String> = groups
                    .iter()
                    .flat_map(|g| self.cluster.describe_group(g))
                    .filter(|r| r.current != Some(r.log_end))
                    .map(|r| format!("{r:?}"))
                    .collect();
                panic!(
                    "timed out waiting until every stage has caught up: nothing \
                     committed for three minutes ({last} in all); behind: {behind:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Resets analytics' group to the beginning of the decisions.
    pub fn replay_analytics_to_earliest(&self) -> String {
        self.cluster.orderflow_ok(&[
            "replay",
            "--group",
            &self.analytics_group,
            "--topic",
            &self.inventory,
            "--to",
            "earliest",
            "--execute",
        ])
    }

    /// Runs inventory as a batch job; returns its summary line.
    pub fn inventory(&self) -> String {
        let mut args = self.inventory_args();
        args.push("--exit-at-end");
        self.cluster.orderflow_ok(&args)
    }

    /// Publishes `count` orders at `rate` per second, in the background.
    pub fn spawn_producer(&self, count: usize, seed: u64, rate: u64) -> Service {
        self.cluster.spawn_service(&[
            "produce",
            "--orders-topic",
            &self.orders,
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--rate",
            &rate.to_string(),
        ])
    }

    /// Runs analytics as a batch job; returns the JSON report's bytes.
    pub fn analytics_json(&self, dir: &Path, name: &str) -> Vec<u8> {
        self.analytics_json_with(dir, name, &[])
    }

    /// `analytics_json` with extra arguments.
    pub fn analytics_json_with(&self, dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
        let path = dir.join(name);
        let mut args = self.analytics_args();
        args.extend(extra);
        args.extend([
            "--exit-at-end",
            "--format",
            "json",
            "--report",
            path.to_str().unwrap(),
        ]);
        self.cluster.orderflow_ok(&args);
        std::fs::read(path).unwrap()
    }
}

/// The `orderflow` binary built for these tests, talking to the shared broker.
pub fn orderflow_command(args: &[&str]) -> Command {
    orderflow_at(&brokers(), args)
}

/// The `orderflow` binary, talking to `brokers`.
pub fn orderflow_at(brokers: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orderflow"));
    command
        .args(args)
        .arg("--brokers")
        .arg(brokers)
        // The services' story, for a failing test's saved logs;
        // ORDERFLOW_TEST_LOG overrides it.
        .env(
            "RUST_LOG",
            std::env::var("ORDERFLOW_TEST_LOG").unwrap_or_else(|_| "info,librdkafka=warn".into()),
        );
    command
}

pub fn orderflow_ok(args: &[&str]) -> String {
    Cluster::shared().orderflow_ok(args)
}

pub fn spawn_service(args: &[&str]) -> Service {
    Cluster::shared().spawn_service(args)
}

pub fn kafka_tool(tool: &str, args: &[&str]) -> String {
    Cluster::shared().kafka_tool(tool, args, None)
}

pub fn kafka_tool_with_input(tool: &str, args: &[&str], input: Option<&str>) -> String {
    Cluster::shared().kafka_tool(tool, args, input)
}

/// How many of `lines` ("partition\tkey\tvalue") each partition holds.
fn per_partition(lines: &[String]) -> std::collections::BTreeMap<&str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for line in lines {
        *counts
            .entry(line.split('\t').next().unwrap_or(""))
            .or_default() += 1;
    }
    counts
}

pub fn read_topic(topic: &str, expected: usize) -> Vec<String> {
    Cluster::shared().read_topic(topic, expected)
}

pub fn read_all(topic: &str, isolation: &str, extra: &[&str]) -> Vec<String> {
    Cluster::shared().read_all(topic, isolation, extra)
}

pub fn describe_group(group: &str) -> Vec<GroupRow> {
    Cluster::shared().describe_group(group)
}

pub fn caught_up(group: &str) -> bool {
    Cluster::shared().caught_up(group)
}

pub fn committed_total(group: &str) -> i64 {
    Cluster::shared().committed_total(group)
}

/// The stdout of a command that must have succeeded; its stderr otherwise.
fn stdout_of(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command with no input, failing the test if it outlives COMMAND_LIMIT.
pub fn run(command: Command) -> Output {
    run_within(command, COMMAND_LIMIT)
}

/// Runs a command with no input, failing the test if it outlives `limit`.
pub fn run_within(mut command: Command, limit: Duration) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("command starts");
    wait_with_limit(child, limit)
}

/// Waits for a child, killing it (and failing the test) past `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    // (A followed service's stdout is read elsewhere already.)
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        match stdout {
            Some(mut stdout) => stdout.read_to_end(&mut buf).map(|_| buf),
            None => Ok(buf),
        }
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        match stderr {
            Some(mut stderr) => stderr.read_to_end(&mut buf).map(|_| buf),
            None => Ok(buf),
        }
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let stacks = thread_stacks(child.id());
            let _ = child.kill();
            panic!("command did not finish within {limit:?}; its threads: {stacks}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// Sends a signal ("INT", "TERM", "KILL") to a child and waits for it to exit.
pub fn signal(mut service: Service, name: &str) -> Output {
    let (child, stderr) = service.take();
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
    let mut output = wait_with_limit(child, Duration::from_secs(60));
    output.stderr = stderr.join().unwrap_or_default();
    save_log(&output.stderr);
    output
}

/// Where a process that would not end was: every thread's stack, as gdb
/// prints it (when the machine has gdb), kept beside the service logs.
fn thread_stacks(pid: u32) -> String {
    let gdb = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid.to_string(), "-batch"])
        .args(["-ex", "thread apply all bt 16"])
        .stdin(Stdio::null())
        .output();
    match gdb {
        Ok(out) if !out.stdout.is_empty() => save_log(&out.stdout),
        Ok(out) => format!(
            "gdb printed nothing ({})",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("not taken: {e}"),
    }
}

/// Keeps a service's stderr under target/tmp/service-logs, for the story
/// behind a failed assertion; returns where.
fn save_log(stderr: &[u8]) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("service-logs");
    let path = dir.join(format!("{}.log", unique("service")));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, stderr)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("not saved: {e}"),
    }
}

/// A stock file of `units` (inventory's `--stock-file`), in `dir`.
pub fn stock_file(dir: &Path, units: &std::collections::BTreeMap<String, u64>) -> String {
    let path = dir.join("stock.json");
    std::fs::write(&path, serde_json::to_vec(units).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Polls `condition` every half second; fails the test after three minutes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn kafka_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// One row of `kafka-consumer-groups --describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub topic: String,
    pub partition: i32,
    pub current: Option<i64>,
    pub log_end: i64,
    pub lag: Option<i64>,
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

/// Per SKU, the units the orders that `reserved` says were reserved hold,
/// from console-consumer lines of the orders topic ("partition\tkey\tvalue").
pub fn units_reserved(
    orders: &[String],
    reserved: impl Fn(&str) -> bool,
) -> std::collections::BTreeMap<String, u64> {
    let mut taken = std::collections::BTreeMap::new();
    for line in orders {
        let mut cols = line.splitn(3, '\t');
        let (_partition, key, value) = (cols.next(), cols.next().unwrap(), cols.next().unwrap());
        if !reserved(key) {
            continue;
        }
        for item in json(value.as_bytes())["items"].as_array().unwrap() {
            let sku = item["sku"].as_str().unwrap().to_owned();
            *taken.entry(sku).or_default() += item["quantity"].as_u64().unwrap();
        }
    }
    taken
}
