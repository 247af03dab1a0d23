//! Talking HTTP to a service under test: a free loopback port to serve on,
//! and requests that return whatever the service answered (4xx and 5xx
//! included: they are what many tests judge).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// A loopback address with a free port.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

/// What a service answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Longer than the longest wait a request may ask for (30 s).
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    read(response.expect("the service answers"))
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (content_type, location, retry_after) = (
        header("content-type").unwrap_or_default(),
        header("location"),
        header("retry-after"),
    );
    let body = response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()
        .unwrap();
    Answer {
        status: response.status().as_u16(),
        content_type,
        location,
        retry_after,
        body,
    }
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    answer(agent().get(format!("http://{addr}{path}")).call())
}

/// A request without a body, of any method.
pub fn call(method: &str, addr: SocketAddr, path: &str) -> Answer {
    let request = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    answer(agent().run(request))
}

/// A POST of `body` as `content_type`.
pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Answer {
    let url = format!("http://{addr}{path}");
    answer(
        agent()
            .post(url)
            .header("content-type", content_type)
            .send(body),
    )
}

pub fn post_json(addr: SocketAddr, path: &str, body: &str) -> Answer {
    post(addr, path, "application/json", body.as_bytes())
}

/// A POST of JSON under an `Idempotency-Key` when given; None when the
/// connection failed (refused, or cut by a killed service).
pub fn try_post_json(
    addr: SocketAddr,
    path: &str,
    body: &str,
    key: Option<&str>,
) -> Option<Answer> {
    let mut request = agent()
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let mut response = request.send(body.as_bytes()).ok()?;
    let status = response.status().as_u16();
    // A body cut short by a killed service is a lost connection too.
    let body = response.body_mut().read_to_string().ok()?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    Some(Answer {
        status,
        content_type: header("content-type").unwrap_or_default(),
        location: header("location"),
        retry_after: header("retry-after"),
        body,
    })
}
