//! A channel on a shared log: several nodes publish to it, and all of them deliver every
//! message in one order.
//!
//! No node owns a channel. A node appends its channel's messages one at a time with a
//! checked append ([`MessageLog::append_checked`]) that expects the channel's newest record
//! to be the newest one this node has delivered (`log_position`): the log's engine
//! (JetStream's expected last subject sequence) stores it only then, so each offset is
//! stored once. A node that loses the race reads the winner's records from the log at once
//! (or, if that fails, waits for its tail to bring them), which advances its head and
//! `log_position`, then appends again with the next offset. The tail also brings every other
//! node's messages to the channel's local subscribers, in offset order; a gap (the channel
//! loaded while the tail was behind) is filled from the log first.
//!
//! [`MessageLog::append_checked`]: crate::storage::log::MessageLog::append_checked

use super::{AckTo, Channel, Entry, State, now_ms};
use crate::connection::message_frame;
use crate::storage::InboxWrite;
use crate::storage::log::{Checked, MessageRecord, Record};
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::Message;
use switchboard_protocol::history::Direction;

/// A publish waiting for its channel's checked append.
pub(super) struct Waiting {
    /// The message, without an offset yet.
    pub message: Message,
    /// Where its acknowledgement goes.
    pub ack: AckTo,
    /// Its inbox entry, for a direct message to an inbox.
    pub inbox: Option<InboxWrite>,
}

/// How long a node that lost a race waits for its tail before it tries again anyway.
const TAIL_WAIT: Duration = Duration::from_secs(5);

impl Channel {
    /// Starts the next waiting publish's checked append, unless one is in flight.
    pub(super) fn send_next(self: &Arc<Self>, s: &mut State) {
        while !s.in_flight {
            let Some(w) = s.waiting.pop_front() else {
                return;
            };
            if let Some(&offset) = s.dedup.get(&w.message.id) {
                // A retry of a message stored meanwhile, here or on another node.
                self.duplicate(w.message.id, offset, s.head, w.ack);
                continue;
            }
            let mut message = w.message;
            let offset = s.head + 1;
            s.next_offset = offset + 1;
            // Timestamps grow with offsets, also after another node's messages came first.
            s.last_ts = s.last_ts.max(now_ms());
            message.ts = s.last_ts;
            message.offset = Some(offset);
            self.remember(s, &message.id, offset);
            let message = Arc::new(message);
            let entry = Arc::new(Entry {
                frame: message_frame(&self.topic, &message),
                message: message.clone(),
            });
            let inbox_to = w.inbox.as_ref().and(message.to.clone());
            let (inbox, ack) = (w.inbox, w.ack);
            s.in_flight = true;
            let channel = self.clone();
            let resend = inbox.clone();
            self.log.append_checked(
                Record::Message(MessageRecord {
                    channel_id: self.row.id,
                    message,
                    to_database: self.row.storage.uses_database(),
                    inbox,
                }),
                s.log_position,
                Box::new(move |outcome| channel.on_checked(entry, outcome, ack, resend, inbox_to)),
            );
        }
    }

    /// Runs once a checked append ended.
    fn on_checked(
        self: &Arc<Self>,
        entry: Arc<Entry>,
        outcome: Checked,
        ack: AckTo,
        inbox: Option<InboxWrite>,
        inbox_to: Option<String>,
    ) {
        let offset = entry.message.offset.expect("sent messages have offsets");
        match outcome {
            Checked::Stored(position) => {
                {
                    let mut s = self.state.lock();
                    // The tail may have brought it already.
                    s.log_position = s.log_position.max(position);
                    if offset > s.head {
                        self.accept(&mut s, entry.clone());
                    }
                    s.in_flight = false;
                    self.send_next(&mut s);
                }
                if let Some(to) = inbox_to
                    && let Some(me) = self.me.upgrade()
                {
                    self.materializer
                        .after(position, Box::new(move || me.wake_inbox(&to)));
                }
                self.accepted(&entry.message, ack);
            }
            Checked::Conflict(newest) => {
                let behind = {
                    let mut s = self.state.lock();
                    let id = &entry.message.id;
                    if s.dedup.get(id) == Some(&offset) {
                        s.dedup.remove(id);
                    }
                    let mut message = Arc::unwrap_or_clone(entry.message.clone());
                    message.offset = None;
                    s.waiting.push_front(Waiting {
                        message,
                        ack,
                        inbox,
                    });
                    if newest <= s.log_position {
                        // Nobody appended: the log dropped the channel's newest records.
                        s.log_position = newest;
                        s.in_flight = false;
                        self.send_next(&mut s);
                        false
                    } else {
                        // Still "in flight" until the tail brought the winner's records.
                        true
                    }
                };
                if !behind {
                    return;
                }
                let channel = self.clone();
                tokio::spawn(async move {
                    channel.learn_winners(newest).await;
                    let mut s = channel.state.lock();
                    s.in_flight = false;
                    channel.send_next(&mut s);
                });
            }
            Checked::Failed(e) => {
                {
                    let mut s = self.state.lock();
                    let id = &entry.message.id;
                    if s.dedup.get(id) == Some(&offset) {
                        s.dedup.remove(id);
                    }
                    if let Some(to) = &entry.message.to
                        && inbox.is_some()
                        && let Some(n) = s.inbox_pending.get_mut(to.as_str())
                    {
                        *n = n.saturating_sub(1);
                    }
                    s.in_flight = false;
                    self.send_next(&mut s);
                }
                ack.send(Err(e), &self.metrics);
            }
        }
    }

    /// After a lost race: takes the records other nodes stored up to position `newest`,
    /// read from the log at once; if that fails, waits (a while) for the tail to bring them.
    async fn learn_winners(self: &Arc<Self>, newest: u64) {
        let after = self.state.lock().log_position;
        match self.log.channel_records(self.row.id, after, newest).await {
            Ok(records) => {
                for (position, record) in records {
                    let offset = record.message.offset.unwrap_or(0);
                    let mut s = self.state.lock();
                    if s.deleted {
                        return;
                    }
                    if offset <= s.head {
                        s.log_position = s.log_position.max(position);
                    } else if offset == s.head + 1 {
                        self.accept_tailed(&mut s, position, &record);
                        drop(s);
                        self.tailed_outside(position, &record);
                    } else {
                        // Not this channel's next offset: leave it to the tail.
                        break;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(channel = self.name(), error = %e, "reading the records that won a race failed; waiting for the tail");
                let mut tailed = self.log.watch_tail();
                let _ = tokio::time::timeout(TAIL_WAIT, tailed.wait_for(|t| *t >= newest)).await;
            }
        }
    }

    /// A record of this channel as the log's tail delivers it (from any node, this one
    /// included), in position order.
    pub(crate) fn tailed(self: &Arc<Self>, position: u64, record: &MessageRecord) {
        let offset = record.message.offset.unwrap_or(0);
        {
            let mut s = self.state.lock();
            if s.deleted {
                return;
            }
            if offset <= s.head {
                // Seen already (this node's own append, or filled from the log).
                s.log_position = s.log_position.max(position);
                return;
            }
            if offset == s.head + 1 {
                self.accept_tailed(&mut s, position, record);
                drop(s);
                self.tailed_outside(position, record);
                return;
            }
        }
        // A gap: the channel loaded while the tail was behind. The log holds the records in
        // between (the tail indexed them before handing them on).
        let channel = self.clone();
        let record = record.clone();
        tokio::spawn(async move {
            channel.fill_from_log(offset - 1).await;
            let mut s = channel.state.lock();
            if !s.deleted && offset == s.head + 1 {
                channel.accept_tailed(&mut s, position, &record);
                drop(s);
                channel.tailed_outside(position, &record);
            }
        });
    }

    /// Brings the head up to `target` from the log (other nodes' messages this node's tail
    /// delivered before the channel was loaded here).
    pub(crate) async fn fill_from_log(self: &Arc<Self>, target: u64) {
        let head = self.state.lock().head;
        if target <= head {
            return;
        }
        let n = (target - head) as usize;
        let found = match self
            .log
            .read(self.row.id, head + 1, target, n, Direction::Forward)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(channel = self.name(), error = %e, "reading other nodes' messages from the log failed");
                return;
            }
        };
        let mut s = self.state.lock();
        if let Some(last) = found.last().and_then(|m| m.offset)
            && let Some(position) = self.log.place(self.row.id, last)
        {
            s.log_position = s.log_position.max(position);
        }
        for message in found {
            let offset = message.offset.unwrap_or(0);
            if s.deleted || offset <= s.head {
                continue;
            }
            // Anything missing in between was dropped by the log's retention.
            let message = Arc::new(message);
            self.remember(&mut s, &message.id, offset);
            s.last_ts = s.last_ts.max(message.ts);
            let entry = Arc::new(Entry {
                frame: message_frame(&self.topic, &message),
                message,
            });
            self.accept(&mut s, entry);
            self.head_tx.send_replace(offset);
        }
    }

    /// Makes a tailed record the head (under the lock).
    fn accept_tailed(&self, s: &mut State, position: u64, record: &MessageRecord) {
        let message = record.message.clone();
        let offset = message.offset.unwrap_or(0);
        // This node's own append, tailed before its acknowledgement: counted already.
        let own = s.in_flight && s.dedup.get(&message.id) == Some(&offset);
        self.remember(s, &message.id, offset);
        s.last_ts = s.last_ts.max(message.ts);
        s.log_position = s.log_position.max(position);
        if !own
            && record.inbox.is_some()
            && let Some(to) = &message.to
        {
            *s.inbox_pending.entry(to.clone()).or_default() += 1;
        }
        let entry = Arc::new(Entry {
            frame: message_frame(&self.topic, &message),
            message,
        });
        self.accept(s, entry);
    }

    /// After [`Channel::accept_tailed`], outside the lock.
    fn tailed_outside(&self, position: u64, record: &MessageRecord) {
        self.head_tx
            .send_replace(record.message.offset.unwrap_or(0));
        if record.inbox.is_some()
            && let Some(to) = record.message.to.clone()
            && let Some(me) = self.me.upgrade()
        {
            self.materializer
                .after(position, Box::new(move || me.wake_inbox(&to)));
        }
    }
}
