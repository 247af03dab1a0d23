//! Inventory's second stage, per partition of `<group>-stock-repartition`:
//! the one stock of every SKU whose requests land here (by key). A request
//! takes its units when there are enough (never below zero), and they are
//! held for its order until the orders stage settles it: confirmed (the
//! order is reserved) or released (it is rejected: they go back). A
//! request that finds too few units waits while units held for older
//! orders may still come back (`lines::check`), and is asked again as each
//! of them is settled; so units a rejected order gives back go to the
//! requests after it, even the last ones. Answers go to
//! `<group>-orders-repartition`, to the order's home partition.
//!
//! State, in `<group>-stock-changelog`: the levels (keyed by SKU), the
//! units held and the requests waiting (keyed by order and SKU: orders in
//! flight, never the orders ever seen). When a partition is taken over,
//! the levels of the SKUs the stock file lists that it owns
//! (`sku_partition`) and have none yet are written, with the units of any
//! other SKU (`default`): so the changelog alone says what every SKU has,
//! for readers such as the API's `GET /stock/{sku}`. A stock file's level
//! is thus a SKU's first: once written, the changelog's level is the SKU's.
//!
//! Answers depend on the order of records in the partition's log, which
//! is the order the split and orders stages' instances wrote them in: a
//! function of this topic's log, not of the orders topic's (a fresh run
//! over the same orders may interleave partitions differently).
//!
//! A batch run: once every split partition has said it finished and no
//! request waits, this partition says so downstream after its last answer;
//! it may stop once the orders stage has said so too (after its last
//! confirm or release).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::lines::{
    check, initial_level, is_zero, short, sku_partition, Check, LineOutcome, LineRequest,
    OrderRecord, StockRecord, Upstream, MAX_WAIT_DEPTH,
};
use crate::domain::stock::StockConfig;
use crate::engine::{Journaled, OutRecord, Poison, Task};

/// Changelog keys: `sku:<SKU>` a level, `held:<order>:<SKU>` units held,
/// `wait:<order>:<SKU>` a request waiting, `fin:split:<n>` and
/// `fin:orders:<n>` an upstream partition finished, `default` the units of
/// a SKU no level is written for.
const SKU_PREFIX: &str = "sku:";
const DEFAULT_KEY: &str = "default";
const HELD_PREFIX: &str = "held:";
const WAITING_PREFIX: &str = "wait:";
const FINISHED_PREFIX: &str = "fin:";

/// (partition, SKU, order id): a line of an order in flight.
type LineKey = (i32, String, Uuid);

/// Units a line took, held until its order is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Held {
    quantity: u64,
    /// The order's rank (`LineRequest::rank`).
    placed: i64,
    /// How deep its order waits on other SKUs (0: it does not).
    #[serde(default, skip_serializing_if = "is_zero")]
    depth: u8,
}

/// A request waiting, as the changelog holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Waiting {
    request: LineRequest,
    /// The request's record timestamp, for its answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    created: Option<i64>,
    /// How deep it waits, as its order was told.
    #[serde(default)]
    depth: u8,
    /// It is in the changelog (one answered in the batch it came in never
    /// is).
    #[serde(skip)]
    logged: bool,
}

pub struct StockTask {
    pub changelog: String,
    pub orders_topic: String,
    /// Partitions of the orders and split stages' inputs: how many
    /// `Finished` of each kind to wait for.
    pub upstream_partitions: i32,
    /// Partitions of the orders topic: a `Finished` goes to each.
    pub orders_partitions: i32,
    /// Partitions of its own input: which SKUs a partition owns.
    pub partitions: i32,
    pub stock: StockConfig,
    /// This batch run: only its `Finished` markers count.
    run: String,
    /// Partitions held.
    assigned: BTreeSet<i32>,
    /// Partitions restored whose stock file levels are to be written (by
    /// the next `tick`), and those written in the open batch (again after
    /// a rollback).
    to_seed: BTreeSet<i32>,
    seeding: BTreeSet<i32>,
    /// (partition, SKU) → units left, for the SKUs requests have touched.
    levels: Journaled<(i32, String), u64>,
    /// Units taken for orders not yet settled.
    taken: Journaled<LineKey, Held>,
    /// Requests waiting for held units to come back.
    waiting: Journaled<LineKey, Waiting>,
    /// (partition, SKU) whose waiting requests this batch must look at
    /// again: a short request came, or held units were settled.
    touched: BTreeSet<(i32, String)>,
    /// Partition → the timestamp of its last record processed: what its
    /// `Finished` carries (it follows from the records before it, and is
    /// no new event: no latency is measured on it).
    last_timestamp: BTreeMap<i32, i64>,
    /// (partition, stage, upstream partition) that said it finished.
    finished: Journaled<(i32, Upstream, i32), ()>,
    /// Partitions that said they finished (a batch run).
    announced: Journaled<i32, ()>,
}

impl StockTask {
    pub fn new(
        changelog: String,
        orders_topic: String,
        upstream_partitions: i32,
        orders_partitions: i32,
        partitions: i32,
        stock: StockConfig,
        run: String,
    ) -> Self {
        Self {
            run,
            changelog,
            orders_topic,
            upstream_partitions,
            orders_partitions,
            partitions,
            stock,
            assigned: BTreeSet::new(),
            to_seed: BTreeSet::new(),
            seeding: BTreeSet::new(),
            levels: Journaled::default(),
            taken: Journaled::default(),
            waiting: Journaled::default(),
            touched: BTreeSet::new(),
            last_timestamp: BTreeMap::new(),
            finished: Journaled::default(),
            announced: Journaled::default(),
        }
    }

    /// Writes the levels of the stock file's SKUs `partition` owns and has
    /// none for, and the units of every other SKU (see the module's doc).
    fn seed(&mut self, partition: i32, out: &mut Vec<OutRecord>) {
        let listed: Vec<(String, u64)> = self
            .stock
            .initial
            .iter()
            .filter(|(sku, _)| sku_partition(sku, self.partitions) == partition)
            .filter(|(sku, _)| !self.levels.contains_key(&(partition, sku.to_string())))
            .map(|(sku, &units)| (sku.clone(), units))
            .collect();
        for (sku, units) in listed {
            self.set_level(partition, &sku, units);
        }
        out.push(OutRecord::state(
            &self.changelog,
            partition,
            DEFAULT_KEY.as_bytes(),
            self.stock.initial_per_sku,
        ));
        self.seeding.insert(partition);
    }

    fn all_finished(&self, partition: i32, from: Upstream) -> bool {
        (0..self.upstream_partitions).all(|p| self.finished.contains_key(&(partition, from, p)))
    }

    fn level(&self, partition: i32, sku: &str) -> u64 {
        match self.levels.get(&(partition, sku.to_owned())) {
            Some(&level) => level,
            None => initial_level(&self.stock, sku),
        }
    }

    /// Sets a level (written to the changelog when the batch ends, once a
    /// SKU however many requests took from it).
    fn set_level(&mut self, partition: i32, sku: &str, level: u64) {
        self.levels.insert((partition, sku.to_owned()), level);
    }

    /// The lines of `sku` in `partition`, in a map keyed by `LineKey`.
    fn lines_of<'a, V: Clone>(
        map: &'a Journaled<LineKey, V>,
        partition: i32,
        sku: &str,
    ) -> impl Iterator<Item = (&'a LineKey, &'a V)> {
        let sku = sku.to_owned();
        map.range((partition, sku.clone(), Uuid::nil())..=(partition, sku, Uuid::max()))
    }

    /// Answers a request: its answer goes back to the one partition that
    /// gathers its order's answers; units it reserved are held.
    fn answer(
        &mut self,
        partition: i32,
        request: &LineRequest,
        outcome: LineOutcome,
        created: Option<i64>,
        out: &mut Vec<OutRecord>,
    ) {
        if outcome == LineOutcome::Reserved {
            let left = self.level(partition, &request.sku);
            self.set_level(partition, &request.sku, left - request.quantity);
            let held = Held {
                quantity: request.quantity,
                placed: request.placed,
                depth: 0,
            };
            self.taken.insert(line_key(partition, request), held);
        }
        self.send_answer(request, outcome, created, out);
    }

    /// The answer carries its request's timestamp (`created`), its order's,
    /// even when it is sent later than the request came.
    fn send_answer(
        &self,
        request: &LineRequest,
        outcome: LineOutcome,
        created: Option<i64>,
        out: &mut Vec<OutRecord>,
    ) {
        out.push(OutRecord {
            topic: self.orders_topic.clone(),
            partition: Some(request.home),
            key: request.order_id.to_string().into_bytes(),
            payload: OrderRecord::Answer {
                request: request.clone(),
                outcome,
            }
            .encode(),
            timestamp: created,
        });
    }

    /// A line's entry in the changelog (`None`: a tombstone).
    fn write(
        &self,
        prefix: &str,
        (partition, sku, order_id): &LineKey,
        value: Option<&impl Serialize>,
        out: &mut Vec<OutRecord>,
    ) {
        let key = format!("{prefix}{order_id}:{sku}");
        let partition = *partition;
        out.push(OutRecord::change(
            &self.changelog,
            partition,
            key.as_bytes(),
            value,
        ));
    }

    fn reserve(
        &mut self,
        partition: i32,
        request: LineRequest,
        created: Option<i64>,
        out: &mut Vec<OutRecord>,
    ) {
        let key = line_key(partition, &request);
        if self.waiting.contains_key(&key) {
            return; // a request seen again (at-least-once) waits already
        }
        if self.taken.contains_key(&key) {
            // Seen again, and answered: the same answer, the units once.
            self.send_answer(&request, LineOutcome::Reserved, created, out);
            return;
        }
        let left = self.level(partition, &request.sku);
        match check(&self.stock, &request, left) {
            Check::Answer(outcome) => self.answer(partition, &request, outcome, created, out),
            // Answered (or left waiting) when the batch ends, once.
            Check::Short => {
                self.touched.insert((partition, request.sku.clone()));
                let waiting = Waiting {
                    request,
                    created,
                    depth: 0,
                    logged: false,
                };
                self.waiting.insert(key, waiting);
            }
        }
    }

    /// An order settled for `sku`: its held units are kept (`given_back`
    /// 0) or come back; the requests waiting are looked at when the batch
    /// ends.
    fn settle(&mut self, partition: i32, order_id: Uuid, sku: &str, given_back: u64) {
        let key = (partition, sku.to_owned(), order_id);
        self.taken.remove(&key);
        if given_back > 0 {
            let level = self.level(partition, sku) + given_back;
            self.set_level(partition, sku, level);
        }
        self.touched.insert((partition, sku.to_owned()));
    }

    /// The order that `sku`'s units are held for waits elsewhere, `depth`
    /// links deep: the requests waiting here count on them only if that
    /// keeps their chain short enough.
    fn order_waits(&mut self, partition: i32, order_id: Uuid, sku: &str, depth: u8) {
        let key = (partition, sku.to_owned(), order_id);
        let Some(held) = self.taken.get(&key).copied() else {
            return; // settled meanwhile
        };
        if depth <= held.depth {
            return;
        }
        self.taken.insert(key, Held { depth, ..held });
        self.touched.insert((partition, sku.to_owned()));
    }

    /// The requests waiting for one SKU, oldest first: each is answered
    /// (`lines::short`) or waits on, beside one pass over the units held
    /// in rank order. Once a batch per SKU touched, so that the work stays
    /// in proportion to the orders in flight.
    fn answer_waiting(&mut self, partition: i32, sku: &str, out: &mut Vec<OutRecord>) {
        let mut waiting: Vec<Waiting> = Self::lines_of(&self.waiting, partition, sku)
            .map(|(_, waiting)| waiting.clone())
            .collect();
        if waiting.is_empty() {
            return;
        }
        waiting.sort_by_key(|w| w.request.rank());
        let mut held: Vec<((i64, Uuid), u64, u8)> = Self::lines_of(&self.taken, partition, sku)
            .filter(|(_, held)| held.depth < MAX_WAIT_DEPTH)
            .map(|((_, _, order_id), held)| ((held.placed, *order_id), held.quantity, held.depth))
            .collect();
        held.sort_unstable();
        // Units held before each request, and how deep the deepest of
        // those orders waits.
        // Units the waiting requests before each one count on: the units
        // left and held are shared out in rank order, so that no more wait
        // than those units could ever serve.
        let (mut next, mut before, mut deepest, mut claimed) = (0, 0, 0, 0);
        for mut waiting in waiting {
            let request = &waiting.request;
            while next < held.len() && held[next].0 < request.rank() {
                before += held[next].1;
                deepest = deepest.max(held[next].2);
                next += 1;
            }
            let key = line_key(partition, request);
            let left = self.level(partition, sku);
            let unclaimed = (left + before).saturating_sub(claimed);
            match short(request, left, unclaimed.saturating_sub(left)) {
                // It waits (first, or deeper than before): its order hears
                // how deep, and tells the stock of each line it holds.
                None if !waiting.logged || waiting.depth < deepest + 1 => {
                    let depth = deepest + 1;
                    let notice = OrderRecord::Waiting {
                        order_id: request.order_id,
                        line: request.line,
                        depth,
                    };
                    out.push(OutRecord {
                        topic: self.orders_topic.clone(),
                        partition: Some(request.home),
                        key: request.order_id.to_string().into_bytes(),
                        payload: notice.encode(),
                        timestamp: waiting.created,
                    });
                    waiting.depth = depth;
                    claimed += request.quantity;
                    self.write(WAITING_PREFIX, &key, Some(&waiting), out);
                    waiting.logged = true;
                    self.waiting.insert(key, waiting);
                }
                None => claimed += request.quantity,
                Some(outcome) => {
                    if waiting.logged {
                        self.write(WAITING_PREFIX, &key, None::<&Waiting>, out);
                    }
                    self.waiting.remove(&key);
                    if outcome == LineOutcome::Reserved {
                        before += request.quantity; // held now, before the next
                    }
                    let created = waiting.created;
                    self.answer(partition, &waiting.request, outcome, created, out);
                }
            }
        }
    }

    /// A batch run: once every split partition finished and no request
    /// waits, every request of this partition is answered: say so
    /// downstream (once), after the answers.
    fn announce_if_done(&mut self, partition: i32, out: &mut Vec<OutRecord>) {
        if self.announced.contains_key(&partition) || !self.all_finished(partition, Upstream::Split)
        {
            return;
        }
        let first_waiting = self
            .waiting
            .range_from(&(partition, String::new(), Uuid::nil()))
            .next();
        let none_waits = !matches!(first_waiting, Some(((p, _, _), _)) if *p == partition);
        if none_waits {
            self.announced.insert(partition, ());
            let finished = OrderRecord::Finished {
                partition,
                run: self.run.clone(),
            }
            .encode();
            let timestamp = self.last_timestamp.get(&partition).copied();
            out.extend(OutRecord::to_every(
                &self.orders_topic,
                self.orders_partitions,
                partition.to_string().as_bytes(),
                &finished,
                timestamp,
            ));
        }
    }
}

/// A record of the stock changelog, as a reader outside the stage (the
/// API's stock view) takes it: the changelog's format stays in this file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StockChange {
    /// The units left of a SKU (not counting those held).
    Level { sku: String, units: u64 },
    /// Units held for an order in flight; None: settled.
    Held {
        order_id: Uuid,
        sku: String,
        quantity: Option<u64>,
    },
    /// The units of a SKU no level is written for.
    Default(u64),
}

/// A changelog record as a `StockChange`; None for the stage's other
/// records (requests waiting, batch runs' markers) and the engine's.
pub fn read_change(key: &[u8], value: &[u8]) -> Option<StockChange> {
    let key = std::str::from_utf8(key).ok()?;
    if key == DEFAULT_KEY {
        return serde_json::from_slice(value).ok().map(StockChange::Default);
    }
    if let Some(sku) = key.strip_prefix(SKU_PREFIX) {
        let units = serde_json::from_slice(value).ok()?;
        let sku = sku.to_owned();
        return Some(StockChange::Level { sku, units });
    }
    let (order_id, sku) = key.strip_prefix(HELD_PREFIX).and_then(parse_line)?;
    let quantity = if value.is_empty() {
        None
    } else {
        Some(serde_json::from_slice::<Held>(value).ok()?.quantity)
    };
    Some(StockChange::Held {
        order_id,
        sku,
        quantity,
    })
}

fn line_key(partition: i32, request: &LineRequest) -> LineKey {
    (partition, request.sku.clone(), request.order_id)
}

/// `<order>:<SKU>` of a line's changelog key.
fn parse_line(rest: &str) -> Option<(Uuid, String)> {
    let (order_id, sku) = rest.split_once(':')?;
    Some((order_id.parse().ok()?, sku.to_owned()))
}

fn finished_key(from: Upstream, partition: i32) -> String {
    let from = match from {
        Upstream::Split => "split",
        Upstream::Orders => "orders",
    };
    format!("{FINISHED_PREFIX}{from}:{partition}")
}

impl Task for StockTask {
    fn assigned(&mut self, partition: i32) {
        self.assigned.insert(partition);
    }

    fn restore(&mut self, partition: i32, key: &[u8], value: &[u8]) {
        let key = String::from_utf8_lossy(key).into_owned();
        if let Some(sku) = key.strip_prefix(SKU_PREFIX) {
            if let Ok(level) = serde_json::from_slice::<u64>(value) {
                self.levels
                    .insert_committed((partition, sku.to_owned()), level);
            }
        } else if let Some((order_id, sku)) = key.strip_prefix(HELD_PREFIX).and_then(parse_line) {
            let key = (partition, sku, order_id);
            match serde_json::from_slice::<Held>(value) {
                Ok(held) => self.taken.insert_committed(key, held),
                Err(_) => self.taken.remove_committed(&key), // a tombstone
            }
        } else if let Some((order_id, sku)) = key.strip_prefix(WAITING_PREFIX).and_then(parse_line)
        {
            let key = (partition, sku, order_id);
            match serde_json::from_slice::<Waiting>(value) {
                Ok(waiting) => {
                    let logged = Waiting {
                        logged: true,
                        ..waiting
                    };
                    self.waiting.insert_committed(key, logged)
                }
                Err(_) => self.waiting.remove_committed(&key),
            }
        } else if let Some(rest) = key.strip_prefix(FINISHED_PREFIX) {
            let parsed = rest.split_once(':').and_then(|(from, n)| {
                let from = match from {
                    "split" => Upstream::Split,
                    "orders" => Upstream::Orders,
                    _ => return None,
                };
                Some((from, n.parse().ok()?))
            });
            let this_run = serde_json::from_slice::<String>(value).is_ok_and(|r| r == self.run);
            if let (Some((from, upstream)), true) = (parsed, this_run) {
                self.finished
                    .insert_committed((partition, from, upstream), ());
            }
        }
    }

    fn restored(&mut self, partition: i32) {
        self.to_seed.insert(partition);
    }

    fn tick(&mut self, _now_ms: i64, out: &mut Vec<OutRecord>) {
        for partition in std::mem::take(&mut self.to_seed) {
            self.seed(partition, out);
        }
    }

    fn revoked(&mut self, partition: i32) {
        self.assigned.remove(&partition);
        self.to_seed.remove(&partition);
        self.seeding.remove(&partition);
        self.levels.retain_committed(|(p, _)| *p != partition);
        self.taken.retain_committed(|(p, _, _)| *p != partition);
        self.waiting.retain_committed(|(p, _, _)| *p != partition);
        self.finished.retain_committed(|(p, _, _)| *p != partition);
        self.announced.retain_committed(|p| *p != partition);
    }

    fn process(
        &mut self,
        partition: i32,
        timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        if let Some(timestamp) = timestamp {
            self.last_timestamp.insert(partition, timestamp);
        }
        let record = StockRecord::decode(payload).map_err(|e| Poison(e.to_string()))?;
        match record {
            StockRecord::Reserve(request) => self.reserve(partition, request, timestamp, out),
            StockRecord::Release {
                order_id,
                sku,
                quantity,
            } => self.settle(partition, order_id, &sku, quantity),
            StockRecord::Confirm { order_id, sku } => self.settle(partition, order_id, &sku, 0),
            StockRecord::OrderWaits {
                order_id,
                sku,
                depth,
            } => self.order_waits(partition, order_id, &sku, depth),
            StockRecord::Finished {
                from,
                partition: upstream,
                run,
            } => {
                if run != self.run {
                    return Ok(()); // an earlier batch run's
                }
                self.finished.insert((partition, from, upstream), ());
                let key = finished_key(from, upstream);
                out.push(OutRecord::state(
                    &self.changelog,
                    partition,
                    key.as_bytes(),
                    &self.run,
                ));
            }
        }
        Ok(())
    }

    fn may_stop(&self) -> bool {
        self.assigned.iter().all(|&partition| {
            self.all_finished(partition, Upstream::Split)
                && self.all_finished(partition, Upstream::Orders)
        })
    }

    /// The requests waiting for a SKU touched in this batch are answered
    /// now, once; the levels and held units the batch changed go to the
    /// changelog, once each (units held and settled within the batch never
    /// do); then a batch run's partitions may say they finished.
    fn before_commit(&mut self, out: &mut Vec<OutRecord>) {
        for (partition, sku) in std::mem::take(&mut self.touched) {
            self.answer_waiting(partition, &sku, out);
        }
        let held: Vec<(LineKey, Option<Held>)> = self
            .taken
            .changes()
            .map(|(key, held)| (key.clone(), held.copied()))
            .collect();
        for (key, held) in held {
            self.write(HELD_PREFIX, &key, held.as_ref(), out);
        }
        for ((partition, sku), level) in self.levels.changes() {
            let key = format!("{SKU_PREFIX}{sku}");
            // A level is never removed, only set.
            if let Some(level) = level {
                out.push(OutRecord::state(
                    &self.changelog,
                    *partition,
                    key.as_bytes(),
                    level,
                ));
            }
        }
        let assigned: Vec<i32> = self.assigned.iter().copied().collect();
        for partition in assigned {
            self.announce_if_done(partition, out);
        }
    }

    fn commit(&mut self) {
        self.seeding.clear();
        self.levels.commit();
        self.taken.commit();
        self.waiting.commit();
        self.finished.commit();
        self.announced.commit();
    }

    fn rollback(&mut self) {
        self.to_seed.append(&mut self.seeding);
        self.touched.clear();
        self.levels.rollback();
        self.taken.rollback();
        self.waiting.rollback();
        self.finished.rollback();
        self.announced.rollback();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const CHANGELOG: &str = "stock-changelog";
    const ANSWERS: &str = "orders-repartition";

    fn task() -> StockTask {
        let stock = StockConfig {
            initial_per_sku: 3,
            initial: BTreeMap::new(),
            failure_rate: 0.0,
            seed: 1,
        };
        let mut task = StockTask::new(
            CHANGELOG.into(),
            ANSWERS.into(),
            1,
            1,
            1,
            stock,
            "run".into(),
        );
        task.assigned(0);
        task
    }

    /// A request of order `id`, placed at `placed`, for `quantity` SKU-1.
    fn request(id: u128, placed: i64, quantity: u64) -> StockRecord {
        StockRecord::Reserve(LineRequest {
            order_id: Uuid::from_u128(id),
            line: 0,
            sku: "SKU-1".into(),
            quantity,
            home: 0,
            placed,
        })
    }

    fn release(id: u128, quantity: u64) -> StockRecord {
        StockRecord::Release {
            order_id: Uuid::from_u128(id),
            sku: "SKU-1".into(),
            quantity,
        }
    }

    fn confirm(id: u128) -> StockRecord {
        StockRecord::Confirm {
            order_id: Uuid::from_u128(id),
            sku: "SKU-1".into(),
        }
    }

    /// Processes `record` as a batch of its own; the answers it sent
    /// (order id, outcome), and every record it wrote.
    fn feed(
        task: &mut StockTask,
        record: StockRecord,
    ) -> (Vec<(u128, LineOutcome)>, Vec<OutRecord>) {
        feed_batch(task, &[record])
    }

    /// Processes `records` as one batch.
    fn feed_batch(
        task: &mut StockTask,
        records: &[StockRecord],
    ) -> (Vec<(u128, LineOutcome)>, Vec<OutRecord>) {
        let mut out = Vec::new();
        for record in records {
            task.process(0, None, &record.encode(), &mut out).unwrap();
        }
        task.before_commit(&mut out);
        task.commit();
        let answers = out
            .iter()
            .filter(|r| r.topic == ANSWERS)
            .filter_map(|r| match OrderRecord::decode(&r.payload).unwrap() {
                OrderRecord::Answer { request, outcome } => {
                    Some((request.order_id.as_u128(), outcome))
                }
                _ => None,
            })
            .collect();
        (answers, out)
    }

    #[test]
    fn a_partition_taken_over_writes_its_stock_file_levels_and_the_default_once() {
        let stock = StockConfig {
            initial_per_sku: 3,
            initial: (0..20).map(|n| (format!("SKU-{n}"), n)).collect(),
            failure_rate: 0.0,
            seed: 1,
        };
        let mut task = StockTask::new(CHANGELOG.into(), ANSWERS.into(), 2, 2, 2, stock, "r".into());
        // Partition 1 already has a level for one of its SKUs.
        let kept = (0..20)
            .map(|n| format!("SKU-{n}"))
            .find(|sku| sku_partition(sku, 2) == 1)
            .unwrap();
        for partition in [0, 1] {
            task.assigned(partition);
        }
        let sku_key = format!("{SKU_PREFIX}{kept}");
        task.restore(1, sku_key.as_bytes(), b"100");
        task.restored(0);
        task.restored(1);
        let seeded = |task: &mut StockTask| {
            let mut out = Vec::new();
            task.tick(0, &mut out);
            task.before_commit(&mut out);
            let mut written: Vec<(i32, String, String)> = out
                .iter()
                .map(|r| {
                    let key = String::from_utf8(r.key.clone()).unwrap();
                    let value = String::from_utf8(r.payload.clone()).unwrap();
                    (r.partition.unwrap(), key, value)
                })
                .collect();
            written.sort();
            written
        };
        let written = seeded(&mut task);
        task.rollback();
        // Aborted: the next tick writes the same again.
        assert_eq!(seeded(&mut task), written);
        task.commit();
        let mut expected: Vec<(i32, String, String)> = (0..20)
            .map(|n| (format!("SKU-{n}"), n))
            .filter(|(sku, _)| *sku != kept)
            .map(|(sku, n)| (sku_partition(&sku, 2), format!("sku:{sku}"), n.to_string()))
            .chain([0, 1].map(|p| (p, DEFAULT_KEY.to_owned(), "3".to_owned())))
            .collect();
        expected.sort();
        assert_eq!(written, expected);
        assert_eq!(task.level(1, &kept), 100);
        assert_eq!(seeded(&mut task), [], "once");
    }

    #[test]
    fn readers_outside_the_stage_read_levels_held_units_and_the_default() {
        let mut task = task();
        let (_, out) = feed(&mut task, request(1, 10, 2));
        let changes: Vec<StockChange> = out
            .iter()
            .filter(|r| r.topic == CHANGELOG)
            .filter_map(|r| read_change(&r.key, &r.payload))
            .collect();
        let held = StockChange::Held {
            order_id: Uuid::from_u128(1),
            sku: "SKU-1".into(),
            quantity: Some(2),
        };
        let level = StockChange::Level {
            sku: "SKU-1".into(),
            units: 1,
        };
        assert_eq!(changes, [held, level]);
        let (_, out) = feed(&mut task, release(1, 2));
        let settled: Vec<StockChange> = out
            .iter()
            .filter_map(|r| read_change(&r.key, &r.payload))
            .collect();
        assert!(matches!(
            settled[0],
            StockChange::Held { quantity: None, .. }
        ));
        assert_eq!(read_change(b"default", b"7"), Some(StockChange::Default(7)));
        assert_eq!(read_change(b"fin:split:0", b"\"r\""), None);
    }

    #[test]
    fn a_request_waits_for_units_an_older_order_may_give_back() {
        let mut task = task();
        assert_eq!(
            feed(&mut task, request(1, 10, 2)).0,
            [(1, LineOutcome::Reserved)]
        );
        // Younger, and 1 left: waits on order 1's 2 units.
        assert_eq!(feed(&mut task, request(2, 20, 2)).0, []);
        // Older than every holder: never waits, out of stock at once.
        assert_eq!(
            feed(&mut task, request(3, 5, 2)).0,
            [(3, LineOutcome::OutOfStock { left: 1 })]
        );
        // Order 1 rejected elsewhere: its units go to the request waiting.
        assert_eq!(
            feed(&mut task, release(1, 2)).0,
            [(2, LineOutcome::Reserved)]
        );
        assert_eq!(task.level(0, "SKU-1"), 1);

        // Order 2 keeps its units: a request waiting on them is refused.
        assert_eq!(feed(&mut task, request(4, 30, 2)).0, []);
        assert_eq!(
            feed(&mut task, confirm(2)).0,
            [(4, LineOutcome::OutOfStock { left: 1 })]
        );
        assert!(task.taken.keys().next().is_none(), "nothing held");
        assert!(task.waiting.keys().next().is_none(), "nothing waits");
    }

    #[test]
    fn held_units_and_waiting_requests_are_restored_from_the_changelog() {
        let mut task = task();
        let mut changelog = Vec::new();
        let mut answers = Vec::new();
        for record in [
            request(1, 10, 3),
            request(2, 20, 1),
            request(3, 30, 3),
            request(4, 40, 2),
        ] {
            let (answered, out) = feed(&mut task, record);
            answers.extend(answered);
            changelog.extend(out);
        }
        // Of the 3 units that may come back, order 2 counts on 1 first:
        // order 3's 3 could never be served, order 4's 2 could.
        assert_eq!(
            answers,
            [
                (1, LineOutcome::Reserved),
                (3, LineOutcome::OutOfStock { left: 0 })
            ]
        );
        let mut restored = self::task();
        for record in changelog.iter().filter(|r| r.topic == CHANGELOG) {
            restored.restore(0, &record.key, &record.payload);
        }
        // Order 1's units back: oldest waiting first.
        assert_eq!(
            feed(&mut restored, release(1, 3)).0,
            [(2, LineOutcome::Reserved), (4, LineOutcome::Reserved)]
        );
    }

    #[test]
    fn a_batch_run_finishes_only_once_no_request_waits() {
        let mut task = task();
        feed(&mut task, request(1, 10, 3));
        feed(&mut task, request(2, 20, 1));
        let finished = StockRecord::Finished {
            from: Upstream::Split,
            partition: 0,
            run: "run".into(),
        };
        let said_finished = |out: &[OutRecord]| {
            out.iter().any(|r| {
                matches!(
                    OrderRecord::decode(&r.payload),
                    Ok(OrderRecord::Finished { .. })
                )
            })
        };
        assert!(!said_finished(&feed(&mut task, finished).1));
        let (answers, out) = feed(&mut task, confirm(1));
        assert_eq!(answers, [(2, LineOutcome::OutOfStock { left: 0 })]);
        assert!(said_finished(&out));
    }

    #[test]
    fn a_request_answered_in_the_batch_it_came_in_leaves_nothing_in_the_changelog() {
        let mut task = task();
        feed(&mut task, request(1, 10, 3));
        let (answers, out) = feed_batch(&mut task, &[request(2, 20, 2), release(1, 3)]);
        assert_eq!(answers, [(2, LineOutcome::Reserved)]);
        let waits = out
            .iter()
            .filter(|r| r.topic == CHANGELOG && r.key.starts_with(WAITING_PREFIX.as_bytes()));
        assert_eq!(waits.count(), 0);
    }

    #[test]
    fn a_request_waits_only_on_orders_whose_own_waits_are_short() {
        let mut task = task();
        feed(&mut task, request(1, 10, 3));
        let (answers, out) = feed(&mut task, request(2, 20, 2));
        assert_eq!(answers, []);
        let notices: Vec<_> = out
            .iter()
            .filter(|r| r.topic == ANSWERS)
            .map(|r| OrderRecord::decode(&r.payload).unwrap())
            .collect();
        let waiting = OrderRecord::Waiting {
            order_id: Uuid::from_u128(2),
            line: 0,
            depth: 1,
        };
        assert_eq!(notices, [waiting], "its order hears it waits");
        let order_waits = |depth| StockRecord::OrderWaits {
            order_id: Uuid::from_u128(1),
            sku: "SKU-1".into(),
            depth,
        };
        // Order 1 waits elsewhere: order 2 waits deeper, and hears so.
        let (answers, out) = feed(&mut task, order_waits(1));
        assert_eq!(answers, []);
        let deeper = out
            .iter()
            .filter(|r| r.topic == ANSWERS)
            .map(|r| OrderRecord::decode(&r.payload).unwrap());
        assert!(deeper.eq([OrderRecord::Waiting {
            order_id: Uuid::from_u128(2),
            line: 0,
            depth: 2,
        }]));
        // A chain as deep as it may go: no longer counted on.
        assert_eq!(
            feed(&mut task, order_waits(MAX_WAIT_DEPTH)).0,
            [(2, LineOutcome::OutOfStock { left: 0 })]
        );
    }

    #[test]
    fn an_answer_sent_later_carries_its_requests_timestamp() {
        let mut task = task();
        feed(&mut task, request(1, 10, 3));
        let mut out = Vec::new();
        let short = request(2, 20, 2).encode();
        task.process(0, Some(77), &short, &mut out).unwrap();
        task.before_commit(&mut out);
        task.commit();
        let (_, out) = feed(&mut task, release(1, 3));
        let answer = out.iter().find(|r| r.topic == ANSWERS).unwrap();
        assert_eq!(answer.timestamp, Some(77));
    }
}
