//! The outside world's ways in: the WebSocket endpoint and the HTTP API, on one router.

mod assets;
pub mod http;
pub mod ws;

use crate::App;
use axum::Router;
use axum::routing::get;
use std::sync::Arc;

/// Every route the server answers.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/socket/websocket", get(ws::upgrade))
        .merge(http::routes())
        .merge(assets::routes())
        .with_state(app)
}
