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

/// A service's metrics: with librdkafka's statistics when they will be
/// served (each report is a JSON document parsed on a client's thread, not
/// worth it for metrics no one reads).
pub fn metrics_for(service: Service, served: bool) -> Arc<Metrics> {
    let metrics = Metrics::new(service);
    Arc::new(if served {
        metrics.with_librdkafka_statistics()
    } else {
        metrics
    })
}

/// Serves `metrics` at `http://addr/metrics`, on the caller's runtime, for
/// as long as it runs.
pub async fn serve_at(metrics: &Arc<Metrics>, addr: SocketAddr) -> Result<()> {
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::clone(metrics));
    let bound = serve(addr, router).await?;
    tracing::info!("serving Prometheus metrics at http://{bound}/metrics");
    Ok(())
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], metrics.encode())
}
