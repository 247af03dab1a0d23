//! Operator commands built on the admin layer: creating topics, measuring
//! consumer lag, resetting a group's offsets (replay), the demo that runs
//! the whole pipeline and proves replay and lag, and the benchmark.

pub mod bench;
pub mod dashboard;
pub mod demo;
mod demo_api;
pub mod lag;
pub mod lag_chart;
pub mod local_kafka;
pub mod replay;
pub mod topics;
