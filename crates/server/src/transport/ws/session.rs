//! A connection's Phoenix session: authentication, the topics it joined, and what each
//! client frame asks for.

use super::Peer;
use crate::App;
use crate::auth::{Principal, channel_request, kv_request};
use crate::channel::{AckTo, Channel};
use crate::connection::{ConnHandle, Outbound, reply_error, reply_ok, socket_error};
use crate::error::{Error, Result, err};
use crate::hub::CreateOptions;
use crate::rate_limit::{Meter, TenantConnection};
use crate::storage::Settle;
use crate::usage::{Connected, Usage};
use bytes::Bytes;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use switchboard_protocol::discovery::{DISCOVERY_CHANNEL, SYSTEM_CHANNEL_PREFIX, UpdateMetadata};
use switchboard_protocol::limits::{MAX_EVENT_TYPES, MAX_ID_LEN, MAX_META_BYTES, MAX_TYPE_LEN};
use switchboard_protocol::{
    Capability, CloseCode, ErrorCode, Frame, HistoryQuery, JoinParams, Millis, Payload, Publish,
    Scope, channel_of_topic, events, valid_name,
};
use tokio::sync::Semaphore;

struct Joined {
    channel: Arc<Channel>,
    agent: Arc<str>,
    /// Whether it receives messages (false: joined to publish only).
    receives: bool,
    /// The tier its history reads use when they name none.
    poll_source: Option<switchboard_protocol::PollSource>,
}

pub(super) struct Session {
    pub(super) app: Arc<App>,
    pub(super) conn: Arc<ConnHandle>,
    peer: Peer,
    principal: Option<Principal>,
    /// The publish buckets of this connection, its key and its tenant.
    meter: Option<Meter>,
    /// This connection's place in its tenant's connection cap.
    tenant_slot: Option<TenantConnection>,
    /// This connection in its key's usage (connections now and at peak).
    usage_slot: Option<Connected>,
    joined: HashMap<String, Joined>,
    inflight: Arc<Semaphore>,
}

impl Session {
    pub(super) fn new(app: Arc<App>, conn: Arc<ConnHandle>, peer: Peer) -> Session {
        Session {
            inflight: Arc::new(Semaphore::new(
                app.config.limits.max_inflight_publishes.max(1),
            )),
            app,
            conn,
            peer,
            principal: None,
            meter: None,
            tenant_slot: None,
            usage_slot: None,
            joined: HashMap::new(),
        }
    }

    /// Authenticates with the key from the upgrade URL; a bad key closes the connection.
    pub(super) fn authenticate_with(&mut self, key: &str) {
        match self.app.keys.verify(key) {
            Ok(principal) => self.set_principal(principal),
            Err(e) => {
                self.conn.push(socket_error(e.code, &e.message));
                self.conn.close(CloseCode::InvalidKey.code(), "invalid_key");
            }
        }
    }

    /// Adopts a verified principal and registers the connection under it, so that revoking
    /// its key closes it. A revocation that raced the verification is caught here.
    fn set_principal(&mut self, principal: Principal) {
        if self.tenant_slot.is_none() {
            match self.app.rate_limits.connect(&principal.tenant_id) {
                Ok(slot) => self.tenant_slot = Some(slot),
                Err(e) => {
                    self.conn.push(socket_error(e.code, &e.message));
                    // 1013: try again later (reconnecting with backoff is right).
                    self.conn.close(1013, "too_many_connections");
                    return;
                }
            }
        }
        self.peer.unauthenticated = None;
        if self.usage_slot.is_none() {
            let counters = self
                .app
                .usage
                .counters(&principal.tenant_id, principal.usage_key());
            self.usage_slot = Some(Usage::connect(&counters));
            let _ = self.conn.usage.set(counters);
        }
        match &mut self.meter {
            Some(meter) => {
                self.app
                    .rate_limits
                    .rebind(meter, &principal.tenant_id, &principal.key_id);
            }
            None => {
                self.meter = Some(
                    self.app
                        .rate_limits
                        .meter(&principal.tenant_id, &principal.key_id),
                );
            }
        }
        self.app.live.insert(&self.conn, &principal);
        if !self.app.keys.is_live(&principal) {
            self.conn.push(socket_error(
                ErrorCode::KeyRevoked,
                "the API key of this connection was revoked",
            ));
            self.conn.close(CloseCode::KeyRevoked.code(), "key_revoked");
        }
        self.principal = Some(principal);
    }

    pub(super) fn authenticated(&self) -> bool {
        self.principal.is_some()
    }

    /// When the connection's temporary key expires (none for original keys).
    pub(super) fn key_expires_at(&self) -> Option<Millis> {
        self.principal
            .as_ref()
            .and_then(|p| p.grant.as_ref())
            .map(|g| g.expires_at())
    }

    /// Checks an operation on a joined channel against the connection's key.
    fn allow(
        &self,
        operation: Capability,
        channel: &Channel,
        agent: &str,
        event_type: Option<&str>,
    ) -> Result<()> {
        let principal = self.principal.as_ref().expect("checked by dispatch");
        principal.allow(channel_request(
            operation,
            channel.name(),
            channel.scope,
            Some(agent),
            event_type,
        ))
    }

    /// Channel storage on a joined channel.
    async fn kv(&mut self, frame: &Frame) -> Result<serde_json::Value> {
        let (channel, agent) = self.member(&frame.topic)?;
        let event = frame.event.as_str();
        let principal = self.principal.as_ref().expect("checked by dispatch");
        principal.allow(kv_request(
            channel.name(),
            channel.scope,
            Some(&agent),
            matches!(event, events::KV_PUT | events::KV_DELETE),
        ))?;
        let bad = |e: String| err!(InvalidPayload, "{event} payload: {e}");
        let app = &self.app;
        match event {
            events::KV_PUT => {
                let req = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(crate::kv::put(app, &channel, &agent, req).await?)
            }
            events::KV_GET => {
                let req = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(crate::kv::get(app, &channel, &req).await?)
            }
            events::KV_DELETE => {
                let req = frame.payload.parse().map_err(bad)?;
                crate::kv::delete(app, &channel, &agent, req).await?;
                Ok(serde_json::json!({}))
            }
            _ => {
                let req = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(crate::kv::list(app, &channel, req).await?)
            }
        }
        .map_err(crate::error::Error::internal)
    }

    /// After a key refresh: leaves, with `kicked {code: "forbidden"}`, every channel the new
    /// key does not allow as joined: receiving needs `subscribe`, publishing only `publish`.
    fn recheck_joined(&mut self) {
        let mut lost = Vec::new();
        for (topic, joined) in &self.joined {
            let may = |op| self.allow(op, &joined.channel, &joined.agent, None).is_ok();
            let allowed =
                may(Capability::Subscribe) || (!joined.receives && may(Capability::Publish));
            if !allowed {
                lost.push(topic.clone());
            }
        }
        for topic in lost {
            if let Some(joined) = self.joined.remove(&topic) {
                joined.channel.kick(
                    self.conn.id,
                    ErrorCode::Forbidden,
                    "the refreshed key does not allow this channel",
                );
            }
        }
    }

    pub(super) async fn on_text(&mut self, text: &str) {
        match Frame::decode_text(text) {
            Ok(frame) => self.dispatch(frame).await,
            Err(e) => self.malformed(e.to_string()).await,
        }
    }

    pub(super) async fn on_binary(&mut self, bytes: &Bytes) {
        match Frame::decode_client_binary(bytes) {
            Ok(frame) => self.dispatch(frame).await,
            Err(e) => self.malformed(e.to_string()).await,
        }
    }

    /// Leaves every joined channel (the connection ended).
    pub(super) fn leave_all(&mut self) {
        for (_, joined) in self.joined.drain() {
            joined.channel.leave(self.conn.id);
        }
        self.app.live.remove(self.conn.id);
    }

    async fn malformed(&self, why: String) {
        self.conn
            .send(Outbound::Frame(socket_error(
                ErrorCode::MalformedFrame,
                &format!("{why}; frames are [join_ref, ref, topic, event, payload]"),
            )))
            .await;
    }

    async fn reply(&self, frame: &Frame, result: Result<impl serde::Serialize>) {
        let jr = frame.join_ref.as_deref();
        // A push without a ref expects no reply; its failure still surfaces as a socket error.
        let out = match (result, frame.reference.as_deref()) {
            (Ok(_), None) => return,
            (Err(e), None) => socket_error(e.code, &e.message),
            (Ok(response), r) => reply_ok(jr, r, &frame.topic, &response),
            (Err(e), r) => reply_error(jr, r, &frame.topic, &e.reply()),
        };
        self.conn.send(Outbound::Frame(out)).await;
    }

    async fn dispatch(&mut self, frame: Frame) {
        if frame.topic == switchboard_protocol::PHOENIX_TOPIC {
            let result = match frame.event.as_str() {
                events::HEARTBEAT => Ok(serde_json::json!({})),
                events::AUTH => self.authenticate(&frame),
                other => Err(err!(
                    UnknownEvent,
                    "unknown event {other:?} on the phoenix topic"
                )),
            };
            let failed_auth = frame.event == events::AUTH && result.is_err();
            self.reply(&frame, result).await;
            if failed_auth {
                self.conn.close(CloseCode::InvalidKey.code(), "invalid_key");
            }
            return;
        }
        let Some(name) = channel_of_topic(&frame.topic).map(str::to_owned) else {
            let topic = frame.topic.clone();
            return self
                .reply(
                    &frame,
                    Err::<(), _>(err!(
                        InvalidTopic,
                        "unknown topic {topic:?}: use channel:<name>"
                    )),
                )
                .await;
        };
        if self.principal.is_none() {
            return self
                .reply(
                    &frame,
                    Err::<(), _>(err!(
                        Unauthenticated,
                        "authenticate first: api_key in the URL or an auth event"
                    )),
                )
                .await;
        }
        match frame.event.as_str() {
            events::JOIN => self.join(&frame, &name).await,
            events::LEAVE => {
                if let Some(joined) = self.joined.remove(&frame.topic) {
                    joined.channel.leave(self.conn.id);
                }
                self.reply(&frame, Ok(serde_json::json!({}))).await;
            }
            events::PUBLISH => self.publish(frame).await,
            events::HISTORY => {
                let source = self.joined.get(&frame.topic).and_then(|j| j.poll_source);
                let result = match self.member(&frame.topic) {
                    Ok((channel, agent)) => {
                        match self.allow(Capability::History, &channel, &agent, None) {
                            Ok(()) => match frame.payload.parse::<HistoryQuery>() {
                                Ok(mut query) => {
                                    query.poll_source = query.poll_source.or(source);
                                    channel.history(query, Some(&agent)).await
                                }
                                Err(e) => Err(err!(InvalidPayload, "history payload: {e}")),
                            },
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                };
                self.reply(&frame, result).await;
            }
            events::KV_PUT | events::KV_GET | events::KV_DELETE | events::KV_LIST => {
                let result = self.kv(&frame).await;
                self.reply(&frame, result).await;
            }
            events::COMPLETE => {
                let result = match self.member(&frame.topic) {
                    Ok((channel, agent)) if channel.row.members.is_some() => {
                        let tenant = self.principal.as_ref().expect("checked").tenant_id.clone();
                        let why = format!("{agent} completed the team channel");
                        self.app
                            .hub
                            .complete(&tenant, channel.scope, channel.name(), &why)
                            .await
                    }
                    Ok(_) => Err(err!(
                        InvalidPayload,
                        "only team channels (created with members) complete"
                    )),
                    Err(e) => Err(e),
                };
                self.reply(&frame, result.map(|()| serde_json::json!({})))
                    .await;
            }
            events::SIGNAL => {
                let result = self.member(&frame.topic).and_then(|(channel, agent)| {
                    self.allow(Capability::Signal, &channel, &agent, None)?;
                    let signal: switchboard_protocol::Signal = frame
                        .payload
                        .parse()
                        .map_err(|e| err!(InvalidPayload, "signal payload: {e}"))?;
                    if signal.data.get().len() > switchboard_protocol::signal::MAX_SIGNAL_BYTES {
                        return Err(err!(
                            MessageTooLarge,
                            "signal data is at most {} bytes",
                            switchboard_protocol::signal::MAX_SIGNAL_BYTES
                        ));
                    }
                    channel.signal(self.conn.id, signal)
                });
                self.reply(&frame, result.map(|()| serde_json::json!({})))
                    .await;
            }
            events::ACK | events::ACKNOWLEDGE | events::REJECT => self.settle(frame),
            events::STREAM_OPEN
            | events::STREAM_CHUNK
            | events::STREAM_CLOSE
            | events::STREAM_CANCEL
            | events::STREAM_ACCEPT
            | events::STREAM_ACK => {
                let result = self.stream(&frame).await;
                self.reply(&frame, result).await;
            }
            events::ANNOUNCE | events::UPDATE_METADATA | events::DISCOVER => {
                let result = self.directory(&frame).await;
                self.reply(&frame, result).await;
            }
            events::PRESENCE => {
                let result = self.member(&frame.topic).and_then(|(channel, agent)| {
                    self.allow(Capability::Presence, &channel, &agent, None)?;
                    Ok(channel.presence())
                });
                self.reply(&frame, result).await;
            }
            other => {
                let e = err!(
                    UnknownEvent,
                    "unknown event {other:?}; see spec/protocol.md"
                );
                self.reply(&frame, Err::<(), _>(e)).await;
            }
        }
    }

    fn authenticate(&mut self, frame: &Frame) -> Result<serde_json::Value> {
        #[derive(Deserialize)]
        struct Auth {
            api_key: String,
        }
        let auth: Auth = frame
            .payload
            .parse()
            .map_err(|e| err!(InvalidPayload, "auth payload: {e}"))?;
        let principal = self.app.keys.verify(&auth.api_key)?;
        if self
            .principal
            .as_ref()
            .is_some_and(|p| p.tenant_id != principal.tenant_id)
        {
            return Err(err!(
                Forbidden,
                "a connection stays with its tenant; connect again to use another tenant's key"
            ));
        }
        let tenant = principal.tenant_id.to_string();
        let expires_at = principal.grant.as_ref().map(|g| g.expires_at());
        self.set_principal(principal);
        self.recheck_joined();
        Ok(match expires_at {
            Some(expires_at) => serde_json::json!({ "tenant": tenant, "expires_at": expires_at }),
            None => serde_json::json!({ "tenant": tenant }),
        })
    }

    /// The channel and agent name of a joined topic, if this connection is still in it.
    fn member(&mut self, topic: &str) -> Result<(Arc<Channel>, Arc<str>)> {
        let not_joined = || err!(NotJoined, "join {topic} before using it");
        let joined = self.joined.get(topic).ok_or_else(not_joined)?;
        if !joined.channel.is_member(self.conn.id) {
            // Taken over by another session or removed by a delete.
            self.joined.remove(topic);
            return Err(not_joined());
        }
        Ok((joined.channel.clone(), joined.agent.clone()))
    }

    async fn join(&mut self, frame: &Frame, name: &str) {
        if let Err(e) = self.try_join(frame, name).await {
            self.reply(frame, Err::<(), _>(e)).await;
        }
    }

    async fn try_join(&mut self, frame: &Frame, name: &str) -> Result<()> {
        if self.joined.contains_key(&frame.topic) && self.member(&frame.topic).is_ok() {
            return Err(err!(
                AlreadyJoined,
                "this connection already joined {}",
                frame.topic
            ));
        }
        let max = self.app.config.limits.max_channels_per_connection;
        if self.joined.len() >= max {
            return Err(err!(
                TooManyChannels,
                "a connection may join at most {max} channels; open another connection"
            ));
        }
        let mut params: JoinParams = frame
            .payload
            .parse()
            .map_err(|e| err!(InvalidPayload, "join payload: {e}"))?;
        validate_join(&params)?;
        let principal = self.principal.as_ref().expect("checked by dispatch");
        let request = |op| channel_request(op, name, params.scope, Some(&params.agent_name), None);
        let receives = match principal.allow(request(Capability::Subscribe)) {
            Ok(()) => true,
            // A key that may only publish joins to publish, and receives nothing.
            Err(e) if e.code == ErrorCode::Forbidden => {
                principal.allow(request(Capability::Publish)).map_err(|_| {
                    err!(
                        Forbidden,
                        "this key may neither subscribe to nor publish in {name:?} as {:?}",
                        params.agent_name
                    )
                })?;
                params.event_types = Some(Vec::new());
                params.presence = false;
                false
            }
            Err(e) => return Err(e),
        };
        if params.inbox {
            principal.allow(request(Capability::Inbox))?;
            if !receives {
                return Err(err!(
                    Forbidden,
                    "consuming an inbox needs the subscribe capability"
                ));
            }
        }
        let tenant = principal.tenant_id.clone();
        let options = CreateOptions {
            password: params.password.clone(),
            ..CreateOptions::default()
        };
        let (channel, created) = self
            .app
            .hub
            .open(&tenant, params.scope, name, options)
            .await?;
        if let Some(members) = &channel.row.members
            && !members.contains(&params.agent_name)
        {
            return Err(err!(
                NotAMember,
                "{:?} is not a member of this team channel",
                params.agent_name
            ));
        }
        if !created {
            let limits = &self.app.rate_limits;
            let guarded = channel.row.password_hash.is_some();
            if guarded {
                limits.password_allowed(channel.row.id, self.peer.ip)?;
            }
            let checked = channel.check_password(params.password.as_deref()).await;
            if let Err(e) = &checked
                && e.code == ErrorCode::BadPassword
            {
                limits.password_failed(channel.row.id, self.peer.ip);
            }
            checked?;
        }
        // Agents in the server's own channels (the discovery channel) are watchers, not
        // online agents.
        let online = (!name.starts_with(SYSTEM_CHANNEL_PREFIX))
            .then(|| self.app.directory.track(&tenant, &params.agent_name));
        let outcome = channel.join(
            &self.conn,
            frame.join_ref.as_deref(),
            frame.reference.as_deref(),
            &params,
            online,
        )?;
        self.app.streams.offer_pending(&channel, &params.agent_name);
        let agent: Arc<str> = params.agent_name.as_str().into();
        self.joined.insert(
            frame.topic.clone(),
            Joined {
                channel: channel.clone(),
                agent: agent.clone(),
                receives,
                poll_source: params.poll_source,
            },
        );
        if let crate::channel::JoinOutcome::CatchUp { from, to, filter } = outcome {
            let replayed = channel.replay(&self.conn, &filter, from, to).await;
            channel.finish_catch_up(self.conn.id);
            if let Err(e) = replayed {
                tracing::warn!(error = %e, topic = %frame.topic, "replay failed");
                self.conn.close(1011, "replay failed; reconnect and resume");
            }
        }
        Ok(())
    }

    /// The stream events of the joined agent (sender or recipient).
    async fn stream(&mut self, frame: &Frame) -> Result<serde_json::Value> {
        let (channel, agent) = self.member(&frame.topic)?;
        self.allow(Capability::Stream, &channel, &agent, None)?;
        let streams = &self.app.streams;
        let bad = |e: String| err!(InvalidPayload, "{} payload: {e}", frame.event);
        let value = match frame.event.as_str() {
            events::STREAM_OPEN => {
                let open = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(streams.open(&channel, &agent, open).await?)
            }
            events::STREAM_CHUNK => {
                let Payload::Binary(bytes) = &frame.payload else {
                    return Err(err!(
                        InvalidPayload,
                        "stream_chunk is a binary push: u32 header length, header JSON, bytes"
                    ));
                };
                let (header, chunk) = switchboard_protocol::stream::decode(bytes)
                    .map_err(|e| err!(InvalidPayload, "stream_chunk: {e}"))?;
                if let Some(usage) = self.conn.usage.get() {
                    usage.received(chunk.len());
                }
                serde_json::to_value(streams.chunk(&channel, &agent, header, chunk).await?)
            }
            events::STREAM_CLOSE => {
                let close = frame.payload.parse().map_err(bad)?;
                streams.close(&channel, &agent, close).await?;
                Ok(serde_json::json!({}))
            }
            events::STREAM_CANCEL => {
                let cancel = frame.payload.parse().map_err(bad)?;
                streams.cancel(&channel, &agent, cancel).await?;
                Ok(serde_json::json!({}))
            }
            events::STREAM_ACCEPT => {
                let accept = frame.payload.parse().map_err(bad)?;
                let join_ref = frame.join_ref.clone();
                serde_json::to_value(
                    streams
                        .accept(&channel, &self.conn, join_ref, &agent, accept)
                        .await?,
                )
            }
            _ => {
                let ack = frame.payload.parse().map_err(bad)?;
                streams.ack(&channel, &agent, ack).await?;
                Ok(serde_json::json!({}))
            }
        };
        value.map_err(Error::internal)
    }

    /// `announce`, `update_metadata` and `discover`, for the joined agent.
    async fn directory(&mut self, frame: &Frame) -> Result<serde_json::Value> {
        let (_, agent) = self.member(&frame.topic)?;
        let principal = self.principal.as_ref().expect("checked by dispatch");
        let tenant = principal.tenant_id.clone();
        let bad = |e: String| err!(InvalidPayload, "{} payload: {e}", frame.event);
        let directory = &self.app.directory;
        let value = match frame.event.as_str() {
            events::ANNOUNCE => {
                let announce = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(directory.announce(&tenant, &agent, announce).await?)
            }
            events::UPDATE_METADATA => {
                let update: UpdateMetadata = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(
                    directory
                        .update_metadata(&tenant, &agent, update.metadata)
                        .await?,
                )
            }
            _ => {
                principal.allow(channel_request(
                    Capability::Presence,
                    DISCOVERY_CHANNEL,
                    Scope::Private,
                    Some(&agent),
                    None,
                ))?;
                let query = frame.payload.parse().map_err(bad)?;
                serde_json::to_value(directory.discover(&tenant, &query)?)
            }
        };
        value.map_err(Error::internal)
    }

    /// `ack` or `reject` of an inbox message. The reply comes once the settlement is
    /// durable, without holding up the frames behind it, so a consumer's acks pipeline and
    /// share fsyncs.
    fn settle(&mut self, frame: Frame) {
        let settle = self.member(&frame.topic).and_then(|(channel, agent)| {
            self.allow(Capability::Inbox, &channel, &agent, None)?;
            let bad = |e: String| err!(InvalidPayload, "{} payload: {e}", frame.event);
            let settle = if frame.event != events::REJECT {
                let ack: switchboard_protocol::Ack = frame.payload.parse().map_err(bad)?;
                Settle::Ack { id: ack.id }
            } else {
                crate::inbox::rejection(frame.payload.parse().map_err(bad)?)?
            };
            Ok((channel, agent, settle))
        });
        let conn = self.conn.clone();
        tokio::spawn(async move {
            let result = match settle {
                Ok((channel, agent, settle)) => match channel.inbox_settler(conn.id) {
                    Some(settler) => settler.settle(settle).await,
                    None => channel.inbox_settle(&agent, settle).await.map(|_| ()),
                },
                Err(e) => Err(e),
            };
            let jr = frame.join_ref.as_deref();
            let out = match (result, frame.reference.as_deref()) {
                (Ok(()), None) => return,
                (Err(e), None) => socket_error(e.code, &e.message),
                (Ok(()), r) => reply_ok(jr, r, &frame.topic, &serde_json::json!({})),
                (Err(e), r) => reply_error(jr, r, &frame.topic, &e.reply()),
            };
            conn.push(out);
        });
    }

    async fn publish(&mut self, frame: Frame) {
        let (channel, agent) = match self.member(&frame.topic) {
            Ok(found) => found,
            Err(e) => return self.reply(&frame, Err::<(), _>(e)).await,
        };
        let publish = match &frame.payload {
            Payload::Binary(bytes) => decode_binary_publish(bytes),
            payload => payload
                .parse::<Publish>()
                .map_err(|e| err!(InvalidPayload, "publish payload: {e}")),
        }
        .and_then(|p| validate_publish(p, self.app.config.limits.max_message_bytes));
        let publish = match publish.and_then(|p| {
            refuse_system_channel(channel.name())?;
            self.allow(Capability::Publish, &channel, &agent, Some(&p.kind))?;
            if let Some(meter) = &self.meter {
                meter.publish(p.body_len())?;
            }
            if let Some(usage) = self.conn.usage.get() {
                usage.received(p.body_len());
            }
            Ok(p)
        }) {
            Ok(p) => p,
            Err(e) => return self.reply(&frame, Err::<(), _>(e)).await,
        };
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let mut e = err!(
                RateLimited,
                "{} publishes await acknowledgement; wait for acks before sending more",
                self.app.config.limits.max_inflight_publishes
            );
            e.retry_after_ms = Some(100);
            return self.reply(&frame, Err::<(), _>(e)).await;
        };
        let ack = AckTo::Socket {
            conn: self.conn.clone(),
            join_ref: frame.join_ref,
            reference: frame.reference,
            topic: channel.topic.clone(),
            started: Instant::now(),
            permit: Some(permit),
        };
        let tenant = &self
            .principal
            .as_ref()
            .expect("checked by dispatch")
            .tenant_id;
        channel.publish(&agent, tenant, Some(self.conn.id), publish, ack);
    }
}

/// Only the server publishes in `sys.` channels.
pub fn refuse_system_channel(name: &str) -> Result<()> {
    if name.starts_with(SYSTEM_CHANNEL_PREFIX) {
        return Err(err!(
            Forbidden,
            "{SYSTEM_CHANNEL_PREFIX} channels are written by the server only"
        ));
    }
    Ok(())
}

fn decode_binary_publish(bytes: &Bytes) -> Result<Publish> {
    Publish::decode_envelope(bytes).map_err(|e| err!(InvalidPayload, "binary publish: {e}"))
}

fn validate_join(p: &JoinParams) -> Result<()> {
    if !valid_name(&p.agent_name) {
        return Err(err!(
            InvalidAgentName,
            "agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    if let Some(types) = &p.event_types
        && (types.len() > MAX_EVENT_TYPES
            || types.iter().any(|t| t.is_empty() || t.len() > MAX_TYPE_LEN))
    {
        return Err(err!(
            InvalidPayload,
            "event_types: at most {MAX_EVENT_TYPES} types of 1-{MAX_TYPE_LEN} bytes"
        ));
    }
    if let Some(meta) = &p.meta {
        let size = serde_json::to_string(meta)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > MAX_META_BYTES {
            return Err(err!(
                InvalidPayload,
                "meta is {size} bytes; at most {MAX_META_BYTES}"
            ));
        }
    }
    if p.session_id.as_ref().is_some_and(|s| s.len() > 64)
        || p.password.as_ref().is_some_and(|s| s.len() > 1024)
    {
        return Err(err!(
            InvalidPayload,
            "session_id is at most 64 bytes, password at most 1024"
        ));
    }
    Ok(())
}

/// Checks a publish against the limits (shared with the HTTP API).
pub fn validate_publish(p: Publish, max_message_bytes: usize) -> Result<Publish, Error> {
    if p.kind.is_empty() || p.kind.len() > MAX_TYPE_LEN {
        return Err(err!(InvalidPayload, "type must be 1-{MAX_TYPE_LEN} bytes"));
    }
    if p.id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > MAX_ID_LEN)
    {
        return Err(err!(InvalidPayload, "id must be 1-{MAX_ID_LEN} bytes"));
    }
    if let Some(to) = &p.to
        && !valid_name(to)
    {
        return Err(err!(
            InvalidAgentName,
            "to: agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
        ));
    }
    if p.attachments.len() > switchboard_protocol::limits::MAX_ATTACHMENTS {
        return Err(err!(
            InvalidPayload,
            "at most {} attachments",
            switchboard_protocol::limits::MAX_ATTACHMENTS
        ));
    }
    let size = p.body_len();
    if size > max_message_bytes {
        return Err(err!(
            MessageTooLarge,
            "the message is {size} bytes; at most {max_message_bytes} (data plus attachments)"
        ));
    }
    Ok(p)
}
