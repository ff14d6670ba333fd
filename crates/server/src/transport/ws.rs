//! The WebSocket endpoint `/socket/websocket`, speaking the Phoenix Channels V2 serializer.
//!
//! Each connection is two tasks: this reader, which decodes frames and acts on them, and a
//! writer, which drains the connection's bounded queue to the socket in batches. Everything
//! the server sends (replies, messages, presence) goes through that one queue, so frames
//! for a topic are never reordered.

use crate::App;
use crate::auth::Principal;
use crate::channel::{AckTo, Channel};
use crate::connection::{ConnHandle, Outbound, close_frame, reply_error, reply_ok, socket_error};
use crate::error::{Error, Result, err};
use crate::hub::CreateOptions;
use axum::extract::ws::{Message as WsFrame, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchboard_protocol::limits::{MAX_EVENT_TYPES, MAX_ID_LEN, MAX_META_BYTES, MAX_TYPE_LEN};
use switchboard_protocol::{
    CloseCode, ErrorCode, Frame, HistoryQuery, JoinParams, Payload, Publish, channel_of_topic,
    events, valid_name,
};
use tokio::sync::Semaphore;

/// Connect parameters in the upgrade URL.
#[derive(Deserialize)]
pub struct ConnectParams {
    vsn: Option<String>,
    api_key: Option<String>,
}

/// Decrements the connection count when the connection (or a failed upgrade) ends.
struct Counted(Arc<App>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /socket/websocket`: checks limits, then upgrades.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    Query(params): Query<ConnectParams>,
    ws: WebSocketUpgrade,
) -> Response {
    if params.vsn.as_deref().is_some_and(|v| !v.starts_with("2.")) {
        return err!(
            InvalidPayload,
            "only the Phoenix V2 serializer is spoken: connect with vsn=2.0.0"
        )
        .into_response();
    }
    if *app.shutdown.borrow() {
        return err!(
            ServerShutdown,
            "the server is shutting down; connect to another node or retry"
        )
        .into_response();
    }
    let max = app.config.limits.max_connections;
    if app.connections.fetch_add(1, Ordering::Relaxed) >= max {
        app.connections.fetch_sub(1, Ordering::Relaxed);
        return err!(
            TooManyConnections,
            "the server holds its maximum of {max} connections; retry later"
        )
        .into_response();
    }
    let counted = Counted(app.clone());
    let frame_limit = app.config.limits.max_frame_bytes;
    // tungstenite's default 128 KiB read and write buffers would cost every idle connection
    // a quarter of a megabyte; small ones grow only while a connection moves big frames, and
    // the writer task batches and flushes on its own.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_frame_size(frame_limit)
        .max_message_size(frame_limit)
        .on_upgrade(move |socket| run(counted, socket, params.api_key))
}

struct Joined {
    channel: Arc<Channel>,
    agent: Arc<str>,
}

struct Session {
    app: Arc<App>,
    conn: Arc<ConnHandle>,
    principal: Option<Principal>,
    joined: HashMap<String, Joined>,
    inflight: Arc<Semaphore>,
}

async fn run(counted: Counted, socket: WebSocket, api_key: Option<String>) {
    let app = counted.0.clone();
    app.metrics.connections.inc();
    let (conn, rx) = ConnHandle::new(
        app.next_conn_id(),
        app.config.limits.outbound_queue,
        app.metrics.clone(),
    );
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write_loop(sink, rx, conn.clone(), app.clone()));
    let mut session = Session {
        inflight: Arc::new(Semaphore::new(
            app.config.limits.max_inflight_publishes.max(1),
        )),
        app: app.clone(),
        conn: conn.clone(),
        principal: None,
        joined: HashMap::new(),
    };
    if let Some(key) = api_key {
        match app.keys.verify(&key) {
            Ok(principal) => session.principal = Some(principal),
            Err(e) => {
                conn.push(socket_error(e.code, &e.message));
                conn.close(CloseCode::InvalidKey.code(), "invalid_key");
            }
        }
    }
    session.read_loop(stream).await;
    for (_, joined) in session.joined.drain() {
        joined.channel.leave(conn.id);
    }
    conn.close(1000, "");
    let _ = writer.await;
    app.metrics.connections.dec();
    drop(counted);
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, WsFrame>,
    mut rx: tokio::sync::mpsc::Receiver<Outbound>,
    conn: Arc<ConnHandle>,
    app: Arc<App>,
) {
    loop {
        let out = tokio::select! {
            biased;
            _ = conn.closing() => break,
            out = rx.recv() => out,
        };
        let Some(out) = out else { break };
        let write = async {
            let mut bytes = 0u64;
            let mut ok = feed(&mut sink, out, &mut bytes).await;
            let mut frames = 1;
            while ok && frames < 256 {
                let Ok(more) = rx.try_recv() else { break };
                ok = feed(&mut sink, more, &mut bytes).await;
                frames += 1;
            }
            app.metrics.bytes_out.inc_by(bytes);
            ok && sink.flush().await.is_ok()
        };
        // A peer that stopped reading can block a write forever. On a close request, the write
        // in progress gets a moment to finish, so the close frame after it stays readable;
        // a peer that still reads nothing is dropped without one.
        tokio::pin!(write);
        let ok = tokio::select! {
            biased;
            ok = &mut write => ok,
            _ = conn.closing() => {
                match tokio::time::timeout(Duration::from_secs(1), &mut write).await {
                    Ok(true) => break,
                    _ => return,
                }
            }
        };
        if !ok {
            conn.close(1006, "write failed");
            return;
        }
    }
    let (code, reason) = conn
        .close_requested()
        .cloned()
        .unwrap_or((1000, String::new()));
    if code != CloseCode::SlowConsumer.code() {
        // Deliver what was queued before the close (e.g. the error that explains it), briefly.
        let drain = async {
            while let Ok(out) = rx.try_recv() {
                let mut bytes = 0;
                if !feed(&mut sink, out, &mut bytes).await {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(close_frame(code, &reason)),
    )
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

async fn feed(sink: &mut SplitSink<WebSocket, WsFrame>, out: Outbound, bytes: &mut u64) -> bool {
    let frames = match out {
        Outbound::Frame(f) => vec![f],
        Outbound::Batch(v) => v,
    };
    for frame in frames {
        *bytes += match &frame {
            WsFrame::Text(t) => t.len() as u64,
            WsFrame::Binary(b) => b.len() as u64,
            _ => 0,
        };
        if sink.feed(frame).await.is_err() {
            return false;
        }
    }
    true
}

fn is_too_large(e: &axum::Error) -> bool {
    let text = e.to_string();
    text.contains("Space limit exceeded")
        || text.contains("too long")
        || text.contains("Message too big")
}

impl Session {
    async fn read_loop(&mut self, mut stream: SplitStream<WebSocket>) {
        let limits = &self.app.config.limits;
        let heartbeat = Duration::from_millis(limits.heartbeat_timeout_ms);
        let auth = Duration::from_millis(limits.auth_timeout_ms);
        let deadline = tokio::time::sleep(if self.principal.is_some() {
            heartbeat
        } else {
            auth
        });
        tokio::pin!(deadline);
        let mut shutdown = self.app.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = self.conn.closing() => return,
                _ = crate::shutting_down(&mut shutdown) => {
                    self.conn.close(CloseCode::GoingAway.code(), "server_shutdown: reconnect and resume by offset");
                    return;
                }
                frame = stream.next() => {
                    let frame = match frame {
                        None | Some(Ok(WsFrame::Close(_))) => return,
                        Some(Err(e)) => {
                            if is_too_large(&e) {
                                self.conn.push(socket_error(ErrorCode::FrameTooLarge, "frame exceeds max_frame_bytes"));
                                self.conn.close(CloseCode::FrameTooLarge.code(), "frame_too_large");
                            }
                            return;
                        }
                        Some(Ok(frame)) => frame,
                    };
                    let was_authed = self.principal.is_some();
                    match frame {
                        WsFrame::Text(text) => {
                            self.app.metrics.bytes_in.inc_by(text.len() as u64);
                            match Frame::decode_text(&text) {
                                Ok(frame) => self.dispatch(frame).await,
                                Err(e) => self.malformed(e.to_string()).await,
                            }
                        }
                        WsFrame::Binary(bytes) => {
                            self.app.metrics.bytes_in.inc_by(bytes.len() as u64);
                            match Frame::decode_client_binary(&bytes) {
                                Ok(frame) => self.dispatch(frame).await,
                                Err(e) => self.malformed(e.to_string()).await,
                            }
                        }
                        _ => {}
                    }
                    // Any frame is a sign of life; before authentication only `auth` resets the clock.
                    if was_authed || self.principal.is_some() {
                        deadline.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                    }
                }
                _ = &mut deadline => {
                    if self.principal.is_none() {
                        self.conn.push(socket_error(ErrorCode::AuthTimeout, "authenticate with api_key in the URL or an auth event"));
                        self.conn.close(CloseCode::AuthTimeout.code(), "auth_timeout");
                    } else {
                        self.conn.close(CloseCode::HeartbeatTimeout.code(), "heartbeat_timeout");
                    }
                    return;
                }
            }
        }
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
                let result = match self.member(&frame.topic) {
                    Ok((channel, agent)) => match frame.payload.parse::<HistoryQuery>() {
                        Ok(query) => channel.history(query, Some(&agent)).await,
                        Err(e) => Err(err!(InvalidPayload, "history payload: {e}")),
                    },
                    Err(e) => Err(e),
                };
                self.reply(&frame, result).await;
            }
            events::PRESENCE => {
                let result = self
                    .member(&frame.topic)
                    .map(|(channel, _)| channel.presence());
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
        let tenant = principal.tenant_id.to_string();
        self.principal = Some(principal);
        Ok(serde_json::json!({ "tenant": tenant }))
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
        let params: JoinParams = frame
            .payload
            .parse()
            .map_err(|e| err!(InvalidPayload, "join payload: {e}"))?;
        validate_join(&params)?;
        let tenant = self
            .principal
            .as_ref()
            .expect("checked by dispatch")
            .tenant_id
            .clone();
        let options = CreateOptions {
            password: params.password.clone(),
            ..CreateOptions::default()
        };
        let (channel, created) = self
            .app
            .hub
            .open(&tenant, params.scope, name, options)
            .await?;
        if !created {
            channel.check_password(params.password.as_deref()).await?;
        }
        let outcome = channel.join(
            &self.conn,
            frame.join_ref.as_deref(),
            frame.reference.as_deref(),
            &params,
        )?;
        let agent: Arc<str> = params.agent_name.as_str().into();
        self.joined.insert(
            frame.topic.clone(),
            Joined {
                channel: channel.clone(),
                agent: agent.clone(),
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
        let publish = match publish {
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
        channel.publish(&agent, Some(self.conn.id), publish, ack);
    }
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
