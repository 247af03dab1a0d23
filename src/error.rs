//! The library's error type. The binary turns these into messages and exit
//! codes at its edge; nothing in the library prints an error itself.

use std::path::PathBuf;
use std::time::Duration;

use rdkafka::error::KafkaError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

// Each message includes its cause, so no variant also exposes it as
// `source()`: printing the chain would repeat it.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No broker answered a metadata request in time.
    #[error("cannot reach Kafka at {brokers} within {}s: {detail}", timeout.as_secs())]
    Unreachable {
        brokers: String,
        timeout: Duration,
        /// What went wrong, and what to check.
        detail: String,
    },

    /// Our TLS handshake with the brokers failed (their certificate is not
    /// trusted, or names another host).
    #[error("TLS handshake with {brokers} failed: {reason}")]
    Tls { brokers: String, reason: String },

    /// The brokers refused our SASL login.
    #[error("authentication failed at {brokers}{login}: {reason}")]
    Authentication {
        brokers: String,
        /// Who we tried to log in as: " (SASL PLAIN as user \"x\")".
        login: String,
        reason: String,
    },

    /// A Kafka call failed; `action` says what we were doing.
    #[error("Kafka error while {action}: {cause}")]
    Kafka { action: String, cause: KafkaError },

    /// A setting or argument makes no sense.
    #[error("{0}")]
    Config(String),

    /// The schema registry did not answer in time, or refused the
    /// connection.
    #[error("cannot reach the schema registry at {url} within {}s: {detail}", within.as_secs())]
    RegistryUnreachable {
        url: String,
        within: Duration,
        detail: String,
    },

    /// The registry refused a call (a login, a malformed request).
    #[error("schema registry: {action}: {reason}")]
    Registry { action: String, reason: String },

    /// Our schema breaks the subject's compatibility rule against what is
    /// registered: the service does not start.
    #[error("subject {subject}: our schema of {layout}, as version {}, is not {rule}-compatible with version {latest} (registered since): evolve the schema as {rule} allows (see the README's Schema registry), or choose the rule with --schema-compatibility", latest + 1)]
    IncompatibleSchema {
        layout: String,
        subject: String,
        latest: u32,
        rule: &'static str,
    },

    #[error("topic {0:?} does not exist (create it with `orderflow topics`)")]
    UnknownTopic(String),

    /// Offsets of a group in use cannot be reset: its members would overwrite them.
    #[error("group {group:?} has {members} active member(s); stop its consumers before resetting its offsets")]
    GroupActive { group: String, members: usize },

    /// A `-X` librdkafka property would void the guarantee the service gives.
    #[error("-X {key}={value} is refused: {why}")]
    UnsafeOverride {
        key: String,
        value: String,
        why: &'static str,
    },

    /// Kafka refuses a topic for good: it was deleted, we may not use it, or
    /// it takes none of what we must write there.
    #[error("topic {topic} cannot be used: {reason}")]
    TopicRefused { topic: String, reason: String },

    /// Kafka refuses for good something other than one topic (the group,
    /// the transactional id, the cluster).
    #[error("Kafka refuses {what}: {reason}")]
    Refused { what: String, reason: String },

    /// The same batch failed again and again, without progress.
    #[error("a batch failed {attempts} times in a row without progress; the last time: {cause}")]
    BatchFailing { attempts: u32, cause: String },

    /// Our producer was fenced again and again: another process uses its
    /// transactional id.
    #[error(
        "fenced repeatedly ({cause}): is another instance running with transactional id \
         {transactional_id}? give each instance its own --instance-id"
    )]
    Fenced {
        transactional_id: String,
        cause: String,
    },

    /// Reading a changelog back made no progress for too long.
    #[error("restoring {changelog} partitions {partitions:?} made no progress for {}s", waited.as_secs())]
    RestoreStalled {
        changelog: String,
        partitions: Vec<i32>,
        waited: Duration,
    },

    /// Something we wait for after asking (a topic's metadata, a deletion)
    /// did not happen in time.
    #[error("{what} within {}s", within.as_secs())]
    NotInTime { what: String, within: Duration },

    /// A librdkafka call that should have returned within its timeout did
    /// not, or timed out again and again: its client is stuck.
    #[error("{call} got no answer from librdkafka for {}s", waited.as_secs())]
    Wedged {
        call: String,
        waited: std::time::Duration,
    },

    /// A program we run (Kafka's tools, `scripts/kafka`, a service the bench
    /// started) failed or said something we cannot read.
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },

    /// A measured run handled another number of events than it was given.
    #[error("{what} handled {found} events, expected {expected}")]
    Miscounted {
        what: String,
        expected: u64,
        found: u64,
    },

    /// A batch run could not take every partition of its input: its
    /// report would cover a share only.
    #[error(
        "the report would cover only part of {topic}: partitions {missing:?} are held by \
         another member of the group (stop it, or run without --exit-at-end)"
    )]
    PartialCoverage { topic: String, missing: Vec<i32> },

    /// A consumer group has no committed offsets where they are needed.
    #[error("group {group:?} has no committed offsets {on}")]
    NothingCommitted { group: String, on: String },

    /// An HTTP endpoint of ours (a service's metrics) did not answer.
    #[error("scraping {url}: {reason}")]
    Scrape { url: String, reason: String },

    /// The API's views could not be kept on disk (the disk full, the
    /// directory not writable).
    #[error("{action}: {reason}")]
    ViewStore { action: String, reason: String },

    /// A request of ours to the API (the demo's) failed or was refused.
    #[error("{request}: {reason}")]
    ApiRequest { request: String, reason: String },

    /// A file of ours that is not what it should be.
    #[error("{} is not {expected}: {reason}", path.display())]
    BadFile {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },

    /// The user asked to stop before the work was done.
    #[error("{0}: stopped on request before it was done")]
    Stopped(String),

    /// A thread of ours ended by panicking.
    #[error("{what} stopped unexpectedly: {cause}")]
    Panicked { what: String, cause: String },

    /// A produced event was not acknowledged by the broker.
    #[error("the broker did not acknowledge an event written to {topic}: {cause}")]
    Delivery { topic: String, cause: KafkaError },

    /// An HTTP endpoint (metrics, dashboard) could not listen where asked.
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },

    #[error("{action} {}: {cause}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// Attaches what we were doing to a failed Kafka call.
pub trait KafkaResultExt<T> {
    fn while_(self, action: impl Into<String>) -> Result<T>;
}

impl<T> KafkaResultExt<T> for std::result::Result<T, KafkaError> {
    fn while_(self, action: impl Into<String>) -> Result<T> {
        self.map_err(|cause| Error::Kafka {
            action: action.into(),
            cause,
        })
    }
}
