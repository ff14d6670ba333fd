//! Switchboard Rust SDK.
//!
//! A [`Client`] is a cheap, cloneable handle to one WebSocket connection that a background task
//! owns: it sends heartbeats, routes each reply to the request that awaits it, and when the
//! connection drops it reconnects with jittered exponential backoff, rejoins every channel from
//! the last offset it delivered, and re-sends unacknowledged publishes under their original
//! ids. The application sees neither a gap nor a duplicate, only a
//! [`ChannelEvent::Reconnected`] (or a [`ChannelEvent::Gap`] when the server no longer has the
//! messages it missed).
//!
//! ```no_run
//! use switchboard_client::{Client, ClientConfig, ChannelEvent, JoinParams, Publish};
//!
//! # async fn demo() -> switchboard_client::Result<()> {
//! let client = Client::connect(ClientConfig::new("ws://127.0.0.1:7400", "sk_…")).await?;
//! let mut room = client.join("room", JoinParams::new("alice")).await?;
//! let ack = room.publish(Publish::new("chat", &serde_json::json!({"text": "hi"}))).await?;
//! println!("stored at offset {:?}", ack.offset);
//! while let Some(event) = room.recv().await {
//!     if let ChannelEvent::Message(m) = event {
//!         println!("{}: {}", m.from, m.data.get());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! [`HttpClient`] covers the HTTP API (publish, history and presence without joining, channel
//! management, tenants and keys, and minting temporary keys).
//!
//! Temporary keys (`tk_…`) expire: give [`ClientConfig::with_key_refresh`] a callback that
//! returns a fresh one and the client swaps it in on the live socket before the old one
//! lapses. [`attenuate`] (feature `attenuate`, on by default) narrows a temporary key offline,
//! for delegating part of one's rights.

#[cfg(feature = "attenuate")]
mod attenuate;
mod backoff;
mod channel;
mod client;
mod config;
mod connection;
mod error;
mod http;
pub mod stream;
mod tracker;

#[cfg(feature = "attenuate")]
pub use attenuate::{Restriction, attenuate};
pub use backoff::Backoff;
pub use channel::{Channel, ChannelEvent, ChannelSender};
pub use client::Client;
pub use config::{ClientConfig, KeyFuture, KeyRefresh};
pub use error::{Error, Result};
pub use http::{
    Capability, ChannelInfo, CreateChannel, CreateKey, CreateTemporaryKey, CreatedKey,
    CreatedTenant, HttpClient, KeyInfo, KeyKind, Retention, StoragePolicy, TemporaryKey,
    TenantInfo,
};

/// The wire types, re-exported so applications need not depend on the protocol crate.
pub use switchboard_protocol as protocol;
pub use switchboard_protocol::discovery::{
    AgentCard, AgentChange, AgentUpdate, Announce, DISCOVERY_CHANNEL, Discover,
};
pub use switchboard_protocol::inbox::{
    Ack, DeadLetter, DeadLetterPage, DeadLetterQuery, InboxMessage, Receipt, ReceiptStatus,
    Receive, Reject,
};
pub use switchboard_protocol::kv::{KvChange, KvEntry, KvList, KvOp, KvPage};
pub use switchboard_protocol::stream::{
    StreamCancelled, StreamCheckpoint, StreamComplete, StreamEnd, StreamError, StreamOffer,
    StreamOpen, StreamPosition, StreamProgress,
};
pub use switchboard_protocol::webhooks::{
    CreateWebhook, CreatedWebhook, DeliveryAttempt, DeliveryLog, Webhook, WebhookEvent,
    WebhookPayload,
};
pub use switchboard_protocol::{
    CacheRetention, ErrorCode, ErrorReply, Gap, GapReason, HistoryPage, HistoryQuery, JoinParams,
    JoinReply, LogRetention, Message, PollSource, PresenceDiff, PresenceEntry, PresenceMeta,
    PresenceState, Publish, PublishAck, Scope, SignalEvent, SignalKind, Tier, TierRange,
    history::Direction,
};
