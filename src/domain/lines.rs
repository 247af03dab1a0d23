//! An order's way through inventory's stages, no Kafka in it: the split
//! stage turns an order into one request per SKU (`LineRequest`), the stock
//! stage answers each from that SKU's one stock (`check`), and the orders
//! stage gathers an order's answers (`Pending`) into one decision,
//! releasing what its other lines took when one line fails, and confirming
//! them when none does.
//!
//! Units a line takes are held for its order until the order is settled.
//! A request that finds too few units left (`short`) waits while units
//! held for orders placed before it may still come back, so that what a
//! rejected order gives back is used. It waits only on older orders
//! (ranked by event time, then id), so waits never form a cycle and the
//! oldest order in flight is always answered; and only on orders whose
//! own waits go fewer than `MAX_WAIT_DEPTH` links deep (the stock stage
//! tells a waiting line's order how deep it waits, which tells the stock
//! of each line it holds), so chains of waits, long in a backlog, are cut
//! rather than undone one link per round trip between the stages.
//!
//! The records between the stages (`StockRecord`, `OrderRecord`) are JSON
//! like the public events; times in ms since the epoch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{OrderPlaced, RejectReason};
use super::stock::{mock_failure, Decision, StockConfig};

/// One SKU of one order, as the stock stage sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineRequest {
    pub order_id: Uuid,
    /// Which of the order's requests this is.
    pub line: u32,
    pub sku: String,
    pub quantity: u64,
    /// Where the answer goes back to: the order's own partition number,
    /// the one partition of the orders stage that gathers its answers.
    pub home: i32,
    /// The order's event time (ms): with the order id, its rank among the
    /// orders a request may wait on.
    #[serde(default)]
    pub placed: i64,
}

impl LineRequest {
    /// Orders compare by this: a request waits only on smaller ranks.
    pub fn rank(&self) -> (i64, Uuid) {
        (self.placed, self.order_id)
    }
}

/// What a line got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum LineOutcome {
    Reserved,
    /// Fewer units than wanted were left.
    OutOfStock {
        left: u64,
    },
    /// The simulated stock-check failure (the order's first line only).
    MockFailure,
}

/// Which stage a `Finished` marker comes from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Upstream {
    Split,
    Orders,
}

/// A record of `<group>-stock-repartition`, keyed by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StockRecord {
    Reserve(LineRequest),
    /// Units a line took for an order that was then rejected.
    Release {
        order_id: Uuid,
        sku: String,
        quantity: u64,
    },
    /// Units a line took for an order that was reserved: they stay taken.
    Confirm {
        order_id: Uuid,
        sku: String,
    },
    /// The order a line's units are held for waits on another SKU, in a
    /// chain `depth` links deep.
    OrderWaits {
        order_id: Uuid,
        sku: String,
        depth: u8,
    },
    /// A batch run's upstream partition has nothing more to send. `run`
    /// names the batch run: markers of an earlier run (in the topic, in a
    /// changelog) say nothing about this one.
    Finished {
        from: Upstream,
        partition: i32,
        run: String,
    },
}

/// A record of `<group>-orders-repartition`, keyed by order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OrderRecord {
    /// An order split into `lines` requests, sent by the split stage to its
    /// home partition before the requests: orders meet their answers in
    /// the order they were placed.
    Placed {
        order_id: Uuid,
        lines: u32,
        /// ms since the epoch.
        event_time: i64,
        /// The order record's timestamp (ms), which its decision carries.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        created: Option<i64>,
    },
    Answer {
        request: LineRequest,
        outcome: LineOutcome,
    },
    /// One of the order's lines waits for units held for older orders, in
    /// a chain of waits `depth` links deep.
    Waiting {
        order_id: Uuid,
        line: u32,
        depth: u8,
    },
    /// A batch run's stock partition has answered everything it will.
    Finished { partition: i32, run: String },
}

macro_rules! json_record {
    ($type:ty) => {
        impl $type {
            pub fn encode(&self) -> Vec<u8> {
                serde_json::to_vec(self).expect("an internal record serializes")
            }

            pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
                serde_json::from_slice(payload)
            }
        }
    };
}

json_record!(StockRecord);

impl StockRecord {
    /// The SKU it is about, its key (a `Finished` is keyed by partition).
    pub fn sku(&self) -> Option<&str> {
        match self {
            StockRecord::Reserve(request) => Some(&request.sku),
            StockRecord::Release { sku, .. }
            | StockRecord::Confirm { sku, .. }
            | StockRecord::OrderWaits { sku, .. } => Some(sku),
            StockRecord::Finished { .. } => None,
        }
    }
}
json_record!(OrderRecord);

/// An order's requests: one per SKU it names (lines of the same SKU add up,
/// so that a SKU is checked once for all its units), in SKU order.
pub fn split(order: &OrderPlaced, home: i32) -> Vec<LineRequest> {
    let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
    for item in &order.items {
        *wanted.entry(item.sku.as_str()).or_default() += u64::from(item.quantity);
    }
    wanted
        .into_iter()
        .enumerate()
        .map(|(line, (sku, quantity))| LineRequest {
            order_id: order.order_id,
            line: line as u32,
            sku: sku.to_owned(),
            quantity,
            home,
            placed: order.event_time.timestamp_millis(),
        })
        .collect()
}

/// The units of `sku` before any request: its configured level. A stock
/// partition keeps only the SKUs requests have touched.
pub fn initial_level(config: &StockConfig, sku: &str) -> u64 {
    config
        .initial
        .get(sku)
        .copied()
        .unwrap_or(config.initial_per_sku)
}

/// The partition of `<group>-stock-repartition` that holds `sku`'s stock,
/// of `partitions`: CRC-32 of the SKU, as librdkafka's default partitioner
/// places a keyed record (`consistent_random`), so that what the split
/// stage writes lands where it always has, and the stock stage knows which
/// SKUs are its own.
pub fn sku_partition(sku: &str, partitions: i32) -> i32 {
    let partitions = u32::try_from(partitions.max(1)).expect("positive");
    (crc32fast::hash(sku.as_bytes()) % partitions) as i32
}

/// How deep a chain of waits may go: a request waits on an order that
/// waits on an order that waits, no further. A chain is undone one link
/// per round trip between the stock and orders stages.
pub const MAX_WAIT_DEPTH: u8 = 3;

/// What the stock stage does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Answer(LineOutcome),
    /// Too few units are left: answered by `short` once the units held
    /// for older orders are known.
    Short,
}

/// Checks a request against the `left` units of its SKU (each SKU has one
/// stock, whatever the partition count): Reserved takes the request's
/// units, never more than are left. The simulated failure strikes an
/// order's first line: a function of the order id alone, whichever
/// partition or instance answers.
pub fn check(config: &StockConfig, request: &LineRequest, left: u64) -> Check {
    let failing = mock_failure(&request.order_id, config.seed, config.failure_rate);
    if request.line == 0 && failing {
        Check::Answer(LineOutcome::MockFailure)
    } else if request.quantity <= left {
        Check::Answer(LineOutcome::Reserved)
    } else {
        Check::Short
    }
}

/// A short request (see `check`), given the units of its SKU held for
/// orders ranked before it, not yet settled and not waiting themselves:
/// Reserved once enough are left, out of stock once even those coming
/// back would not do, else (None) it waits.
pub fn short(request: &LineRequest, left: u64, held_before: u64) -> Option<LineOutcome> {
    if request.quantity <= left {
        Some(LineOutcome::Reserved)
    } else if request.quantity > left + held_before {
        Some(LineOutcome::OutOfStock { left })
    } else {
        None
    }
}

/// An order's answers so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Its place among its partition's orders: decisions go out in this
    /// order.
    pub seq: u64,
    pub lines: u32,
    pub event_time: i64,
    /// The order record's timestamp (ms), for its decision's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Line → (SKU, quantity, outcome).
    pub answers: BTreeMap<u32, (String, u64, LineOutcome)>,
    /// The stock stage was told what became of the units its lines took
    /// (given back or confirmed), as soon as it was known: before its
    /// decision, which may wait behind an earlier order's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stock_told: bool,
    /// How deep the deepest of its lines waits, 0 if none does (the stock
    /// of each line it holds is told).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waits: u8,
}

pub(crate) fn is_zero(depth: &u8) -> bool {
    *depth == 0
}

/// An order decided: the decision, and the units its lines took (SKU,
/// quantity): confirmed if it is reserved, else to put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub decision: Decision,
    pub taken: Vec<(String, u64)>,
}

impl Settled {
    /// What the stock stage is told of each SKU the order took units of.
    pub fn to_stock(&self, order_id: Uuid) -> Vec<StockRecord> {
        let reserved = self.decision.status == super::events::Status::Reserved;
        self.taken
            .iter()
            .map(|(sku, quantity)| match reserved {
                true => StockRecord::Confirm {
                    order_id,
                    sku: sku.clone(),
                },
                false => StockRecord::Release {
                    order_id,
                    sku: sku.clone(),
                    quantity: *quantity,
                },
            })
            .collect()
    }
}

impl Pending {
    pub fn placed(seq: u64, lines: u32, event_time: i64, created: Option<i64>) -> Self {
        Self {
            seq,
            lines,
            event_time,
            created,
            answers: BTreeMap::new(),
            stock_told: false,
            waits: 0,
        }
    }

    /// Whether its order was placed (its answers may come first).
    pub fn is_placed(&self) -> bool {
        self.lines > 0
    }

    /// The SKUs whose units its answered lines hold.
    pub fn held_skus(&self) -> impl Iterator<Item = &str> {
        self.answers
            .values()
            .filter(|(_, _, outcome)| *outcome == LineOutcome::Reserved)
            .map(|(sku, _, _)| sku.as_str())
    }

    /// Adds an answer (a repeated one replaces the first: the same answer).
    pub fn answer(&mut self, request: &LineRequest, outcome: LineOutcome) {
        self.answers.insert(
            request.line,
            (request.sku.clone(), request.quantity, outcome),
        );
    }

    /// The decision, once every line has its answer: reserved if every line
    /// is; else rejected, for the simulated failure if it struck, else for
    /// the first line out of stock, with the reserved lines released.
    pub fn settle(&self) -> Option<Settled> {
        if self.lines == 0 || self.answers.len() < self.lines as usize {
            return None;
        }
        let reserved: Vec<(String, u64)> = self
            .answers
            .values()
            .filter(|(_, _, outcome)| *outcome == LineOutcome::Reserved)
            .map(|(sku, quantity, _)| (sku.clone(), *quantity))
            .collect();
        if reserved.len() == self.answers.len() {
            return Some(Settled {
                decision: Decision::reserved(),
                taken: reserved,
            });
        }
        let mocked = self
            .answers
            .values()
            .any(|(_, _, o)| *o == LineOutcome::MockFailure);
        let decision = if mocked {
            Decision::rejected(
                RejectReason::MockFailure,
                "simulated stock-check failure".into(),
            )
        } else {
            let (sku, wanted, left) = self
                .answers
                .values()
                .find_map(|(sku, quantity, outcome)| match outcome {
                    LineOutcome::OutOfStock { left } => Some((sku, quantity, left)),
                    _ => None,
                })
                .expect("a line that is not reserved");
            Decision::rejected(
                RejectReason::OutOfStock,
                format!("{sku}: wanted {wanted}, {left} left"),
            )
        };
        Some(Settled {
            decision,
            taken: reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sku_is_placed_by_the_crc32_of_its_name() {
        // CRC-32 of "123456789" is 0xCBF43926 (its check value).
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(sku_partition("123456789", 7), (0xCBF4_3926u32 % 7) as i32);
        assert!((0..1000).all(|n| (0..12).contains(&sku_partition(&n.to_string(), 12))));
    }

    use super::*;
    use crate::domain::events::{LineItem, Status, SCHEMA_VERSION};

    fn order(items: &[(&str, u32)]) -> OrderPlaced {
        OrderPlaced {
            event_type: OrderPlaced::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: Uuid::from_u128(7),
            customer_id: "c".into(),
            items: items
                .iter()
                .map(|&(sku, quantity)| LineItem {
                    sku: sku.into(),
                    quantity,
                    unit_price_cents: 100,
                })
                .collect(),
            total_cents: items.iter().map(|&(_, q)| u64::from(q) * 100).sum(),
            event_time: "2026-01-01T00:00:01Z".parse().unwrap(),
        }
    }

    fn stock(units: u64, failure_rate: f64) -> StockConfig {
        StockConfig {
            initial_per_sku: units,
            initial: BTreeMap::new(),
            failure_rate,
            seed: 42,
        }
    }

    #[test]
    fn an_order_splits_into_one_request_per_sku() {
        let requests = split(&order(&[("SKU-2", 1), ("SKU-1", 2), ("SKU-2", 3)]), 5);
        let got: Vec<(u32, &str, u64, i32)> = requests
            .iter()
            .map(|r| (r.line, r.sku.as_str(), r.quantity, r.home))
            .collect();
        assert_eq!(got, [(0, "SKU-1", 2, 5), (1, "SKU-2", 4, 5)]);
    }

    #[test]
    fn a_line_is_reserved_only_from_units_left_and_waits_only_for_units_that_may_come_back() {
        let config = stock(5, 0.0);
        let request = |quantity| split(&order(&[("SKU-1", quantity)]), 0).remove(0);
        assert_eq!(initial_level(&config, "SKU-1"), 5);
        let reserved = Check::Answer(LineOutcome::Reserved);
        assert_eq!(check(&config, &request(3), 5), reserved);
        assert_eq!(check(&config, &request(3), 2), Check::Short);
        assert_eq!(short(&request(3), 2, 1), None, "1 held may come back");
        let out_of_stock = Some(LineOutcome::OutOfStock { left: 2 });
        assert_eq!(short(&request(3), 2, 0), out_of_stock);
        assert_eq!(short(&request(3), 3, 4), Some(LineOutcome::Reserved));
        let mut listed = config.clone();
        listed.initial.insert("SKU-9".into(), 1);
        assert_eq!(initial_level(&listed, "SKU-9"), 1);
    }

    #[test]
    fn the_mock_failure_strikes_the_first_line_of_the_same_orders_always() {
        let requests = split(&order(&[("SKU-1", 1), ("SKU-2", 1)]), 0);
        let always = stock(5, 1.0);
        let mocked = Check::Answer(LineOutcome::MockFailure);
        assert_eq!(check(&always, &requests[0], 5), mocked);
        assert_eq!(check(&always, &requests[0], 0), mocked, "never short");
        assert_eq!(
            check(&always, &requests[1], 5),
            Check::Answer(LineOutcome::Reserved)
        );
        assert_eq!(
            check(&stock(5, 0.0), &requests[0], 5),
            Check::Answer(LineOutcome::Reserved)
        );
    }

    #[test]
    fn requests_rank_by_event_time_then_order_id() {
        let mut first = split(&order(&[("SKU-1", 1)]), 0).remove(0);
        let mut second = first.clone();
        second.order_id = Uuid::from_u128(6);
        assert!(second.rank() < first.rank(), "same time: by id");
        first.placed -= 1;
        assert!(first.rank() < second.rank());
    }

    #[test]
    fn an_order_is_reserved_only_if_every_line_is_and_releases_what_it_took_otherwise() {
        let requests = split(&order(&[("SKU-1", 2), ("SKU-2", 4)]), 0);
        let mut pending = Pending::placed(0, 2, 0, None);
        pending.answer(&requests[1], LineOutcome::Reserved);
        assert_eq!(pending.settle(), None, "a line is unanswered");
        pending.answer(&requests[0], LineOutcome::Reserved);
        let settled = pending.settle().unwrap();
        assert_eq!(settled.decision.status, Status::Reserved);
        let id = requests[0].order_id;
        assert_eq!(
            settled.to_stock(id),
            [
                StockRecord::Confirm {
                    order_id: id,
                    sku: "SKU-1".into()
                },
                StockRecord::Confirm {
                    order_id: id,
                    sku: "SKU-2".into()
                }
            ]
        );

        let mut rejected = Pending::placed(1, 2, 0, None);
        rejected.answer(&requests[0], LineOutcome::OutOfStock { left: 1 });
        rejected.answer(&requests[1], LineOutcome::Reserved);
        let settled = rejected.settle().unwrap();
        assert_eq!(settled.decision.reason, Some(RejectReason::OutOfStock));
        assert_eq!(
            settled.decision.detail.as_deref(),
            Some("SKU-1: wanted 2, 1 left")
        );
        assert_eq!(settled.taken, [("SKU-2".to_string(), 4)]);
        assert_eq!(
            settled.to_stock(id),
            [StockRecord::Release {
                order_id: id,
                sku: "SKU-2".into(),
                quantity: 4
            }]
        );

        let mut mocked = Pending::placed(2, 2, 0, None);
        mocked.answer(&requests[0], LineOutcome::MockFailure);
        mocked.answer(&requests[1], LineOutcome::Reserved);
        let settled = mocked.settle().unwrap();
        assert_eq!(settled.decision.reason, Some(RejectReason::MockFailure));
        assert_eq!(settled.taken, [("SKU-2".to_string(), 4)]);
    }

    #[test]
    fn records_round_trip() {
        let request = split(&order(&[("SKU-1", 2)]), 1).remove(0);
        for record in [
            StockRecord::Reserve(request.clone()),
            StockRecord::Release {
                order_id: request.order_id,
                sku: "SKU-1".into(),
                quantity: 2,
            },
            StockRecord::Confirm {
                order_id: request.order_id,
                sku: "SKU-1".into(),
            },
            StockRecord::OrderWaits {
                order_id: request.order_id,
                sku: "SKU-1".into(),
                depth: 2,
            },
            StockRecord::Finished {
                from: Upstream::Split,
                partition: 3,
                run: "r".into(),
            },
        ] {
            assert_eq!(StockRecord::decode(&record.encode()).unwrap(), record);
        }
        for record in [
            OrderRecord::Placed {
                order_id: request.order_id,
                lines: 1,
                event_time: 7,
                created: Some(8),
            },
            OrderRecord::Answer {
                request: request.clone(),
                outcome: LineOutcome::OutOfStock { left: 1 },
            },
            OrderRecord::Waiting {
                order_id: request.order_id,
                line: 0,
                depth: 1,
            },
        ] {
            assert_eq!(OrderRecord::decode(&record.encode()).unwrap(), record);
        }
    }
}
