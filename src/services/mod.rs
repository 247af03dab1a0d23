//! The three services of the pipeline, each a loop that wires the domain to
//! Kafka: `produce` publishes generated orders, `inventory` turns orders into
//! stock decisions, `analytics` turns decisions into a report. `stats` is
//! what each says about a run when asked (`--stats-file`).

pub mod analytics;
pub mod inventory;
pub mod produce;
pub mod stats;
