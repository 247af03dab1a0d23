//! The order pipeline's domain, with no Kafka in it: the events on the wire,
//! the seeded order generator, the stock decisions the inventory service makes,
//! the event-time windows the analytics service keeps, the report it writes,
//! latency histograms, and orders as the API takes them (`placing`) and
//! answers for them (`order_state`).
//!
//! Everything here is deterministic (seeded randomness, simulated clocks, keyed
//! hashes), which is what lets a replay reproduce a report byte for byte.

pub mod events;
pub mod generator;
pub mod latency;
pub mod lines;
pub mod order_state;
pub mod partials;
pub mod placing;
pub mod report;
pub mod stock;
pub mod watermark;
pub mod windows;
