//! The agent directory over HTTP: announce for backends, read a card, discover, remove.
//!
//! Reading needs the `presence` capability on the `sys.discovery` channel, writing a card
//! `publish` there as that agent (an original key has both).

use super::http::{Auth, Body};
use crate::App;
use crate::auth::{Principal, channel_request};
use crate::error::{Result, err};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use switchboard_protocol::discovery::{
    AgentCard, Announce, DISCOVERY_CHANNEL, Discover, Discovered, UpdateMetadata,
};
use switchboard_protocol::{Capability, Scope, valid_name};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/agents/discover", post(discover))
        .route(
            "/v1/agents/{name}",
            get(card).put(announce).patch(update).delete(remove),
        )
}

fn allow(who: &Principal, operation: Capability, agent: Option<&str>) -> Result<()> {
    if let Some(agent) = agent
        && !valid_name(agent)
    {
        return Err(err!(
            InvalidAgentName,
            "agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    who.allow(channel_request(
        operation,
        DISCOVERY_CHANNEL,
        Scope::Private,
        agent,
        None,
    ))
}

async fn discover(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Body(query): Body<Discover>,
) -> Result<Json<Discovered>> {
    allow(&who, Capability::Presence, None)?;
    Ok(Json(app.directory.discover(&who.tenant_id, &query)?))
}

async fn card(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(name): Path<String>,
) -> Result<Json<AgentCard>> {
    allow(&who, Capability::Presence, Some(&name))?;
    Ok(Json(app.directory.get(&who.tenant_id, &name)?))
}

async fn announce(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Body(body): Body<Announce>,
) -> Result<Json<AgentCard>> {
    allow(&who, Capability::Publish, Some(&name))?;
    Ok(Json(
        app.directory.announce(&who.tenant_id, &name, body).await?,
    ))
}

async fn update(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Body(body): Body<UpdateMetadata>,
) -> Result<Json<AgentCard>> {
    allow(&who, Capability::Publish, Some(&name))?;
    Ok(Json(
        app.directory
            .update_metadata(&who.tenant_id, &name, body.metadata)
            .await?,
    ))
}

async fn remove(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode> {
    allow(&who, Capability::Publish, Some(&name))?;
    app.directory.remove(&who.tenant_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
