//! The analytics service: consumes `InventoryChecked` events and counts them
//! into one-minute windows of the orders' event time, then renders the report.
//!
//! Guarantee: each offset is committed after its event is counted, and the
//! counts live in memory. A run that starts from the group's committed
//! offsets therefore reports only what it read itself; the reproducible
//! report comes from a group reading from the start (a new group, or one
//! reset with `orderflow replay --to earliest`). A malformed event is logged,
//! counted in the report's `malformed_events`, and passed over.

use std::time::Duration;

use rdkafka::consumer::CommitMode;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::InventoryChecked;
use crate::domain::report::Report;
use crate::domain::windows::Windows;
use crate::error::Result;
use crate::kafka::admin::Admin;
use crate::kafka::consumer::{self, CaughtUp, OffsetBook};

#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    pub inventory_topic: String,
    pub group: String,
    /// Stop once every assigned partition has been read to its end.
    pub exit_at_end: bool,
    /// Sleep this long per event: a deliberately slow consumer, to build lag.
    pub throttle: Duration,
    /// How often counted offsets are committed while running.
    pub commit_interval: Duration,
}

/// Runs until `shutdown` fires or, with `exit_at_end`, until caught up; then
/// commits and returns the report of everything it counted.
pub async fn run(
    settings: &KafkaSettings,
    options: &AnalyticsOptions,
    shutdown: &CancellationToken,
) -> Result<Report> {
    Admin::connect(settings)?.partitions(&options.inventory_topic)?;
    let consumer = consumer::subscribe(settings, &options.group, &options.inventory_topic)?;
    let mut windows = Windows::default();
    let mut malformed = 0;
    let mut book = OffsetBook::new(&options.inventory_topic);
    let mut caught_up = CaughtUp::default();
    let mut commit_timer = tokio::time::interval(options.commit_interval);

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = commit_timer.tick() => book.commit(&consumer, CommitMode::Async)?,
            received = consumer.recv() => match received {
                Ok(message) => {
                    match InventoryChecked::decode(message.payload().unwrap_or_default()) {
                        Ok(event) => windows.record(event.event_time, event.failed()),
                        Err(error) => {
                            malformed += 1;
                            tracing::warn!(
                                topic = message.topic(),
                                partition = message.partition(),
                                offset = message.offset(),
                                %error,
                                "skipping malformed inventory event"
                            );
                        }
                    }
                    book.done(message.partition(), message.offset());
                    if !options.throttle.is_zero() {
                        tokio::time::sleep(options.throttle).await;
                    }
                }
                Err(KafkaError::PartitionEOF(partition)) => {
                    caught_up.reached_end(partition);
                    if options.exit_at_end && caught_up.all(&consumer) {
                        break;
                    }
                }
                Err(error) => tracing::warn!(%error, "consumer error"),
            },
        }
    }

    book.commit(&consumer, CommitMode::Sync)?;
    Ok(Report::from_windows(&windows, malformed))
}
