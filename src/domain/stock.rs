//! What inventory decides with: the stock configuration, an order's
//! decision, and the simulated stock-check failure (the stock itself, one
//! per SKU, is answered by `lines::answer`).
//!
//! The simulated failure is a keyed hash of the order id and the seed, never a
//! random draw or a clock, so reprocessing the same orders rejects the same
//! ones. Out-of-stock rejections depend on the order in which orders arrive,
//! as they would in a real warehouse.

use std::collections::BTreeMap;

use uuid::Uuid;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::events::{RejectReason, Status};

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

/// The verdict on one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: Status,
    pub reason: Option<RejectReason>,
    pub detail: Option<String>,
}

impl Decision {
    pub fn reserved() -> Self {
        Self {
            status: Status::Reserved,
            reason: None,
            detail: None,
        }
    }

    pub fn rejected(reason: RejectReason, detail: String) -> Self {
        Self {
            status: Status::Rejected,
            reason: Some(reason),
            detail: Some(detail),
        }
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
    use crate::domain::generator::{GeneratorConfig, OrderGenerator};

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
