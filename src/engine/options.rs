//! How the engine is asked to run a task, and what it reports having done.

use std::sync::Arc;
use std::time::Duration;

use super::hold_back::HoldBack;
use crate::config::overrides::Promise;
use crate::domain::latency::LatencySummary;
use crate::metrics::Metrics;
use crate::registry::Schemas;

/// Which delivery guarantee a service gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Guarantee {
    ExactlyOnce,
    AtLeastOnce,
}

impl Guarantee {
    /// What the guarantee promises, for checking `-X` properties against.
    pub fn promise(self) -> Promise {
        match self {
            Guarantee::ExactlyOnce => Promise::ExactlyOnce,
            Guarantee::AtLeastOnce => Promise::AtLeastOnce,
        }
    }
}

/// How the engine runs a task.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub group: String,
    pub input_topic: String,
    /// The topics the task writes to (its changelog and the dead-letter
    /// topic aside): the engine learns their record size limits at start.
    pub output_topics: Vec<String>,
    /// The compacted topic the task's state is restored from, if it has state.
    pub changelog_topic: Option<String>,
    pub guarantee: Guarantee,
    /// Identifies this instance's producer across restarts, so that a restart
    /// aborts what a crashed predecessor left open (exactly-once only).
    pub transactional_id: String,
    /// How long a batch (transaction) collects records before it commits.
    pub commit_interval: Duration,
    /// Stop once every assigned partition has been read to its end and
    /// everything read is committed.
    pub exit_at_end: bool,
    /// Where what the engine commits is counted.
    pub metrics: Arc<Metrics>,
    /// Stop reading while a stage downstream is this far behind.
    pub hold_back: Option<HoldBack>,
    /// Framed records read are checked against their schemas (those that
    /// fail are dead-lettered), and records written to a registered topic
    /// are framed with its schema id (`--schema-registry`).
    pub schemas: Schemas,
}

/// What the engine did, counting committed work only.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct EngineStats {
    /// Input records processed (dead letters included).
    pub consumed: u64,
    /// Input records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Batches committed.
    pub commits: u64,
    /// Batches aborted (and processed again).
    pub aborts: u64,
    /// From the first record processed to the last batch committed: the
    /// time the run spent working, without start-up and idle waiting before.
    pub busy: Duration,
    /// Age of each committed input record when it was processed: processing
    /// time minus the record's timestamp. Only records created after their
    /// partition was taken over count: older ones waited for the service to
    /// start (or to take over), which is lag, not processing latency.
    pub latency: LatencySummary,
    /// The input partitions it held when it stopped: a batch run's report
    /// covers these.
    pub held: Vec<i32>,
}
