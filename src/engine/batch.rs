//! The open batch's bookkeeping, no Kafka in it: which input records it
//! processed and where each input partition will stand once it commits,
//! the state changes it will write to the changelog (the last value per
//! key), how many records it wrote per topic, and how old its inputs were.
//!
//! Every input record gets a sequence number, engine-wide and increasing,
//! which travels with the records written for it as their delivery opaque:
//! when the broker refuses one, the delivery report names the input that
//! produced it (`input`), so that input, and no other, can be set aside.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::domain::latency::Latencies;

/// The delivery opaque of records that no single input produced: the
/// changelog's coalesced writes, offset markers and reset records.
pub const ENGINE_RECORD: u64 = 0;

/// A changelog value waiting for its batch's commit, and its timestamp.
pub type ChangelogValue = (Vec<u8>, Option<i64>);

/// An input record: partition and offset.
pub type Input = (i32, i64);

/// The batch in hand.
#[derive(Debug)]
pub struct Batch {
    /// When it was opened (its commit interval counts from here).
    pub started: Instant,
    /// The sequence number of its first input.
    first: u64,
    /// Its inputs in the order processed: input `first + i` is `inputs[i]`.
    inputs: Vec<Input>,
    /// Per input partition, the offset its commit will record.
    next: BTreeMap<i32, i64>,
    /// Inputs processed, dead letters included.
    pub consumed: u64,
    /// Inputs dead-lettered instead of processed.
    pub dead_lettered: u64,
    /// State changes: the last value per (partition, key), with the
    /// timestamp of the input that wrote it. Written at commit: a key
    /// changed by a thousand records in one batch costs one record.
    changelog: BTreeMap<(i32, Vec<u8>), ChangelogValue>,
    /// Records written per topic (the changelog aside).
    outputs: BTreeMap<String, u64>,
    /// How old its inputs were when processed (those that count).
    pub latencies: Latencies,
    /// Whether Kafka may have committed it although its commit failed: the
    /// commit was asked for (the transaction's end, or the offsets') and did
    /// not fail in a way that says it did not happen.
    pub may_have_committed: bool,
}

impl Batch {
    /// A batch whose first input will get sequence number `first` (> 0).
    pub fn open(first: u64) -> Self {
        debug_assert!(first > ENGINE_RECORD);
        Self {
            started: Instant::now(),
            first,
            inputs: Vec::new(),
            next: BTreeMap::new(),
            consumed: 0,
            dead_lettered: 0,
            changelog: BTreeMap::new(),
            outputs: BTreeMap::new(),
            latencies: Latencies::default(),
            may_have_committed: false,
        }
    }

    /// Takes in an input record; returns its sequence number.
    pub fn admit(&mut self, partition: i32, offset: i64) -> u64 {
        let sequence = self.first + self.inputs.len() as u64;
        self.inputs.push((partition, offset));
        self.next.insert(partition, offset + 1);
        self.consumed += 1;
        sequence
    }

    /// The sequence number the next batch starts from.
    pub fn following(&self) -> u64 {
        self.first + self.inputs.len() as u64
    }

    /// The input with sequence number `sequence`, if it is this batch's.
    pub fn input(&self, sequence: u64) -> Option<Input> {
        let index = sequence.checked_sub(self.first)?;
        self.inputs.get(usize::try_from(index).ok()?).copied()
    }

    /// Moves a partition's commit position on without a record: past
    /// transaction markers at its end.
    pub fn advance(&mut self, partition: i32, position: i64) {
        let next = self.next.entry(partition).or_insert(position);
        *next = (*next).max(position);
    }

    /// Where each input partition will stand once this batch commits.
    pub fn next_offsets(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }

    /// A state change for the changelog: the last one per key wins.
    pub fn write_state(&mut self, partition: i32, key: Vec<u8>, value: ChangelogValue) {
        self.changelog.insert((partition, key), value);
    }

    /// The state changes to write, once.
    pub fn take_state(&mut self) -> BTreeMap<(i32, Vec<u8>), ChangelogValue> {
        std::mem::take(&mut self.changelog)
    }

    /// Counts a record written to `topic`.
    pub fn wrote(&mut self, topic: &str) {
        match self.outputs.get_mut(topic) {
            Some(count) => *count += 1,
            None => {
                self.outputs.insert(topic.to_owned(), 1);
            }
        }
    }

    /// Records written per topic.
    pub fn outputs(&self) -> &BTreeMap<String, u64> {
        &self.outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_numbered_and_found_by_number() {
        let mut batch = Batch::open(10);
        assert_eq!(batch.admit(0, 5), 10);
        assert_eq!(batch.admit(1, 7), 11);
        assert_eq!(batch.admit(0, 6), 12);
        assert_eq!(batch.input(11), Some((1, 7)));
        assert_eq!(batch.input(9), None, "an earlier batch's");
        assert_eq!(batch.input(13), None);
        assert_eq!(batch.input(ENGINE_RECORD), None);
        assert_eq!(batch.following(), 13);
        assert_eq!(batch.consumed, 3);
    }

    #[test]
    fn commit_positions_follow_the_last_input_and_markers_at_the_end() {
        let mut batch = Batch::open(1);
        batch.admit(0, 5);
        batch.admit(0, 6);
        batch.advance(0, 9); // past two transaction markers
        batch.advance(1, 3); // a partition with no records, only markers
        batch.advance(0, 4); // never backwards
        assert_eq!(
            batch.next_offsets().iter().collect::<Vec<_>>(),
            [(&0, &9), (&1, &3)]
        );
    }

    #[test]
    fn the_last_state_change_per_key_is_written_once() {
        let mut batch = Batch::open(1);
        batch.write_state(0, b"SKU-1".to_vec(), (b"9".to_vec(), Some(1)));
        batch.write_state(0, b"SKU-1".to_vec(), (b"8".to_vec(), Some(2)));
        batch.write_state(1, b"SKU-1".to_vec(), (b"5".to_vec(), Some(3)));
        let state = batch.take_state();
        assert_eq!(state.len(), 2);
        assert_eq!(state[&(0, b"SKU-1".to_vec())], (b"8".to_vec(), Some(2)));
        assert!(batch.take_state().is_empty(), "taken once");
    }

    #[test]
    fn outputs_are_counted_per_topic() {
        let mut batch = Batch::open(1);
        for topic in ["a", "b", "a"] {
            batch.wrote(topic);
        }
        assert_eq!(
            batch.outputs().iter().collect::<Vec<_>>(),
            [(&"a".to_string(), &2), (&"b".to_string(), &1)]
        );
    }
}
