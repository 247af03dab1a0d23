//! Errors a user can act on: bad flags, and a broker that is not there.

use crate::common::{orderflow_at, orderflow_command, run, Names};

#[test]
fn bad_flags_get_a_usage_error() {
    for args in [
        &["produce", "--count", "many"][..],
        &["lag"],
        &["produce", "-X", "linger.ms"],
    ] {
        let output = run(orderflow_command(args));
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("Usage") || stderr.contains("error:"),
            "{stderr}"
        );
    }
}

#[test]
fn an_unreachable_broker_is_an_error_naming_its_address() {
    // Nothing listens on port 1. Each command must give up with an error
    // (run() fails the test if one hangs past its limit).
    let address = "127.0.0.1:1";
    for args in [
        &["produce", "--count", "10"][..],
        &["inventory", "--exit-at-end"],
        &["analytics", "--exit-at-end"],
        &["lag", "--group", "g"],
        &["replay", "--group", "g", "--topic", "t", "--to", "earliest"],
        &["topics"],
    ] {
        let mut command = orderflow_at(address, args);
        command.args(["--timeout", "3"]);
        let output = run(command);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!("cannot reach Kafka at {address}")),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn logs_can_be_json_lines() {
    // A run that logs at info (inventory: its partitions, its restore), and
    // one that fails: every line on stderr is one JSON object, the failure
    // among them naming the address.
    let names = Names::new("json-logs");
    names.create_topics();
    names.produce(10, 1);
    let mut args = vec!["--log-format", "json"];
    args.extend(names.inventory_args());
    args.push("--exit-at-end");
    let inventory = orderflow_command(&args);
    let address = "127.0.0.1:1";
    let mut failing = orderflow_at(address, &["--log-format", "json", "lag", "--group", "g"]);
    failing.args(["--timeout", "2"]);
    for (command, succeeds) in [(inventory, true), (failing, false)] {
        let output = run(command);
        assert_eq!(output.status.success(), succeeds);
        let stderr = String::from_utf8(output.stderr).unwrap();
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
            .collect();
        assert!(!lines.is_empty(), "no logs at all");
        for line in &lines {
            assert!(
                line["level"].is_string() && line["fields"].is_object(),
                "{line}"
            );
        }
        if !succeeds {
            let error = lines
                .iter()
                .find(|l| l["level"] == "ERROR")
                .expect("an error");
            let message = error["fields"]["error"].as_str().unwrap();
            assert!(message.contains(address), "{message}");
        }
    }
}
