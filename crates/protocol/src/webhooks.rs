//! Webhooks: a tenant registers URLs for chosen events; the server POSTs each event there,
//! signed with HMAC-SHA256, retrying failures with exponential backoff, and logs every
//! attempt.

use crate::Millis;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Header with the signature: `t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";
/// Header with the event name.
pub const EVENT_HEADER: &str = "x-switchboard-event";
/// Header with the delivery id (the same on every attempt: receivers dedupe by it).
pub const DELIVERY_HEADER: &str = "x-switchboard-delivery";
/// Most webhooks per tenant.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 20;
/// Longest webhook URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WebhookEvent {
    /// The first agent joined a channel.
    #[serde(rename = "channel.occupied")]
    ChannelOccupied,
    /// The last agent left a channel.
    #[serde(rename = "channel.vacated")]
    ChannelVacated,
    /// An agent joined a channel.
    #[serde(rename = "agent.joined")]
    AgentJoined,
    /// An agent left a channel (or was removed).
    #[serde(rename = "agent.left")]
    AgentLeft,
    /// A persisted message was stored.
    #[serde(rename = "message.published")]
    MessagePublished,
    /// An inbox message was rejected by its recipient.
    #[serde(rename = "inbox.rejected")]
    InboxRejected,
    /// An inbox message moved to the dead letters.
    #[serde(rename = "inbox.dead_lettered")]
    InboxDeadLettered,
    /// A stream's recipient acknowledged its last byte.
    #[serde(rename = "stream.completed")]
    StreamCompleted,
}

impl WebhookEvent {
    /// Every event.
    pub const ALL: [WebhookEvent; 8] = [
        WebhookEvent::ChannelOccupied,
        WebhookEvent::ChannelVacated,
        WebhookEvent::AgentJoined,
        WebhookEvent::AgentLeft,
        WebhookEvent::MessagePublished,
        WebhookEvent::InboxRejected,
        WebhookEvent::InboxDeadLettered,
        WebhookEvent::StreamCompleted,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::ChannelOccupied => "channel.occupied",
            WebhookEvent::ChannelVacated => "channel.vacated",
            WebhookEvent::AgentJoined => "agent.joined",
            WebhookEvent::AgentLeft => "agent.left",
            WebhookEvent::MessagePublished => "message.published",
            WebhookEvent::InboxRejected => "inbox.rejected",
            WebhookEvent::InboxDeadLettered => "inbox.dead_lettered",
            WebhookEvent::StreamCompleted => "stream.completed",
        }
    }
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// The events it receives (at least one).
    pub events: Vec<WebhookEvent>,
    /// Only events of channels with this name, or starting with the prefix before a
    /// trailing `*` (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// `message.published` only for these message types (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where it POSTs.
    pub url: String,
    /// Its events.
    pub events: Vec<WebhookEvent>,
    /// Its channel filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Its message-type filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<String>>,
    /// When it was registered (ms).
    pub created_at: Millis,
}

/// The reply of `POST /v1/webhooks`: the webhook and its signing secret (shown only here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedWebhook {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC key of its signatures (`whsec_…`).
    pub secret: String,
}

/// The body of every webhook POST.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// The delivery id (also in [`DELIVERY_HEADER`]).
    pub id: String,
    /// The event.
    pub event: WebhookEvent,
    /// The channel it happened in.
    pub channel: String,
    /// When it happened (ms).
    pub ts: Millis,
    /// The event's details: the message for `message.published`; `{agent}` for joins and
    /// leaves; `{id, from, recipient, delivery_count, reason}` for inbox events; `{}`
    /// otherwise.
    pub data: Box<RawValue>,
}

/// One delivery attempt in a webhook's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The delivery id.
    pub delivery_id: String,
    /// The event.
    pub event: WebhookEvent,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When it was made (ms).
    pub ts: Millis,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed (a non-2xx status, a timeout, a refused connection…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: u64,
    /// Whether another attempt follows.
    pub will_retry: bool,
}

/// `GET /v1/webhooks/{id}/deliveries` reply, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryLog {
    /// The attempts.
    pub attempts: Vec<DeliveryAttempt>,
}

/// Whether `channel` passes a webhook's `channel` filter (`name` or `prefix*`).
pub fn channel_matches(filter: Option<&str>, channel: &str) -> bool {
    match filter {
        None => true,
        Some(f) => match f.strip_suffix('*') {
            Some(prefix) => channel.starts_with(prefix),
            None => f == channel,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_filters() {
        for e in WebhookEvent::ALL {
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
        }
        assert!(channel_matches(None, "x"));
        assert!(channel_matches(Some("orders-*"), "orders-7"));
        assert!(!channel_matches(Some("orders-*"), "order"));
        assert!(channel_matches(Some("lobby"), "lobby"));
        assert!(!channel_matches(Some("lobby"), "lobby2"));
    }
}
