//! The log on NATS JetStream: one stream, one subject per channel, the stream sequence as
//! the log position.
//!
//! Records are encoded as in the embedded log (length, CRC, body) and published to
//! `<subject_prefix>.<channel id>` on a stream with file storage, the configured replicas and
//! the log's retention as the stream's limits (`max_age`, `max_bytes`, oldest discarded).
//! Replication and ordering are JetStream's: a record is acknowledged once the stream's
//! leader has stored it on a quorum of replicas. One task publishes in queue order and awaits
//! the acks in that order, so a channel's appends complete in offset order; a batch of
//! publishes is in flight at once.
//!
//! The per-channel offset index is rebuilt at start by reading the stream once (an ordered
//! consumer); reads fetch records by sequence (direct get, from any replica). JetStream drops
//! old records by its limits on its own, so unlike the embedded log it does not wait for the
//! database writer: size the retention well above the database writer's worst lag.

use super::index::OffsetIndex;
use super::record::{HEADER, MAX_BODY, header};
use super::{Checked, CheckedDone, CommitObserver, LogCursor, LogDone, MessageLog, Record, TailFn};
use crate::error::{Error, Result};
use crate::storage::unavailable;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use parking_lot::{Condvar, Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_protocol::Message;
use switchboard_protocol::history::Direction;
use tokio::sync::{mpsc, watch};

/// Settings of the JetStream log.
#[derive(Debug, Clone)]
pub struct JetStreamLogConfig {
    /// The NATS server(s), e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The stream's name (also the subjects' prefix).
    pub stream: String,
    /// Replicas of the stream (1, or 3 on a three-node NATS cluster).
    pub replicas: usize,
    /// Records older than this are dropped by JetStream (0: no age limit).
    pub retention_secs: u64,
    /// The oldest records are dropped while the stream is larger (0: no size limit).
    pub retention_bytes: u64,
    /// Most appends published at once before their acks are awaited.
    pub max_batch: usize,
    /// Other nodes append to the stream too (a cluster): follow it, and settle offsets with
    /// checked appends.
    pub shared: bool,
}

/// How long one JetStream request may take before the log counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    stream: stream::Stream,
    context: jetstream::Context,
    subject_prefix: String,
    index: OffsetIndex,
    end: watch::Sender<u64>,
    failed: AtomicBool,
    /// Several nodes append: the index follows the stream (the tail), not the acks.
    shared: bool,
    /// Shared: who sees every record.
    tail: RwLock<Option<TailFn>>,
    /// Shared: the tail has delivered every record up to here.
    tailed: watch::Sender<u64>,
}

/// An append and what to tell once it ends.
type Append = (Record, Completion);

enum Completion {
    Plain(LogDone),
    /// Only if the channel's subject's newest record is at this sequence.
    Checked(u64, CheckedDone),
}

/// The JetStream log (see the module docs).
pub struct JetStreamLog {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    writer: Mutex<Option<mpsc::UnboundedSender<Append>>>,
    stopped: Arc<(Mutex<bool>, Condvar)>,
    tail_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn nats_error(what: &str, e: impl std::fmt::Display) -> Error {
    unavailable(format!("NATS JetStream: {what}: {e}"))
}

impl JetStreamLog {
    /// Connects, creates the stream if needed (or updates its limits) and rebuilds the index.
    pub async fn open(config: JetStreamLogConfig, observer: CommitObserver) -> Result<Self> {
        if config.stream.is_empty() || config.stream.contains(['.', ' ', '*', '>']) {
            return Err(Error::new(
                switchboard_protocol::ErrorCode::Internal,
                format!("invalid JetStream stream name {:?}", config.stream),
            ));
        }
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(&config.url)
            .await
            .map_err(|e| nats_error(&format!("cannot connect to {}", config.url), e))?;
        let context = jetstream::new(client);
        let subject_prefix = format!("{}.log", config.stream);
        let limit = |v: u64| {
            if v == 0 {
                -1
            } else {
                v.min(i64::MAX as u64) as i64
            }
        };
        let wanted = stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{subject_prefix}.*")],
            storage: stream::StorageType::File,
            num_replicas: config.replicas.max(1),
            max_age: Duration::from_secs(config.retention_secs),
            max_bytes: limit(config.retention_bytes),
            discard: stream::DiscardPolicy::Old,
            allow_direct: true,
            ..Default::default()
        };
        let stream = match context.get_stream(&config.stream).await {
            Ok(_) => context
                .update_stream(wanted.clone())
                .await
                .map_err(|e| nats_error("updating the stream's limits", e))
                .and(
                    context
                        .get_stream(&config.stream)
                        .await
                        .map_err(|e| nats_error("opening the stream", e)),
                )?,
            Err(_) => context
                .create_stream(wanted)
                .await
                .map_err(|e| nats_error("creating the stream", e))?,
        };
        let shared = Arc::new(Shared {
            stream,
            context,
            subject_prefix,
            index: OffsetIndex::default(),
            end: watch::Sender::new(0),
            failed: AtomicBool::new(false),
            shared: config.shared,
            tail: RwLock::new(None),
            tailed: watch::Sender::new(0),
        });
        let last = rebuild(&shared).await?;
        shared.end.send_replace(last);
        shared.tailed.send_replace(last);
        let tail_task = config
            .shared
            .then(|| tokio::spawn(follow_tail(shared.clone(), last)));
        let (tx, rx) = mpsc::unbounded_channel();
        let stopped = Arc::new((Mutex::new(false), Condvar::new()));
        tokio::spawn(write_loop(
            shared.clone(),
            rx,
            config.max_batch.max(1),
            observer,
            stopped.clone(),
        ));
        Ok(JetStreamLog {
            shared,
            runtime: tokio::runtime::Handle::current(),
            writer: Mutex::new(Some(tx)),
            stopped,
            tail_task: Mutex::new(tail_task),
        })
    }

    fn enqueue(&self, record: Record, completion: Completion) {
        let failed = self.shared.failed.load(Ordering::Relaxed);
        super::enqueue(&self.writer, failed, record, completion, |c, e| match c {
            Completion::Plain(done) => done(Err(e)),
            Completion::Checked(_, done) => done(Checked::Failed(e)),
        });
    }
}

/// Indexes a durable record and moves the log's end up to it (never back: acks and the
/// tail both report records).
fn stored(shared: &Shared, record: &Record, sequence: u64) {
    shared.index.add(record, sequence);
    shared.end.send_if_modified(|end| {
        let newer = sequence > *end;
        *end = (*end).max(sequence);
        newer
    });
}

/// Shared: follows the stream after `last`, indexing every record (whoever appended it)
/// and handing it to the tail function, until the log closes.
async fn follow_tail(shared: Arc<Shared>, mut last: u64) {
    loop {
        let mut messages = match ordered_from(&shared, last + 1).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "following the shared log failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(next) = messages.next().await {
            let step = next
                .map_err(|e| nats_error("following the stream", e))
                .and_then(|m| {
                    let sequence = m
                        .info()
                        .map_err(|e| nats_error("following the stream", e))?
                        .stream_sequence;
                    Ok((sequence, decode(&m.message.payload, sequence)?))
                });
            let (sequence, record) = match step {
                Ok(step) => step,
                Err(e) => {
                    tracing::warn!(error = %e, "following the shared log failed; retrying");
                    break;
                }
            };
            if sequence <= last {
                continue;
            }
            last = sequence;
            stored(&shared, &record, sequence);
            let tail = shared.tail.read().clone();
            if let Some(tail) = tail {
                tail(sequence, &record);
            }
            shared.tailed.send_replace(sequence);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the whole stream once, indexing every record; returns the last sequence.
async fn rebuild(shared: &Shared) -> Result<u64> {
    let info = shared
        .stream
        .get_info()
        .await
        .map_err(|e| nats_error("reading the stream's state", e))?;
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    if info.state.messages == 0 {
        return Ok(last);
    }
    let mut messages = ordered_from(shared, first).await?;
    while let Some(next) = tokio::time::timeout(REQUEST_TIMEOUT, messages.next())
        .await
        .map_err(|e| nats_error("reading the stream", e))?
    {
        let message = next.map_err(|e| nats_error("reading the stream", e))?;
        let sequence = message
            .info()
            .map_err(|e| nats_error("reading the stream", e))?
            .stream_sequence;
        let record = decode(&message.message.payload, sequence)?;
        shared.index.add(&record, sequence);
        if sequence >= last {
            break;
        }
    }
    Ok(last)
}

/// An ordered consumer over the whole stream from `start`.
async fn ordered_from(shared: &Shared, start: u64) -> Result<consumer::pull::Ordered> {
    shared
        .stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| nats_error("creating a reader", e))?
        .messages()
        .await
        .map_err(|e| nats_error("creating a reader", e))
}

fn decode(payload: &[u8], sequence: u64) -> Result<Record> {
    let damaged = |what: &str| {
        unavailable(format!(
            "NATS JetStream: record {sequence} of the log has {what}"
        ))
    };
    if payload.len() < HEADER {
        return Err(damaged("a truncated header"));
    }
    let (len, crc) = header(payload[..HEADER].try_into().expect("header size"));
    let body = &payload[HEADER..];
    if len > MAX_BODY || body.len() != len || crc32fast::hash(body) != crc {
        return Err(damaged("a length or checksum that does not match"));
    }
    Record::decode(body)
        .map(|(_, record)| record)
        .map_err(damaged)
}

/// Publishes queued appends in order, a batch in flight at once, and completes them in order.
async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Append>,
    max: usize,
    observer: CommitObserver,
    stopped: Arc<(Mutex<bool>, Condvar)>,
) {
    let mut batch = Vec::with_capacity(max);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&shared, &mut batch, &observer).await;
    }
    let (done, signal) = &*stopped;
    *done.lock() = true;
    signal.notify_all();
}

async fn commit(shared: &Shared, batch: &mut Vec<Append>, observer: &CommitObserver) {
    let started = std::time::Instant::now();
    let n = batch.len();
    let mut pending = Vec::with_capacity(n);
    for (record, completion) in batch.drain(..) {
        let expected = match &completion {
            Completion::Checked(expected, _) => Some(*expected),
            Completion::Plain(_) => None,
        };
        let ack = if shared.failed.load(Ordering::Relaxed) {
            Err(super::log_failed())
        } else {
            publish(shared, &record, expected).await
        };
        pending.push((record, completion, ack));
    }
    let mut completed = Vec::with_capacity(n);
    for (record, completion, ack) in pending {
        let result = match ack {
            Ok(future) if !shared.failed.load(Ordering::Relaxed) => {
                future.await.map(|ack| ack.sequence)
            }
            Ok(_) => {
                completed.push((completion, Checked::Failed(super::log_failed())));
                continue;
            }
            Err(e) => {
                completed.push((completion, Checked::Failed(e)));
                continue;
            }
        };
        let outcome = match result {
            Ok(sequence) => {
                // The tail indexes it too (once: a channel's records reach the stream in
                // offset order, whichever node appends them).
                stored(shared, &record, sequence);
                Checked::Stored(sequence)
            }
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::WrongLastSequence => {
                // Another node appended to the channel first (or JetStream dropped its
                // newest records): say where the subject's newest record is.
                match newest_of(shared, record.channel_id()).await {
                    Ok(newest) => Checked::Conflict(newest),
                    Err(e) => Checked::Failed(e),
                }
            }
            Err(e) => Checked::Failed(nats_error("storing", e)),
        };
        if let Checked::Failed(e) = &outcome
            && !shared.failed.swap(true, Ordering::Relaxed)
        {
            // Fail-stop: a record that may or may not be stored leaves a channel's
            // offsets in doubt, so nothing more is accepted until a restart.
            tracing::error!(error = %e, "log append failed; refusing further appends");
        }
        completed.push((completion, outcome));
    }
    observer(n, started.elapsed());
    for (completion, outcome) in completed {
        match (completion, outcome) {
            (Completion::Checked(_, done), outcome) => done(outcome),
            (Completion::Plain(done), Checked::Stored(sequence)) => done(Ok(sequence)),
            (Completion::Plain(done), Checked::Failed(e)) => done(Err(e)),
            (Completion::Plain(done), Checked::Conflict(_)) => {
                done(Err(unavailable("a plain append cannot conflict")))
            }
        }
    }
}

/// The sequence of the newest record on a channel's subject (0: none).
async fn newest_of(shared: &Shared, channel_id: i64) -> Result<u64> {
    let subject = format!("{}.{}", shared.subject_prefix, channel_id);
    match shared
        .stream
        .direct_get_last_for_subject(subject.as_str())
        .await
    {
        Ok(m) => Ok(m.sequence),
        Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(0),
        Err(e) => Err(nats_error("reading the channel's newest record", e)),
    }
}

/// Publishes a record to its channel's subject; `expected`: only if the subject's newest
/// record is at this sequence (0: the subject holds none).
async fn publish(
    shared: &Shared,
    record: &Record,
    expected: Option<u64>,
) -> Result<jetstream::context::PublishAckFuture> {
    let mut payload = Vec::new();
    record.encode(0, &mut payload);
    let subject = format!("{}.{}", shared.subject_prefix, record.channel_id());
    let published = match expected {
        None => shared.context.publish(subject, payload.into()).await,
        Some(sequence) => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                sequence.to_string().as_str(),
            );
            shared
                .context
                .publish_with_headers(subject, headers, payload.into())
                .await
        }
    };
    published.map_err(|e| nats_error("publishing", e))
}

/// Fetches records by sequence, concurrently; a record JetStream no longer has is skipped.
async fn fetch(shared: &Shared, sequences: &[u64]) -> Result<Vec<(u64, Record)>> {
    let gets = sequences.iter().map(|&s| async move {
        match shared.stream.direct_get(s).await {
            Ok(m) => decode(&m.payload, s).map(|r| Some((s, r))),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
            Err(e) => Err(nats_error("reading", e)),
        }
    });
    let found = futures_util::future::try_join_all(gets).await?;
    Ok(found.into_iter().flatten().collect())
}

impl MessageLog for JetStreamLog {
    fn append(&self, record: Record, done: LogDone) {
        self.enqueue(record, Completion::Plain(done));
    }

    fn is_shared(&self) -> bool {
        self.shared.shared
    }

    fn append_checked(&self, record: Record, expected: u64, done: CheckedDone) {
        self.enqueue(record, Completion::Checked(expected, done));
    }

    fn place(&self, channel_id: i64, offset: u64) -> Option<u64> {
        self.shared
            .index
            .places(channel_id, offset, offset, 1, Direction::Forward)
            .first()
            .copied()
    }

    fn channel_records(
        &self,
        channel_id: i64,
        after: u64,
        to: u64,
    ) -> BoxFuture<'static, Result<Vec<(u64, super::MessageRecord)>>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let subject = format!("{}.{}", shared.subject_prefix, channel_id);
            let mut out = Vec::new();
            let mut next = after + 1;
            while next <= to {
                let m = match shared
                    .stream
                    .direct_get_next_for_subject(subject.as_str(), Some(next))
                    .await
                {
                    Ok(m) => m,
                    Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                    Err(e) => return Err(nats_error("reading a channel's records", e)),
                };
                if m.sequence > to {
                    break;
                }
                if let Record::Message(r) = decode(&m.payload, m.sequence)? {
                    out.push((m.sequence, r));
                }
                next = m.sequence + 1;
            }
            Ok(out)
        })
    }

    fn set_tail(&self, f: TailFn) {
        *self.shared.tail.write() = Some(f);
    }

    fn watch_tail(&self) -> watch::Receiver<u64> {
        if self.shared.shared {
            self.shared.tailed.subscribe()
        } else {
            self.shared.end.subscribe()
        }
    }

    fn bounds(&self, channel_id: i64) -> Option<(u64, u64)> {
        self.shared.index.bounds(channel_id)
    }

    fn read(
        &self,
        channel_id: i64,
        from: u64,
        to: u64,
        max: usize,
        direction: Direction,
    ) -> BoxFuture<'static, Result<Vec<Message>>> {
        let sequences = self
            .shared
            .index
            .places(channel_id, from, to, max, direction);
        let shared = self.shared.clone();
        Box::pin(async move {
            Ok(fetch(&shared, &sequences)
                .await?
                .into_iter()
                .filter_map(|(_, record)| match record {
                    Record::Message(r) => Some(Arc::unwrap_or_clone(r.message)),
                    Record::ChannelDeleted { .. } => None,
                })
                .collect())
        })
    }

    fn trim(&self, channel_id: i64, below: u64) {
        self.shared.index.trim(channel_id, below);
    }

    fn trim_older(&self, channel_id: i64, before_ts: i64) -> BoxFuture<'static, Result<u64>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            loop {
                let Some((first, sequence)) = shared.index.front(channel_id) else {
                    return Ok(u64::MAX);
                };
                let old = match fetch(&shared, &[sequence]).await?.pop() {
                    Some((_, Record::Message(r))) => r.message.ts < before_ts,
                    // Gone from the stream already.
                    _ => true,
                };
                if !old {
                    return Ok(first);
                }
                shared.index.pop_front_if(channel_id, first);
            }
        })
    }

    fn end(&self) -> u64 {
        *self.shared.end.borrow()
    }

    fn follow(&self, after: u64) -> Box<dyn LogCursor> {
        Box::new(JetStreamCursor {
            shared: self.shared.clone(),
            runtime: self.runtime.clone(),
            after,
            messages: None,
        })
    }

    fn enforce_retention(&self, _now_ms: i64, _keep_from: u64) -> Result<Vec<(i64, u64)>> {
        // JetStream applies the limits itself; the index forgets what it dropped.
        let info = self
            .runtime
            .block_on(self.shared.stream.get_info())
            .map_err(|e| nats_error("reading the stream's state", e))?;
        let first = info.state.first_sequence;
        Ok(self.shared.index.drop_leading(|s| s < first))
    }

    fn identity(&self) -> String {
        let info = self.shared.stream.cached_info();
        format!(
            "jetstream:{}:{}",
            info.config.name,
            info.created.unix_timestamp_nanos()
        )
    }

    fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    fn watch_end(&self) -> watch::Receiver<u64> {
        self.shared.end.subscribe()
    }

    fn close(&self) {
        if let Some(task) = self.tail_task.lock().take() {
            task.abort();
        }
        if self.writer.lock().take().is_none() {
            return;
        }
        let (done, signal) = &*self.stopped;
        let mut stopped = done.lock();
        if !*stopped {
            signal.wait_for(&mut stopped, REQUEST_TIMEOUT);
        }
    }
}

/// Follows the stream with an ordered consumer (the database writer's reader).
struct JetStreamCursor {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    after: u64,
    messages: Option<consumer::pull::Ordered>,
}

impl LogCursor for JetStreamCursor {
    fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, Record)>> {
        let end = *self.shared.end.borrow();
        if self.after >= end {
            return Ok(Vec::new());
        }
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            if self.messages.is_none() {
                self.messages = Some(ordered_from(&self.shared, self.after + 1).await?);
            }
            let messages = self.messages.as_mut().expect("just set");
            let mut out = Vec::new();
            while out.len() < max && self.after < end {
                let Some(next) = tokio::time::timeout(REQUEST_TIMEOUT, messages.next())
                    .await
                    .map_err(|e| nats_error("following the stream", e))?
                else {
                    break;
                };
                let message = next.map_err(|e| nats_error("following the stream", e))?;
                let sequence = message
                    .info()
                    .map_err(|e| nats_error("following the stream", e))?
                    .stream_sequence;
                if sequence <= self.after {
                    continue;
                }
                if sequence > self.after + 1 {
                    tracing::warn!(
                        from = self.after + 1,
                        to = sequence - 1,
                        "JetStream dropped log records before the database copied them (the log's retention is too short)"
                    );
                }
                self.after = sequence;
                out.push((sequence, decode(&message.message.payload, sequence)?));
            }
            Ok(out)
        })
    }
}
