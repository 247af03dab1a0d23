//! The HTTP endpoint Prometheus scrapes: `GET /metrics` on `--metrics-addr`,
//! served by axum on the service's tokio runtime while the engine works on
//! its own thread.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::{Metrics, Service};
use crate::error::Result;
use crate::http::serve;

/// The OpenMetrics text format, which `prometheus_client` writes.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A service's metrics: served at `addr` when one is given (and then with
/// librdkafka's statistics), otherwise only kept.
pub async fn start(service: Service, addr: Option<SocketAddr>) -> Result<Arc<Metrics>> {
    let Some(addr) = addr else {
        return Ok(Arc::new(Metrics::new(service)));
    };
    let metrics = Arc::new(Metrics::new(service).with_librdkafka_statistics());
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::clone(&metrics));
    let bound = serve(addr, router).await?;
    tracing::info!("serving Prometheus metrics at http://{bound}/metrics");
    Ok(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], metrics.encode())
}
