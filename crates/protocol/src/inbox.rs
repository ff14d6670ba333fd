//! Durable inboxes: a persisted message addressed `to` an agent waits in that agent's inbox
//! in the channel until the agent acknowledges it (`ack`) or rejects it (`reject`).
//! Unacknowledged messages come back after a visibility timeout; messages rejected or
//! delivered too often move to the channel's dead letters.

use crate::Millis;
use crate::message::Message;
use serde::{Deserialize, Serialize};

/// Longest rejection reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;
/// Most messages one HTTP `receive` leases.
pub const MAX_RECEIVE: u32 = 100;

/// `new_message` event (server → the agent that joined with `inbox: true`), and an entry of
/// an HTTP `receive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// How many times this message was delivered, this delivery included (1 the first time).
    pub delivery_count: u32,
    /// The message.
    pub message: Message,
}

/// `ack` push: the message was handled; it leaves the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    /// The message id.
    pub id: String,
}

fn yes() -> bool {
    true
}

/// `reject` push: the message could not be handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// The message id.
    pub id: String,
    /// Why (at most [`MAX_REASON_LEN`] bytes); kept with a dead letter and sent in receipts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Deliver it again (default) until the rejection limit; false: dead-letter it now.
    #[serde(default = "yes")]
    pub requeue: bool,
}

/// What happened to a message the sender asked receipts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Delivered to the recipient for the first time.
    Delivered,
    /// The recipient acknowledged it.
    Acknowledged,
    /// The recipient rejected it (it may come back to the recipient).
    Rejected,
    /// It moved to the dead letters.
    DeadLettered,
}

/// `receipt` event, server → the sending agent (when it published with `receipt: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The message id.
    pub id: String,
    /// The recipient.
    pub to: String,
    /// What happened.
    pub status: ReceiptStatus,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// The rejection or dead-letter reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Body of `POST /v1/channels/{name}/inbox/{agent}/receive`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    /// Most messages to lease (1–[`MAX_RECEIVE`], default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// How long they stay invisible before coming back unless acknowledged (default: the
    /// server's `visibility_timeout_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_ms: Option<u64>,
}

/// Reply of an HTTP `receive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// The leased messages, oldest first.
    pub messages: Vec<InboxMessage>,
}

/// A message that left an inbox without being acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The message.
    pub message: Message,
    /// The agent it was addressed to.
    pub recipient: String,
    /// How often it was delivered.
    pub delivery_count: u32,
    /// How often it was rejected.
    pub rejections: u32,
    /// `max_deliveries`, `max_rejections`, `expired`, or the recipient's reason.
    pub reason: String,
    /// When it was dead-lettered (ms).
    pub dead_at: Millis,
}

/// `GET /v1/channels/{name}/dead_letters` query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterQuery {
    /// Only those addressed to this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Only those dead-lettered after this cursor (the `next` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many (1–1000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A page of dead letters, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterPage {
    /// The dead letters.
    pub entries: Vec<DeadLetter>,
    /// The `after` of the next page, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_requeues_by_default() {
        let r: Reject = serde_json::from_str(r#"{"id":"m1","reason":"busy"}"#).unwrap();
        assert!(r.requeue);
        let r: Reject = serde_json::from_str(r#"{"id":"m1","requeue":false}"#).unwrap();
        assert!(!r.requeue && r.reason.is_none());
        assert!(serde_json::from_str::<Ack>(r#"{"id":"m1","extra":1}"#).is_err());
    }

    #[test]
    fn receipt_wire_shape() {
        let r = Receipt {
            id: "m1".into(),
            to: "bob".into(),
            status: ReceiptStatus::DeadLettered,
            delivery_count: 3,
            reason: Some("max_deliveries".into()),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"id":"m1","to":"bob","status":"dead_lettered","delivery_count":3,"reason":"max_deliveries"}"#
        );
    }
}
