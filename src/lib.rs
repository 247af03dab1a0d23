//! orderflow: an event-driven order pipeline on Apache Kafka.
//!
//! Orders are published to the orders topic (`OrderEvents`) by `produce`; the
//! `inventory` service decides each against a stock table and publishes the
//! outcome to the inventory topic (`InventoryEvents`); the `analytics` service
//! counts outcomes into one-minute event-time windows and writes a report;
//! the `api` takes orders over HTTP and answers what became of them.
//! `lag` and `replay` operate the consumer groups; `demo` runs it all.
//!
//! - [`contracts`]: the JSON Schemas of every record and the AsyncAPI
//!   document of every topic, generated from the types.
//! - [`domain`]: events, generator, stock decisions, windows, report; no Kafka.
//! - [`engine`]: the stream engine the services run on: batches in Kafka
//!   transactions, state in changelogs, dead letters, error classes.
//! - [`kafka`]: the thin, commented layer over librdkafka (rdkafka crate).
//! - [`services`]: the service loops wiring domain to Kafka, and the API.
//! - [`metrics`]: Prometheus metrics of a service, served on `--metrics-addr`.
//! - [`registry`]: a Confluent-compatible schema registry: the public
//!   events' schemas registered and checked.
//! - [`ops`]: topics, lag, replay, the local broker, the demo, the bench and
//!   the dashboard.
//! - [`config`], [`error`], [`shutdown`], [`http`], [`threads`], [`wait`]:
//!   settings, typed errors, stopping, serving HTTP, long-lived threads,
//!   waiting with a deadline.

pub mod cli;
pub mod config;
pub mod contracts;
pub mod domain;
pub mod engine;
pub mod error;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod ops;
pub mod registry;
pub mod services;
pub mod shutdown;
pub mod threads;
pub mod wait;

pub use error::{Error, Result};
