//! The database writer: follows the log and copies its records into the database tier.
//!
//! The log is the point of acknowledgement; the database is written behind it, in log
//! order, one transaction per batch. Each transaction also records the position it reached
//! (`log_applied`), so after a crash the writer resumes exactly after the last record the
//! database holds: nothing is skipped and nothing is applied twice. Inbox entries of direct
//! messages are written here too, and their consumers are woken once they exist.

use super::Database;
use super::log::{LogCursor, MessageLog};
use crate::error::Result;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Records one database transaction covers at most.
const BATCH: usize = 256;

/// Runs once a record is in the database.
pub type Applied = Box<dyn FnOnce() + Send>;

/// Follows the log into the database (see the module docs).
pub struct Materializer {
    log: Arc<dyn MessageLog>,
    store: Arc<dyn Database>,
    applied: watch::Sender<u64>,
    waiting: Mutex<BTreeMap<u64, Vec<Applied>>>,
    /// Someone waits for the database (an inbox entry, a read): write without the delay.
    urgent: tokio::sync::Notify,
    /// Held for a whole step, so steps never interleave.
    cursor: tokio::sync::Mutex<Option<Box<dyn LogCursor>>>,
}

impl Materializer {
    /// The writer for `log` into `store`, starting after the position the database records.
    pub fn new(log: Arc<dyn MessageLog>, store: Arc<dyn Database>, applied: u64) -> Arc<Self> {
        Arc::new(Materializer {
            cursor: tokio::sync::Mutex::new(Some(log.follow(applied))),
            log,
            store,
            applied: watch::Sender::new(applied),
            waiting: Mutex::new(BTreeMap::new()),
            urgent: tokio::sync::Notify::new(),
        })
    }

    /// The log position the database holds everything up to.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Runs `f` once the record at `position` is in the database (now, if it is already).
    pub fn after(&self, position: u64, f: Applied) {
        {
            let mut waiting = self.waiting.lock();
            if self.applied() < position {
                waiting.entry(position).or_default().push(f);
                self.urgent.notify_one();
                return;
            }
        }
        f();
    }

    /// Waits (a few seconds at most) until the database holds the log up to `position`.
    pub async fn wait_for(&self, position: u64) {
        let mut applied = self.applied.subscribe();
        if *applied.borrow() < position {
            self.urgent.notify_one();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), applied.wait_for(|a| *a >= position))
            .await;
    }

    /// Copies every record the log holds now; returns how many.
    pub async fn catch_up(&self) -> Result<u64> {
        let mut copied = 0;
        while self.applied() < self.log.end() {
            let n = self.step().await?;
            if n == 0 {
                break;
            }
            copied += n;
        }
        Ok(copied)
    }

    /// Follows the log until shutdown, waiting `delay` after new records arrive so one
    /// transaction covers more of them, unless someone waits for them (then at once).
    pub async fn run(self: Arc<Self>, delay: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut end = self.log.watch_end();
        loop {
            let applied = self.applied();
            tokio::select! {
                _ = crate::shutting_down(&mut shutdown) => return,
                changed = end.wait_for(|e| *e > applied) => if changed.is_err() { return },
            }
            if !delay.is_zero() {
                tokio::select! {
                    _ = crate::shutting_down(&mut shutdown) => return,
                    () = tokio::time::sleep(delay) => {}
                    () = self.urgent.notified() => {}
                }
            }
            if let Err(e) = self.catch_up().await {
                tracing::error!(error = %e, "the database writer failed; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Reads one batch from the log and writes it in one transaction.
    async fn step(&self) -> Result<u64> {
        let mut slot = self.cursor.lock().await;
        let cursor = match slot.take() {
            Some(cursor) => cursor,
            None => self.log.follow(self.applied()),
        };
        let (cursor, batch) = tokio::task::spawn_blocking(move || {
            let mut cursor = cursor;
            let batch = cursor.next_batch(BATCH);
            (cursor, batch)
        })
        .await
        .map_err(super::unavailable)?;
        // On any failure the slot stays empty: the next step starts over from `applied`.
        let batch = batch?;
        let Some(&(last, _)) = batch.last() else {
            *slot = Some(cursor);
            return Ok(0);
        };
        let n = batch.len() as u64;
        self.store.apply_log(batch, last).await?;
        *slot = Some(cursor);
        let ready = {
            let mut waiting = self.waiting.lock();
            self.applied.send_replace(last);
            let later = waiting.split_off(&(last + 1));
            std::mem::replace(&mut *waiting, later)
        };
        drop(slot);
        for f in ready.into_values().flatten() {
            f();
        }
        Ok(n)
    }
}
