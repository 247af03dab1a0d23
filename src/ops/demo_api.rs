//! The demo's last step: the HTTP API in front of the pipeline. It serves
//! on a port the system picks, places orders over HTTP as a client would
//! (one retried under an Idempotency-Key, one asking more than the stock
//! holds) and asks what became of them with the long poll, then asks for a
//! SKU's stock: the curl examples of the README, answered by the real API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Error, Result};

/// The longest the demo waits for the API to be ready, and for a decision.
const READY_WITHIN: Duration = Duration::from_secs(120);
const WAIT_MS: u64 = 20_000;

/// What the client saw: an order placed and its final status
/// (`reserved`, `rejected: <reason>`, or `pending` if no decision came).
#[derive(Debug, Clone)]
pub struct Placed {
    pub what: String,
    pub order_id: String,
    pub status: String,
}

/// A blocking HTTP client of the API at `addr`.
struct Client {
    agent: ureq::Agent,
    base: String,
}

/// A status and a JSON body.
type Answer = (u16, Value);

impl Client {
    fn new(addr: SocketAddr) -> Self {
        let agent = ureq::Agent::config_builder()
            // Problem documents are answers too: the caller reads them.
            .http_status_as_error(false)
            .timeout_global(Some(
                Duration::from_millis(WAIT_MS) + Duration::from_secs(10),
            ))
            .build()
            .into();
        Self {
            agent,
            base: format!("http://{addr}"),
        }
    }

    fn get(&self, path: &str) -> Result<Answer> {
        let request = format!("GET {path}");
        let response = self.agent.get(format!("{}{path}", self.base)).call();
        read(request, response)
    }

    fn post(&self, body: &Value, key: Option<&str>) -> Result<Answer> {
        let mut post = self
            .agent
            .post(format!("{}/orders", self.base))
            .header("content-type", "application/json");
        if let Some(key) = key {
            post = post.header("idempotency-key", key);
        }
        read("POST /orders".into(), post.send(body.to_string()))
    }

    /// Places `body`; the order id of the 202.
    fn place(&self, body: &Value, key: Option<&str>) -> Result<String> {
        let (status, answer) = self.post(body, key)?;
        match (status, answer["order_id"].as_str()) {
            (202, Some(id)) => Ok(id.to_owned()),
            _ => Err(refused("POST /orders", status, &answer)),
        }
    }
}

fn read(
    request: String,
    response: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Answer> {
    let failed = |reason: String| Error::ApiRequest {
        request: request.clone(),
        reason,
    };
    let mut response = response.map_err(|e| failed(e.to_string()))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| failed(e.to_string()))?;
    let body = serde_json::from_str(&text).map_err(|e| failed(format!("{e}: {text}")))?;
    Ok((status, body))
}

fn refused(request: &str, status: u16, answer: &Value) -> Error {
    Error::ApiRequest {
        request: request.into(),
        reason: format!("answered {status}: {answer}"),
    }
}

/// Waits until the API at `addr` is ready, places the demo's orders, and
/// prints what a client sees; runs on a blocking thread.
pub fn show(addr: SocketAddr, sku_stock: u64) -> Result<Vec<Placed>> {
    let client = Client::new(addr);
    let started = Instant::now();
    while !matches!(client.get("/health"), Ok((200, _))) {
        if started.elapsed() > READY_WITHIN {
            return Err(Error::NotInTime {
                what: format!("the API at http://{addr} was not ready"),
                within: READY_WITHIN,
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let order = |sku: &str, quantity: u64| {
        json!({
            "customer_id": "cust-demo",
            "items": [{"sku": sku, "quantity": quantity, "unit_price_cents": 1299}]
        })
    };
    let line = |what: &str, answer: &str| println!("   {what:<44} → {answer}");

    let mut placed = Vec::new();
    let plain = client.place(&order("SKU-0001", 2), None)?;
    line(
        "POST /orders (2 of SKU-0001)",
        &format!("202, order {plain}"),
    );
    placed.push(("2 of SKU-0001", plain));

    let keyed = client.place(&order("SKU-0002", 1), Some("demo-key-1"))?;
    line(
        "POST /orders, Idempotency-Key: demo-key-1",
        &format!("202, order {keyed}"),
    );
    let again = client.place(&order("SKU-0002", 1), Some("demo-key-1"))?;
    let same = if again == keyed {
        "the same order".to_owned()
    } else {
        format!("ANOTHER order {again}")
    };
    line(
        "the same request again (a client's retry)",
        &format!("202, {same}"),
    );
    placed.push(("1 of SKU-0002, under a key", keyed));

    let too_many = sku_stock + 1;
    let greedy = client.place(&order("SKU-0003", too_many), None)?;
    line(
        &format!("POST /orders ({too_many} of SKU-0003)"),
        &format!("202, order {greedy}"),
    );
    placed.push(("more than SKU-0003's stock", greedy));

    let mut seen = Vec::new();
    for (what, order_id) in placed {
        let path = format!("/orders/{order_id}?wait_ms={WAIT_MS}");
        let (status, view) = client.get(&path)?;
        if status != 200 {
            return Err(refused(&format!("GET {path}"), status, &view));
        }
        let mut status = view["status"].as_str().unwrap_or("?").to_owned();
        if let Some(reason) = view["reason"].as_str() {
            status = format!("{status}: {reason}");
        }
        line(
            &format!("GET /orders/{}…?wait_ms={WAIT_MS}", &order_id[..8]),
            &status,
        );
        seen.push(Placed {
            what: what.into(),
            order_id,
            status,
        });
    }
    let (status, stock) = client.get("/stock/SKU-0001")?;
    if status != 200 {
        return Err(refused("GET /stock/SKU-0001", status, &stock));
    }
    line(
        "GET /stock/SKU-0001",
        &format!("{} available, {} held", stock["available"], stock["held"]),
    );
    Ok(seen)
}
