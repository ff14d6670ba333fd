//! The background connection task: one socket, heartbeats, ref → reply routing, reconnect.
//!
//! Handles ([`Client`](crate::Client), [`Channel`](crate::Channel)) talk to the task over a
//! command queue and get answers on oneshots; the task alone owns the socket and every piece
//! of per-channel state, so there are no locks on the hot path. When the socket drops, the
//! task reconnects with backoff, rejoins every channel from the last delivered offset, and
//! re-sends the publishes that had no reply yet with their original ids (the server
//! deduplicates them), so the application sees neither a gap nor a duplicate.
//!
//! With a key-refresh callback, the task also keeps a temporary key alive: on `key_expiring` it
//! fetches a fresh key in the background and sends it with `auth` on the live socket, and after
//! a close for the key (4500/4503/4504) it fetches one before reconnecting, once per refusal.

use crate::channel::ChannelEvent;
use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::tracker::OffsetTracker;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_protocol::{
    CloseCode, ErrorCode, ErrorReply, Frame, JoinParams, JoinReply, Message, PHOENIX_TOPIC,
    Payload, PresenceDiff, PresenceState, events,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where a request's answer goes.
pub(crate) type Responder<T> = oneshot::Sender<Result<T>>;

/// What a successful first join hands back to the caller.
pub(crate) type Joined = (JoinReply, watch::Receiver<JoinReply>);

/// A request from a handle to the task.
pub(crate) enum Command {
    /// Join a topic for the first time.
    Join {
        topic: String,
        params: JoinParams,
        events: mpsc::UnboundedSender<ChannelEvent>,
        respond: Responder<Joined>,
    },
    /// Push an event on a joined topic and route its reply back.
    Push(PushRequest),
    /// Leave a topic (answers once the leave is queued, not when the server replies).
    Leave {
        topic: String,
        respond: Option<oneshot::Sender<()>>,
    },
    /// Close the connection and end every channel.
    Close { done: oneshot::Sender<()> },
}

/// A push that waits for its reply, and may be re-sent after a reconnect.
pub(crate) struct PushRequest {
    pub(crate) topic: String,
    pub(crate) event: &'static str,
    pub(crate) payload: Payload,
    /// Safe to send again after a reconnect (reads, and publishes with an id).
    pub(crate) retry: bool,
    pub(crate) respond: Responder<Box<RawValue>>,
}

/// State shared by the handles and the task.
#[derive(Default)]
pub(crate) struct Shared {
    /// Why the task ended, once it has.
    closed: Mutex<Option<Error>>,
    /// Whether a socket is up right now.
    connected: AtomicBool,
}

impl Shared {
    /// The error a request gets once the task has ended.
    pub(crate) fn closed_reason(&self) -> Error {
        self.closed
            .lock()
            .expect("lock poisoned")
            .clone()
            .unwrap_or(Error::Closed)
    }

    /// Whether a socket is up right now.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Opens the socket (one attempt, bounded by the request timeout).
pub(crate) async fn open(config: &ClientConfig) -> Result<Socket> {
    let url = config.socket_url()?;
    // Incoming history pages can be large; the server bounds what it sends.
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let connect = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config), true);
    match tokio::time::timeout(config.request_timeout, connect).await {
        Err(_) => Err(Error::Timeout(config.request_timeout)),
        Ok(Err(e)) => Err(connect_error(e)),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// Turns a handshake failure into an error, keeping the server's error reply when the upgrade
/// was refused with one (e.g. 503 `too_many_connections`).
fn connect_error(e: tokio_tungstenite::tungstenite::Error) -> Error {
    use tokio_tungstenite::tungstenite::Error as WsError;
    if let WsError::Http(response) = &e
        && let Some(body) = response.body()
        && let Ok(reply) = serde_json::from_slice::<ErrorReply>(body)
    {
        return Error::Server(reply);
    }
    Error::Connection(e.to_string())
}

/// Starts the task on an open socket.
pub(crate) fn spawn(
    config: ClientConfig,
    socket: Socket,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
) {
    let (refreshed_tx, refreshed_rx) = mpsc::unbounded_channel();
    let task = Connection {
        config,
        refreshed_tx,
        refreshed_rx,
        refreshing: false,
        key_retried: false,
        commands,
        shared,
        next_ref: 0,
        next_seq: 0,
        pending: HashMap::new(),
        channels: HashMap::new(),
        outbox: Vec::new(),
        heartbeat_ref: None,
        heard: false,
        healthy: false,
        socket_error: None,
        end: None,
    };
    tokio::spawn(task.run(socket));
}

/// Why `drive` returned.
enum End {
    /// The socket broke or the server closed it with a code that allows reconnecting.
    Lost(String),
    /// The server closed with a code ≥ 4500: do not reconnect (unless a fresh key may help).
    Fatal {
        reply: ErrorReply,
        /// Closed for its key (4500, 4503, 4504): a fresh key may be let in.
        key_refused: bool,
    },
    /// `Client::close` was called.
    Closed(oneshot::Sender<()>),
    /// Every handle was dropped.
    Idle,
}

/// A reply the task is waiting for, by ref.
enum Pending {
    Heartbeat,
    Auth,
    Join { topic: String },
    Leave,
    Push(Queued),
}

/// A push with its place in the order of requests, so re-sends keep that order.
struct Queued {
    seq: u64,
    request: PushRequest,
}

/// Per-channel state, owned by the task.
struct ChannelState {
    /// The join parameters the application gave.
    params: JoinParams,
    /// The ref of the join sent on the current socket; `None` until it is sent.
    join_ref: Option<u64>,
    /// Whether the current socket's join was acknowledged.
    joined: bool,
    tracker: OffsetTracker,
    session_id: Option<String>,
    events: mpsc::UnboundedSender<ChannelEvent>,
    /// The latest join reply, once there is one.
    reply: Option<watch::Sender<JoinReply>>,
    /// The caller of the first join, until its reply.
    first_join: Option<Responder<Joined>>,
    /// Why the server removed the agent, between `kicked` and `phx_close`.
    kicked: Option<ErrorReply>,
    /// Pushes waiting for the (re)join.
    queue: VecDeque<Queued>,
}

/// What a background key refresh produced.
type Refreshed = std::result::Result<String, String>;

struct Connection {
    config: ClientConfig,
    /// Keys fetched in the background (after `key_expiring`).
    refreshed_tx: mpsc::UnboundedSender<Refreshed>,
    refreshed_rx: mpsc::UnboundedReceiver<Refreshed>,
    /// Whether a background refresh is under way.
    refreshing: bool,
    /// Whether the last close for the key was already answered with a fresh key; reset once a
    /// socket works.
    key_retried: bool,
    commands: mpsc::UnboundedReceiver<Command>,
    shared: Arc<Shared>,
    next_ref: u64,
    next_seq: u64,
    pending: HashMap<u64, Pending>,
    channels: HashMap<String, ChannelState>,
    /// Frames to write before waiting again.
    outbox: Vec<WsMessage>,
    heartbeat_ref: Option<u64>,
    /// Whether anything arrived since the last heartbeat tick.
    heard: bool,
    /// Whether this socket answered a request (resets the backoff).
    healthy: bool,
    /// The last socket-level `error` event: the reason of a close that follows.
    socket_error: Option<ErrorReply>,
    /// Set by a handler that ends the socket.
    end: Option<End>,
}

impl Connection {
    async fn run(mut self, socket: Socket) {
        let mut socket = Some(socket);
        let mut attempt: u32 = 0;
        // The reconnect waits for a fresh key (the last one was refused).
        let mut need_key: Option<ErrorReply> = None;
        loop {
            if let Some(mut ws) = socket.take() {
                self.shared.connected.store(true, Ordering::Relaxed);
                self.on_connected();
                let end = self.drive(&mut ws).await;
                self.shared.connected.store(false, Ordering::Relaxed);
                if self.healthy {
                    attempt = 0;
                    self.key_retried = false;
                }
                match end {
                    End::Lost(why) => {
                        debug!(reason = %why, "switchboard connection lost");
                        drop(ws);
                        self.on_disconnected();
                        if !self.config.reconnect {
                            self.shutdown(Error::Connection(why));
                            return;
                        }
                    }
                    End::Fatal { reply, key_refused }
                        if key_refused
                            && self.config.reconnect
                            && self.config.key_refresh.is_some()
                            && !self.key_retried =>
                    {
                        debug!(code = %reply.code, "switchboard key refused; fetching a fresh one");
                        self.key_retried = true;
                        drop(ws);
                        self.on_disconnected();
                        need_key = Some(reply);
                    }
                    End::Fatal { reply, .. } => {
                        warn!(code = %reply.code, message = %reply.message, "switchboard connection refused");
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        self.shutdown(Error::Server(reply));
                        return;
                    }
                    End::Closed(done) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        self.shutdown(Error::Closed);
                        let _ = done.send(());
                        return;
                    }
                    End::Idle => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        self.shutdown(Error::Closed);
                        return;
                    }
                }
            }
            // Disconnected: wait out the backoff while still taking commands, then retry.
            let delay = self.config.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    _ = &mut wake => break,
                    Some(refreshed) = self.refreshed_rx.recv() => self.on_refreshed(refreshed),
                    command = self.commands.recv() => match command {
                        None => {
                            self.shutdown(Error::Closed);
                            return;
                        }
                        Some(Command::Close { done }) => {
                            self.shutdown(Error::Closed);
                            let _ = done.send(());
                            return;
                        }
                        Some(command) => self.handle_command(command),
                    },
                }
            }
            if let Some(refused) = &need_key {
                let old = self.config.api_key.clone();
                match self.fetch_key().await {
                    None => return,
                    Some(Err(e)) => {
                        warn!(error = %e, "switchboard key refresh failed; retrying");
                        continue;
                    }
                    Some(Ok(key)) if key == old => {
                        let mut reply = refused.clone();
                        reply.message = format!(
                            "{} (the key refresh returned the refused key again)",
                            reply.message
                        );
                        self.shutdown(Error::Server(reply));
                        return;
                    }
                    Some(Ok(key)) => {
                        self.config.api_key = key;
                        need_key = None;
                    }
                }
            }
            match open(&self.config).await {
                Ok(ws) => socket = Some(ws),
                Err(e) => debug!(error = %e, attempt, "switchboard reconnect failed"),
            }
        }
    }

    /// Runs one socket until it ends.
    async fn drive(&mut self, ws: &mut Socket) -> End {
        let period = self
            .config
            .heartbeat_interval
            .max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.heard = true;
        self.healthy = false;
        self.socket_error = None;
        loop {
            // A close from the server ends the socket before anything else is written to it.
            if let Some(end) = self.end.take() {
                return end;
            }
            if !self.outbox.is_empty()
                && let Err(e) = write_all(ws, &mut self.outbox).await
            {
                return End::Lost(e.to_string());
            }
            tokio::select! {
                command = self.commands.recv() => match command {
                    None => return End::Idle,
                    Some(Command::Close { done }) => return End::Closed(done),
                    Some(command) => self.handle_command(command),
                },
                Some(refreshed) = self.refreshed_rx.recv() => self.on_refreshed(refreshed),
                incoming = ws.next() => match incoming {
                    None => return End::Lost("the server closed the socket".to_owned()),
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    Some(Ok(message)) => {
                        self.heard = true;
                        self.handle_socket_message(message);
                    }
                },
                _ = heartbeat.tick() => {
                    if !self.heard && self.heartbeat_ref.is_some() {
                        return End::Lost("no heartbeat reply in time".to_owned());
                    }
                    self.heard = false;
                    self.purge_abandoned();
                    let reference = self.next_ref();
                    self.heartbeat_ref = Some(reference);
                    self.pending.insert(reference, Pending::Heartbeat);
                    self.write(Frame::new(None, Some(reference.to_string()), PHOENIX_TOPIC,
                        events::HEARTBEAT, Payload::empty()));
                }
            }
        }
    }

    /// Calls the key-refresh callback while still taking commands. `None`: the client was
    /// closed meanwhile (and is shut down).
    async fn fetch_key(&mut self) -> Option<Refreshed> {
        let refresh = self.config.key_refresh.clone()?;
        let fetch = refresh.fetch();
        tokio::pin!(fetch);
        loop {
            tokio::select! {
                fetched = &mut fetch => return Some(fetched.map_err(|e| e.to_string())),
                command = self.commands.recv() => match command {
                    None => {
                        self.shutdown(Error::Closed);
                        return None;
                    }
                    Some(Command::Close { done }) => {
                        self.shutdown(Error::Closed);
                        let _ = done.send(());
                        return None;
                    }
                    Some(command) => self.handle_command(command),
                },
            }
        }
    }

    /// The server warned that the key expires soon: fetch a fresh one in the background.
    fn on_key_expiring(&mut self) {
        let Some(refresh) = self.config.key_refresh.clone() else {
            debug!("the key expires soon and there is no key refresh callback");
            return;
        };
        if self.refreshing {
            return;
        }
        self.refreshing = true;
        let done = self.refreshed_tx.clone();
        tokio::spawn(async move {
            let fetched = refresh.fetch().await.map_err(|e| e.to_string());
            let _ = done.send(fetched);
        });
    }

    /// A background refresh finished: use the key from now on, and hand it to the live socket.
    fn on_refreshed(&mut self, refreshed: Refreshed) {
        self.refreshing = false;
        let key = match refreshed {
            Ok(key) => key,
            Err(e) => {
                warn!(error = %e, "switchboard key refresh failed");
                return;
            }
        };
        self.config.api_key = key;
        if self.online() {
            let reference = self.next_ref();
            self.pending.insert(reference, Pending::Auth);
            self.write(Frame::new(
                None,
                Some(reference.to_string()),
                PHOENIX_TOPIC,
                events::AUTH,
                Payload::json(&serde_json::json!({ "api_key": self.config.api_key })),
            ));
        }
    }

    fn next_ref(&mut self) -> u64 {
        self.next_ref += 1;
        self.next_ref
    }

    fn online(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Queues a frame for the socket.
    fn write(&mut self, frame: Frame) {
        let message = match &frame.payload {
            Payload::Json(_) => WsMessage::text(frame.encode_text()),
            Payload::Binary(_) => match frame.encode_client_binary() {
                Ok(bytes) => WsMessage::binary(bytes),
                Err(e) => {
                    warn!(error = %e, "cannot encode a binary frame");
                    return;
                }
            },
            Payload::BinaryReply { .. } => return,
        };
        self.outbox.push(message);
    }

    /// Sends the join of every channel on a fresh socket.
    fn on_connected(&mut self) {
        let topics: Vec<String> = self.channels.keys().cloned().collect();
        for topic in topics {
            self.send_join(&topic);
        }
    }

    fn send_join(&mut self, topic: &str) {
        let reference = self.next_ref();
        let Some(state) = self.channels.get_mut(topic) else {
            return;
        };
        let params = if state.first_join.is_some() {
            state.params.clone()
        } else {
            state
                .tracker
                .resume_params(&state.params, state.session_id.as_deref())
        };
        state.join_ref = Some(reference);
        state.joined = false;
        self.pending.insert(
            reference,
            Pending::Join {
                topic: topic.to_owned(),
            },
        );
        let r = reference.to_string();
        self.write(Frame::new(
            Some(r.clone()),
            Some(r),
            topic,
            events::JOIN,
            Payload::json(&params),
        ));
    }

    /// Sends a push now if its channel is joined on this socket, else queues it.
    fn send_or_queue(&mut self, queued: Queued) {
        let online = self.online();
        let Some(state) = self.channels.get_mut(&queued.request.topic) else {
            let _ = queued.request.respond.send(Err(not_joined()));
            return;
        };
        match state.join_ref {
            Some(join_ref) if online && state.joined => {
                let reference = self.next_ref();
                let frame = Frame::new(
                    Some(join_ref.to_string()),
                    Some(reference.to_string()),
                    queued.request.topic.as_str(),
                    queued.request.event,
                    queued.request.payload.clone(),
                );
                self.write(frame);
                self.pending.insert(reference, Pending::Push(queued));
            }
            _ => state.queue.push_back(queued),
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Join {
                topic,
                params,
                events,
                respond,
            } => {
                if self.channels.contains_key(&topic) {
                    let _ = respond.send(Err(Error::local(
                        ErrorCode::AlreadyJoined,
                        "this client already joined the channel; leave it first",
                    )));
                    return;
                }
                let state = ChannelState {
                    tracker: OffsetTracker::new(&params),
                    params,
                    join_ref: None,
                    joined: false,
                    session_id: None,
                    events,
                    reply: None,
                    first_join: Some(respond),
                    kicked: None,
                    queue: VecDeque::new(),
                };
                self.channels.insert(topic.clone(), state);
                if self.online() {
                    self.send_join(&topic);
                }
            }
            Command::Push(request) => {
                self.next_seq += 1;
                let queued = Queued {
                    seq: self.next_seq,
                    request,
                };
                self.send_or_queue(queued);
            }
            Command::Leave { topic, respond } => {
                if let Some(state) = self.channels.remove(&topic) {
                    if let Some(join_ref) = state.join_ref
                        && self.online()
                    {
                        let reference = self.next_ref();
                        self.pending.insert(reference, Pending::Leave);
                        self.write(Frame::new(
                            Some(join_ref.to_string()),
                            Some(reference.to_string()),
                            topic.as_str(),
                            events::LEAVE,
                            Payload::empty(),
                        ));
                    }
                    end_channel(state, &Error::Closed);
                }
                if let Some(respond) = respond {
                    let _ = respond.send(());
                }
            }
            Command::Close { done } => {
                // Only reached from paths that handle Close themselves; kept for completeness.
                self.end = Some(End::Closed(done));
            }
        }
    }

    fn handle_socket_message(&mut self, message: WsMessage) {
        let frame = match message {
            WsMessage::Text(text) => Frame::decode_text(text.as_str()),
            WsMessage::Binary(bytes) => Frame::decode_server_binary(&bytes),
            WsMessage::Close(close) => {
                let (code, reason) = close
                    .map(|c| (u16::from(c.code), c.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                self.end = Some(if CloseCode::should_reconnect(code) {
                    End::Lost(format!("closed by the server ({code} {reason})"))
                } else {
                    End::Fatal {
                        reply: close_reason(code, &reason, self.socket_error.take()),
                        key_refused: matches!(
                            CloseCode::from_code(code),
                            Some(
                                CloseCode::InvalidKey
                                    | CloseCode::KeyRevoked
                                    | CloseCode::KeyExpired
                            )
                        ),
                    }
                });
                return;
            }
            _ => return,
        };
        match frame {
            Ok(frame) => self.handle_frame(frame),
            Err(e) => warn!(error = %e, "ignoring an undecodable frame"),
        }
    }

    fn handle_frame(&mut self, frame: Frame) {
        if frame.event == events::REPLY {
            self.handle_reply(frame);
            return;
        }
        if frame.topic == PHOENIX_TOPIC {
            if frame.event == events::SOCKET_ERROR {
                match frame.payload.parse::<ErrorReply>() {
                    Ok(reply) => {
                        warn!(code = %reply.code, message = %reply.message, "switchboard socket error");
                        self.socket_error = Some(reply);
                    }
                    Err(e) => warn!(error = %e, "unreadable socket error"),
                }
            } else if frame.event == events::KEY_EXPIRING {
                self.on_key_expiring();
            }
            return;
        }
        let Some(state) = self.channels.get_mut(&frame.topic) else {
            return;
        };
        // A frame of an earlier join of this topic (e.g. the close after a leave) is not ours.
        if let Some(join_ref) = &frame.join_ref
            && state.join_ref.map(|r| r.to_string()).as_ref() != Some(join_ref)
        {
            return;
        }
        match frame.event.as_str() {
            events::MESSAGE => match decode_message(&frame.payload) {
                Ok(message) => {
                    if state.tracker.accept(message.offset) {
                        let _ = state.events.send(ChannelEvent::Message(message));
                    }
                }
                Err(e) => warn!(error = %e, topic = %frame.topic, "ignoring an unreadable message"),
            },
            events::PRESENCE_STATE => match frame.payload.parse::<PresenceState>() {
                Ok(presence) => {
                    let _ = state.events.send(ChannelEvent::PresenceState(presence));
                }
                Err(e) => warn!(error = %e, "ignoring an unreadable presence_state"),
            },
            events::PRESENCE_DIFF => match frame.payload.parse::<PresenceDiff>() {
                Ok(diff) => {
                    let _ = state.events.send(ChannelEvent::PresenceDiff(diff));
                }
                Err(e) => warn!(error = %e, "ignoring an unreadable presence_diff"),
            },
            events::KV_CHANGE => {
                match frame.payload.parse::<switchboard_protocol::kv::KvChange>() {
                    Ok(change) => {
                        let _ = state.events.send(ChannelEvent::KvChange(change));
                    }
                    Err(e) => warn!(error = %e, "ignoring an unreadable kv_change"),
                }
            }
            events::STREAM_DATA => match &frame.payload {
                Payload::Binary(bytes) => {
                    match switchboard_protocol::stream::decode::<
                        switchboard_protocol::stream::DataHeader,
                    >(bytes)
                    {
                        Ok((header, bytes)) => {
                            let _ = state.events.send(ChannelEvent::StreamData {
                                stream_id: header.stream_id,
                                offset: header.offset,
                                bytes,
                            });
                        }
                        Err(e) => warn!(error = %e, "ignoring an unreadable stream_data"),
                    }
                }
                _ => warn!("ignoring a stream_data that is not binary"),
            },
            events::STREAM_OFFER
            | events::STREAM_END
            | events::STREAM_PROGRESS
            | events::STREAM_CHECKPOINT
            | events::STREAM_COMPLETE
            | events::STREAM_CANCELLED
            | events::STREAM_ERROR => match stream_event(&frame) {
                Ok(event) => {
                    let _ = state.events.send(event);
                }
                Err(e) => {
                    warn!(error = %e, event = %frame.event, "ignoring an unreadable stream event")
                }
            },
            events::NEW_MESSAGE => {
                match frame.payload.parse::<switchboard_protocol::InboxMessage>() {
                    Ok(m) => {
                        let _ = state.events.send(ChannelEvent::InboxMessage(m));
                    }
                    Err(e) => warn!(error = %e, "ignoring an unreadable new_message"),
                }
            }
            events::RECEIPT => match frame.payload.parse::<switchboard_protocol::Receipt>() {
                Ok(receipt) => {
                    let _ = state.events.send(ChannelEvent::Receipt(receipt));
                }
                Err(e) => warn!(error = %e, "ignoring an unreadable receipt"),
            },
            events::SIGNAL => match frame.payload.parse::<switchboard_protocol::SignalEvent>() {
                Ok(signal) => {
                    let _ = state.events.send(ChannelEvent::Signal(signal));
                }
                Err(e) => warn!(error = %e, "ignoring an unreadable signal"),
            },
            events::KICKED => {
                let reply = frame.payload.parse::<ErrorReply>().unwrap_or_else(|e| {
                    ErrorReply::new(ErrorCode::Internal, format!("unreadable kick: {e}"))
                });
                let _ = state.events.send(ChannelEvent::Kicked(reply.clone()));
                state.kicked = Some(reply);
            }
            events::CLOSE => {
                if let Some(state) = self.channels.remove(&frame.topic) {
                    let reason = match &state.kicked {
                        Some(reply) => Error::Server(reply.clone()),
                        None => Error::local(ErrorCode::NotJoined, "the server closed the channel"),
                    };
                    end_channel(state, &reason);
                }
            }
            events::ERROR => {
                // The channel crashed on the server: join it again, resuming from the last offset.
                debug!(topic = %frame.topic, "channel error; rejoining");
                let topic = frame.topic.clone();
                self.send_join(&topic);
            }
            other => debug!(event = other, topic = %frame.topic, "ignoring an unknown event"),
        }
    }

    fn handle_reply(&mut self, frame: Frame) {
        let Some(reference) = frame
            .reference
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
        else {
            return;
        };
        let Some(pending) = self.pending.remove(&reference) else {
            return;
        };
        let outcome = parse_reply(&frame.payload);
        if outcome.is_ok() {
            self.healthy = true;
        }
        match pending {
            Pending::Heartbeat => {
                if self.heartbeat_ref == Some(reference) {
                    self.heartbeat_ref = None;
                }
            }
            Pending::Leave => {}
            Pending::Auth => match outcome {
                Ok(_) => debug!("switchboard key refreshed in place"),
                // The old key stays in force until it expires; the close that follows
                // fetches another.
                Err(e) => warn!(error = %e, "the server refused the refreshed key"),
            },
            Pending::Push(queued) => {
                let _ = queued.request.respond.send(outcome);
            }
            Pending::Join { topic } => self.handle_join_reply(&topic, reference, outcome),
        }
    }

    fn handle_join_reply(&mut self, topic: &str, reference: u64, outcome: Result<Box<RawValue>>) {
        let Some(state) = self.channels.get_mut(topic) else {
            return;
        };
        if state.join_ref != Some(reference) {
            return;
        }
        let outcome = outcome.and_then(|raw| {
            serde_json::from_str::<JoinReply>(raw.get())
                .map_err(|e| Error::Protocol(format!("join reply: {e}")))
        });
        match outcome {
            Ok(reply) => {
                state.joined = true;
                state.tracker.on_join(&reply);
                state.session_id = Some(reply.session_id.clone());
                let gap = reply.gap.clone();
                match (state.first_join.take(), &state.reply) {
                    (Some(respond), _) => {
                        let (tx, rx) = watch::channel(reply.clone());
                        state.reply = Some(tx);
                        if respond.send(Ok((reply, rx))).is_err() {
                            // The caller gave up (timeout); its Leave command follows.
                            return;
                        }
                    }
                    (None, Some(tx)) => {
                        tx.send_replace(reply);
                        let _ = state.events.send(ChannelEvent::Reconnected);
                    }
                    (None, None) => {}
                }
                if let Some(gap) = gap {
                    let _ = state.events.send(ChannelEvent::Gap(gap));
                }
                let mut waiting: Vec<Queued> = state.queue.drain(..).collect();
                waiting.sort_by_key(|q| q.seq);
                for queued in waiting {
                    if !queued.request.respond.is_closed() {
                        self.send_or_queue(queued);
                    }
                }
            }
            Err(error) => {
                let Some(mut state) = self.channels.remove(topic) else {
                    return;
                };
                match state.first_join.take() {
                    Some(respond) => {
                        let _ = respond.send(Err(error.clone()));
                    }
                    None => {
                        let reply = match &error {
                            Error::Server(reply) => reply.clone(),
                            other => ErrorReply::new(ErrorCode::Internal, other.to_string()),
                        };
                        warn!(topic, code = %reply.code, "rejoin refused");
                        let _ = state.events.send(ChannelEvent::Kicked(reply));
                    }
                }
                end_channel(state, &error);
            }
        }
    }

    /// Moves requests in flight back to their channel's queue (or fails them), and marks every
    /// channel as needing a join on the next socket.
    fn on_disconnected(&mut self) {
        self.outbox.clear();
        self.heartbeat_ref = None;
        for (_, pending) in self.pending.drain() {
            let Pending::Push(queued) = pending else {
                continue;
            };
            match self.channels.get_mut(&queued.request.topic) {
                Some(state) if queued.request.retry => state.queue.push_back(queued),
                _ => {
                    let _ = queued.request.respond.send(Err(Error::Disconnected));
                }
            }
        }
        for state in self.channels.values_mut() {
            state.join_ref = None;
            state.joined = false;
            state.queue.make_contiguous().sort_by_key(|q| q.seq);
        }
    }

    /// Forgets requests whose callers stopped waiting (timed out or dropped).
    fn purge_abandoned(&mut self) {
        self.pending.retain(|_, pending| match pending {
            Pending::Push(queued) => !queued.request.respond.is_closed(),
            _ => true,
        });
        for state in self.channels.values_mut() {
            state.queue.retain(|q| !q.request.respond.is_closed());
        }
    }

    /// Fails everything and ends every channel; later requests get `error` too.
    fn shutdown(&mut self, error: Error) {
        *self.shared.closed.lock().expect("lock poisoned") = Some(error.clone());
        self.shared.connected.store(false, Ordering::Relaxed);
        for (_, pending) in self.pending.drain() {
            if let Pending::Push(queued) = pending {
                let _ = queued.request.respond.send(Err(error.clone()));
            }
        }
        for (_, state) in self.channels.drain() {
            if let Error::Server(reply) = &error {
                let _ = state.events.send(ChannelEvent::Kicked(reply.clone()));
            }
            end_channel(state, &error);
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Join { respond, .. } => {
                    let _ = respond.send(Err(error.clone()));
                }
                Command::Push(request) => {
                    let _ = request.respond.send(Err(error.clone()));
                }
                Command::Leave { respond, .. } => {
                    if let Some(respond) = respond {
                        let _ = respond.send(());
                    }
                }
                Command::Close { done } => {
                    let _ = done.send(());
                }
            }
        }
    }
}

/// Writes every queued frame, then flushes once.
async fn write_all(
    ws: &mut Socket,
    outbox: &mut Vec<WsMessage>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for message in outbox.drain(..) {
        ws.feed(message).await?;
    }
    ws.flush().await
}

/// Fails a channel's waiting requests; dropping it ends the application's event stream.
fn end_channel(mut state: ChannelState, error: &Error) {
    if let Some(respond) = state.first_join.take() {
        let _ = respond.send(Err(error.clone()));
    }
    for queued in state.queue.drain(..) {
        let _ = queued.request.respond.send(Err(error.clone()));
    }
}

fn not_joined() -> Error {
    Error::local(
        ErrorCode::NotJoined,
        "the channel is not joined on this client; join it first",
    )
}

/// The error a close with a code ≥ 4500 stands for: the socket `error` event that preceded it,
/// else one made from the code and reason.
fn close_reason(code: u16, reason: &str, socket_error: Option<ErrorReply>) -> ErrorReply {
    if let Some(reply) = socket_error {
        return reply;
    }
    let known = CloseCode::from_code(code);
    let error_code = match known {
        Some(c) => c.error_code(),
        None => ErrorCode::parse(reason).unwrap_or(ErrorCode::Internal),
    };
    let message = if reason.is_empty() {
        format!("the server closed the connection with code {code}")
    } else {
        format!("the server closed the connection with code {code}: {reason}")
    };
    ErrorReply::new(error_code, message)
}

/// Reads a `phx_reply` payload: `{status, response}` as JSON, or a binary reply.
pub(crate) fn parse_reply(payload: &Payload) -> Result<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Reply {
        status: String,
        #[serde(default)]
        response: Option<Box<RawValue>>,
    }
    let (status, response) = match payload {
        Payload::Json(raw) => {
            let reply: Reply = serde_json::from_str(raw.get())
                .map_err(|e| Error::Protocol(format!("reply: {e}")))?;
            let response = reply.response.unwrap_or_else(empty_object);
            (reply.status, response)
        }
        Payload::BinaryReply { status, response } => {
            let response = if response.is_empty() {
                empty_object()
            } else {
                serde_json::from_slice::<Box<RawValue>>(response)
                    .map_err(|e| Error::Protocol(format!("binary reply: {e}")))?
            };
            (status.clone(), response)
        }
        Payload::Binary(_) => return Err(Error::Protocol("binary reply without status".into())),
    };
    match status.as_str() {
        "ok" => Ok(response),
        "error" => Err(match serde_json::from_str::<ErrorReply>(response.get()) {
            Ok(reply) => Error::Server(reply),
            Err(_) => Error::Protocol(format!("error reply: {}", response.get())),
        }),
        other => Err(Error::Protocol(format!("unknown reply status `{other}`"))),
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("valid JSON")
}

/// Reads a `message` event: JSON in a text frame, the binary envelope in a binary one.
fn stream_event(frame: &Frame) -> Result<ChannelEvent, String> {
    let p = &frame.payload;
    Ok(match frame.event.as_str() {
        events::STREAM_OFFER => ChannelEvent::StreamOffer(p.parse()?),
        events::STREAM_END => ChannelEvent::StreamEnd(p.parse()?),
        events::STREAM_PROGRESS => ChannelEvent::StreamProgress(p.parse()?),
        events::STREAM_CHECKPOINT => ChannelEvent::StreamCheckpoint(p.parse()?),
        events::STREAM_COMPLETE => ChannelEvent::StreamComplete(p.parse()?),
        events::STREAM_CANCELLED => ChannelEvent::StreamCancelled(p.parse()?),
        _ => ChannelEvent::StreamError(p.parse()?),
    })
}

pub(crate) fn decode_message(payload: &Payload) -> Result<Message, String> {
    match payload {
        Payload::Json(_) => payload.parse::<Message>(),
        Payload::Binary(bytes) => Message::decode_envelope(bytes),
        Payload::BinaryReply { .. } => Err("a reply is not a message".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn json(text: &str) -> Payload {
        Payload::Json(RawValue::from_string(text.to_owned()).unwrap())
    }

    #[test]
    fn replies() {
        let ok = parse_reply(&json(r#"{"status":"ok","response":{"id":"x","offset":3}}"#));
        assert_eq!(ok.unwrap().get(), r#"{"id":"x","offset":3}"#);
        let empty = parse_reply(&json(r#"{"status":"ok"}"#)).unwrap();
        assert_eq!(empty.get(), "{}");
        let err = parse_reply(&json(
            r#"{"status":"error","response":{"code":"not_joined","message":"join first"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::NotJoined));
        let err = parse_reply(&json(r#"{"status":"error","response":{"reason":"x"}}"#));
        assert!(matches!(err, Err(Error::Protocol(_))));
        assert!(matches!(
            parse_reply(&json(r#"{"status":"maybe","response":{}}"#)),
            Err(Error::Protocol(_))
        ));
        let binary = Payload::BinaryReply {
            status: "ok".into(),
            response: Bytes::from_static(br#"{"a":1}"#),
        };
        assert_eq!(parse_reply(&binary).unwrap().get(), r#"{"a":1}"#);
    }

    #[test]
    fn messages_text_and_binary() {
        let text = r#"{"id":"m","offset":4,"channel":"room","from":"a","type":"chat","data":{"x":1},"ts":5}"#;
        let m = decode_message(&json(text)).unwrap();
        assert_eq!(m.offset, Some(4));
        let mut with_file = m.clone();
        with_file.attachments = vec![Bytes::from_static(b"\x00\x01")];
        let frame = Frame::new(
            None,
            None,
            "channel:room",
            events::MESSAGE,
            Payload::Binary(with_file.encode_envelope()),
        );
        let decoded = Frame::decode_server_binary(&frame.encode_server_binary().unwrap()).unwrap();
        assert_eq!(decode_message(&decoded.payload).unwrap(), with_file);
    }

    #[test]
    fn close_reasons() {
        let r = close_reason(4500, "", None);
        assert_eq!(r.code, ErrorCode::InvalidKey);
        let r = close_reason(4999, "frame_too_large", None);
        assert_eq!(r.code, ErrorCode::FrameTooLarge);
        let sent = ErrorReply::new(ErrorCode::InvalidKey, "the key was revoked");
        assert_eq!(close_reason(4500, "x", Some(sent.clone())), sent);
    }
}
