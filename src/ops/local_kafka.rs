//! Starting the project's own local broker (`scripts/kafka up`) when the demo
//! is pointed at a loopback address where nothing answers yet. A remote
//! cluster is never started or touched: orderflow runs no broker of its own.

use std::path::PathBuf;
use std::process::Command;

use crate::error::{Error, Result};

/// The script that runs the local Kafka: `$ORDERFLOW_KAFKA_SCRIPT`, or the
/// one in the source tree this binary was built from.
pub fn script() -> PathBuf {
    std::env::var_os("ORDERFLOW_KAFKA_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka")))
}

/// The port of `brokers` when it is a single loopback address.
pub fn loopback_port(brokers: &str) -> Option<u16> {
    let (host, port) = brokers.trim().rsplit_once(':')?;
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
        .then(|| port.parse().ok())
        .flatten()
}

/// Whether anything accepts connections on the loopback `port`: a quick probe
/// that saves waiting for a metadata timeout when nothing runs at all.
pub fn listening(port: u16) -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)).is_ok()
}

/// Runs `scripts/kafka up` for the port of `brokers` and waits for it.
pub fn start(brokers: &str) -> Result<()> {
    let port = loopback_port(brokers).ok_or_else(|| {
        Error::Config(format!(
            "{brokers} is not a local address to start Kafka on"
        ))
    })?;
    let script = script();
    if !script.exists() {
        return Err(Error::Config(format!(
            "no Kafka answers at {brokers}, and {} is not there to start one",
            script.display()
        )));
    }
    tracing::info!(port, script = %script.display(), "no Kafka answers; starting the local one");
    let status = Command::new(&script)
        .arg("up")
        .env("KAFKA_PORT", port.to_string())
        .status()
        .map_err(|cause| Error::Io {
            action: "running",
            path: script.clone(),
            cause,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Tool {
            tool: format!("{} up", script.display()),
            detail: status.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_single_loopback_addresses_qualify() {
        assert_eq!(loopback_port("127.0.0.1:9092"), Some(9092));
        assert_eq!(loopback_port("localhost:19092"), Some(19092));
        assert_eq!(loopback_port("kafka.internal:9092"), None);
        assert_eq!(loopback_port("127.0.0.1:9092,127.0.0.1:9094"), None);
    }
}
