//! The order pipeline's domain, with no Kafka in it: the events on the wire,
//! the seeded order generator, the stock decisions the inventory service makes,
//! the event-time windows the analytics service keeps, and the report it writes.
//!
//! Everything here is deterministic (seeded randomness, simulated clocks, keyed
//! hashes), which is what lets a replay reproduce a report byte for byte.

pub mod events;
pub mod generator;
pub mod report;
pub mod stock;
pub mod windows;
