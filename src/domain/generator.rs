//! Seeded, reproducible orders: the same seed always gives the same orders, in
//! the same sequence, with the same ids and event times.
//!
//! Event times come from a simulated clock (a start instant plus exponentially
//! distributed gaps, i.e. a Poisson arrival process at a chosen mean rate), not
//! from the wall clock, so "orders per minute" in the analytics report reflects
//! the generated traffic and not how fast the machine happened to publish it.

use chrono::{DateTime, Duration, Utc};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::events::{LineItem, OrderPlaced, SCHEMA_VERSION};

/// What the generated traffic looks like.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Event time of the first order's clock before its first gap.
    pub start: DateTime<Utc>,
    /// Mean arrival rate on the simulated clock.
    pub orders_per_minute: f64,
    /// Size of the product catalog: SKU-0001 ..= SKU-nnnn.
    pub skus: u32,
    /// Number of distinct customers: cust-00001 ..= cust-nnnnn.
    pub customers: u32,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            start: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("a valid constant")
                .with_timezone(&Utc),
            orders_per_minute: 200.0,
            skus: 50,
            customers: 1000,
        }
    }
}

/// The name of catalog entry `index` (0-based).
pub fn sku_name(index: u32) -> String {
    format!("SKU-{:04}", index + 1)
}

/// A fixed price per SKU, between 1.99 and 99.99, spread by a multiplicative hash.
pub fn sku_price_cents(index: u32) -> u64 {
    199 + (u64::from(index) * 7919) % 9801
}

/// An endless, deterministic stream of orders.
pub struct OrderGenerator {
    config: GeneratorConfig,
    rng: ChaCha8Rng,
    /// The simulated clock, in milliseconds since the start instant.
    clock_ms: i64,
}

impl OrderGenerator {
    pub fn new(config: GeneratorConfig) -> Self {
        // ChaCha8 has a specified output, so a seed means the same orders on
        // every platform and with every future version of the rand crates.
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Self {
            config,
            rng,
            clock_ms: 0,
        }
    }

    fn next_gap_ms(&mut self) -> i64 {
        let mean_ms = 60_000.0 / self.config.orders_per_minute;
        let u: f64 = self.rng.random(); // in [0, 1)
        (-(1.0 - u).ln() * mean_ms).round() as i64
    }
}

impl Iterator for OrderGenerator {
    type Item = OrderPlaced;

    fn next(&mut self) -> Option<OrderPlaced> {
        self.clock_ms += self.next_gap_ms();
        let order_id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        let customer = self.rng.random_range(1..=self.config.customers);
        let lines = self.rng.random_range(1..=4).min(self.config.skus as usize);
        let mut skus = index::sample(&mut self.rng, self.config.skus as usize, lines).into_vec();
        // Sorted so that an order's items read in catalog order.
        skus.sort_unstable();
        let items: Vec<LineItem> = skus
            .into_iter()
            .map(|i| {
                let i = i as u32;
                LineItem {
                    sku: sku_name(i),
                    quantity: self.rng.random_range(1..=5),
                    unit_price_cents: sku_price_cents(i),
                }
            })
            .collect();
        let total_cents = items
            .iter()
            .map(|i| i.unit_price_cents * u64::from(i.quantity))
            .sum();
        Some(OrderPlaced {
            event_type: OrderPlaced::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id,
            customer_id: format!("cust-{customer:05}"),
            items,
            total_cents,
            event_time: self.config.start + Duration::milliseconds(self.clock_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn orders(seed: u64, n: usize) -> Vec<OrderPlaced> {
        OrderGenerator::new(GeneratorConfig {
            seed,
            ..Default::default()
        })
        .take(n)
        .collect()
    }

    #[test]
    fn same_seed_same_orders() {
        assert_eq!(orders(7, 500), orders(7, 500));
        assert_ne!(orders(7, 50), orders(8, 50));
    }

    #[test]
    fn orders_are_valid_and_ids_unique() {
        let all = orders(1, 10_000);
        let ids: HashSet<_> = all.iter().map(|o| o.order_id).collect();
        assert_eq!(ids.len(), all.len());
        for order in &all {
            OrderPlaced::decode(&order.encode()).expect("generated orders are valid");
        }
    }

    #[test]
    fn event_times_rise_at_about_the_configured_rate() {
        let all = orders(3, 10_000);
        assert!(all.windows(2).all(|w| w[0].event_time <= w[1].event_time));
        let span = all.last().unwrap().event_time - all[0].event_time;
        let per_minute = all.len() as f64 / (span.num_milliseconds() as f64 / 60_000.0);
        assert!(
            (190.0..210.0).contains(&per_minute),
            "{per_minute} orders/min"
        );
    }
}
