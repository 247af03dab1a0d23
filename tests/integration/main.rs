//! Integration tests against the real Apache Kafka broker started by
//! `scripts/kafka up` (see `scripts/test`). Each test uses its own topics and
//! groups, so they run in parallel; Kafka's own CLI tools check the results.
//!
//! libtest starts tests in the order of their names, and `transactions`
//! comes last: its two 3-node tests keep both cores busy, and a test
//! beside them on the shared broker may see its requests time out (a CI
//! run's `analytics` gave up a metadata request after 10 s). So nothing
//! starts beside them but the tests before them still finishing.

mod common;

mod api;
mod bench;
mod cli;
mod contracts;
mod dashboard;
mod dead_letters;
mod demo;
mod event_watermarks;
mod event_windows;
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
