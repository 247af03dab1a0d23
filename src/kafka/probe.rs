//! Whether a cluster answers, and if not, why: nobody listens, the listener
//! speaks another protocol, it refuses our login, or its TLS certificate is
//! not one we trust. Every command checks
//! this first (`Admin::connect`), so that a wrong address or password is a
//! clear error within `--timeout`, not a silent retry loop.
//!
//! librdkafka retries connections forever and reports why they fail only
//! through its error callback, on the client's main queue. An admin client's
//! main queue is never polled (rdkafka polls only its own result queue), so
//! the check runs on a plain consumer that is polled between attempts.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaSettings;
use crate::error::{Error, KafkaResultExt, Result};
use crate::wait;

/// How long one metadata attempt may take before the reasons are looked at.
const ATTEMPT: Duration = Duration::from_millis(500);

/// Fails unless a broker of `settings` answers a metadata request within
/// the settings' timeout; a refused login or TLS handshake ends the wait at
/// once.
pub fn check(settings: &KafkaSettings) -> Result<()> {
    let probe: BaseConsumer<Reasons> = settings
        .client_config(&[])
        .create_with_context(Reasons::default())
        .while_("creating a client")?;
    let deadline = Instant::now() + settings.timeout;
    let mut last_cause = None;
    // Each attempt waits up to ATTEMPT for an answer: no pause between.
    let answered = wait::until(settings.timeout, Duration::ZERO, || {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome =
            probe.fetch_metadata(None, remaining.clamp(Duration::from_millis(1), ATTEMPT));
        // Serves the error callbacks of that attempt.
        let _ = probe.poll(Duration::ZERO);
        let cause = match outcome {
            Ok(_) => return Ok(Some(())),
            Err(cause) => cause,
        };
        let seen = probe.context().seen();
        if let Some(reason) = seen.authentication {
            return Err(Error::Authentication {
                brokers: settings.brokers.clone(),
                login: settings.security.describe_login(),
                reason,
            });
        }
        if let Some(reason) = seen.tls {
            return Err(Error::Tls {
                brokers: settings.brokers.clone(),
                reason,
            });
        }
        last_cause = Some(cause);
        Ok(None)
    })?;
    if answered.is_some() {
        return Ok(());
    }
    let detail = match (probe.context().seen().last, last_cause) {
        (Some(reason), _) => {
            format!("{reason} (is a broker running there, with this security protocol?)")
        }
        (None, cause) => format!(
            "{} (is a broker running there? `scripts/kafka up` starts a local one)",
            cause.map(|c| c.to_string()).unwrap_or_default()
        ),
    };
    Err(Error::Unreachable {
        brokers: settings.brokers.clone(),
        timeout: settings.timeout,
        detail,
    })
}

/// Logs like every client and keeps what librdkafka said went wrong.
#[derive(Default)]
struct Reasons(Mutex<Seen>);

#[derive(Default, Clone)]
struct Seen {
    authentication: Option<String>,
    tls: Option<String>,
    last: Option<String>,
}

impl Reasons {
    fn seen(&self) -> Seen {
        self.0.lock().expect("never poisoned").clone()
    }
}

impl ClientContext for Reasons {
    // What goes wrong here ends up in the check's error: librdkafka's own
    // lines about it are details, at debug.
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", facility, "{message}");
        // A connection that failed, some of which (a listener closing the
        // connection on an unexpected protocol) reach only the log; so,
        // at times, does a failed TLS handshake (a CI run on a loaded
        // machine waited out its whole --timeout with "SSL handshake
        // failed" here and no SSL error from the error callback).
        if facility == "FAIL" {
            let mut seen = self.0.lock().expect("never poisoned");
            if is_failed_handshake(message) {
                seen.tls = Some(message.to_owned());
            }
            seen.last = Some(message.to_owned());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        let mut seen = self.0.lock().expect("never poisoned");
        let reason = Some(reason.to_owned());
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => seen.authentication = reason.clone(),
            // A handshake that failed (a certificate not trusted, a name
            // that does not match) fails again on every retry.
            Some(RDKafkaErrorCode::SSL) => seen.tls = reason.clone(),
            _ if is_failed_handshake(reason.as_deref().unwrap_or_default()) => {
                seen.tls = reason.clone()
            }
            // "1/1 brokers are down" says less than the failure before it.
            Some(RDKafkaErrorCode::AllBrokersDown) => return,
            _ => {}
        }
        seen.last = reason;
    }
}

impl ConsumerContext for Reasons {}

/// Whether librdkafka's words say a TLS handshake failed: it fails again
/// on every retry, so waiting for it to pass is pointless.
fn is_failed_handshake(message: &str) -> bool {
    message.contains("SSL handshake failed")
}
