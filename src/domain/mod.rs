//! The order pipeline's domain, with no Kafka in it: the events on the wire,
//! the seeded order generator, the stock decisions the inventory service makes,
//! the event-time windows the analytics service keeps, the report it writes,
//! and latency histograms.
//!
//! Everything here is deterministic (seeded randomness, simulated clocks, keyed
//! hashes), which is what lets a replay reproduce a report byte for byte.

pub mod events;
pub mod generator;
pub mod latency;
pub mod partials;
pub mod report;
pub mod stock;
pub mod watermark;
pub mod windows;
