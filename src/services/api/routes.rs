//! The API's routes, and its OpenAPI 3.1 document generated from them
//! (utoipa): every route, body and error below is in the document because
//! it is written here, beside its handler.
//!
//! - `POST /orders`: checks the order as inventory will, publishes its
//!   `OrderPlaced` (event time now) and answers 202 only once every in-sync
//!   replica has it: nothing is acknowledged that is not in Kafka. Under an
//!   `Idempotency-Key`, the order goes to the keys stage instead, and the
//!   answer is the key's first order once it is in Kafka.
//! - `GET /orders/{id}`: the order's state from the views; `?wait_ms=N`
//!   holds the request until the order is decided or N ms pass.
//! - `GET /stock/{sku}`: the units of a SKU available and held, from
//!   inventory's stock changelog.
//! - `GET /health`: 200 once the views have caught up, 503 before.
//! - `GET /openapi.json`: the document.
//!
//! Every error is a problem document (`problem.rs`), the extractors' own
//! rejections and unknown routes included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use utoipa::OpenApi;
use uuid::Uuid;

use super::measured::measure;
use super::problem::Problem;
use super::views::{StockLevel, Views};
use crate::domain::events::{LineItem, OrderPlaced, RejectReason, MAX_SKU_BYTES};
use crate::domain::order_state::{OrderView, Progress};
use crate::domain::placing::{check_key, KeyAnswer, KeyedOrder, OrderRequest};
use crate::kafka::producer::{self, check_delivery, Producer};
use crate::metrics::Metrics;
use crate::registry::Schemas;

/// The largest request body taken. An order of 100 lines is a few KB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The largest body read at all. A body over `MAX_BODY_BYTES` and under
/// this is read whole and answered 413 with a problem document; a client
/// that sends a larger one has its connection closed while it sends (an
/// answer before the body is read is lost to most clients, which are still
/// writing when the server closes).
const MAX_READ_BYTES: usize = 2 * 1024 * 1024;
/// The longest a request may wait for an order's decision.
pub const MAX_WAIT_MS: u64 = 30_000;

/// What the handlers share.
pub struct Api {
    pub views: Arc<Views>,
    pub producer: Producer,
    pub orders_topic: String,
    /// Frames the orders it publishes with their schema's id
    /// (`--schema-registry`).
    pub schemas: Schemas,
    /// Where orders under an idempotency key go (the keys stage's input).
    pub keys_topic: String,
    /// How long Kafka may take to acknowledge an order before the request
    /// is answered 503.
    pub timeout: Duration,
    /// Where every request is counted and timed.
    pub metrics: Arc<Metrics>,
    /// Orders this instance answered 202 (`--stats-file`).
    pub placed: AtomicU64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow API",
        description = "Place orders and ask what became of them. Orders are \
            published to Kafka as OrderPlaced events; inventory decides them."
    ),
    paths(place_order, get_order, get_stock, health, openapi_json),
    components(schemas(
        OrderRequest,
        LineItem,
        Accepted,
        OrderView,
        Progress,
        RejectReason,
        StockLevel,
        Health,
        Problem
    ))
)]
pub struct ApiDoc;

/// The API's routes over `api`.
pub fn router(api: Arc<Api>) -> Router {
    let document = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    let metrics = Arc::clone(&api.metrics);
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/stock/{sku}", get(get_stock))
        .route("/health", get(health))
        .route(
            "/openapi.json",
            get(move || async move { ([(CONTENT_TYPE, "application/json")], document) }),
        )
        .fallback(|| async { Problem::not_found("no such resource") })
        .method_not_allowed_fallback(|| async { Problem::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_READ_BYTES))
        .layer(axum::middleware::from_fn_with_state(metrics, measure))
        .with_state(api)
}

/// The answer to an accepted order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub order_id: Uuid,
    /// Always `pending`: inventory has not decided yet.
    pub status: Progress,
}

/// The header that makes a retried POST safe.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Places an order.
#[utoipa::path(
    post,
    path = "/orders",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: the same key never yields a second order, \
            whichever instance a retry reaches; a retry is answered with the first answer. \
            1 to 255 visible ASCII characters, remembered for a day.")),
    request_body(content = OrderRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "In Kafka, acknowledged by every in-sync replica; \
            inventory decides it next", body = Accepted,
            headers(("Location" = String, description = "The order: /orders/{order_id}"))),
        (status = 400, description = "The body is not JSON, or the Idempotency-Key is not \
            1 to 255 visible ASCII characters", body = Problem,
            content_type = "application/problem+json"),
        (status = 413, description = "The body is over 64 KiB", body = Problem,
            content_type = "application/problem+json"),
        (status = 415, description = "The body is not application/json", body = Problem,
            content_type = "application/problem+json"),
        (status = 422, description = "Not a valid order (`field` names what is wrong), or \
            an Idempotency-Key already used for another order", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, description = "Kafka did not acknowledge the order in time; it may \
            or may not have been written", body = Problem,
            content_type = "application/problem+json"),
        (status = 500, description = "The views' store failed (an order under an \
            Idempotency-Key: its answer could not be read)", body = Problem,
            content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Problem::too_large(MAX_BODY_BYTES),
        _ => Problem::bad_request(rejection.body_text()),
    })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::too_large(MAX_BODY_BYTES));
    }
    if !is_json(&headers) {
        return Err(Problem::unsupported_media_type());
    }
    let key = idempotency_key(&headers)?;
    let request = parse_order(&body)?;
    let order = request
        .clone()
        .place(Uuid::new_v4(), chrono::Utc::now())
        .map_err(|e| Problem::invalid_order(e.field, e.why))?;
    let order_id = match key {
        None => place_now(&api, order).await?,
        Some(key) => place_once(&api, &key, request, order).await?,
    };
    let accepted = Accepted {
        order_id,
        status: Progress::Pending,
    };
    api.placed.fetch_add(1, Ordering::Relaxed);
    let location = format!("/orders/{order_id}");
    Ok((StatusCode::ACCEPTED, [(LOCATION, location)], Json(accepted)).into_response())
}

/// Publishes an order without a key: it is placed once Kafka has it.
async fn place_now(api: &Api, order: OrderPlaced) -> Result<Uuid, Problem> {
    let order_id = order.order_id;
    publish(
        api,
        &api.orders_topic,
        &order_id.to_string(),
        &api.schemas.frame(&api.orders_topic, order.encode()),
    )
    .await?;
    remember(api, order);
    Ok(order_id)
}

/// Places `order` under `key` unless the key already placed one: through
/// the keys stage, which publishes a key's first order only. Answers with
/// the key's order, this one or an earlier request's.
async fn place_once(
    api: &Api,
    key: &str,
    request: OrderRequest,
    order: OrderPlaced,
) -> Result<Uuid, Problem> {
    let fingerprint = request.fingerprint();
    let answer = match api.views.key(key)? {
        Some(answer) => answer,
        None => {
            let keyed = KeyedOrder {
                key: key.to_owned(),
                fingerprint: fingerprint.clone(),
                order,
            };
            publish(api, &api.keys_topic, key, &keyed.encode()).await?;
            let deadline = Instant::now() + api.timeout;
            api.views.answered_by(key, deadline).await?.ok_or_else(|| {
                Problem::kafka_unavailable(format!(
                    "the order was sent but not placed within {} s; retry with the same \
                     Idempotency-Key",
                    api.timeout.as_secs()
                ))
            })?
        }
    };
    if answer.fingerprint != fingerprint {
        return Err(Problem::key_reused(key, answer.order_id));
    }
    // The key's first order had this very content: the instance that
    // answers knows it from its 202 on, as for any order.
    remember(api, first_order(request, &answer)?);
    Ok(answer.order_id)
}

/// An order this instance accepted, in its views from its 202 on. If the
/// views fail, the order is in Kafka all the same: the 202 stands (the
/// follower meets the same failure and ends the API).
fn remember(api: &Api, order: OrderPlaced) {
    if let Err(error) = api.views.accepted(order) {
        tracing::error!(%error, "an accepted order is not in the views");
    }
}

/// The request's `Idempotency-Key`, checked; None without one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII"))?;
    check_key(key).map_err(|why| Problem::bad_request(format!("Idempotency-Key {why}")))?;
    Ok(Some(key.to_owned()))
}

/// The key's first order, as it was published: the request's content
/// (the same fingerprint), its id and its time.
fn first_order(request: OrderRequest, answer: &KeyAnswer) -> Result<OrderPlaced, Problem> {
    let placed_at = chrono::DateTime::from_timestamp_millis(answer.placed_at)
        .ok_or_else(|| Problem::bad_request("the key's order has no valid time"))?;
    request
        .place(answer.order_id, placed_at)
        .map_err(|e| Problem::invalid_order(e.field, e.why))
}

/// Writes one record and waits until every in-sync replica has it, for at
/// most the API's timeout: 503 otherwise.
async fn publish(api: &Api, topic: &str, key: &str, payload: &[u8]) -> Result<(), Problem> {
    let written = async {
        let record = FutureRecord::to(topic).key(key.as_bytes()).payload(payload);
        check_delivery(producer::send(&api.producer, record).await?.await, topic)
    };
    // The producer's own message timeout is `timeout` too; this bounds the
    // wait for a place in its queue as well.
    match tokio::time::timeout(api.timeout + Duration::from_secs(1), written).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Problem::kafka_unavailable(error.to_string())),
        Err(_) => Err(Problem::kafka_unavailable(format!(
            "{topic} did not acknowledge the order within {} s",
            api.timeout.as_secs()
        ))),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// The body as an order request: a syntax error is malformed JSON; valid
/// JSON of the wrong shape is an invalid order, naming the field.
fn parse_order(body: &[u8]) -> Result<OrderRequest, Problem> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let request = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        match error.classify() {
            Category::Data => {
                let detail = error.to_string();
                Problem::invalid_order(offending_field(&path, &detail), detail)
            }
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::malformed_json(error.to_string())
            }
        }
    })?;
    // Nothing but whitespace may follow the order.
    json.end()
        .map_err(|error| Problem::malformed_json(error.to_string()))?;
    Ok(request)
}

/// The field a data error is about: its path, and for a missing field the
/// field's own name (serde reports the path of the object missing it).
fn offending_field(path: &str, detail: &str) -> String {
    let missing = detail
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    match (parent, missing) {
        ("", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        ("", None) => "body".to_owned(),
        (parent, None) => parent.to_owned(),
    }
}

/// How long to wait for a decision.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Hold the request until the order is decided or this many ms pass
    /// (at most 30000); answered at once without it.
    #[param(maximum = 30000)]
    pub wait_ms: Option<u64>,
}

/// What became of an order.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    params(("id" = Uuid, Path, description = "The order id a 202 answered with"), WaitParams),
    responses(
        (status = 200, description = "The order: pending, reserved or rejected", body = OrderView),
        (status = 400, description = "Not an order id, or a wait over 30000 ms", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No such order (yet, on this instance: see the README \
            on how stale a read can be)", body = Problem,
            content_type = "application/problem+json"),
        (status = 500, description = "The views' store failed", body = Problem,
            content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(api): State<Arc<Api>>,
    id: Result<Path<Uuid>, PathRejection>,
    wait: Result<Query<WaitParams>, QueryRejection>,
) -> Result<Json<OrderView>, Problem> {
    let Path(id) = id.map_err(|e| Problem::bad_request(e.body_text()))?;
    let Query(wait) = wait.map_err(|e| Problem::bad_request(e.body_text()))?;
    let view = match wait.wait_ms {
        None | Some(0) => api.views.get(id)?,
        Some(ms) if ms > MAX_WAIT_MS => {
            return Err(Problem::bad_request(format!(
                "wait_ms may be at most {MAX_WAIT_MS}"
            )))
        }
        Some(ms) => {
            let deadline = Instant::now() + Duration::from_millis(ms);
            api.views.decided_by(id, deadline).await?
        }
    };
    view.map(Json)
        .ok_or_else(|| Problem::not_found(format!("no order {id}")))
}

/// A SKU's stock.
#[utoipa::path(
    get,
    path = "/stock/{sku}",
    params(("sku" = String, Path, description = "The SKU, as orders name it")),
    responses(
        (status = 200, description = "The units available, and those held for orders in \
            flight, as of inventory's last commit", body = StockLevel),
        (status = 400, description = "Not a SKU an order may name", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "No stock known: inventory has written none yet",
            body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_stock(
    State(api): State<Arc<Api>>,
    sku: Result<Path<String>, PathRejection>,
) -> Result<Json<StockLevel>, Problem> {
    let Path(sku) = sku.map_err(|e| Problem::bad_request(e.body_text()))?;
    if sku.is_empty() || sku.len() > MAX_SKU_BYTES {
        return Err(Problem::bad_request(format!(
            "a SKU has 1 to {MAX_SKU_BYTES} bytes"
        )));
    }
    api.views.stock(&sku).map(Json).ok_or_else(|| {
        Problem::not_found(format!(
            "no stock known for {sku}: inventory has written none yet"
        ))
    })
}

/// Whether the API answers for every order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ready` once the views have read the topics to where they stood at
    /// start; `starting` before.
    #[schema(example = "ready")]
    pub status: String,
    /// Orders the views know.
    pub orders: u64,
}

/// Ready to answer for every order?
#[utoipa::path(
    get,
    path = "/health",
    responses(
        (status = 200, description = "Ready: the views have caught up", body = Health),
        (status = 503, description = "Starting: the views are still reading the topics",
            body = Health),
        (status = 500, description = "The views' store failed", body = Problem,
            content_type = "application/problem+json"),
    )
)]
async fn health(State(api): State<Arc<Api>>) -> Result<(StatusCode, Json<Health>), Problem> {
    let ready = api.views.is_ready();
    let health = Health {
        status: if ready { "ready" } else { "starting" }.into(),
        orders: api.views.len()?,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(health)))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json"))
)]
#[allow(dead_code)] // served by a closure holding the rendered document
async fn openapi_json() {}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(body: &str) -> Problem {
        parse_order(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_body_of_the_wrong_shape_names_its_field() {
        let line = |q: &str| {
            format!(
                r#"{{"customer_id":"c","items":[{{"sku":"A","quantity":{q},"unit_price_cents":1}}]}}"#
            )
        };
        let negative = problem(&line("-2"));
        assert_eq!(negative.status, 422);
        assert_eq!(negative.field.as_deref(), Some("items[0].quantity"));
        let missing = problem(r#"{"items":[]}"#);
        assert_eq!(missing.field.as_deref(), Some("customer_id"));
        let no_sku =
            problem(r#"{"customer_id":"c","items":[{"quantity":1,"unit_price_cents":1}]}"#);
        assert_eq!(no_sku.field.as_deref(), Some("items[0].sku"));
        assert_eq!(problem(r#""an order""#).field.as_deref(), Some("body"));
        assert!(parse_order(line("2").as_bytes()).is_ok());
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed() {
        let order = r#"{"customer_id":"c","items":[]}"#;
        for body in [
            r#"{"customer_id":"#,
            &format!("{order} {order}"),
            "nope",
            "",
        ] {
            let p = problem(body);
            assert_eq!(
                (p.status, p.kind.as_str()),
                (400, "/problems/malformed-json"),
                "{body}"
            );
        }
    }

    #[test]
    fn the_document_covers_every_route_and_error() {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        let paths = &document["paths"];
        for (path, method) in [
            ("/orders", "post"),
            ("/orders/{id}", "get"),
            ("/stock/{sku}", "get"),
            ("/health", "get"),
            ("/openapi.json", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{path} {method}");
        }
        let responses = &paths["/orders"]["post"]["responses"];
        for status in ["202", "400", "413", "415", "422", "503"] {
            assert!(responses[status].is_object(), "POST /orders {status}");
        }
    }
}
