//! `orderflow topics`: create the pipeline's topics; existing ones are left
//! as they are, so running it twice is harmless.

use crate::error::Result;
use crate::kafka::admin::{Admin, TopicSpec};

/// Creates each named topic that does not exist. Returns (name, created now).
pub async fn ensure(
    admin: &Admin,
    names: &[&str],
    partitions: i32,
    replication_factor: i32,
) -> Result<Vec<(String, bool)>> {
    let specs: Vec<TopicSpec> = names
        .iter()
        .map(|name| TopicSpec::new(*name, partitions, replication_factor))
        .collect();
    admin.create_topics(&specs).await
}
