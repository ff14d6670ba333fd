//! History reads, resume with `since`, explicit gaps, epochs, and durability across restarts.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

fn offsets(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn history_filters_by_offset_time_sender_type_and_limit() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("log", agent("alice")).await.unwrap();
    b.join("log", agent("bob")).await.unwrap();
    for i in 1..=10 {
        let (who, kind) = if i % 2 == 0 {
            (&mut b, "even")
        } else {
            (&mut a, "odd")
        };
        who.publish("log", json!({"type": kind, "data": i}))
            .await
            .unwrap();
    }
    let all = a
        .request("channel:log", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(offsets(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(
        (all["head"].as_u64(), all["first_available"].as_u64()),
        (Some(10), Some(1))
    );
    assert!(all.get("next").is_none());

    let page = a
        .request(
            "channel:log",
            "history",
            json!({"from_offset": 3, "to_offset": 6}),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![3, 4, 5, 6]);
    let page = a
        .request("channel:log", "history", json!({"sender": "bob"}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![2, 4, 6, 8, 10]);
    let page = a
        .request("channel:log", "history", json!({"type": "odd", "limit": 2}))
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![1, 3]);
    assert_eq!(page["next"], 4);
    let page = a
        .request(
            "channel:log",
            "history",
            json!({"direction": "backward", "limit": 3}),
        )
        .await
        .unwrap();
    assert_eq!(offsets(&page), vec![10, 9, 8]);
    assert_eq!(page["next"], 7);

    let ts: Vec<i64> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ts"].as_i64().unwrap())
        .collect();
    let page = a
        .request(
            "channel:log",
            "history",
            json!({"from_ts": ts[4], "to_ts": ts[4]}),
        )
        .await
        .unwrap();
    assert!(offsets(&page).contains(&5));
    assert!(offsets(&page).iter().all(|o| ts[*o as usize - 1] == ts[4]));

    assert_eq!(
        code(
            &a.request("channel:log", "history", json!({"limit": 0}))
                .await
                .unwrap_err()
        ),
        "invalid_payload"
    );
    assert_eq!(
        code(
            &a.request("channel:log", "history", json!({"limit": 5000}))
                .await
                .unwrap_err()
        ),
        "invalid_payload"
    );
    assert_eq!(
        code(
            &a.request("channel:log", "history", json!({"from_offset": "x"}))
                .await
                .unwrap_err()
        ),
        "invalid_payload"
    );

    // The same over HTTP.
    let (status, page) = s
        .http(
            "GET",
            "/v1/channels/log/messages?sender=alice&limit=2&direction=backward",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(offsets(&page), vec![9, 7]);
    let (status, err) = s
        .http("GET", "/v1/channels/log/messages?limit=abc", None)
        .await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
}

async fn resume_case(cache_messages: usize) {
    let s = TestServer::with(|c| c.storage.cache_messages = cache_messages).await;
    let mut a = s.raw().await;
    a.join("feed", agent("writer")).await.unwrap();
    for i in 1..=30 {
        a.publish("feed", json!({"type": "n", "data": i}))
            .await
            .unwrap();
    }
    let mut b = s.raw().await;
    let joined = b
        .join("feed", json!({"agent_name": "reader", "since": 12}))
        .await
        .unwrap();
    assert_eq!(joined["head"], 30);
    assert!(joined.get("gap").is_none());
    // Live publishes racing the replay must come after it, with nothing lost or repeated.
    for i in 31..=40 {
        a.publish("feed", json!({"type": "n", "data": i}))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 13..=40 {
        seen.push(b.message("feed").await["offset"].as_u64().unwrap());
    }
    assert_eq!(seen, (13..=40).collect::<Vec<_>>());
    b.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
}

#[tokio::test]
async fn resume_from_the_cache_has_no_gap_and_no_duplicate() {
    resume_case(1024).await;
}

#[tokio::test]
async fn resume_from_disk_has_no_gap_and_no_duplicate() {
    resume_case(4).await;
}

#[tokio::test]
async fn retention_makes_an_explicit_gap_and_a_new_epoch_is_reported() {
    let s = TestServer::with(|c| {
        c.storage.retention_max_messages = 5;
        c.storage.retention_interval_ms = 100;
    })
    .await;
    let mut a = s.raw().await;
    let joined = a.join("short", agent("w")).await.unwrap();
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    for i in 1..=12 {
        a.publish("short", json!({"type": "n", "data": i}))
            .await
            .unwrap();
    }
    // Wait for retention to run (observable through history, not a sleep).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = a
            .request("channel:short", "history", json!({}))
            .await
            .unwrap();
        if page["first_available"] == 8 {
            assert_eq!(offsets(&page), vec![8, 9, 10, 11, 12]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never ran: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = s.raw().await;
    let joined = b
        .join(
            "short",
            json!({"agent_name": "late", "since": 2, "epoch": epoch}),
        )
        .await
        .unwrap();
    assert_eq!(
        joined["gap"],
        json!({"reason": "retention", "first_available": 8})
    );
    assert_eq!(b.message("short").await["offset"], 8);

    let mut c = s.raw().await;
    let joined = c
        .join(
            "short",
            json!({"agent_name": "stale", "since": 9, "epoch": "not-this-one"}),
        )
        .await
        .unwrap();
    assert_eq!(joined["gap"]["reason"], "epoch_changed");
    assert_eq!(
        c.message("short").await["offset"],
        8,
        "replay restarts at the new epoch's start"
    );
}

#[tokio::test]
async fn acknowledged_messages_survive_a_restart_and_resume_continues() {
    let mut s = TestServer::start().await;
    let mut a = s.raw().await;
    let joined = a
        .join("durable", json!({"agent_name": "w", "password": "pw"}))
        .await
        .unwrap();
    for i in 1..=20 {
        a.publish(
            "durable",
            json!({"type": "n", "data": i, "id": format!("m{i}")}),
        )
        .await
        .unwrap();
    }
    s.restart().await;
    assert_eq!(
        a.closed_with().await,
        1001,
        "graceful shutdown closes with going-away"
    );

    let mut b = s.raw().await;
    assert_eq!(
        code(&b.join("durable", agent("r")).await.unwrap_err()),
        "bad_password",
        "the password survives"
    );
    let again = b
        .join(
            "durable",
            json!({"agent_name": "r", "password": "pw", "since": 15, "epoch": joined["epoch"]}),
        )
        .await
        .unwrap();
    assert_eq!(again["epoch"], joined["epoch"]);
    assert_eq!(again["head"], 20);
    for o in 16..=20 {
        assert_eq!(b.message("durable").await["offset"], o);
    }
    // Offsets continue, and the dedup window survives the restart.
    let dup = b
        .publish("durable", json!({"type": "n", "id": "m20"}))
        .await
        .unwrap();
    assert_eq!(
        (dup["offset"].as_u64(), dup["duplicate"].as_bool()),
        (Some(20), Some(true))
    );
    let next = b.publish("durable", json!({"type": "n"})).await.unwrap();
    assert_eq!(next["offset"], 21);
}

async fn filtered_replay_case(cache_messages: usize) {
    let s = TestServer::with(|c| c.storage.cache_messages = cache_messages).await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    let session = a.join("mixed", agent("alice")).await.unwrap()["session_id"].clone();
    b.join("mixed", agent("bob")).await.unwrap();
    for i in 1..=12 {
        let (who, kind) = if i % 3 == 0 {
            (&mut b, "alert")
        } else {
            (&mut a, "chat")
        };
        who.publish("mixed", json!({"type": kind, "data": i}))
            .await
            .unwrap();
    }
    a.publish("mixed", json!({"type": "alert", "to": "bob", "data": "dm"}))
        .await
        .unwrap();
    let mut c = s.raw().await;
    // Take alice's name over with its session id (no race with the old socket's cleanup).
    let params = json!({"agent_name": "alice", "session_id": session, "since": 0,
                        "event_types": ["alert"], "echo": false});
    c.join("mixed", params).await.unwrap();
    // Only bob's alerts: not alice's own (echo off), not chat, not the direct message to bob.
    for expected in [3, 6, 9, 12] {
        assert_eq!(c.message("mixed").await["offset"], expected);
    }
    c.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
}

#[tokio::test]
async fn replay_from_the_cache_applies_the_join_filters() {
    filtered_replay_case(1024).await;
}

#[tokio::test]
async fn replay_from_disk_applies_the_join_filters() {
    filtered_replay_case(2).await;
}

#[tokio::test]
async fn offsets_continue_after_retention_empties_a_channel_and_the_server_restarts() {
    let mut s = TestServer::with(|c| c.storage.retention_interval_ms = 100).await;
    let (status, created) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "aging", "retention": {"max_age_secs": 1}})),
        )
        .await;
    assert_eq!(status, 201);
    for i in 1..=3 {
        let (_, ack) = s
            .http(
                "POST",
                "/v1/channels/aging/messages",
                Some(json!({"type": "n", "data": i})),
            )
            .await;
        assert_eq!(ack["offset"], i);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, info) = s.http("GET", "/v1/channels/aging", None).await;
        if info["first_available"] == 4 {
            assert_eq!(info["head"], 3);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "age retention never ran: {info}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.restart().await;
    let (_, info) = s.http("GET", "/v1/channels/aging", None).await;
    assert_eq!(
        (info["head"].as_u64(), info["first_available"].as_u64()),
        (Some(3), Some(4)),
        "{info}"
    );
    assert_eq!(info["epoch"], created["epoch"]);
    let (_, ack) = s
        .http(
            "POST",
            "/v1/channels/aging/messages",
            Some(json!({"type": "n"})),
        )
        .await;
    assert_eq!(ack["offset"], 4, "offsets are never reused within an epoch");
    let mut a = s.raw().await;
    let joined = a
        .join(
            "aging",
            json!({"agent_name": "r", "since": 1, "epoch": created["epoch"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        joined["gap"],
        json!({"reason": "retention", "first_available": 4})
    );
    assert_eq!(a.message("aging").await["offset"], 4);
}
