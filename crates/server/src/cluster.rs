//! The cluster bus: what nodes sharing a deployment tell each other beside the log.
//!
//! Messages that are stored travel through the shared log (each node follows its tail).
//! Everything else that one node changes and the others must see goes over one core NATS
//! subject, `<jetstream_stream>.bus`, as small JSON events: presence joins and leaves,
//! ephemeral messages, channel-storage changes, agent cards, and "the keys (or webhooks)
//! changed". Each node also
//! says it is alive every [`ALIVE_EVERY`]; a node silent for [`NODE_TIMEOUT`] is gone, and
//! its agents leave every channel. A starting node says hello, and the others answer with
//! their presence, so nobody has to wait for a heartbeat to see who is where.
//!
//! The bus is at-most-once (core NATS): a lost presence event is corrected by the next
//! full answer to a hello or by the node timing out; a lost ephemeral message is lost, as
//! ephemeral messages are anywhere.

use crate::error::Result;
use crate::storage::unavailable;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use switchboard_protocol::kv::KvChange;
use switchboard_protocol::{Message, PresenceMeta};
use tokio::sync::mpsc;

/// How often a node says it is alive.
pub const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// A node not heard from for this long is gone.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// One event on the bus (externally tagged: messages carry raw JSON, which an internally
/// tagged enum cannot buffer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A node started: everyone answers with their presence.
    Hello,
    /// A node is alive.
    Alive,
    /// Agents joined or left a channel on the sending node; `full`: these joins are all
    /// of the node's agents in the channel (an answer to a hello).
    Presence {
        /// The channel's row id.
        channel: i64,
        /// Who joined.
        joins: Vec<PresenceMeta>,
        /// Who left.
        leaves: Vec<PresenceMeta>,
        /// The joins replace what the node had in the channel.
        #[serde(default)]
        full: bool,
    },
    /// An ephemeral message (never stored) to deliver to local subscribers.
    Ephemeral {
        /// The channel's row id.
        channel: i64,
        /// The message.
        message: Message,
    },
    /// A channel's key-value storage changed.
    Kv {
        /// The channel's row id.
        channel: i64,
        /// The change.
        change: KvChange,
    },
    /// A WebRTC signal for an agent on the receiving node.
    Signal {
        /// The channel's row id.
        channel: i64,
        /// The agent it is for.
        to: String,
        /// The signal as delivered.
        signal: switchboard_protocol::SignalEvent,
    },
    /// Tenants or keys changed: reload them from the database.
    Keys,
    /// Webhooks were registered or deleted: reload them from the database.
    Webhooks,
    /// An agent announced itself, changed its card, or removed it (`None`).
    Card {
        /// Its tenant.
        tenant: String,
        /// Its name.
        name: String,
        /// The card.
        card: Option<crate::discovery::Card>,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    event: Event,
}

/// What the bus delivers events to (the server).
pub trait Receiver: Send + Sync + 'static {
    /// An event from another node.
    fn event(self: Arc<Self>, node: &Arc<str>, event: Event);
    /// Another node is gone: these agents of it left these channels.
    fn node_gone(self: Arc<Self>, node: &Arc<str>, left: Vec<(i64, Vec<PresenceMeta>)>);
    /// Every loaded channel's local presence, to answer a hello.
    fn presence(self: Arc<Self>) -> Vec<(i64, Vec<PresenceMeta>)>;
}

/// One channel's presences on other nodes, by node.
type NodePresence = HashMap<Arc<str>, Vec<PresenceMeta>>;

/// The bus (see the module docs).
pub struct Bus {
    node: Arc<str>,
    outbox: mpsc::UnboundedSender<Event>,
    /// Per channel, other nodes' agents: node → its presences there.
    remote: Mutex<HashMap<i64, NodePresence>>,
    seen: Mutex<HashMap<Arc<str>, Instant>>,
}

impl Bus {
    /// Connects to NATS at `url` and starts the bus on `<prefix>.bus`; events go to
    /// `receiver` (held weakly: the bus stops with it).
    pub async fn start(url: &str, prefix: &str, receiver: Weak<dyn Receiver>) -> Result<Arc<Bus>> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| unavailable(format!("NATS: cannot connect to {url}: {e}")))?;
        let subject = format!("{prefix}.bus");
        let mut inbox = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| unavailable(format!("NATS: subscribing to {subject}: {e}")))?;
        let node: Arc<str> = crate::auth::random_id::<8>().into();
        let (outbox, mut queued) = mpsc::unbounded_channel::<Event>();
        let bus = Arc::new(Bus {
            node: node.clone(),
            outbox,
            remote: Mutex::new(HashMap::new()),
            seen: Mutex::new(HashMap::new()),
        });
        // Sending: one task, in order.
        let (sender, sender_subject, sender_node) = (client.clone(), subject.clone(), node.clone());
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                let envelope = Envelope {
                    node: sender_node.to_string(),
                    event,
                };
                let body = serde_json::to_vec(&envelope).expect("events serialize");
                if let Err(e) = sender.publish(sender_subject.clone(), body.into()).await {
                    tracing::warn!(error = %e, "the cluster bus could not send an event");
                }
            }
        });
        // Receiving.
        let weak_bus = Arc::downgrade(&bus);
        let hello_receiver = receiver.clone();
        tokio::spawn(async move {
            while let Some(m) = inbox.next().await {
                let (Some(bus), Some(receiver)) = (weak_bus.upgrade(), receiver.upgrade()) else {
                    return;
                };
                let envelope: Envelope = match serde_json::from_slice(&m.payload) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(error = %e, "an unreadable cluster bus event was dropped");
                        continue;
                    }
                };
                if *envelope.node == *bus.node {
                    continue;
                }
                bus.received(&envelope.node.into(), envelope.event, receiver);
            }
        });
        // Heartbeats and timeouts.
        let weak_bus = Arc::downgrade(&bus);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ALIVE_EVERY);
            loop {
                tick.tick().await;
                let (Some(bus), Some(receiver)) = (weak_bus.upgrade(), hello_receiver.upgrade())
                else {
                    return;
                };
                bus.send(Event::Alive);
                let gone: Vec<Arc<str>> = {
                    let mut seen = bus.seen.lock();
                    let gone = seen
                        .iter()
                        .filter(|(_, at)| at.elapsed() > NODE_TIMEOUT)
                        .map(|(node, _)| node.clone())
                        .collect::<Vec<_>>();
                    for node in &gone {
                        seen.remove(node);
                    }
                    gone
                };
                for node in gone {
                    tracing::info!(node = %node, "a cluster node went silent; its agents left");
                    let left = bus.forget(&node);
                    receiver.clone().node_gone(&node, left);
                }
            }
        });
        bus.send(Event::Hello);
        Ok(bus)
    }

    /// Sends an event to the other nodes.
    pub fn send(&self, event: Event) {
        let _ = self.outbox.send(event);
    }

    /// Other nodes' presences in `channel`.
    pub fn remote_presence(&self, channel: i64) -> Vec<PresenceMeta> {
        self.remote
            .lock()
            .get(&channel)
            .map(|nodes| nodes.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether an agent of this name is present in `channel` on another node.
    pub fn present_elsewhere(&self, channel: i64, agent: &str) -> bool {
        self.remote
            .lock()
            .get(&channel)
            .is_some_and(|nodes| nodes.values().flatten().any(|m| m.agent_name == agent))
    }

    fn received(&self, node: &Arc<str>, event: Event, receiver: Arc<dyn Receiver>) {
        self.seen.lock().insert(node.clone(), Instant::now());
        let event = match event {
            Event::Hello => {
                for (channel, joins) in receiver.presence() {
                    self.send(Event::Presence {
                        channel,
                        joins,
                        leaves: Vec::new(),
                        full: true,
                    });
                }
                return;
            }
            Event::Alive => return,
            Event::Presence {
                channel,
                joins,
                leaves,
                full,
            } => {
                // What actually changed, as one diff (a full answer replaces the node's).
                let mut remote = self.remote.lock();
                let nodes = remote.entry(channel).or_default();
                let metas = nodes.entry(node.clone()).or_default();
                let before = std::mem::take(metas);
                let mut after: Vec<PresenceMeta> = if full { Vec::new() } else { before.clone() };
                after.retain(|m| !leaves.iter().any(|l| l.phx_ref == m.phx_ref));
                for join in joins {
                    if !after.iter().any(|m| m.phx_ref == join.phx_ref) {
                        after.push(join);
                    }
                }
                let has = |list: &[PresenceMeta], m: &PresenceMeta| {
                    list.iter().any(|x| x.phx_ref == m.phx_ref)
                };
                let joins = after.iter().filter(|m| !has(&before, m)).cloned().collect();
                let leaves = before.iter().filter(|m| !has(&after, m)).cloned().collect();
                *metas = after;
                if metas.is_empty() {
                    nodes.remove(node);
                }
                if nodes.is_empty() {
                    remote.remove(&channel);
                }
                Event::Presence {
                    channel,
                    joins,
                    leaves,
                    full: false,
                }
            }
            other => other,
        };
        receiver.event(node, event);
    }

    /// Drops a gone node's presences; returns them per channel.
    fn forget(&self, node: &Arc<str>) -> Vec<(i64, Vec<PresenceMeta>)> {
        let mut left = Vec::new();
        self.remote.lock().retain(|channel, nodes| {
            if let Some(metas) = nodes.remove(node) {
                left.push((*channel, metas));
            }
            !nodes.is_empty()
        });
        left
    }
}
