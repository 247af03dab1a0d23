//! orderflow's contracts: what its topics carry, for teams that read or
//! write them from another stack. The JSON Schemas are generated from the
//! Rust types the services encode and decode (schemars), so the two cannot
//! drift; the AsyncAPI document places them on their topics, with keys,
//! headers, Kafka bindings, and which service sends or receives each.
//!
//! - [`schemas`]: every record layout by name, as JSON Schema draft 2020-12
//!   (`orderflow schema`).
//! - [`asyncapi`]: the AsyncAPI 3.0 document (`orderflow schema --asyncapi`,
//!   committed as `docs/asyncapi.json`).
//! - [`wire`]: the Confluent wire format (magic byte, schema id, JSON).

pub mod asyncapi;
pub mod schemas;
pub mod wire;
