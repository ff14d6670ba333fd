//! The embedded log: append-only segment files on local disk.
//!
//! Records of every channel go to one log, in one order, so a single writer thread can
//! group-commit: it drains every queued append, writes them with one `pwrite` and covers
//! them with one `fdatasync`, then completes them in order. Segments are files named by the
//! position of their first record (`00000000000000000001.log`); when the active one would
//! grow past `segment_bytes` a new one starts, and retention drops whole old segments.
//!
//! Per channel, an in-memory index maps each offset to its record's place (segment and
//! byte), 8 bytes per message. It is rebuilt by scanning the segments at start-up; a torn
//! record at the end of the last segment (a crash mid-write, never acknowledged) is cut off,
//! corruption anywhere else stops the start-up rather than silently losing messages.

use super::index::OffsetIndex;
use super::record::{HEADER, MAX_BODY, header};
use super::{CommitObserver, LogCursor, LogDone, MessageLog, Record};
use crate::error::Result;
use crate::storage::unavailable;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use switchboard_protocol::Message;
use switchboard_protocol::history::Direction;
use tokio::sync::{mpsc, watch};

/// Settings of the embedded log.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedLogConfig {
    /// fsync each group commit (else the OS page cache holds acknowledged records).
    pub fsync: bool,
    /// Most appends one group commit covers.
    pub max_batch: usize,
    /// A segment is closed once it would grow past this size.
    pub segment_bytes: u64,
    /// Segments whose newest record is older than this are dropped (0: no age limit).
    pub retention_secs: u64,
    /// Oldest segments are dropped while the log is larger than this (0: no size limit).
    pub retention_bytes: u64,
}

/// Newest records kept in memory for the database writer.
const RECENT_RECORDS: usize = 16_384;

/// Bytes read at once when reading records (several records per `pread`).
const READ_WINDOW: usize = 64 << 10;

/// The active segment is kept this far ahead of its end in zeros, so a group commit's
/// `fdatasync` rarely has to flush a change of the file's size too (about a third cheaper).
const PREALLOCATE: u64 = 1 << 20;

/// One segment file.
struct Segment {
    /// Ordinal, assigned at open; a record's place is `(seq, byte)`.
    seq: u32,
    /// The position of its first record (the file's name).
    base: u64,
    path: PathBuf,
    file: File,
    /// Bytes written and durable (readers never look past this).
    len: AtomicU64,
    /// Position of its newest record (0: empty).
    last_position: AtomicU64,
    /// Timestamp of its newest message (ms; 0: none).
    max_ts: AtomicI64,
}

impl Segment {
    /// An empty segment (its records are added as they are scanned or written).
    fn new(seq: u32, base: u64, path: PathBuf, file: File) -> Self {
        Segment {
            seq,
            base,
            path,
            file,
            len: AtomicU64::new(0),
            last_position: AtomicU64::new(0),
            max_ts: AtomicI64::new(0),
        }
    }
}

fn loc(seq: u32, byte: u64) -> u64 {
    (u64::from(seq) << 32) | byte
}

fn loc_seq(loc: u64) -> u32 {
    (loc >> 32) as u32
}

fn loc_byte(loc: u64) -> u64 {
    loc & 0xffff_ffff
}

struct Shared {
    dir: PathBuf,
    config: EmbeddedLogConfig,
    segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    index: OffsetIndex,
    /// The newest records written, with their positions (consecutive), for the database
    /// writer; at most `RECENT_RECORDS`.
    recent: Mutex<std::collections::VecDeque<(u64, Record)>>,
    end: watch::Sender<u64>,
    failed: AtomicBool,
}

/// The embedded log (see the module docs).
pub struct EmbeddedLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::UnboundedSender<super::Append>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl EmbeddedLog {
    /// Opens the log in `dir` (creating it), rebuilding the index from the segments. New
    /// positions continue after the newest record, and never below `next_at_least` (the
    /// database writer's position + 1, in case the log directory was lost).
    pub fn open(
        dir: &Path,
        config: EmbeddedLogConfig,
        next_at_least: u64,
        observer: CommitObserver,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(unavailable)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                let base = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".log")?
                    .parse::<u64>()
                    .ok()?;
                Some((base, path))
            })
            .collect();
        names.sort();
        let shared = Shared {
            dir: dir.to_owned(),
            config: EmbeddedLogConfig {
                // A record's byte in its segment must fit 32 bits.
                segment_bytes: config.segment_bytes.clamp(1 << 20, 1 << 30),
                max_batch: config.max_batch.max(1),
                ..config
            },
            segments: RwLock::new(BTreeMap::new()),
            index: OffsetIndex::default(),
            recent: Mutex::new(std::collections::VecDeque::new()),
            end: watch::Sender::new(0),
            failed: AtomicBool::new(false),
        };
        let mut last_position = 0u64;
        let count = names.len();
        for (i, (base, path)) in names.into_iter().enumerate() {
            let seq = i as u32 + 1;
            let segment = scan_segment(&shared, seq, base, path, i + 1 == count)?;
            let newest = segment.last_position.load(Ordering::Relaxed);
            if newest != 0 && newest <= last_position {
                return Err(unavailable(format!(
                    "log segment {} repeats positions; the log directory {} is damaged",
                    segment.path.display(),
                    dir.display()
                )));
            }
            last_position = last_position.max(newest).max(base.saturating_sub(1));
            shared.segments.write().insert(seq, Arc::new(segment));
        }
        let next_position = (last_position + 1).max(next_at_least);
        let active = {
            let segments = shared.segments.read();
            segments.values().next_back().cloned()
        };
        let active = match active {
            // An empty last segment must still be named by the next position.
            Some(s) if s.len.load(Ordering::Relaxed) > 0 || s.base == next_position => s,
            Some(s) => {
                std::fs::remove_file(&s.path).map_err(unavailable)?;
                shared.segments.write().remove(&s.seq);
                create_segment(&shared, s.seq, next_position).map_err(unavailable)?
            }
            None => create_segment(&shared, 1, next_position).map_err(unavailable)?,
        };
        shared.end.send_replace(next_position - 1);
        let shared = Arc::new(shared);
        let (tx, rx) = mpsc::unbounded_channel();
        let allocated = active.file.metadata().map_err(unavailable)?.len();
        let writer = Writer {
            shared: shared.clone(),
            allocated,
            active,
            next_position,
            observer,
        };
        let thread = std::thread::Builder::new()
            .name("switchboard-log".into())
            .spawn(move || writer.run(rx))
            .map_err(unavailable)?;
        Ok(EmbeddedLog {
            shared,
            writer: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Bytes on disk across every segment.
    pub fn bytes(&self) -> u64 {
        self.shared
            .segments
            .read()
            .values()
            .map(|s| s.len.load(Ordering::Relaxed))
            .sum()
    }
}

/// Reads a segment at start-up, indexing its records; cuts a torn tail off the last one.
fn scan_segment(
    shared: &Shared,
    seq: u32,
    base: u64,
    path: PathBuf,
    last: bool,
) -> Result<Segment> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(unavailable)?;
    let size = file.metadata().map_err(unavailable)?.len();
    let segment = Segment::new(seq, base, path, file);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &segment.file);
    let mut byte = 0u64;
    let mut body = Vec::new();
    let damage = loop {
        if byte == size {
            break None;
        }
        let mut h = [0u8; HEADER];
        if reader.read_exact(&mut h).is_err() {
            break Some("a truncated record header");
        }
        if h == [0; HEADER] {
            // Preallocated space: the records end here if nothing but zeros follows.
            let mut rest = Vec::new();
            if reader.read_to_end(&mut rest).is_ok() && rest.iter().all(|b| *b == 0) {
                break None;
            }
            break Some("bytes after the preallocated end");
        }
        let (len, crc) = header(h);
        if len > MAX_BODY || byte + (HEADER + len) as u64 > size {
            break Some("a truncated record");
        }
        body.resize(len, 0);
        if reader.read_exact(&mut body).is_err() {
            break Some("a truncated record");
        }
        if crc32fast::hash(&body) != crc {
            break Some("a record whose checksum does not match");
        }
        let Ok((position, record)) = Record::decode(&body) else {
            break Some("an undecodable record");
        };
        index_record(shared, &segment, loc(seq, byte), position, &record);
        byte += (HEADER + len) as u64;
    };
    if let Some(what) = damage {
        if !last {
            return Err(unavailable(format!(
                "log segment {} has {what} at byte {byte}; it is not the newest segment, so \
                 this is not a torn write: restore it from a backup or move it aside (its \
                 messages are then lost)",
                segment.path.display()
            )));
        }
        tracing::warn!(
            segment = %segment.path.display(),
            byte,
            "cutting {what} off the end of the log (a write the crash interrupted; it was never acknowledged)"
        );
        segment.file.set_len(byte).map_err(unavailable)?;
        segment.file.sync_all().map_err(unavailable)?;
    }
    segment.len.store(byte, Ordering::Relaxed);
    Ok(segment)
}

/// Adds a durable record to the segment's bounds and the channel's index.
fn index_record(shared: &Shared, segment: &Segment, at: u64, position: u64, record: &Record) {
    segment.last_position.store(position, Ordering::Relaxed);
    if let Record::Message(r) = record {
        segment.max_ts.fetch_max(r.message.ts, Ordering::Relaxed);
    }
    shared.index.add(record, at);
}

fn create_segment(shared: &Shared, seq: u32, base: u64) -> std::io::Result<Arc<Segment>> {
    let path = shared.dir.join(format!("{base:020}.log"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    // The new file's name must survive a crash as well as its contents.
    File::open(&shared.dir)?.sync_all()?;
    let segment = Arc::new(Segment::new(seq, base, path, file));
    shared.segments.write().insert(seq, segment.clone());
    Ok(segment)
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    active: Arc<Segment>,
    /// Bytes of the active segment's file (written records, then preallocated zeros).
    allocated: u64,
    next_position: u64,
    observer: CommitObserver,
}

/// A record placed in this batch, indexed and completed once the batch is durable.
struct Placed {
    record: Record,
    done: LogDone,
    position: u64,
    segment: Arc<Segment>,
    at: u64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<super::Append>) {
        let max = self.shared.config.max_batch;
        let mut batch = Vec::with_capacity(max);
        let mut buf = Vec::with_capacity(1 << 20);
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, &mut buf);
        }
    }

    /// Writes the batch (rolling segments as needed), makes it durable, indexes it and
    /// completes it in order.
    fn commit(&mut self, batch: &mut Vec<(Record, LogDone)>, buf: &mut Vec<u8>) {
        if self.shared.failed.load(Ordering::Relaxed) {
            for (_, done) in batch.drain(..) {
                done(Err(super::log_failed()));
            }
            return;
        }
        let started = std::time::Instant::now();
        let mut placed = Vec::with_capacity(batch.len());
        let mut result = Ok(());
        buf.clear();
        let mut base = self.active.len.load(Ordering::Relaxed);
        for (record, done) in batch.drain(..) {
            let position = self.next_position;
            let mut start = buf.len();
            record.encode(position, buf);
            if result.is_ok()
                && base + start as u64 > 0
                && base + buf.len() as u64 > self.shared.config.segment_bytes
            {
                // The records before this one complete the active segment.
                let tail = buf.split_off(start);
                result = self
                    .flush(buf, base)
                    // The closed segment ends at its last record, without preallocated zeros.
                    .and_then(|()| self.active.file.set_len(base + buf.len() as u64))
                    .and_then(|()| {
                        // Retention must see at once that this segment holds the batch's
                        // first records (it is indexed only once the whole batch is durable).
                        self.active
                            .last_position
                            .store(position - 1, Ordering::Relaxed);
                        create_segment(&self.shared, self.active.seq + 1, position)
                    })
                    .map(|segment| {
                        self.active = segment;
                        self.allocated = 0;
                    });
                *buf = tail;
                base = 0;
                start = 0;
            }
            let at = base + start as u64;
            placed.push(Placed {
                record,
                done,
                position,
                segment: self.active.clone(),
                at,
            });
            self.next_position += 1;
        }
        if result.is_ok() {
            result = self.flush(buf, base);
        }
        match result {
            Ok(()) => {
                (self.observer)(placed.len(), started.elapsed());
                let mut end = 0;
                for p in &placed {
                    index_record(
                        &self.shared,
                        &p.segment,
                        loc(p.segment.seq, p.at),
                        p.position,
                        &p.record,
                    );
                    end = p.position;
                }
                {
                    let mut recent = self.shared.recent.lock();
                    recent.extend(placed.iter().map(|p| (p.position, p.record.clone())));
                    let excess = recent.len().saturating_sub(RECENT_RECORDS);
                    recent.drain(..excess);
                }
                self.shared.end.send_replace(end);
                for p in placed {
                    (p.done)(Ok(p.position));
                }
            }
            Err(e) => {
                // Fail-stop: what reached the file is unknown, so nothing more is accepted.
                tracing::error!(error = %e, "log write failed; refusing further appends");
                self.shared.failed.store(true, Ordering::Relaxed);
                let error = unavailable(e);
                for p in placed {
                    (p.done)(Err(error.clone()));
                }
            }
        }
    }

    /// Writes `buf` at byte `at` of the active segment and makes it durable.
    fn flush(&mut self, buf: &[u8], at: u64) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let end = at + buf.len() as u64;
        if end > self.allocated {
            // Zeros past the end now, so the next commits' fdatasyncs change no size.
            let zeros = vec![0u8; (end - self.allocated.max(at) + PREALLOCATE) as usize];
            self.active
                .file
                .write_all_at(&zeros, self.allocated.max(at))?;
            self.allocated = self.allocated.max(at) + zeros.len() as u64;
        }
        self.active.file.write_all_at(buf, at)?;
        if self.shared.config.fsync {
            self.active.file.sync_data()?;
        }
        self.active
            .len
            .store(at + buf.len() as u64, Ordering::Release);
        Ok(())
    }
}

/// Reads records by byte from segments, a window at a time.
struct WindowReader {
    seq: u32,
    start: u64,
    data: Vec<u8>,
    backward: bool,
}

impl WindowReader {
    fn new() -> Self {
        WindowReader {
            seq: 0,
            start: 0,
            data: Vec::new(),
            backward: false,
        }
    }

    /// The record at byte `at` of `segment`: `(body length, position, record)`.
    fn read(&mut self, segment: &Segment, at: u64) -> std::io::Result<(usize, u64, Record)> {
        self.read_toward(segment, at, false)
    }

    /// [`WindowReader::read`] for a reader going `backward` through the file: a refilled
    /// window then also covers the records before `at`.
    fn read_toward(
        &mut self,
        segment: &Segment,
        at: u64,
        backward: bool,
    ) -> std::io::Result<(usize, u64, Record)> {
        self.backward = backward;
        let h = self.bytes(segment, at, HEADER)?;
        let (len, crc) = header(h.try_into().expect("header size"));
        if len > MAX_BODY {
            return Err(corrupt(segment, at, "an oversized record"));
        }
        let body = self.bytes(segment, at + HEADER as u64, len)?;
        if crc32fast::hash(body) != crc {
            return Err(corrupt(segment, at, "a checksum mismatch"));
        }
        let (position, record) = Record::decode(body).map_err(|what| corrupt(segment, at, what))?;
        Ok((len, position, record))
    }

    fn bytes(&mut self, segment: &Segment, at: u64, len: usize) -> std::io::Result<&[u8]> {
        let end = at + len as u64;
        if self.seq != segment.seq || at < self.start || end > self.start + self.data.len() as u64 {
            let durable = segment.len.load(Ordering::Acquire);
            if end > durable {
                return Err(corrupt(segment, at, "a record past the durable end"));
            }
            // Going backward, the window is centered on `at`, so the records before it
            // (read next) and this record's body (read right after its header) are in it.
            let start = if self.backward {
                at.saturating_sub(READ_WINDOW as u64 / 2)
            } else {
                at
            };
            let want = ((end - start).max(READ_WINDOW as u64)).min(durable - start) as usize;
            self.data.resize(want, 0);
            segment.file.read_exact_at(&mut self.data, start)?;
            self.seq = segment.seq;
            self.start = start;
        }
        let from = (at - self.start) as usize;
        Ok(&self.data[from..from + len])
    }
}

fn corrupt(segment: &Segment, at: u64, what: &str) -> std::io::Error {
    std::io::Error::other(format!(
        "log segment {} has {what} at byte {at}",
        segment.path.display()
    ))
}

impl MessageLog for EmbeddedLog {
    fn append(&self, record: Record, done: LogDone) {
        let failed = self.shared.failed.load(Ordering::Relaxed);
        super::enqueue(&self.writer, failed, record, done, |done, e| done(Err(e)));
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
        let locs = self
            .shared
            .index
            .places(channel_id, from, to, max, direction);
        let shared = self.shared.clone();
        Box::pin(async move {
            if locs.is_empty() {
                return Ok(Vec::new());
            }
            tokio::task::spawn_blocking(move || read_locs(&shared, &locs))
                .await
                .map_err(unavailable)?
        })
    }

    fn trim(&self, channel_id: i64, below: u64) {
        self.shared.index.trim(channel_id, below);
    }

    fn trim_older(&self, channel_id: i64, before_ts: i64) -> BoxFuture<'static, Result<u64>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let mut reader = WindowReader::new();
                loop {
                    let Some((first, front)) = shared.index.front(channel_id) else {
                        return Ok(u64::MAX);
                    };
                    let Some(segment) = shared.segments.read().get(&loc_seq(front)).cloned() else {
                        return Ok(first);
                    };
                    // Whole segments older than the limit need no reading.
                    let old = if segment.max_ts.load(Ordering::Relaxed) < before_ts {
                        true
                    } else {
                        let (_, _, record) = reader
                            .read(&segment, loc_byte(front))
                            .map_err(unavailable)?;
                        match record {
                            Record::Message(r) => r.message.ts < before_ts,
                            Record::ChannelDeleted { .. } => true,
                        }
                    };
                    if !old {
                        return Ok(first);
                    }
                    shared.index.pop_front_if(channel_id, first);
                }
            })
            .await
            .map_err(unavailable)?
        })
    }

    fn end(&self) -> u64 {
        *self.shared.end.borrow()
    }

    fn follow(&self, after: u64) -> Box<dyn LogCursor> {
        Box::new(EmbeddedCursor {
            shared: self.shared.clone(),
            seq: 0,
            byte: 0,
            on_disk: false,
            after,
            reader: WindowReader::new(),
        })
    }

    fn enforce_retention(&self, now_ms: i64, keep_from: u64) -> Result<Vec<(i64, u64)>> {
        let config = self.shared.config;
        if config.retention_secs == 0 && config.retention_bytes == 0 {
            return Ok(Vec::new());
        }
        let list: Vec<Arc<Segment>> = self.shared.segments.read().values().cloned().collect();
        let mut total: u64 = list.iter().map(|s| s.len.load(Ordering::Relaxed)).sum();
        let cutoff = now_ms.saturating_sub((config.retention_secs as i64).saturating_mul(1000));
        let mut dropped_through = None;
        // Never the active (newest) segment.
        for segment in list.iter().take(list.len().saturating_sub(1)) {
            let expired =
                config.retention_secs > 0 && segment.max_ts.load(Ordering::Relaxed) < cutoff;
            let over = config.retention_bytes > 0 && total > config.retention_bytes;
            if !(expired || over) || segment.last_position.load(Ordering::Relaxed) >= keep_from {
                break;
            }
            self.shared.segments.write().remove(&segment.seq);
            std::fs::remove_file(&segment.path).map_err(unavailable)?;
            total -= segment.len.load(Ordering::Relaxed);
            dropped_through = Some(segment.seq);
            tracing::info!(segment = %segment.path.display(), "log retention dropped a segment");
        }
        let Some(through) = dropped_through else {
            return Ok(Vec::new());
        };
        Ok(self.shared.index.drop_leading(|l| loc_seq(l) <= through))
    }

    fn identity(&self) -> String {
        "embedded".to_owned()
    }

    fn is_failed(&self) -> bool {
        self.shared.failed.load(Ordering::Relaxed)
    }

    fn watch_end(&self) -> watch::Receiver<u64> {
        self.shared.end.subscribe()
    }

    fn close(&self) {
        self.writer.lock().take();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn read_locs(shared: &Shared, locs: &[u64]) -> Result<Vec<Message>> {
    let mut reader = WindowReader::new();
    let backward = locs.len() > 1 && locs[0] > locs[1];
    let mut out = Vec::with_capacity(locs.len());
    let mut segment: Option<Arc<Segment>> = None;
    for &l in locs {
        if segment.as_ref().is_none_or(|s| s.seq != loc_seq(l)) {
            segment = shared.segments.read().get(&loc_seq(l)).cloned();
        }
        // A segment retention dropped meanwhile: those messages are gone from this tier.
        let Some(seg) = &segment else { continue };
        let (_, _, record) = reader
            .read_toward(seg, loc_byte(l), backward)
            .map_err(unavailable)?;
        if let Record::Message(r) = record {
            out.push(Arc::unwrap_or_clone(r.message));
        }
    }
    Ok(out)
}

/// Follows the segments in order (the database writer's reader).
struct EmbeddedCursor {
    shared: Arc<Shared>,
    seq: u32,
    byte: u64,
    /// Whether `seq` and `byte` follow `after` (false after reading from memory).
    on_disk: bool,
    /// Records up to this position were returned already (or skipped).
    after: u64,
    reader: WindowReader,
}

impl EmbeddedCursor {
    /// The newest records, from memory, when they start at most just after `after`.
    fn take_recent(&mut self, max: usize) -> Option<Vec<(u64, Record)>> {
        let recent = self.shared.recent.lock();
        let (front, _) = recent.front()?;
        if *front > self.after + 1 {
            return None;
        }
        let start = (self.after + 1 - front) as usize;
        let out: Vec<(u64, Record)> = recent
            .range(start.min(recent.len())..)
            .take(max)
            .cloned()
            .collect();
        if let Some((last, _)) = out.last() {
            self.after = *last;
            // The file position no longer follows `after`.
            self.on_disk = false;
        }
        Some(out)
    }

    /// Places the file position on the segment that holds `after + 1`.
    fn seek(&mut self) {
        let segments = self.shared.segments.read();
        self.seq = segments
            .values()
            .filter(|s| s.base <= self.after + 1)
            .map(|s| s.seq)
            .next_back()
            .or_else(|| segments.keys().next().copied())
            .unwrap_or(1);
        self.byte = 0;
        self.on_disk = true;
    }
}

impl LogCursor for EmbeddedCursor {
    fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, Record)>> {
        // A reader keeping up takes the records the writer just wrote, without reading or
        // decoding them again.
        if let Some(out) = self.take_recent(max) {
            return Ok(out);
        }
        if !self.on_disk {
            self.seek();
        }
        let mut out = Vec::new();
        while out.len() < max {
            let (segment, newer) = {
                let segments = self.shared.segments.read();
                let segment = segments.get(&self.seq).cloned();
                let newer = segments.range(self.seq + 1..).next().map(|(s, _)| *s);
                (segment, newer)
            };
            // A segment read to its end (its length is read after checking for a newer
            // segment: once one exists, this one is final) or dropped under us (never one with
            // records not yet read): on to the next, if there is one.
            let segment = segment.filter(|s| self.byte < s.len.load(Ordering::Acquire));
            let Some(segment) = segment else {
                match newer {
                    Some(seq) => {
                        self.seq = seq;
                        self.byte = 0;
                        continue;
                    }
                    None => break,
                }
            };
            let (len, position, record) =
                self.reader.read(&segment, self.byte).map_err(unavailable)?;
            self.byte += (HEADER + len) as u64;
            if position > self.after {
                self.after = position;
                out.push((position, record));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::conformance::{append, small_segments};
    use super::super::{MessageLog, MessageRecord, Record};
    use super::*;
    use serde_json::value::RawValue;

    fn big_record(channel_id: i64, offset: u64, ts: i64) -> Record {
        Record::Message(MessageRecord {
            channel_id,
            message: Arc::new(Message {
                id: format!("m{offset}"),
                offset: Some(offset),
                channel: "big".into(),
                from: "alice".into(),
                to: None,
                kind: "blob".into(),
                data: RawValue::from_string(format!("\"{}\"", "x".repeat(100_000))).unwrap(),
                ts,
                ephemeral: false,
                attachments: Vec::new(),
            }),
            to_database: false,
            inbox: None,
        })
    }

    fn open(dir: &Path, config: EmbeddedLogConfig) -> EmbeddedLog {
        EmbeddedLog::open(dir, config, 1, Arc::new(|_, _| {})).unwrap()
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_torn_tail_is_cut_off_and_the_rest_survives() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), small_segments());
            for offset in 1..=3 {
                append(&log, big_record(1, offset, 1000)).await;
            }
        }
        // A crash mid-write: half a record at the end of the newest segment.
        let last = segments(dir.path()).pop().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0, 0, 1, 0, 9, 9, 9]).unwrap();
        drop(file);
        let log = open(dir.path(), small_segments());
        assert_eq!(log.bounds(1), Some((1, 3)));
        append(&log, big_record(1, 4, 1000)).await;
        drop(log);
        let log = open(dir.path(), small_segments());
        assert_eq!(log.bounds(1), Some((1, 4)));
    }

    #[tokio::test]
    async fn corruption_in_an_older_segment_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = open(dir.path(), small_segments());
            for offset in 1..=25 {
                append(&log, big_record(1, offset, 1000)).await;
            }
        }
        let first = segments(dir.path()).remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[100] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let Err(e) = EmbeddedLog::open(dir.path(), small_segments(), 1, Arc::new(|_, _| {})) else {
            panic!("a corrupt older segment must not be skipped silently");
        };
        assert!(e.message.contains("checksum"), "{}", e.message);
    }

    #[tokio::test]
    async fn retention_drops_whole_segments_only_once_copied() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = small_segments();
        config.retention_bytes = 2 << 20;
        let log = open(dir.path(), config);
        let mut positions = Vec::new();
        for offset in 1..=60 {
            positions.push(append(&log, big_record(1, offset, 1000)).await);
        }
        assert!(
            segments(dir.path()).len() >= 5,
            "about 6 MB in 1 MiB segments"
        );
        // The database writer has copied nothing yet: nothing may go.
        assert!(log.enforce_retention(2000, 1).unwrap().is_empty());
        assert_eq!(log.bounds(1), Some((1, 60)));
        let dropped = log.enforce_retention(2000, positions[59] + 1).unwrap();
        let (channel, through) = dropped[0];
        assert_eq!(channel, 1);
        assert!(log.bytes() <= 3 << 20, "{} bytes left", log.bytes());
        assert_eq!(log.bounds(1), Some((through + 1, 60)));
        // The follower of the database writer starts after what was dropped.
        drop(log);
        let log = open(dir.path(), config);
        assert_eq!(log.bounds(1), Some((through + 1, 60)));
        assert_eq!(log.end(), positions[59]);
    }

    #[tokio::test]
    async fn positions_never_restart_below_what_the_database_holds() {
        let dir = tempfile::tempdir().unwrap();
        let log =
            EmbeddedLog::open(dir.path(), small_segments(), 500, Arc::new(|_, _| {})).unwrap();
        assert_eq!(append(&log, big_record(1, 1, 1000)).await, 500);
    }
}
