//! The cloneable client handle.

use crate::channel::{Channel, ChannelEvent};
use crate::config::ClientConfig;
use crate::connection::{self, Command, PushRequest, Shared};
use crate::error::{Error, Result};
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::{
    CHANNEL_TOPIC_PREFIX, ErrorCode, JoinParams, Payload, limits::MAX_EVENT_TYPES, valid_name,
};
use tokio::sync::{mpsc, oneshot};

/// Bytes a pushed frame adds around its payload and topic (refs, event name, JSON array).
const FRAME_OVERHEAD: usize = 64;

/// A connection to a Switchboard server. Cheap to clone; every clone shares one socket.
///
/// The socket lives in a background task that sends heartbeats, routes replies, and
/// reconnects and resumes every joined channel when the connection drops.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    config: ClientConfig,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.config.url)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the server; fails if the first connection cannot be opened.
    ///
    /// A wrong API key is reported by the server after the upgrade: the first request then
    /// fails with `invalid_key`.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let socket = connection::open(&config).await?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        connection::spawn(config.clone(), socket, receiver, shared.clone());
        Ok(Client {
            inner: Arc::new(Inner {
                commands,
                shared,
                config,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Whether the socket is up right now (false while reconnecting and after close).
    pub fn is_connected(&self) -> bool {
        self.inner.shared.is_connected()
    }

    /// Joins `channel` and waits for the server's reply.
    ///
    /// With `params.since`, every persisted message after that offset is replayed before live
    /// ones. A reply with a gap is reported as the first event, [`ChannelEvent::Gap`].
    pub async fn join(&self, channel: &str, params: JoinParams) -> Result<Channel> {
        if !valid_name(channel) {
            return Err(Error::local(
                ErrorCode::InvalidChannelName,
                format!("`{channel}` is not a channel name: use 1–128 bytes of [A-Za-z0-9_.:@-]"),
            ));
        }
        if !valid_name(&params.agent_name) {
            return Err(Error::local(
                ErrorCode::InvalidAgentName,
                format!(
                    "`{}` is not an agent name: use 1–128 bytes of [A-Za-z0-9_.:@-]",
                    params.agent_name
                ),
            ));
        }
        if params
            .event_types
            .as_ref()
            .is_some_and(|t| t.len() > MAX_EVENT_TYPES)
        {
            return Err(Error::local(
                ErrorCode::InvalidPayload,
                format!("at most {MAX_EVENT_TYPES} event types per join"),
            ));
        }
        let topic = format!("{CHANNEL_TOPIC_PREFIX}{channel}");
        let (events_tx, events_rx) = mpsc::unbounded_channel::<ChannelEvent>();
        let (respond, reply) = oneshot::channel();
        self.send(Command::Join {
            topic: topic.clone(),
            params,
            events: events_tx,
            respond,
        })?;
        match tokio::time::timeout(self.inner.config.request_timeout, reply).await {
            Ok(Ok(Ok((_reply, watch)))) => {
                Ok(Channel::new(self.clone(), channel, topic, events_rx, watch))
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(self.inner.shared.closed_reason()),
            Err(_) => {
                self.leave_in_background(&topic);
                Err(Error::Timeout(self.inner.config.request_timeout))
            }
        }
    }

    /// Closes the connection: pending requests fail with [`Error::Closed`] and every channel's
    /// event stream ends.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.commands.send(Command::Close { done }).is_ok() {
            let _ = wait.await;
        }
    }

    fn send(&self, command: Command) -> Result<()> {
        self.inner
            .commands
            .send(command)
            .map_err(|_| self.inner.shared.closed_reason())
    }

    /// Pushes an event on a joined topic and waits for the reply's `response`.
    pub(crate) async fn push(
        &self,
        topic: &str,
        event: &'static str,
        payload: Payload,
        retry: bool,
    ) -> Result<Box<RawValue>> {
        let size = match &payload {
            Payload::Json(raw) => raw.get().len(),
            Payload::Binary(bytes) => bytes.len(),
            Payload::BinaryReply { response, .. } => response.len(),
        } + topic.len()
            + FRAME_OVERHEAD;
        let max = self.inner.config.max_frame_bytes;
        if size > max {
            return Err(Error::FrameTooLarge { size, max });
        }
        let (respond, reply) = oneshot::channel();
        self.send(Command::Push(PushRequest {
            topic: topic.to_owned(),
            event,
            payload,
            retry,
            respond,
        }))?;
        match tokio::time::timeout(self.inner.config.request_timeout, reply).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(self.inner.shared.closed_reason()),
            Err(_) => Err(Error::Timeout(self.inner.config.request_timeout)),
        }
    }

    /// Leaves a topic and waits until the leave is on its way.
    pub(crate) async fn leave(&self, topic: &str) -> Result<()> {
        let (respond, done) = oneshot::channel();
        self.send(Command::Leave {
            topic: topic.to_owned(),
            respond: Some(respond),
        })?;
        let _ = done.await;
        Ok(())
    }

    /// Leaves a topic without waiting (from `Drop`).
    pub(crate) fn leave_in_background(&self, topic: &str) {
        let _ = self.inner.commands.send(Command::Leave {
            topic: topic.to_owned(),
            respond: None,
        });
    }
}
