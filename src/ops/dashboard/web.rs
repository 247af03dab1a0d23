//! The dashboard's web side, on axum: the page and its scripts, all embedded
//! in the binary (the chart library, uPlot, vendored from the npm registry at
//! build time by `build.rs`), so it works offline; the history so far as
//! JSON; and each new sample as a server-sent event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::view::{Sample, WindowsView};

/// What the page is sent: one sample, and the windows as they stand.
#[derive(Debug, Clone, Serialize)]
pub struct Update {
    pub sample: Sample,
    pub windows: WindowsView,
}

/// What `/api/history` answers: every sample kept, and the windows.
#[derive(Debug, Clone, Serialize)]
struct History {
    samples: Vec<Sample>,
    windows: Option<WindowsView>,
}

/// Samples kept for pages that connect later, and the channel new ones go
/// out on.
pub struct Shared {
    samples: RwLock<VecDeque<Sample>>,
    windows: RwLock<Option<WindowsView>>,
    capacity: usize,
    updates: broadcast::Sender<Arc<String>>,
}

impl Shared {
    /// Keeps the last `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Self {
            samples: RwLock::new(VecDeque::with_capacity(capacity)),
            windows: RwLock::new(None),
            capacity: capacity.max(1),
            // A page that falls this far behind skips samples (its charts
            // show a gap) rather than holding memory for it.
            updates: broadcast::channel(16).0,
        }
    }

    /// Keeps a new sample and sends it to every open page.
    pub fn publish(&self, update: Update) {
        let json = Arc::new(serde_json::to_string(&update).expect("an update serializes"));
        {
            let mut samples = self.samples.write().expect("never poisoned");
            if samples.len() == self.capacity {
                samples.pop_front();
            }
            samples.push_back(update.sample);
        }
        *self.windows.write().expect("never poisoned") = Some(update.windows);
        // No page open: nobody to send to, which is fine.
        let _ = self.updates.send(json);
    }
}

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");
// uPlot, committed under web/vendor/uplot/ (its README says whence and how
// to update it; the test below checks the files against SHA256SUMS).
const UPLOT_JS: &str = include_str!("web/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("web/vendor/uplot/uPlot.min.css");

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/app.js", get(|| asset("text/javascript", APP_JS)))
        .route("/app.css", get(|| asset("text/css", APP_CSS)))
        .route(
            "/vendor/uPlot.js",
            get(|| asset("text/javascript", UPLOT_JS)),
        )
        .route("/vendor/uPlot.css", get(|| asset("text/css", UPLOT_CSS)))
        .route("/api/history", get(history))
        .route("/api/events", get(events))
        .with_state(shared)
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}

async fn history(State(shared): State<Arc<Shared>>) -> Json<History> {
    Json(History {
        samples: shared
            .samples
            .read()
            .expect("never poisoned")
            .iter()
            .cloned()
            .collect(),
        windows: shared.windows.read().expect("never poisoned").clone(),
    })
}

async fn events(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = futures::stream::unfold(shared.updates.subscribe(), |mut receiver| async {
        loop {
            match receiver.recv().await {
                Ok(json) => {
                    let event = Event::default().event("sample").data(json.as_str());
                    return Some((Ok(event), receiver));
                }
                // A page that fell behind missed some samples: on with the next.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(updates).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    /// The vendored uPlot is byte for byte what its SHA256SUMS (written when
    /// it was taken from the npm registry, integrity checked) says.
    #[test]
    fn vendored_uplot_matches_its_checksums() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/ops/dashboard/web/vendor/uplot");
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut checked = Vec::new();
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").expect("sha256sum's format");
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(format!("{:x}", Sha256::digest(&bytes)), sum, "{name}");
            checked.push(name);
        }
        checked.sort_unstable();
        assert_eq!(checked, ["LICENSE", "uPlot.iife.min.js", "uPlot.min.css"]);
        // And the binary embeds those very files.
        assert_eq!(
            super::UPLOT_JS.as_bytes(),
            std::fs::read(dir.join("uPlot.iife.min.js")).unwrap()
        );
        assert_eq!(
            super::UPLOT_CSS.as_bytes(),
            std::fs::read(dir.join("uPlot.min.css")).unwrap()
        );
    }
}
