//! Inventory's third stage, per partition of `<group>-orders-repartition`
//! (as many as the orders topic has: partition n holds the orders of its
//! partition n): gathers the answers to an order's lines (all answers of
//! an order come back to its home partition) and, once every line is
//! answered, decides the order:
//! Reserved only if every line is; otherwise Rejected, and the units its
//! reserved lines took go back to their SKUs, so no unit is leaked. Either
//! way each SKU's stock hears of it at once (a confirm or a release per
//! line, to `<group>-stock-repartition`): requests there may be waiting
//! for those units. The decision is the one `InventoryChecked` of the
//! order on the inventory topic, keyed by order id, with the schema it
//! always had.
//!
//! Decisions leave in the order the orders were placed: the split stage
//! sends each order here before its requests, and an order decided while
//! an earlier one still waits for an answer waits behind it. So a
//! partition of the inventory topic holds its decisions in the order of
//! the orders topic's partition (when both have as many partitions), as
//! it did before inventory had stages, and event time in it is as ordered
//! as the orders were: analytics judges lateness on that.
//!
//! State: the orders in flight (placed, not yet decided), in
//! `<group>-orders-changelog` keyed by order id, deleted (a tombstone) once
//! decided: it holds the orders in flight, never the orders ever seen. A
//! decision too large for the inventory topic is set aside (dead-lettered
//! with the reason) and its order's units released.
//!
//! A batch run: once every stock partition has said it finished, every
//! answer is in and every order decided: this partition says so to every
//! stock partition, after its last confirm or release.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::events::{InventoryChecked, Status, SCHEMA_VERSION};
use crate::domain::lines::{
    sku_partition, LineOutcome, OrderRecord, Pending, Settled, StockRecord, Upstream,
};
use crate::engine::{
    record_batch_bytes, Journaled, Limits, OutRecord, Poison, SetAside, Task, Versioned,
};
use crate::metrics::{DecisionLabel, Metrics};

/// Changelog keys: `order:<id>` an order in flight, `fin:<n>` a stock
/// partition finished.
const ORDER_PREFIX: &str = "order:";
const FINISHED_PREFIX: &str = "fin:";

/// Decisions of this run, committed, for the summary and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decided {
    pub reserved: u64,
    pub rejected: u64,
}

pub struct OrdersTask {
    pub changelog: String,
    pub inventory_topic: String,
    pub stock_topic: String,
    /// Partitions of the stock topic: how many `Finished` to wait for, and
    /// where this partition's own `Finished` goes.
    pub stock_partitions: i32,
    /// This batch run: only its `Finished` markers count.
    run: String,
    /// Partitions held.
    held: BTreeSet<i32>,
    /// (partition, order id) → the order in flight.
    pending: Journaled<(i32, Uuid), Pending>,
    /// (partition, seq) → order id: the orders in flight in placed order.
    queue: Journaled<(i32, u64), Uuid>,
    /// (partition, stock partition) that said it finished.
    finished: Journaled<(i32, i32), ()>,
    decided: Versioned<Decided>,
    limits: Limits,
    set_aside: Vec<SetAside>,
    metrics: Arc<Metrics>,
}

impl OrdersTask {
    pub fn new(
        changelog: String,
        inventory_topic: String,
        stock_topic: String,
        stock_partitions: i32,
        run: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            run,
            changelog,
            inventory_topic,
            stock_topic,
            stock_partitions,
            held: BTreeSet::new(),
            pending: Journaled::default(),
            queue: Journaled::default(),
            finished: Journaled::default(),
            decided: Versioned::default(),
            limits: Limits::default(),
            set_aside: Vec::new(),
            metrics,
        }
    }

    /// The decisions this run committed.
    pub fn decided(&self) -> Decided {
        *self.decided.committed()
    }

    fn all_finished(&self, partition: i32) -> bool {
        (0..self.stock_partitions).all(|p| self.finished.contains_key(&(partition, p)))
    }

    /// The first order in flight of `partition`, in placed order.
    fn first(&self, partition: i32) -> Option<(u64, Uuid)> {
        self.queue
            .range((partition, 0)..=(partition, u64::MAX))
            .next()
            .map(|(&(_, seq), &id)| (seq, id))
    }

    /// The place of an order placed now in `partition`.
    fn next_seq(&self, partition: i32) -> u64 {
        self.queue
            .range((partition, 0)..=(partition, u64::MAX))
            .next_back()
            .map_or(0, |(&(_, seq), _)| seq + 1)
    }

    /// Forgets an order in flight (decided or given up): out of the state
    /// (and so, as a tombstone, out of the changelog when the batch ends).
    fn forget(&mut self, partition: i32, order_id: Uuid) -> Pending {
        let pending = self
            .pending
            .remove(&(partition, order_id))
            .expect("an order in flight");
        let place = (partition, pending.seq);
        if pending.is_placed() && self.queue.get(&place) == Some(&order_id) {
            self.queue.remove(&place);
        }
        pending
    }

    /// An order placed or answered: once it is settled, the stock stage
    /// hears it at once (the requests waiting for its units go on), even
    /// while its decision waits behind an earlier order's; then the orders
    /// at the front are decided. (Its state goes to the changelog when the
    /// batch ends.)
    fn answered(&mut self, partition: i32, order_id: Uuid, out: &mut Vec<OutRecord>) {
        let pending = self
            .pending
            .get_mut(&(partition, order_id))
            .expect("an order in flight");
        let settled = pending.settle().filter(|_| !pending.stock_told);
        pending.stock_told |= settled.is_some();
        if let Some(settled) = settled {
            self.tell_stock(order_id, &settled, out);
        }
        self.drain(partition, out);
    }

    /// Decides, in placed order, every order at the front of `partition`
    /// whose lines are all answered.
    fn drain(&mut self, partition: i32, out: &mut Vec<OutRecord>) {
        while let Some((_, order_id)) = self.first(partition) {
            let pending = &self.pending.get(&(partition, order_id)).expect("queued");
            let Some(settled) = pending.settle() else {
                return;
            };
            let pending = self.forget(partition, order_id);
            self.decide(order_id, &pending, settled, out);
        }
    }

    /// Publishes an order's decision, with the releases of a rejection; a
    /// decision its topic cannot take is set aside and every unit the
    /// order took goes back.
    fn decide(
        &mut self,
        order_id: Uuid,
        pending: &Pending,
        settled: Settled,
        out: &mut Vec<OutRecord>,
    ) {
        let checked = InventoryChecked {
            event_type: InventoryChecked::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id,
            status: settled.decision.status,
            reason: settled.decision.reason,
            detail: settled.decision.detail.clone(),
            event_time: DateTime::<Utc>::from_timestamp_millis(pending.event_time)
                .unwrap_or_default(),
            processed_at: Utc::now(),
        };
        let key = order_id.to_string().into_bytes();
        let payload = checked.encode();
        let size = record_batch_bytes(Some(key.len()), Some(payload.len()), &[]);
        if let Some(reason) = self.limits.too_large(&self.inventory_topic, size) {
            // Every unit it took goes back, confirmed already or not.
            if settled.decision.status == Status::Reserved || !pending.stock_told {
                self.release_taken(order_id, pending, out);
            }
            self.set_aside.push(SetAside {
                key,
                payload,
                reason,
            });
            return;
        }
        if !pending.stock_told {
            self.tell_stock(order_id, &settled, out);
        }
        let decided = self.decided.working_mut();
        match checked.status {
            Status::Reserved => decided.reserved += 1,
            Status::Rejected => decided.rejected += 1,
        }
        out.push(OutRecord {
            topic: self.inventory_topic.clone(),
            partition: None,
            key,
            payload,
            // The order's own time, as if decided while it was processed.
            timestamp: pending.created,
        });
    }

    /// Every unit an order's answered lines took, back to their stock.
    fn release_taken(&self, order_id: Uuid, pending: &Pending, out: &mut Vec<OutRecord>) {
        for (sku, quantity, outcome) in pending.answers.values() {
            if *outcome == LineOutcome::Reserved {
                out.push(release(
                    &self.stock_topic,
                    self.stock_partitions,
                    order_id,
                    sku.clone(),
                    *quantity,
                ));
            }
        }
    }

    /// Tells each SKU's stock what became of the units its line took:
    /// kept, or back for the requests after it.
    fn tell_stock(&self, order_id: Uuid, settled: &Settled, out: &mut Vec<OutRecord>) {
        out.extend(
            settled
                .to_stock(order_id)
                .into_iter()
                .map(|record| to_stock(&self.stock_topic, self.stock_partitions, record)),
        );
    }
}

fn order_key(order_id: Uuid) -> String {
    format!("{ORDER_PREFIX}{order_id}")
}

/// A record about a SKU, to its stock partition (of `partitions`).
fn to_stock(stock_topic: &str, partitions: i32, record: StockRecord) -> OutRecord {
    let sku = record.sku().expect("a record about a SKU");
    OutRecord {
        topic: stock_topic.to_owned(),
        partition: Some(sku_partition(sku, partitions)),
        key: sku.as_bytes().to_vec(),
        payload: record.encode(),
        timestamp: None,
    }
}

/// Units a line of `order_id` took, back to their SKU's stock partition.
fn release(
    stock_topic: &str,
    partitions: i32,
    order_id: Uuid,
    sku: String,
    quantity: u64,
) -> OutRecord {
    let record = StockRecord::Release {
        order_id,
        sku,
        quantity,
    };
    to_stock(stock_topic, partitions, record)
}

impl Task for OrdersTask {
    fn assigned(&mut self, partition: i32) {
        self.held.insert(partition);
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(id) = key.strip_prefix(ORDER_PREFIX) {
            let Ok(id) = id.parse::<Uuid>() else {
                return;
            };
            // A placed order's earlier state goes either way; a tombstone
            // (no value) says it was decided.
            // (A batch writes its changelog keys in key order: an order
            // placed in the seq another one just left may come first, so
            // only this order's own place in the queue goes.)
            if let Some(before) = self.pending.get(&(partition, id)) {
                let place = (partition, before.seq);
                if before.is_placed() && self.queue.get(&place) == Some(&id) {
                    self.queue.remove_committed(&place);
                }
                self.pending.remove_committed(&(partition, id));
            }
            if let Ok(pending) = serde_json::from_slice::<Pending>(value) {
                if pending.is_placed() {
                    self.queue.insert_committed((partition, pending.seq), id);
                }
                self.pending.insert_committed((partition, id), pending);
            }
        } else if let Some(n) = key.strip_prefix(FINISHED_PREFIX) {
            let this_run = serde_json::from_slice::<String>(value).is_ok_and(|r| r == self.run);
            if let (Ok(n), true) = (n.parse(), this_run) {
                self.finished.insert_committed((partition, n), ());
            }
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.held.remove(&partition);
        self.pending.retain_committed(|(p, _)| *p != partition);
        self.queue.retain_committed(|(p, _)| *p != partition);
        self.finished.retain_committed(|(p, _)| *p != partition);
    }

    fn process(
        &mut self,
        partition: i32,
        _timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        let record = OrderRecord::decode(payload).map_err(|e| Poison(e.to_string()))?;
        match record {
            OrderRecord::Placed {
                order_id,
                lines,
                event_time,
                created,
            } => {
                let seq = self.next_seq(partition);
                let mut pending = Pending::placed(seq, lines, event_time, created);
                if let Some(early) = self.pending.get(&(partition, order_id)) {
                    if early.is_placed() {
                        // Placed again while in flight: under at-least-once
                        // the split stage redid a batch (exactly-once never
                        // writes an order twice). It is the same order.
                        return Ok(());
                    }
                    // Answers that came first (at-least-once: nothing
                    // orders what the split stage writes to two topics).
                    pending.answers = early.answers.clone();
                    pending.waits = early.waits;
                }
                self.queue.insert((partition, seq), order_id);
                self.pending.insert((partition, order_id), pending);
                self.answered(partition, order_id, out);
            }
            OrderRecord::Answer { request, outcome } => {
                let order_id = request.order_id;
                // Under exactly-once an order is always placed here before
                // its answers come (the answers are written after the
                // transaction that placed it); under at-least-once an
                // answer may come first, and waits for its order.
                let pending = self
                    .pending
                    .get_or_insert_with((partition, order_id), Pending::default);
                pending.answer(&request, outcome);
                // A line that holds units, of an order that waits: its stock
                // must not wait for them.
                let holds_for_a_waiting_order = pending.waits > 0
                    && outcome == LineOutcome::Reserved
                    && pending.settle().is_none();
                if holds_for_a_waiting_order {
                    let order_waits = StockRecord::OrderWaits {
                        order_id,
                        sku: request.sku.clone(),
                        depth: pending.waits,
                    };
                    out.push(to_stock(
                        &self.stock_topic,
                        self.stock_partitions,
                        order_waits,
                    ));
                }
                self.answered(partition, order_id, out);
            }
            OrderRecord::Waiting {
                order_id, depth, ..
            } => {
                let pending = self
                    .pending
                    .get_or_insert_with((partition, order_id), Pending::default);
                if depth <= pending.waits || pending.stock_told {
                    return Ok(());
                }
                pending.waits = depth;
                // The units its lines hold may stay held a while: the
                // requests waiting for them hear how deep it waits.
                let notices: Vec<OutRecord> = pending
                    .held_skus()
                    .map(|sku| {
                        let order_waits = StockRecord::OrderWaits {
                            order_id,
                            sku: sku.to_owned(),
                            depth,
                        };
                        to_stock(&self.stock_topic, self.stock_partitions, order_waits)
                    })
                    .collect();
                out.extend(notices);
                self.answered(partition, order_id, out);
            }
            OrderRecord::Finished {
                partition: stock,
                run,
            } => {
                if run != self.run {
                    return Ok(()); // an earlier batch run's
                }
                let newly = self.finished.insert((partition, stock), ()).is_none();
                let key = format!("{FINISHED_PREFIX}{stock}");
                out.push(OutRecord::state(
                    &self.changelog,
                    partition,
                    key.as_bytes(),
                    &self.run,
                ));
                // Every order of this partition is decided and its releases
                // sent: say so to the stock stage, after them.
                if newly && self.all_finished(partition) {
                    let finished = StockRecord::Finished {
                        from: Upstream::Orders,
                        partition,
                        run: self.run.clone(),
                    }
                    .encode();
                    out.extend(OutRecord::to_every(
                        &self.stock_topic,
                        self.stock_partitions,
                        partition.to_string().as_bytes(),
                        &finished,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }

    /// An answer set aside (Kafka refused what processing it wrote): its order can never be decided, so what its
    /// lines took goes back and it is forgotten, leaking no unit, and the
    /// orders behind it go on. The dead letter holds the answer, and so the
    /// order id.
    fn dead_lettered(&mut self, partition: i32, payload: &[u8], out: &mut Vec<OutRecord>) {
        let Ok(OrderRecord::Answer { request, outcome }) = OrderRecord::decode(payload) else {
            return;
        };
        if outcome == LineOutcome::Reserved {
            out.push(release(
                &self.stock_topic,
                self.stock_partitions,
                request.order_id,
                request.sku.clone(),
                request.quantity,
            ));
        }
        if self.pending.contains_key(&(partition, request.order_id)) {
            let pending = self.forget(partition, request.order_id);
            // Without the line just released (it is not among the answers).
            if !pending.stock_told {
                self.release_taken(request.order_id, &pending, out);
            }
            self.drain(partition, out);
        }
    }

    fn take_set_aside(&mut self) -> Vec<SetAside> {
        std::mem::take(&mut self.set_aside)
    }

    fn limits(&mut self, limits: &Limits) {
        self.limits = limits.clone();
    }

    fn may_stop(&self) -> bool {
        self.held
            .iter()
            .all(|&partition| self.all_finished(partition))
    }

    /// The orders the batch changed go to the changelog, once each: an
    /// order placed and decided within one batch never does, and one
    /// answered line by line is written once, not once an answer.
    fn before_commit(&mut self, out: &mut Vec<OutRecord>) {
        for (&(partition, order_id), now) in self.pending.changes() {
            let key = order_key(order_id);
            out.push(OutRecord::change(
                &self.changelog,
                partition,
                key.as_bytes(),
                now,
            ));
        }
    }

    fn commit(&mut self) {
        let (now, before) = (*self.decided.working(), *self.decided.committed());
        for (status, n) in [
            ("reserved", now.reserved - before.reserved),
            ("rejected", now.rejected - before.rejected),
        ] {
            self.metrics
                .decisions
                .get_or_create(&DecisionLabel { status })
                .inc_by(n);
        }
        self.decided.commit();
        self.pending.commit();
        self.queue.commit();
        self.finished.commit();
    }

    fn rollback(&mut self) {
        self.decided.rollback();
        self.pending.rollback();
        self.queue.rollback();
        self.finished.rollback();
        self.set_aside.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lines::LineRequest;
    use crate::metrics::Service;

    const CHANGELOG: &str = "orders-changelog";
    const DECISIONS: &str = "InventoryEvents";

    fn task() -> OrdersTask {
        let metrics = Arc::new(Metrics::new(Service::Inventory));
        let mut task = OrdersTask::new(
            CHANGELOG.into(),
            DECISIONS.into(),
            "stock-repartition".into(),
            1,
            "run".into(),
            metrics,
        );
        task.assigned(0);
        task
    }

    fn placed(id: u128, lines: u32) -> OrderRecord {
        OrderRecord::Placed {
            order_id: Uuid::from_u128(id),
            lines,
            event_time: 1_000,
            created: None,
        }
    }

    fn answer(id: u128, line: u32, outcome: LineOutcome) -> OrderRecord {
        let request = LineRequest {
            order_id: Uuid::from_u128(id),
            line,
            sku: format!("SKU-{line}"),
            quantity: 1,
            home: 0,
            placed: 1_000,
        };
        OrderRecord::Answer { request, outcome }
    }

    /// Processes `records` as one batch: its changelog records (key,
    /// whether a tombstone) and how many decisions it published.
    fn batch(task: &mut OrdersTask, records: &[OrderRecord]) -> (Vec<(String, bool)>, usize) {
        let mut out = Vec::new();
        for record in records {
            task.process(0, None, &record.encode(), &mut out).unwrap();
        }
        task.before_commit(&mut out);
        task.commit();
        let changelog = out
            .iter()
            .filter(|r| r.topic == CHANGELOG)
            .map(|r| {
                let key = String::from_utf8(r.key.clone()).unwrap();
                (key, r.payload.is_empty())
            })
            .collect();
        (
            changelog,
            out.iter().filter(|r| r.topic == DECISIONS).count(),
        )
    }

    #[test]
    fn an_order_is_written_to_the_changelog_once_a_batch_and_only_while_in_flight() {
        let mut task = task();
        let key = |id: u128| format!("{ORDER_PREFIX}{}", Uuid::from_u128(id));
        // Placed, and decided within the same batch: nothing to keep.
        let quick = [
            placed(1, 2),
            answer(1, 0, LineOutcome::Reserved),
            answer(1, 1, LineOutcome::Reserved),
        ];
        assert_eq!(batch(&mut task, &quick), (vec![], 1));
        // Placed and answered in part: its state, once.
        let slow = [placed(2, 3), answer(2, 0, LineOutcome::Reserved)];
        assert_eq!(batch(&mut task, &slow), (vec![(key(2), false)], 0));
        let more = [answer(2, 1, LineOutcome::Reserved)];
        assert_eq!(batch(&mut task, &more), (vec![(key(2), false)], 0));
        // Decided: a tombstone.
        let last = [answer(2, 2, LineOutcome::MockFailure)];
        assert_eq!(batch(&mut task, &last), (vec![(key(2), true)], 1));
    }

    #[test]
    fn an_order_placed_again_while_in_flight_is_the_same_order() {
        // At-least-once: the split stage redid a batch.
        let mut task = task();
        let again = [
            placed(3, 2),
            answer(3, 0, LineOutcome::Reserved),
            placed(3, 2),
        ];
        batch(&mut task, &again);
        let rest = [answer(3, 1, LineOutcome::Reserved)];
        assert_eq!(
            batch(&mut task, &rest).1,
            1,
            "decided once, with both answers"
        );
    }
}
