//! How orderflow authenticates to a secure cluster and encrypts its
//! connections: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS, from
//! named flags, mapped onto librdkafka's settings, and onto the Java client
//! properties Kafka's own tools take (the bench runs them on the same
//! cluster).
//!
//! The password never appears in `Debug` output or in a child process's
//! arguments: children get it through the environment.

use std::fmt;
use std::path::PathBuf;

/// The SASL mechanisms librdkafka supports without Kerberos or OAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The mechanism's name, as Kafka spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The Java login module Kafka's tools authenticate with.
    fn java_login_module(self) -> &'static str {
        match self {
            Self::Plain => "org.apache.kafka.common.security.plain.PlainLoginModule",
            Self::ScramSha256 | Self::ScramSha512 => {
                "org.apache.kafka.common.security.scram.ScramLoginModule"
            }
        }
    }
}

/// SASL credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// TLS: the CA that signed the brokers' certificates (default: the
/// system's), and a client certificate and key for mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// How to reach a secure cluster; the default is plaintext, no login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub sasl: Option<Sasl>,
    pub tls: Option<Tls>,
}

impl Security {
    /// Kafka's name of the protocol: the listener type the brokers must have.
    pub fn protocol(&self) -> &'static str {
        match (&self.sasl, &self.tls) {
            (None, None) => "PLAINTEXT",
            (None, Some(_)) => "SSL",
            (Some(_), None) => "SASL_PLAINTEXT",
            (Some(_), Some(_)) => "SASL_SSL",
        }
    }

    /// librdkafka's settings for it.
    pub fn librdkafka_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = vec![("security.protocol", self.protocol().to_lowercase())];
        if let Some(sasl) = &self.sasl {
            settings.extend([
                ("sasl.mechanism", sasl.mechanism.name().to_owned()),
                ("sasl.username", sasl.username.clone()),
                ("sasl.password", sasl.password.clone()),
            ]);
        }
        if let Some(tls) = &self.tls {
            let path = |p: &PathBuf| p.display().to_string();
            for (key, file) in [
                ("ssl.ca.location", &tls.ca_file),
                ("ssl.certificate.location", &tls.cert_file),
                ("ssl.key.location", &tls.key_file),
            ] {
                if let Some(file) = file {
                    settings.push((key, path(file)));
                }
            }
        }
        settings
    }

    /// The same, as the properties file Kafka's Java tools read
    /// (`--command-config`, `--producer.config`, ...).
    pub fn java_client_properties(&self) -> String {
        let mut lines = vec![format!("security.protocol={}", self.protocol())];
        if let Some(sasl) = &self.sasl {
            lines.push(format!("sasl.mechanism={}", sasl.mechanism.name()));
            lines.push(format!(
                "sasl.jaas.config={} required username=\"{}\" password=\"{}\";",
                sasl.mechanism.java_login_module(),
                java_quoted(&sasl.username),
                java_quoted(&sasl.password)
            ));
        }
        if let Some(tls) = &self.tls {
            // PEM files, as librdkafka takes them (Kafka 2.7+, KIP-651).
            if let Some(ca) = &tls.ca_file {
                lines.push("ssl.truststore.type=PEM".into());
                lines.push(format!("ssl.truststore.location={}", ca.display()));
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                lines.push("ssl.keystore.type=PEM".into());
                lines.push(format!("ssl.keystore.certificate.chain={}", cert.display()));
                lines.push(format!("ssl.keystore.key={}", key.display()));
            }
        }
        lines.join("\n") + "\n"
    }

    /// The flags that give a child orderflow process the same security,
    /// but the password, which goes in `PASSWORD_ENV`.
    pub fn child_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(sasl) = &self.sasl {
            args.extend([
                "--sasl-mechanism".into(),
                sasl.mechanism.name().into(),
                "--sasl-username".into(),
                sasl.username.clone(),
            ]);
        }
        if let Some(tls) = &self.tls {
            args.push("--tls".into());
            for (flag, file) in [
                ("--tls-ca-file", &tls.ca_file),
                ("--tls-cert-file", &tls.cert_file),
                ("--tls-key-file", &tls.key_file),
            ] {
                if let Some(file) = file {
                    args.extend([flag.into(), file.display().to_string()]);
                }
            }
        }
        args
    }

    /// Who we are, for messages: "SASL PLAIN as orderflow" or "".
    pub fn describe_login(&self) -> String {
        self.sasl
            .as_ref()
            .map(|s| format!(" (SASL {} as user {:?})", s.mechanism.name(), s.username))
            .unwrap_or_default()
    }
}

/// The environment variable `--sasl-password` also reads.
pub const PASSWORD_ENV: &str = "KAFKA_SASL_PASSWORD";

/// A JAAS string value: backslashes and quotes escaped.
fn java_quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl(mechanism: SaslMechanism) -> Sasl {
        Sasl {
            mechanism,
            username: "orderflow".into(),
            password: "s3\"cret".into(),
        }
    }

    #[test]
    fn plaintext_by_default() {
        let security = Security::default();
        assert_eq!(
            security.librdkafka_settings(),
            vec![("security.protocol", "plaintext".to_string())]
        );
        assert!(security.child_args().is_empty());
    }

    #[test]
    fn sasl_over_tls_maps_onto_librdkafka() {
        let security = Security {
            sasl: Some(sasl(SaslMechanism::ScramSha512)),
            tls: Some(Tls {
                ca_file: Some("/etc/ca.pem".into()),
                ..Tls::default()
            }),
        };
        let settings = security.librdkafka_settings();
        for expected in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "orderflow"),
            ("sasl.password", "s3\"cret"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ] {
            assert!(
                settings.iter().any(|(k, v)| (*k, v.as_str()) == expected),
                "{expected:?} in {settings:?}"
            );
        }
        let java = security.java_client_properties();
        assert!(java.contains("security.protocol=SASL_SSL\n"), "{java}");
        assert!(
            java.contains(r#"ScramLoginModule required username="orderflow" password="s3\"cret";"#),
            "{java}"
        );
        assert!(
            java.contains("ssl.truststore.location=/etc/ca.pem\n"),
            "{java}"
        );
    }

    #[test]
    fn the_password_stays_out_of_debug_output_and_child_arguments() {
        let security = Security {
            sasl: Some(sasl(SaslMechanism::Plain)),
            tls: None,
        };
        assert!(!format!("{security:?}").contains("s3"));
        let args = security.child_args();
        assert_eq!(
            args,
            ["--sasl-mechanism", "PLAIN", "--sasl-username", "orderflow"]
        );
        assert_eq!(security.protocol(), "SASL_PLAINTEXT");
    }
}
