//! The conformance suite every [`Database`] implementation passes: each check runs against
//! `SqliteStore` (in a temporary directory) and `PostgresStore` (in a database of its own on
//! the server `SWITCHBOARD_TEST_POSTGRES_URL` names, dropped afterwards), so the two
//! backends behave the same. The checks at the end run only on PostgreSQL: several stores
//! on one database, as several nodes use it.

use super::columns::encode_attachments;
use super::log::{MessageRecord, Record};
use super::*;
use crate::storage::database::KvWrite;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::value::RawValue;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use switchboard_protocol::history::Direction;
use switchboard_protocol::{CacheRetention, HistoryQuery, LogRetention, Message, StoragePolicy};

/// A store under test and where its data lives.
struct Fixture {
    db: Arc<dyn Database>,
    place: Place,
}

enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(Box<TestDatabase>),
}

impl Fixture {
    /// Closes the store and opens the same data again (a restart).
    async fn reopen(&mut self) {
        self.db.close().await;
        self.db = match &self.place {
            Place::Sqlite(dir) => open_sqlite_in(dir.path()).await,
            Place::Postgres(t) => Arc::new(
                PostgresStore::connect_with(t.options.clone(), 4)
                    .await
                    .unwrap(),
            ),
        };
    }
}

fn open_sqlite() -> BoxFuture<'static, Fixture> {
    Box::pin(async {
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            db: open_sqlite_in(dir.path()).await,
            place: Place::Sqlite(dir),
        }
    })
}

async fn open_sqlite_in(dir: &std::path::Path) -> Arc<dyn Database> {
    let dir = dir.to_owned();
    let config = crate::config::Config::default().storage;
    Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&dir, &config))
            .await
            .unwrap()
            .unwrap(),
    )
}

/// A database of its own on the test server, dropped when the test ends (also when it
/// fails), so tests run in parallel.
struct TestDatabase {
    /// The server's own database, where this one is created and dropped from.
    base: PgConnectOptions,
    name: String,
    /// This database.
    options: PgConnectOptions,
    /// This database's URL.
    url: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        let url = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").expect(
            "SWITCHBOARD_TEST_POSTGRES_URL: the PostgreSQL tests need a server where they may \
             create databases, e.g. postgres://postgres@127.0.0.1:5432/test (scripts/test.sh \
             sets it)",
        );
        let base = PgConnectOptions::from_str(&url).expect("SWITCHBOARD_TEST_POSTGRES_URL");
        let name = format!("sb_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::connect_with(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
        let options = base.clone().database(&name);
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let server = path.rsplit_once('/').map_or(path, |(server, _)| server);
        let url = match query {
            "" => format!("{server}/{name}"),
            query => format!("{server}/{name}?{query}"),
        };
        TestDatabase {
            base,
            name,
            options,
            url,
        }
    }

    async fn store(&self) -> Arc<dyn Database> {
        Arc::new(
            PostgresStore::connect_with(self.options.clone(), 4)
                .await
                .unwrap(),
        )
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run on the test's runtime: drop the database from a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&base).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

fn open_postgres() -> BoxFuture<'static, Fixture> {
    Box::pin(async {
        let t = TestDatabase::create().await;
        Fixture {
            db: t.store().await,
            place: Place::Postgres(Box::new(t)),
        }
    })
}

// Rows and records.

fn channel_row(tenant: &str, name: &str, storage: StoragePolicy) -> ChannelRow {
    ChannelRow {
        id: 0,
        tenant_id: tenant.to_owned(),
        name: name.to_owned(),
        password_hash: None,
        storage,
        cache_retention: None,
        log_retention: None,
        max_messages: 0,
        max_age_secs: 0,
        epoch: "e0".to_owned(),
        members: None,
        expires_at: None,
        created_at: 1_000,
    }
}

/// Creates a channel; its row id.
async fn channel(db: &Arc<dyn Database>, tenant: &str, name: &str, storage: StoragePolicy) -> i64 {
    let (row, created) = db
        .create_channel(channel_row(tenant, name, storage), 0)
        .await
        .unwrap()
        .unwrap();
    assert!(created);
    row.id
}

fn message(offset: u64, ts: i64, from: &str, to: Option<&str>, kind: &str) -> Message {
    Message {
        id: format!("m{offset}"),
        offset: Some(offset),
        channel: "c".to_owned(),
        from: from.to_owned(),
        to: to.map(str::to_owned),
        kind: kind.to_owned(),
        data: RawValue::from_string(format!("{{\"n\":{offset}}}")).unwrap(),
        ts,
        ephemeral: false,
        attachments: Vec::new(),
    }
}

fn stored(channel_id: i64, m: Message) -> Record {
    Record::Message(MessageRecord {
        channel_id,
        message: Arc::new(m),
        to_database: true,
        inbox: None,
    })
}

/// A direct message that goes to its recipient's inbox (and to the database when `keep`).
fn direct(channel_id: i64, m: Message, sender_tenant: &str, keep: bool) -> Record {
    assert!(m.to.is_some());
    Record::Message(MessageRecord {
        channel_id,
        message: Arc::new(m),
        to_database: keep,
        inbox: Some(InboxWrite {
            sender_tenant: sender_tenant.into(),
            receipt: true,
        }),
    })
}

/// Applies records at positions `first..`.
async fn apply(db: &Arc<dyn Database>, first: u64, records: Vec<Record>) -> u64 {
    let batch: Vec<(u64, Record)> = (first..).zip(records).collect();
    let last = batch.last().unwrap().0;
    db.apply_log(batch, last).await.unwrap();
    last
}

/// Inbox messages `1..=n` from `alice` (tenant t1) to `bob`, at ts 1000 + offset.
async fn fill_inbox(db: &Arc<dyn Database>, channel_id: i64, n: u64) {
    let records = (1..=n)
        .map(|o| {
            direct(
                channel_id,
                message(o, 1_000 + o as i64, "alice", Some("bob"), "task"),
                "t1",
                true,
            )
        })
        .collect();
    apply(db, 1, records).await;
}

fn offsets(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(|m| m.offset.unwrap()).collect()
}

const LIMITS: InboxLimits = InboxLimits {
    max_deliveries: 3,
    max_rejections: 2,
};

async fn lease(
    db: &Arc<dyn Database>,
    channel_id: i64,
    max: u32,
    visibility: i64,
    now: i64,
) -> InboxBatchResult {
    db.inbox_batch(
        channel_id,
        "bob",
        InboxBatch {
            settle: Vec::new(),
            lease: Some((max, visibility)),
        },
        LIMITS,
        now,
    )
    .await
    .unwrap()
}

async fn settle(
    db: &Arc<dyn Database>,
    channel_id: i64,
    settle: Vec<Settle>,
    now: i64,
) -> Vec<Option<Settled>> {
    db.inbox_batch(
        channel_id,
        "bob",
        InboxBatch {
            settle,
            lease: None,
        },
        LIMITS,
        now,
    )
    .await
    .unwrap()
    .settled
}

fn ack(id: &str) -> Settle {
    Settle::Ack { id: id.to_owned() }
}

fn reject(id: &str, reason: Option<&str>, requeue: bool) -> Settle {
    Settle::Reject {
        id: id.to_owned(),
        reason: reason.map(str::to_owned),
        requeue,
    }
}

fn ids(rows: &[InboxRow]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

fn kv(channel_id: i64, key: &str, value: &str, expected: Option<u64>, now: i64) -> KvWrite {
    KvWrite {
        channel_id,
        key: key.to_owned(),
        value: value.to_owned(),
        expected,
        expires_at: None,
        by: "alice".to_owned(),
        now,
        max_keys: 0,
    }
}

fn kv_keys(rows: &[KvRow]) -> Vec<&str> {
    rows.iter().map(|r| r.key.as_str()).collect()
}

// Settings and the log position.

async fn settings_round_trip_and_init_setting_keeps_the_first(f: Fixture) {
    let db = &f.db;
    assert_eq!(db.get_setting("color").await.unwrap(), None);
    db.put_setting("color", "red").await.unwrap();
    db.put_setting("color", "blue").await.unwrap();
    assert_eq!(
        db.get_setting("color").await.unwrap().as_deref(),
        Some("blue")
    );
    assert_eq!(db.init_setting("color", "green").await.unwrap(), "blue");
    assert_eq!(db.init_setting("root", "r1").await.unwrap(), "r1");
    assert_eq!(db.init_setting("root", "r2").await.unwrap(), "r1");
    // Nodes starting at once agree on one value.
    for round in 0..5 {
        let name = format!("race{round}");
        let (a, b) = tokio::join!(db.init_setting(&name, "a"), db.init_setting(&name, "b"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(db.get_setting(&name).await.unwrap(), Some(a));
    }
}

async fn set_log_records_the_log_and_starts_new_epochs(f: Fixture) {
    let db = &f.db;
    let log_channel = channel(db, "t1", "l", StoragePolicy::Log).await;
    let kept = channel(db, "t1", "p", StoragePolicy::Persistent).await;
    db.set_pruned_through(log_channel, 7).await.unwrap();
    db.set_pruned_through(kept, 4).await.unwrap();
    assert_eq!(db.durable_log_applied().await.unwrap(), 0);

    db.set_log("log-a", 5, false).await.unwrap();
    assert_eq!(
        db.get_setting(LOG_IDENTITY).await.unwrap().as_deref(),
        Some("log-a")
    );
    assert_eq!(
        db.get_setting(LOG_APPLIED).await.unwrap().as_deref(),
        Some("5")
    );
    assert_eq!(db.durable_log_applied().await.unwrap(), 5);
    let epoch = |name: &'static str| async move {
        db.get_channel("t1", name).await.unwrap().unwrap().epoch
    };
    assert_eq!(epoch("l").await, "e0");

    // A new log: `log` channels start a new epoch and forget what retention removed.
    db.set_log("log-b", 2, true).await.unwrap();
    assert_eq!(
        db.durable_log_applied().await.unwrap(),
        2,
        "set_log may lower it"
    );
    let new = epoch("l").await;
    assert_ne!(new, "e0");
    assert_eq!(new.len(), 16);
    assert!(
        new.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(db.bounds(log_channel).await.unwrap().pruned, 0);
    assert_eq!(epoch("p").await, "e0");
    assert_eq!(db.bounds(kept).await.unwrap().pruned, 4);
    assert_eq!(
        db.get_setting(LOG_IDENTITY).await.unwrap().as_deref(),
        Some("log-b")
    );
}

async fn apply_log_copies_messages_and_inbox_entries(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let log_only = channel(db, "t1", "l", StoragePolicy::Log).await;
    let mut with_files = message(2, 1_002, "alice", None, "file");
    with_files.attachments = vec![Bytes::from_static(b"\x00\x01"), Bytes::new()];
    let to_bob = message(3, 1_003, "alice", Some("bob"), "task");
    let not_kept = message(4, 1_004, "alice", None, "chat");
    let last = apply(
        db,
        10,
        vec![
            stored(id, message(1, 1_001, "alice", None, "chat")),
            stored(id, with_files.clone()),
            direct(id, to_bob.clone(), "t1", true),
            Record::Message(MessageRecord {
                channel_id: id,
                message: Arc::new(not_kept),
                to_database: false,
                inbox: None,
            }),
            // A channel the database does not keep: its inbox entry is written all the same.
            direct(
                log_only,
                message(1, 1_005, "carol", Some("bob"), "task"),
                "t2",
                false,
            ),
        ],
    )
    .await;
    assert_eq!(last, 14);
    assert_eq!(db.durable_log_applied().await.unwrap(), 14);
    let got = db.recent(id, "c", 10).await.unwrap();
    assert_eq!(offsets(&got), vec![1, 2, 3]);
    assert_eq!(got[1], with_files);
    assert_eq!(got[2], to_bob);
    assert_eq!(db.recent(log_only, "l", 10).await.unwrap().len(), 0);
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    assert_eq!(
        db.inbox_counts(log_only).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    let leased = lease(db, id, 10, 1_000, 5_000).await.leased;
    assert_eq!(leased.len(), 1);
    let row = &leased[0];
    assert_eq!((row.offset, row.id.as_str()), (3, "m3"));
    assert_eq!((row.sender.as_str(), row.receipt), ("alice", true));
    let back: Message = serde_json::from_str(&row.message).unwrap();
    assert_eq!(back, to_bob);
}

async fn apply_log_skips_deleted_channels_and_pruned_offsets(f: Fixture) {
    let db = &f.db;
    let a = channel(db, "t1", "a", StoragePolicy::Persistent).await;
    let b = channel(db, "t1", "b", StoragePolicy::Persistent).await;
    db.set_pruned_through(a, 5).await.unwrap();
    apply(
        db,
        1,
        (4..=7)
            .map(|o| stored(a, message(o, 1_000, "x", None, "chat")))
            .chain([stored(9_999, message(1, 1_000, "x", None, "chat"))])
            .collect(),
    )
    .await;
    assert_eq!(offsets(&db.recent(a, "a", 10).await.unwrap()), vec![6, 7]);
    let stats = db.bounds(a).await.unwrap();
    assert_eq!((stats.first, stats.last, stats.pruned), (6, 7, 5));
    assert!(db.recent(9_999, "gone", 10).await.unwrap().is_empty());

    // A deletion in the middle of a batch removes what came before it, not what follows.
    apply(
        db,
        100,
        vec![
            stored(b, message(1, 1_000, "x", None, "chat")),
            direct(b, message(2, 1_000, "x", Some("bob"), "task"), "t1", true),
            Record::ChannelDeleted { channel_id: b },
            direct(b, message(1, 2_000, "y", Some("bob"), "task"), "t1", true),
        ],
    )
    .await;
    let left = db.recent(b, "b", 10).await.unwrap();
    assert_eq!(offsets(&left), vec![1]);
    assert_eq!(left[0].from, "y");
    assert_eq!(
        db.inbox_counts(b).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    assert_eq!(offsets(&db.recent(a, "a", 10).await.unwrap()), vec![6, 7]);
}

async fn apply_log_twice_changes_nothing_and_never_moves_back(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let batch = |first: u64, offsets: std::ops::RangeInclusive<u64>| -> Vec<(u64, Record)> {
        offsets
            .zip(first..)
            .map(|(o, p)| {
                (
                    p,
                    direct(
                        id,
                        message(o, 1_000, "alice", Some("bob"), "task"),
                        "t1",
                        true,
                    ),
                )
            })
            .collect()
    };
    db.apply_log(batch(1, 1..=3), 3).await.unwrap();
    let acked = settle(db, id, vec![ack("m1")], 2_000).await;
    assert_eq!(acked[0].as_ref().unwrap().outcome, Outcome::Acknowledged);

    // The same batch again: nothing changes, the acknowledged entry stays gone.
    db.apply_log(batch(1, 1..=3), 3).await.unwrap();
    assert_eq!(
        offsets(&db.recent(id, "c", 10).await.unwrap()),
        vec![1, 2, 3]
    );
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 2)]
    );
    assert_eq!(db.durable_log_applied().await.unwrap(), 3);

    // An older batch never moves the position back.
    db.apply_log(batch(1, 1..=2), 2).await.unwrap();
    assert_eq!(db.durable_log_applied().await.unwrap(), 3);
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 2)]
    );

    // A batch overlapping what was applied adds only what is new.
    db.apply_log(batch(2, 2..=5), 5).await.unwrap();
    assert_eq!(db.durable_log_applied().await.unwrap(), 5);
    assert_eq!(
        offsets(&db.recent(id, "c", 10).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 4)]
    );
}

async fn a_nul_in_a_message_id_or_type_never_stops_the_writer(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let mut odd = message(1, 1_000, "alice", Some("bob"), "t\0ype");
    odd.id = "i\0d".to_owned();
    apply(
        db,
        1,
        vec![
            direct(id, odd, "t1", true),
            stored(id, message(2, 1_000, "alice", None, "chat")),
        ],
    )
    .await;
    // PostgreSQL's text holds no NUL: it may come back as U+FFFD, but the writer goes on.
    let same = |a: &str, b: &str| a.replace('\0', "\u{FFFD}") == b.replace('\0', "\u{FFFD}");
    let got = db.recent(id, "c", 10).await.unwrap();
    assert_eq!(offsets(&got), vec![1, 2]);
    assert!(same(&got[0].id, "i\0d") && same(&got[0].kind, "t\0ype"));
    let q = HistoryQuery {
        kind: Some("t\0ype".to_owned()),
        ..HistoryQuery::default()
    };
    assert_eq!(
        offsets(&db.history(id, "c", &q, 10, None).await.unwrap().0),
        vec![1]
    );
    let leased = lease(db, id, 10, 1_000, 2_000).await.leased;
    assert!(same(&leased[0].id, "i\0d"));
    let settled = settle(db, id, vec![ack("i\0d")], 2_000).await;
    assert_eq!(settled[0].as_ref().unwrap().outcome, Outcome::Acknowledged);
    assert_eq!(db.durable_log_applied().await.unwrap(), 2);
}

// Tenants and keys.

async fn keys_tenants_and_revocation(f: Fixture) {
    let db = &f.db;
    let tenant = |id: &str| TenantRow {
        id: id.to_owned(),
        created_at: 10,
        revoked_at: None,
    };
    assert!(db.insert_tenant(tenant("t1")).await.unwrap());
    assert!(!db.insert_tenant(tenant("t1")).await.unwrap());
    assert!(db.insert_tenant(tenant("t2")).await.unwrap());
    let key = |id: &str, tenant: Option<&str>| KeyRow {
        id: id.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        secret_hash: vec![0, 1, 2, 255],
        created_at: 20,
        revoked_at: None,
    };
    db.insert_key(key("k1", Some("t1"))).await.unwrap();
    db.insert_key(key("k2", Some("t1"))).await.unwrap();
    db.insert_key(key("k3", Some("t2"))).await.unwrap();
    db.insert_key(key("admin", None)).await.unwrap();
    assert!(
        db.insert_key(key("k1", Some("t1"))).await.is_err(),
        "key ids are unique"
    );

    db.revoke_key("admin", 30).await.unwrap();
    db.revoke_key("admin", 40).await.unwrap();
    db.revoke_tenant("t1", 50).await.unwrap();
    db.revoke_tenant("t1", 60).await.unwrap();
    let (mut tenants, mut keys) = db.load_keys().await.unwrap();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    let t: Vec<_> = tenants
        .iter()
        .map(|t| (t.id.as_str(), t.revoked_at))
        .collect();
    assert_eq!(t, vec![("t1", Some(50)), ("t2", None)]);
    assert_eq!(tenants[0].created_at, 10);
    let k: Vec<_> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.tenant_id.as_deref(), k.revoked_at))
        .collect();
    assert_eq!(
        k,
        vec![
            ("admin", None, Some(30)),
            ("k1", Some("t1"), Some(50)),
            ("k2", Some("t1"), Some(50)),
            ("k3", Some("t2"), None),
        ]
    );
    assert!(keys.iter().all(|k| k.secret_hash == [0, 1, 2, 255]));
    assert!(keys.iter().all(|k| k.created_at == 20));
}

async fn temporary_keys_expire_and_revoke(f: Fixture) {
    let db = &f.db;
    let temp = |id: &str, expires_at: i64| TemporaryRow {
        id: id.to_owned(),
        tenant_id: "t1".to_owned(),
        parent: "k1".to_owned(),
        created_at: 100,
        expires_at,
        revoked_at: None,
    };
    db.insert_temporary(temp("a", 1_000)).await.unwrap();
    db.insert_temporary(temp("b", 2_000)).await.unwrap();
    db.revoke_key("b", 500).await.unwrap();
    let live = |now| async move {
        let mut rows = db.load_temporary(now).await.unwrap();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        rows.into_iter()
            .map(|r| (r.id, r.revoked_at))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        live(1_000).await,
        vec![("a".to_owned(), None), ("b".to_owned(), Some(500))]
    );
    assert_eq!(live(1_001).await, vec![("b".to_owned(), Some(500))]);
    let rows = db.load_temporary(0).await.unwrap();
    let a = rows.iter().find(|r| r.id == "a").unwrap();
    assert_eq!((a.tenant_id.as_str(), a.parent.as_str()), ("t1", "k1"));
    assert_eq!((a.created_at, a.expires_at), (100, 1_000));
    // Pruning removes what expired before `now`; an unexpired key stays.
    db.prune_temporary(1_500).await.unwrap();
    assert_eq!(live(0).await, vec![("b".to_owned(), Some(500))]);
}

// Usage.

async fn usage_adds_up_and_keeps_peaks(f: Fixture) {
    let db = &f.db;
    let row = |key: &str, hour: i64, n: u64, peak: u64| UsageRow {
        tenant_id: "t1".to_owned(),
        key_id: key.to_owned(),
        period_start: hour,
        messages_in: n,
        messages_out: 2 * n,
        bytes_in: 10 * n,
        bytes_out: 20 * n,
        peak_connections: peak,
    };
    db.add_usage(vec![row("a", 0, 1, 5), row("B", 0, 1, 1)])
        .await
        .unwrap();
    // Twice the same row in one call, and again later: all of it adds up.
    db.add_usage(vec![
        row("a", 0, 2, 3),
        row("a", 0, 3, 7),
        row("a", 3_600, 1, 2),
    ])
    .await
    .unwrap();
    db.add_usage(vec![UsageRow {
        tenant_id: "t2".to_owned(),
        ..row("a", 0, 9, 9)
    }])
    .await
    .unwrap();
    db.add_usage(Vec::new()).await.unwrap();
    let rows = db.usage_rows("t1", 0, 7_200).await.unwrap();
    // By hour, then key by code point ("B" before "a").
    assert_eq!(
        rows,
        vec![row("B", 0, 1, 1), row("a", 0, 6, 7), row("a", 3_600, 1, 2)]
    );
    assert_eq!(db.usage_rows("t1", 1, 3_600).await.unwrap(), vec![]);
    assert_eq!(
        db.usage_rows("t1", 3_600, 3_601).await.unwrap(),
        vec![row("a", 3_600, 1, 2)]
    );
    assert_eq!(db.usage_rows("t2", 0, 7_200).await.unwrap().len(), 1);
}

async fn storage_of_counts_a_tenants_messages_and_bytes(f: Fixture) {
    let db = &f.db;
    let mine = channel(db, "t1", "a", StoragePolicy::Persistent).await;
    let also_mine = channel(db, "t1", "b", StoragePolicy::Persistent).await;
    let theirs = channel(db, "t2", "a", StoragePolicy::Persistent).await;
    assert_eq!(db.storage_of("t1").await.unwrap(), (0, 0));
    let mut m1 = message(1, 1_000, "x", None, "chat");
    m1.data = RawValue::from_string("\"héllo\"".to_owned()).unwrap();
    let mut m2 = message(1, 1_000, "x", None, "chat");
    m2.attachments = vec![Bytes::from_static(b"abcd")];
    let bytes =
        m1.data.get().len() + m2.data.get().len() + encode_attachments(&m2.attachments).len();
    apply(
        db,
        1,
        vec![
            stored(mine, m1),
            stored(also_mine, m2),
            stored(theirs, message(1, 1_000, "x", None, "chat")),
        ],
    )
    .await;
    assert_eq!(
        db.storage_of("t1").await.unwrap(),
        (2, bytes as u64),
        "bytes, not characters"
    );
    assert_eq!(db.storage_of("t2").await.unwrap().0, 1);
    assert_eq!(db.storage_of("t3").await.unwrap(), (0, 0));
}

// Channels.

async fn channels_are_created_once_and_round_trip(f: Fixture) {
    let db = &f.db;
    let full = ChannelRow {
        password_hash: Some("$argon2id$x".to_owned()),
        cache_retention: Some(CacheRetention {
            max_messages: Some(10),
            max_bytes: None,
            ttl_secs: Some(60),
        }),
        log_retention: Some(LogRetention {
            max_age_secs: Some(3_600),
        }),
        max_messages: 100,
        max_age_secs: 86_400,
        epoch: "abc".to_owned(),
        members: Some(vec!["ann".to_owned(), "bo".to_owned()]),
        expires_at: Some(9_000),
        created_at: 1_234,
        ..channel_row("t1", "team", StoragePolicy::Log)
    };
    let (row, created) = db.create_channel(full.clone(), 0).await.unwrap().unwrap();
    assert!(created);
    assert!(row.id > 0);
    assert_eq!(
        row,
        ChannelRow {
            id: row.id,
            ..full.clone()
        }
    );
    assert_eq!(
        db.get_channel("t1", "team").await.unwrap(),
        Some(row.clone())
    );

    // Again, with other fields: the stored row wins.
    let other = channel_row("t1", "team", StoragePolicy::Persistent);
    let (again, created) = db.create_channel(other, 0).await.unwrap().unwrap();
    assert!(!created);
    assert_eq!(again, row);

    // Only the cache limits, only the log limits, none: each reads back as written.
    let cache_only = ChannelRow {
        cache_retention: Some(CacheRetention::default()),
        ..channel_row("t1", "c1", StoragePolicy::Cache)
    };
    let (c1, _) = db.create_channel(cache_only, 0).await.unwrap().unwrap();
    assert_eq!(c1.cache_retention, Some(CacheRetention::default()));
    assert_eq!(c1.log_retention, None);
    let (c2, _) = db
        .create_channel(channel_row("t1", "c2", StoragePolicy::Ephemeral), 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (c2.cache_retention, c2.log_retention, c2.members),
        (None, None, None)
    );
    assert_eq!(c2.storage, StoragePolicy::Ephemeral);

    // Names are per tenant; public channels have tenant "".
    let (public, created) = db
        .create_channel(channel_row("", "team", StoragePolicy::Persistent), 0)
        .await
        .unwrap()
        .unwrap();
    assert!(created);
    assert_ne!(public.id, row.id);
    assert_eq!(db.get_channel("t2", "team").await.unwrap(), None);
    assert_eq!(db.get_channel("t1", "nope").await.unwrap(), None);
}

async fn create_channel_respects_the_per_tenant_max(f: Fixture) {
    let db = &f.db;
    for name in ["a", "b"] {
        let made = db
            .create_channel(channel_row("t1", name, StoragePolicy::Persistent), 2)
            .await
            .unwrap();
        assert!(made.unwrap().1);
    }
    let refused = db
        .create_channel(channel_row("t1", "c", StoragePolicy::Persistent), 2)
        .await
        .unwrap();
    assert!(refused.is_none(), "the tenant holds its maximum");
    let existing = db
        .create_channel(channel_row("t1", "a", StoragePolicy::Persistent), 2)
        .await
        .unwrap();
    assert!(
        !existing.unwrap().1,
        "an existing channel is found at the maximum"
    );
    assert!(
        db.create_channel(channel_row("t2", "c", StoragePolicy::Persistent), 2)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        db.create_channel(channel_row("t1", "c", StoragePolicy::Persistent), 0)
            .await
            .unwrap()
            .is_some(),
        "0: no limit"
    );
    assert_eq!(db.get_channel("t1", "c").await.unwrap().unwrap().name, "c");
}

async fn concurrent_create_channel_agrees(f: Fixture) {
    let db = &f.db;
    for round in 0..5 {
        let name = format!("c{round}");
        let (a, b) = tokio::join!(
            db.create_channel(channel_row("t1", &name, StoragePolicy::Persistent), 10),
            db.create_channel(channel_row("t1", &name, StoragePolicy::Persistent), 10),
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert_eq!(a.0.id, b.0.id);
        assert!(a.1 ^ b.1, "exactly one created it");
    }
}

async fn expired_channels_and_epochs(f: Fixture) {
    let db = &f.db;
    for (name, expires_at) in [("soon", Some(100)), ("later", Some(200)), ("never", None)] {
        let row = ChannelRow {
            expires_at,
            ..channel_row("t1", name, StoragePolicy::Persistent)
        };
        db.create_channel(row, 0).await.unwrap().unwrap();
    }
    assert_eq!(db.expired_channels(99).await.unwrap(), vec![]);
    assert_eq!(
        db.expired_channels(100).await.unwrap(),
        vec![("t1".to_owned(), "soon".to_owned())]
    );
    let mut both = db.expired_channels(1_000).await.unwrap();
    both.sort();
    assert_eq!(
        both,
        vec![
            ("t1".to_owned(), "later".to_owned()),
            ("t1".to_owned(), "soon".to_owned())
        ]
    );
    let id = db.get_channel("t1", "never").await.unwrap().unwrap().id;
    db.set_epoch(id, "fresh").await.unwrap();
    assert_eq!(
        db.get_channel("t1", "never").await.unwrap().unwrap().epoch,
        "fresh"
    );
}

// Messages.

async fn bounds_follow_messages_and_pruned_through(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let empty = db.bounds(id).await.unwrap();
    assert_eq!(
        (empty.first, empty.last, empty.last_ts, empty.pruned),
        (1, 0, 0, 0)
    );
    let missing = db.bounds(12_345).await.unwrap();
    assert_eq!((missing.first, missing.last, missing.pruned), (1, 0, 0));
    apply(
        db,
        1,
        (3..=5)
            .map(|o| stored(id, message(o, 1_000 + o as i64, "x", None, "chat")))
            .collect(),
    )
    .await;
    let stats = db.bounds(id).await.unwrap();
    assert_eq!(
        (stats.first, stats.last, stats.last_ts, stats.pruned),
        (3, 5, 1_005, 0)
    );
    // What retention removed counts for the head when it is beyond what is stored.
    db.set_pruned_through(id, 9).await.unwrap();
    db.set_pruned_through(id, 2).await.unwrap();
    let stats = db.bounds(id).await.unwrap();
    assert_eq!((stats.first, stats.last, stats.pruned), (3, 9, 9));
    let other = channel(db, "t1", "d", StoragePolicy::Log).await;
    db.set_pruned_through(other, 7).await.unwrap();
    let stats = db.bounds(other).await.unwrap();
    assert_eq!(
        (stats.first, stats.last, stats.last_ts, stats.pruned),
        (8, 7, 0, 7)
    );
}

async fn recent_and_recent_ids(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let other = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    apply(
        db,
        1,
        (1..=6)
            .map(|o| stored(id, message(o, 1_000, "x", None, "chat")))
            .chain([stored(other, message(7, 1_000, "x", None, "chat"))])
            .collect(),
    )
    .await;
    let got = db.recent(id, "named", 3).await.unwrap();
    assert_eq!(offsets(&got), vec![4, 5, 6]);
    assert!(got.iter().all(|m| m.channel == "named" && !m.ephemeral));
    assert_eq!(
        offsets(&db.recent(id, "c", 100).await.unwrap()),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(db.recent(id, "c", 0).await.unwrap().is_empty());
    assert_eq!(
        db.recent_ids(id, 5, 2).await.unwrap(),
        vec![("m3".to_owned(), 3), ("m4".to_owned(), 4)]
    );
    assert_eq!(
        db.recent_ids(id, u64::MAX, 1).await.unwrap(),
        vec![("m6".to_owned(), 6)]
    );
    assert!(db.recent_ids(id, 1, 10).await.unwrap().is_empty());
}

async fn history_filters_directions_and_visibility(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let spec: [(u64, &str, Option<&str>, &str); 8] = [
        (1, "ann", None, "chat"),
        (2, "bob", None, "chat"),
        (3, "ann", Some("bob"), "task"),
        (4, "cid", Some("ann"), "task"),
        (5, "cid", Some("dan"), "task"),
        (6, "bob", None, "note"),
        (7, "ann", None, "chat"),
        (8, "dan", Some("cid"), "chat"),
    ];
    apply(
        db,
        1,
        spec.iter()
            .map(|(o, from, to, kind)| stored(id, message(*o, 100 * *o as i64, from, *to, kind)))
            .collect(),
    )
    .await;
    let read = |q: HistoryQuery, limit: u32, visible_to: Option<&'static str>| async move {
        let (found, head) = db.history(id, "c", &q, limit, visible_to).await.unwrap();
        assert_eq!(head, 8);
        assert!(found.iter().all(|m| m.channel == "c"));
        offsets(&found)
    };
    let all = HistoryQuery::default();
    assert_eq!(
        read(all.clone(), 100, None).await,
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(
        read(all.clone(), 3, None).await,
        vec![1, 2, 3, 4],
        "limit + 1"
    );
    let backward = HistoryQuery {
        direction: Direction::Backward,
        ..HistoryQuery::default()
    };
    assert_eq!(read(backward.clone(), 2, None).await, vec![8, 7, 6]);
    let range = HistoryQuery {
        from_offset: Some(3),
        to_offset: Some(6),
        ..HistoryQuery::default()
    };
    assert_eq!(read(range.clone(), 100, None).await, vec![3, 4, 5, 6]);
    assert_eq!(
        read(
            HistoryQuery {
                direction: Direction::Backward,
                ..range
            },
            1,
            None
        )
        .await,
        vec![6, 5]
    );
    let times = HistoryQuery {
        from_ts: Some(200),
        to_ts: Some(500),
        ..HistoryQuery::default()
    };
    assert_eq!(read(times, 100, None).await, vec![2, 3, 4, 5]);
    let by_ann = HistoryQuery {
        sender: Some("ann".to_owned()),
        ..HistoryQuery::default()
    };
    assert_eq!(read(by_ann, 100, None).await, vec![1, 3, 7]);
    let tasks = HistoryQuery {
        kind: Some("task".to_owned()),
        ..HistoryQuery::default()
    };
    assert_eq!(read(tasks.clone(), 100, None).await, vec![3, 4, 5]);
    // Direct messages only for who sent or receives them.
    assert_eq!(
        read(all.clone(), 100, Some("ann")).await,
        vec![1, 2, 3, 4, 6, 7]
    );
    assert_eq!(
        read(all.clone(), 100, Some("cid")).await,
        vec![1, 2, 4, 5, 6, 7, 8]
    );
    assert_eq!(read(tasks, 100, Some("eve")).await, Vec::<u64>::new());
    let everything = HistoryQuery {
        from_offset: Some(0),
        to_offset: Some(u64::MAX),
        ..HistoryQuery::default()
    };
    assert_eq!(read(everything, 100, None).await.len(), 8);
    assert_eq!(read(all, 0, None).await, vec![1], "limit 0 still reads one");
    // The head counts what retention removed.
    db.set_pruned_through(id, 20).await.unwrap();
    let (_, head) = db.history(id, "c", &backward, 1, None).await.unwrap();
    assert_eq!(head, 20);
}

async fn prune_deletes_by_offset_and_age_and_remembers(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let other = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    apply(
        db,
        1,
        (1..=10)
            .map(|o| stored(id, message(o, 1_000 * o as i64, "x", None, "chat")))
            .chain([stored(other, message(1, 0, "x", None, "chat"))])
            .collect(),
    )
    .await;
    let stats = db.prune(id, 3, 0).await.unwrap();
    assert_eq!((stats.first, stats.last, stats.pruned), (3, 10, 2));
    // By age: everything up to the newest old-enough message goes.
    let stats = db.prune(id, 0, 5_500).await.unwrap();
    assert_eq!(
        (stats.first, stats.last, stats.pruned, stats.last_ts),
        (6, 10, 5, 10_000)
    );
    // Nothing matches: nothing changes.
    let stats = db.prune(id, 6, 1_000).await.unwrap();
    assert_eq!((stats.first, stats.pruned), (6, 5));
    assert_eq!(
        offsets(&db.recent(id, "c", 100).await.unwrap()),
        vec![6, 7, 8, 9, 10]
    );
    // Everything: the head stays.
    let stats = db.prune(id, u64::MAX, 0).await.unwrap();
    assert_eq!((stats.first, stats.last, stats.pruned), (11, 10, 10));
    assert!(db.recent(id, "c", 100).await.unwrap().is_empty());
    assert_eq!(db.bounds(id).await.unwrap().last, 10);
    assert_eq!(
        db.recent(other, "d", 10).await.unwrap().len(),
        1,
        "other channels keep theirs"
    );
    // Later messages at pruned offsets are not stored again.
    apply(db, 100, vec![stored(id, message(10, 0, "x", None, "chat"))]).await;
    assert!(db.recent(id, "c", 100).await.unwrap().is_empty());
}

async fn log_dropped_counts_only_for_channels_the_database_does_not_keep(f: Fixture) {
    let db = &f.db;
    let kept = channel(db, "t1", "p", StoragePolicy::Persistent).await;
    let log = channel(db, "t1", "l", StoragePolicy::Log).await;
    let cache = channel(db, "t1", "c", StoragePolicy::Cache).await;
    db.log_dropped(vec![
        (kept, 5),
        (log, 5),
        (log, 8),
        (log, 3),
        (cache, 4),
        (777, 9),
    ])
    .await
    .unwrap();
    db.log_dropped(Vec::new()).await.unwrap();
    assert_eq!(db.bounds(kept).await.unwrap().pruned, 0);
    assert_eq!(db.bounds(log).await.unwrap().pruned, 8);
    assert_eq!(db.bounds(cache).await.unwrap().pruned, 4);
    db.log_dropped(vec![(log, 6)]).await.unwrap();
    assert_eq!(db.bounds(log).await.unwrap().pruned, 8, "never lowered");
}

// Inboxes.

async fn inbox_acks_and_rejects(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    fill_inbox(db, id, 4).await;
    let leased = lease(db, id, 10, 1_000, 5_000).await;
    assert_eq!(ids(&leased.leased), vec!["m1", "m2", "m3", "m4"]);
    assert!(
        leased
            .leased
            .iter()
            .all(|r| r.deliveries == 1 && r.visible_at == 6_000)
    );

    let settled = settle(
        db,
        id,
        vec![
            ack("m1"),
            ack("m1"),
            reject("m2", Some("busy"), true),
            reject("m3", None, false),
            ack("nope"),
        ],
        5_100,
    )
    .await;
    let outcomes: Vec<_> = settled
        .iter()
        .map(|s| s.as_ref().map(|s| s.outcome.clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Some(Outcome::Acknowledged),
            None,
            Some(Outcome::Rejected(Some("busy".to_owned()))),
            Some(Outcome::DeadLettered("rejected".to_owned())),
            None,
        ]
    );
    let first = settled[0].as_ref().unwrap();
    assert_eq!((first.id.as_str(), first.sender.as_str()), ("m1", "alice"));
    assert!(first.receipt && first.removed());
    assert_eq!(first.deliveries, 1);
    assert!(!settled[2].as_ref().unwrap().removed());
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 2)]
    );

    // A requeued message is visible again at once; its next delivery counts.
    let again = lease(db, id, 10, 1_000, 5_100).await;
    assert_eq!(ids(&again.leased), vec!["m2"]);
    assert_eq!(again.leased[0].deliveries, 2);
    // The second rejection reaches max_rejections (2): dead-lettered.
    let settled = settle(db, id, vec![reject("m2", None, true)], 5_200).await;
    assert_eq!(
        settled[0].as_ref().unwrap().outcome,
        Outcome::DeadLettered("max_rejections".to_owned())
    );
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    let mut dead = db.dead_letters(id, "t1", None, (0, 0), 10).await.unwrap();
    dead.sort_by_key(|d| d.offset);
    let summary: Vec<_> = dead
        .iter()
        .map(|d| (d.offset, d.rejections, d.reason.as_str(), d.dead_at))
        .collect();
    assert_eq!(
        summary,
        vec![(2, 2, "max_rejections", 5_200), (3, 1, "rejected", 5_100)]
    );
    // Settling and leasing in one batch: the acknowledged message is not leased again.
    let both = db
        .inbox_batch(
            id,
            "bob",
            InboxBatch {
                settle: vec![ack("m4")],
                lease: Some((10, 1_000)),
            },
            LIMITS,
            7_000,
        )
        .await
        .unwrap();
    assert_eq!(
        both.settled[0].as_ref().unwrap().outcome,
        Outcome::Acknowledged
    );
    assert!(both.leased.is_empty());
    assert_eq!(db.inbox_counts(id).await.unwrap(), vec![]);
}

async fn inbox_leases_in_order_with_visibility_and_max_deliveries(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    fill_inbox(db, id, 3).await;
    let first = lease(db, id, 2, 1_000, 10_000).await;
    assert_eq!(ids(&first.leased), vec!["m1", "m2"]);
    assert_eq!(first.next_visible, Some(11_000));
    let second = lease(db, id, 2, 500, 10_100).await;
    assert_eq!(ids(&second.leased), vec!["m3"]);
    assert_eq!(second.next_visible, Some(10_600));
    let none = lease(db, id, 2, 1_000, 10_200).await;
    assert!(none.leased.is_empty() && none.dead.is_empty());
    assert_eq!(none.next_visible, Some(10_600));
    // Once the visibility timeout passes, they come back, oldest first.
    let back = lease(db, id, 10, 1_000, 11_000).await;
    assert_eq!(ids(&back.leased), vec!["m1", "m2", "m3"]);
    assert!(back.leased.iter().all(|r| r.deliveries == 2));
    let third = lease(db, id, 10, 1_000, 12_000).await;
    assert!(third.leased.iter().all(|r| r.deliveries == 3));
    // Delivered max_deliveries (3) times: dead-lettered instead of leased.
    let dead = lease(db, id, 10, 1_000, 13_000).await;
    assert!(dead.leased.is_empty());
    let d: Vec<_> = dead
        .dead
        .iter()
        .map(|s| (s.id.as_str(), s.deliveries, s.outcome.clone()))
        .collect();
    let why = Outcome::DeadLettered("max_deliveries".to_owned());
    assert_eq!(
        d,
        vec![
            ("m1", 3, why.clone()),
            ("m2", 3, why.clone()),
            ("m3", 3, why)
        ]
    );
    assert_eq!(dead.next_visible, None);
    assert_eq!(db.inbox_counts(id).await.unwrap(), vec![]);
    let letters = db
        .dead_letters(id, "t1", Some("bob"), (0, 0), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 3);
    assert!(
        letters
            .iter()
            .all(|l| l.deliveries == 3 && l.dead_at == 13_000)
    );
    assert!(letters.iter().all(|l| l.reason == "max_deliveries"));
    // Another recipient's inbox is its own.
    let empty = db
        .inbox_batch(
            id,
            "eve",
            InboxBatch {
                settle: vec![ack("m1")],
                lease: Some((10, 1_000)),
            },
            LIMITS,
            20_000,
        )
        .await
        .unwrap();
    assert!(empty.settled[0].is_none() && empty.leased.is_empty());
}

async fn inbox_release_makes_leased_messages_visible(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    fill_inbox(db, id, 3).await;
    assert_eq!(lease(db, id, 2, 60_000, 5_000).await.leased.len(), 2);
    db.inbox_release(id, "bob", vec!["m2".to_owned(), "m3".to_owned()], 6_000)
        .await
        .unwrap();
    db.inbox_release(id, "bob", Vec::new(), 6_000)
        .await
        .unwrap();
    // m2 is back at once; m3 was never leased, so it was visible already; m1 stays leased.
    let again = lease(db, id, 10, 60_000, 6_000).await;
    assert_eq!(ids(&again.leased), vec!["m2", "m3"]);
    assert_eq!(again.leased[0].deliveries, 2);
    assert_eq!(again.leased[1].deliveries, 1);
    assert_eq!(again.next_visible, Some(65_000));
}

async fn dead_letters_page_by_cursor_and_tenant(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let other = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    // m1..m4 from t1 to bob, m5 from t2 to bob, m6 from t1 to cid, m7 in another channel.
    let mut records: Vec<Record> = (1..=4)
        .map(|o| {
            direct(
                id,
                message(o, 1_000, "alice", Some("bob"), "task"),
                "t1",
                true,
            )
        })
        .collect();
    records.push(direct(
        id,
        message(5, 1_000, "zed", Some("bob"), "task"),
        "t2",
        true,
    ));
    records.push(direct(
        id,
        message(6, 1_000, "alice", Some("cid"), "task"),
        "t1",
        true,
    ));
    records.push(direct(
        other,
        message(7, 1_000, "alice", Some("bob"), "task"),
        "t1",
        true,
    ));
    apply(db, 1, records).await;
    // Dead at: m3 and m1 at 100, m2 at 200, m4 and m5 at 300, m6 at 150.
    for (ids, now) in [
        (vec!["m3", "m1"], 100),
        (vec!["m2"], 200),
        (vec!["m4", "m5"], 300),
    ] {
        settle(
            db,
            id,
            ids.iter().map(|i| reject(i, Some("no"), false)).collect(),
            now,
        )
        .await;
    }
    let settled = db
        .inbox_batch(
            id,
            "cid",
            InboxBatch {
                settle: vec![reject("m6", None, false)],
                lease: None,
            },
            LIMITS,
            150,
        )
        .await
        .unwrap();
    assert!(settled.settled[0].is_some());
    settle(db, other, vec![reject("m7", None, false)], 100).await;

    let page = |recipient: Option<&'static str>, after: (i64, u64), limit| async move {
        db.dead_letters(id, "t1", recipient, after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.dead_at, d.offset))
            .collect::<Vec<_>>()
    };
    assert_eq!(page(Some("bob"), (0, 0), 2).await, vec![(100, 1), (100, 3)]);
    assert_eq!(
        page(Some("bob"), (100, 3), 2).await,
        vec![(200, 2), (300, 4)]
    );
    assert_eq!(page(Some("bob"), (300, 4), 2).await, vec![]);
    assert_eq!(page(Some("bob"), (100, 1), 1).await, vec![(100, 3)]);
    assert_eq!(
        page(None, (0, 0), 10).await,
        vec![(100, 1), (100, 3), (150, 6), (200, 2), (300, 4)]
    );
    let theirs = db.dead_letters(id, "t2", None, (0, 0), 10).await.unwrap();
    assert_eq!(theirs.len(), 1);
    let d = &theirs[0];
    assert_eq!(
        (d.offset, d.recipient.as_str(), d.reason.as_str()),
        (5, "bob", "no")
    );
    assert_eq!((d.deliveries, d.rejections), (0, 1));
    let m: Message = serde_json::from_str(&d.message).unwrap();
    assert_eq!(m.from, "zed");

    assert!(
        !db.delete_dead_letter(id, "t2", "m1").await.unwrap(),
        "another tenant's"
    );
    assert!(db.delete_dead_letter(id, "t1", "m1").await.unwrap());
    assert!(!db.delete_dead_letter(id, "t1", "m1").await.unwrap());
    assert_eq!(
        page(Some("bob"), (0, 0), 10).await,
        vec![(100, 3), (200, 2), (300, 4)]
    );
    assert_eq!(
        db.dead_letters(other, "t1", None, (0, 0), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    // A pending message is no dead letter.
    apply(
        db,
        50,
        vec![direct(
            other,
            message(8, 1, "a", Some("bob"), "t"),
            "t1",
            true,
        )],
    )
    .await;
    assert!(!db.delete_dead_letter(other, "t1", "m8").await.unwrap());
}

async fn inbox_prune_expires_waiting_messages_and_drops_old_dead_letters(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    // Created at 1001..=1004.
    fill_inbox(db, id, 4).await;
    settle(db, id, vec![reject("m4", None, false)], 1_500).await;
    // Retention 1000 at 2003: m1 and m2 (created before 1003) expire; m4's death is recent.
    assert_eq!(db.inbox_prune(2_003, 1_000).await.unwrap(), 2);
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    let dead = db.dead_letters(id, "t1", None, (0, 0), 10).await.unwrap();
    let d: Vec<_> = dead
        .iter()
        .map(|d| (d.offset, d.reason.as_str(), d.dead_at))
        .collect();
    assert_eq!(
        d,
        vec![
            (4, "rejected", 1_500),
            (1, "expired", 2_003),
            (2, "expired", 2_003)
        ]
    );
    // Later: dead letters older than the retention go; m3 expires.
    assert_eq!(db.inbox_prune(2_600, 1_000).await.unwrap(), 1);
    let d: Vec<_> = db
        .dead_letters(id, "t1", None, (0, 0), 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.offset)
        .collect();
    assert_eq!(d, vec![1, 2, 3]);
    assert_eq!(db.inbox_prune(10_000, 1_000).await.unwrap(), 0);
    assert!(
        db.dead_letters(id, "t1", None, (0, 0), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

// Channel storage.

async fn kv_writes_compare_and_set_and_deletes(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let put = |w: KvWrite| async move { db.kv_put(w).await.unwrap() };
    let first = put(kv(id, "k", "1", None, 100)).await.unwrap();
    assert_eq!(
        first,
        KvRow {
            key: "k".to_owned(),
            value: "1".to_owned(),
            version: 1,
            updated_at: 100,
            updated_by: "alice".to_owned(),
            expires_at: None,
        }
    );
    assert_eq!(db.kv_get(id, "k", 100).await.unwrap(), Some(first));
    let second = put(kv(id, "k", "{\"a\":2}", Some(1), 200)).await.unwrap();
    assert_eq!((second.version, second.value.as_str()), (2, "{\"a\":2}"));
    assert_eq!(
        put(kv(id, "k", "x", Some(1), 300)).await,
        Err(KvRefused::Conflict(2))
    );
    assert_eq!(
        put(kv(id, "k", "x", Some(0), 300)).await,
        Err(KvRefused::Conflict(2))
    );
    assert_eq!(put(kv(id, "k", "3", None, 300)).await.unwrap().version, 3);
    assert_eq!(
        put(kv(id, "new", "1", Some(0), 300)).await.unwrap().version,
        1
    );
    assert_eq!(
        put(kv(id, "none", "1", Some(4), 300)).await,
        Err(KvRefused::Conflict(0))
    );
    assert_eq!(db.kv_get(id, "none", 300).await.unwrap(), None);
    assert_eq!(db.kv_get(id, "k", 300).await.unwrap().unwrap().value, "3");

    assert_eq!(
        db.kv_delete(id, "k", Some(2), 400).await.unwrap(),
        Err(KvRefused::Conflict(3))
    );
    assert_eq!(
        db.kv_delete(id, "k", Some(3), 400).await.unwrap(),
        Ok(Some(3))
    );
    assert_eq!(db.kv_delete(id, "k", None, 400).await.unwrap(), Ok(None));
    assert_eq!(
        db.kv_delete(id, "k", Some(0), 400).await.unwrap(),
        Err(KvRefused::Conflict(0))
    );
    assert_eq!(
        db.kv_delete(id, "new", None, 400).await.unwrap(),
        Ok(Some(1))
    );
    assert_eq!(db.kv_get(id, "new", 400).await.unwrap(), None);
    // A deleted key starts over at version 1.
    assert_eq!(
        put(kv(id, "k", "again", Some(0), 500))
            .await
            .unwrap()
            .version,
        1
    );
    // Keys are per channel.
    let other = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    assert_eq!(db.kv_get(other, "k", 500).await.unwrap(), None);
}

async fn kv_entries_expire_and_channels_hold_at_most_max_keys(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let with = |key: &str, expires_at: Option<i64>, max_keys: usize, now: i64| KvWrite {
        expires_at,
        max_keys,
        ..kv(id, key, "1", None, now)
    };
    let row = db
        .kv_put(with("t", Some(1_000), 0, 100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.expires_at, Some(1_000));
    assert!(db.kv_get(id, "t", 999).await.unwrap().is_some());
    assert_eq!(
        db.kv_get(id, "t", 1_000).await.unwrap(),
        None,
        "expired at expires_at"
    );
    // An expired key counts as absent: a write starts it over.
    let revived = db
        .kv_put(KvWrite {
            expected: Some(0),
            ..with("t", None, 0, 1_000)
        })
        .await;
    assert_eq!(revived.unwrap().unwrap().version, 1);

    db.kv_put(with("a", None, 3, 1_000)).await.unwrap().unwrap();
    db.kv_put(with("b", Some(2_000), 3, 1_000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        db.kv_put(with("c", None, 3, 1_000)).await.unwrap(),
        Err(KvRefused::Full)
    );
    // Overwriting a live key is no new key.
    assert_eq!(
        db.kv_put(with("a", None, 3, 1_000))
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    // Once b expires, there is room again.
    assert_eq!(
        db.kv_put(with("c", None, 3, 2_000))
            .await
            .unwrap()
            .unwrap()
            .version,
        1
    );
    assert_eq!(
        db.kv_put(with("d", None, 3, 2_000)).await.unwrap(),
        Err(KvRefused::Full)
    );
    assert!(
        db.kv_put(with("d", None, 0, 2_000)).await.unwrap().is_ok(),
        "0: no limit"
    );

    // Pruning deletes expired entries for good (read at a time before they expired).
    db.kv_put(with("e", Some(5_000), 0, 2_000))
        .await
        .unwrap()
        .unwrap();
    db.kv_prune(2_000).await.unwrap();
    assert_eq!(db.kv_get(id, "b", 1_500).await.unwrap(), None);
    assert!(db.kv_get(id, "e", 1_500).await.unwrap().is_some());
    assert!(db.kv_get(id, "a", 1_500).await.unwrap().is_some());
}

async fn kv_lists_by_prefix_after_and_limit_in_code_point_order(f: Fixture) {
    let db = &f.db;
    let id = channel(db, "t1", "c", StoragePolicy::Persistent).await;
    let other = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    for key in ["a/2", "a/10", "B", "b/x", "é", "a/1", "a", "ab"] {
        db.kv_put(kv(id, key, "1", None, 100))
            .await
            .unwrap()
            .unwrap();
    }
    db.kv_put(KvWrite {
        expires_at: Some(200),
        ..kv(id, "a/9", "1", None, 100)
    })
    .await
    .unwrap()
    .unwrap();
    db.kv_put(kv(other, "a/3", "1", None, 100))
        .await
        .unwrap()
        .unwrap();
    let list = |prefix: &'static str, after: &'static str, limit, now| async move {
        db.kv_list(id, prefix, after, limit, now)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list("", "", 100, 300).await,
        vec!["B", "a", "a/1", "a/10", "a/2", "ab", "b/x", "é"]
    );
    assert_eq!(list("a/", "", 100, 300).await, vec!["a/1", "a/10", "a/2"]);
    assert_eq!(
        list("a/", "", 100, 150).await,
        vec!["a/1", "a/10", "a/2", "a/9"]
    );
    assert_eq!(list("a/", "a/10", 100, 300).await, vec!["a/2"]);
    assert_eq!(list("a", "", 2, 300).await, vec!["a", "a/1"]);
    assert_eq!(list("", "a/2", 2, 300).await, vec!["ab", "b/x"]);
    assert_eq!(list("", "zzz", 10, 300).await, vec!["é"]);
    assert_eq!(list("c", "", 10, 300).await, Vec::<String>::new());
    let rows = db.kv_list(id, "b/", "", 10, 300).await.unwrap();
    assert_eq!(kv_keys(&rows), vec!["b/x"]);
    assert_eq!((rows[0].version, rows[0].updated_by.as_str()), (1, "alice"));
}

// The agent directory, streams and webhooks.

async fn agents_round_trip(f: Fixture) {
    let db = &f.db;
    let agent = |tenant: &str, name: &str, caps: &str, at: i64| AgentRow {
        tenant_id: tenant.to_owned(),
        name: name.to_owned(),
        capabilities: caps.to_owned(),
        metadata: "{\"v\":1}".to_owned(),
        updated_at: at,
    };
    db.put_agent(agent("t1", "ann", "[\"a\"]", 1))
        .await
        .unwrap();
    db.put_agent(agent("t2", "ann", "[]", 2)).await.unwrap();
    db.put_agent(agent("t1", "ann", "[\"a\",\"b\"]", 3))
        .await
        .unwrap();
    let mut all = db.load_agents().await.unwrap();
    all.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let a: Vec<_> = all
        .iter()
        .map(|a| {
            (
                a.tenant_id.as_str(),
                a.name.as_str(),
                a.capabilities.as_str(),
                a.updated_at,
            )
        })
        .collect();
    assert_eq!(
        a,
        vec![("t1", "ann", "[\"a\",\"b\"]", 3), ("t2", "ann", "[]", 2)]
    );
    assert_eq!(all[0].metadata, "{\"v\":1}");
    assert!(db.delete_agent("t1", "ann").await.unwrap());
    assert!(!db.delete_agent("t1", "ann").await.unwrap());
    assert_eq!(db.load_agents().await.unwrap().len(), 1);
}

async fn streams_round_trip(f: Fixture) {
    let db = &f.db;
    let stream = |id: &str, next_seq: u64, closed: bool| StreamRow {
        id: id.to_owned(),
        channel_id: 7,
        offer: "{\"name\":\"f\"}".to_owned(),
        recipient: "bob".to_owned(),
        next_seq,
        offset: next_seq * 1_000,
        acked: next_seq / 2,
        checksum: closed.then(|| "abc".to_owned()),
        total_size: closed.then_some(1 << 40),
        updated_at: next_seq as i64,
    };
    db.put_stream(stream("s1", 1, false)).await.unwrap();
    db.put_stream(stream("s2", 2, false)).await.unwrap();
    db.put_stream(stream("s1", 9, true)).await.unwrap();
    let mut all = db.load_streams().await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let s: Vec<_> = all
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.next_seq,
                s.offset,
                s.acked,
                s.checksum.as_deref(),
                s.total_size,
                s.updated_at,
            )
        })
        .collect();
    assert_eq!(
        s,
        vec![
            ("s1", 9, 9_000, 4, Some("abc"), Some(1 << 40), 9),
            ("s2", 2, 2_000, 1, None, None, 2)
        ]
    );
    assert!(
        all.iter()
            .all(|s| s.channel_id == 7 && s.recipient == "bob")
    );
    assert_eq!(all[0].offer, "{\"name\":\"f\"}");
    db.delete_stream("s1").await.unwrap();
    db.delete_stream("s1").await.unwrap();
    let left: Vec<_> = db
        .load_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, vec!["s2"]);
}

async fn webhooks_and_their_attempts(f: Fixture) {
    let db = &f.db;
    let hook = |id: &str, tenant: &str| WebhookRow {
        id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        url: "http://127.0.0.1:1/hook".to_owned(),
        secret: "s3cret".to_owned(),
        events: "[\"message\"]".to_owned(),
        channel: (id == "w1").then(|| "ops*".to_owned()),
        types: (id == "w1").then(|| "[\"alert\"]".to_owned()),
        created_at: 10,
    };
    db.insert_webhook(hook("w1", "t1")).await.unwrap();
    db.insert_webhook(hook("w2", "t2")).await.unwrap();
    assert!(
        db.insert_webhook(hook("w1", "t1")).await.is_err(),
        "ids are unique"
    );
    let mut all = db.load_webhooks().await.unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all.len(), 2);
    let w = &all[0];
    assert_eq!(
        (w.id.as_str(), w.tenant_id.as_str(), w.url.as_str()),
        ("w1", "t1", "http://127.0.0.1:1/hook")
    );
    assert_eq!(
        (w.secret.as_str(), w.events.as_str()),
        ("s3cret", "[\"message\"]")
    );
    assert_eq!(
        (w.channel.as_deref(), w.types.as_deref(), w.created_at),
        (Some("ops*"), Some("[\"alert\"]"), 10)
    );
    assert_eq!(
        (all[1].channel.as_deref(), all[1].types.as_deref()),
        (None, None)
    );

    let attempt = |hook: &str, n: u32| AttemptRow {
        webhook_id: hook.to_owned(),
        delivery_id: format!("d{n}"),
        event: "message".to_owned(),
        attempt: n,
        ts: 1_000 + n as i64,
        status: n.is_multiple_of(2).then_some(500),
        error: (!n.is_multiple_of(2)).then(|| "refused".to_owned()),
        duration_ms: 7 * n as u64,
        will_retry: n.is_multiple_of(3),
    };
    db.insert_attempts((1..=3).map(|n| attempt("w1", n)).collect(), 5)
        .await
        .unwrap();
    db.insert_attempts(
        (4..=7)
            .map(|n| attempt("w1", n))
            .chain([attempt("w2", 1)])
            .collect(),
        5,
    )
    .await
    .unwrap();
    db.insert_attempts(Vec::new(), 5).await.unwrap();
    let got = db.attempts("w1", 100).await.unwrap();
    let n: Vec<_> = got.iter().map(|a| a.attempt).collect();
    assert_eq!(n, vec![7, 6, 5, 4, 3], "the newest five, newest first");
    let a = &got[1];
    assert_eq!(
        (a.delivery_id.as_str(), a.event.as_str(), a.ts),
        ("d6", "message", 1_006)
    );
    assert_eq!(
        (a.status, a.error.as_deref(), a.duration_ms, a.will_retry),
        (Some(500), None, 42, true)
    );
    assert_eq!(
        (got[0].status, got[0].error.as_deref(), got[0].will_retry),
        (None, Some("refused"), false)
    );
    assert_eq!(db.attempts("w1", 2).await.unwrap().len(), 2);
    assert_eq!(db.attempts("w2", 100).await.unwrap().len(), 1);
    // keep 0 keeps none.
    db.insert_attempts(vec![attempt("w2", 2)], 0).await.unwrap();
    assert!(db.attempts("w2", 100).await.unwrap().is_empty());

    assert!(
        !db.delete_webhook("t2", "w1").await.unwrap(),
        "another tenant's"
    );
    assert!(db.delete_webhook("t1", "w1").await.unwrap());
    assert!(!db.delete_webhook("t1", "w1").await.unwrap());
    assert!(db.attempts("w1", 100).await.unwrap().is_empty());
    let left: Vec<_> = db
        .load_webhooks()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.id)
        .collect();
    assert_eq!(left, vec!["w2"]);
}

// Whole-store behaviour.

async fn delete_channel_takes_its_messages_storage_and_inboxes(f: Fixture) {
    let db = &f.db;
    let gone = channel(db, "t1", "gone", StoragePolicy::Persistent).await;
    let kept = channel(db, "t1", "kept", StoragePolicy::Persistent).await;
    for id in [gone, kept] {
        apply(
            db,
            if id == gone { 1 } else { 10 },
            vec![
                stored(id, message(1, 1_000, "x", None, "chat")),
                direct(id, message(2, 1_000, "x", Some("bob"), "task"), "t1", true),
            ],
        )
        .await;
        db.kv_put(kv(id, "k", "1", None, 100))
            .await
            .unwrap()
            .unwrap();
    }
    db.set_pruned_through(gone, 1).await.unwrap();
    db.delete_channel(gone).await.unwrap();
    assert_eq!(db.get_channel("t1", "gone").await.unwrap(), None);
    assert!(db.recent(gone, "gone", 10).await.unwrap().is_empty());
    let stats = db.bounds(gone).await.unwrap();
    assert_eq!((stats.first, stats.last, stats.pruned), (1, 0, 0));
    assert_eq!(db.kv_get(gone, "k", 100).await.unwrap(), None);
    assert_eq!(db.inbox_counts(gone).await.unwrap(), vec![]);
    assert_eq!(db.storage_of("t1").await.unwrap().0, 2);
    // The other channel keeps everything.
    assert_eq!(
        offsets(&db.recent(kept, "kept", 10).await.unwrap()),
        vec![1, 2]
    );
    assert!(db.kv_get(kept, "k", 100).await.unwrap().is_some());
    assert_eq!(
        db.inbox_counts(kept).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    // The name is free again.
    let (row, created) = db
        .create_channel(channel_row("t1", "gone", StoragePolicy::Persistent), 0)
        .await
        .unwrap()
        .unwrap();
    assert!(created);
    assert_ne!(row.id, gone);
    db.delete_channel(12_345).await.unwrap();
}

async fn everything_survives_a_restart(mut f: Fixture) {
    let id = channel(&f.db, "t1", "c", StoragePolicy::Persistent).await;
    apply(
        &f.db,
        1,
        vec![direct(
            id,
            message(1, 1_000, "x", Some("bob"), "task"),
            "t1",
            true,
        )],
    )
    .await;
    f.db.put_setting("s", "v").await.unwrap();
    f.db.kv_put(kv(id, "k", "1", None, 100))
        .await
        .unwrap()
        .unwrap();
    f.reopen().await;
    let db = &f.db;
    let backend = match f.place {
        Place::Sqlite(_) => "sqlite",
        Place::Postgres(_) => "postgres",
    };
    assert_eq!(db.backend(), backend);
    assert_eq!(db.get_setting("s").await.unwrap().as_deref(), Some("v"));
    assert_eq!(db.durable_log_applied().await.unwrap(), 1);
    assert_eq!(db.get_channel("t1", "c").await.unwrap().unwrap().id, id);
    assert_eq!(offsets(&db.recent(id, "c", 10).await.unwrap()), vec![1]);
    assert_eq!(
        db.inbox_counts(id).await.unwrap(),
        vec![("bob".to_owned(), 1)]
    );
    assert_eq!(db.kv_get(id, "k", 100).await.unwrap().unwrap().version, 1);
    let next = channel(db, "t1", "d", StoragePolicy::Persistent).await;
    assert!(next > id, "ids are not reused");
}

async fn a_closed_store_refuses_writes(f: Fixture) {
    f.db.put_setting("a", "1").await.unwrap();
    f.db.close().await;
    let e = f.db.put_setting("a", "2").await.unwrap_err();
    assert_eq!(e.code, switchboard_protocol::ErrorCode::ServerShutdown);
    let e =
        f.db.create_channel(channel_row("t1", "c", StoragePolicy::Persistent), 0)
            .await
            .unwrap_err();
    assert_eq!(e.code, switchboard_protocol::ErrorCode::ServerShutdown);
}

macro_rules! conformance {
    ($module:ident, $open:expr) => {
        mod $module {
            use super::*;

            conformance!(@checks $open;
                settings_round_trip_and_init_setting_keeps_the_first,
                set_log_records_the_log_and_starts_new_epochs,
                apply_log_copies_messages_and_inbox_entries,
                apply_log_skips_deleted_channels_and_pruned_offsets,
                apply_log_twice_changes_nothing_and_never_moves_back,
                a_nul_in_a_message_id_or_type_never_stops_the_writer,
                keys_tenants_and_revocation,
                temporary_keys_expire_and_revoke,
                usage_adds_up_and_keeps_peaks,
                storage_of_counts_a_tenants_messages_and_bytes,
                channels_are_created_once_and_round_trip,
                create_channel_respects_the_per_tenant_max,
                concurrent_create_channel_agrees,
                expired_channels_and_epochs,
                bounds_follow_messages_and_pruned_through,
                recent_and_recent_ids,
                history_filters_directions_and_visibility,
                prune_deletes_by_offset_and_age_and_remembers,
                log_dropped_counts_only_for_channels_the_database_does_not_keep,
                inbox_acks_and_rejects,
                inbox_leases_in_order_with_visibility_and_max_deliveries,
                inbox_release_makes_leased_messages_visible,
                dead_letters_page_by_cursor_and_tenant,
                inbox_prune_expires_waiting_messages_and_drops_old_dead_letters,
                kv_writes_compare_and_set_and_deletes,
                kv_entries_expire_and_channels_hold_at_most_max_keys,
                kv_lists_by_prefix_after_and_limit_in_code_point_order,
                agents_round_trip,
                streams_round_trip,
                webhooks_and_their_attempts,
                delete_channel_takes_its_messages_storage_and_inboxes,
                everything_survives_a_restart,
                a_closed_store_refuses_writes,
            );
        }
    };
    (@checks $open:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                super::$check($open().await).await;
            }
        )*
    };
}

conformance!(sqlite, open_sqlite);
conformance!(postgres, open_postgres);

/// Several stores on one PostgreSQL database, as several nodes use it.
mod postgres_nodes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_at_once_create_the_schema_once() {
        let t = TestDatabase::create().await;
        let stores = futures_util::future::join_all((0..4).map(|_| t.store())).await;
        for (i, db) in stores.iter().enumerate() {
            db.put_setting(&format!("node{i}"), "up").await.unwrap();
        }
        assert_eq!(
            stores[0].get_setting("node3").await.unwrap().as_deref(),
            Some("up")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_database_connects_and_locks_the_nodes_data_directory() {
        let t = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default().storage;
        config.db = crate::config::DbBackend::Postgres;
        config.postgres_url = t.url.clone();
        config.postgres_connections = 2;
        let first = open_database(dir.path(), &config).await.unwrap();
        assert_eq!(first.backend(), "postgres");
        first.put_setting("s", "1").await.unwrap();
        // The database is shared, the data directory (embedded log, spools) is not.
        let err = open_database(dir.path(), &config).await.err().unwrap();
        assert!(
            err.message
                .contains("in use by another switchboard process"),
            "{err:?}"
        );
        let other_dir = tempfile::tempdir().unwrap();
        let second = open_database(other_dir.path(), &config).await.unwrap();
        assert_eq!(second.get_setting("s").await.unwrap().as_deref(), Some("1"));
        first.close().await;
        let again = open_database(dir.path(), &config).await.unwrap();
        assert_eq!(again.get_setting("s").await.unwrap().as_deref(), Some("1"));

        // A server that is not there: a clear error, and the directory is not left locked.
        config.postgres_url = "postgres://postgres@127.0.0.1:1/nothing".to_owned();
        let lone = tempfile::tempdir().unwrap();
        let err = open_database(lone.path(), &config).await.err().unwrap();
        assert_eq!(
            err.code,
            switchboard_protocol::ErrorCode::StorageUnavailable
        );
        assert!(
            err.message
                .contains("cannot connect to PostgreSQL at 127.0.0.1:1/nothing"),
            "{err:?}"
        );
        config.postgres_url = "mysql://nope".to_owned();
        assert!(open_database(lone.path(), &config).await.is_err());
        assert!(lock_data_dir(lone.path()).is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_consumers_never_lease_the_same_message() {
        let t = TestDatabase::create().await;
        let (a, b) = (t.store().await, t.store().await);
        let id = channel(&a, "t1", "c", StoragePolicy::Persistent).await;
        fill_inbox(&a, id, 300).await;
        let consume = |db: Arc<dyn Database>| async move {
            let mut got = Vec::new();
            loop {
                let leased = lease(&db, id, 7, 600_000, 10_000).await.leased;
                if leased.is_empty() {
                    return got;
                }
                got.extend(leased.into_iter().map(|r| r.offset));
            }
        };
        let (x, y) = tokio::join!(
            tokio::spawn(consume(a.clone())),
            tokio::spawn(consume(b.clone()))
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        assert!(
            !x.is_empty() && !y.is_empty(),
            "both consumers leased ({} and {})",
            x.len(),
            y.len()
        );
        let all: HashSet<u64> = x.iter().chain(&y).copied().collect();
        assert_eq!(x.len() + y.len(), 300, "no message leased twice");
        assert_eq!(all, (1..=300).collect::<HashSet<u64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_compare_and_set_has_one_winner() {
        let t = TestDatabase::create().await;
        let (a, b) = (t.store().await, t.store().await);
        let id = channel(&a, "t1", "c", StoragePolicy::Persistent).await;
        for round in 0..40u64 {
            // Round 0 creates the key (expected version 0), later rounds advance it.
            let (x, y) = tokio::join!(
                a.kv_put(kv(id, "k", "\"a\"", Some(round), 100)),
                b.kv_put(kv(id, "k", "\"b\"", Some(round), 100)),
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(x.is_ok() ^ y.is_ok(), "round {round}: {x:?} {y:?}");
            let lost = if x.is_ok() { y } else { x };
            assert_eq!(lost, Err(KvRefused::Conflict(round + 1)));
        }
        assert_eq!(a.kv_get(id, "k", 100).await.unwrap().unwrap().version, 40);
        // Unconditional writes from both: every one lands, each at its own version.
        let writes = |db: Arc<dyn Database>| async move {
            let mut versions = Vec::new();
            for _ in 0..20 {
                versions.push(
                    db.kv_put(kv(id, "w", "1", None, 100))
                        .await
                        .unwrap()
                        .unwrap()
                        .version,
                );
            }
            versions
        };
        let (x, y) = tokio::join!(
            tokio::spawn(writes(a.clone())),
            tokio::spawn(writes(b.clone()))
        );
        let versions: HashSet<u64> = x.unwrap().into_iter().chain(y.unwrap()).collect();
        assert_eq!(versions, (1..=40).collect::<HashSet<u64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_never_pass_max_keys() {
        let t = TestDatabase::create().await;
        let (a, b) = (t.store().await, t.store().await);
        let id = channel(&a, "t1", "c", StoragePolicy::Persistent).await;
        let add = |db: Arc<dyn Database>, side: &'static str| async move {
            let mut added = 0;
            for n in 0..20 {
                let w = KvWrite {
                    max_keys: 15,
                    ..kv(id, &format!("{side}{n}"), "1", None, 100)
                };
                match db.kv_put(w).await.unwrap() {
                    Ok(_) => added += 1,
                    Err(why) => assert_eq!(why, KvRefused::Full),
                }
            }
            added
        };
        let (x, y) = tokio::join!(
            tokio::spawn(add(a.clone(), "a")),
            tokio::spawn(add(b.clone(), "b"))
        );
        assert_eq!(x.unwrap() + y.unwrap(), 15);
        assert_eq!(a.kv_list(id, "", "", 100, 100).await.unwrap().len(), 15);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_creators_never_pass_the_channel_max() {
        let t = TestDatabase::create().await;
        let (a, b) = (t.store().await, t.store().await);
        let create = |db: Arc<dyn Database>, side: &'static str| async move {
            let mut made = 0;
            for n in 0..10 {
                let row = channel_row("t1", &format!("{side}{n}"), StoragePolicy::Persistent);
                if db.create_channel(row, 12).await.unwrap().is_some() {
                    made += 1;
                }
            }
            made
        };
        let (x, y) = tokio::join!(
            tokio::spawn(create(a.clone(), "a")),
            tokio::spawn(create(b.clone(), "b"))
        );
        assert_eq!(x.unwrap() + y.unwrap(), 12);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_applying_one_log_apply_it_once() {
        let t = TestDatabase::create().await;
        let (a, b) = (t.store().await, t.store().await);
        let id = channel(&a, "t1", "c", StoragePolicy::Persistent).await;
        let batches: Vec<Vec<(u64, Record)>> = (0..20u64)
            .map(|n| {
                (1..=25u64)
                    .map(|i| {
                        let o = n * 25 + i;
                        (
                            o,
                            direct(id, message(o, 1_000, "x", Some("bob"), "task"), "t1", true),
                        )
                    })
                    .collect()
            })
            .collect();
        let follow = |db: Arc<dyn Database>, batches: Vec<Vec<(u64, Record)>>| async move {
            for batch in batches {
                let last = batch.last().unwrap().0;
                db.apply_log(batch, last).await.unwrap();
            }
        };
        // One node acknowledges what it leases while both follow the log.
        let (x, y) = tokio::join!(
            tokio::spawn(follow(a.clone(), batches.clone())),
            tokio::spawn(follow(b.clone(), batches.clone())),
        );
        x.unwrap();
        y.unwrap();
        assert_eq!(a.durable_log_applied().await.unwrap(), 500);
        assert_eq!(a.bounds(id).await.unwrap().last, 500);
        assert_eq!(b.recent(id, "c", 1_000).await.unwrap().len(), 500);
        assert_eq!(
            a.inbox_counts(id).await.unwrap(),
            vec![("bob".to_owned(), 500)]
        );
        // A node that lags behind does not bring acknowledged entries back.
        let leased = lease(&a, id, 500, 60_000, 2_000).await.leased;
        let acks = leased.iter().map(|r| ack(&r.id)).collect();
        settle(&a, id, acks, 2_000).await;
        follow(b.clone(), batches).await;
        assert_eq!(a.inbox_counts(id).await.unwrap(), vec![]);
        assert_eq!(b.durable_log_applied().await.unwrap(), 500);
    }
}
