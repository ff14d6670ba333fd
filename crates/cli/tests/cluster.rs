//! A three-node cluster on loopback: three `switchboard serve` processes sharing one
//! JetStream stream and one PostgreSQL database. Publishers on every node, a subscriber on
//! every node; one node is SIGKILLed mid-load, its subscriber resumes on another node from
//! its offset, and every subscriber ends with every acknowledged message exactly once, in
//! offset order, with no offset missing.
//!
//! Needs `SWITCHBOARD_TEST_NATS_URL` (a NATS 2.10+ with JetStream) and
//! `SWITCHBOARD_TEST_POSTGRES_URL` (scripts/test.sh sets both).

mod common;

use common::{Guard, spawn_server_with};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{ChannelEvent, Client, ClientConfig, JoinParams, Publish};

/// A fresh PostgreSQL database and JetStream stream name for one test.
struct Deployment {
    nats: String,
    postgres: String,
    stream: String,
    admin: String,
    database: String,
}

impl Deployment {
    fn new() -> Deployment {
        let nats = std::env::var("SWITCHBOARD_TEST_NATS_URL").expect(
            "SWITCHBOARD_TEST_NATS_URL: the cluster tests need a NATS server 2.10+ with JetStream \
             (scripts/test.sh starts one)",
        );
        let admin = std::env::var("SWITCHBOARD_TEST_POSTGRES_URL").expect(
            "SWITCHBOARD_TEST_POSTGRES_URL: the cluster tests need PostgreSQL (scripts/test.sh \
             sets it)",
        );
        let suffix = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let database = format!("sb_cluster_{suffix}");
        psql(&admin, &format!("CREATE DATABASE {database}"));
        let base = admin.rsplit_once('/').expect("a database in the URL").0;
        Deployment {
            nats,
            postgres: format!("{base}/{database}"),
            stream: format!("CLUSTER_{suffix}"),
            admin,
            database,
        }
    }

    /// Starts one node with its own data directory.
    fn node(&self, dir: &std::path::Path) -> (Guard, String) {
        spawn_server_with(
            dir,
            &[
                ("SWITCHBOARD_STORAGE_LOG", "jetstream"),
                ("SWITCHBOARD_STORAGE_NATS_URL", &self.nats),
                ("SWITCHBOARD_STORAGE_JETSTREAM_STREAM", &self.stream),
                ("SWITCHBOARD_STORAGE_DB", "postgres"),
                ("SWITCHBOARD_STORAGE_POSTGRES_URL", &self.postgres),
                ("SWITCHBOARD_STORAGE_DB_BATCH_DELAY_MS", "10"),
            ],
        )
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        // Never a panic here: it may run while a failed test unwinds.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database);
        if !run_psql(&self.admin, &sql) {
            eprintln!("could not drop the test database {}", self.database);
        }
    }
}

fn psql(url: &str, sql: &str) {
    assert!(run_psql(url, sql), "psql {sql}");
}

fn run_psql(url: &str, sql: &str) -> bool {
    std::process::Command::new("psql")
        .args([url, "-q", "-c", sql])
        .status()
        .is_ok_and(|s| s.success())
}

/// What one subscriber received: offset → id, in arrival order checked as it comes.
#[derive(Default)]
struct Received {
    by_offset: BTreeMap<u64, String>,
    last: u64,
    out_of_order: Vec<(u64, u64)>,
}

async fn subscribe(
    url: String,
    key: String,
    agent: String,
    since: Option<u64>,
    received: Arc<Mutex<Received>>,
) -> (Client, tokio::task::JoinHandle<()>) {
    let client = Client::connect(ClientConfig::new(&url, &key).with_reconnect(false))
        .await
        .unwrap();
    let mut params = JoinParams::new(agent);
    params.since = since;
    let mut channel = client.join("load", params).await.unwrap();
    let task = tokio::spawn(async move {
        while let Some(event) = channel.recv().await {
            if let ChannelEvent::Message(m) = event {
                let offset = m.offset.unwrap();
                let mut r = received.lock().unwrap();
                if offset <= r.last {
                    let last = r.last;
                    r.out_of_order.push((last, offset));
                }
                r.last = r.last.max(offset);
                if let Some(before) = r.by_offset.insert(offset, m.id.clone()) {
                    assert_eq!(before, m.id, "offset {offset} holds one message");
                }
            }
        }
    });
    (client, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_acknowledged_message_once_in_order_across_a_sigkill() {
    let deployment = Deployment::new();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // The first node creates the default tenant and its key; the others share them.
    let mut nodes = vec![deployment.node(dirs[0].path())];
    let key = std::fs::read_to_string(dirs[0].path().join("default.key"))
        .unwrap()
        .trim()
        .to_owned();
    nodes.push(deployment.node(dirs[1].path()));
    nodes.push(deployment.node(dirs[2].path()));
    let urls: Vec<String> = nodes.iter().map(|(_, a)| format!("ws://{a}")).collect();

    // A subscriber on every node.
    let mut subscribers = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let received = Arc::new(Mutex::new(Received::default()));
        let (client, task) = subscribe(
            url.clone(),
            key.clone(),
            format!("subscriber-{i}"),
            None,
            received.clone(),
        )
        .await;
        subscribers.push((received, client, task));
    }

    // Presence is cluster-wide: node 0 sees the agents of nodes 1 and 2.
    let watcher = Client::connect(ClientConfig::new(&urls[0], &key).with_reconnect(false))
        .await
        .unwrap();
    let watching = watcher
        .join("load", JoinParams::new("watcher"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let present = watching.presence().await.unwrap();
        if (0..3).all(|i| present.contains_key(&format!("subscriber-{i}"))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence never showed every node's agents: {:?}",
            present.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Publishers on every node, several in flight each.
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    // Why each publisher stopped (a failed publish ends it).
    let stopped: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut publishers: Vec<(usize, tokio::task::JoinHandle<()>)> = Vec::new();
    let mut connections = Vec::new();
    for (node, url) in urls.iter().enumerate() {
        let client = Client::connect(ClientConfig::new(url, &key).with_reconnect(false))
            .await
            .unwrap();
        let channel = client
            .join("load", JoinParams::new(format!("publisher-{node}")))
            .await
            .unwrap();
        for lane in 0..4 {
            let sender = channel.sender();
            let (acked, stopped) = (acked.clone(), stopped.clone());
            publishers.push((
                node,
                tokio::spawn(async move {
                    for n in 0..100_000 {
                        let mut publish = Publish::new("tick", &serde_json::json!({ "n": n }));
                        publish.id = Some(format!("n{node}-l{lane}-{n}"));
                        match sender.publish(publish.clone()).await {
                            Ok(ack) => acked
                                .lock()
                                .unwrap()
                                .push((publish.id.unwrap(), ack.offset.unwrap())),
                            Err(e) => {
                                stopped
                                    .lock()
                                    .unwrap()
                                    .push(format!("node {node} lane {lane} at {n}: {e}"));
                                return;
                            }
                        }
                    }
                }),
            ));
        }
        connections.push((client, channel));
    }
    let wait_for_acks = |n: usize| {
        let (acked, stopped) = (acked.clone(), stopped.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked.lock().unwrap().len() < n {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "publishing stalled at {} of {n} acknowledged; stopped publishers: {:?}",
                    acked.lock().unwrap().len(),
                    stopped.lock().unwrap()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for_acks(600).await;

    // SIGKILL node 2 mid-load.
    nodes[2].0.kill().unwrap();
    nodes[2].0.wait().unwrap();
    let (received_2, client_2, task_2) = subscribers.pop().unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), task_2).await;
    drop(client_2);
    // Its subscriber resumes on node 0 after the last offset it received.
    let resume_from = received_2.lock().unwrap().last;
    let (client_2, task_2) = subscribe(
        urls[0].clone(),
        key.clone(),
        "subscriber-2".to_owned(),
        Some(resume_from),
        received_2.clone(),
    )
    .await;
    subscribers.push((received_2, client_2, task_2));

    // The publishers of the surviving nodes carry on; then everyone stops.
    let before = acked.lock().unwrap().len();
    wait_for_acks(before + 600).await;
    drop(connections);
    for (node, publisher) in publishers {
        let ended = tokio::time::timeout(Duration::from_secs(20), publisher).await;
        assert!(ended.is_ok(), "the publishers of node {node} stop");
    }

    let acked = acked.lock().unwrap().clone();
    let mut offsets: HashMap<u64, &str> = HashMap::new();
    for (id, offset) in &acked {
        if let Some(other) = offsets.insert(*offset, id) {
            panic!("offset {offset} acknowledged twice: {other} and {id}");
        }
    }
    let newest = *offsets.keys().max().unwrap();
    // Every subscriber gets everything up to the newest acknowledged offset.
    for (i, (received, _, _)) in subscribers.iter().enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while received.lock().unwrap().last < newest {
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscriber {i} stopped at {} of {newest}",
                received.lock().unwrap().last
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = received.lock().unwrap();
        assert!(
            r.out_of_order.is_empty(),
            "subscriber {i} got offsets out of order: {:?}",
            &r.out_of_order[..r.out_of_order.len().min(5)]
        );
        let missing: Vec<u64> = (1..=newest)
            .filter(|o| !r.by_offset.contains_key(o))
            .take(5)
            .collect();
        assert!(
            missing.is_empty(),
            "subscriber {i} misses offsets {missing:?}"
        );
        for (id, offset) in &acked {
            assert_eq!(
                r.by_offset.get(offset).map(String::as_str),
                Some(id.as_str()),
                "subscriber {i} has {id} at its acknowledged offset {offset}"
            );
        }
    }
    println!(
        "{} acknowledged across three nodes (one SIGKILLed), newest offset {newest}",
        acked.len()
    );
}

/// Waits for `f` to be true, polling, for a few seconds.
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next message (ephemeral or stored) a channel receives, skipping presence and such.
async fn next_message(channel: &mut switchboard_client::Channel) -> switchboard_client::Message {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), channel.recv())
            .await
            .expect("a message arrives")
            .expect("the channel stays open");
        if let ChannelEvent::Message(m) = event {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_storage_the_directory_and_ephemeral_messages_are_shared_across_nodes() {
    let deployment = Deployment::new();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (_a, addr_a) = deployment.node(dirs[0].path());
    let (_b, addr_b) = deployment.node(dirs[1].path());
    let (url_a, url_b) = (format!("ws://{addr_a}"), format!("ws://{addr_b}"));
    let key = std::fs::read_to_string(dirs[0].path().join("default.key"))
        .unwrap()
        .trim()
        .to_owned();

    // A key made on node A works on node B.
    let made = switchboard_client::HttpClient::new(&url_a, &key)
        .unwrap()
        .create_key(&Default::default())
        .await
        .unwrap()
        .key;
    let config_b = ClientConfig::new(&url_b, &made).with_reconnect(false);
    eventually("node B accepts a key made on node A", || {
        let config = config_b.clone();
        async move {
            // A wrong key shows at the first request, not at the connect.
            match Client::connect(config).await {
                Ok(client) => client.join("keys", JoinParams::new("probe")).await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;

    let client_a = Client::connect(ClientConfig::new(&url_a, &key).with_reconnect(false))
        .await
        .unwrap();
    let client_b = Client::connect(config_b).await.unwrap();
    let mut params = JoinParams::new("alice");
    params.kv_events = true;
    let alice = client_a.join("shared", params).await.unwrap();
    let mut params = JoinParams::new("bob");
    params.kv_events = true;
    let mut bob = client_b.join("shared", params).await.unwrap();
    eventually("node A sees bob present", || {
        let alice = &alice;
        async move { alice.presence().await.unwrap().contains_key("bob") }
    })
    .await;

    // Channel storage: written on A, read and announced on B.
    alice
        .kv_put("colour", &serde_json::json!("teal"), None, None)
        .await
        .unwrap();
    let change = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), bob.recv())
            .await
            .expect("bob hears of the change")
            .unwrap();
        if let ChannelEvent::KvChange(change) = event {
            break change;
        }
    };
    assert_eq!(change.key, "colour");
    assert_eq!(bob.kv_get("colour").await.unwrap().value.get(), "\"teal\"");

    // Ephemeral messages cross nodes, to the channel and to an agent on the other node.
    let mut publish = Publish::new("typing", &serde_json::json!({ "who": "alice" }));
    publish.ephemeral = true;
    alice.publish(publish).await.unwrap();
    let m = next_message(&mut bob).await;
    assert!(m.ephemeral && m.kind == "typing" && m.from == "alice");
    let mut publish = Publish::new("nudge", &serde_json::json!({}));
    publish.ephemeral = true;
    publish.to = Some("bob".to_owned());
    alice.publish(publish).await.unwrap();
    let m = next_message(&mut bob).await;
    assert_eq!((m.kind.as_str(), m.to.as_deref()), ("nudge", Some("bob")));

    // The directory: announced on A, discovered on B.
    alice
        .announce(&switchboard_client::Announce {
            capabilities: vec!["translate".to_owned()],
            metadata: Default::default(),
        })
        .await
        .unwrap();
    eventually("node B discovers what alice announced on node A", || {
        let bob = &bob;
        async move {
            let query = switchboard_client::Discover {
                capability: Some("translate".to_owned()),
                ..Default::default()
            };
            bob.discover(&query)
                .await
                .unwrap()
                .iter()
                .any(|card| card.name == "alice")
        }
    })
    .await;
}
