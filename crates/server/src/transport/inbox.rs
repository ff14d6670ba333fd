//! The durable inboxes over HTTP, for backends that poll instead of holding a socket:
//! lease messages (`receive`), `ack` and `reject` them, and read or delete the dead letters.

use super::http::{Auth, Body, Params, ScopeParam, find};
use crate::App;
use crate::auth::channel_request;
use crate::error::{Result, err};
use crate::storage::Settle;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_protocol::inbox::{
    DeadLetterPage, DeadLetterQuery, MAX_RECEIVE, Receive, Received,
};
use switchboard_protocol::{Ack, Capability, Reject, valid_name};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/channels/{name}/inbox/{agent}/receive", post(receive))
        .route("/v1/channels/{name}/inbox/{agent}/ack", post(ack))
        .route("/v1/channels/{name}/inbox/{agent}/reject", post(reject))
        .route("/v1/channels/{name}/dead_letters", get(dead_letters))
        .route(
            "/v1/channels/{name}/dead_letters/{id}",
            delete(delete_dead_letter),
        )
}

/// The channel of an inbox request, once the key may act as `agent` there.
async fn inbox_channel(
    app: &App,
    who: &crate::auth::Principal,
    (name, scope): (&str, switchboard_protocol::Scope),
    agent: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<Arc<crate::channel::Channel>> {
    if let Some(agent) = agent
        && !valid_name(agent)
    {
        return Err(err!(
            InvalidAgentName,
            "agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    who.allow(channel_request(Capability::Inbox, name, scope, agent, None))?;
    find(app, who, scope, name, headers, peer.ip()).await
}

async fn receive(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, agent)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
    Body(body): Body<Receive>,
) -> Result<Json<Received>> {
    let max = body.max.unwrap_or(10);
    if !(1..=MAX_RECEIVE).contains(&max) {
        return Err(err!(InvalidPayload, "max is 1-{MAX_RECEIVE}"));
    }
    let visibility_ms = body
        .visibility_timeout_ms
        .unwrap_or(app.config.inbox.visibility_timeout_ms);
    if !(1..=12 * 3_600_000).contains(&visibility_ms) {
        return Err(err!(
            InvalidPayload,
            "visibility_timeout_ms is 1 ms to 12 hours"
        ));
    }
    let channel = inbox_channel(&app, &who, (&name, q.scope), Some(&agent), &headers, peer).await?;
    let messages = channel
        .inbox_receive(&agent, max, visibility_ms as i64)
        .await?;
    Ok(Json(Received { messages }))
}

async fn ack(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, agent)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
    Body(body): Body<Ack>,
) -> Result<StatusCode> {
    let channel = inbox_channel(&app, &who, (&name, q.scope), Some(&agent), &headers, peer).await?;
    channel
        .inbox_settle(&agent, Settle::Ack { id: body.id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn reject(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, agent)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
    Body(body): Body<Reject>,
) -> Result<StatusCode> {
    let channel = inbox_channel(&app, &who, (&name, q.scope), Some(&agent), &headers, peer).await?;
    let settle = crate::inbox::rejection(body)?;
    channel.inbox_settle(&agent, settle).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn dead_letters(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    Params(query): Params<DeadLetterQuery>,
    headers: HeaderMap,
) -> Result<Json<DeadLetterPage>> {
    let channel = inbox_channel(&app, &who, (&name, q.scope), None, &headers, peer).await?;
    Ok(Json(channel.dead_letters(&who.tenant_id, query).await?))
}

async fn delete_dead_letter(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, id)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    let channel = inbox_channel(&app, &who, (&name, q.scope), None, &headers, peer).await?;
    channel.delete_dead_letter(&who.tenant_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
