//! Usage metering: what `GET /v1/usage` and the per-tenant series say after real traffic.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn usage(s: &TestServer, key: &str, query: &str) -> (u16, Value) {
    http_request(
        &s.http_url(),
        "GET",
        &format!("/v1/usage{query}"),
        Some(key),
        None,
    )
    .await
}

#[tokio::test]
async fn usage_counts_traffic_per_key_and_survives_a_restart() {
    let mut s = TestServer::with(|c| c.storage.usage_flush_ms = 100).await;
    let mut alice = s.raw().await;
    alice.join("metered", agent("alice")).await.unwrap();
    let mut bob = s.raw().await;
    bob.join("metered", agent("bob")).await.unwrap();
    for i in 0..10 {
        alice
            .publish(
                "metered",
                json!({"type": "t", "data": format!("message {i}")}),
            )
            .await
            .unwrap();
    }
    for _ in 0..10 {
        bob.message("metered").await;
    }
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels/metered/messages",
            Some(json!({"type": "t", "data": "over http"})),
        )
        .await;
    assert_eq!(status, 200);
    bob.message("metered").await;
    alice.message("metered").await;

    let (status, report) = usage(&s, &s.key, "").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["tenant"], "default");
    let totals = &report["totals"];
    assert_eq!(totals["messages_in"], 11);
    // Every message reached both agents (echo is on).
    assert_eq!(totals["messages_out"], 22);
    assert!(totals["bytes_in"].as_u64().unwrap() >= 11 * 9);
    assert!(totals["bytes_out"].as_u64().unwrap() > totals["bytes_in"].as_u64().unwrap());
    assert_eq!(totals["peak_connections"], 2);
    assert_eq!(report["connections"], 2);
    assert_eq!(report["storage"]["messages"], 11);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one key, one hour: {report}");

    // The per-tenant series follow, once flushed.
    let mut tries = 0;
    loop {
        let (_, metrics) = http_request(&s.http_url(), "GET", "/metrics", None, None).await;
        let text = metrics.as_str().unwrap_or_default().to_owned();
        if text.contains("switchboard_tenant_messages_in_total{tenant=\"default\"} 11") {
            break;
        }
        tries += 1;
        assert!(
            tries < 100,
            "the tenant series appear within a few flushes:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Counted usage is stored: a restart keeps it.
    drop((alice, bob));
    s.restart().await;
    let (_, report) = usage(&s, &s.key, "?period=day").await;
    assert_eq!(report["period"], "day");
    assert_eq!(report["totals"]["messages_in"], 11);
    assert_eq!(report["totals"]["messages_out"], 22);
    assert_eq!(report["connections"], 0);
    let start = report["rows"][0]["start"].as_i64().unwrap();
    assert_eq!(start % 86_400_000, 0, "day rows start at midnight UTC");
}

#[tokio::test]
async fn temporary_keys_count_for_their_original_key_and_tenants_read_only_their_own() {
    let s = TestServer::start().await;
    let (_, minted) = s
        .http(
            "POST",
            "/v1/keys/temporary",
            Some(json!({"ttl_secs": 600, "capabilities": ["subscribe", "publish"]})),
        )
        .await;
    let temporary = minted["key"].as_str().unwrap().to_owned();
    let mut browser = s.raw_with_key(&temporary).await;
    browser.join("room", agent("web")).await.unwrap();
    browser
        .publish("room", json!({"type": "t", "data": 1}))
        .await
        .unwrap();
    let (_, keys) = s.http("GET", "/v1/keys", None).await;
    let original = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "original")
        .unwrap()["id"]
        .clone();
    let (_, report) = usage(&s, &s.key, "").await;
    assert_eq!(report["rows"][0]["key"], original);
    assert_eq!(report["totals"]["messages_in"], 1);

    // Another tenant sees only itself; a temporary key reads no usage; an admin names a tenant.
    let acme = s.server().create_key("acme").await.unwrap();
    let (status, other) = usage(&s, &acme, "").await;
    assert_eq!(status, 200);
    assert_eq!(other["tenant"], "acme");
    assert_eq!(other["totals"]["messages_in"], 0);
    let (status, err) = usage(&s, &acme, "?tenant=default").await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = usage(&s, &temporary, "").await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = usage(&s, &s.admin_key, "").await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
    let (status, report) = usage(&s, &s.admin_key, "?tenant=default").await;
    assert_eq!(status, 200);
    assert_eq!(report["totals"]["messages_in"], 1);
    let (status, err) = usage(&s, &s.key, "?from=10&to=5").await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
}
