//! Connection settings shared by every subcommand (`--brokers`, `-X`, the
//! timeout, SASL and TLS) and how they become an rdkafka `ClientConfig`.

pub mod overrides;
pub mod security;

use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::ClientConfig;

pub use security::Security;

/// Where Kafka is and how to talk to it.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Comma-separated bootstrap servers, host:port.
    pub brokers: String,
    /// Raw librdkafka properties (`-X key=value`), applied after ours so that
    /// the user has the last word, as with kcat.
    pub overrides: Vec<(String, String)>,
    /// Upper bound for metadata and admin requests; an unreachable broker is
    /// reported after this long instead of being retried forever.
    pub timeout: Duration,
    /// SASL and TLS (default: plaintext).
    pub security: Security,
}

impl KafkaSettings {
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            overrides: Vec::new(),
            timeout: Duration::from_secs(10),
            security: Security::default(),
        }
    }

    /// A client configuration: the bootstrap servers and security, then the
    /// role's own properties, then the user's `-X` overrides.
    pub fn client_config(&self, role: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        // Forward librdkafka's own log lines at info and above to tracing
        // (see kafka::context); debug would flood the terminal.
        config.set_log_level(RDKafkaLogLevel::Info);
        for (key, value) in self.security.librdkafka_settings() {
            config.set(key, value);
        }
        for (key, value) in role {
            config.set(*key, *value);
        }
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }
}

/// Parses one `-X key=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "expected key=value (a librdkafka property), got {arg:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_over_role_settings() {
        let mut settings = KafkaSettings::new("127.0.0.1:9092");
        settings
            .overrides
            .push(parse_override("linger.ms=50").unwrap());
        let config = settings.client_config(&[("linger.ms", "5"), ("acks", "all")]);
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    }

    #[test]
    fn override_syntax() {
        assert_eq!(
            parse_override("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_override("novalue").is_err());
        assert!(parse_override("=x").is_err());
    }
}
