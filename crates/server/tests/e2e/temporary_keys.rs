//! Temporary keys: minted from an original key, authorized on every frame, refreshed in place,
//! expired and revoked on live connections.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn mint(s: &TestServer, grant: Value) -> (String, String) {
    let (status, body) = s.http("POST", "/v1/keys/temporary", Some(grant)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires_at"].as_i64().unwrap() > 0);
    (
        body["key"].as_str().unwrap().to_owned(),
        body["id"].as_str().unwrap().to_owned(),
    )
}

async fn with_key(
    s: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    http_request(&s.http_url(), method, path, Some(key), body).await
}

#[tokio::test]
async fn every_frame_is_held_to_the_grant() {
    let s = TestServer::start().await;
    let (key, _) = mint(
        &s,
        json!({
            "ttl_secs": 600,
            "capabilities": ["subscribe", "publish", "presence"],
            "agent_names": ["web-1"],
            "channels": ["lobby", "room-*"],
            "event_types": ["chat"],
            "scope": "private",
        }),
    )
    .await;
    assert!(key.starts_with("tk_"));
    let mut browser = s.raw_with_key(&key).await;

    // Inside the grant.
    browser.join("lobby", agent("web-1")).await.unwrap();
    browser.join("room-42", agent("web-1")).await.unwrap();
    browser
        .publish("lobby", json!({"type": "chat", "data": "hi"}))
        .await
        .unwrap();
    let r = browser
        .request("channel:lobby", "presence", json!({}))
        .await;
    assert!(r.is_ok(), "{r:?}");

    // Outside it: each refused with `forbidden`, and the connection lives on.
    let refused = [
        browser.join("kitchen", agent("web-1")).await,
        browser.join("room-43", agent("someone-else")).await,
        browser
            .publish("lobby", json!({"type": "admin", "data": 1}))
            .await,
        browser.request("channel:lobby", "history", json!({})).await,
        browser
            .join("room-7", json!({"agent_name": "web-1", "scope": "public"}))
            .await,
    ];
    for r in refused {
        assert_eq!(code(&r.unwrap_err()), "forbidden");
    }
    browser
        .publish("room-42", json!({"type": "chat", "data": "still here"}))
        .await
        .unwrap();

    // The same rules over HTTP; and a temporary key manages nothing.
    let (status, err) = with_key(&s, &key, "GET", "/v1/channels/lobby/messages", None).await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, _) = with_key(
        &s,
        &key,
        "POST",
        "/v1/channels/lobby/messages",
        Some(json!({"type": "chat", "data": 1, "from": "web-1"})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, err) = with_key(
        &s,
        &key,
        "POST",
        "/v1/channels/lobby/messages",
        Some(json!({"type": "chat", "data": 1, "from": "intruder"})),
    )
    .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    for (method, path, body) in [
        (
            "POST",
            "/v1/keys/temporary",
            Some(json!({"ttl_secs": 60, "capabilities": ["publish"]})),
        ),
        ("GET", "/v1/keys", None),
        ("POST", "/v1/channels", Some(json!({"name": "new"}))),
        ("DELETE", "/v1/channels/lobby", None),
    ] {
        let (status, err) = with_key(&s, &key, method, path, body).await;
        assert_eq!((status, code(&err)), (403, "forbidden"), "{method} {path}");
    }
}

#[tokio::test]
async fn a_publish_only_key_joins_to_publish_and_receives_nothing() {
    let s = TestServer::start().await;
    let (key, _) = mint(
        &s,
        json!({"ttl_secs": 600, "capabilities": ["publish"], "channels": ["telemetry"]}),
    )
    .await;
    let mut reader = s.raw().await;
    reader.join("telemetry", agent("reader")).await.unwrap();
    let mut device = s.raw_with_key(&key).await;
    device.join("telemetry", agent("sensor-7")).await.unwrap();
    device
        .publish("telemetry", json!({"type": "reading", "data": 21.5}))
        .await
        .unwrap();
    assert_eq!(reader.message("telemetry").await["data"], 21.5);
    reader
        .publish("telemetry", json!({"type": "command", "data": "calibrate"}))
        .await
        .unwrap();
    device
        .assert_none(Duration::from_millis(300), |g| g.event == "message")
        .await;
}

#[tokio::test]
async fn read_only_keys_cannot_write() {
    let s = TestServer::start().await;
    let (key, _) = mint(
        &s,
        json!({"ttl_secs": 600, "capabilities": ["subscribe", "publish", "history"], "read_only": true}),
    )
    .await;
    let mut viewer = s.raw_with_key(&key).await;
    viewer.join("board", agent("viewer")).await.unwrap();
    let r = viewer.request("channel:board", "history", json!({})).await;
    assert!(r.is_ok(), "{r:?}");
    let err = viewer
        .publish("board", json!({"type": "t", "data": 1}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "forbidden");
}

#[tokio::test]
async fn minting_checks_its_input_and_needs_an_original_key() {
    let s = TestServer::with(|c| c.limits.max_temporary_key_ttl_secs = 3600).await;
    for (grant, expected) in [
        (
            json!({"ttl_secs": 0, "capabilities": ["publish"]}),
            "invalid_payload",
        ),
        (
            json!({"ttl_secs": 3601, "capabilities": ["publish"]}),
            "invalid_payload",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": []}),
            "invalid_payload",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": ["fly"]}),
            "invalid_payload",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": ["publish"], "agent_names": ["a b"]}),
            "invalid_agent_name",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": ["publish"], "channels": ["*"]}),
            "invalid_channel_name",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": ["publish"], "event_types": [""]}),
            "invalid_payload",
        ),
        (
            json!({"ttl_secs": 60, "capabilities": ["publish"], "surprise": 1}),
            "invalid_payload",
        ),
    ] {
        let (status, err) = s
            .http("POST", "/v1/keys/temporary", Some(grant.clone()))
            .await;
        assert_eq!((status, code(&err)), (400, expected), "{grant}");
    }
    let (status, err) = http_request(
        &s.http_url(),
        "POST",
        "/v1/keys/temporary",
        Some(&s.admin_key),
        Some(json!({"ttl_secs": 60, "capabilities": ["publish"]})),
    )
    .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));

    // A tampered key (one byte of the signed token changed) is refused.
    let (key, _) = mint(&s, json!({"ttl_secs": 60, "capabilities": ["publish"]})).await;
    let mut bytes = key.into_bytes();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let mut socket = s.raw_with_key(&tampered).await;
    assert_eq!(socket.event("error").await.payload["code"], "invalid_key");
    assert_eq!(socket.closed_with().await, 4500);
}

#[tokio::test]
async fn expiry_warns_then_closes_unless_the_key_is_refreshed() {
    let s = TestServer::start().await;
    // Refreshed in place: the warning comes, a fresh key goes in, the connection stays.
    let (first, _) = mint(
        &s,
        json!({"ttl_secs": 2, "capabilities": ["subscribe", "publish"]}),
    )
    .await;
    let mut refreshed = s.raw_with_key(&first).await;
    refreshed.join("clock", agent("a")).await.unwrap();
    let warning = refreshed.event("key_expiring").await;
    assert!(warning.payload["expires_at"].as_i64().is_some());
    let (second, _) = mint(
        &s,
        json!({"ttl_secs": 600, "capabilities": ["subscribe", "publish"]}),
    )
    .await;
    let reply = refreshed
        .request("phoenix", "auth", json!({"api_key": second}))
        .await
        .unwrap();
    assert!(
        reply["expires_at"].as_i64().unwrap() > warning.payload["expires_at"].as_i64().unwrap()
    );

    // Not refreshed: `key_expired`, close 4504.
    let (short, _) = mint(&s, json!({"ttl_secs": 1, "capabilities": ["subscribe"]})).await;
    let mut lapsed = s.raw_with_key(&short).await;
    lapsed.join("clock", agent("b")).await.unwrap();
    assert_eq!(lapsed.event("error").await.payload["code"], "key_expired");
    assert_eq!(lapsed.closed_with().await, 4504);

    // The refreshed connection outlived the first key's expiry.
    refreshed
        .publish("clock", json!({"type": "t", "data": "alive"}))
        .await
        .unwrap();

    // A refresh to a narrower key drops the channels it no longer allows; one that may only
    // publish now cannot keep receiving either.
    let (narrow, _) = mint(
        &s,
        json!({"ttl_secs": 600, "capabilities": ["publish"], "channels": ["clock"]}),
    )
    .await;
    refreshed
        .request("phoenix", "auth", json!({"api_key": narrow}))
        .await
        .unwrap();
    assert_eq!(refreshed.event("kicked").await.payload["code"], "forbidden");
}

#[tokio::test]
async fn revoking_a_temporary_key_or_its_original_closes_its_connections() {
    let s = TestServer::start().await;
    let (a, a_id) = mint(&s, json!({"ttl_secs": 600, "capabilities": ["subscribe"]})).await;
    let (b, _) = mint(&s, json!({"ttl_secs": 600, "capabilities": ["subscribe"]})).await;
    let mut first = s.raw_with_key(&a).await;
    first.join("news", agent("a")).await.unwrap();
    let mut second = s.raw_with_key(&b).await;
    second.join("news", agent("b")).await.unwrap();

    let (_, listed) = s.http("GET", "/v1/keys", None).await;
    let temporary = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "temporary")
        .count();
    assert_eq!(temporary, 2);

    let (status, _) = s.http("DELETE", &format!("/v1/keys/{a_id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(first.event("error").await.payload["code"], "key_revoked");
    assert_eq!(first.closed_with().await, 4503);
    let mut again = s.raw_with_key(&a).await;
    assert_eq!(again.event("error").await.payload["code"], "invalid_key");

    // Revoking the original key takes every temporary key minted from it along.
    let (_, keys) = s.http("GET", "/v1/keys", None).await;
    let original = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "original")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .http("DELETE", &format!("/v1/keys/{original}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(second.event("error").await.payload["code"], "key_revoked");
    assert_eq!(second.closed_with().await, 4503);
}
