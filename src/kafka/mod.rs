//! The thin layer between the domain and librdkafka: how each kind of client
//! is configured (and why), the order producer's sending, the admin
//! operations behind `topics`, `lag` and `replay`, reading a record by
//! offset, and the connection check every command starts with.
//!
//! Nothing in here knows what an order is; services wire the two together,
//! and the stream engine (`crate::engine`) builds on it.

pub mod admin;
pub mod clients;
pub mod context;
pub mod peek;
pub mod probe;
pub mod producer;
