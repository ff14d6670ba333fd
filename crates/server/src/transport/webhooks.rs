//! `/v1/webhooks`: a tenant registers, lists and deletes webhooks, and reads each one's
//! delivery log. Original keys only.

use super::http::{Auth, Body, Params};
use crate::App;
use crate::error::Result;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use switchboard_protocol::webhooks::{CreateWebhook, CreatedWebhook, DeliveryLog, Webhook};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/webhooks", get(list).post(create))
        .route("/v1/webhooks/{id}", delete(remove))
        .route("/v1/webhooks/{id}/deliveries", get(deliveries))
}

async fn create(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Body(body): Body<CreateWebhook>,
) -> Result<(StatusCode, Json<CreatedWebhook>)> {
    who.original_only("managing webhooks")?;
    let created = app.webhooks.create(&who.tenant_id, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(State(app): State<Arc<App>>, Auth(who): Auth) -> Result<Json<Vec<Webhook>>> {
    who.original_only("managing webhooks")?;
    Ok(Json(app.webhooks.list(&who.tenant_id)))
}

async fn remove(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    who.original_only("managing webhooks")?;
    app.webhooks.delete(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default = "hundred")]
    limit: u32,
}

fn hundred() -> u32 {
    100
}

async fn deliveries(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(id): Path<String>,
    Params(q): Params<LogQuery>,
) -> Result<Json<DeliveryLog>> {
    who.original_only("managing webhooks")?;
    Ok(Json(app.webhooks.log(&who.tenant_id, &id, q.limit).await?))
}
