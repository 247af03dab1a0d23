//! The API's latency at a fixed rate, seen from a client: orders are
//! posted on a fixed schedule, and each one, once accepted, is asked for
//! with the long poll (`GET /orders/{id}?wait_ms=`) until its decision is
//! there. Two latencies per order, both from the instant the schedule
//! gave it (a slow answer does not delay the next order, so none is left
//! out): to the 202, and to the decision visible in GET.
//!
//! Every order must be accepted and decided: anything else is an error,
//! not a figure.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::domain::latency::{Latencies, LatencySummary};
use crate::error::{Error, Result};

/// The long poll's wait, the most the API allows.
const WAIT_MS: u64 = 30_000;
/// An order still pending after this long has failed the run.
const DECIDED_WITHIN: Duration = Duration::from_secs(120);
/// SKUs the orders name, in turn: enough for inventory's stock stage to
/// spread over every partition.
const SKUS: u64 = 50;

/// The two latencies of every order of a run.
#[derive(Debug, Clone, Copy)]
pub struct ApiLatency {
    /// Scheduled send to the 202.
    pub accepted: LatencySummary,
    /// Scheduled send to the decision, seen in GET /orders/{id}.
    pub decided: LatencySummary,
}

#[derive(Default)]
struct Recorded {
    accepted: Latencies,
    decided: Latencies,
}

/// Posts `count` orders to the API at `addr`, `rate` a second, and waits
/// for each one's decision.
pub async fn at_fixed_rate(addr: SocketAddr, rate: f64, count: u64) -> Result<ApiLatency> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let recorded = Arc::new(Mutex::new(Recorded::default()));
    let start = Instant::now();
    let mut orders = tokio::task::JoinSet::new();
    for n in 0..count {
        let scheduled = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(scheduled.into()).await;
        let (client, recorded) = (client.clone(), Arc::clone(&recorded));
        orders.spawn(async move { place_and_follow(&client, addr, n, scheduled, &recorded).await });
        // A failed order ends the run now, not after the schedule.
        while let Some(order) = orders.try_join_next() {
            ended(order)?;
        }
    }
    while let Some(order) = orders.join_next().await {
        ended(order)?;
    }
    let recorded = recorded.lock().expect("latencies lock");
    Ok(ApiLatency {
        accepted: recorded.accepted.summary(),
        decided: recorded.decided.summary(),
    })
}

fn ended(order: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    order.map_err(|e| Error::Panicked {
        what: "a bench client".into(),
        cause: e.to_string(),
    })?
}

/// One order: POST, then the long poll until it is decided.
async fn place_and_follow(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    n: u64,
    scheduled: Instant,
    recorded: &Mutex<Recorded>,
) -> Result<()> {
    let order = json!({
        "customer_id": format!("bench-{n}"),
        "items": [{"sku": format!("SKU-{:04}", n % SKUS + 1), "quantity": 1, "unit_price_cents": 1299}],
    });
    let (status, accepted) = call(
        client,
        Method::POST,
        &format!("http://{addr}/orders"),
        Some(&order),
    )
    .await?;
    if status != StatusCode::ACCEPTED {
        return Err(refused("POST /orders", status, &accepted));
    }
    let accepted_after = scheduled.elapsed();
    let id = accepted["order_id"].as_str().unwrap_or_default().to_owned();
    let url = format!("http://{addr}/orders/{id}?wait_ms={WAIT_MS}");
    loop {
        let (status, view) = call(client, Method::GET, &url, None).await?;
        if status != StatusCode::OK {
            return Err(refused(&format!("GET /orders/{id}"), status, &view));
        }
        if view["status"] != "pending" {
            break;
        }
        if scheduled.elapsed() > DECIDED_WITHIN {
            return Err(Error::NotInTime {
                what: format!("bench: order {id}'s decision did not come"),
                within: DECIDED_WITHIN,
            });
        }
    }
    let decided_after = scheduled.elapsed();
    let mut recorded = recorded.lock().expect("latencies lock");
    recorded.accepted.record_micros(micros(accepted_after));
    recorded.decided.record_micros(micros(decided_after));
    Ok(())
}

/// One request; its status and JSON body.
async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: Method,
    url: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Value)> {
    let what = format!("{method} {url}");
    let failed = |reason: String| Error::ApiRequest {
        request: what.clone(),
        reason,
    };
    let mut request = Request::builder().method(method).uri(url);
    let body = match body {
        Some(json) => {
            request = request.header("content-type", "application/json");
            Full::new(Bytes::from(json.to_string()))
        }
        None => Full::default(),
    };
    let request = request.body(body).map_err(|e| failed(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| failed(e.to_string()))?
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, json))
}

fn refused(request: &str, status: StatusCode, body: &Value) -> Error {
    Error::ApiRequest {
        request: request.to_owned(),
        reason: format!("answered {status}: {body}"),
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX)
}

/// Whether the API at `addr` answers `GET /health` with 200: its views have
/// caught up with the topics. Blocking, for at most two seconds.
pub fn ready(addr: SocketAddr) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(format!("http://{addr}/health"))
        .call()
        .is_ok_and(|response| response.status() == 200)
}
