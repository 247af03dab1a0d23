//! `orderflow dashboard`: a live web page of the pipeline on localhost.
//!
//! A sampler thread (`sampler`) reads, every interval, what the pipeline
//! left in Kafka: the orders published, each group's lag per partition with
//! its age and Burrow status, each service's throughput (how fast its
//! committed offsets move), and the closed one-minute windows analytics
//! published to OrderMetrics (orders per minute and failures by event time).
//! Each sample goes to the open pages as a server-sent event (`web`); the
//! page draws it with uPlot. `view` holds the data and its arithmetic.

mod sampler;
pub mod view;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::KafkaSettings;
use crate::error::{Error, Result};
use crate::http::serve;
use sampler::Sampler;
pub use sampler::{Watched, WatchedGroup};
use web::{Shared, Update};

#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Where the page is served.
    pub listen: SocketAddr,
    pub watched: Watched,
    /// How often the pipeline is sampled.
    pub interval: Duration,
    /// Samples kept for the charts of a page opened later.
    pub history: usize,
}

/// Serves the dashboard until `stop` is cancelled; `on_ready` is told the
/// address it listens on once it does.
pub async fn run(
    settings: &KafkaSettings,
    options: &DashboardOptions,
    stop: &CancellationToken,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    // Fails here, naming the address, when no broker answers.
    let mut sampler = {
        let (settings, watched) = (settings.clone(), options.watched.clone());
        tokio::task::spawn_blocking(move || Sampler::new(&settings, watched))
            .await
            .map_err(|e| Error::Panicked {
                what: "connecting the dashboard's sampler".into(),
                cause: e.to_string(),
            })??
    };
    let shared = Arc::new(Shared::new(options.history));
    let bound = serve(options.listen, web::router(Arc::clone(&shared))).await?;
    on_ready(bound);

    // librdkafka's calls block: the sampling loop has a thread of its own.
    let (interval, stop) = (options.interval, stop.clone());
    crate::threads::run("dashboard sampler", move || {
        while !stop.is_cancelled() {
            let started = Instant::now();
            let (sample, windows) = sampler.sample();
            for problem in &sample.problems {
                tracing::warn!(%problem, "the dashboard could not read everything");
            }
            shared.publish(Update { sample, windows });
            let rest = interval.saturating_sub(started.elapsed());
            // Sleep in short steps so that Ctrl-C is answered promptly.
            let wake = Instant::now() + rest;
            while !stop.is_cancelled() && Instant::now() < wake {
                std::thread::sleep(Duration::from_millis(50).min(rest));
            }
        }
        Ok(())
    })
    .await
}
