//! The outside world's ways in: the WebSocket endpoint, the HTTP API (channels, messages,
//! tenants and keys) and the embedded browser assets, on one router.

mod agents;
mod assets;
pub mod http;
mod inbox;
mod keys;
mod usage;
mod webhooks;
pub mod ws;

use crate::App;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower::ServiceExt as _;

/// Every route the server answers.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/socket/websocket", get(ws::upgrade))
        .merge(http::routes())
        .merge(agents::routes())
        .merge(inbox::routes())
        .merge(keys::routes())
        .merge(usage::routes())
        .merge(webhooks::routes())
        .merge(assets::routes())
        .with_state(app)
}

/// Accepts connections until `shutdown` turns true, then lets the HTTP requests in flight
/// finish (upgraded WebSockets watch `shutdown` themselves).
///
/// Each connection is served by hyper's HTTP/1.1 server directly on its `TcpStream`, so a
/// WebSocket upgrade gets the stream itself back ([`ws`] frames it without a wrapper).
pub async fn serve(listener: TcpListener, router: Router, shutdown: watch::Receiver<bool>) {
    // Every connection task holds a clone; the channel closes when the last one ends.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut stop = shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = crate::shutting_down(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Nagle's algorithm would hold small frames behind delayed ACKs (up to 40 ms).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = shutdown.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = crate::shutting_down(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    let _ = all_done.recv().await;
}
