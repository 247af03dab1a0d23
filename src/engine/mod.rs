//! The stream engine: runs a [`Task`] over an input topic with the chosen
//! delivery guarantee, the way Kafka Streams runs a topology.
//!
//! **Exactly-once** (default): records are processed in batches, each inside
//! one Kafka transaction holding the batch's outputs, its changelog records,
//! its dead letters and its input offsets (`send_offsets_to_transaction` with
//! the consumer's group metadata, KIP-447). Readers with
//! `isolation.level=read_committed` see a batch entirely or not at all. When a
//! transaction is aborted (an error, or a rebalance), the task's state rolls
//! back to the last commit and the consumer rewinds to the committed offsets,
//! so the batch is processed again from scratch. A zombie instance is fenced:
//! by its transactional id when it restarts, and by the group generation when
//! it commits offsets for partitions it no longer owns.
//!
//! **At-least-once**: the same batches without transactions. At the end of a
//! batch every output is awaited and only then are the input offsets
//! committed. A crash, or a failed batch, repeats the uncommitted batch.
//!
//! **Errors** are sorted into classes once (`classify`): retried in place,
//! the batch aborted and redone (a bounded number of times in a row, with a
//! growing pause: `redo`), the input set aside when Kafka refuses for good
//! what the task wrote for it (`recovery`), a fenced producer replaced, or
//! the run ended with an error naming the topic and Kafka's reason. With
//! `exit_at_end`, a run ends Ok only once everything read is committed.
//!
//! Outputs carry the timestamp of the input record they came from, as in
//! Kafka Streams: an order's creation time travels with its decision, so a
//! reader downstream can tell how old the event it processes is. The engine
//! records that age for every record it processes (`EngineStats::latency`).
//! What it commits is counted in the service's metrics too.
//!
//! A record the task rejects as poison goes to `<input>.DLQ` with headers
//! naming the error and its source (`dead_letters`), and its offset is
//! committed like any other: a partition never gets stuck.
//!
//! The engine is synchronous and runs on the caller's thread (the services
//! give it a thread of its own): librdkafka's transactional calls block, and
//! rebalance callbacks run inside `poll`, on this same thread, between two
//! records.
//!
//! The files, by role: `options` (what it is asked, what it reports),
//! `clients` and `contexts` (its Kafka clients and their callbacks),
//! `core` (the loop), `batch` (the open batch's books), `assignment`
//! (rebalances), `changelog` (restoring state, offset markers, resets),
//! `commit`, `verdict` and `recovery`, `classify`, `redo` and `retry`
//! (failures), `limits` (record sizes),
//! `dead_letters`, `task` (what it runs), `journal` (state that rolls
//! back without being copied) and `hold_back` (flow control: a stage that
//! waits while the stage after it is far behind).

mod assignment;
mod batch;
mod changelog;
mod classify;
mod clients;
mod commit;
mod contexts;
mod core;
mod dead_letters;
mod hold_back;
mod journal;
mod limits;
mod options;
mod recovery;
mod redo;
mod retry;
pub mod task;
mod verdict;

pub use changelog::{changelogs_of, reset_record, stages_of};
pub use classify::{classify, Class};
pub use dead_letters::{dlq_headers, dlq_topic};
pub use hold_back::HoldBack;
pub use journal::Journaled;
pub use limits::{record_batch_bytes, Limits};
pub use options::{EngineOptions, EngineStats, Guarantee};
pub use task::{OutRecord, Poison, SetAside, Task, Versioned};

use tokio_util::sync::CancellationToken;

use crate::config::{overrides, KafkaSettings};
use crate::error::Result;

/// Runs `task` until `stop` is cancelled or, with `exit_at_end`, until
/// everything assigned is read and committed; commits what is open and
/// returns. Blocks the calling thread.
pub fn run<T: Task>(
    settings: &KafkaSettings,
    options: &EngineOptions,
    task: &mut T,
    stop: &CancellationToken,
) -> Result<EngineStats> {
    overrides::check(&settings.overrides, options.guarantee.promise())?;
    let (consumer, mut core) = core::Core::new(settings, options, task, stop)?;
    let ran = core.run(&consumer).map(|()| {
        core.stats.latency = core.latencies.summary();
        core.stats.held = core.assigned.iter().copied().collect();
        std::mem::take(&mut core.stats)
    });
    drop(core);
    clients::close_within(consumer, CLOSE_LIMIT);
    ran
}

/// How long closing the group consumer may take when the engine stops.
const CLOSE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
