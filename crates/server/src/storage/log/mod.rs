//! The log tier: durable, ordered, retention-limited, and the point of acknowledgement.
//!
//! A publish to a channel that keeps a log is acknowledged once its record is durable here.
//! Every record gets a position in one global order; the database writer (`materializer`)
//! follows that order to fill the database tier and records how far it got, so after a crash
//! it picks up where it stopped. Per channel, the log serves reads by offset.
//!
//! Implementations: [`EmbeddedLog`] (segment files on local disk, the default) and
//! [`JetStreamLog`] (a NATS JetStream stream). Every implementation passes the conformance
//! suite in `conformance.rs`.

mod embedded;
mod index;
mod jetstream;
mod record;

#[cfg(test)]
mod conformance;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig};
pub use jetstream::{JetStreamLog, JetStreamLogConfig};
pub use record::{MessageRecord, Record};

use crate::error::Result;
use futures_util::future::BoxFuture;
use std::sync::Arc;
use switchboard_protocol::Message;
use switchboard_protocol::history::Direction;

/// Runs once an append is durable (with the record's position) or failed.
pub type LogDone = Box<dyn FnOnce(Result<u64>) + Send>;

/// How a checked append ([`MessageLog::append_checked`]) ended.
#[derive(Debug)]
pub enum Checked {
    /// Durable at this position.
    Stored(u64),
    /// Not stored: the channel's newest record is not at the expected position but at
    /// this one. If it is newer, another node appended first: once
    /// [`MessageLog::watch_tail`] reaches it, the channel has seen those records and may
    /// append again with the next offset. If it is older, the log dropped the channel's
    /// newest records (retention): append again expecting this one.
    Conflict(u64),
    /// Not stored: the log failed.
    Failed(crate::error::Error),
}

/// Runs once a checked append is durable, lost a race, or failed.
pub type CheckedDone = Box<dyn FnOnce(Checked) + Send>;

/// Sees every record of a shared log once it is durable, whichever node appended it, in
/// position order.
pub type TailFn = Arc<dyn Fn(u64, &Record) + Send + Sync>;

/// Observes each group commit (for metrics): records covered and the time to make them
/// durable.
pub type CommitObserver = Arc<dyn Fn(usize, std::time::Duration) + Send + Sync>;

/// The log tier of the three-tier store.
///
/// Ordering: appends complete in the order they were queued, and positions increase in that
/// order; a caller that queues a channel's appends under the channel's lock therefore gets
/// them durable, and completed, in offset order.
pub trait MessageLog: Send + Sync + 'static {
    /// Queues `record`; `done` runs once it is durable (or the log failed).
    fn append(&self, record: Record, done: LogDone);

    /// The offsets of `channel_id` the log serves: `(first, last)`, `None` when none.
    fn bounds(&self, channel_id: i64) -> Option<(u64, u64)>;

    /// Up to `max` messages of `channel_id` with offsets in `from..=to`: ascending from `from`
    /// when reading forward, descending from `to` when reading backward.
    fn read(
        &self,
        channel_id: i64,
        from: u64,
        to: u64,
        max: usize,
        direction: Direction,
    ) -> BoxFuture<'static, Result<Vec<Message>>>;

    /// Stops serving `channel_id`'s offsets below `below` (channel retention).
    fn trim(&self, channel_id: i64, below: u64);

    /// Stops serving `channel_id`'s messages older than `before_ts` (ms); returns the first
    /// offset still served.
    fn trim_older(&self, channel_id: i64, before_ts: i64) -> BoxFuture<'static, Result<u64>>;

    /// The position of the newest durable record (0: none yet).
    fn end(&self) -> u64;

    /// Follows the log from just after `after`, in position order.
    fn follow(&self, after: u64) -> Box<dyn LogCursor>;

    /// Drops what the log's retention (age, size) allows, never a record after `keep_from`
    /// − 1 (the database writer has not read those yet). Returns, per channel that lost
    /// records, the highest offset dropped.
    fn enforce_retention(&self, now_ms: i64, keep_from: u64) -> Result<Vec<(i64, u64)>>;

    /// A watch of [`MessageLog::end`], to wait for new records without polling.
    fn watch_end(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Names this log instance: positions of one log mean nothing in another (a stream
    /// deleted and created again under the same name is another log).
    fn identity(&self) -> String;

    /// Whether a write failed: the log then refuses every append (fail-stop) until restart.
    fn is_failed(&self) -> bool;

    /// Completes what is queued and stops accepting appends.
    fn close(&self);

    /// Whether other nodes append to this log too (a JetStream stream a cluster shares).
    /// Then a channel's offsets are settled by [`MessageLog::append_checked`].
    fn is_shared(&self) -> bool {
        false
    }

    /// Appends `record` only if its channel's newest record is at position `expected` (0:
    /// the channel has none), which the log's engine checks atomically: a node that sets
    /// `expected` to the newest record it has delivered never stores an offset another node
    /// stored. One checked append per channel at a time. Logs that are never shared append
    /// without the check.
    fn append_checked(&self, record: Record, _expected: u64, done: CheckedDone) {
        self.append(
            record,
            Box::new(move |result| {
                done(match result {
                    Ok(position) => Checked::Stored(position),
                    Err(e) => Checked::Failed(e),
                })
            }),
        );
    }

    /// Where the record of `channel_id`'s `offset` is, if the log holds it.
    fn place(&self, _channel_id: i64, _offset: u64) -> Option<u64> {
        None
    }

    /// Shared logs: `channel_id`'s records at positions after `after`, up to `to`, with
    /// their positions, read from the engine at once (not waiting for the tail): how a node
    /// that lost a race learns the winner's messages.
    fn channel_records(
        &self,
        _channel_id: i64,
        _after: u64,
        _to: u64,
    ) -> BoxFuture<'static, Result<Vec<(u64, MessageRecord)>>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Shared logs: calls `f` with every record from now on, in position order, before
    /// [`MessageLog::watch_tail`] passes it.
    fn set_tail(&self, _f: TailFn) {}

    /// Shared logs: the position up to which the tail has delivered every record.
    fn watch_tail(&self) -> tokio::sync::watch::Receiver<u64> {
        self.watch_end()
    }
}

/// What a log's writer takes: the record and what to run once it is durable.
type Append = (Record, LogDone);

/// Hands an append to a log's writer, or fails its completion (with `fail`, on another task)
/// when the log failed or is closed.
fn enqueue<C: Send + 'static>(
    writer: &parking_lot::Mutex<Option<tokio::sync::mpsc::UnboundedSender<(Record, C)>>>,
    failed: bool,
    record: Record,
    completion: C,
    fail: fn(C, crate::error::Error),
) {
    if failed {
        return later(move || fail(completion, log_failed()));
    }
    let rejected = match writer.lock().as_ref() {
        Some(tx) => tx.send((record, completion)).err().map(|e| e.0.1),
        None => Some(completion),
    };
    if let Some(completion) = rejected {
        later(move || fail(completion, closed()));
    }
}

/// The error of an append after the log closed.
fn closed() -> crate::error::Error {
    crate::error::Error::new(
        switchboard_protocol::ErrorCode::ServerShutdown,
        "the server is shutting down; retry on reconnect",
    )
}

/// Runs a completion that failed at once on another task: the caller may hold the lock
/// the completion takes (a channel queues appends under its lock).
fn later(f: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move { f() });
        }
        Err(_) => {
            std::thread::spawn(f);
        }
    }
}

/// The error of every append after one failed (fail-stop).
fn log_failed() -> crate::error::Error {
    crate::storage::unavailable("an earlier log write failed; restart the server")
}

/// A reader following the log in position order (the database writer's).
pub trait LogCursor: Send {
    /// Up to `max` durable records after the last one returned (blocking I/O: call it off
    /// the async threads). Empty when the reader is at the end.
    fn next_batch(&mut self, max: usize) -> Result<Vec<(u64, Record)>>;
}
