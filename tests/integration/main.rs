//! Integration tests against the real Apache Kafka broker started by
//! `scripts/kafka up` (see `scripts/test`). Each test uses its own topics and
//! groups, so they run in parallel; Kafka's own CLI tools check the results.

mod common;

mod cli;
mod demo;
mod lag;
mod malformed;
mod pipeline;
mod replay;
