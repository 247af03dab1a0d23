//! The thin layer between the domain and librdkafka: how each kind of client
//! is configured (and why), the stream engine that runs a task with
//! exactly-once or at-least-once delivery, and the admin operations behind
//! `topics`, `lag` and `replay`.
//!
//! Nothing in here knows what an order is; services wire the two together.

pub mod admin;
pub mod consumer;
pub mod context;
pub mod engine;
pub mod peek;
pub mod probe;
pub mod producer;
pub mod task;
