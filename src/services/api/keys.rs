//! The API's keys stage, per partition of `<group>-keys-repartition`: the
//! one place each `Idempotency-Key` is decided. An order placed under a key
//! reaches it keyed by that key (so every request of a key, from any
//! instance, lands in one partition, in one order); the first publishes its
//! `OrderPlaced` to the orders topic and becomes the key's answer, later
//! ones publish nothing. Each batch is one transaction holding the request
//! offsets, the orders and the answers, so a key yields one order through
//! retries, restarts and SIGKILLs.
//!
//! State: the answers (`key:<key>` → `KeyAnswer`), in
//! `<group>-keys-changelog`, which every API instance also follows to
//! answer retries: an answer is there once its order is in the orders
//! topic, in the same transaction. A key is forgotten (a tombstone) once
//! its order is older than the retention, so the state holds the keys of
//! the retention period, never every key ever used.

use crate::domain::placing::{KeyAnswer, KeyedOrder};
use crate::engine::{Journaled, OutRecord, Poison, Task};

/// Changelog keys: `key:<Idempotency-Key>`.
pub const KEY_PREFIX: &[u8] = b"key:";

/// How often keys past the retention are looked for (wall clock).
const SWEEP_EVERY_MS: i64 = 60_000;

pub struct KeysTask {
    pub changelog: String,
    pub orders_topic: String,
    /// How long a key is remembered after its order was placed.
    pub retention_ms: i64,
    /// (partition, key) → its answer.
    answers: Journaled<(i32, String), KeyAnswer>,
    last_sweep_ms: i64,
}

impl KeysTask {
    pub fn new(changelog: String, orders_topic: String, retention_ms: i64) -> Self {
        Self {
            changelog,
            orders_topic,
            retention_ms,
            answers: Journaled::default(),
            last_sweep_ms: 0,
        }
    }

    fn write(&self, partition: i32, key: &str, answer: Option<&KeyAnswer>) -> OutRecord {
        let changelog_key = [KEY_PREFIX, key.as_bytes()].concat();
        OutRecord::change(&self.changelog, partition, &changelog_key, answer)
    }
}

impl Task for KeysTask {
    fn assigned(&mut self, _partition: i32) {}

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let Some(key) = key
            .strip_prefix(KEY_PREFIX)
            .and_then(|k| std::str::from_utf8(k).ok())
        else {
            return;
        };
        let entry = (partition, key.to_owned());
        if value.is_empty() {
            self.answers.remove_committed(&entry);
        } else if let Ok(answer) = serde_json::from_slice::<KeyAnswer>(value) {
            self.answers.insert_committed(entry, answer);
        } else {
            tracing::warn!(
                partition,
                key,
                "ignoring an unreadable keys changelog record"
            );
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.answers.retain_committed(|(p, _)| *p != partition);
    }

    fn process(
        &mut self,
        partition: i32,
        _timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let keyed = KeyedOrder::decode(payload).map_err(Poison)?;
        let entry = (partition, keyed.key.clone());
        if self.answers.contains_key(&entry) {
            // The key's first order stands; its answer is in the changelog.
            return Ok(());
        }
        let answer = keyed.answer();
        out.push(OutRecord {
            topic: self.orders_topic.clone(),
            partition: None,
            key: keyed.order.order_id.to_string().into_bytes(),
            payload: keyed.order.encode(),
            timestamp: Some(answer.placed_at),
        });
        out.push(self.write(partition, &keyed.key, Some(&answer)));
        self.answers.insert(entry, answer);
        Ok(())
    }

    fn tick(&mut self, now_ms: i64, out: &mut Vec<OutRecord>) {
        if now_ms - self.last_sweep_ms < SWEEP_EVERY_MS {
            return;
        }
        self.last_sweep_ms = now_ms;
        let horizon = now_ms - self.retention_ms;
        let expired: Vec<(i32, String)> = self
            .answers
            .keys()
            .filter(|entry| {
                self.answers
                    .get(entry)
                    .is_some_and(|a| a.placed_at < horizon)
            })
            .cloned()
            .collect();
        for (partition, key) in expired {
            out.push(self.write(partition, &key, None));
            self.answers.remove(&(partition, key));
        }
    }

    fn commit(&mut self) {
        self.answers.commit();
    }

    fn rollback(&mut self) {
        self.answers.rollback();
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::events::LineItem;
    use crate::domain::placing::OrderRequest;

    const DAY_MS: i64 = 86_400_000;

    fn keyed(key: &str, id: u128, at_ms: i64) -> Vec<u8> {
        let request = OrderRequest {
            customer_id: "c".into(),
            items: vec![LineItem {
                sku: "SKU-1".into(),
                quantity: 1,
                unit_price_cents: 1,
            }],
        };
        let at = chrono::DateTime::from_timestamp_millis(at_ms).unwrap();
        KeyedOrder {
            key: key.into(),
            fingerprint: request.fingerprint(),
            order: request.place(Uuid::from_u128(id), at).unwrap(),
        }
        .encode()
    }

    fn task() -> KeysTask {
        KeysTask::new("api-keys-changelog".into(), "OrderEvents".into(), DAY_MS)
    }

    fn orders(out: &[OutRecord]) -> usize {
        out.iter().filter(|r| r.topic == "OrderEvents").count()
    }

    #[test]
    fn a_key_publishes_its_first_order_only_even_after_a_restore() {
        let mut first = task();
        let mut out = Vec::new();
        first.process(0, None, &keyed("k", 1, 0), &mut out).unwrap();
        first.process(0, None, &keyed("k", 2, 5), &mut out).unwrap();
        first.commit();
        assert_eq!(orders(&out), 1);
        assert_eq!(out[0].key, Uuid::from_u128(1).to_string().into_bytes());

        // Another instance takes the partition over from the changelog.
        let mut second = task();
        for record in out.iter().filter(|r| r.topic == "api-keys-changelog") {
            second.restore(0, &record.key, &record.payload);
        }
        let mut more = Vec::new();
        second
            .process(0, None, &keyed("k", 3, 9), &mut more)
            .unwrap();
        assert_eq!(orders(&more), 0);
    }

    #[test]
    fn an_aborted_batch_forgets_its_keys() {
        let mut task = task();
        let mut out = Vec::new();
        task.process(0, None, &keyed("k", 1, 0), &mut out).unwrap();
        task.rollback();
        let mut redo = Vec::new();
        task.process(0, None, &keyed("k", 1, 0), &mut redo).unwrap();
        assert_eq!(orders(&redo), 1, "the redo publishes it");
    }

    #[test]
    fn keys_past_the_retention_are_forgotten_with_a_tombstone() {
        let mut task = task();
        let mut out = Vec::new();
        task.process(0, None, &keyed("old", 1, 0), &mut out)
            .unwrap();
        task.process(1, None, &keyed("new", 2, DAY_MS), &mut out)
            .unwrap();
        task.commit();
        let mut swept = Vec::new();
        task.tick(DAY_MS + 1, &mut swept);
        task.commit();
        assert_eq!(swept.len(), 1);
        assert_eq!(
            (swept[0].key.as_slice(), swept[0].payload.is_empty()),
            (&b"key:old"[..], true)
        );
        let mut again = Vec::new();
        task.process(0, None, &keyed("old", 3, DAY_MS), &mut again)
            .unwrap();
        assert_eq!(orders(&again), 1, "a forgotten key is a new order");
    }
}
