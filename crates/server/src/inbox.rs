//! Durable inboxes.
//!
//! A persisted message addressed `to` an agent that is absent, or that consumes its inbox
//! (joined with `inbox: true`), also goes to that agent's inbox in the channel, in the same
//! commit as the message. A consumer gets its inbox as `new_message` events, at most
//! `prefetch` unacknowledged at a time, and settles each with `ack` or `reject`. A message
//! not acknowledged within the visibility timeout is delivered again with a higher
//! `delivery_count`; one delivered `max_deliveries` times or rejected `max_rejections` times
//! becomes a dead letter that the sender's tenant can read. The sender asked for receipts
//! gets a `receipt` event at each step.
//!
//! Each consumer has one pump task: it gathers the acks and rejects that arrived, applies
//! them and leases the next messages in one store transaction (one fsync for a whole batch),
//! and sleeps until a new message, a settlement or the next visibility deadline.

use crate::channel::Channel;
use crate::connection::{ConnHandle, text_frame};
use crate::error::{Error, Result, err};
use crate::storage::{InboxBatch, InboxBatchResult, Outcome, Settle, Settled};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::inbox::{DeadLetter, DeadLetterPage, DeadLetterQuery};
use switchboard_protocol::webhooks::WebhookEvent;
use switchboard_protocol::{Receipt, ReceiptStatus, events};
use tokio::sync::{mpsc, oneshot};

/// Acks and rejects one consumer may have queued for its pump.
const COMMAND_QUEUE: usize = 256;

/// A `reject` as a settlement, once its reason fits.
pub fn rejection(reject: switchboard_protocol::Reject) -> Result<Settle> {
    use switchboard_protocol::inbox::MAX_REASON_LEN;
    if reject
        .reason
        .as_ref()
        .is_some_and(|r| r.len() > MAX_REASON_LEN)
    {
        return Err(err!(
            InvalidPayload,
            "reason is at most {MAX_REASON_LEN} bytes"
        ));
    }
    Ok(Settle::Reject {
        id: reject.id,
        reason: reject.reason,
        requeue: reject.requeue,
    })
}

fn not_found(id: &str) -> Error {
    err!(
        NotFound,
        "no pending inbox message {id:?} for this agent (acknowledged, dead-lettered, or never sent to it)"
    )
}

impl Channel {
    /// Applies `batch` to `recipient`'s inbox in one transaction, then sends the receipts and
    /// updates the pending counts.
    pub async fn inbox_batch(
        &self,
        recipient: &str,
        batch: InboxBatch,
    ) -> Result<InboxBatchResult> {
        // Inbox entries are written by the database writer, just behind the log: whatever
        // was acknowledged before this call is in the inbox once it has caught up.
        self.database_caught_up().await;
        let (channel_id, limits) = (self.row.id, self.limits.inbox);
        let limits = crate::storage::InboxLimits {
            max_deliveries: limits.max_deliveries,
            max_rejections: limits.max_rejections,
        };
        let result = self
            .store
            .inbox_batch(channel_id, recipient, batch, limits, crate::now_ms())
            .await?;
        let mut receipts = Vec::new();
        let mut removed = 0;
        for settled in result.settled.iter().flatten().chain(&result.dead) {
            removed += u32::from(settled.removed());
            let (event, reason) = match &settled.outcome {
                Outcome::Acknowledged => (None, None),
                Outcome::Rejected(reason) => (Some(WebhookEvent::InboxRejected), reason.as_deref()),
                Outcome::DeadLettered(reason) => {
                    (Some(WebhookEvent::InboxDeadLettered), Some(reason.as_str()))
                }
            };
            if let Some(event) = event {
                self.webhook(event, None, || {
                    serde_json::json!({
                        "id": settled.id,
                        "from": settled.sender,
                        "recipient": recipient,
                        "delivery_count": settled.deliveries,
                        "reason": reason,
                    })
                    .to_string()
                });
            }
            if settled.receipt {
                let (status, reason) = match &settled.outcome {
                    Outcome::Acknowledged => (ReceiptStatus::Acknowledged, None),
                    Outcome::Rejected(reason) => (ReceiptStatus::Rejected, reason.clone()),
                    Outcome::DeadLettered(reason) => {
                        (ReceiptStatus::DeadLettered, Some(reason.clone()))
                    }
                };
                receipts.push(receipt(settled, recipient, status, reason));
            }
        }
        for row in &result.leased {
            if row.receipt && row.deliveries == 1 {
                receipts.push((
                    row.sender.clone(),
                    Receipt {
                        id: row.id.clone(),
                        to: recipient.to_owned(),
                        status: ReceiptStatus::Delivered,
                        delivery_count: 1,
                        reason: None,
                    },
                ));
            }
        }
        self.inbox_settled(recipient, removed, receipts);
        Ok(result)
    }

    /// Acknowledges or rejects one message without a consumer (HTTP, or a session that did
    /// not join with `inbox`).
    pub async fn inbox_settle(&self, recipient: &str, settle: Settle) -> Result<Settled> {
        let id = settle.id().to_owned();
        let result = self
            .inbox_batch(
                recipient,
                InboxBatch {
                    settle: vec![settle],
                    lease: None,
                },
            )
            .await?;
        result
            .settled
            .into_iter()
            .next()
            .flatten()
            .ok_or_else(|| not_found(&id))
    }

    /// Leases up to `max` messages of `recipient`'s inbox (HTTP `receive`).
    pub async fn inbox_receive(
        &self,
        recipient: &str,
        max: u32,
        visibility_ms: i64,
    ) -> Result<Vec<switchboard_protocol::InboxMessage>> {
        let result = self
            .inbox_batch(
                recipient,
                InboxBatch {
                    settle: Vec::new(),
                    lease: Some((max, visibility_ms)),
                },
            )
            .await?;
        result
            .leased
            .into_iter()
            .map(|row| {
                Ok(switchboard_protocol::InboxMessage {
                    delivery_count: row.deliveries,
                    message: serde_json::from_str(&row.message).map_err(Error::internal)?,
                })
            })
            .collect()
    }

    /// A page of the channel's dead letters sent by `tenant`'s agents.
    pub async fn dead_letters(&self, tenant: &str, q: DeadLetterQuery) -> Result<DeadLetterPage> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(err!(InvalidPayload, "limit is 1-1000"));
        }
        let after = match q.after.as_deref() {
            None => (i64::MIN, 0),
            Some(cursor) => cursor
                .split_once('.')
                .and_then(|(at, offset)| Some((at.parse().ok()?, offset.parse().ok()?)))
                .ok_or_else(|| err!(InvalidPayload, "after: use the `next` of an earlier page"))?,
        };
        let (channel_id, tenant) = (self.row.id, tenant.to_owned());
        let rows = self
            .store
            .dead_letters(
                channel_id,
                &tenant,
                q.recipient.as_deref(),
                after,
                limit + 1,
            )
            .await?;
        let more = rows.len() > limit as usize;
        let mut entries = Vec::with_capacity(rows.len().min(limit as usize));
        let mut next = None;
        for row in rows.into_iter().take(limit as usize) {
            next = more.then(|| format!("{}.{}", row.dead_at, row.offset));
            entries.push(DeadLetter {
                message: serde_json::from_str(&row.message).map_err(Error::internal)?,
                recipient: row.recipient,
                delivery_count: row.deliveries,
                rejections: row.rejections,
                reason: row.reason,
                dead_at: row.dead_at,
            });
        }
        Ok(DeadLetterPage { entries, next })
    }

    /// Deletes one of `tenant`'s dead letters.
    pub async fn delete_dead_letter(&self, tenant: &str, id: &str) -> Result<()> {
        let (channel_id, tenant, message_id) = (self.row.id, tenant.to_owned(), id.to_owned());
        let deleted = self
            .store
            .delete_dead_letter(channel_id, &tenant, &message_id)
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(err!(
                NotFound,
                "no dead letter {id:?} of yours in this channel"
            ))
        }
    }
}

fn receipt(
    settled: &Settled,
    recipient: &str,
    status: ReceiptStatus,
    reason: Option<String>,
) -> (String, Receipt) {
    (
        settled.sender.clone(),
        Receipt {
            id: settled.id.clone(),
            to: recipient.to_owned(),
            status,
            delivery_count: settled.deliveries,
            reason,
        },
    )
}

enum Command {
    /// A new message may be waiting.
    Wake,
    /// An ack or reject from the consumer, and where its reply goes.
    Settle(Settle, oneshot::Sender<Result<()>>),
}

/// A live consumer of one agent's inbox; dropping it stops its pump, which makes the
/// messages it leased visible again at once.
pub struct Consumer {
    tx: mpsc::Sender<Command>,
}

impl Consumer {
    /// Starts the pump of `agent`'s inbox, delivering to `conn`.
    pub fn start(
        channel: Arc<Channel>,
        conn: Arc<ConnHandle>,
        join_ref: Option<String>,
        agent: Arc<str>,
    ) -> Consumer {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let _ = tx.try_send(Command::Wake);
        tokio::spawn(pump(channel, conn, join_ref, agent, rx));
        Consumer { tx }
    }

    /// A message for this consumer is durable: deliver it if there is room.
    pub fn wake(&self) {
        // A full queue means the pump has work queued and will lease afterwards anyway.
        let _ = self.tx.try_send(Command::Wake);
    }

    /// A handle to queue acks and rejects with.
    pub fn handle(&self) -> Settler {
        Settler {
            tx: self.tx.clone(),
        }
    }
}

/// Queues acks and rejects on a consumer's pump.
pub struct Settler {
    tx: mpsc::Sender<Command>,
}

impl Settler {
    /// Acknowledges or rejects a message; returns once it is durable.
    pub async fn settle(self, settle: Settle) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        let gone = || err!(NotJoined, "the inbox consumer stopped; join again");
        self.tx
            .send(Command::Settle(settle, reply))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn pump(
    channel: Arc<Channel>,
    conn: Arc<ConnHandle>,
    join_ref: Option<String>,
    agent: Arc<str>,
    mut rx: mpsc::Receiver<Command>,
) {
    let limits = channel.limits.inbox;
    let prefetch = limits.prefetch.max(1) as usize;
    let visibility_ms = limits.visibility_timeout_ms.max(1) as i64;
    // Leased to this consumer and not settled: message id → when it becomes visible again.
    let mut in_flight: HashMap<String, i64> = HashMap::new();
    let mut next_visible: Option<i64> = None;
    let mut lease_due = false;
    let mut settle = Vec::new();
    let mut replies = Vec::new();
    let take =
        |cmd: Command, lease_due: &mut bool, settle: &mut Vec<Settle>, replies: &mut Vec<_>| {
            match cmd {
                Command::Wake => *lease_due = true,
                Command::Settle(s, reply) => {
                    settle.push(s);
                    replies.push(reply);
                }
            }
        };
    loop {
        if !lease_due && settle.is_empty() {
            // Wake for the next message to become visible again: one this consumer holds
            // (its room frees up), or any other (leased over HTTP, or before a restart).
            let wake_at = next_visible
                .into_iter()
                .chain(in_flight.values().copied())
                .min();
            let deadline = wake_at.map(|at| {
                tokio::time::Instant::now()
                    + Duration::from_millis(at.saturating_sub(crate::now_ms()).max(0) as u64)
            });
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => take(cmd, &mut lease_due, &mut settle, &mut replies),
                    None => break,
                },
                () = sleep_until(deadline) => {
                    lease_due = true;
                    next_visible = None;
                }
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            take(cmd, &mut lease_due, &mut settle, &mut replies);
        }
        let now = crate::now_ms();
        in_flight.retain(|_, at| *at > now);
        for s in &settle {
            in_flight.remove(s.id());
        }
        let credit = prefetch.saturating_sub(in_flight.len());
        // A settlement frees room (or puts a rejected message back in line): lease too.
        let lease = ((lease_due || !settle.is_empty()) && credit > 0)
            .then_some((credit as u32, visibility_ms));
        lease_due = false;
        if settle.is_empty() && lease.is_none() {
            continue;
        }
        let batch = InboxBatch {
            settle: std::mem::take(&mut settle),
            lease,
        };
        let ids: Vec<String> = batch.settle.iter().map(|s| s.id().to_owned()).collect();
        match channel.inbox_batch(&agent, batch).await {
            Ok(result) => {
                for ((reply, settled), id) in replies.drain(..).zip(result.settled).zip(ids) {
                    let _ = reply.send(settled.map(|_| ()).ok_or_else(|| not_found(&id)));
                }
                let frames: Vec<_> = result
                    .leased
                    .iter()
                    .map(|row| {
                        in_flight.insert(row.id.clone(), row.visible_at);
                        let body = format!(
                            r#"{{"delivery_count":{},"message":{}}}"#,
                            row.deliveries, row.message
                        );
                        text_frame(
                            join_ref.as_deref(),
                            None,
                            &channel.topic,
                            events::NEW_MESSAGE,
                            &body,
                        )
                    })
                    .collect();
                if !frames.is_empty() && !conn.push_batch(frames) {
                    break;
                }
                next_visible = result.next_visible;
            }
            Err(e) => {
                tracing::warn!(channel = channel.name(), agent = &*agent, error = %e, "inbox delivery failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
                // The store refuses writes now (or is closing): stop; a new join restarts.
                break;
            }
        }
    }
    if !in_flight.is_empty() {
        let ids: Vec<String> = in_flight.into_keys().collect();
        let (channel_id, now, recipient) = (channel.row.id, crate::now_ms(), agent.clone());
        let released = channel
            .store
            .inbox_release(channel_id, &recipient, ids, now)
            .await;
        match released {
            // A consumer that joined meanwhile (a reconnect, a takeover) may have leased
            // before the release and be asleep until the old deadlines: wake it.
            Ok(()) => channel.wake_inbox(&agent),
            Err(e) => {
                tracing::debug!(error = %e, "releasing leased inbox messages failed; they come back after the visibility timeout");
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
