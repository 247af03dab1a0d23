//! The analytics service: consumes `InventoryChecked` events and counts them
//! into one-minute windows of the orders' event time, merged over every
//! partition; publishes each window once, when final, to OrderMetrics; and
//! renders the report. Two stages, each on the stream engine, exactly-once
//! by default, as Kafka Streams runs a topology of two sub-topologies joined
//! by a repartition topic:
//!
//! ```text
//! InventoryEvents ─▶ counts (group <group>) ─▶ <group>-merge-repartition ─▶ merge (group <group>-merge) ─▶ OrderMetrics
//!                     shares per window and        keyed by window start;      every share of a window added up,
//!                     batch; each partition's      progress to every           closed by the watermark, published
//!                     progress in event time       partition                   once
//! ```
//!
//! `counts` (`counts.rs`) keeps per input partition only its stream time and
//! dead-letter count (`<group>-counts-changelog`); `merge` (`merge.rs`) keeps
//! the open windows and every input partition's progress per merge partition
//! (`<group>-merge-changelog`). A window closes once the watermark, the least
//! stream time over the input partitions, passes its end plus the grace
//! period; a partition without records for `idle_timeout` stops holding it
//! back, and when all are idle the wall clock closes the windows. A batch run
//! (`exit_at_end`) reports every partition finished at its end, which closes
//! every window: its report and OrderMetrics then hold the same windows.
//!
//! Every hop is a transaction holding its input offsets, outputs and state,
//! so a restart (even after SIGKILL) restores both stages and goes on; in
//! event-time order per partition, replaying analytics from the earliest
//! offset gives a byte-identical report and the same OrderMetrics records.
//! An event that is not a valid `InventoryChecked` is dead-lettered to
//! `<inventory-topic>.DLQ` and counted in the report's `malformed_events`.

mod counts;
mod merge;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::report::Report;
use crate::engine::{self, EngineOptions, EngineStats, Guarantee};
use crate::error::Result;
use crate::kafka::admin::{Admin, TopicSpec};
use crate::metrics::Metrics;
use crate::services::stages;
use counts::CountsTask;
use merge::MergeTask;

#[derive(Debug, Clone)]
pub struct AnalyticsOptions {
    pub inventory_topic: String,
    /// Where closed windows are published.
    pub metrics_topic: String,
    pub group: String,
    pub guarantee: Guarantee,
    /// Distinguishes instances of one group (their transactional ids).
    pub instance_id: String,
    /// A batch run: stop once everything of every partition is read,
    /// counted and published; a report that would cover only some
    /// partitions is an error.
    pub exit_at_end: bool,
    /// Sleep this long per event: a deliberately slow consumer, to build lag.
    pub throttle: Duration,
    /// How long a batch (transaction) collects events before it commits.
    pub commit_interval: Duration,
    /// How long past its end (in event time) a window still takes events.
    pub grace: Duration,
    /// How long a partition without records holds the watermark back.
    pub idle_timeout: Duration,
    /// Where the engines, closed windows and late events are counted.
    pub metrics: Arc<Metrics>,
    /// The schema registry's framing and checks (`--schema-registry`);
    /// the default is plain JSON.
    pub schemas: crate::registry::Schemas,
}

/// The grace period `orderflow analytics` uses unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The idle timeout `orderflow analytics` uses unless told otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The internal topic from the counts stage to the merge stage.
pub fn merge_topic(group: &str) -> String {
    format!("{group}-merge-repartition")
}

/// The consumer group of the merge stage.
pub fn merge_group(group: &str) -> String {
    format!("{group}-merge")
}

/// The changelogs of the two stages.
pub fn counts_changelog(group: &str) -> String {
    format!("{group}-counts-changelog")
}

pub fn merge_changelog(group: &str) -> String {
    format!("{group}-merge-changelog")
}

/// Every internal topic analytics makes for `group` (beside the DLQs of the
/// inventory and merge topics).
pub fn internal_topics(group: &str) -> Vec<String> {
    vec![
        merge_topic(group),
        counts_changelog(group),
        merge_changelog(group),
        engine::dlq_topic(&merge_topic(group)),
    ]
}

/// What a run ends with: the report of the committed counts, and what each
/// stage's engine did.
#[derive(Debug, Clone)]
pub struct AnalyticsOutcome {
    pub report: Report,
    /// The counts stage: events read from the inventory topic.
    pub stats: EngineStats,
    pub merge_stats: EngineStats,
}

/// Runs until `shutdown` fires or, with `exit_at_end`, until every window
/// is published.
pub async fn run(
    settings: &KafkaSettings,
    options: &AnalyticsOptions,
    shutdown: &CancellationToken,
) -> Result<AnalyticsOutcome> {
    let admin = Admin::connect(settings)?;
    let layout = admin.layout_once_visible(&options.inventory_topic).await?;
    let (partitions, replication) = (layout.partitions.len() as i32, layout.replication);
    let group = &options.group;
    // The merge topic has the input's partitions: as many merge tasks as
    // counting tasks can run in parallel. OrderMetrics is normally made by
    // `orderflow topics`; made here when missing, so that analytics alone
    // is enough.
    admin
        .create_topics(&[
            TopicSpec::new(merge_topic(group), partitions, replication),
            TopicSpec::new(options.metrics_topic.clone(), partitions, replication),
        ])
        .await?;
    admin
        .ensure_internal_topics(&options.inventory_topic, Some(&counts_changelog(group)))
        .await?;
    admin
        .ensure_internal_topics(&merge_topic(group), Some(&merge_changelog(group)))
        .await?;

    let stage = |group: &str, input: String, output: String, changelog: String| EngineOptions {
        hold_back: None,
        schemas: options.schemas.clone(),
        group: group.to_owned(),
        input_topic: input,
        output_topics: vec![output],
        changelog_topic: Some(changelog),
        guarantee: options.guarantee,
        transactional_id: format!("orderflow-{group}-{}", options.instance_id),
        commit_interval: options.commit_interval,
        exit_at_end: options.exit_at_end,
        metrics: Arc::clone(&options.metrics),
    };
    let counts_options = stage(
        group,
        options.inventory_topic.clone(),
        merge_topic(group),
        counts_changelog(group),
    );
    let merge_options = stage(
        &merge_group(group),
        merge_topic(group),
        options.metrics_topic.clone(),
        merge_changelog(group),
    );
    let grace_ms = i64::try_from(options.grace.as_millis()).unwrap_or(i64::MAX / 2);
    let mut counts_task = CountsTask::new(
        counts_changelog(group),
        merge_topic(group),
        partitions,
        options.idle_timeout,
        grace_ms,
        options.throttle,
        Arc::clone(&options.metrics),
    );
    let mut merge_task = MergeTask::new(
        merge_changelog(group),
        options.metrics_topic.clone(),
        partitions as usize,
        grace_ms,
        Arc::clone(&options.metrics),
    );

    // One stop for both: either stage failing stops the other.
    let stop = shutdown.child_token();
    let (settings_a, stop_a) = (settings.clone(), stop.clone());
    let counts = crate::threads::run("analytics counts", move || {
        let stats = engine::run(&settings_a, &counts_options, &mut counts_task, &stop_a)?;
        Ok((stats, counts_task))
    });
    let (settings_b, stop_b) = (settings.clone(), stop.clone());
    let merge = crate::threads::run("analytics merge", move || {
        let stats = engine::run(&settings_b, &merge_options, &mut merge_task, &stop_b)?;
        Ok((stats, merge_task))
    });
    let ((stats, counts_task), (merge_stats, merge_task)) =
        stages::side_by_side(&stop, counts, merge, |stats| {
            stages::covered(
                stats,
                &options.inventory_topic,
                partitions,
                options.exit_at_end,
            )
        })
        .await?;
    stages::covered(
        &merge_stats,
        &merge_topic(group),
        partitions,
        options.exit_at_end,
    )?;
    let mut windows = merge_task.windows();
    windows.set_late(windows.late() + counts_task.late());
    Ok(AnalyticsOutcome {
        report: Report::from_windows(&windows, counts_task.malformed()),
        stats,
        merge_stats,
    })
}
