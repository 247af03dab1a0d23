//! [`Journaled`], a map a task keeps its state in that goes back to its last
//! commit without ever copying itself: each change first remembers the value
//! its key had (once per key per batch), a commit forgets those, a rollback
//! puts them back. A commit costs what the batch touched, never the size of
//! the state (a stock of a million SKUs, the orders in flight).

use std::collections::BTreeMap;
use std::ops::RangeBounds;

/// A `BTreeMap` with an undo log since the last commit.
#[derive(Debug, Clone)]
pub struct Journaled<K: Ord + Clone, V: Clone> {
    map: BTreeMap<K, V>,
    /// Each key changed since the last commit, with its value then (None:
    /// it was absent).
    undo: BTreeMap<K, Option<V>>,
}

impl<K: Ord + Clone, V: Clone> Default for Journaled<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            undo: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone> Journaled<K, V> {
    /// The working value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// The value of `key` as of the last commit.
    pub fn committed(&self, key: &K) -> Option<&V> {
        match self.undo.get(key) {
            Some(before) => before.as_ref(),
            None => self.map.get(key),
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// The working entries from `from` on, in key order.
    pub fn range_from(&self, from: &K) -> impl Iterator<Item = (&K, &V)> {
        self.map.range(from.clone()..)
    }

    /// The working entries in `range`, in key order (either end).
    pub fn range(&self, range: impl RangeBounds<K>) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.map.range(range)
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.remember(&key);
        self.map.insert(key, value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        if !self.map.contains_key(key) {
            return None;
        }
        self.remember(key);
        self.map.remove(key)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        if !self.map.contains_key(key) {
            return None;
        }
        self.remember(key);
        self.map.get_mut(key)
    }

    /// The value of `key`, inserted from `default` when absent.
    pub fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        self.remember(&key);
        self.map.entry(key).or_insert_with(default)
    }

    fn remember(&mut self, key: &K) {
        if !self.undo.contains_key(key) {
            self.undo.insert(key.clone(), self.map.get(key).cloned());
        }
    }

    /// What changed since the last commit is committed.
    pub fn commit(&mut self) {
        self.undo.clear();
    }

    /// Back to the last commit.
    pub fn rollback(&mut self) {
        for (key, before) in std::mem::take(&mut self.undo) {
            match before {
                Some(value) => self.map.insert(key, value),
                None => self.map.remove(&key),
            };
        }
    }

    /// The working keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    /// The working values, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// The value of `key` to change outside any transaction (a restore
    /// from the changelog), committed at once.
    pub fn get_mut_committed(&mut self, key: &K) -> Option<&mut V> {
        self.undo.remove(key);
        self.map.get_mut(key)
    }

    /// A change outside any transaction (a restore from the changelog),
    /// committed at once.
    pub fn insert_committed(&mut self, key: K, value: V) {
        self.undo.remove(&key);
        self.map.insert(key, value);
    }

    /// A removal outside any transaction, committed at once.
    pub fn remove_committed(&mut self, key: &K) {
        self.undo.remove(key);
        self.map.remove(key);
    }

    /// Drops every entry `keep` refuses, committed at once (a partition
    /// revoked: its state goes with it).
    pub fn retain_committed(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.map.retain(|key, _| keep(key));
        self.undo.retain(|key, _| keep(key));
    }

    /// Keys changed since the last commit (what a commit costs).
    pub fn pending_changes(&self) -> usize {
        self.undo.len()
    }

    /// What a changelog must hear of the batch, in key order: each key
    /// whose value differs from its last commit, with its working value
    /// (None: it is gone, a tombstone). A key changed and changed back, or
    /// made and removed within the batch, is not among them: written once
    /// a batch, however often the batch touched it.
    pub fn changes(&self) -> impl Iterator<Item = (&K, Option<&V>)>
    where
        V: PartialEq,
    {
        self.undo.iter().filter_map(|(key, before)| {
            let now = self.map.get(key);
            (now != before.as_ref()).then_some((key, now))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_puts_back_exactly_what_the_batch_changed() {
        let mut state = Journaled::default();
        state.insert("a", 1);
        state.insert("b", 2);
        state.commit();
        assert_eq!(state.pending_changes(), 0);

        *state.get_mut(&"a").unwrap() += 10;
        *state.get_mut(&"a").unwrap() += 10;
        state.remove(&"b");
        state.insert("c", 3);
        assert_eq!(state.pending_changes(), 3, "a key is remembered once");
        assert_eq!(state.get(&"a"), Some(&21));
        assert_eq!(state.committed(&"a"), Some(&1));
        assert_eq!(state.committed(&"b"), Some(&2));
        assert_eq!(state.committed(&"c"), None);

        state.rollback();
        assert_eq!(
            state.range_from(&"").collect::<Vec<_>>(),
            [(&"a", &1), (&"b", &2)]
        );

        *state.get_or_insert_with("c", || 0) += 5;
        state.commit();
        state.rollback();
        assert_eq!(state.get(&"c"), Some(&5), "committed changes stay");
    }

    #[test]
    fn changes_are_what_differs_from_the_last_commit() {
        let mut state = Journaled::default();
        state.insert("kept", 1);
        state.insert("gone", 2);
        state.insert("same", 3);
        state.commit();
        *state.get_mut(&"kept").unwrap() += 1;
        *state.get_mut(&"kept").unwrap() += 1;
        state.remove(&"gone");
        *state.get_mut(&"same").unwrap() += 1;
        *state.get_mut(&"same").unwrap() -= 1;
        state.insert("brief", 4);
        state.remove(&"brief");
        state.insert("new", 5);
        assert_eq!(
            state.changes().collect::<Vec<_>>(),
            [(&"gone", None), (&"kept", Some(&3)), (&"new", Some(&5))]
        );
        state.commit();
        assert_eq!(state.changes().count(), 0);
    }

    #[test]
    fn changes_outside_a_transaction_are_committed_at_once() {
        let mut state = Journaled::default();
        state.insert((1, "x"), 1);
        state.insert_committed((2, "y"), 2);
        state.retain_committed(|&(partition, _)| partition != 1);
        state.rollback();
        assert_eq!(
            state.range_from(&(0, "")).collect::<Vec<_>>(),
            [(&(2, "y"), &2)]
        );
        state.remove_committed(&(2, "y"));
        state.rollback();
        assert_eq!(state.get(&(2, "y")), None);
    }
}
