//! The three tiers: cache, log and database in one offset space; `poll_source` reads one
//! tier or stitches all three; storage policies pick the tiers.

use crate::harness::*;
use serde_json::{Value, json};

fn offsets(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect()
}

fn sources(page: &Value) -> Vec<(String, u64, u64)> {
    page["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tier"].as_str().unwrap().to_owned(),
                r["from"].as_u64().unwrap(),
                r["to"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A server whose tiers hold different ranges: the cache the newest 5 messages, the log
/// (1 MiB segments, kept only while under 1 byte, so only the active segment survives
/// retention) the newest few dozen, the database all of them.
async fn tiered_server() -> TestServer {
    TestServer::with(|c| {
        c.storage.cache_messages = 5;
        c.storage.log_segment_bytes = 1 << 20;
        c.storage.log_retention_bytes = 1;
        c.storage.retention_interval_ms = 3_600_000;
    })
    .await
}

/// Publishes `n` messages of about 100 kB each to `channel`.
async fn publish_big(raw: &mut Raw, channel: &str, n: usize) {
    let blob = "x".repeat(100_000);
    for i in 1..=n {
        raw.publish(
            channel,
            json!({"type": "blob", "data": {"i": i, "blob": blob}}),
        )
        .await
        .unwrap();
    }
}

/// Lets the database catch up with the log, then runs retention once.
async fn settle(s: &TestServer) {
    let app = s.server().app();
    app.materializer.wait_for(app.log.end()).await;
    app.enforce_retention().await;
}

fn history(source: Option<&str>, extra: Value) -> Value {
    let mut q = json!({ "limit": 1000 });
    if let Some(source) = source {
        q["poll_source"] = json!(source);
    }
    for (k, v) in extra.as_object().unwrap() {
        q[k] = v.clone();
    }
    q
}

#[tokio::test]
async fn auto_stitches_database_log_and_cache_without_gaps_or_duplicates() {
    let s = tiered_server().await;
    let mut a = s.raw().await;
    a.join("tiers", agent("alice")).await.unwrap();
    publish_big(&mut a, "tiers", 40).await;
    settle(&s).await;

    let page = a
        .request("channel:tiers", "history", history(None, json!({})))
        .await
        .unwrap();
    assert_eq!(offsets(&page), (1..=40).collect::<Vec<_>>());
    let tiers = sources(&page);
    assert_eq!(tiers.len(), 3, "{tiers:?}");
    assert_eq!(tiers[0].0, "DATABASE");
    assert_eq!(tiers[1].0, "LOG");
    assert_eq!(tiers[2], ("CACHE".to_owned(), 36, 40));
    assert_eq!(tiers[0].1, 1);
    assert_eq!(tiers[0].2 + 1, tiers[1].1, "database and log touch");
    assert_eq!(tiers[1].2 + 1, tiers[2].1, "log and cache touch");
    assert!(tiers[1].1 > 1, "retention dropped the oldest log segments");

    // Backward, in pages that cross the tier boundaries.
    let mut seen = Vec::new();
    let mut to = None;
    loop {
        let mut q = history(None, json!({"direction": "backward", "limit": 7}));
        if let Some(to) = to {
            q["to_offset"] = json!(to);
        }
        let page = a.request("channel:tiers", "history", q).await.unwrap();
        seen.extend(offsets(&page));
        match page["next"].as_u64() {
            Some(n) => to = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, (1..=40).rev().collect::<Vec<_>>());

    // Filters apply in every tier.
    let page = a
        .request(
            "channel:tiers",
            "history",
            history(
                None,
                json!({"from_offset": 2, "to_offset": 39, "sender": "nobody"}),
            ),
        )
        .await
        .unwrap();
    assert!(offsets(&page).is_empty());
    assert_eq!(sources(&page).first().unwrap().1, 2);
    assert_eq!(sources(&page).last().unwrap().2, 39);
}

#[tokio::test]
async fn each_tier_alone_serves_what_it_holds() {
    let s = tiered_server().await;
    let mut a = s.raw().await;
    a.join("tiers", agent("alice")).await.unwrap();
    publish_big(&mut a, "tiers", 40).await;
    settle(&s).await;

    let cache = a
        .request(
            "channel:tiers",
            "history",
            history(Some("CACHE"), json!({})),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&cache), (36..=40).collect::<Vec<_>>());
    assert_eq!(sources(&cache), vec![("CACHE".to_owned(), 36, 40)]);

    let log = a
        .request("channel:tiers", "history", history(Some("LOG"), json!({})))
        .await
        .unwrap();
    let log_offsets = offsets(&log);
    assert_eq!(*log_offsets.last().unwrap(), 40);
    assert!(log_offsets[0] > 1 && log_offsets[0] < 36, "{log_offsets:?}");
    assert_eq!(sources(&log), vec![("LOG".to_owned(), log_offsets[0], 40)]);

    // `kafka` is the log's other name; lower case works too.
    let kafka = a
        .request(
            "channel:tiers",
            "history",
            history(Some("KAFKA"), json!({})),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&kafka), log_offsets);

    let db = a
        .request(
            "channel:tiers",
            "history",
            history(Some("database"), json!({})),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&db), (1..=40).collect::<Vec<_>>());
    assert_eq!(sources(&db), vec![("DATABASE".to_owned(), 1, 40)]);

    // The same over HTTP.
    let (status, page) = s
        .http(
            "GET",
            "/v1/channels/tiers/messages?poll_source=cache&limit=1000",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(offsets(&page), (36..=40).collect::<Vec<_>>());
    let (status, page) = s
        .http(
            "GET",
            "/v1/channels/tiers/messages?poll_source=nowhere",
            None,
        )
        .await;
    assert_eq!(status, 400, "{page}");
    assert_eq!(page["code"], "invalid_payload");
}

#[tokio::test]
async fn a_join_sets_the_connection_default_source() {
    let s = tiered_server().await;
    let mut a = s.raw().await;
    let mut params = agent("alice");
    params["poll_source"] = json!("KAFKA");
    a.join("tiers", params).await.unwrap();
    publish_big(&mut a, "tiers", 8).await;
    let page = a
        .request("channel:tiers", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), (1..=8).collect::<Vec<_>>());
    assert_eq!(sources(&page), vec![("LOG".to_owned(), 1, 8)]);
    // A request's own source wins.
    let page = a
        .request("channel:tiers", "history", json!({"poll_source": "CACHE"}))
        .await
        .unwrap();
    assert_eq!(sources(&page), vec![("CACHE".to_owned(), 4, 8)]);
    // An unknown source is a clear error.
    let err = a
        .request("channel:tiers", "history", json!({"poll_source": "tape"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], "invalid_payload");
}

#[tokio::test]
async fn storage_policies_pick_the_tiers() {
    let mut s = TestServer::start().await;
    for (name, storage) in [("mem", "cache"), ("logged", "log"), ("kept", "persistent")] {
        let (status, body) = s
            .http(
                "POST",
                "/v1/channels",
                Some(json!({"name": name, "storage": storage, "retention": {"cache": {"max_messages": 3}}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["storage"], storage);
        assert_eq!(body["retention"]["cache"]["max_messages"], 3);
    }
    let mut a = s.raw().await;
    for name in ["mem", "logged", "kept"] {
        a.join(name, agent("alice")).await.unwrap();
        for i in 1..=5 {
            let ack = a
                .publish(name, json!({"type": "t", "data": i}))
                .await
                .unwrap();
            assert_eq!(ack["offset"], i);
        }
    }
    // Cache only: the cache holds the newest 3, and that is all there is.
    let page = a
        .request("channel:mem", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![3, 4, 5]);
    assert_eq!(page["first_available"], 3);
    let err = a
        .request("channel:mem", "history", json!({"poll_source": "LOG"}))
        .await
        .unwrap_err();
    assert_eq!(err["code"], "no_history");
    // Cache and log: no database tier.
    let err = a
        .request(
            "channel:logged",
            "history",
            json!({"poll_source": "DATABASE"}),
        )
        .await
        .unwrap_err();
    assert_eq!(err["code"], "no_history");
    let page = a
        .request("channel:logged", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![1, 2, 3, 4, 5]);

    drop(a);
    s.restart().await;
    let mut a = s.raw().await;
    // The cache did not survive: a new epoch, offsets start over.
    let reply = a.join("mem", agent("alice")).await.unwrap();
    assert_eq!(reply["head"], 0);
    let reply = a.join("logged", agent("alice")).await.unwrap();
    assert_eq!(reply["head"], 5);
    let page = a
        .request("channel:logged", "history", json!({"poll_source": "LOG"}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![1, 2, 3, 4, 5]);
    let reply = a.join("kept", agent("alice")).await.unwrap();
    assert_eq!(reply["head"], 5);
    let page = a
        .request(
            "channel:kept",
            "history",
            json!({"poll_source": "DATABASE"}),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![1, 2, 3, 4, 5]);
    let ack = a
        .publish("kept", json!({"type": "t", "data": 6}))
        .await
        .unwrap();
    assert_eq!(ack["offset"], 6);
}

#[tokio::test]
async fn channel_retention_applies_to_every_tier_and_survives_a_restart() {
    let mut s = TestServer::with(|c| c.storage.retention_interval_ms = 3_600_000).await;
    for (name, storage) in [("kept", "persistent"), ("logged", "log")] {
        let (status, body) = s
            .http(
                "POST",
                "/v1/channels",
                Some(json!({"name": name, "storage": storage, "retention": {"max_messages": 4}})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut a = s.raw().await;
    for name in ["kept", "logged"] {
        a.join(name, agent("alice")).await.unwrap();
        for i in 1..=10 {
            a.publish(name, json!({"type": "t", "data": i}))
                .await
                .unwrap();
        }
    }
    settle(&s).await;
    for (name, sources) in [
        ("kept", vec!["CACHE", "LOG", "DATABASE", "AUTO"]),
        ("logged", vec!["CACHE", "LOG", "AUTO"]),
    ] {
        for source in sources {
            let page = a
                .request(
                    &format!("channel:{name}"),
                    "history",
                    json!({"poll_source": source}),
                )
                .await
                .unwrap();
            assert_eq!(offsets(&page), vec![7, 8, 9, 10], "{name} {source}");
            assert_eq!(page["first_available"], 7);
        }
    }
    drop(a);
    s.restart().await;
    let mut a = s.raw().await;
    for name in ["kept", "logged"] {
        let reply = a.join(name, agent("alice")).await.unwrap();
        assert_eq!(reply["head"], 10);
        let page = a
            .request(
                &format!("channel:{name}"),
                "history",
                json!({"poll_source": "LOG"}),
            )
            .await
            .unwrap();
        assert_eq!(offsets(&page), vec![7, 8, 9, 10], "{name} after a restart");
    }
}

#[tokio::test]
async fn a_deleted_channel_recreated_starts_empty_in_every_tier() {
    let mut s = TestServer::start().await;
    let mut a = s.raw().await;
    a.join("again", agent("alice")).await.unwrap();
    for i in 1..=3 {
        a.publish("again", json!({"type": "t", "data": i}))
            .await
            .unwrap();
    }
    let (status, _) = s.http("DELETE", "/v1/channels/again", None).await;
    assert_eq!(status, 204);
    let mut a = s.raw().await;
    a.join("again", agent("alice")).await.unwrap();
    a.publish("again", json!({"type": "t", "data": "new"}))
        .await
        .unwrap();
    drop(a);
    s.restart().await;
    let mut a = s.raw().await;
    let reply = a.join("again", agent("alice")).await.unwrap();
    assert_eq!(reply["head"], 1);
    for source in ["LOG", "DATABASE", "AUTO"] {
        let page = a
            .request("channel:again", "history", json!({"poll_source": source}))
            .await
            .unwrap();
        assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{source}");
        assert_eq!(page["messages"][0]["data"], "new");
    }
}

#[tokio::test]
async fn retention_must_fit_the_policy_and_bounds_a_cache_only_channel() {
    let s = TestServer::start().await;
    for body in [
        json!({"name": "a", "storage": "ephemeral", "retention": {"cache": {"max_messages": 3}}}),
        json!({"name": "b", "storage": "log", "retention": {"log": {"max_age_secs": 60}}}),
        json!({"name": "c", "storage": "cache", "retention": {"log": {"max_age_secs": 60}}}),
    ] {
        let (status, reply) = s.http("POST", "/v1/channels", Some(body)).await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["code"], "invalid_payload");
    }
    let (status, reply) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "mem", "storage": "cache", "retention": {"max_messages": 2}})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    let mut a = s.raw().await;
    a.join("mem", agent("alice")).await.unwrap();
    for i in 1..=4 {
        a.publish("mem", json!({"type": "t", "data": i}))
            .await
            .unwrap();
    }
    let page = a
        .request("channel:mem", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![3, 4]);
    assert_eq!(page["first_available"], 3);
}

#[tokio::test]
async fn an_acknowledged_direct_message_is_in_the_inbox_at_once() {
    // The database writer waits before writing: an inbox read must still see what was
    // acknowledged before it.
    let s = TestServer::with(|c| c.storage.db_batch_delay_ms = 200).await;
    let (status, ack) = s
        .http(
            "POST",
            "/v1/channels/work/messages",
            Some(json!({"type": "task", "data": 1, "to": "worker"})),
        )
        .await;
    assert_eq!(status, 200, "{ack}");
    let (status, got) = s
        .http(
            "POST",
            "/v1/channels/work/inbox/worker/receive",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["messages"].as_array().unwrap().len(), 1);
    assert_eq!(got["messages"][0]["message"]["id"], ack["id"]);
}

/// The NATS server of the JetStream tests and a stream name no other run uses.
fn jetstream() -> (String, String) {
    let url = std::env::var("SWITCHBOARD_TEST_NATS_URL").expect(
        "SWITCHBOARD_TEST_NATS_URL: this test needs a NATS server 2.10+ with JetStream \
         (scripts/test.sh starts one)",
    );
    let stream = format!(
        "E2E_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    (url, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_tier_on_nats_jetstream() {
    let (url, stream) = jetstream();
    let mut s = TestServer::with(|c| {
        c.storage.log = switchboard_server::config::LogBackend::Jetstream;
        c.storage.nats_url = url;
        c.storage.jetstream_stream = stream;
        c.storage.cache_messages = 2;
    })
    .await;
    let mut a = s.raw().await;
    a.join("js", agent("alice")).await.unwrap();
    for i in 1..=6 {
        let ack = a
            .publish("js", json!({"type": "t", "data": i}))
            .await
            .unwrap();
        assert_eq!(ack["offset"], i);
    }
    let page = a
        .request("channel:js", "history", json!({"poll_source": "LOG"}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), (1..=6).collect::<Vec<_>>());
    let page = a.request("channel:js", "history", json!({})).await.unwrap();
    assert_eq!(
        sources(&page),
        vec![("LOG".to_owned(), 1, 4), ("CACHE".to_owned(), 5, 6)]
    );
    let page = a
        .request("channel:js", "history", json!({"poll_source": "DATABASE"}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), (1..=6).collect::<Vec<_>>());
    drop(a);
    s.restart().await;
    let mut a = s.raw().await;
    // The index is rebuilt from the stream; offsets go on.
    let reply = a
        .join("js", json!({"agent_name": "alice", "since": 3}))
        .await
        .unwrap();
    assert_eq!(reply["head"], 6);
    for i in 4..=6 {
        let got = a.message("js").await;
        assert_eq!(got["offset"], i);
    }
    let ack = a
        .publish("js", json!({"type": "t", "data": 7}))
        .await
        .unwrap();
    assert_eq!(ack["offset"], 7);
    let page = a
        .request(
            "channel:js",
            "history",
            json!({"poll_source": "KAFKA", "from_offset": 6}),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![6, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_the_log_keeps_the_database_and_renumbers_nothing() {
    let mut s = TestServer::start().await;
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "logged", "storage": "log"})),
        )
        .await;
    assert_eq!(status, 201);
    let mut a = s.raw().await;
    for name in ["kept", "logged"] {
        a.join(name, agent("alice")).await.unwrap();
        for i in 1..=3 {
            a.publish(name, json!({"type": "t", "data": i}))
                .await
                .unwrap();
        }
    }
    let (_, info) = s.http("GET", "/v1/channels/logged", None).await;
    let old_epoch = info["epoch"].clone();
    // A direct message to an agent's inbox, acknowledged: it must not come back.
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels/kept/messages",
            Some(json!({"type": "task", "data": 1, "to": "worker"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, got) = s
        .http(
            "POST",
            "/v1/channels/kept/inbox/worker/receive",
            Some(json!({})),
        )
        .await;
    let id = got["messages"][0]["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels/kept/inbox/worker/ack",
            Some(json!({ "id": id })),
        )
        .await;
    assert_eq!(status, 204);
    drop(a);

    // Embedded, then JetStream, then embedded again.
    let (url, stream) = jetstream();
    s.config.storage.log = switchboard_server::config::LogBackend::Jetstream;
    s.config.storage.nats_url = url;
    s.config.storage.jetstream_stream = stream;
    s.restart().await;
    let mut a = s.raw().await;
    let reply = a.join("kept", agent("alice")).await.unwrap();
    assert_eq!(
        reply["head"], 4,
        "the database keeps a persistent channel's history"
    );
    let page = a
        .request("channel:kept", "history", json!({}))
        .await
        .unwrap();
    // Offset 4 is the direct message to the worker: not alice's to read.
    assert_eq!(offsets(&page), vec![1, 2, 3]);
    let ack = a
        .publish("kept", json!({"type": "t", "data": 5}))
        .await
        .unwrap();
    assert_eq!(ack["offset"], 5);
    // A log channel's history was in the other log: a new epoch, not reused offsets.
    let reply = a.join("logged", agent("alice")).await.unwrap();
    assert_eq!(reply["head"], 0);
    assert_ne!(reply["epoch"], old_epoch);
    drop(a);

    s.config.storage.log = switchboard_server::config::LogBackend::Embedded;
    s.restart().await;
    let mut a = s.raw().await;
    a.join("kept", agent("alice")).await.unwrap();
    let page = a
        .request("channel:kept", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![1, 2, 3, 5]);
    // Nothing of the old embedded log was copied again.
    let (_, got) = s
        .http(
            "POST",
            "/v1/channels/kept/inbox/worker/receive",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        got["messages"],
        json!([]),
        "an acknowledged inbox entry stays gone"
    );
}
