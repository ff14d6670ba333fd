//! A channel: its subscribers, presence, offsets, recent-message cache and dedup window.
//!
//! All of a channel's state sits behind one short, synchronous lock that is never held
//! across an await. A persisted publish takes the lock to assign the next offset and queue
//! the append, and the store completes appends in queue order; the completion takes the
//! lock again to advance `head`, cache the message and fan it out. So delivery order is
//! offset order, and nobody ever receives a message that is not yet durable.

mod shared;

use crate::auth::random_id;
use crate::connection::{ConnHandle, message_frame, reply_error, reply_ok, text_frame};
use crate::error::{Error, Result, err};
use crate::inbox::{Consumer, Settler};
use crate::metrics::Metrics;
use crate::storage::log::{MessageLog, MessageRecord, Record};
use crate::storage::materializer::Materializer;
use crate::storage::{ChannelRow, Database, InboxWrite};
use crate::webhooks::Webhooks;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use switchboard_protocol::history::Direction;
use switchboard_protocol::limits::{DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT};
use switchboard_protocol::webhooks::WebhookEvent;
use switchboard_protocol::websocket::WsFrame;
use switchboard_protocol::{
    ErrorCode, Gap, GapReason, HistoryPage, HistoryQuery, JoinParams, JoinReply, Message,
    PollSource, PresenceDiff, PresenceEntry, PresenceMeta, PresenceState, Publish, PublishAck,
    Scope, StoragePolicy, events,
};
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

/// A server-chosen message id: 96 unpredictable bits (a guessable id could be claimed first
/// by another client's publish), from the thread's CSPRNG, without a syscall per message.
fn message_id() -> String {
    hex::encode(rand::random::<[u8; 12]>())
}

/// Agents per presence frame (see [`Channel::presence_state_frames`]).
const PRESENCE_CHUNK: usize = 64;

/// Identifies a channel: its tenant (`""` for public scope) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChannelKey {
    /// Owning tenant, or `""` for the public namespace.
    pub tenant: Arc<str>,
    /// Channel name.
    pub name: Arc<str>,
}

impl ChannelKey {
    /// The key of `name` in `scope` for `tenant`.
    pub fn new(tenant: &str, scope: Scope, name: &str) -> Self {
        let tenant = match scope {
            Scope::Private => tenant,
            Scope::Public => "",
        };
        ChannelKey {
            tenant: tenant.into(),
            name: name.into(),
        }
    }
}

/// A persisted message with its frame, encoded once for every subscriber.
pub struct Entry {
    /// The message.
    pub message: Arc<Message>,
    /// Its `message` frame.
    pub frame: WsFrame,
}

/// Where a publish's acknowledgement goes.
pub enum AckTo {
    /// A socket reply.
    Socket {
        /// The publishing connection.
        conn: Arc<ConnHandle>,
        /// The push's join ref.
        join_ref: Option<String>,
        /// The push's ref.
        reference: Option<String>,
        /// The channel topic.
        topic: Arc<str>,
        /// When the publish arrived.
        started: Instant,
        /// Released with the ack: bounds unacknowledged publishes per connection.
        permit: Option<OwnedSemaphorePermit>,
    },
    /// An HTTP handler waiting for the result.
    Http(oneshot::Sender<Result<PublishAck>>),
    /// Nobody (the server's own messages).
    Nobody,
}

impl AckTo {
    fn send(self, result: Result<PublishAck>, metrics: &Metrics) {
        match self {
            AckTo::Socket {
                conn,
                join_ref,
                reference,
                topic,
                started,
                permit,
            } => {
                if matches!(&result, Ok(ack) if ack.offset.is_some()) {
                    metrics
                        .publish_ack_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                // A push without a ref is fire-and-forget: no reply on success, and a
                // failure still surfaces, as a socket-level error.
                let frame = match (&result, reference.as_deref()) {
                    (Ok(_), None) => None,
                    (Err(e), None) => Some(crate::connection::socket_error(e.code, &e.message)),
                    (Ok(ack), Some(r)) => Some(reply_ok(join_ref.as_deref(), Some(r), &topic, ack)),
                    (Err(e), Some(r)) => Some(reply_error(
                        join_ref.as_deref(),
                        Some(r),
                        &topic,
                        &e.reply(),
                    )),
                };
                if let Some(frame) = frame {
                    conn.push(frame);
                }
                drop(permit);
            }
            AckTo::Http(tx) => {
                let _ = tx.send(result);
            }
            AckTo::Nobody => {}
        }
    }
}

/// Which messages an agent receives: direct messages only its own, its own only with echo,
/// and only the event types it asked for.
#[derive(Debug, Clone)]
pub struct Filter {
    agent: Arc<str>,
    echo: bool,
    event_types: Option<HashSet<String>>,
    /// The agent consumes its inbox: persisted direct messages to it come from there.
    inbox: bool,
}

impl Filter {
    /// Whether the agent receives `m`.
    pub fn wants(&self, m: &Message) -> bool {
        let own = *m.from == *self.agent;
        if own && !self.echo {
            return false;
        }
        if let Some(to) = &m.to {
            let mine = **to == *self.agent;
            if (!mine && !own) || (mine && self.inbox && !m.ephemeral) {
                return false;
            }
        }
        self.event_types
            .as_ref()
            .is_none_or(|types| types.contains(&m.kind))
    }
}

struct Subscriber {
    conn: Arc<ConnHandle>,
    agent: Arc<str>,
    session_id: String,
    join_ref: Option<String>,
    filter: Filter,
    presence: PresenceMeta,
    /// Whether it receives presence events.
    wants_presence: bool,
    /// Whether it takes part in the WebRTC signaling relay.
    relay: bool,
    /// Whether it receives `kv_change` events.
    kv_events: bool,
    /// Its inbox consumer, when it joined with `inbox`.
    inbox: Option<Consumer>,
    /// Counts it online in the agent directory while it is here.
    _online: Option<crate::discovery::Online>,
    /// While a joining agent replays history from disk, live frames wait here.
    catching_up: Option<Vec<WsFrame>>,
}

impl Subscriber {
    fn wants(&self, m: &Message) -> bool {
        self.filter.wants(m)
    }

    /// Queues a live frame; false if the subscriber had to be dropped.
    fn deliver(&mut self, frame: &WsFrame, cap: usize) -> bool {
        match &mut self.catching_up {
            Some(buffer) if buffer.len() >= cap => {
                self.conn.close(
                    switchboard_protocol::CloseCode::SlowConsumer.code(),
                    "slow_consumer: too many messages arrived during the replay; resume by offset",
                );
                false
            }
            Some(buffer) => {
                buffer.push(frame.clone());
                true
            }
            None => self.conn.push(frame.clone()),
        }
    }
}

struct State {
    next_offset: u64,
    head: u64,
    first_available: u64,
    last_ts: i64,
    /// The cache tier: the newest messages, consecutive offsets, bounded by `CacheBounds`.
    ring: VecDeque<Arc<Entry>>,
    ring_bytes: u64,
    /// The log position of the channel's newest durable record (0: none since loading).
    log_position: u64,
    dedup: HashMap<String, u64>,
    dedup_order: VecDeque<String>,
    subscribers: HashMap<u64, Subscriber>,
    agents: HashMap<Arc<str>, u64>,
    presence_seq: u64,
    /// Joins and leaves not yet sent: one merged `presence_diff` per batch period.
    pending_diff: PresenceDiff,
    diff_scheduled: bool,
    deleted: bool,
    /// Pending inbox messages per recipient (bounded by `max_messages_per_agent`).
    inbox_pending: HashMap<String, u32>,
    /// Shared log (a cluster): publishes waiting for their turn; one checked append per
    /// channel is in flight at a time (see `shared.rs`).
    waiting: VecDeque<shared::Waiting>,
    /// Shared log: a checked append is in flight (or waits for the tail after a conflict).
    in_flight: bool,
}

/// Limits a channel applies.
#[derive(Debug, Clone, Copy)]
pub struct ChannelLimits {
    /// Messages cached in memory (the channel's own retention may set fewer).
    pub cache_messages: usize,
    /// Bytes of encoded messages cached in memory.
    pub cache_bytes: u64,
    /// Cached messages older than this leave the cache (seconds, 0: no limit).
    pub cache_ttl_secs: u64,
    /// Ids remembered for dedup.
    pub dedup_window: usize,
    /// Frames buffered for a subscriber that is replaying.
    pub catch_up_buffer: usize,
    /// How long joins and leaves collect before one `presence_diff` goes out.
    pub presence_batch: std::time::Duration,
    /// Channels one tenant (or the public namespace) may hold; 0: no limit.
    pub max_per_tenant: usize,
    /// Durable inboxes.
    pub inbox: crate::config::InboxConfig,
}

/// The cache tier's bounds for one channel: its retention where set, else the server's.
#[derive(Debug, Clone, Copy)]
struct CacheBounds {
    messages: usize,
    bytes: u64,
    /// 0: no age limit.
    ttl_ms: i64,
}

impl CacheBounds {
    fn new(row: &ChannelRow, limits: &ChannelLimits) -> Self {
        let own = row.cache_retention.unwrap_or_default();
        let pick = |own: Option<u64>, server: u64| own.filter(|v| *v > 0).unwrap_or(server);
        let mut messages = pick(own.max_messages, limits.cache_messages as u64);
        let mut ttl_secs = pick(own.ttl_secs, limits.cache_ttl_secs);
        if row.storage == StoragePolicy::Cache {
            // The cache is the channel's only tier: the channel's retention bounds it too.
            if row.max_messages > 0 {
                messages = messages.min(row.max_messages);
            }
            if row.max_age_secs > 0 {
                ttl_secs = match ttl_secs {
                    0 => row.max_age_secs,
                    t => t.min(row.max_age_secs),
                };
            }
        }
        CacheBounds {
            messages: messages.max(1) as usize,
            bytes: pick(own.max_bytes, limits.cache_bytes).max(1),
            ttl_ms: (ttl_secs as i64).saturating_mul(1000),
        }
    }

    /// Drops the oldest entries beyond the bounds (keeping at least the newest one, so the
    /// cache always knows the head).
    fn evict(&self, ring: &mut VecDeque<Arc<Entry>>, bytes: &mut u64, now: i64) {
        while ring.len() > 1
            && (ring.len() > self.messages
                || *bytes > self.bytes
                || (self.ttl_ms > 0 && ring[0].message.ts < now - self.ttl_ms))
        {
            if let Some(old) = ring.pop_front() {
                *bytes -= old.frame.len() as u64;
            }
        }
    }
}

/// What a join needs to do after registering.
#[derive(Debug)]
pub enum JoinOutcome {
    /// Live already: the reply and any replay are queued.
    Live,
    /// Replay offsets `from..=to` from the store, then call [`Channel::finish_catch_up`].
    CatchUp {
        /// First offset to replay.
        from: u64,
        /// Last offset to replay.
        to: u64,
        /// What the agent receives.
        filter: Filter,
    },
}

/// One loaded channel.
pub struct Channel {
    /// This channel, for tasks it schedules on itself (presence batching).
    me: std::sync::Weak<Channel>,
    /// The stored row (id, epoch, password hash, policy).
    pub row: ChannelRow,
    /// `channel:<name>`.
    pub topic: Arc<str>,
    /// The channel's scope.
    pub scope: Scope,
    state: Mutex<State>,
    head_tx: watch::Sender<u64>,
    pub(crate) store: Arc<dyn Database>,
    log: Arc<dyn MessageLog>,
    materializer: Arc<Materializer>,
    cache: CacheBounds,
    metrics: Arc<Metrics>,
    webhooks: Arc<Webhooks>,
    pub(crate) limits: ChannelLimits,
    verified_passwords: Mutex<HashSet<[u8; 32]>>,
    /// Cluster: the bus to the other nodes (presence, ephemeral messages, storage changes).
    bus: Option<Arc<crate::cluster::Bus>>,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    crate::now_ms()
}

impl Channel {
    /// Loads a channel's state from the tiers: head and bounds from the log and the
    /// database, the cache and the dedup window from the newest messages.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        mut row: ChannelRow,
        store: Arc<dyn Database>,
        log: Arc<dyn MessageLog>,
        materializer: Arc<Materializer>,
        metrics: Arc<Metrics>,
        webhooks: Arc<Webhooks>,
        limits: ChannelLimits,
        bus: Option<Arc<crate::cluster::Bus>>,
    ) -> Result<Arc<Channel>> {
        let policy = row.storage;
        let cache = CacheBounds::new(&row, &limits);
        let (id, name, window) = (row.id, row.name.clone(), limits.dedup_window);
        if policy == StoragePolicy::Cache {
            // The cache did not survive the restart: a new epoch tells resuming clients.
            let epoch = random_id::<8>();
            let e = epoch.clone();
            store.set_epoch(id, &e).await?;
            row.epoch = epoch;
        }
        let topic: Arc<str> =
            format!("{}{}", switchboard_protocol::CHANNEL_TOPIC_PREFIX, row.name).into();
        let from_db = policy.uses_database();
        let (db, inbox_pending) = (store.bounds(id).await?, store.inbox_counts(id).await?);
        // What retention removed stays removed, also from the log's rebuilt index.
        log.trim(id, db.pruned + 1);
        let logged = if policy.uses_log() {
            log.bounds(id)
        } else {
            None
        };
        // The newest messages fill the cache and the dedup window: from the log, which holds
        // the newest, in one read; the database only for what the log does not hold.
        let mut newest = match logged {
            Some((first, last)) => {
                let n = window.max(cache.messages);
                let from = last.saturating_sub(n as u64 - 1).max(first);
                log.read(id, from, last, n, Direction::Forward).await?
            }
            None => Vec::new(),
        };
        let missing = window.saturating_sub(newest.len());
        let mut older_ids = Vec::new();
        if from_db && missing > 0 {
            let below = logged.map_or(u64::MAX, |(first, _)| first);
            older_ids = store.recent_ids(id, below, missing).await?;
            if newest.is_empty() {
                let n = cache.messages;
                newest = store.recent(id, &name, n).await?;
            }
        }
        let (head, first_available) = if policy == StoragePolicy::Cache {
            (0, 1)
        } else {
            let head = db.last.max(logged.map_or(0, |(_, last)| last));
            let mut first = head + 1;
            if let Some((f, _)) = logged {
                first = first.min(f);
            }
            if from_db && db.first <= db.last {
                first = first.min(db.first);
            }
            (head, first)
        };
        // The dedup window: the database's older ids, then the newest messages' ones.
        let mut dedup = HashMap::with_capacity(window.min(older_ids.len() + newest.len()));
        let mut dedup_order = VecDeque::with_capacity(dedup.capacity());
        let newest_ids = newest.iter().map(|m| (m.id.clone(), m.offset.unwrap_or(0)));
        for (id, offset) in older_ids.into_iter().chain(newest_ids) {
            if dedup.insert(id.clone(), offset).is_none() {
                dedup_order.push_back(id);
            }
        }
        while dedup_order.len() > window {
            if let Some(old) = dedup_order.pop_front() {
                dedup.remove(&old);
            }
        }
        let cached = newest.len().saturating_sub(cache.messages);
        let mut ring = VecDeque::with_capacity(newest.len() - cached);
        let mut ring_bytes = 0;
        for m in newest.into_iter().skip(cached) {
            let entry = Arc::new(Entry {
                frame: message_frame(&topic, &m),
                message: Arc::new(m),
            });
            ring_bytes += entry.frame.len() as u64;
            ring.push_back(entry);
        }
        cache.evict(&mut ring, &mut ring_bytes, now_ms());
        // Timestamps stay monotonic per channel even if the clock stepped back across a restart.
        let last_ts = db
            .last_ts
            .max(ring.back().map_or(0, |e: &Arc<Entry>| e.message.ts));
        let scope = if row.tenant_id.is_empty() {
            Scope::Public
        } else {
            Scope::Private
        };
        Ok(Arc::new_cyclic(|me| Channel {
            me: me.clone(),
            topic,
            scope,
            state: Mutex::new(State {
                next_offset: head + 1,
                head,
                first_available,
                last_ts,
                ring,
                ring_bytes,
                // The newest record's place (a shared log's checked appends expect it).
                log_position: logged
                    .and_then(|(_, last)| log.place(id, last))
                    .unwrap_or(0),
                dedup,
                dedup_order,
                subscribers: HashMap::new(),
                agents: HashMap::new(),
                presence_seq: 0,
                pending_diff: PresenceDiff::default(),
                diff_scheduled: false,
                deleted: false,
                inbox_pending: inbox_pending.into_iter().collect(),
                waiting: VecDeque::new(),
                in_flight: false,
            }),
            head_tx: watch::Sender::new(head),
            store,
            log,
            materializer,
            cache,
            metrics,
            webhooks,
            limits,
            verified_passwords: Mutex::new(HashSet::new()),
            bus,
            row,
        }))
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// Last persisted offset and the first one still stored.
    pub fn offsets(&self) -> (u64, u64) {
        let s = self.state.lock();
        (s.head, s.first_available)
    }

    /// Number of agents present.
    pub fn agent_count(&self) -> usize {
        self.state.lock().agents.len()
    }

    /// Checks a join's password (Argon2id on a blocking thread; successes are remembered in
    /// memory as SHA-256 digests so reconnects stay cheap).
    pub async fn check_password(&self, password: Option<&str>) -> Result<()> {
        use sha2::Digest;
        let Some(hash) = self.row.password_hash.clone() else {
            return Ok(());
        };
        let bad = || err!(BadPassword, "the channel password does not match");
        let password = password.ok_or_else(bad)?.to_owned();
        let digest: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
        if self.verified_passwords.lock().contains(&digest) {
            return Ok(());
        }
        let ok =
            tokio::task::spawn_blocking(move || crate::auth::verify_password(&password, &hash))
                .await
                .map_err(Error::internal)?;
        if !ok {
            return Err(bad());
        }
        let mut verified = self.verified_passwords.lock();
        if verified.len() >= 16 {
            verified.clear();
        }
        verified.insert(digest);
        Ok(())
    }

    /// Registers `conn` as agent `params.agent_name` and queues the join reply, any replay
    /// the cache can serve, and `presence_state`.
    pub fn join(
        &self,
        conn: &Arc<ConnHandle>,
        join_ref: Option<&str>,
        reference: Option<&str>,
        params: &JoinParams,
        online: Option<crate::discovery::Online>,
    ) -> Result<JoinOutcome> {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        if s.deleted {
            return Err(err!(
                ChannelDeleted,
                "the channel was deleted; join again to recreate it"
            ));
        }
        if s.subscribers.contains_key(&conn.id) {
            return Err(err!(
                AlreadyJoined,
                "this connection already joined {}",
                self.topic
            ));
        }
        let agent: Arc<str> = params.agent_name.as_str().into();
        if let Some(&holder) = s.agents.get(&agent) {
            let taken_over = params.session_id.as_deref().is_some_and(|sid| {
                s.subscribers
                    .get(&holder)
                    .is_some_and(|sub| sub.session_id == sid)
            });
            if !taken_over {
                return Err(err!(
                    AgentNameTaken,
                    "agent name {agent:?} is in use in this channel; pick another or present its session_id"
                ));
            }
            if let Some(old) = self.remove(s, holder) {
                kick(
                    &old,
                    &self.topic,
                    ErrorCode::SessionTakenOver,
                    "another session took over this agent name",
                );
            }
        }

        let mut gap = None;
        let mut start = params.since.map(|since| since.saturating_add(1));
        if let Some(from) = start.as_mut() {
            if params.epoch.as_deref().is_some_and(|e| e != self.row.epoch) {
                gap = Some(Gap {
                    reason: GapReason::EpochChanged,
                    first_available: s.first_available,
                });
                *from = s.first_available;
            } else if *from < s.first_available {
                gap = Some(Gap {
                    reason: GapReason::Retention,
                    first_available: s.first_available,
                });
                *from = s.first_available;
            }
        }

        s.presence_seq += 1;
        let presence = PresenceMeta {
            phx_ref: format!("{}-{}", conn.id, s.presence_seq),
            agent_name: params.agent_name.clone(),
            joined_at: now_ms(),
            meta: params.meta.clone().unwrap_or_default(),
        };
        let session_id = random_id::<16>();
        let reply = JoinReply {
            channel: self.row.name.clone(),
            scope: self.scope,
            agent_name: params.agent_name.clone(),
            session_id: session_id.clone(),
            epoch: self.row.epoch.clone(),
            head: s.head,
            persistent: self.row.storage.keeps_messages(),
            gap,
        };
        let mut sub = Subscriber {
            conn: conn.clone(),
            agent: agent.clone(),
            session_id,
            join_ref: join_ref.map(str::to_owned),
            filter: Filter {
                agent: agent.clone(),
                echo: params.echo,
                event_types: params
                    .event_types
                    .as_ref()
                    .map(|t| t.iter().cloned().collect()),
                inbox: params.inbox,
            },
            presence: presence.clone(),
            wants_presence: params.presence,
            relay: params.enable_webrtc_relay,
            kv_events: params.kv_events,
            inbox: None,
            _online: online,
            catching_up: None,
        };

        let mut frames = vec![reply_ok(join_ref, reference, &self.topic, &reply)];
        let mut outcome = JoinOutcome::Live;
        if let Some(from) = start.filter(|from| *from <= s.head) {
            let cached_from = s
                .ring
                .front()
                .and_then(|e| e.message.offset)
                .unwrap_or(u64::MAX);
            if cached_from <= from {
                frames.extend(
                    s.ring
                        .iter()
                        .filter(|e| {
                            e.message.offset.is_some_and(|o| o >= from) && sub.wants(&e.message)
                        })
                        .map(|e| e.frame.clone()),
                );
            } else {
                outcome = JoinOutcome::CatchUp {
                    from,
                    to: s.head,
                    filter: sub.filter.clone(),
                };
            }
        }
        let state_frames = if params.presence {
            let mut state = presence_state(s);
            self.add_remote_presence(&mut state);
            state
                .entry(params.agent_name.clone())
                .or_insert_with(|| PresenceEntry { metas: Vec::new() })
                .metas
                .push(presence.clone());
            self.presence_state_frames(state)
        } else {
            Vec::new()
        };
        if params.inbox
            && let Some(me) = self.me.upgrade()
        {
            sub.inbox = Some(Consumer::start(
                me,
                conn.clone(),
                join_ref.map(str::to_owned),
                agent.clone(),
            ));
        }
        let occupied = s.subscribers.is_empty();
        s.agents.insert(agent, conn.id);
        if occupied {
            self.webhook(WebhookEvent::ChannelOccupied, None, || "{}".to_owned());
        }
        self.webhook(WebhookEvent::AgentJoined, None, || {
            agent_data(&params.agent_name)
        });
        match outcome {
            JoinOutcome::Live => {
                frames.extend(state_frames);
                conn.push_batch(frames);
            }
            JoinOutcome::CatchUp { .. } => {
                conn.push_batch(frames);
                sub.catching_up = Some(state_frames);
            }
        }
        s.subscribers.insert(conn.id, sub);
        if let Some(bus) = &self.bus {
            bus.send(crate::cluster::Event::Presence {
                channel: self.row.id,
                joins: vec![presence.clone()],
                leaves: Vec::new(),
                full: false,
            });
        }
        self.queue_diff(s, Some(presence), None);
        Ok(outcome)
    }

    /// Ends a replay: queues the live frames that arrived meanwhile and goes live.
    pub fn finish_catch_up(&self, conn_id: u64) {
        let mut s = self.state.lock();
        if let Some(sub) = s.subscribers.get_mut(&conn_id)
            && let Some(buffer) = sub.catching_up.take()
            && !buffer.is_empty()
        {
            sub.conn.push_batch(buffer);
        }
    }

    /// Removes `conn` from the channel (leave or disconnect); a no-op if it is not there.
    pub fn leave(&self, conn_id: u64) {
        let mut s = self.state.lock();
        self.remove(&mut s, conn_id);
    }

    fn remove(&self, s: &mut State, conn_id: u64) -> Option<Subscriber> {
        let sub = s.subscribers.remove(&conn_id)?;
        if s.agents.get(&sub.agent) == Some(&conn_id) {
            s.agents.remove(&sub.agent);
        }
        if let Some(bus) = &self.bus {
            bus.send(crate::cluster::Event::Presence {
                channel: self.row.id,
                joins: Vec::new(),
                leaves: vec![sub.presence.clone()],
                full: false,
            });
        }
        self.queue_diff(s, None, Some(sub.presence.clone()));
        self.webhook(WebhookEvent::AgentLeft, None, || agent_data(&sub.agent));
        if s.subscribers.is_empty() {
            self.webhook(WebhookEvent::ChannelVacated, None, || "{}".to_owned());
        }
        Some(sub)
    }

    /// Tells the agents that joined with `kv_events` that the channel's storage changed.
    pub fn kv_changed(&self, change: &switchboard_protocol::kv::KvChange) {
        if let Some(bus) = &self.bus {
            bus.send(crate::cluster::Event::Kv {
                channel: self.row.id,
                change: change.clone(),
            });
        }
        self.kv_changed_here(change);
    }

    /// [`Channel::kv_changed`] for this node's agents only (a change another node made).
    pub fn kv_changed_here(&self, change: &switchboard_protocol::kv::KvChange) {
        let body = serde_json::to_string(change).expect("changes serialize");
        let frame = text_frame(None, None, &self.topic, events::KV_CHANGE, &body);
        let s = self.state.lock();
        for sub in s.subscribers.values() {
            if sub.kv_events && sub.catching_up.is_none() {
                sub.conn.push(frame.clone());
            }
        }
    }

    /// Relays a WebRTC signal from the agent on `from_conn` to the agent named in it. Never
    /// stored; both ends must have joined with `enable_webrtc_relay`.
    pub fn signal(&self, from_conn: u64, signal: switchboard_protocol::Signal) -> Result<()> {
        let s = self.state.lock();
        let sender = s
            .subscribers
            .get(&from_conn)
            .ok_or_else(|| err!(NotJoined, "join {} before signaling", self.topic))?;
        if !sender.relay {
            return Err(err!(
                RelayDisabled,
                "join with enable_webrtc_relay: true to send signals"
            ));
        }
        let to = signal.to.as_str();
        let event = switchboard_protocol::SignalEvent {
            from: sender.agent.to_string(),
            kind: signal.kind,
            data: signal.data,
        };
        let Some(target) = s.agents.get(to).and_then(|id| s.subscribers.get(id)) else {
            // On another node: that node delivers it if the agent relays signals.
            if let Some(bus) = &self.bus
                && bus.present_elsewhere(self.row.id, to)
            {
                bus.send(crate::cluster::Event::Signal {
                    channel: self.row.id,
                    to: to.to_owned(),
                    signal: event,
                });
                return Ok(());
            }
            return Err(err!(AgentNotPresent, "{to:?} is not in {}", self.topic));
        };
        if !target.relay {
            return Err(err!(
                RelayDisabled,
                "{to:?} did not join with enable_webrtc_relay"
            ));
        }
        self.deliver_signal(target, &event);
        Ok(())
    }

    /// A signal from another node for an agent here (dropped unless it relays signals).
    pub fn signal_from_elsewhere(&self, to: &str, event: &switchboard_protocol::SignalEvent) {
        let s = self.state.lock();
        if let Some(target) = s.agents.get(to).and_then(|id| s.subscribers.get(id))
            && target.relay
        {
            self.deliver_signal(target, event);
        }
    }

    fn deliver_signal(&self, target: &Subscriber, event: &switchboard_protocol::SignalEvent) {
        let body = serde_json::to_string(event).expect("signals serialize");
        target.conn.push(text_frame(
            target.join_ref.as_deref(),
            None,
            &self.topic,
            events::SIGNAL,
            &body,
        ));
    }

    /// Tells the tenant's webhooks about `event` (private channels only).
    pub(crate) fn webhook(
        &self,
        event: WebhookEvent,
        message_type: Option<&str>,
        data: impl FnOnce() -> String,
    ) {
        if !self.row.tenant_id.is_empty() {
            self.webhooks.emit(
                &self.row.tenant_id,
                &self.row.name,
                event,
                message_type,
                data,
            );
        }
    }

    /// Whether a persisted message to `to` goes to its inbox: when the agent is absent or
    /// consumes its inbox (an agent present without `inbox` gets it live, as before).
    /// Counts it against the recipient's `max_messages_per_agent`.
    fn inbox_admit(&self, s: &mut State, to: Option<&str>) -> Result<bool> {
        let Some(to) = to else {
            return Ok(false);
        };
        let consumes = match s.agents.get(to).and_then(|id| s.subscribers.get(id)) {
            Some(sub) => sub.inbox.is_some(),
            None => true,
        };
        if !consumes {
            return Ok(false);
        }
        let max = self.limits.inbox.max_messages_per_agent;
        let pending = s.inbox_pending.entry(to.to_owned()).or_insert(0);
        if *pending >= max {
            return Err(err!(
                InboxFull,
                "{to:?} has {max} unacknowledged messages in its inbox; retry once it catches up"
            ));
        }
        *pending += 1;
        Ok(true)
    }

    /// After an inbox batch: `removed` messages left `recipient`'s inbox, and `receipts` go
    /// to their senders (those present now).
    pub(crate) fn inbox_settled(
        &self,
        recipient: &str,
        removed: u32,
        receipts: Vec<(String, switchboard_protocol::Receipt)>,
    ) {
        let mut s = self.state.lock();
        if removed > 0
            && let Some(n) = s.inbox_pending.get_mut(recipient)
        {
            *n = n.saturating_sub(removed);
            if *n == 0 {
                s.inbox_pending.remove(recipient);
            }
        }
        for (sender, receipt) in receipts {
            let body = serde_json::to_string(&receipt).expect("receipts serialize");
            push_to_agent(&s, &self.topic, &sender, events::RECEIPT, &body);
        }
    }

    /// Sends `agent` (if present) the event `event` with JSON `body`; false if it is absent.
    pub(crate) fn send_to_agent(&self, agent: &str, event: &str, body: &str) -> bool {
        push_to_agent(&self.state.lock(), &self.topic, agent, event, body)
    }

    /// Wakes `agent`'s inbox consumer, if one is present.
    pub(crate) fn wake_inbox(&self, agent: &str) {
        let s = self.state.lock();
        if let Some(consumer) = s
            .agents
            .get(agent)
            .and_then(|id| s.subscribers.get(id))
            .and_then(|sub| sub.inbox.as_ref())
        {
            consumer.wake();
        }
    }

    /// Waits (a few seconds at most) until the database holds every record of this channel
    /// the log held when called: inbox entries and database reads then include every
    /// message acknowledged before.
    pub(crate) async fn database_caught_up(&self) {
        let position = self.state.lock().log_position;
        if self.materializer.applied() < position {
            self.materializer.wait_for(position).await;
        }
    }

    /// The ack/reject handle of `conn`'s inbox consumer, if it joined with `inbox`.
    pub fn inbox_settler(&self, conn_id: u64) -> Option<Settler> {
        let s = self.state.lock();
        s.subscribers
            .get(&conn_id)?
            .inbox
            .as_ref()
            .map(Consumer::handle)
    }

    /// Re-reads the pending inbox counts (after retention dead-lettered expired messages).
    pub async fn reload_inbox_counts(&self) -> Result<()> {
        let id = self.row.id;
        let counts = self.store.inbox_counts(id).await?;
        self.state.lock().inbox_pending = counts.into_iter().collect();
        Ok(())
    }

    /// Removes `conn` from the channel with a `kicked {code, message}` and `phx_close`.
    pub fn kick(&self, conn_id: u64, code: ErrorCode, message: &str) {
        let mut s = self.state.lock();
        if let Some(sub) = self.remove(&mut s, conn_id) {
            kick(&sub, &self.topic, code, message);
        }
    }

    /// Whether the channel was deleted (or completed).
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Whether `conn` is (still) subscribed: a takeover or a delete removes it.
    pub fn is_member(&self, conn_id: u64) -> bool {
        self.state.lock().subscribers.contains_key(&conn_id)
    }

    /// Marks the channel deleted and removes every agent with `kicked {code, why}`.
    pub fn delete(&self, code: ErrorCode, why: &str) {
        let mut s = self.state.lock();
        s.deleted = true;
        // Publishes waiting for their turn on a shared log are not stored.
        for w in s.waiting.drain(..) {
            w.ack.send(Err(Error::new(code, why)), &self.metrics);
        }
        s.agents.clear();
        for (_, sub) in s.subscribers.drain() {
            kick(&sub, &self.topic, code, why);
        }
    }

    /// The Phoenix presence map.
    pub fn presence(&self) -> PresenceState {
        let mut state = presence_state(&self.state.lock());
        self.add_remote_presence(&mut state);
        state
    }

    /// Adds other nodes' agents to a presence map.
    fn add_remote_presence(&self, state: &mut PresenceState) {
        if let Some(bus) = &self.bus {
            for meta in bus.remote_presence(self.row.id) {
                state
                    .entry(meta.agent_name.clone())
                    .or_insert_with(|| PresenceEntry { metas: Vec::new() })
                    .metas
                    .push(meta);
            }
        }
    }

    /// This node's presences (to tell a node that just started).
    pub fn local_presence(&self) -> Vec<PresenceMeta> {
        let s = self.state.lock();
        s.subscribers
            .values()
            .map(|sub| sub.presence.clone())
            .collect()
    }

    /// Another node's agents joined or left.
    pub fn remote_presence(&self, joins: Vec<PresenceMeta>, leaves: Vec<PresenceMeta>) {
        let mut s = self.state.lock();
        for meta in joins {
            self.queue_diff(&mut s, Some(meta), None);
        }
        for meta in leaves {
            self.queue_diff(&mut s, None, Some(meta));
        }
    }

    /// An ephemeral message published on another node.
    pub fn remote_ephemeral(&self, message: Message) {
        let frame = message_frame(&self.topic, &message);
        let mut s = self.state.lock();
        self.fan_out(&mut s, &message, &frame);
    }

    /// Publishes from agent `from` of `tenant`; the result goes to `ack` (immediately for
    /// ephemeral messages and duplicates, after durability for persisted ones). `member` is
    /// the publishing connection, which must still be subscribed (None for the HTTP API).
    pub fn publish(
        self: &Arc<Self>,
        from: &str,
        tenant: &str,
        member: Option<u64>,
        publish: Publish,
        ack: AckTo,
    ) {
        if let Err(e) = self.try_publish(from, tenant, member, publish, ack) {
            let (error, ack) = *e;
            ack.send(Err(error), &self.metrics);
        }
    }

    fn try_publish(
        self: &Arc<Self>,
        from: &str,
        tenant: &str,
        member: Option<u64>,
        p: Publish,
        ack: AckTo,
    ) -> Result<(), Box<(Error, AckTo)>> {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        if s.deleted {
            return Err(Box::new((
                err!(ChannelDeleted, "the channel was deleted"),
                ack,
            )));
        }
        if member.is_some_and(|id| !s.subscribers.contains_key(&id)) {
            return Err(Box::new((
                err!(
                    NotJoined,
                    "this session left {} or was taken over",
                    self.topic
                ),
                ack,
            )));
        }
        let policy = self.row.storage;
        let ephemeral = p.ephemeral || !policy.keeps_messages();
        if ephemeral
            && let Some(to) = &p.to
            && !s.agents.contains_key(to.as_str())
            && !self
                .bus
                .as_ref()
                .is_some_and(|bus| bus.present_elsewhere(self.row.id, to))
        {
            return Err(Box::new((
                err!(
                    AgentNotPresent,
                    "agent {to:?} is not in the channel; ephemeral messages reach present agents only"
                ),
                ack,
            )));
        }
        s.last_ts = s.last_ts.max(now_ms());
        let receipt = p.receipt;
        let id = p.id.unwrap_or_else(message_id);
        let mut message = Message {
            id,
            offset: None,
            channel: self.row.name.clone(),
            from: from.to_owned(),
            to: p.to,
            kind: p.kind,
            data: p.data,
            ts: s.last_ts,
            ephemeral,
            attachments: p.attachments,
        };
        if ephemeral {
            self.metrics.messages_in.inc();
            let frame = message_frame(&self.topic, &message);
            self.fan_out(s, &message, &frame);
            drop(guard);
            if let Some(bus) = &self.bus {
                bus.send(crate::cluster::Event::Ephemeral {
                    channel: self.row.id,
                    message: message.clone(),
                });
            }
            ack.send(
                Ok(PublishAck {
                    id: message.id,
                    offset: None,
                    duplicate: false,
                }),
                &self.metrics,
            );
            return Ok(());
        }
        if let Some(&offset) = s.dedup.get(&message.id) {
            let head = s.head;
            drop(guard);
            self.duplicate(message.id, offset, head, ack);
            return Ok(());
        }
        // Inboxes are durable: a cache-only channel delivers direct messages live only.
        let admit = if policy.uses_log() {
            self.inbox_admit(s, message.to.as_deref())
        } else {
            Ok(false)
        };
        let inbox = match admit {
            Ok(inbox) => inbox.then(|| InboxWrite {
                sender_tenant: tenant.into(),
                receipt,
            }),
            Err(e) => return Err(Box::new((e, ack))),
        };
        self.metrics.messages_in.inc();
        if self.log.is_shared() && policy.uses_log() {
            // Other nodes append to this channel too: the offset is settled when the
            // message's turn comes.
            s.waiting.push_back(shared::Waiting {
                message,
                ack,
                inbox,
            });
            self.send_next(s);
            return Ok(());
        }
        let offset = s.next_offset;
        s.next_offset += 1;
        message.offset = Some(offset);
        self.remember(s, &message.id, offset);
        let message = Arc::new(message);
        let entry = Arc::new(Entry {
            frame: message_frame(&self.topic, &message),
            message: message.clone(),
        });
        if !policy.uses_log() {
            // Cache only: the message is as stored as it gets once it is in the ring.
            self.accept(s, entry.clone());
            drop(guard);
            self.accepted(&entry.message, ack);
            return Ok(());
        }
        let channel = self.clone();
        let inbox_to = inbox.as_ref().and(message.to.clone());
        // Queued under the lock, so the log completes this channel's appends in offset order.
        self.log.append(
            Record::Message(MessageRecord {
                channel_id: self.row.id,
                message,
                to_database: policy.uses_database(),
                inbox,
            }),
            Box::new(move |result| channel.on_durable(entry, result, ack, inbox_to)),
        );
        Ok(())
    }

    /// Acknowledges a publish whose id was stored already at `offset`.
    fn duplicate(self: &Arc<Self>, id: String, offset: u64, head: u64, ack: AckTo) {
        let result = PublishAck {
            id,
            offset: Some(offset),
            duplicate: true,
        };
        if offset <= head {
            ack.send(Ok(result), &self.metrics);
        } else {
            // The original is still being written: acknowledge once it is durable.
            let mut head_rx = self.head_tx.subscribe();
            let channel = self.clone();
            tokio::spawn(async move {
                let outcome = match head_rx.wait_for(|h| *h >= offset).await {
                    Ok(_) => Ok(result),
                    Err(_) => Err(err!(
                        ServerShutdown,
                        "the server stopped before the original was stored"
                    )),
                };
                ack.send(outcome, &channel.metrics);
            });
        }
    }

    /// Adds a stored (or being stored) message id to the dedup window.
    fn remember(&self, s: &mut State, id: &str, offset: u64) {
        if s.dedup.insert(id.to_owned(), offset).is_none() {
            s.dedup_order.push_back(id.to_owned());
        }
        while s.dedup_order.len() > self.limits.dedup_window {
            if let Some(old) = s.dedup_order.pop_front() {
                s.dedup.remove(&old);
            }
        }
    }

    /// Makes a stored message the head: cache and fan-out (under the channel's lock, in
    /// offset order).
    fn accept(&self, s: &mut State, entry: Arc<Entry>) {
        let offset = entry.message.offset.expect("stored messages have offsets");
        s.head = offset;
        if s.first_available > offset {
            s.first_available = offset;
        }
        self.fan_out(s, &entry.message, &entry.frame);
        s.ring_bytes += entry.frame.len() as u64;
        s.ring.push_back(entry);
        self.cache.evict(&mut s.ring, &mut s.ring_bytes, now_ms());
        if !self.row.storage.uses_log() {
            // The cache is the only tier: what it evicts is gone.
            s.first_available = s
                .ring
                .front()
                .and_then(|e| e.message.offset)
                .unwrap_or(offset);
        }
    }

    /// After [`Channel::accept`], outside the lock: wake waiters, webhooks, the ack.
    fn accepted(&self, message: &Arc<Message>, ack: AckTo) {
        let offset = message.offset.expect("stored messages have offsets");
        self.head_tx.send_replace(offset);
        self.webhook(WebhookEvent::MessagePublished, Some(&message.kind), || {
            serde_json::to_string(&**message).expect("messages serialize")
        });
        ack.send(
            Ok(PublishAck {
                id: message.id.clone(),
                offset: Some(offset),
                duplicate: false,
            }),
            &self.metrics,
        );
    }

    /// Runs on the log's writer thread once an append is durable (or failed).
    fn on_durable(
        &self,
        entry: Arc<Entry>,
        result: Result<u64>,
        ack: AckTo,
        inbox_to: Option<String>,
    ) {
        let offset = entry
            .message
            .offset
            .expect("persisted messages have offsets");
        match result {
            Ok(position) => {
                {
                    let mut s = self.state.lock();
                    s.log_position = position;
                    self.accept(&mut s, entry.clone());
                }
                if let Some(to) = inbox_to
                    && let Some(me) = self.me.upgrade()
                {
                    // The inbox entry is written by the database writer; wake its consumer
                    // once it is there.
                    self.materializer
                        .after(position, Box::new(move || me.wake_inbox(&to)));
                }
                self.accepted(&entry.message, ack);
            }
            Err(e) => {
                let mut s = self.state.lock();
                let id = &entry.message.id;
                if s.dedup.get(id) == Some(&offset) {
                    s.dedup.remove(id);
                }
                if let Some(to) = &entry.message.to
                    && let Some(n) = s.inbox_pending.get_mut(to.as_str())
                {
                    *n = n.saturating_sub(1);
                }
                drop(s);
                ack.send(Err(e), &self.metrics);
            }
        }
    }

    fn fan_out(&self, s: &mut State, message: &Message, frame: &WsFrame) {
        let cap = self.limits.catch_up_buffer;
        let mut delivered = 0u64;
        for sub in s.subscribers.values_mut() {
            if let (Some(consumer), Some(to)) = (&sub.inbox, &message.to)
                && **to == *sub.agent
                && !message.ephemeral
            {
                consumer.wake();
            }
            if sub.wants(message) && sub.deliver(frame, cap) {
                delivered += 1;
                if let Some(usage) = sub.conn.usage.get() {
                    usage.delivered(frame.len());
                }
            }
        }
        self.metrics.messages_out.inc_by(delivered);
    }

    /// Adds a join or leave to the pending diff and makes sure a flush is scheduled.
    ///
    /// Sending a diff to every member on every join costs O(N²) frames when N agents join at
    /// once (a reconnect storm); merged diffs cost O(N) per batch period. A leave cancels a
    /// join of the same presence that was not sent yet.
    fn queue_diff(&self, s: &mut State, join: Option<PresenceMeta>, leave: Option<PresenceMeta>) {
        if let Some(meta) = join {
            s.pending_diff
                .joins
                .entry(meta.agent_name.clone())
                .or_insert_with(|| PresenceEntry { metas: Vec::new() })
                .metas
                .push(meta);
        }
        if let Some(meta) = leave {
            let cancelled = s
                .pending_diff
                .joins
                .get_mut(&meta.agent_name)
                .is_some_and(|e| {
                    let before = e.metas.len();
                    e.metas.retain(|m| m.phx_ref != meta.phx_ref);
                    e.metas.len() < before
                });
            if cancelled {
                if s.pending_diff
                    .joins
                    .get(&meta.agent_name)
                    .is_some_and(|e| e.metas.is_empty())
                {
                    s.pending_diff.joins.remove(&meta.agent_name);
                }
            } else {
                s.pending_diff
                    .leaves
                    .entry(meta.agent_name.clone())
                    .or_insert_with(|| PresenceEntry { metas: Vec::new() })
                    .metas
                    .push(meta);
            }
        }
        if !s.diff_scheduled {
            s.diff_scheduled = true;
            let me = self.me.clone();
            let period = self.limits.presence_batch;
            tokio::spawn(async move {
                tokio::time::sleep(period).await;
                if let Some(channel) = me.upgrade() {
                    channel.flush_presence();
                }
            });
        }
    }

    /// Sends the pending presence diff, encoded once, to every member.
    fn flush_presence(&self) {
        let mut guard = self.state.lock();
        let s = &mut *guard;
        s.diff_scheduled = false;
        let diff = std::mem::take(&mut s.pending_diff);
        if diff.joins.is_empty() && diff.leaves.is_empty() {
            return;
        }
        let cap = self.limits.catch_up_buffer;
        for frame in self.presence_diff_frames(diff) {
            for sub in s.subscribers.values_mut().filter(|sub| sub.wants_presence) {
                sub.deliver(&frame, cap);
            }
        }
    }

    /// The presence map as `presence_state` with the first [`PRESENCE_CHUNK`] agents, then
    /// `presence_diff` joins for the rest, so no frame grows with the channel: a 5,000-agent
    /// state in one frame would be most of a megabyte queued at once for every joiner, and a
    /// client library may keep a buffer of its largest frame. Phoenix's `Presence` applies the state, then the
    /// diffs, and ends with the same map.
    fn presence_state_frames(&self, state: PresenceState) -> Vec<WsFrame> {
        let mut entries = state.into_iter();
        let first: PresenceState = entries.by_ref().take(PRESENCE_CHUNK).collect();
        let mut frames = vec![self.presence_frame(events::PRESENCE_STATE, &first)];
        loop {
            let joins: PresenceState = entries.by_ref().take(PRESENCE_CHUNK).collect();
            if joins.is_empty() {
                return frames;
            }
            let diff = PresenceDiff {
                joins,
                leaves: PresenceState::new(),
            };
            frames.push(self.presence_frame(events::PRESENCE_DIFF, &diff));
        }
    }

    /// A diff as frames of at most [`PRESENCE_CHUNK`] agents each (joins first, then leaves).
    fn presence_diff_frames(&self, diff: PresenceDiff) -> Vec<WsFrame> {
        let mut frames = Vec::new();
        let chunks = |map: PresenceState| {
            let mut entries = map.into_iter().peekable();
            std::iter::from_fn(move || {
                entries.peek()?;
                Some(
                    entries
                        .by_ref()
                        .take(PRESENCE_CHUNK)
                        .collect::<PresenceState>(),
                )
            })
        };
        for joins in chunks(diff.joins) {
            frames.push(self.presence_frame(
                events::PRESENCE_DIFF,
                &PresenceDiff {
                    joins,
                    leaves: PresenceState::new(),
                },
            ));
        }
        for leaves in chunks(diff.leaves) {
            frames.push(self.presence_frame(
                events::PRESENCE_DIFF,
                &PresenceDiff {
                    joins: PresenceState::new(),
                    leaves,
                },
            ));
        }
        frames
    }

    fn presence_frame(&self, event: &str, payload: &impl serde::Serialize) -> WsFrame {
        let body = serde_json::to_string(payload).expect("presence serializes");
        text_frame(None, None, &self.topic, event, &body)
    }

    /// Reads history from the tier `query.poll_source` names (`AUTO` when none).
    /// `visible_to` hides other agents' direct messages (None: see all).
    pub async fn history(
        &self,
        query: HistoryQuery,
        visible_to: Option<&str>,
    ) -> Result<HistoryPage> {
        if !self.row.storage.keeps_messages() {
            return Err(err!(
                NoHistory,
                "channel {} keeps no history (ephemeral storage policy)",
                self.row.name
            ));
        }
        let limit = query.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        if limit == 0 || limit > MAX_HISTORY_LIMIT {
            return Err(err!(InvalidPayload, "limit must be 1-{MAX_HISTORY_LIMIT}"));
        }
        let lo = query.from_offset.unwrap_or(0);
        let hi = query.to_offset.unwrap_or(u64::MAX);
        let source = query.poll_source.unwrap_or(PollSource::Auto);
        let (cache, cache_first, head) = {
            let s = self.state.lock();
            // Only reads that may touch the cache take its messages.
            let cache = match source {
                PollSource::Cache | PollSource::Auto => s
                    .ring
                    .iter()
                    .filter(|e| e.message.offset.is_some_and(|o| o >= lo && o <= hi))
                    .map(|e| e.message.clone())
                    .collect(),
                PollSource::Log | PollSource::Database => Vec::new(),
            };
            (cache, s.ring.front().and_then(|e| e.message.offset), s.head)
        };
        let tiers = crate::history::Tiers {
            channel_id: self.row.id,
            name: self.row.name.clone(),
            policy: self.row.storage,
            cache,
            cache_first,
            head,
            log: self.log.clone(),
            db: self.store.clone(),
        };
        if source == PollSource::Database {
            // Read your writes: the database trails the log by a batch.
            self.database_caught_up().await;
        }
        let read = tiers
            .read(&query, source, limit as usize, visible_to)
            .await?;
        let (head, first_available) = self.offsets();
        Ok(HistoryPage {
            messages: read.messages,
            epoch: self.row.epoch.clone(),
            head,
            first_available,
            next: read.next,
            sources: read.sources,
        })
    }

    /// Replays `from..=to` to a joining subscriber, page by page, waiting for queue room.
    pub async fn replay(
        &self,
        conn: &ConnHandle,
        filter: &Filter,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let mut next = from;
        while next <= to {
            let query = HistoryQuery {
                from_offset: Some(next),
                to_offset: Some(to),
                limit: Some(MAX_HISTORY_LIMIT),
                ..HistoryQuery::default()
            };
            let page = self.history(query, Some(&filter.agent)).await?;
            let frames: Vec<WsFrame> = page
                .messages
                .iter()
                .filter(|m| filter.wants(m))
                .map(|m| message_frame(&self.topic, m))
                .collect();
            if !frames.is_empty() && !conn.send(crate::connection::Outbound::Batch(frames)).await {
                break;
            }
            match page.next {
                Some(n) => next = n,
                None => break,
            }
        }
        Ok(())
    }

    /// Applies retention: the channel's own (every tier), the log tier's for this channel,
    /// and the cache's age limit; advances `first_available`.
    pub async fn enforce_retention(&self) -> Result<()> {
        let now = now_ms();
        {
            let mut guard = self.state.lock();
            let s = &mut *guard;
            self.cache.evict(&mut s.ring, &mut s.ring_bytes, now);
            if !self.row.storage.uses_log() {
                s.first_available = s
                    .ring
                    .front()
                    .and_then(|e| e.message.offset)
                    .unwrap_or(s.head + 1);
            }
        }
        let policy = self.row.storage;
        if !policy.uses_log() {
            return Ok(());
        }
        let (max_messages, max_age) = (self.row.max_messages, self.row.max_age_secs);
        let head = self.state.lock().head;
        let below = if max_messages > 0 {
            head.saturating_sub(max_messages) + 1
        } else {
            0
        };
        let before_ts = if max_age > 0 {
            now - (max_age as i64) * 1000
        } else {
            i64::MIN
        };
        let id = self.row.id;
        if below > 0 {
            self.log.trim(id, below);
        }
        if max_age > 0 {
            self.log.trim_older(id, before_ts).await?;
        }
        if let Some(log_age) = self.row.log_retention.and_then(|l| l.max_age_secs)
            && log_age > 0
            && policy.uses_database()
        {
            // The log keeps less than the channel; older messages are read from the database.
            self.log
                .trim_older(id, now - (log_age as i64) * 1000)
                .await?;
        }
        let log_first = self.log.bounds(id).map(|(first, _)| first);
        let first = if policy.uses_database() {
            let bounds = if max_messages > 0 || max_age > 0 {
                self.store.prune(id, below, before_ts).await?
            } else {
                self.store.bounds(id).await?
            };
            bounds.first.min(log_first.unwrap_or(u64::MAX))
        } else {
            // The log is the oldest tier: remember how far it was cut, so a restart does
            // not serve (or renumber) what retention removed.
            let first = log_first.unwrap_or(head + 1);
            if first > 1 && (max_messages > 0 || max_age > 0) {
                self.store.set_pruned_through(id, first - 1).await?;
            }
            first
        };
        let mut s = self.state.lock();
        s.first_available = first.max(s.first_available);
        let first = s.first_available;
        while s
            .ring
            .front()
            .is_some_and(|e| e.message.offset.is_some_and(|o| o < first))
        {
            if let Some(old) = s.ring.pop_front() {
                s.ring_bytes -= old.frame.len() as u64;
            }
        }
        Ok(())
    }

    /// The log dropped this channel's offsets up to `through` (log retention): they are
    /// no longer available unless the database keeps them.
    pub fn log_dropped(&self, through: u64) {
        if self.row.storage.uses_database() {
            return;
        }
        let mut s = self.state.lock();
        s.first_available = s.first_available.max(through + 1);
    }
}

fn push_to_agent(s: &State, topic: &str, agent: &str, event: &str, body: &str) -> bool {
    match s.agents.get(agent).and_then(|id| s.subscribers.get(id)) {
        Some(sub) => sub.conn.push(text_frame(
            sub.join_ref.as_deref(),
            None,
            topic,
            event,
            body,
        )),
        None => false,
    }
}

fn agent_data(agent: &str) -> String {
    serde_json::json!({ "agent": agent }).to_string()
}

fn presence_state(s: &State) -> PresenceState {
    let mut state = PresenceState::new();
    for sub in s.subscribers.values() {
        state
            .entry(sub.presence.agent_name.clone())
            .or_insert_with(|| PresenceEntry { metas: Vec::new() })
            .metas
            .push(sub.presence.clone());
    }
    state
}

fn kick(sub: &Subscriber, topic: &str, code: ErrorCode, message: &str) {
    let body = serde_json::to_string(&switchboard_protocol::ErrorReply::new(code, message))
        .expect("serializes");
    let kicked = text_frame(sub.join_ref.as_deref(), None, topic, events::KICKED, &body);
    let close = text_frame(sub.join_ref.as_deref(), None, topic, events::CLOSE, "{}");
    sub.conn.push_batch(vec![kicked, close]);
}
