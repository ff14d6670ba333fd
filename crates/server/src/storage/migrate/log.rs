//! The log copy: the source log's retained message records, in position order, appended to
//! the destination log, so channels keep the offsets their log tier served.
//!
//! What the source serves is what its index holds, and the copy keeps exactly that (a first
//! pass over the log finds it): per channel, the newest run of consecutive offsets after the
//! channel's last deletion (`OffsetIndex::add`), of a channel that still exists, above what
//! retention removed (`pruned_through`, which a start trims the index to). Deletion records
//! are not copied: the records before them are not copied either.

use super::MigrateError;
use super::checksum::{Canon, Summary};
use crate::storage::log::{MessageLog, Record};
use std::collections::{BTreeMap, HashMap};

/// Records read from the source at once.
const READ: usize = 1024;
/// Appends queued to the destination before waiting for the oldest.
const IN_FLIGHT: usize = 4096;

/// A channel's offsets the source serves: consecutive from `first` up to `next` − 1, the
/// first of them at position `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: u64,
    first: u64,
    next: u64,
}

/// Replays the source's index over the whole log: the run each channel ends with.
fn scan(log: &dyn MessageLog) -> crate::error::Result<HashMap<i64, Run>> {
    let mut runs: HashMap<i64, Run> = HashMap::new();
    let mut cursor = log.follow(0);
    loop {
        let batch = cursor.next_batch(READ)?;
        if batch.is_empty() {
            return Ok(runs);
        }
        for (position, record) in batch {
            match record {
                Record::ChannelDeleted { channel_id } => {
                    runs.remove(&channel_id);
                }
                Record::Message(m) => {
                    let offset = m.message.offset.unwrap_or(0);
                    match runs.get_mut(&m.channel_id) {
                        Some(run) if offset == run.next => run.next += 1,
                        // Seen already: the index keeps the first.
                        Some(run) if offset < run.next => {}
                        // Anything else starts the channel's index over.
                        _ => {
                            runs.insert(
                                m.channel_id,
                                Run {
                                    start: position,
                                    first: offset,
                                    next: offset + 1,
                                },
                            );
                        }
                    }
                }
            }
        }
    }
}

/// What the copy appended.
pub(super) struct Copied {
    /// (channel, offset, message id) of every record appended, in order.
    pub(super) records: Summary,
    /// Per channel, the first and last offsets appended.
    pub(super) ranges: BTreeMap<i64, (u64, u64)>,
}

/// Copies the records the source serves of `channels` (id → `pruned_through`) into
/// `destination` with plain appends, waiting until every one is durable (blocking: run it
/// off the async threads).
pub(super) fn copy(
    source: &dyn MessageLog,
    destination: &dyn MessageLog,
    channels: &HashMap<i64, u64>,
) -> Result<Copied, MigrateError> {
    let runs = scan(source)?;
    // The replay must agree with the index the log built when it opened.
    for (channel, run) in &runs {
        if source.bounds(*channel) != Some((run.first, run.next - 1)) {
            return Err(MigrateError::Internal(format!(
                "the source log serves {:?} of channel {channel}, but its records say {}..={}",
                source.bounds(*channel),
                run.first,
                run.next - 1
            )));
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<crate::error::Result<u64>>();
    let mut in_flight = 0usize;
    let wait_one = |in_flight: &mut usize| -> Result<(), MigrateError> {
        let result = done_rx
            .recv()
            .map_err(|_| MigrateError::Internal("the destination log stopped".into()))?;
        *in_flight -= 1;
        result.map(drop).map_err(MigrateError::from)
    };
    let mut canon = Canon::default();
    let mut ranges: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    let mut next: HashMap<i64, u64> = HashMap::new();
    let mut cursor = source.follow(0);
    loop {
        let batch = cursor.next_batch(READ)?;
        if batch.is_empty() {
            break;
        }
        for (position, record) in batch {
            let Record::Message(m) = &record else {
                continue;
            };
            let Some(run) = runs.get(&m.channel_id) else {
                continue;
            };
            let offset = m.message.offset.unwrap_or(0);
            let expected = next.entry(m.channel_id).or_insert(run.first);
            if position < run.start || offset != *expected {
                continue;
            }
            *expected += 1;
            match channels.get(&m.channel_id) {
                Some(&pruned_through) if offset > pruned_through => {}
                _ => continue,
            }
            canon.int(m.channel_id);
            canon.int(offset as i64);
            canon.text(m.message.id.as_bytes());
            canon.end_row();
            ranges
                .entry(m.channel_id)
                .and_modify(|r| r.1 = offset)
                .or_insert((offset, offset));
            if in_flight >= IN_FLIGHT {
                wait_one(&mut in_flight)?;
            }
            let done = done_tx.clone();
            destination.append(
                record,
                Box::new(move |result| {
                    let _ = done.send(result);
                }),
            );
            in_flight += 1;
        }
    }
    while in_flight > 0 {
        wait_one(&mut in_flight)?;
    }
    Ok(Copied {
        records: canon.finish(),
        ranges,
    })
}

/// Reads the whole destination log back: (channel, offset, message id) of every message
/// record, in position order (blocking).
pub(super) fn summarize(log: &dyn MessageLog) -> crate::error::Result<Summary> {
    let mut canon = Canon::default();
    let mut cursor = log.follow(0);
    loop {
        let batch = cursor.next_batch(READ)?;
        if batch.is_empty() {
            return Ok(canon.finish());
        }
        for (_, record) in batch {
            if let Record::Message(m) = record {
                canon.int(m.channel_id);
                canon.int(m.message.offset.unwrap_or(0) as i64);
                canon.text(m.message.id.as_bytes());
                canon.end_row();
            }
        }
    }
}

/// The offsets a log serves of each channel in `ranges`, summed up as (channel, first,
/// last), in channel order.
pub(super) fn summarize_ranges(
    ranges: impl IntoIterator<Item = (i64, Option<(u64, u64)>)>,
) -> Summary {
    let mut canon = Canon::default();
    for (channel, range) in ranges {
        canon.int(channel);
        match range {
            Some((first, last)) => {
                canon.int(first as i64);
                canon.int(last as i64);
            }
            None => canon.null(),
        }
        canon.end_row();
    }
    canon.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::log::{EmbeddedLog, EmbeddedLogConfig, MessageRecord};
    use std::sync::Arc;

    fn config() -> EmbeddedLogConfig {
        EmbeddedLogConfig {
            fsync: false,
            max_batch: 64,
            segment_bytes: 1 << 20,
            retention_secs: 0,
            retention_bytes: 0,
        }
    }

    fn message(channel_id: i64, offset: u64, id: &str) -> Record {
        let m = switchboard_protocol::Message {
            id: id.to_owned(),
            offset: Some(offset),
            channel: format!("c{channel_id}"),
            from: "alice".to_owned(),
            to: None,
            kind: "note".to_owned(),
            data: serde_json::value::to_raw_value(&serde_json::json!({ "offset": offset }))
                .unwrap(),
            ts: 1_000,
            ephemeral: false,
            attachments: Vec::new(),
        };
        Record::Message(MessageRecord {
            channel_id,
            message: Arc::new(m),
            to_database: false,
            inbox: None,
        })
    }

    async fn append(log: &EmbeddedLog, record: Record) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        log.append(
            record,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap().unwrap();
    }

    fn observer() -> crate::storage::log::CommitObserver {
        Arc::new(|_, _| {})
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_copy_keeps_what_the_source_index_serves() {
        let dir = tempfile::tempdir().unwrap();
        let source = EmbeddedLog::open(&dir.path().join("a"), config(), 1, observer()).unwrap();
        // Channel 1: 1..=3, deleted, then its id used again: 1..=2 of the new channel.
        // Channel 2: 1..=4 with retention having removed up to 2. Channel 3: deleted for
        // good (no row). Channel 4: a run that starts over at 7 (only 7..=8 is served),
        // and a record seen twice.
        for (channel, offset, id) in [(1, 1, "a1"), (2, 1, "b1"), (1, 2, "a2"), (1, 3, "a3")] {
            append(&source, message(channel, offset, id)).await;
        }
        append(&source, Record::ChannelDeleted { channel_id: 1 }).await;
        for (channel, offset, id) in [
            (1, 1, "new1"),
            (2, 2, "b2"),
            (3, 1, "c1"),
            (2, 3, "b3"),
            (4, 1, "d1"),
            (4, 2, "d2"),
            (4, 7, "d7"),
            (1, 2, "new2"),
            (4, 8, "d8"),
            (4, 8, "d8 again"),
            (2, 4, "b4"),
        ] {
            append(&source, message(channel, offset, id)).await;
        }
        let destination =
            EmbeddedLog::open(&dir.path().join("b"), config(), 1, observer()).unwrap();
        let channels = HashMap::from([(1, 0), (2, 2), (4, 0)]);
        let copied =
            tokio::task::block_in_place(|| copy(&source, &destination, &channels)).unwrap();
        let want = [
            (1, 1, "new1"),
            (2, 3, "b3"),
            (4, 7, "d7"),
            (1, 2, "new2"),
            (4, 8, "d8"),
            (2, 4, "b4"),
        ];
        let mut canon = Canon::default();
        for (channel, offset, id) in want {
            canon.int(channel);
            canon.int(offset);
            canon.text(id.as_bytes());
            canon.end_row();
        }
        assert_eq!(copied.records, canon.finish());
        assert_eq!(
            copied.ranges,
            BTreeMap::from([(1, (1, 2)), (2, (3, 4)), (4, (7, 8))])
        );
        destination.close();
        // Read back from disk, the destination holds exactly those, and serves those ranges.
        let reopened = EmbeddedLog::open(&dir.path().join("b"), config(), 1, observer()).unwrap();
        let read = tokio::task::block_in_place(|| summarize(&reopened)).unwrap();
        assert_eq!(read, copied.records);
        let served = copied
            .ranges
            .keys()
            .map(|&c| (c, reopened.bounds(c)))
            .collect::<Vec<_>>();
        assert_eq!(
            summarize_ranges(served),
            summarize_ranges(copied.ranges.iter().map(|(&c, &r)| (c, Some(r))))
        );
    }
}
