//! Streams: large payloads from one agent to another, spooled through the server.
//!
//! The sender opens a stream and sends numbered chunks; each is written at its offset in a
//! spool file under `<data_dir>/streams` and folded into a running SHA-256 before it is
//! acknowledged, so chunks re-sent after a reconnect are recognised by their `seq` and
//! nothing is held in memory. Every `checkpoint_bytes` the file is fsynced and its position
//! recorded: after a restart the stream resumes from there. `stream_close` checks the size
//! and checksum. The recipient accepts the stream from an offset (0, or where it got to);
//! one reader task per accepted stream pushes the spooled bytes as `stream_data` at most
//! `window_bytes` beyond what the recipient acknowledged, through the connection's bounded
//! queue. When the recipient acknowledges the last byte of a closed stream, the sender is
//! told, a `stream.completed` webhook goes out, and the spool is deleted.

use crate::auth::random_id;
use crate::channel::Channel;
use crate::config::StreamsConfig;
use crate::connection::{ConnHandle, Outbound, text_frame};
use crate::error::{Error, Result, err};
use crate::storage::{Database, StreamRow};
use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use switchboard_protocol::limits::MAX_META_BYTES;
use switchboard_protocol::stream::{
    CHUNK_BYTES, ChunkHeader, DataHeader, MAX_STREAM_NAME_LEN, StreamAccept, StreamAck,
    StreamCancel, StreamCancelled, StreamCheckpoint, StreamClose, StreamComplete, StreamEnd,
    StreamError, StreamOffer, StreamOpen, StreamPosition, StreamProgress,
};
use switchboard_protocol::webhooks::WebhookEvent;
use switchboard_protocol::websocket::WsFrame;
use switchboard_protocol::{ErrorCode, Frame, Payload, events, valid_name};
use tokio::sync::watch;

struct Spool {
    file: File,
    next_seq: u64,
    offset: u64,
    hasher: Sha256,
    /// Durable up to here.
    checkpointed: u64,
    /// The recipient's checkpoint as last recorded.
    acked_recorded: u64,
}

/// One stream.
pub struct Stream {
    id: String,
    channel_id: i64,
    offer: StreamOffer,
    to: String,
    path: PathBuf,
    spool: Mutex<Spool>,
    /// Bytes in the spool file.
    written: watch::Sender<u64>,
    /// Bytes the recipient acknowledged.
    acked: watch::Sender<u64>,
    /// `(checksum, total_size)` once closed.
    end: watch::Sender<Option<(String, u64)>>,
    /// Set when the stream is gone (completed, cancelled, failed).
    gone: watch::Sender<bool>,
    /// Its channel, once a session used the stream (`None` right after a restart).
    channel: Mutex<Option<Weak<Channel>>>,
    reader: Mutex<Option<tokio::task::AbortHandle>>,
    touched: AtomicI64,
}

impl Stream {
    fn position(&self, spool: &Spool) -> StreamPosition {
        StreamPosition {
            stream_id: self.id.clone(),
            next_seq: spool.next_seq,
            offset: spool.offset,
        }
    }

    fn row(&self, spool: &Spool) -> StreamRow {
        let end = self.end.borrow().clone();
        StreamRow {
            id: self.id.clone(),
            channel_id: self.channel_id,
            offer: serde_json::to_string(&self.offer).expect("offers serialize"),
            recipient: self.to.clone(),
            next_seq: spool.next_seq,
            offset: spool.checkpointed,
            acked: *self.acked.borrow(),
            checksum: end.as_ref().map(|(c, _)| c.clone()),
            total_size: end.map(|(_, t)| t),
            updated_at: crate::now_ms(),
        }
    }

    fn channel(&self) -> Option<Arc<Channel>> {
        self.channel.lock().as_ref().and_then(Weak::upgrade)
    }

    /// Whether its channel was deleted (or completed) since a session used the stream.
    fn orphaned(&self) -> bool {
        match &*self.channel.lock() {
            Some(weak) => weak.upgrade().is_none_or(|c| c.is_deleted()),
            None => false,
        }
    }

    fn touch(&self, channel: &Arc<Channel>) {
        self.touched.store(crate::now_ms(), Ordering::Relaxed);
        *self.channel.lock() = Some(Arc::downgrade(channel));
    }

    /// Tells `agent` (if present in the channel) about this stream.
    fn tell(&self, agent: &str, event: &str, body: &impl serde::Serialize) {
        if let Some(channel) = self.channel() {
            let body = serde_json::to_string(body).expect("stream events serialize");
            channel.send_to_agent(agent, event, &body);
        }
    }
}

/// Every stream of the server.
pub struct Streams {
    dir: PathBuf,
    store: Arc<dyn Database>,
    config: StreamsConfig,
    by_id: DashMap<String, Arc<Stream>>,
}

fn blocking_error(e: impl std::fmt::Display) -> Error {
    crate::storage::unavailable(e)
}

impl Streams {
    /// Loads the streams that were open (resuming each from its last checkpoint).
    pub async fn load(
        dir: PathBuf,
        store: Arc<dyn Database>,
        config: StreamsConfig,
        shared: bool,
    ) -> Result<Streams> {
        std::fs::create_dir_all(&dir).map_err(blocking_error)?;
        let streams = Streams {
            dir,
            store,
            config,
            by_id: DashMap::new(),
        };
        for row in streams.store.load_streams().await? {
            match streams.restore(&row) {
                Ok(stream) => {
                    streams.by_id.insert(row.id.clone(), Arc::new(stream));
                }
                // A shared database (a cluster) holds every node's streams: one whose spool
                // file is not here is another node's.
                Err(e) if shared && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(stream = row.id, error = %e, "dropping a stream that cannot be resumed");
                    let _ = std::fs::remove_file(streams.dir.join(&row.id));
                    let id = row.id.clone();
                    streams.store.delete_stream(&id).await?;
                }
            }
        }
        Ok(streams)
    }

    fn restore(&self, row: &StreamRow) -> std::io::Result<Stream> {
        let offer: StreamOffer = serde_json::from_str(&row.offer)?;
        let path = self.dir.join(&row.id);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)?;
        // Bytes past the last checkpoint may not have reached the disk: start again there.
        file.set_len(row.offset)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let end = match (&row.checksum, row.total_size) {
            (Some(c), Some(t)) if t == row.offset => Some((c.clone(), t)),
            _ => None,
        };
        Ok(Stream {
            id: row.id.clone(),
            channel_id: row.channel_id,
            to: row.recipient.clone(),
            offer,
            path,
            spool: Mutex::new(Spool {
                file,
                next_seq: row.next_seq,
                offset: row.offset,
                hasher,
                checkpointed: row.offset,
                acked_recorded: row.acked,
            }),
            written: watch::Sender::new(row.offset),
            acked: watch::Sender::new(row.acked.min(row.offset)),
            end: watch::Sender::new(end),
            gone: watch::Sender::new(false),
            channel: Mutex::new(None),
            reader: Mutex::new(None),
            touched: AtomicI64::new(row.updated_at),
        })
    }

    fn get(&self, id: &str, channel: &Channel) -> Result<Arc<Stream>> {
        self.by_id
            .get(id)
            .map(|s| s.clone())
            .filter(|s| s.channel_id == channel.row.id && !*s.gone.borrow())
            .ok_or_else(|| err!(NotFound, "no stream {id:?} in this channel"))
    }

    /// `stream_open`: a new stream from `agent`, or the position of one it opened before.
    pub async fn open(
        &self,
        channel: &Arc<Channel>,
        agent: &str,
        open: StreamOpen,
    ) -> Result<StreamPosition> {
        if let Some(id) = &open.stream_id {
            let stream = self.get(id, channel)?;
            if stream.offer.from != agent {
                return Err(err!(NotFound, "no stream {id:?} of yours in this channel"));
            }
            stream.touch(channel);
            return Ok(stream.position(&stream.spool.lock()));
        }
        if !valid_name(&open.to) {
            return Err(err!(
                InvalidAgentName,
                "to: agent names are 1-128 bytes of [A-Za-z0-9_.:@-]"
            ));
        }
        if open.to == agent {
            return Err(err!(InvalidPayload, "a stream goes to another agent"));
        }
        if open
            .name
            .as_ref()
            .is_some_and(|n| n.len() > MAX_STREAM_NAME_LEN)
        {
            return Err(err!(
                InvalidPayload,
                "name is at most {MAX_STREAM_NAME_LEN} bytes"
            ));
        }
        if open
            .content_type
            .as_ref()
            .is_some_and(|n| n.len() > MAX_STREAM_NAME_LEN)
        {
            return Err(err!(
                InvalidPayload,
                "content_type is at most {MAX_STREAM_NAME_LEN} bytes"
            ));
        }
        if serde_json::to_string(&open.meta).map_or(usize::MAX, |m| m.len()) > MAX_META_BYTES {
            return Err(err!(
                InvalidPayload,
                "meta is at most {MAX_META_BYTES} bytes"
            ));
        }
        if open.size.is_some_and(|s| s > self.config.max_bytes) {
            return Err(err!(
                MessageTooLarge,
                "streams are at most {} bytes",
                self.config.max_bytes
            ));
        }
        let open_here = self
            .by_id
            .iter()
            .filter(|s| s.channel_id == channel.row.id)
            .count();
        if open_here >= self.config.max_open_per_channel {
            return Err(err!(
                RateLimited,
                "{open_here} streams are open in this channel; finish or cancel some"
            ));
        }
        let id = format!("st_{}", random_id::<12>());
        let path = self.dir.join(&id);
        let create = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(create)
        })
        .await
        .map_err(blocking_error)?
        .map_err(blocking_error)?;
        let stream = Arc::new(Stream {
            offer: StreamOffer {
                stream_id: id.clone(),
                from: agent.to_owned(),
                name: open.name,
                size: open.size,
                content_type: open.content_type,
                meta: open.meta,
                acked: 0,
            },
            id: id.clone(),
            channel_id: channel.row.id,
            to: open.to,
            path,
            spool: Mutex::new(Spool {
                file,
                next_seq: 0,
                offset: 0,
                hasher: Sha256::new(),
                checkpointed: 0,
                acked_recorded: 0,
            }),
            written: watch::Sender::new(0),
            acked: watch::Sender::new(0),
            end: watch::Sender::new(None),
            gone: watch::Sender::new(false),
            channel: Mutex::new(Some(Arc::downgrade(channel))),
            reader: Mutex::new(None),
            touched: AtomicI64::new(crate::now_ms()),
        });
        let row = stream.row(&stream.spool.lock());
        self.store.put_stream(row).await?;
        self.by_id.insert(id, stream.clone());
        stream.tell(&stream.to, events::STREAM_OFFER, &stream.offer);
        let position = stream.position(&stream.spool.lock());
        Ok(position)
    }

    /// `stream_chunk`: writes chunk `seq` (a chunk seen before is acknowledged again).
    pub async fn chunk(
        &self,
        channel: &Arc<Channel>,
        agent: &str,
        header: ChunkHeader,
        bytes: Bytes,
    ) -> Result<StreamPosition> {
        let stream = self.get(&header.stream_id, channel)?;
        if stream.offer.from != agent {
            return Err(err!(Forbidden, "only the sender writes to a stream"));
        }
        if stream.end.borrow().is_some() {
            return Err(err!(InvalidPayload, "the stream is closed"));
        }
        stream.touch(channel);
        let (max, every) = (self.config.max_bytes, self.config.checkpoint_bytes.max(1));
        let writer = stream.clone();
        let (position, checkpoint) = tokio::task::spawn_blocking(move || {
            let mut spool = writer.spool.lock();
            if header.seq < spool.next_seq {
                return Ok((writer.position(&spool), false));
            }
            if header.seq > spool.next_seq {
                return Err(err!(
                    InvalidPayload,
                    "chunk {} arrived before chunk {}; send them in order",
                    header.seq,
                    spool.next_seq
                ));
            }
            if spool.offset + bytes.len() as u64 > max {
                return Err(err!(MessageTooLarge, "streams are at most {max} bytes"));
            }
            let at = spool.offset;
            spool
                .file
                .write_all_at(&bytes, at)
                .map_err(blocking_error)?;
            spool.hasher.update(&bytes);
            spool.offset += bytes.len() as u64;
            spool.next_seq += 1;
            let checkpoint = spool.offset - spool.checkpointed >= every;
            Ok((writer.position(&spool), checkpoint))
        })
        .await
        .map_err(blocking_error)??;
        stream.written.send_if_modified(|w| {
            let grew = *w < position.offset;
            *w = (*w).max(position.offset);
            grew
        });
        if checkpoint {
            self.checkpoint(&stream).await?;
        }
        Ok(position)
    }

    /// Makes everything written so far durable and records the position.
    async fn checkpoint(&self, stream: &Arc<Stream>) -> Result<()> {
        let syncing = stream.clone();
        let row = tokio::task::spawn_blocking(move || {
            let mut spool = syncing.spool.lock();
            spool.file.sync_data()?;
            spool.checkpointed = spool.offset;
            spool.acked_recorded = *syncing.acked.borrow();
            Ok::<_, std::io::Error>(syncing.row(&spool))
        })
        .await
        .map_err(blocking_error)?
        .map_err(blocking_error)?;
        let (next_seq, offset) = (row.next_seq, row.offset);
        self.store.put_stream(row).await?;
        let checkpoint = StreamCheckpoint {
            stream_id: stream.id.clone(),
            next_seq,
            offset,
        };
        stream.tell(&stream.offer.from, events::STREAM_CHECKPOINT, &checkpoint);
        Ok(())
    }

    /// `stream_close`: checks the size and checksum; the recipient gets `stream_end` after
    /// the last byte.
    pub async fn close(
        &self,
        channel: &Arc<Channel>,
        agent: &str,
        close: StreamClose,
    ) -> Result<()> {
        let stream = self.get(&close.stream_id, channel)?;
        if stream.offer.from != agent {
            return Err(err!(Forbidden, "only the sender closes a stream"));
        }
        stream.touch(channel);
        let checking = stream.clone();
        let (size, checksum) = tokio::task::spawn_blocking(move || {
            let spool = checking.spool.lock();
            (spool.offset, hex::encode(spool.hasher.clone().finalize()))
        })
        .await
        .map_err(blocking_error)?;
        if size != close.total_size || !checksum.eq_ignore_ascii_case(&close.checksum) {
            let why = format!(
                "the server received {size} bytes with SHA-256 {checksum}; the sender closed with {} bytes and {}",
                close.total_size, close.checksum
            );
            self.fail(&stream, ErrorCode::ChecksumMismatch, &why).await;
            return Err(Error::new(ErrorCode::ChecksumMismatch, why));
        }
        stream.end.send_replace(Some((checksum, size)));
        self.checkpoint(&stream).await?;
        Ok(())
    }

    /// `stream_cancel`, by either side.
    pub async fn cancel(
        &self,
        channel: &Arc<Channel>,
        agent: &str,
        cancel: StreamCancel,
    ) -> Result<()> {
        let stream = self.get(&cancel.stream_id, channel)?;
        if stream.offer.from != agent && stream.to != agent {
            return Err(err!(
                Forbidden,
                "only the sender or the recipient cancels a stream"
            ));
        }
        stream.touch(channel);
        let event = StreamCancelled {
            stream_id: stream.id.clone(),
            by: agent.to_owned(),
            reason: cancel.reason,
        };
        stream.tell(&stream.offer.from, events::STREAM_CANCELLED, &event);
        stream.tell(&stream.to, events::STREAM_CANCELLED, &event);
        self.remove(&stream).await;
        Ok(())
    }

    /// `stream_accept`: the recipient starts (or resumes) reading at `offset`.
    pub async fn accept(
        &self,
        channel: &Arc<Channel>,
        conn: &Arc<ConnHandle>,
        join_ref: Option<String>,
        agent: &str,
        accept: StreamAccept,
    ) -> Result<StreamOffer> {
        let stream = self.get(&accept.stream_id, channel)?;
        if stream.to != agent {
            return Err(err!(NotFound, "no stream {:?} for you", accept.stream_id));
        }
        let written = *stream.written.borrow();
        if accept.offset > written {
            return Err(err!(
                InvalidPayload,
                "offset {} is past the {written} bytes received so far",
                accept.offset
            ));
        }
        stream.touch(channel);
        stream.acked.send_if_modified(|a| {
            let grew = *a < accept.offset;
            *a = (*a).max(accept.offset);
            grew
        });
        let task = tokio::spawn(push_data(
            stream.clone(),
            conn.clone(),
            channel.topic.clone(),
            join_ref,
            accept.offset,
            self.config.window_bytes.max(CHUNK_BYTES as u64),
        ));
        if let Some(old) = stream.reader.lock().replace(task.abort_handle()) {
            old.abort();
        }
        let mut offer = stream.offer.clone();
        offer.acked = *stream.acked.borrow();
        Ok(offer)
    }

    /// `stream_ack`: the recipient has every byte before `offset`.
    pub async fn ack(&self, channel: &Arc<Channel>, agent: &str, ack: StreamAck) -> Result<()> {
        let stream = self.get(&ack.stream_id, channel)?;
        if stream.to != agent {
            return Err(err!(NotFound, "no stream {:?} for you", ack.stream_id));
        }
        let written = *stream.written.borrow();
        if ack.offset > written {
            return Err(err!(
                InvalidPayload,
                "offset {} is past the {written} bytes sent",
                ack.offset
            ));
        }
        stream.touch(channel);
        let moved = stream.acked.send_if_modified(|a| {
            let grew = *a < ack.offset;
            *a = (*a).max(ack.offset);
            grew
        });
        if moved {
            let progress = StreamProgress {
                stream_id: stream.id.clone(),
                offset: ack.offset,
            };
            stream.tell(&stream.offer.from, events::STREAM_PROGRESS, &progress);
            let record = {
                let spool = stream.spool.lock();
                ack.offset - spool.acked_recorded.min(ack.offset) >= self.config.checkpoint_bytes
            };
            if record {
                self.checkpoint(&stream).await?;
            }
        }
        if ack.done {
            let total = stream.end.borrow().as_ref().map(|(_, total)| *total);
            match total {
                Some(total) if ack.offset == total => self.complete(&stream, total).await,
                _ => {
                    return Err(err!(
                        InvalidPayload,
                        "done: only after stream_end, with the stream's total size"
                    ));
                }
            }
        }
        Ok(())
    }

    async fn complete(&self, stream: &Arc<Stream>, total: u64) {
        let complete = StreamComplete {
            stream_id: stream.id.clone(),
            total_size: total,
        };
        stream.tell(&stream.offer.from, events::STREAM_COMPLETE, &complete);
        if let Some(channel) = stream.channel() {
            channel.webhook(WebhookEvent::StreamCompleted, None, || {
                serde_json::json!({
                    "stream_id": stream.id,
                    "from": stream.offer.from,
                    "to": stream.to,
                    "name": stream.offer.name,
                    "total_size": total,
                })
                .to_string()
            });
        }
        self.remove(stream).await;
    }

    async fn fail(&self, stream: &Arc<Stream>, code: ErrorCode, message: &str) {
        let error = StreamError {
            stream_id: stream.id.clone(),
            code,
            message: message.to_owned(),
        };
        stream.tell(&stream.offer.from, events::STREAM_ERROR, &error);
        stream.tell(&stream.to, events::STREAM_ERROR, &error);
        self.remove(stream).await;
    }

    async fn remove(&self, stream: &Arc<Stream>) {
        stream.gone.send_replace(true);
        self.by_id.remove(&stream.id);
        if let Some(reader) = stream.reader.lock().take() {
            reader.abort();
        }
        let (path, id) = (stream.path.clone(), stream.id.clone());
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        if let Err(e) = self.store.delete_stream(&id).await {
            tracing::warn!(error = %e, "forgetting a finished stream failed");
        }
    }

    /// Offers the streams waiting for `agent` in `channel` (it just joined).
    pub fn offer_pending(&self, channel: &Arc<Channel>, agent: &str) {
        // Every join comes here; most servers have no stream in flight.
        if self.by_id.is_empty() {
            return;
        }
        for stream in self.by_id.iter() {
            if stream.channel_id == channel.row.id && stream.to == agent && !*stream.gone.borrow() {
                stream.touch(channel);
                let mut offer = stream.offer.clone();
                offer.acked = *stream.acked.borrow();
                stream.tell(agent, events::STREAM_OFFER, &offer);
            }
        }
    }

    /// Deletes streams nobody touched for `idle_secs`, and those of deleted channels.
    pub async fn prune(&self) {
        let cutoff = crate::now_ms() - (self.config.idle_secs as i64).saturating_mul(1000);
        let idle: Vec<Arc<Stream>> = self
            .by_id
            .iter()
            .filter(|s| s.touched.load(Ordering::Relaxed) < cutoff || s.orphaned())
            .map(|s| s.clone())
            .collect();
        for stream in idle {
            let why = if stream.orphaned() {
                "the stream's channel was deleted"
            } else {
                "the stream was idle too long and was deleted"
            };
            stream.tell(
                &stream.offer.from,
                events::STREAM_ERROR,
                &StreamError {
                    stream_id: stream.id.clone(),
                    code: ErrorCode::NotFound,
                    message: why.to_owned(),
                },
            );
            self.remove(&stream).await;
        }
    }
}

fn binary_push(join_ref: Option<&str>, topic: &str, event: &str, payload: Bytes) -> WsFrame {
    let frame = Frame::new(
        Some(join_ref.unwrap_or("").to_owned()),
        None,
        topic,
        event,
        Payload::Binary(payload),
    );
    WsFrame::binary(
        &frame
            .encode_server_binary()
            .expect("topic and event fit in 255 bytes"),
    )
}

/// Pushes the spooled bytes from `pos` to the recipient, at most `window` beyond its acks,
/// then `stream_end` once the stream is closed and everything was sent.
async fn push_data(
    stream: Arc<Stream>,
    conn: Arc<ConnHandle>,
    topic: Arc<str>,
    join_ref: Option<String>,
    mut pos: u64,
    window: u64,
) {
    let path = stream.path.clone();
    let Ok(Ok(file)) = tokio::task::spawn_blocking(move || File::open(path)).await else {
        return;
    };
    let file = Arc::new(file);
    let (mut written, mut acked) = (stream.written.subscribe(), stream.acked.subscribe());
    let (mut end, mut gone) = (stream.end.subscribe(), stream.gone.subscribe());
    loop {
        if *gone.borrow_and_update() {
            return;
        }
        let w = *written.borrow_and_update();
        let limit = w.min(acked.borrow_and_update().saturating_add(window));
        if pos < limit {
            let n = (limit - pos).min(CHUNK_BYTES as u64) as usize;
            let reading = file.clone();
            let Ok(Ok(buf)) = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; n];
                reading.read_exact_at(&mut buf, pos).map(|()| buf)
            })
            .await
            else {
                return;
            };
            let header = DataHeader {
                stream_id: stream.id.clone(),
                offset: pos,
            };
            let payload = switchboard_protocol::stream::encode(&header, &buf);
            let frame = binary_push(join_ref.as_deref(), &topic, events::STREAM_DATA, payload);
            if !conn.send(Outbound::Frame(frame)).await {
                return;
            }
            pos += n as u64;
            continue;
        }
        let closed = end.borrow_and_update().clone();
        if let Some((checksum, total)) = closed
            && pos >= total
        {
            let body = serde_json::to_string(&StreamEnd {
                stream_id: stream.id.clone(),
                checksum,
                total_size: total,
            })
            .expect("stream events serialize");
            conn.send(Outbound::Frame(text_frame(
                join_ref.as_deref(),
                None,
                &topic,
                events::STREAM_END,
                &body,
            )))
            .await;
            return;
        }
        tokio::select! {
            r = written.changed() => if r.is_err() { return },
            r = acked.changed() => if r.is_err() { return },
            r = end.changed() => if r.is_err() { return },
            r = gone.changed() => if r.is_err() { return },
        }
    }
}
