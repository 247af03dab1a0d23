//! Integration tests against the real Apache Kafka broker started by
//! `scripts/kafka up` (see `scripts/test`). Each test uses its own topics and
//! groups, so they run in parallel; Kafka's own CLI tools check the results.

mod common;

mod api;
mod bench;
mod cli;
mod contracts;
mod dashboard;
mod dead_letters;
mod demo;
mod exactly_once;
mod failures;
mod hold_back;
mod lag;
mod metrics;
mod pipeline;
mod registry;
mod replay;
mod resilience;
mod security;
mod stock;
mod transactions;
mod watermarks;
mod windows;
