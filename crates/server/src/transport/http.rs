//! The HTTP API under `/v1` (bearer key), plus `/healthz`, `/metrics` and `/openapi.json`.

use super::ws::validate_publish;
use crate::App;
use crate::auth::{Principal, channel_request, kv_request};
use crate::channel::{AckTo, Channel};
use crate::error::{Error, Result, err};
use crate::hub::CreateOptions;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use switchboard_protocol::{
    Capability, ChannelInfo, CreateChannel, HistoryPage, HistoryQuery, PresenceState, Publish,
    PublishAck, Retention, Scope,
};
use tokio::sync::oneshot;

/// The OpenAPI document of this API.
pub const OPENAPI_JSON: &str = include_str!("../../../../spec/openapi.json");

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON) }),
        )
        .route("/v1/channels", axum::routing::post(create_channel))
        .route(
            "/v1/channels/{name}",
            get(get_channel).delete(delete_channel),
        )
        .route("/v1/channels/{name}/messages", get(history).post(publish))
        .route("/v1/channels/{name}/presence", get(presence))
        .route(
            "/v1/channels/{name}/complete",
            axum::routing::post(complete_channel),
        )
        .route("/v1/channels/{name}/kv", get(kv_list))
        .route(
            "/v1/channels/{name}/kv/{*key}",
            get(kv_get).put(kv_put).delete(kv_delete),
        )
        .fallback(|| async { err!(NotFound, "no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            err!(
                MethodNotAllowed,
                "this route does not take that method; see /openapi.json"
            )
        })
}

/// The authenticated caller of an HTTP request.
pub struct Auth(pub Principal);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self> {
        Ok(Auth(app.keys.verify(bearer(parts)?)?))
    }
}

/// The key of an `Authorization: Bearer <key>` header.
pub(super) fn bearer(parts: &Parts) -> Result<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim())
        .ok_or_else(|| err!(Unauthenticated, "send Authorization: Bearer <api key>"))
}

/// A JSON body whose errors come out as `invalid_payload`.
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> axum::extract::FromRequest<Arc<App>> for Body<T> {
    type Rejection = Error;

    async fn from_request(req: axum::extract::Request, app: &Arc<App>) -> Result<Self> {
        let bytes = Bytes::from_request(req, app)
            .await
            .map_err(|e| err!(MessageTooLarge, "request body: {e}"))?;
        app.metrics.bytes_in.inc_by(bytes.len() as u64);
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| err!(InvalidPayload, "request body: {e}"))
    }
}

/// Query parameters whose errors come out as `invalid_payload`.
pub struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| err!(InvalidPayload, "query string: {}", e.body_text()))
    }
}

#[derive(Deserialize, Default)]
pub(super) struct ScopeParam {
    #[serde(default)]
    pub(super) scope: Scope,
}

async fn healthz(State(app): State<Arc<App>>) -> Response {
    if app.log.is_failed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "storage_failed"})),
        )
            .into_response()
    } else {
        Json(serde_json::json!({"status": "ok"})).into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let lag = app.log.end().saturating_sub(app.materializer.applied());
    app.metrics.database_lag_records.set(lag as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

fn info(channel: &Channel) -> ChannelInfo {
    let (head, first_available) = channel.offsets();
    ChannelInfo {
        name: channel.row.name.clone(),
        scope: channel.scope,
        epoch: channel.row.epoch.clone(),
        head,
        first_available,
        storage: channel.row.storage,
        retention: Retention {
            max_messages: Some(channel.row.max_messages),
            max_age_secs: Some(channel.row.max_age_secs),
            cache: channel.row.cache_retention,
            log: channel.row.log_retention,
        },
        has_password: channel.row.password_hash.is_some(),
        created_at: channel.row.created_at,
        agents: channel.agent_count() as u64,
        members: channel.row.members.clone(),
        expires_at: channel.row.expires_at,
    }
}

/// Most members of a team channel.
const MAX_MEMBERS: usize = 1000;

async fn create_channel(
    State(app): State<Arc<App>>,
    Auth(who): Auth,
    Body(body): Body<CreateChannel>,
) -> Result<(StatusCode, Json<ChannelInfo>)> {
    who.original_only("creating a channel over HTTP")?;
    if let Some(members) = &body.members
        && (members.is_empty()
            || members.len() > MAX_MEMBERS
            || !members.iter().all(|m| switchboard_protocol::valid_name(m)))
    {
        return Err(err!(
            InvalidAgentName,
            "members: 1-{MAX_MEMBERS} agent names of 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    if body.expires_at.is_some_and(|at| at <= crate::now_ms()) {
        return Err(err!(InvalidPayload, "expires_at must be in the future"));
    }
    let policy = body.storage.unwrap_or_default();
    if let Some(r) = &body.retention {
        if r.cache.is_some() && !policy.keeps_messages() {
            return Err(err!(
                InvalidPayload,
                "retention.cache: an ephemeral channel keeps no cache"
            ));
        }
        if r.log.is_some() && !policy.uses_database() {
            return Err(err!(
                InvalidPayload,
                "retention.log is for persistent channels (the log keeps less, the database \
                 the rest); for a {} channel set retention.max_age_secs",
                policy.as_str()
            ));
        }
    }
    let options = CreateOptions {
        password: body.password,
        storage: body.storage,
        cache_retention: body.retention.as_ref().and_then(|r| r.cache),
        log_retention: body.retention.as_ref().and_then(|r| r.log),
        max_messages: body.retention.as_ref().and_then(|r| r.max_messages),
        max_age_secs: body.retention.as_ref().and_then(|r| r.max_age_secs),
        members: body.members,
        expires_at: body.expires_at,
    };
    let (channel, created) = app
        .hub
        .create(&who.tenant_id, body.scope, &body.name, options)
        .await?;
    if !created {
        return Err(err!(
            ChannelExists,
            "channel {:?} exists already",
            body.name
        ));
    }
    Ok((StatusCode::CREATED, Json(info(&channel))))
}

/// Finds a channel the caller may use: its own private ones freely; public ones with their
/// password (header `x-channel-password`) when they have one.
pub(super) async fn find(
    app: &App,
    who: &Principal,
    scope: Scope,
    name: &str,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<Arc<Channel>> {
    let channel = app
        .hub
        .find(&who.tenant_id, scope, name)
        .await?
        .ok_or_else(|| {
            err!(
                ChannelNotFound,
                "no channel {name:?} in scope {}",
                scope.as_str()
            )
        })?;
    check_public_password(app, &channel, headers, ip).await?;
    Ok(channel)
}

/// Public channels with a password need it (`x-channel-password`); wrong ones count against
/// the caller's address.
async fn check_public_password(
    app: &App,
    channel: &Channel,
    headers: &HeaderMap,
    ip: IpAddr,
) -> Result<()> {
    if channel.scope != Scope::Public || channel.row.password_hash.is_none() {
        return Ok(());
    }
    app.rate_limits.password_allowed(channel.row.id, ip)?;
    let password = headers
        .get("x-channel-password")
        .and_then(|v| v.to_str().ok());
    let checked = channel.check_password(password).await;
    if let Err(e) = &checked
        && e.code == switchboard_protocol::ErrorCode::BadPassword
    {
        app.rate_limits.password_failed(channel.row.id, ip);
    }
    checked
}

async fn get_channel(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<Json<ChannelInfo>> {
    who.original_only("reading channel settings")?;
    Ok(Json(info(
        &*find(&app, &who, q.scope, &name, &headers, peer.ip()).await?,
    )))
}

async fn complete_channel(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    who.original_only("completing a channel")?;
    let channel = find(&app, &who, q.scope, &name, &headers, peer.ip()).await?;
    if channel.row.members.is_none() {
        return Err(err!(
            InvalidPayload,
            "only team channels (created with members) complete; delete others"
        ));
    }
    app.hub
        .complete(
            &who.tenant_id,
            q.scope,
            &name,
            "the team channel was completed",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_channel(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    who.original_only("deleting a channel")?;
    find(&app, &who, q.scope, &name, &headers, peer.ip()).await?;
    app.hub.delete(&who.tenant_id, q.scope, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpPublish {
    #[serde(rename = "type")]
    kind: String,
    data: Option<Box<RawValue>>,
    to: Option<String>,
    #[serde(default)]
    ephemeral: bool,
    id: Option<String>,
    #[serde(default, with = "switchboard_protocol::message::base64_list")]
    attachments: Vec<Bytes>,
    from: Option<String>,
    #[serde(default)]
    receipt: bool,
}

async fn publish(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
    Body(body): Body<HttpPublish>,
) -> Result<Json<PublishAck>> {
    let from = body.from.unwrap_or_else(|| "http".to_owned());
    if !switchboard_protocol::valid_name(&from) {
        return Err(err!(
            InvalidAgentName,
            "from: agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    let publish = Publish {
        kind: body.kind,
        data: body
            .data
            .unwrap_or_else(|| RawValue::from_string("null".into()).expect("valid JSON")),
        to: body.to,
        ephemeral: body.ephemeral,
        id: body.id,
        attachments: body.attachments,
        receipt: body.receipt,
    };
    super::ws::refuse_system_channel(&name)?;
    let publish = validate_publish(publish, app.config.limits.max_message_bytes)?;
    who.allow(channel_request(
        Capability::Publish,
        &name,
        q.scope,
        Some(&from),
        Some(&publish.kind),
    ))?;
    app.rate_limits
        .http_publish(&who.tenant_id, &who.key_id, publish.body_len())?;
    app.usage
        .counters(&who.tenant_id, who.usage_key())
        .received(publish.body_len());
    let (channel, created) = app
        .hub
        .open(&who.tenant_id, q.scope, &name, CreateOptions::default())
        .await?;
    if !created {
        check_public_password(&app, &channel, &headers, peer.ip()).await?;
    }
    let (tx, rx) = oneshot::channel();
    channel.publish(&from, &who.tenant_id, None, publish, AckTo::Http(tx));
    let ack = rx
        .await
        .map_err(|_| err!(ServerShutdown, "the server stopped before acknowledging"))??;
    Ok(Json(ack))
}

async fn history(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    Params(query): Params<HistoryQuery>,
    headers: HeaderMap,
) -> Result<Json<HistoryPage>> {
    // No agent acts here: a key bound to agent names cannot read the whole history (direct
    // messages to others included) over HTTP.
    who.allow(channel_request(
        Capability::History,
        &name,
        q.scope,
        None,
        None,
    ))?;
    let channel = find(&app, &who, q.scope, &name, &headers, peer.ip()).await?;
    Ok(Json(channel.history(query, None).await?))
}

async fn presence(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<Json<PresenceState>> {
    who.allow(channel_request(
        Capability::Presence,
        &name,
        q.scope,
        None,
        None,
    ))?;
    Ok(Json(
        find(&app, &who, q.scope, &name, &headers, peer.ip())
            .await?
            .presence(),
    ))
}

/// The channel of a channel-storage request, once the key may make it (no agent acts over
/// HTTP, so a temporary key bound to agent names may not).
async fn kv_channel(
    app: &App,
    who: &Principal,
    (name, scope): (&str, Scope),
    headers: &HeaderMap,
    ip: IpAddr,
    write: bool,
) -> Result<Arc<Channel>> {
    who.allow(kv_request(name, scope, None, write))?;
    find(app, who, scope, name, headers, ip).await
}

async fn kv_list(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path(name): Path<String>,
    Params(q): Params<ScopeParam>,
    Params(list): Params<switchboard_protocol::kv::KvList>,
    headers: HeaderMap,
) -> Result<Json<switchboard_protocol::kv::KvPage>> {
    let channel = kv_channel(&app, &who, (&name, q.scope), &headers, peer.ip(), false).await?;
    Ok(Json(crate::kv::list(&app, &channel, list).await?))
}

async fn kv_get(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, key)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
) -> Result<Json<switchboard_protocol::kv::KvEntry>> {
    let channel = kv_channel(&app, &who, (&name, q.scope), &headers, peer.ip(), false).await?;
    let key = switchboard_protocol::kv::KvKey { key, version: None };
    Ok(Json(crate::kv::get(&app, &channel, &key).await?))
}

/// `PUT …/kv/{key}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KvPutBody {
    value: Box<RawValue>,
    version: Option<u64>,
    ttl_secs: Option<u64>,
}

async fn kv_put(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, key)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    headers: HeaderMap,
    Body(body): Body<KvPutBody>,
) -> Result<Json<switchboard_protocol::kv::KvEntry>> {
    let channel = kv_channel(&app, &who, (&name, q.scope), &headers, peer.ip(), true).await?;
    let put = switchboard_protocol::kv::KvPut {
        key,
        value: body.value,
        version: body.version,
        ttl_secs: body.ttl_secs,
    };
    Ok(Json(crate::kv::put(&app, &channel, "http", put).await?))
}

#[derive(Deserialize)]
struct VersionParam {
    version: Option<u64>,
}

async fn kv_delete(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Auth(who): Auth,
    Path((name, key)): Path<(String, String)>,
    Params(q): Params<ScopeParam>,
    Params(v): Params<VersionParam>,
    headers: HeaderMap,
) -> Result<StatusCode> {
    let channel = kv_channel(&app, &who, (&name, q.scope), &headers, peer.ip(), true).await?;
    let key = switchboard_protocol::kv::KvKey {
        key,
        version: v.version,
    };
    crate::kv::delete(&app, &channel, "http", key).await?;
    Ok(StatusCode::NO_CONTENT)
}
