//! The inventory service's decisions: a stock table per SKU, all-or-nothing
//! reservations, and the simulated stock-check failure.
//!
//! The simulated failure is a keyed hash of the order id and the seed, never a
//! random draw or a clock, so reprocessing the same orders rejects the same
//! ones. Out-of-stock rejections depend on the order in which orders arrive,
//! as they would in a real warehouse.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::events::{OrderPlaced, RejectReason, Status};

/// How the stock table starts and how often the simulated check fails.
#[derive(Debug, Clone, PartialEq)]
pub struct StockConfig {
    /// Units on hand for any SKU not listed in `initial`.
    pub initial_per_sku: u64,
    /// Units on hand for particular SKUs.
    pub initial: BTreeMap<String, u64>,
    /// Share of orders the simulated stock check rejects, in [0, 1].
    pub failure_rate: f64,
    /// Keys the simulated failure, so different seeds fail different orders.
    pub seed: u64,
}

impl StockConfig {
    /// The share of the stock held by shard `index` of `shards`: every SKU's
    /// units split as evenly as whole units allow, the first shards taking
    /// the remainder. The shards' stock adds up to the whole.
    pub fn shard(&self, index: u32, shards: u32) -> StockConfig {
        let share = |units: u64| {
            let shards = u64::from(shards.max(1));
            units / shards + u64::from(u64::from(index) < units % shards)
        };
        StockConfig {
            initial_per_sku: share(self.initial_per_sku),
            initial: self
                .initial
                .iter()
                .map(|(sku, &units)| (sku.clone(), share(units)))
                .collect(),
            ..self.clone()
        }
    }
}

/// The verdict on one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: Status,
    pub reason: Option<RejectReason>,
    pub detail: Option<String>,
}

impl Decision {
    fn reserved() -> Self {
        Self {
            status: Status::Reserved,
            reason: None,
            detail: None,
        }
    }

    fn rejected(reason: RejectReason, detail: String) -> Self {
        Self {
            status: Status::Rejected,
            reason: Some(reason),
            detail: Some(detail),
        }
    }
}

/// Stock levels, reduced by every reserved order.
#[derive(Debug, Clone)]
pub struct Inventory {
    config: StockConfig,
    levels: HashMap<String, u64>,
}

impl Inventory {
    pub fn new(config: StockConfig) -> Self {
        Self {
            config,
            levels: HashMap::new(),
        }
    }

    /// Units currently on hand for `sku`.
    pub fn level(&self, sku: &str) -> u64 {
        self.levels
            .get(sku)
            .copied()
            .unwrap_or_else(|| self.initial(sku))
    }

    /// Sets a level, as restored from a changelog.
    pub fn set_level(&mut self, sku: &str, units: u64) {
        self.levels.insert(sku.to_owned(), units);
    }

    fn initial(&self, sku: &str) -> u64 {
        self.config
            .initial
            .get(sku)
            .copied()
            .unwrap_or(self.config.initial_per_sku)
    }

    /// Decides an order and, when it is reserved, takes its units from stock.
    /// A rejected order takes nothing: reservations are all or nothing.
    pub fn decide(&mut self, order: &OrderPlaced) -> Decision {
        if mock_failure(&order.order_id, self.config.seed, self.config.failure_rate) {
            return Decision::rejected(
                RejectReason::MockFailure,
                "simulated stock-check failure".into(),
            );
        }
        // An order may name a SKU on more than one line: check the sum.
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for item in &order.items {
            *wanted.entry(item.sku.as_str()).or_default() += u64::from(item.quantity);
        }
        for (&sku, &units) in &wanted {
            let on_hand = self.level(sku);
            if units > on_hand {
                return Decision::rejected(
                    RejectReason::OutOfStock,
                    format!("{sku}: wanted {units}, {on_hand} left"),
                );
            }
        }
        for (sku, units) in wanted {
            let on_hand = self.level(sku);
            self.levels.insert(sku.to_owned(), on_hand - units);
        }
        Decision::reserved()
    }
}

/// Whether the simulated stock check fails for this order: true for a `rate`
/// share of order ids, the same ones for the same seed on every run.
pub fn mock_failure(order_id: &Uuid, seed: u64, rate: f64) -> bool {
    let hash = xxh3_64_with_seed(order_id.as_bytes(), seed);
    // The top 53 bits as a uniform number in [0, 1): exact in an f64.
    let unit = (hash >> 11) as f64 / (1u64 << 53) as f64;
    unit < rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{LineItem, SCHEMA_VERSION};
    use crate::domain::generator::{GeneratorConfig, OrderGenerator};

    fn config(initial_per_sku: u64, failure_rate: f64) -> StockConfig {
        StockConfig {
            initial_per_sku,
            initial: BTreeMap::new(),
            failure_rate,
            seed: 1,
        }
    }

    fn order(id: u128, items: &[(&str, u32)]) -> OrderPlaced {
        let items: Vec<LineItem> = items
            .iter()
            .map(|&(sku, quantity)| LineItem {
                sku: sku.into(),
                quantity,
                unit_price_cents: 100,
            })
            .collect();
        OrderPlaced {
            event_type: OrderPlaced::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: Uuid::from_u128(id),
            customer_id: "c".into(),
            total_cents: items.iter().map(|i| 100 * u64::from(i.quantity)).sum(),
            items,
            event_time: Default::default(),
        }
    }

    #[test]
    fn reserves_until_stock_runs_out_and_never_below_zero() {
        let mut inventory = Inventory::new(config(5, 0.0));
        assert_eq!(
            inventory.decide(&order(1, &[("A", 3)])).status,
            Status::Reserved
        );
        assert_eq!(inventory.level("A"), 2);
        let rejected = inventory.decide(&order(2, &[("A", 3)]));
        assert_eq!(rejected.reason, Some(RejectReason::OutOfStock));
        assert_eq!(rejected.detail.as_deref(), Some("A: wanted 3, 2 left"));
        assert_eq!(inventory.level("A"), 2);
        assert_eq!(
            inventory.decide(&order(3, &[("A", 2)])).status,
            Status::Reserved
        );
        assert_eq!(inventory.level("A"), 0);
    }

    #[test]
    fn reservations_are_all_or_nothing() {
        let mut inventory = Inventory::new(StockConfig {
            initial: [("B".to_string(), 1)].into(),
            ..config(10, 0.0)
        });
        let decision = inventory.decide(&order(1, &[("A", 4), ("B", 2)]));
        assert_eq!(decision.status, Status::Rejected);
        assert_eq!((inventory.level("A"), inventory.level("B")), (10, 1));
        // The same SKU on two lines counts as their sum.
        let decision = inventory.decide(&order(2, &[("A", 6), ("A", 5)]));
        assert_eq!(decision.status, Status::Rejected);
    }

    #[test]
    fn shards_split_the_stock_and_add_up_to_it() {
        let whole = StockConfig {
            initial: [("B".to_string(), 4)].into(),
            ..config(5000, 0.05)
        };
        let shards: Vec<StockConfig> = (0..3).map(|i| whole.shard(i, 3)).collect();
        let per_sku: Vec<u64> = shards.iter().map(|s| s.initial_per_sku).collect();
        assert_eq!(per_sku, vec![1667, 1667, 1666]);
        let b: Vec<u64> = shards.iter().map(|s| s.initial["B"]).collect();
        assert_eq!(b, vec![2, 1, 1]);
        assert!(shards
            .iter()
            .all(|s| s.failure_rate == 0.05 && s.seed == whole.seed));
        assert_eq!(whole.shard(0, 1), whole);
    }

    #[test]
    fn mock_failures_are_deterministic_and_near_the_rate() {
        let orders: Vec<_> = OrderGenerator::new(GeneratorConfig::default())
            .take(20_000)
            .collect();
        let failed = |seed| -> Vec<bool> {
            orders
                .iter()
                .map(|o| mock_failure(&o.order_id, seed, 0.05))
                .collect()
        };
        let first = failed(9);
        assert_eq!(first, failed(9));
        assert_ne!(first, failed(10));
        let share = first.iter().filter(|&&f| f).count() as f64 / orders.len() as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        assert!(orders.iter().all(|o| !mock_failure(&o.order_id, 9, 0.0)));
        assert!(orders.iter().all(|o| mock_failure(&o.order_id, 9, 1.0)));
    }
}
