//! What the stream engine (`crate::engine`) runs: a [`Task`] that turns input
//! records into output records and keeps state per input partition, and
//! [`Versioned`], the committed/working pair of a small value (a few
//! counters) a task rolls back to when a transaction is aborted. State that
//! grows (stock levels, orders in flight, windows) is kept in a
//! [`Journaled`](super::Journaled) map instead, which a commit never copies.
//!
//! A task sees bytes and partitions, never a Kafka client: the engine owns
//! consuming, producing, transactions, restoring and dead-lettering.

use super::limits::Limits;

/// A record a task wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: String,
    /// A fixed partition (changelogs: the input partition); None lets the
    /// producer partition by key.
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    /// Its timestamp, ms since the epoch; None: that of the input being
    /// processed (a task that writes for an earlier input gives that one's).
    pub timestamp: Option<i64>,
}

impl OutRecord {
    /// A state change of `partition` for the changelog `topic`: `value` as
    /// JSON under `key`.
    pub fn state(topic: &str, partition: i32, key: &[u8], value: impl serde::Serialize) -> Self {
        Self {
            topic: topic.to_owned(),
            partition: Some(partition),
            key: key.to_vec(),
            payload: serde_json::to_vec(&value).expect("state serializes"),
            timestamp: None,
        }
    }

    /// A key's new state (`state`), or a tombstone when it is gone (None):
    /// what a task's journaled changes write to its changelog.
    pub fn change(
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<impl serde::Serialize>,
    ) -> Self {
        match value {
            Some(value) => Self::state(topic, partition, key, value),
            None => Self {
                topic: topic.to_owned(),
                partition: Some(partition),
                key: key.to_vec(),
                payload: Vec::new(),
                timestamp: None,
            },
        }
    }
}

impl OutRecord {
    /// The same record to every one of `partitions` of `topic` (a marker
    /// each downstream partition must see: progress, a stage finished),
    /// with `timestamp` (None: the input's).
    pub fn to_every(
        topic: &str,
        partitions: i32,
        key: &[u8],
        payload: &[u8],
        timestamp: Option<i64>,
    ) -> Vec<Self> {
        (0..partitions)
            .map(|target| Self {
                topic: topic.to_owned(),
                partition: Some(target),
                key: key.to_vec(),
                payload: payload.to_vec(),
                timestamp,
            })
            .collect()
    }
}

/// Why an input record cannot be processed; the engine dead-letters it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison(pub String);

/// A record the task cannot write where it belongs (a decision too large
/// for its topic) and that is not the input being processed: the engine
/// dead-letters it like an input, with `reason`, and names the input being
/// processed as its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub reason: String,
}

/// A stateful consume-transform-produce step. State lives per input
/// partition, is written to a changelog partition of the same number (through
/// `OutRecord`s the task emits), and is rebuilt from it on assignment.
pub trait Task: Send {
    /// Partition `partition` was assigned: start its state empty (`restore`
    /// then replays its changelog into it).
    fn assigned(&mut self, partition: i32);

    /// One changelog record of `partition`, oldest first; an empty value is
    /// a tombstone (the task wrote an empty payload: the key is gone).
    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]);

    /// Every changelog record of `partition` has been restored: a task that
    /// restores into its working state makes it the committed state here.
    fn restored(&mut self, _partition: i32) {}

    /// Partition `partition` was revoked: drop its state.
    fn revoked(&mut self, partition: i32);

    /// Processes one input record (its timestamp: `timestamp`), pushing
    /// what it writes into `out`.
    fn process(
        &mut self,
        partition: i32,
        timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison>;

    /// An input record of `partition` was dead-lettered instead of processed;
    /// a task that counts them writes its count to `out`.
    /// (`payload` is the record's: a task whose state refers to it, an
    /// order waiting for this answer, settles that here.)
    fn dead_lettered(&mut self, _partition: i32, _payload: &[u8], _out: &mut Vec<OutRecord>) {}

    /// Records the task set aside while processing the last input (or
    /// while handling its dead letter); the engine dead-letters them.
    fn take_set_aside(&mut self) -> Vec<SetAside> {
        Vec::new()
    }

    /// The record size limits of the topics the engine writes to, read at
    /// start and again when Kafka refused a record as too large: a task
    /// that writes a record on behalf of an input other than the one being
    /// processed checks its size here and sets it aside itself.
    fn limits(&mut self, _limits: &Limits) {}

    /// The open batch is about to commit: a task that aggregates per batch
    /// writes what it gathered (records written here have no single input,
    /// so none is set aside for them: Kafka refusing one ends the run).
    fn before_commit(&mut self, _out: &mut Vec<OutRecord>) {}

    /// Called between records, about every 100 ms, with the wall clock (ms
    /// since the epoch): for what depends on time passing rather than on
    /// records (a partition gone idle).
    fn tick(&mut self, _now_ms: i64, _out: &mut Vec<OutRecord>) {}

    /// A batch run (`exit_at_end`) has read every one of `partitions` (all
    /// it holds) to its end: a task whose readers downstream wait for the
    /// end says so here.
    fn reached_end(&mut self, _partitions: &[i32], _out: &mut Vec<OutRecord>) {}

    /// Whether a batch run that has read everything may stop: a task that
    /// waits for its upstream to finish says no until it has.
    fn may_stop(&self) -> bool {
        true
    }

    /// Everything processed since the last commit is now committed.
    fn commit(&mut self);

    /// Everything processed since the last commit was discarded: go back to
    /// the committed state.
    fn rollback(&mut self);
}

/// A value with a committed version and a working version: a commit
/// copies it, so it is for values of a fixed small size.
#[derive(Debug, Clone, Default)]
pub struct Versioned<T: Clone> {
    committed: T,
    working: T,
}

impl<T: Clone> Versioned<T> {
    pub fn new(value: T) -> Self {
        Self {
            committed: value.clone(),
            working: value,
        }
    }

    pub fn working(&self) -> &T {
        &self.working
    }

    pub fn working_mut(&mut self) -> &mut T {
        &mut self.working
    }

    pub fn committed(&self) -> &T {
        &self.committed
    }

    /// Changes both versions alike: for what happens outside transactions
    /// (assignment, restore), when working equals committed.
    pub fn both_mut(&mut self, change: impl Fn(&mut T)) {
        change(&mut self.committed);
        change(&mut self.working);
    }

    pub fn commit(&mut self) {
        self.committed.clone_from(&self.working);
    }

    pub fn rollback(&mut self) {
        self.working.clone_from(&self.committed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_returns_to_the_last_commit() {
        let mut value = Versioned::new(vec![1]);
        value.working_mut().push(2);
        value.commit();
        value.working_mut().push(3);
        assert_eq!(value.working(), &vec![1, 2, 3]);
        value.rollback();
        assert_eq!(value.working(), &vec![1, 2]);
        value.both_mut(|v| v.push(9));
        assert_eq!(
            (value.working(), value.committed()),
            (&vec![1, 2, 9], &vec![1, 2, 9])
        );
    }
}
