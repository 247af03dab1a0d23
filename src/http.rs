//! Serving HTTP (the metrics endpoint, the dashboard): listening with an
//! error that names the address, and serving on a task of its own.

use std::net::SocketAddr;

use axum::Router;

use crate::error::{Error, Result};

/// Listens on `addr` and serves `router` on a task of its own until the
/// process ends; returns the address bound (port 0 picks a free one).
pub async fn serve(addr: SocketAddr, router: Router) -> Result<SocketAddr> {
    let listen_error = |cause| Error::Listen { addr, cause };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, %bound, "the HTTP server stopped");
        }
    });
    Ok(bound)
}
