//! Errors a user can act on: bad flags, and a broker that is not there.

use crate::common::{orderflow_at, orderflow_command, run};

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
