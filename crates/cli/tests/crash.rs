//! Crash safety: SIGKILL the real server binary in the middle of a publish burst, restart it,
//! and find every acknowledged message in history exactly once, at its acknowledged offset;
//! SIGKILL it between the log append and the database write, and find the database caught up.

mod common;

use common::{spawn_server, spawn_server_with};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{
    Client, ClientConfig, HistoryQuery, HttpClient, JoinParams, PollSource, Publish, Scope, Tier,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_publish_burst_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn_server(dir.path());
    let key = std::fs::read_to_string(dir.path().join("default.key"))
        .unwrap()
        .trim()
        .to_owned();
    let url = format!("ws://{addr}");
    let config = ClientConfig::new(&url, &key).with_reconnect(false);

    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut publishers = Vec::new();
    let mut connections = Vec::new();
    for p in 0..4 {
        let client = Client::connect(config.clone()).await.unwrap();
        let channel = client
            .join("burst", JoinParams::new(format!("publisher-{p}")))
            .await
            .unwrap();
        // Several concurrent publishers per connection keep many publishes in flight.
        for lane in 0..8 {
            let sender = channel.sender();
            let acked = acked.clone();
            publishers.push(tokio::spawn(async move {
                for n in 0.. {
                    let mut publish =
                        Publish::new("tick", &serde_json::json!({"n": n, "pad": "x".repeat(100)}));
                    publish.id = Some(format!("p{p}-l{lane}-{n}"));
                    match sender.publish(publish.clone()).await {
                        Ok(ack) => acked
                            .lock()
                            .unwrap()
                            .push((publish.id.unwrap(), ack.offset.unwrap())),
                        Err(_) => return,
                    }
                }
            }));
        }
        connections.push((client, channel));
    }
    // Kill once plenty is acknowledged, with publishes still in flight.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2000 {
        assert!(tokio::time::Instant::now() < deadline, "publishing stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    for p in publishers {
        let _ = tokio::time::timeout(Duration::from_secs(20), p)
            .await
            .expect("publishers fail once the server is gone");
    }
    let acked = acked.lock().unwrap().clone();
    drop(connections);

    let (mut server, addr) = spawn_server(dir.path());
    let http = HttpClient::new(&format!("ws://{addr}"), &key).unwrap();
    let mut stored: HashMap<String, Vec<u64>> = HashMap::new();
    let mut last_offset = 0;
    let mut from = 1;
    loop {
        let query = HistoryQuery {
            from_offset: Some(from),
            limit: Some(1000),
            ..HistoryQuery::default()
        };
        let page = http.history("burst", &query, Scope::Private).await.unwrap();
        for m in &page.messages {
            let offset = m.offset.unwrap();
            assert!(offset > last_offset, "offsets strictly increase");
            last_offset = offset;
            stored.entry(m.id.clone()).or_default().push(offset);
        }
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    for (id, offset) in &acked {
        assert_eq!(
            stored.get(id),
            Some(&vec![*offset]),
            "acknowledged {id} at {offset} is stored exactly once"
        );
    }
    assert!(
        stored.values().all(|offsets| offsets.len() == 1),
        "no id is stored twice"
    );
    println!(
        "{} acknowledged before SIGKILL, {} stored after restart",
        acked.len(),
        stored.len()
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// A plain HTTP GET; returns the whole response.
async fn get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

fn read_key(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("default.key"))
        .unwrap()
        .trim()
        .to_owned()
}

async fn read_all(http: &HttpClient, source: PollSource) -> switchboard_client::HistoryPage {
    let query = HistoryQuery {
        limit: Some(1000),
        poll_source: Some(source),
        ..HistoryQuery::default()
    };
    http.history("ledger", &query, Scope::Private)
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_between_the_log_and_the_database_the_database_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    // The database writer waits ten minutes to gather records, unless someone waits for them.
    let (mut server, addr) = spawn_server_with(
        dir.path(),
        &[("SWITCHBOARD_STORAGE_DB_BATCH_DELAY_MS", "600000")],
    );
    let key = read_key(dir.path());
    let http = HttpClient::new(&format!("ws://{addr}"), &key).unwrap();
    // A direct message to an agent's inbox first: its inbox entry is awaited, so it is
    // written at once...
    let mut direct = Publish::new("task", &serde_json::json!({ "job": 1 }));
    direct.to = Some("worker".into());
    let task = http
        .publish_from("ledger", Some("boss"), &direct, Scope::Private)
        .await
        .unwrap();
    // ...then plain messages, which nobody awaits from the database: they are in the log only
    // when the server dies.
    let mut acked = Vec::new();
    for n in 0..200 {
        let ack = http
            .publish(
                "ledger",
                &Publish::new("entry", &serde_json::json!({ "n": n })),
                Scope::Private,
            )
            .await
            .unwrap();
        acked.push(ack.offset.unwrap());
    }
    assert_eq!(acked, (2..=201).collect::<Vec<_>>());
    let log = read_all(&http, PollSource::Log).await;
    assert_eq!(
        log.messages.len(),
        201,
        "every acknowledged message is in the log"
    );
    // The writer's step for the direct message may have taken a few of the first plain
    // messages along (whatever the log held when it read); the rest wait for it.
    let metrics = get(&addr, "/metrics").await;
    let lag: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_database_lag_records "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the lag metric is exported");
    assert!(
        (100..=200).contains(&lag),
        "the database has not copied most of them: lag {lag}"
    );
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let (mut server, addr) = spawn_server(dir.path());
    let http = HttpClient::new(&format!("ws://{addr}"), &key).unwrap();
    let db = read_all(&http, PollSource::Database).await;
    let offsets: Vec<u64> = db.messages.iter().map(|m| m.offset.unwrap()).collect();
    assert_eq!(offsets, (1..=201).collect::<Vec<_>>());
    assert_eq!(db.sources.len(), 1);
    assert_eq!(
        (db.sources[0].tier, db.sources[0].from, db.sources[0].to),
        (Tier::Database, 1, 201)
    );
    let received = http
        .inbox_receive(
            "ledger",
            "worker",
            &switchboard_client::protocol::inbox::Receive::default(),
            Scope::Private,
        )
        .await
        .unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message.id, task.id);
    // And the channel goes on where it was.
    let ack = http
        .publish(
            "ledger",
            &Publish::new("entry", &serde_json::json!({})),
            Scope::Private,
        )
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(202));
    server.kill().unwrap();
    server.wait().unwrap();
}
