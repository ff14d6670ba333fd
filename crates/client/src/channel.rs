//! The per-channel handle: events in, publishes, history and presence out.

use crate::client::Client;
use crate::error::{Error, Result};
use futures_util::Stream;
use serde::de::DeserializeOwned;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use switchboard_protocol::discovery::{AgentCard, Announce, Discover, Discovered, UpdateMetadata};
use switchboard_protocol::kv::{KvChange, KvEntry, KvList, KvPage};
use switchboard_protocol::stream::{
    ChunkHeader, StreamAccept, StreamAck, StreamCancel, StreamClose, StreamOffer, StreamOpen,
    StreamPosition,
};
use switchboard_protocol::{
    ErrorReply, Gap, HistoryPage, HistoryQuery, JoinReply, Message, Payload, PresenceDiff,
    PresenceState, Publish, PublishAck, events,
};
use tokio::sync::{mpsc, watch};

/// Something that happened in a joined channel, in the order the server sent it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChannelEvent {
    /// A message for this agent (replayed or live; never a duplicate).
    Message(Message),
    /// The full presence map, sent after every (re)join.
    PresenceState(PresenceState),
    /// Agents that joined or left since the last state or diff.
    PresenceDiff(PresenceDiff),
    /// A WebRTC signal from another agent (joined with `enable_webrtc_relay`).
    Signal(switchboard_protocol::SignalEvent),
    /// The channel's storage changed (joined with `kv_events`).
    KvChange(KvChange),
    /// A message from this agent's inbox (joined with `inbox`): [`Channel::ack`] or
    /// [`Channel::reject`] it, else it comes back after the visibility timeout.
    InboxMessage(switchboard_protocol::InboxMessage),
    /// What became of a message this agent sent with `receipt: true`.
    Receipt(switchboard_protocol::Receipt),
    /// A stream for this agent: accept it (see [`crate::stream::Incoming`]).
    StreamOffer(switchboard_protocol::stream::StreamOffer),
    /// Bytes of an accepted stream, at `offset`.
    StreamData {
        /// The stream.
        stream_id: String,
        /// The offset of the first byte.
        offset: u64,
        /// The bytes.
        bytes: bytes::Bytes,
    },
    /// Every byte of an accepted stream was sent; verify and acknowledge.
    StreamEnd(switchboard_protocol::stream::StreamEnd),
    /// (Sender) the recipient acknowledged this far.
    StreamProgress(switchboard_protocol::stream::StreamProgress),
    /// (Sender) the server holds this much durably.
    StreamCheckpoint(switchboard_protocol::stream::StreamCheckpoint),
    /// (Sender) the recipient has everything.
    StreamComplete(switchboard_protocol::stream::StreamComplete),
    /// A stream was cancelled by either side.
    StreamCancelled(switchboard_protocol::stream::StreamCancelled),
    /// A stream failed (e.g. `checksum_mismatch`).
    StreamError(switchboard_protocol::stream::StreamError),
    /// Messages between the requested resume point and `first_available` are gone.
    Gap(Gap),
    /// The agent was removed from the channel (or its rejoin was refused); the stream ends next.
    Kicked(ErrorReply),
    /// The connection dropped and the channel was joined again; replayed messages follow.
    Reconnected,
}

/// A joined channel: receive its events with [`Channel::recv`] (or as a `Stream`), publish and
/// read with the methods below. Dropping it leaves the channel.
///
/// Events queue without bound until read: read them, or drop the channel.
#[derive(Debug)]
pub struct Channel {
    sender: ChannelSender,
    events: mpsc::UnboundedReceiver<ChannelEvent>,
    reply: watch::Receiver<JoinReply>,
    left: bool,
}

/// A cloneable handle that publishes and reads on a joined channel, so one task can
/// [`recv`](Channel::recv) while others publish.
#[derive(Debug, Clone)]
pub struct ChannelSender {
    client: Client,
    name: Arc<str>,
    topic: Arc<str>,
}

impl Channel {
    pub(crate) fn new(
        client: Client,
        name: &str,
        topic: String,
        events: mpsc::UnboundedReceiver<ChannelEvent>,
        reply: watch::Receiver<JoinReply>,
    ) -> Self {
        Channel {
            sender: ChannelSender {
                client,
                name: name.into(),
                topic: topic.into(),
            },
            events,
            reply,
            left: false,
        }
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.sender.name
    }

    /// The reply of the latest (re)join: session id, epoch, head.
    pub fn join_reply(&self) -> JoinReply {
        self.reply.borrow().clone()
    }

    /// The next event; `None` once the channel has ended (left, kicked, or client closed).
    pub async fn recv(&mut self) -> Option<ChannelEvent> {
        self.events.recv().await
    }

    /// A handle for publishing and reading from other tasks.
    pub fn sender(&self) -> ChannelSender {
        self.sender.clone()
    }

    /// Publishes and waits for the acknowledgement. See [`ChannelSender::publish`].
    pub async fn publish(&self, publish: Publish) -> Result<PublishAck> {
        self.sender.publish(publish).await
    }

    /// Reads the channel's history as this agent sees it.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage> {
        self.sender.history(query).await
    }

    /// The agents present now.
    pub async fn presence(&self) -> Result<PresenceState> {
        self.sender.presence().await
    }

    /// Writes `key` in the channel's storage; with `version`, only if the key is at that version
    /// now (0: only if absent), else `version_conflict`.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        version: Option<u64>,
        ttl_secs: Option<u64>,
    ) -> Result<KvEntry> {
        self.sender.kv_put(key, value, version, ttl_secs).await
    }

    /// Reads `key` from the channel's storage (`not_found` when absent).
    pub async fn kv_get(&self, key: &str) -> Result<KvEntry> {
        self.sender.kv_get(key).await
    }

    /// Deletes `key` (compare-and-delete with `version`).
    pub async fn kv_delete(&self, key: &str, version: Option<u64>) -> Result<()> {
        self.sender.kv_delete(key, version).await
    }

    /// Lists the channel's storage in key order.
    pub async fn kv_list(&self, query: &KvList) -> Result<KvPage> {
        self.sender.kv_list(query).await
    }

    /// Completes this team channel (members only): everyone is kicked with
    /// `channel_completed` and the channel is purged.
    pub async fn complete(&self) -> Result<()> {
        let _: serde_json::Value = self
            .sender
            .request(events::COMPLETE, Payload::empty(), false)
            .await?;
        Ok(())
    }

    /// Acknowledges an inbox message: it leaves the inbox (and its sender gets `acknowledged`).
    pub async fn ack(&self, id: &str) -> Result<()> {
        self.sender.ack(id).await
    }

    /// Publishes this agent's capabilities and metadata to the tenant's directory (replacing
    /// what it announced before); returns its card.
    pub async fn announce(&self, announce: &Announce) -> Result<AgentCard> {
        self.sender.announce(announce).await
    }

    /// Replaces this announced agent's metadata.
    pub async fn update_metadata(
        &self,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<AgentCard> {
        self.sender.update_metadata(metadata).await
    }

    /// Finds the tenant's agents by capability, metadata and online status.
    pub async fn discover(&self, query: &Discover) -> Result<Vec<AgentCard>> {
        self.sender.discover(query).await
    }

    /// Rejects an inbox message with a reason: it comes back until `max_rejections`, or goes to
    /// the dead letters at once when `requeue` is false.
    pub async fn reject(&self, id: &str, reason: Option<&str>, requeue: bool) -> Result<()> {
        self.sender.reject(id, reason, requeue).await
    }

    /// Relays a WebRTC signal to `to` (both agents joined with `enable_webrtc_relay`).
    pub async fn signal(
        &self,
        to: &str,
        kind: switchboard_protocol::SignalKind,
        data: &serde_json::Value,
    ) -> Result<()> {
        self.sender.signal(to, kind, data).await
    }

    /// Leaves the channel; the event stream ends.
    pub async fn leave(mut self) -> Result<()> {
        self.left = true;
        self.sender.client.leave(&self.sender.topic).await
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        if !self.left {
            self.sender.client.leave_in_background(&self.sender.topic);
        }
    }
}

impl Stream for Channel {
    type Item = ChannelEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent>> {
        self.get_mut().events.poll_recv(cx)
    }
}

impl ChannelSender {
    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publishes and waits for the acknowledgement (for persisted messages, sent once the
    /// message is durable).
    ///
    /// A persisted publish without an `id` gets a random one, so the SDK can re-send it after a
    /// reconnect and the server acknowledges the original instead of storing it twice. Ephemeral
    /// publishes are never re-sent: one in flight when the connection drops fails with
    /// [`Error::Disconnected`]. Publishes with attachments go as binary frames.
    ///
    /// A publish that fails with [`Error::Timeout`] may still be stored; to retry it safely,
    /// give it your own `id` and publish again with the same one.
    pub async fn publish(&self, mut publish: Publish) -> Result<PublishAck> {
        if !publish.ephemeral && publish.id.is_none() {
            publish.id = Some(random_id());
        }
        let payload = if publish.attachments.is_empty() {
            Payload::json(&publish)
        } else {
            Payload::Binary(publish.encode_envelope())
        };
        let retry = !publish.ephemeral;
        self.request(events::PUBLISH, payload, retry).await
    }

    /// Reads the channel's history as this agent sees it.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage> {
        self.request(events::HISTORY, Payload::json(&query), true)
            .await
    }

    /// The agents present now.
    pub async fn presence(&self) -> Result<PresenceState> {
        self.request(events::PRESENCE, Payload::empty(), true).await
    }

    /// Writes a key. A write in flight when the connection drops fails (it may or may not have
    /// been applied) and is not re-sent; read the key again to know.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &serde_json::Value,
        version: Option<u64>,
        ttl_secs: Option<u64>,
    ) -> Result<KvEntry> {
        let payload = serde_json::json!({
            "key": key, "value": value, "version": version, "ttl_secs": ttl_secs,
        });
        let payload = strip_nulls(payload);
        self.request(events::KV_PUT, Payload::json(&payload), false)
            .await
    }

    /// Reads a key.
    pub async fn kv_get(&self, key: &str) -> Result<KvEntry> {
        let payload = serde_json::json!({ "key": key });
        self.request(events::KV_GET, Payload::json(&payload), true)
            .await
    }

    /// Deletes a key.
    pub async fn kv_delete(&self, key: &str, version: Option<u64>) -> Result<()> {
        let payload = strip_nulls(serde_json::json!({ "key": key, "version": version }));
        let _: serde_json::Value = self
            .request(events::KV_DELETE, Payload::json(&payload), false)
            .await?;
        Ok(())
    }

    /// Lists keys.
    pub async fn kv_list(&self, query: &KvList) -> Result<KvPage> {
        self.request(events::KV_LIST, Payload::json(query), true)
            .await
    }

    /// Announces this agent (see [`Channel::announce`]).
    pub async fn announce(&self, announce: &Announce) -> Result<AgentCard> {
        self.request(events::ANNOUNCE, Payload::json(announce), true)
            .await
    }

    /// Replaces this agent's metadata (see [`Channel::update_metadata`]).
    pub async fn update_metadata(
        &self,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<AgentCard> {
        let payload = UpdateMetadata { metadata };
        self.request(events::UPDATE_METADATA, Payload::json(&payload), true)
            .await
    }

    /// Finds agents (see [`Channel::discover`]).
    pub async fn discover(&self, query: &Discover) -> Result<Vec<AgentCard>> {
        let found: Discovered = self
            .request(events::DISCOVER, Payload::json(query), true)
            .await?;
        Ok(found.agents)
    }

    /// Acknowledges an inbox message. An ack in flight when the connection drops is re-sent
    /// after the reconnect (acknowledging twice is harmless: the second finds nothing and
    /// fails with `not_found`).
    pub async fn ack(&self, id: &str) -> Result<()> {
        let payload = switchboard_protocol::Ack { id: id.to_owned() };
        let _: serde_json::Value = self
            .request(events::ACK, Payload::json(&payload), true)
            .await?;
        Ok(())
    }

    /// Rejects an inbox message (not re-sent after a reconnect: the message comes back anyway).
    pub async fn reject(&self, id: &str, reason: Option<&str>, requeue: bool) -> Result<()> {
        let payload = switchboard_protocol::Reject {
            id: id.to_owned(),
            reason: reason.map(str::to_owned),
            requeue,
        };
        let _: serde_json::Value = self
            .request(events::REJECT, Payload::json(&payload), false)
            .await?;
        Ok(())
    }

    /// Opens a stream to `open.to` (or, with `open.stream_id`, finds where one stands). A new
    /// stream's open in flight when the connection drops fails with [`Error::Disconnected`]
    /// rather than being re-sent (which could open a second stream); a resume is re-sent.
    pub async fn stream_open(&self, open: &StreamOpen) -> Result<StreamPosition> {
        let retry = open.stream_id.is_some();
        self.request(events::STREAM_OPEN, Payload::json(open), retry)
            .await
    }

    /// Sends chunk `seq` of a stream. Re-sent after a reconnect: the server recognises a
    /// chunk it has by its `seq`.
    pub async fn stream_chunk(
        &self,
        stream_id: &str,
        seq: u64,
        bytes: &[u8],
    ) -> Result<StreamPosition> {
        let header = ChunkHeader {
            stream_id: stream_id.to_owned(),
            seq,
        };
        let payload = Payload::Binary(switchboard_protocol::stream::encode(&header, bytes));
        self.request(events::STREAM_CHUNK, payload, true).await
    }

    /// Closes a stream with the payload's SHA-256 (hex) and size.
    pub async fn stream_close(
        &self,
        stream_id: &str,
        checksum: &str,
        total_size: u64,
    ) -> Result<()> {
        let close = StreamClose {
            stream_id: stream_id.to_owned(),
            checksum: checksum.to_owned(),
            total_size,
        };
        let _: serde_json::Value = self
            .request(events::STREAM_CLOSE, Payload::json(&close), true)
            .await?;
        Ok(())
    }

    /// Cancels a stream (sender or recipient).
    pub async fn stream_cancel(&self, stream_id: &str, reason: Option<&str>) -> Result<()> {
        let cancel = StreamCancel {
            stream_id: stream_id.to_owned(),
            reason: reason.map(str::to_owned),
        };
        let _: serde_json::Value = self
            .request(events::STREAM_CANCEL, Payload::json(&cancel), false)
            .await?;
        Ok(())
    }

    /// (Recipient) starts receiving a stream's bytes from `offset`.
    pub async fn stream_accept(&self, stream_id: &str, offset: u64) -> Result<StreamOffer> {
        let accept = StreamAccept {
            stream_id: stream_id.to_owned(),
            offset,
        };
        self.request(events::STREAM_ACCEPT, Payload::json(&accept), false)
            .await
    }

    /// (Recipient) acknowledges every byte before `offset`; `done` (after `stream_end`, with
    /// the total size): everything arrived and the checksum was verified.
    pub async fn stream_ack(&self, stream_id: &str, offset: u64, done: bool) -> Result<()> {
        let ack = StreamAck {
            stream_id: stream_id.to_owned(),
            offset,
            done,
        };
        let _: serde_json::Value = self
            .request(events::STREAM_ACK, Payload::json(&ack), true)
            .await?;
        Ok(())
    }

    /// Relays a WebRTC signal to `to`; not re-sent after a reconnect (signals are live only).
    pub async fn signal(
        &self,
        to: &str,
        kind: switchboard_protocol::SignalKind,
        data: &serde_json::Value,
    ) -> Result<()> {
        let payload = serde_json::json!({ "to": to, "kind": kind, "data": data });
        let _: serde_json::Value = self
            .request(events::SIGNAL, Payload::json(&payload), false)
            .await?;
        Ok(())
    }

    async fn request<T: DeserializeOwned>(
        &self,
        event: &'static str,
        payload: Payload,
        retry: bool,
    ) -> Result<T> {
        let raw = self.client.push(&self.topic, event, payload, retry).await?;
        serde_json::from_str(raw.get()).map_err(|e| Error::Protocol(format!("{event} reply: {e}")))
    }
}

/// Drops `null` fields (absent optional fields are not nulls on the wire).
fn strip_nulls(mut value: serde_json::Value) -> serde_json::Value {
    if let Some(map) = value.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// A random 128-bit id, hex-encoded.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
    }
}
