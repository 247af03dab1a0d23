//! Every request the API answers, counted by method, route and status and
//! timed by method and route, into its metrics (`--metrics-addr`). The
//! route is the pattern that matched (`/orders/{id}`), so the series stay
//! one per route however many orders are asked for.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{HttpAnswer, HttpRoute, Metrics};

/// Axum middleware: runs the request, then counts and times its answer.
pub async fn measure(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let answer = HttpAnswer {
        method: method.clone(),
        route: route.clone(),
        status: response.status().as_u16(),
    };
    metrics.http_requests.get_or_create(&answer).inc();
    metrics
        .http_duration
        .get_or_create(&HttpRoute { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
