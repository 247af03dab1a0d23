//! Flow control between stages: a stage that writes to a topic another
//! group reads (inventory's split stage, to the stock stage's input) stops
//! reading its own input while that group's lag there is over a bound, and
//! goes on once it is down to half of it. So the work in flight between two
//! stages, and the state it makes the stages after them hold (inventory's
//! orders in flight), stays bounded however large a backlog is waiting.
//! Kafka Streams has no such thing (its repartition topics buffer without
//! limit, its state stores spill to disk); Flink's credit-based flow
//! control does it between operators.
//!
//! The lag is read from Kafka, so it holds across instances: a thread asks
//! every [`EVERY`] for the group's committed offsets and the topic's
//! last stable offsets (the admin client reads `read_committed`, librdkafka's
//! default). Between two readings the stage counts what it wrote there
//! itself (still in its open transaction, or committed after the reading),
//! so it stops within one record of the bound, not one reading late.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::KafkaSettings;
use crate::error::Result;
use crate::kafka::admin::Admin;

/// How often the lag is read.
pub const EVERY: Duration = Duration::from_millis(250);

/// Hold the stage's input back while `group` has more than `max_lag`
/// records of `topic` unread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldBack {
    pub group: String,
    pub topic: String,
    pub max_lag: i64,
}

/// Whether the stage may read on, kept up to date by a thread of its own.
pub(super) struct Gate {
    topic: String,
    max_lag: i64,
    shared: Arc<Shared>,
    /// Records written to the topic since the last reading.
    written: AtomicI64,
    /// Whether the stage is held back now.
    holding: AtomicBool,
    /// Dropped to stop the reader.
    stop: Option<mpsc::Sender<()>>,
}

#[derive(Default)]
struct Shared {
    /// The group's lag at the last reading (0 until one succeeded).
    lag: AtomicI64,
    /// Set by each reading, cleared when the stage takes it in.
    fresh: AtomicBool,
}

impl Gate {
    /// Starts reading `hold_back`'s lag.
    pub(super) fn start(settings: &KafkaSettings, hold_back: &HoldBack) -> Result<Self> {
        let admin = Admin::without_probe(settings)?;
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = mpsc::channel();
        {
            let (shared, hold_back) = (Arc::clone(&shared), hold_back.clone());
            std::thread::Builder::new()
                .name("hold back".into())
                .spawn(move || read_lag(&admin, &hold_back, &shared, &stopped))
                .expect("a thread starts");
        }
        Ok(Self {
            topic: hold_back.topic.clone(),
            max_lag: hold_back.max_lag,
            shared,
            written: AtomicI64::new(0),
            holding: AtomicBool::new(false),
            stop: Some(stop),
        })
    }

    /// A record is being written to `topic`.
    pub(super) fn wrote(&self, topic: &str) {
        if topic == self.topic {
            self.written.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the stage must hold back now: over the bound it holds,
    /// and goes on again at half of it.
    pub(super) fn holding(&self) -> bool {
        if self.shared.fresh.swap(false, Ordering::AcqRel) {
            self.written.store(0, Ordering::Relaxed);
        }
        let ahead = self.shared.lag.load(Ordering::Acquire) + self.written.load(Ordering::Relaxed);
        let holding = self.holding.load(Ordering::Relaxed);
        let now = holds(holding, ahead, self.max_lag);
        if now != holding {
            self.holding.store(now, Ordering::Relaxed);
            tracing::debug!(ahead, max = self.max_lag, holding = now, "hold back");
        }
        now
    }
}

/// Whether a stage `ahead` of the group downstream holds back: over
/// `max_lag` it starts to, and it goes on at half of it (so that it does not
/// stop and start again at every record).
fn holds(holding: bool, ahead: i64, max_lag: i64) -> bool {
    ahead > if holding { max_lag / 2 } else { max_lag }
}

impl Drop for Gate {
    /// Tells the reader to stop, without waiting: a reading in hand may
    /// take its timeout while a broker is down, and the engine's stop must
    /// not wait for it.
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// Reads the lag every [`EVERY`] until `stopped` (its sender dropped). A
/// reading that fails (a broker down) keeps the last one: the stage's own
/// writes still count on top of it.
fn read_lag(admin: &Admin, hold_back: &HoldBack, shared: &Shared, stopped: &mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        match lag(admin, hold_back) {
            Ok(lag) => {
                shared.lag.store(lag, Ordering::Release);
                shared.fresh.store(true, Ordering::Release);
            }
            Err(error) => {
                tracing::debug!(%error, topic = %hold_back.topic, "reading the lag to hold back by")
            }
        }
    }
}

/// How many records of the topic the group has not read (committed past),
/// over all its partitions; nothing committed counts from the log's start.
fn lag(admin: &Admin, hold_back: &HoldBack) -> Result<i64> {
    let partitions = admin.partitions(&hold_back.topic)?;
    let committed = admin.committed(&hold_back.group, &hold_back.topic, &partitions)?;
    let mut lag = 0;
    for &partition in &partitions {
        let (low, high) = admin.watermarks(&hold_back.topic, partition)?;
        let from = committed.get(&partition).copied().flatten().unwrap_or(low);
        lag += (high - from).max(0);
    }
    Ok(lag)
}

#[cfg(test)]
mod tests {
    use super::holds;

    #[test]
    fn holds_over_the_bound_and_goes_on_at_half_of_it() {
        let mut holding = false;
        let mut seen = Vec::new();
        for ahead in [0, 100, 101, 80, 51, 50, 0, 100, 101] {
            holding = holds(holding, ahead, 100);
            seen.push(holding);
        }
        assert_eq!(
            seen,
            [false, false, true, true, true, false, false, false, true]
        );
    }
}
