//! `switchboard migrate`: an embedded deployment with data of every kind, made through the
//! public API and stopped, moves into PostgreSQL and JetStream; a cluster node started on
//! the destination serves the same history from the same tiers, the same keys, storage,
//! inboxes, directory, webhooks and streams, and goes on after the old offsets. And what
//! migrate refuses.
//!
//! Needs `SWITCHBOARD_TEST_NATS_URL` (a NATS 2.10+ with JetStream) and
//! `SWITCHBOARD_TEST_POSTGRES_URL` (scripts/test.sh sets both).

mod common;

use common::{Guard, spawn_server_with};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use switchboard_client::{
    Announce, Capability, Client, ClientConfig, CreateChannel, CreateKey, CreateTemporaryKey,
    CreateWebhook, DeadLetterQuery, HistoryPage, HistoryQuery, HttpClient, JoinParams, PollSource,
    Publish, Receive, Reject, Retention, Scope, StoragePolicy, StreamOpen, WebhookEvent,
};

/// A fresh PostgreSQL database and JetStream stream, and the configuration file of a
/// cluster node using them.
struct Destination {
    admin: String,
    database: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Destination {
    fn new(stream: &str) -> Destination {
        Destination::with(Some(stream), "")
    }

    /// With the JetStream `stream`, or else the embedded log (in the destination's data
    /// directory), and more `[storage]` settings.
    fn with(stream: Option<&str>, storage: &str) -> Destination {
        let log = match stream {
            Some(stream) => {
                let nats = std::env::var("SWITCHBOARD_TEST_NATS_URL").expect(
                    "SWITCHBOARD_TEST_NATS_URL: the migrate tests need a NATS server 2.10+ \
                     with JetStream (scripts/test.sh starts one)",
                );
                format!("log = \"jetstream\"\nnats_url = {nats:?}\njetstream_stream = {stream:?}\n")
            }
            None => "log = \"embedded\"\n".to_owned(),
        };
        let admin = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").expect(
            "SWITCHBOARD_TEST_POSTGRES_URL: the migrate tests need PostgreSQL (scripts/test.sh \
             sets it)",
        );
        let database = format!("sb_migrate_{}", unique());
        psql(&admin, &format!("CREATE DATABASE {database}"));
        let base = admin.rsplit_once('/').expect("a database in the URL").0;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[server]\ndata_dir = {data:?}\n\n[storage]\n{log}db = \"postgres\"\n\
                 postgres_url = \"{base}/{database}\"\ndb_batch_delay_ms = 10\n{storage}"
            ),
        )
        .unwrap();
        Destination {
            admin,
            database,
            dir,
            config,
        }
    }

    /// One value of a query on the destination database.
    fn query(&self, sql: &str) -> String {
        let base = self.admin.rsplit_once('/').unwrap().0;
        let output = Command::new("psql")
            .args([&format!("{base}/{}", self.database), "-Atc", sql])
            .output()
            .unwrap();
        assert!(output.status.success(), "psql {sql}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts a cluster node on the destination.
    fn node(&self) -> (Guard, String) {
        spawn_server_with(
            &self.data_dir(),
            &[("SWITCHBOARD_CONFIG", self.config.to_str().unwrap())],
        )
    }
}

impl Drop for Destination {
    fn drop(&mut self) {
        // Never a panic here: it may run while a failed test unwinds.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        if !run_psql(&self.admin, &sql) {
            eprintln!("could not drop the test database {}", self.database);
        }
    }
}

fn unique() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn psql(url: &str, sql: &str) {
    assert!(run_psql(url, sql), "psql {sql}");
}

fn run_psql(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([url, "-q", "-c", sql])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `switchboard migrate --from <from> --to <config>`.
fn migrate(from: &Path, config: &Path) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("migrate")
        .arg("--from")
        .arg(from)
        .arg("--to")
        .arg(config)
        .output()
        .expect("the binary runs");
    eprintln!(
        "migrate: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_key(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .trim()
        .to_owned()
}

/// Stops a server with SIGTERM (graceful: it brings the database up to the log) and waits.
fn stop(mut server: Guard) {
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "the server stopped with {status}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn history(
    http: &HttpClient,
    channel: &str,
    source: PollSource,
    scope: Scope,
) -> HistoryPage {
    let query = HistoryQuery {
        limit: Some(1000),
        poll_source: Some(source),
        ..HistoryQuery::default()
    };
    http.history(channel, &query, scope).await.unwrap()
}

fn channel(name: &str, storage: StoragePolicy, retention: Option<Retention>) -> CreateChannel {
    let mut create = CreateChannel::new(name);
    create.storage = Some(storage);
    create.retention = retention;
    create
}

fn note(n: u32) -> Publish {
    let mut p = Publish::new("note", &json!({ "n": n, "text": format!("message {n}") }));
    p.id = Some(format!("note-{n}"));
    p
}

fn job(n: u32) -> Publish {
    let mut p = Publish::new("job", &json!({ "n": n }));
    p.id = Some(format!("job-{n}"));
    p.to = Some("worker".to_owned());
    p
}

/// What the source served, to be served the same after the move.
struct Snapshot {
    /// (key, channel, scope, source) → page.
    pages: Vec<(String, &'static str, Scope, PollSource, HistoryPage)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_deployment_moves_into_postgres_and_jetstream_and_serves_the_same() {
    let source_dir = tempfile::tempdir().unwrap();
    let (server, addr) = spawn_server_with(
        source_dir.path(),
        &[
            ("SWITCHBOARD_STORAGE_RETENTION_INTERVAL_MS", "100"),
            ("SWITCHBOARD_STORAGE_DB_BATCH_DELAY_MS", "10"),
            ("SWITCHBOARD_STREAMS_CHECKPOINT_BYTES", "1024"),
        ],
    );
    let url = format!("ws://{addr}");
    let key = read_key(source_dir.path(), "default.key");
    let admin_key = read_key(source_dir.path(), "admin.key");
    let http = HttpClient::new(&url, &key).unwrap();
    let admin = HttpClient::new(&url, &admin_key).unwrap();

    // A second tenant with its own key, and a second key of the default tenant.
    let acme = admin.create_tenant("acme").await.unwrap().key.key;
    let second = admin
        .create_key(&CreateKey {
            tenant: Some("default".into()),
            admin: false,
        })
        .await
        .unwrap()
        .key;
    let acme_http = HttpClient::new(&url, &acme).unwrap();

    // Channels of every storage policy, with retention.
    let mut orders_retention = Retention {
        max_messages: Some(1000),
        ..Retention::default()
    };
    orders_retention.max_age_secs = Some(86_400);
    http.create_channel(&channel(
        "orders",
        StoragePolicy::Persistent,
        Some(orders_retention),
    ))
    .await
    .unwrap();
    let ticker_retention = Retention {
        max_messages: Some(3),
        ..Retention::default()
    };
    http.create_channel(&channel(
        "ticker",
        StoragePolicy::Log,
        Some(ticker_retention),
    ))
    .await
    .unwrap();
    http.create_channel(&channel("scratch", StoragePolicy::Cache, None))
        .await
        .unwrap();
    http.create_channel(&channel("jobs", StoragePolicy::Persistent, None))
        .await
        .unwrap();
    let mut lobby = channel("lobby", StoragePolicy::Persistent, None);
    lobby.scope = Scope::Public;
    lobby.password = Some("open sesame".into());
    http.create_channel(&lobby).await.unwrap();
    acme_http
        .create_channel(&channel("orders", StoragePolicy::Persistent, None))
        .await
        .unwrap();

    // Messages: plain, with attachments, direct; in every channel.
    for n in 1..=4 {
        http.publish("orders", &note(n), Scope::Private)
            .await
            .unwrap();
    }
    let mut attached = note(5);
    attached.attachments = vec![vec![0u8, 1, 2, 255].into(), vec![b'x'; 3000].into()];
    http.publish("orders", &attached, Scope::Private)
        .await
        .unwrap();
    let mut direct = note(6);
    direct.to = Some("bob".into());
    http.publish_from("orders", Some("alice"), &direct, Scope::Private)
        .await
        .unwrap();
    for n in 1..=5 {
        http.publish("ticker", &note(n), Scope::Private)
            .await
            .unwrap();
    }
    for n in 1..=2 {
        http.publish("scratch", &note(n), Scope::Private)
            .await
            .unwrap();
    }
    for n in 1..=3 {
        http.publish_from("jobs", Some("boss"), &job(n), Scope::Private)
            .await
            .unwrap();
    }
    let lobby_http = http
        .clone()
        .with_channel_password(Some("open sesame".into()));
    lobby_http
        .publish("lobby", &note(1), Scope::Public)
        .await
        .unwrap();
    acme_http
        .publish("orders", &note(1), Scope::Private)
        .await
        .unwrap();

    // The inbox: job-1 acknowledged, job-2 dead-lettered, job-3 left pending.
    let lease = Receive {
        max: Some(2),
        visibility_timeout_ms: None,
    };
    let leased = http
        .inbox_receive("jobs", "worker", &lease, Scope::Private)
        .await
        .unwrap();
    let ids: Vec<&str> = leased.iter().map(|m| m.message.id.as_str()).collect();
    assert_eq!(ids, ["job-1", "job-2"]);
    http.inbox_ack("jobs", "worker", "job-1", Scope::Private)
        .await
        .unwrap();
    let reject = Reject {
        id: "job-2".into(),
        reason: Some("cannot".into()),
        requeue: false,
    };
    http.inbox_reject("jobs", "worker", &reject, Scope::Private)
        .await
        .unwrap();

    // Channel storage, the directory, a webhook, a temporary key.
    http.kv_put(
        "orders",
        "colour",
        &json!("teal"),
        None,
        None,
        Scope::Private,
    )
    .await
    .unwrap();
    http.kv_put(
        "orders",
        "colour",
        &json!("green"),
        Some(1),
        None,
        Scope::Private,
    )
    .await
    .unwrap();
    let mut metadata = serde_json::Map::new();
    metadata.insert("languages".into(), json!(["en", "fr"]));
    http.announce_agent(
        "translator",
        &Announce {
            capabilities: vec!["translate".into()],
            metadata,
        },
    )
    .await
    .unwrap();
    let webhook = http
        .create_webhook(&CreateWebhook {
            url: "http://127.0.0.1:9/hook".into(),
            events: vec![WebhookEvent::MessagePublished],
            channel: Some("orders".into()),
            types: None,
        })
        .await
        .unwrap()
        .webhook;
    let temporary = http
        .mint_temporary_key(&CreateTemporaryKey {
            ttl_secs: 3600,
            capabilities: vec![Capability::Subscribe, Capability::History],
            agent_names: None,
            channels: Some(vec!["orders".into()]),
            event_types: None,
            scope: None,
            read_only: false,
        })
        .await
        .unwrap()
        .key;

    // A stream in flight: three chunks, each a checkpoint.
    let client = Client::connect(ClientConfig::new(&url, &key).with_reconnect(false))
        .await
        .unwrap();
    let files = client
        .join("files", JoinParams::new("alice"))
        .await
        .unwrap();
    let open = StreamOpen {
        to: "bob".into(),
        size: Some(8192),
        ..StreamOpen::default()
    };
    let stream_id = files.sender().stream_open(&open).await.unwrap().stream_id;
    for seq in 0..3u64 {
        files
            .sender()
            .stream_chunk(&stream_id, seq, &[seq as u8; 1024])
            .await
            .unwrap();
    }
    drop(files);
    client.close().await;

    // What the source serves, once retention has trimmed `ticker` to its last 3.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while history(&http, "ticker", PollSource::Log, Scope::Private)
        .await
        .first_available
        < 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut snapshot = Snapshot { pages: Vec::new() };
    for (who, name, scope, source) in [
        ("default", "orders", Scope::Private, PollSource::Database),
        ("default", "orders", Scope::Private, PollSource::Log),
        ("default", "ticker", Scope::Private, PollSource::Log),
        ("default", "jobs", Scope::Private, PollSource::Log),
        ("default", "jobs", Scope::Private, PollSource::Database),
        ("default", "lobby", Scope::Public, PollSource::Log),
        ("acme", "orders", Scope::Private, PollSource::Log),
        ("acme", "orders", Scope::Private, PollSource::Database),
    ] {
        let client = match (who, scope) {
            ("acme", _) => &acme_http,
            (_, Scope::Public) => &lobby_http,
            _ => &http,
        };
        let page = history(client, name, source, scope).await;
        snapshot
            .pages
            .push((who.to_owned(), name, scope, source, page));
    }
    let ticker = &snapshot.pages[2].4;
    assert_eq!(
        (ticker.first_available, ticker.head, ticker.messages.len()),
        (3, 5, 3)
    );
    // Every record the log tier served is expected in the destination log.
    let served_by_log: usize = snapshot
        .pages
        .iter()
        .filter(|p| p.3 == PollSource::Log)
        .map(|p| p.4.messages.len())
        .sum();
    stop(server);
    let spool = source_dir.path().join("streams").join(&stream_id);
    assert!(spool.exists(), "the stream's spool file is in the source");

    // The move.
    let stream_name = format!("MIGRATE_{}", unique());
    let destination = Destination::new(&stream_name);
    let output = migrate(source_dir.path(), &destination.config);
    assert!(output.status.success(), "migrate succeeds");
    let stdout = String::from_utf8(output.stdout).unwrap();
    for part in [
        "tenants",
        "api_keys",
        "admin_keys",
        "temporary_keys",
        "settings",
        "channels",
        "messages",
        "inbox",
        "kv",
        "agents",
        "streams",
        "webhooks",
        "webhook_attempts",
        "usage",
        "log records",
        "log ranges",
        "stream spool files",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{part}  ")))
            .unwrap_or_else(|| panic!("the table has a row for {part}:\n{stdout}"));
        assert!(line.ends_with("  ok"), "{line}");
    }
    let rows = |part: &str| -> u64 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{part}  ")))
            .unwrap();
        line.split_whitespace()
            .rev()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(rows("tenants"), 2);
    assert_eq!(
        rows("channels"),
        7,
        "orders, ticker, scratch, jobs, lobby, acme's orders, files"
    );
    assert_eq!(
        rows("inbox"),
        3,
        "job-2 (dead), job-3 (pending), and note-6 waiting for bob"
    );
    assert_eq!(rows("log records"), served_by_log as u64);
    assert_eq!(rows("stream spool files"), 1);
    assert!(!stdout.contains("MISMATCH"));

    // A cluster node on the destination.
    let (node, addr) = destination.node();
    let url = format!("ws://{addr}");
    let http = HttpClient::new(&url, &key).unwrap();
    let lobby_http = http
        .clone()
        .with_channel_password(Some("open sesame".into()));
    let acme_http = HttpClient::new(&url, &acme).unwrap();

    // History from the DATABASE and the LOG, exactly as before.
    for (who, name, scope, source, before) in &snapshot.pages {
        let client = match (who.as_str(), scope) {
            ("acme", _) => &acme_http,
            (_, Scope::Public) => &lobby_http,
            _ => &http,
        };
        let after = history(client, name, *source, *scope).await;
        assert_eq!(
            (
                &after.messages,
                &after.epoch,
                after.head,
                after.first_available
            ),
            (
                &before.messages,
                &before.epoch,
                before.head,
                before.first_available
            ),
            "{who}'s {name} from {source:?}"
        );
        assert_eq!(
            after.sources, before.sources,
            "{who}'s {name} from {source:?}"
        );
    }
    let orders = &snapshot.pages[0].4;
    assert_eq!(orders.messages[4].attachments, attached.attachments);
    assert_eq!(orders.messages[5].to.as_deref(), Some("bob"));

    // Keys: the old default key (above), the second key, the admin key, a temporary key.
    HttpClient::new(&url, &second)
        .unwrap()
        .get_channel("orders", Scope::Private)
        .await
        .unwrap();
    let admin = HttpClient::new(&url, &admin_key).unwrap();
    let mut tenants: Vec<String> = admin
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["acme", "default"]);
    let temp = Client::connect(ClientConfig::new(&url, &temporary).with_reconnect(false))
        .await
        .unwrap();
    let joined = temp
        .join("orders", JoinParams::new("visitor"))
        .await
        .unwrap();
    let page = joined
        .history(HistoryQuery {
            limit: Some(10),
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.head, orders.head);
    drop(joined);
    temp.close().await;

    // Channel storage, the directory, the webhook, the cache channel's row.
    let colour = http
        .kv_get("orders", "colour", Scope::Private)
        .await
        .unwrap();
    assert_eq!((colour.value.get(), colour.version), ("\"green\"", 2));
    let card = http.agent("translator").await.unwrap();
    assert_eq!(card.capabilities, ["translate"]);
    assert_eq!(card.metadata["languages"], json!(["en", "fr"]));
    let hooks = http.webhooks().await.unwrap();
    assert_eq!(hooks, [webhook]);
    let scratch = http.get_channel("scratch", Scope::Private).await.unwrap();
    assert_eq!(scratch.storage, StoragePolicy::Cache);

    // The inbox: only the pending job comes (an applied record would bring job-1 back),
    // and the dead letter is kept.
    let all = Receive {
        max: Some(10),
        visibility_timeout_ms: None,
    };
    let pending = http
        .inbox_receive("jobs", "worker", &all, Scope::Private)
        .await
        .unwrap();
    let ids: Vec<&str> = pending.iter().map(|m| m.message.id.as_str()).collect();
    assert_eq!(ids, ["job-3"]);
    let dead = http
        .dead_letters("jobs", &DeadLetterQuery::default(), Scope::Private)
        .await
        .unwrap();
    let dead: Vec<(&str, &str)> = dead
        .entries
        .iter()
        .map(|d| (d.message.id.as_str(), d.reason.as_str()))
        .collect();
    assert_eq!(dead, [("job-2", "cannot")]);

    // The stream resumes from its last checkpoint, from its spool file on this node.
    let client = Client::connect(ClientConfig::new(&url, &key).with_reconnect(false))
        .await
        .unwrap();
    let files = client
        .join("files", JoinParams::new("alice"))
        .await
        .unwrap();
    let again = StreamOpen {
        stream_id: Some(stream_id.clone()),
        ..StreamOpen::default()
    };
    let position = files.sender().stream_open(&again).await.unwrap();
    assert_eq!((position.next_seq, position.offset), (3, 3072));
    drop(files);
    client.close().await;

    // Offsets go on after the old heads; a new channel gets an id of its own.
    for (name, head) in [("orders", orders.head), ("ticker", ticker.head)] {
        let ack = http
            .publish(name, &note(100), Scope::Private)
            .await
            .unwrap();
        assert_eq!(ack.offset, Some(head + 1), "{name}");
    }
    http.create_channel(&CreateChannel::new("fresh"))
        .await
        .unwrap();
    let ack = http
        .publish("fresh", &note(1), Scope::Private)
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(1));
    // The database writer follows the destination log from its end.
    let after = history(&http, "orders", PollSource::Database, Scope::Private).await;
    assert_eq!(after.messages.last().unwrap().offset, Some(orders.head + 1));
    assert_eq!(after.messages.len(), orders.messages.len() + 1);

    // Run again (the node stopped): the destination database is not empty.
    stop(node);
    let again = migrate(source_dir.path(), &destination.config);
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("is not empty (table tenants holds rows)"),
        "{stderr}"
    );

    // An empty database, but the stream holds records: refused too, the database untouched.
    let other = Destination::new(&stream_name);
    let refused = migrate(source_dir.path(), &other.config);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("already holds records"), "{stderr}");
    assert!(
        stderr.contains(&format!("nats stream rm {stream_name}")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_s_database_catches_up_first_and_an_embedded_log_can_be_the_destination() {
    // The database writer waits a minute: the messages are acknowledged in the log only
    // when the server is killed.
    let source_dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn_server_with(
        source_dir.path(),
        &[("SWITCHBOARD_STORAGE_DB_BATCH_DELAY_MS", "60000")],
    );
    let key = read_key(source_dir.path(), "default.key");
    let http = HttpClient::new(&format!("ws://{addr}"), &key).unwrap();
    http.create_channel(&channel("orders", StoragePolicy::Persistent, None))
        .await
        .unwrap();
    for n in 1..=5 {
        http.publish("orders", &note(n), Scope::Private)
            .await
            .unwrap();
    }
    server.kill().unwrap();
    server.wait().unwrap();

    let destination = Destination::with(None, "");
    let output = migrate(source_dir.path(), &destination.config);
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("the source had 5 log records to catch up first"),
        "{stderr}"
    );
    assert!(destination.data_dir().join("log").is_dir());
    assert_eq!(
        destination.query("SELECT COUNT(*) FROM messages"),
        "5",
        "the database holds what only the log held"
    );

    // A node on PostgreSQL and the embedded log serves them from both tiers, and goes on.
    let (node, addr) = destination.node();
    let http = HttpClient::new(&format!("ws://{addr}"), &key).unwrap();
    for source in [PollSource::Database, PollSource::Log] {
        let page = history(&http, "orders", source, Scope::Private).await;
        let ids: Vec<&str> = page.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            ids,
            ["note-1", "note-2", "note-3", "note-4", "note-5"],
            "{source:?}"
        );
    }
    let ack = http
        .publish("orders", &note(6), Scope::Private)
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(6));
    stop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_does_not_verify_commits_nothing_and_fails() {
    let source_dir = tempfile::tempdir().unwrap();
    let (server, addr) = spawn_server_with(source_dir.path(), &[]);
    let http = HttpClient::new(
        &format!("ws://{addr}"),
        read_key(source_dir.path(), "default.key"),
    )
    .unwrap();
    http.create_channel(&channel("ticker", StoragePolicy::Log, None))
        .await
        .unwrap();
    for n in 1..=20 {
        http.publish("ticker", &note(n), Scope::Private)
            .await
            .unwrap();
    }
    stop(server);

    // A stream that keeps 2 KiB: JetStream drops the oldest records as they are copied, so
    // what the destination log holds is not what the source served.
    let destination = Destination::with(
        Some(&format!("MIGRATE_{}", unique())),
        "log_retention_bytes = 2048\n",
    );
    let output = migrate(source_dir.path(), &destination.config);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records = stdout
        .lines()
        .find(|l| l.starts_with("log records  "))
        .unwrap_or_else(|| panic!("the table is printed:\n{stdout}"));
    let words: Vec<&str> = records.split_whitespace().collect();
    assert_eq!(words[2..4], ["20", "→"], "{records}");
    assert!(words[4].parse::<u64>().unwrap() < 20, "{records}");
    assert!(records.ends_with("  MISMATCH"), "{records}");
    assert!(
        stdout
            .lines()
            .find(|l| l.starts_with("channels  "))
            .is_some_and(|l| l.ends_with("  ok"))
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("verification failed"), "{stderr}");
    // The database transaction was rolled back: the destination is empty.
    assert_eq!(destination.query("SELECT COUNT(*) FROM tenants"), "0");
    assert_eq!(destination.query("SELECT COUNT(*) FROM settings"), "0");
}

#[test]
fn migrate_refuses_sqlite_configs_non_data_directories_and_running_servers() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = dir.path().join("postgres.toml");
    std::fs::write(
        &postgres,
        "[storage]\ndb = \"postgres\"\npostgres_url = \"postgres://nobody@127.0.0.1:1/none\"\n",
    )
    .unwrap();
    let sqlite = dir.path().join("sqlite.toml");
    std::fs::write(&sqlite, "[storage]\ndb = \"sqlite\"\n").unwrap();
    let refusal = |from: &Path, config: &Path| {
        let output = migrate(from, config);
        assert_eq!(output.status.code(), Some(1));
        String::from_utf8(output.stderr).unwrap()
    };

    let stderr = refusal(dir.path(), &sqlite);
    assert!(
        stderr.contains("uses [storage] db = \"sqlite\""),
        "{stderr}"
    );

    let empty = tempfile::tempdir().unwrap();
    let stderr = refusal(empty.path(), &postgres);
    assert!(
        stderr.contains("is not a Switchboard data directory"),
        "{stderr}"
    );

    let running = tempfile::tempdir().unwrap();
    let (server, _) = spawn_server_with(running.path(), &[]);
    let stderr = refusal(running.path(), &postgres);
    assert!(
        stderr.contains("is in use by a running switchboard server: stop it first"),
        "{stderr}"
    );
    drop(server);
}
