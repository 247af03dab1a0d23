//! Helpers for tests against the real local broker (`scripts/kafka up`):
//! unique topic and group names per test, running the `orderflow` binary, and
//! running Kafka's own CLI tools as the independent judge of what it wrote.

#![allow(dead_code)] // each test module uses its own share of these

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Longest any one command may take before the test fails (not a timing
/// assertion: a guard against hanging forever).
pub const COMMAND_LIMIT: Duration = Duration::from_secs(180);

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

/// The topics and groups of one test.
pub struct Names {
    pub orders: String,
    pub inventory: String,
    pub inventory_group: String,
    pub analytics_group: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        Self {
            orders: unique(&format!("{test}-orders")),
            inventory: unique(&format!("{test}-inventory")),
            inventory_group: unique(&format!("{test}-inv")),
            analytics_group: unique(&format!("{test}-ana")),
        }
    }

    /// Creates both topics with `orderflow topics`.
    pub fn create_topics(&self) {
        orderflow_ok(&[
            "topics",
            "--orders-topic",
            &self.orders,
            "--inventory-topic",
            &self.inventory,
        ]);
    }

    pub fn produce(&self, count: u64, seed: u64) -> String {
        orderflow_ok(&[
            "produce",
            "--orders-topic",
            &self.orders,
            "--count",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
        ])
    }

    /// Runs inventory as a batch job; returns its summary line.
    pub fn inventory(&self) -> String {
        orderflow_ok(&[
            "inventory",
            "--orders-topic",
            &self.orders,
            "--inventory-topic",
            &self.inventory,
            "--group",
            &self.inventory_group,
            "--exit-at-end",
        ])
    }

    /// Runs analytics as a batch job; returns the JSON report's bytes.
    pub fn analytics_json(&self, dir: &Path, name: &str) -> Vec<u8> {
        let path = dir.join(name);
        orderflow_ok(&[
            "analytics",
            "--inventory-topic",
            &self.inventory,
            "--group",
            &self.analytics_group,
            "--exit-at-end",
            "--format",
            "json",
            "--report",
            path.to_str().unwrap(),
        ]);
        std::fs::read(path).unwrap()
    }
}

/// The `orderflow` binary built for these tests, talking to the test broker.
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
        .env("RUST_LOG", "warn");
    command
}

/// Runs orderflow; the test fails unless it exits 0. Returns stdout.
pub fn orderflow_ok(args: &[&str]) -> String {
    let output = run(orderflow_command(args));
    assert!(
        output.status.success(),
        "orderflow {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Runs a command with no input, failing the test if it outlives COMMAND_LIMIT.
pub fn run(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("command starts");
    wait_with_limit(child, COMMAND_LIMIT)
}

/// Waits for a child, killing it (and failing the test) past `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stdout.read_to_end(&mut buf).map(|_| buf)
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        stderr.read_to_end(&mut buf).map(|_| buf)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("command did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// Starts a long-running orderflow service (stop it with `signal`).
pub fn spawn_service(args: &[&str]) -> Child {
    let mut command = orderflow_command(args);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command.spawn().expect("orderflow starts")
}

/// Sends a signal ("INT", "TERM") to a child and waits for it to exit.
pub fn signal(child: Child, name: &str) -> Output {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
    wait_with_limit(child, Duration::from_secs(60))
}

/// Polls `condition` every half second; fails the test after two minutes.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether kafka-consumer-groups shows `group` committed up to the log end of
/// every partition. (On a transactional topic the log end counts transaction
/// markers too, so message counts and offsets differ.)
pub fn caught_up(group: &str) -> bool {
    let rows = describe_group(group);
    !rows.is_empty() && rows.iter().all(|r| r.current == Some(r.log_end))
}

/// Sum of a group's committed offsets, as kafka-consumer-groups reports them.
pub fn committed_total(group: &str) -> i64 {
    describe_group(group).iter().filter_map(|r| r.current).sum()
}

fn kafka_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka")
}

/// Runs one of Kafka's own CLI tools through scripts/kafka; returns stdout.
pub fn kafka_tool(tool: &str, args: &[&str]) -> String {
    kafka_tool_with_input(tool, args, None)
}

pub fn kafka_tool_with_input(tool: &str, args: &[&str], input: Option<&str>) -> String {
    let mut command = Command::new(kafka_script());
    command
        .arg(tool)
        .args(args)
        .arg("--bootstrap-server")
        .arg(brokers());
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
    let output = wait_with_limit(child, COMMAND_LIMIT);
    assert!(
        output.status.success(),
        "{tool} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every message of `topic` as Kafka's console consumer prints it, one line
/// each: "partition\tkey\tvalue", read with `read_committed`. Expects exactly
/// `expected` messages (fewer or more fails the test).
pub fn read_topic(topic: &str, expected: usize) -> Vec<String> {
    let lines = read_all(topic, "read_committed", &[]);
    assert_eq!(lines.len(), expected, "messages read back from {topic}");
    lines
}

/// Every message of `topic` with the given isolation level, until none has
/// arrived for 10 s; `extra` adds console-consumer properties.
pub fn read_all(topic: &str, isolation: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--topic",
        topic,
        "--from-beginning",
        // Stop once no message has arrived for this long: all were read.
        "--timeout-ms",
        "10000",
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
    let out = kafka_tool("kafka-console-consumer", &args);
    out.lines()
        .map(|l| l.strip_prefix("Partition:").unwrap_or(l).to_owned())
        .collect()
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

/// What kafka-consumer-groups says of `group`, sorted by topic and partition.
pub fn describe_group(group: &str) -> Vec<GroupRow> {
    let out = kafka_tool("kafka-consumer-groups", &["--describe", "--group", group]);
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

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}
