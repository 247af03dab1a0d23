//! Serving HTTP (the metrics endpoint, the dashboard, the API): listening
//! with an error that names the address, and serving on a task of its own.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Listens on `addr`; returns the listener and the address bound (port 0
/// picks a free one).
async fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr)> {
    let listen_error = |cause| Error::Listen { addr, cause };
    let listener = TcpListener::bind(addr).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    Ok((listener, bound))
}

/// Listens on `addr` and serves `router` on a task of its own until the
/// process ends; returns the address bound.
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr> {
    let (listener, bound) = listen(addr).await?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, %bound, "the HTTP server stopped");
        }
    });
    Ok(bound)
}

/// Listens on `addr` and serves `router` on a task of its own until `stop`
/// fires, then lets the requests in progress finish; returns the address
/// bound and the task, which ends when the last request has.
pub async fn serve_until(
    addr: SocketAddr,
    router: Router,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (listener, bound) = listen(addr).await?;
    let served = tokio::spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(error) = serving.await {
            tracing::error!(%error, %bound, "the HTTP server stopped");
        }
    });
    Ok((bound, served))
}
