//! The conformance suite every [`MessageLog`] implementation passes: ordering, reads by
//! offset, restart, following, trimming and deletion. Each check takes a function that
//! opens the implementation on a directory (opening it again = a restart).

use super::{
    EmbeddedLog, EmbeddedLogConfig, JetStreamLog, JetStreamLogConfig, LogCursor, MessageLog,
    MessageRecord, Record,
};
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use std::path::Path;
use std::sync::Arc;
use switchboard_protocol::Message;
use switchboard_protocol::history::Direction;

type Open = fn(&Path) -> BoxFuture<'static, Arc<dyn MessageLog>>;

/// The next batch of a cursor (its reads may block, so off the async threads).
async fn next_batch(
    cursor: Box<dyn LogCursor>,
    max: usize,
) -> (Box<dyn LogCursor>, Vec<(u64, Record)>) {
    tokio::task::spawn_blocking(move || {
        let mut cursor = cursor;
        let batch = cursor.next_batch(max).unwrap();
        (cursor, batch)
    })
    .await
    .unwrap()
}

/// Closes a log (which may wait for its writer) off the async threads.
async fn close(log: &Arc<dyn MessageLog>) {
    let log = log.clone();
    tokio::task::spawn_blocking(move || log.close())
        .await
        .unwrap();
}

fn message(channel: &str, offset: u64, ts: i64) -> Arc<Message> {
    Arc::new(Message {
        id: format!("{channel}-{offset}"),
        offset: Some(offset),
        channel: channel.to_owned(),
        from: "alice".into(),
        to: None,
        kind: "chat".into(),
        data: RawValue::from_string(format!("{{\"n\":{offset}}}")).unwrap(),
        ts,
        ephemeral: false,
        attachments: Vec::new(),
    })
}

fn record(channel_id: i64, offset: u64, ts: i64) -> Record {
    Record::Message(MessageRecord {
        channel_id,
        message: message(&format!("c{channel_id}"), offset, ts),
        to_database: true,
        inbox: None,
    })
}

/// Appends and waits for durability; returns the position.
pub(super) async fn append(log: &dyn MessageLog, record: Record) -> u64 {
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append(
        record,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.await.unwrap().unwrap()
}

fn offsets(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.offset.unwrap()).collect()
}

async fn appends_complete_in_order_with_increasing_positions(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for offset in 1..=500u64 {
        let tx = tx.clone();
        log.append(
            record(1 + (offset % 2) as i64, offset.div_ceil(2), 1000),
            Box::new(move |r| {
                tx.send((offset, r.unwrap())).unwrap();
            }),
        );
    }
    drop(tx);
    let mut last = (0, 0);
    while let Some((queued, position)) = rx.recv().await {
        assert_eq!(queued, last.0 + 1, "completions in queue order");
        assert!(position > last.1, "positions increase");
        last = (queued, position);
    }
    assert_eq!(last.0, 500);
    assert_eq!(log.end(), last.1);
}

async fn reads_by_offset_in_both_directions(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for offset in 1..=50 {
        append(&*log, record(7, offset, 1000 + offset as i64)).await;
        append(&*log, record(8, offset, 1000)).await;
    }
    assert_eq!(log.bounds(7), Some((1, 50)));
    assert_eq!(log.bounds(9), None);
    let forward = log.read(7, 10, 20, 5, Direction::Forward).await.unwrap();
    assert_eq!(offsets(&forward), vec![10, 11, 12, 13, 14]);
    assert!(forward.iter().all(|m| m.channel == "c7"));
    let backward = log.read(7, 10, 20, 3, Direction::Backward).await.unwrap();
    assert_eq!(offsets(&backward), vec![20, 19, 18]);
    let clipped = log
        .read(7, 45, 1000, 100, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(offsets(&clipped), (45..=50).collect::<Vec<_>>());
    assert!(
        log.read(7, 60, 70, 10, Direction::Forward)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(forward[0], *message("c7", 10, 1010));
}

async fn everything_survives_a_restart(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let end = {
        let log = open(dir.path()).await;
        for offset in 1..=30 {
            append(&*log, record(1, offset, 1000)).await;
        }
        close(&log).await;
        log.end()
    };
    let log = open(dir.path()).await;
    assert_eq!(log.end(), end);
    assert_eq!(log.bounds(1), Some((1, 30)));
    let all = log.read(1, 1, 30, 100, Direction::Forward).await.unwrap();
    assert_eq!(offsets(&all), (1..=30).collect::<Vec<_>>());
    let next = append(&*log, record(1, 31, 1000)).await;
    assert!(next > end, "positions continue after a restart");
}

async fn a_follower_sees_every_record_once_in_order(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    let mut positions = Vec::new();
    for offset in 1..=300 {
        positions.push(append(&*log, record(offset as i64 % 3, offset, 1000)).await);
    }
    let mut cursor = log.follow(0);
    let mut seen = Vec::new();
    loop {
        let (c, batch) = next_batch(cursor, 64).await;
        cursor = c;
        if batch.is_empty() {
            break;
        }
        seen.extend(batch.into_iter().map(|(p, _)| p));
    }
    assert_eq!(seen, positions);
    // From the middle, and then new records as they come.
    let cursor = log.follow(positions[149]);
    let (cursor, first) = next_batch(cursor, 1000).await;
    assert_eq!(first.len(), 150);
    let (cursor, none) = next_batch(cursor, 10).await;
    assert!(none.is_empty());
    let p = append(&*log, record(1, 301, 1000)).await;
    let (_, more) = next_batch(cursor, 10).await;
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].0, p);
    // After a restart, following from a position resumes right after it.
    close(&log).await;
    drop(log);
    let log = open(dir.path()).await;
    let (_, rest) = next_batch(log.follow(positions[289]), 1000).await;
    assert_eq!(rest.len(), 11);
}

async fn trimming_hides_old_offsets(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).await;
    for offset in 1..=20 {
        append(&*log, record(1, offset, offset as i64 * 1000)).await;
    }
    log.trim(1, 6);
    assert_eq!(log.bounds(1), Some((6, 20)));
    assert_eq!(
        offsets(&log.read(1, 1, 8, 10, Direction::Forward).await.unwrap()),
        vec![6, 7, 8]
    );
    let first = log.trim_older(1, 10_500).await.unwrap();
    assert_eq!(first, 11);
    assert_eq!(log.bounds(1), Some((11, 20)));
}

async fn a_deleted_channel_is_forgotten_also_after_a_restart(open: Open) {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path()).await;
        for offset in 1..=5 {
            append(&*log, record(4, offset, 1000)).await;
        }
        append(&*log, Record::ChannelDeleted { channel_id: 4 }).await;
        assert_eq!(log.bounds(4), None);
        // The id is reused: its offsets start over.
        append(&*log, record(4, 1, 1000)).await;
        assert_eq!(log.bounds(4), Some((1, 1)));
        close(&log).await;
    }
    let log = open(dir.path()).await;
    assert_eq!(log.bounds(4), Some((1, 1)));
}

macro_rules! conformance {
    ($module:ident, $open:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn appends_complete_in_order_with_increasing_positions() {
                super::appends_complete_in_order_with_increasing_positions($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_by_offset_in_both_directions() {
                super::reads_by_offset_in_both_directions($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn everything_survives_a_restart() {
                super::everything_survives_a_restart($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_follower_sees_every_record_once_in_order() {
                super::a_follower_sees_every_record_once_in_order($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn trimming_hides_old_offsets() {
                super::trimming_hides_old_offsets($open).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_deleted_channel_is_forgotten_also_after_a_restart() {
                super::a_deleted_channel_is_forgotten_also_after_a_restart($open).await;
            }
        }
    };
}

/// Small segments, so the suite crosses segment boundaries.
pub(super) fn small_segments() -> EmbeddedLogConfig {
    EmbeddedLogConfig {
        fsync: false,
        max_batch: 64,
        segment_bytes: 1 << 20,
        retention_secs: 0,
        retention_bytes: 0,
    }
}

fn open_embedded(dir: &Path) -> BoxFuture<'static, Arc<dyn MessageLog>> {
    let mut config = small_segments();
    config.fsync = true;
    let log: Arc<dyn MessageLog> =
        Arc::new(EmbeddedLog::open(dir, config, 1, Arc::new(|_, _| {})).unwrap());
    Box::pin(async move { log })
}

fn open_jetstream(dir: &Path) -> BoxFuture<'static, Arc<dyn MessageLog>> {
    jetstream_log(dir, false)
}

/// The same, as one node of a cluster sharing the stream (it follows the stream's tail too).
fn open_shared_jetstream(dir: &Path) -> BoxFuture<'static, Arc<dyn MessageLog>> {
    jetstream_log(dir, true)
}

/// A JetStream log on the server `SWITCHBOARD_TEST_NATS_URL` names (scripts/test.sh starts
/// one), in a stream named after `dir`, so opening the same directory again is a restart.
fn jetstream_log(dir: &Path, shared: bool) -> BoxFuture<'static, Arc<dyn MessageLog>> {
    let url = std::env::var("SWITCHBOARD_TEST_NATS_URL").expect(
        "SWITCHBOARD_TEST_NATS_URL: the JetStream tests need a NATS server 2.10+ with JetStream \
         (scripts/test.sh starts one)",
    );
    let name = dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    Box::pin(async move {
        let log: Arc<dyn MessageLog> = Arc::new(
            JetStreamLog::open(
                JetStreamLogConfig {
                    url,
                    stream: format!("TEST_{name}"),
                    replicas: 1,
                    retention_secs: 0,
                    retention_bytes: 0,
                    max_batch: 64,
                    shared,
                },
                Arc::new(|_, _| {}),
            )
            .await
            .unwrap(),
        );
        log
    })
}

conformance!(embedded, open_embedded);
conformance!(jetstream, open_jetstream);
conformance!(shared_jetstream, open_shared_jetstream);
