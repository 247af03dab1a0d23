//! The API service, orderflow's front door over HTTP: clients place orders
//! (`POST /orders`) and ask what became of them (`GET /orders/{id}`),
//! as Confluent's microservices example's OrdersService does, without a
//! database: the answers come from views the API keeps of the topics.
//!
//! ```text
//! POST /orders ──────────────────────────────┐
//! POST /orders + Idempotency-Key             │
//!   ─▶ <group>-keys-repartition ─▶ keys ─────┤   (group <group>-keys: a key's first order only)
//!                                   │        ▼
//!                   <group>-keys-changelog  OrderEvents ─▶ (inventory) ─▶ InventoryEvents
//!                                   │        │                                  │
//!                                   └────────┴─── follow.rs, read_committed ────┘
//!                                                      ▼
//!                          views.rs: every order's state, every key's answer ─▶ GET /orders/{id}
//!
//! <inventory group>-stock-changelog ─▶ follow.rs ─▶ views.rs: every SKU's stock ─▶ GET /stock/{sku}
//! ```
//!
//! An order is acknowledged (202) only once every in-sync replica has its
//! `OrderPlaced`, and known to the instance that took it from then on. An
//! order under an `Idempotency-Key` goes to the keys stage (`keys.rs`), an
//! engine stage every instance runs a share of, which publishes a key's
//! first order only, in a transaction with the key's answer; the request
//! is answered once the answer is in the views, with the key's first order
//! whichever instance took it.
//! Every instance reads the topics whole, from the beginning, on start,
//! so any instance answers for any order, and several may run side by
//! side; an instance is ready (`GET /health`) once it has read them to
//! where they stood at its start.
//!
//! Routes and the OpenAPI document: `routes.rs`; errors as problem
//! documents: `problem.rs`; requests counted and timed: `measured.rs`.

mod follow;
mod keys;
mod measured;
mod problem;
pub mod routes;
mod store;
mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::domain::events::{InventoryChecked, OrderPlaced};
use crate::domain::placing::KeyAnswer;
use crate::engine::{self, EngineOptions, Guarantee};
use crate::error::Result;
use crate::kafka::admin::{Admin, TopicSpec};
use crate::kafka::producer;
use crate::metrics::Metrics;
use crate::services::inventory;
use follow::Followed;
use keys::{KeysTask, KEY_PREFIX};
use routes::Api;
use store::Store;
use views::{Update, Views};

#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Where to serve the API.
    pub listen: SocketAddr,
    pub orders_topic: String,
    pub inventory_topic: String,
    /// Names the internal topics and the keys stage's group.
    pub group: String,
    /// The inventory whose stock changelog `GET /stock/{sku}` answers from.
    pub inventory_group: String,
    /// Distinguishes instances of one group (their transactional ids).
    pub instance_id: String,
    /// How long an idempotency key is remembered after its order.
    pub key_retention: Duration,
    /// How long the keys stage's batches (transactions) collect requests.
    pub commit_interval: Duration,
    /// Where the views' store is made (a fresh file, deleted at exit).
    pub views_dir: PathBuf,
    /// The most memory the store's page cache takes.
    pub views_cache_bytes: usize,
    pub metrics: Arc<Metrics>,
    /// The schema registry's framing and checks (`--schema-registry`);
    /// the default is plain JSON.
    pub schemas: crate::registry::Schemas,
}

/// The default of `--key-retention`: a day, as Stripe keeps its keys.
pub const DEFAULT_KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The internal topic orders under an idempotency key go through.
pub fn keys_topic(group: &str) -> String {
    format!("{group}-keys-repartition")
}

/// The keys stage's consumer group and changelog.
pub fn keys_group(group: &str) -> String {
    format!("{group}-keys")
}

pub fn keys_changelog(group: &str) -> String {
    format!("{group}-keys-changelog")
}

/// Every internal topic the API makes for `group`.
pub fn internal_topics(group: &str) -> Vec<String> {
    vec![
        keys_topic(group),
        keys_changelog(group),
        engine::dlq_topic(&keys_topic(group)),
    ]
}

/// What a run of the API did, for `--stats-file`.
#[derive(Debug, Clone, Copy)]
pub struct ApiSummary {
    /// Orders this instance answered 202 (placed, or a key's first order
    /// answered again).
    pub placed: u64,
    /// From serving the first request to the last.
    pub served: Duration,
}

/// Serves the API until `shutdown` fires (then lets the requests in
/// progress finish), or until reading a topic fails for good.
pub async fn run(
    settings: &KafkaSettings,
    options: &ApiOptions,
    shutdown: &CancellationToken,
) -> Result<ApiSummary> {
    run_telling(settings, options, shutdown, |_| {}).await
}

/// `run`, telling `bound` the address it serves at once it listens (the
/// demo serves on a port the system picks).
pub async fn run_telling(
    settings: &KafkaSettings,
    options: &ApiOptions,
    shutdown: &CancellationToken,
    bound: impl FnOnce(SocketAddr),
) -> Result<ApiSummary> {
    let admin = Admin::connect(settings)?;
    let group = &options.group;
    let orders_layout = admin.layout_once_visible(&options.orders_topic).await?;
    // The keys topic has the orders topic's partitions: as many keys
    // stages as inventory's first stage can run in parallel.
    admin
        .create_topics(&[TopicSpec::new(
            keys_topic(group),
            orders_layout.partitions.len() as i32,
            orders_layout.replication,
        )])
        .await?;
    admin
        .ensure_internal_topics(&keys_topic(group), Some(&keys_changelog(group)))
        .await?;
    // Inventory's, if it has not made them yet: its stock changelog is
    // followed from the start.
    inventory::create_internal_topics(&admin, &options.orders_topic, &options.inventory_group)
        .await?;
    let followed = [
        Followed {
            topic: options.orders_topic.clone(),
            partitions: orders_layout.partitions,
            decode: |_, payload| OrderPlaced::decode(payload).ok().map(Update::Placed),
            schemas: options.schemas.clone(),
        },
        Followed {
            topic: options.inventory_topic.clone(),
            partitions: admin
                .partitions_once_visible(&options.inventory_topic)
                .await?,
            decode: |_, payload| InventoryChecked::decode(payload).ok().map(Update::Decided),
            schemas: options.schemas.clone(),
        },
        Followed {
            topic: inventory::stock_changelog(&options.inventory_group),
            partitions: admin
                .partitions_once_visible(&inventory::stock_changelog(&options.inventory_group))
                .await?,
            decode: |key, value| inventory::read_change(key, value).map(Update::Stock),
            schemas: options.schemas.clone(),
        },
        Followed {
            topic: keys_changelog(group),
            partitions: admin
                .partitions_once_visible(&keys_changelog(group))
                .await?,
            decode: key_update,
            schemas: options.schemas.clone(),
        },
    ];
    let producer = producer::idempotent_within(settings, settings.timeout)?;
    producer::connect(&producer, &options.orders_topic, settings.timeout).await?;

    let store = Store::create(&options.views_dir, options.views_cache_bytes)?;
    let views = Arc::new(Views::new(store, followed.len()));
    let stop = shutdown.child_token();
    let mut workers = tokio::task::JoinSet::new();
    for followed in followed {
        let (settings, views, stop) = (settings.clone(), Arc::clone(&views), stop.clone());
        let name = format!("follow {}", followed.topic);
        workers.spawn(async move {
            crate::threads::run(&name, move || {
                follow::follow(&settings, &followed, &views, &stop)
            })
            .await
        });
    }
    let stage = EngineOptions {
        group: keys_group(group),
        input_topic: keys_topic(group),
        output_topics: vec![options.orders_topic.clone()],
        changelog_topic: Some(keys_changelog(group)),
        guarantee: Guarantee::ExactlyOnce,
        transactional_id: format!("orderflow-{}-{}", keys_group(group), options.instance_id),
        commit_interval: options.commit_interval,
        exit_at_end: false,
        metrics: Arc::clone(&options.metrics),
        hold_back: None,
        schemas: options.schemas.clone(),
    };
    let mut task = KeysTask::new(
        keys_changelog(group),
        options.orders_topic.clone(),
        i64::try_from(options.key_retention.as_millis()).unwrap_or(i64::MAX),
    );
    {
        let (settings, stop) = (settings.clone(), stop.clone());
        workers.spawn(async move {
            crate::threads::run("api keys", move || {
                engine::run(&settings, &stage, &mut task, &stop).map(drop)
            })
            .await
        });
    }
    let api = Arc::new(Api {
        views,
        producer,
        orders_topic: options.orders_topic.clone(),
        schemas: options.schemas.clone(),
        keys_topic: keys_topic(group),
        timeout: settings.timeout,
        metrics: Arc::clone(&options.metrics),
        placed: AtomicU64::new(0),
    });
    let serving_since = Instant::now();
    let (address, served) = crate::http::serve_until(
        options.listen,
        routes::router(Arc::clone(&api)),
        stop.clone(),
    )
    .await?;
    tracing::info!("serving the API at http://{address}");
    bound(address);

    // The first worker to end (on `stop`, or failing) ends everything.
    let mut outcome = Ok(());
    while let Some(ended) = workers.join_next().await {
        stop.cancel();
        let ended = ended.unwrap_or_else(|e| {
            Err(crate::Error::Panicked {
                what: "an API worker".into(),
                cause: e.to_string(),
            })
        });
        if outcome.is_ok() {
            outcome = ended;
        }
    }
    let _ = served.await;
    outcome.map(|()| ApiSummary {
        placed: api.placed.load(Ordering::Relaxed),
        served: serving_since.elapsed(),
    })
}

/// A record of the keys changelog as an update of the views (the engine's
/// own records there are none).
fn key_update(key: &[u8], payload: &[u8]) -> Option<Update> {
    let key = std::str::from_utf8(key.strip_prefix(KEY_PREFIX)?).ok()?;
    let answer = if payload.is_empty() {
        None
    } else {
        Some(serde_json::from_slice::<KeyAnswer>(payload).ok()?)
    };
    Some(Update::Key(key.to_owned(), answer))
}
