//! Channel storage: put/get/delete/list with versions, compare-and-set, expiry, change events,
//! limits, the HTTP routes, temporary keys and a restart.

use crate::harness::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn kv(socket: &mut Raw, event: &str, payload: Value) -> Result<Value, Value> {
    socket.request("channel:board", event, payload).await
}

#[tokio::test]
async fn put_get_list_delete_with_versions_and_change_events() {
    let mut s = TestServer::start().await;
    let mut writer = s.raw().await;
    writer.join("board", agent("writer")).await.unwrap();
    let mut watcher = s.raw().await;
    watcher
        .join("board", json!({"agent_name": "watcher", "kv_events": true}))
        .await
        .unwrap();
    let mut quiet = s.raw().await;
    quiet.join("board", agent("quiet")).await.unwrap();

    let put = kv(
        &mut writer,
        "kv_put",
        json!({"key": "score/ada", "value": {"points": 3}}),
    )
    .await
    .unwrap();
    assert_eq!(put["version"], 1);
    assert_eq!(put["updated_by"], "writer");
    let change = watcher.event("kv_change").await.payload;
    assert_eq!(
        (
            change["key"].as_str(),
            change["op"].as_str(),
            change["version"].as_u64()
        ),
        (Some("score/ada"), Some("put"), Some(1))
    );
    assert_eq!(change["value"], json!({"points": 3}));

    // Compare-and-set: the right version wins, a stale one gets version_conflict.
    let second = kv(
        &mut writer,
        "kv_put",
        json!({"key": "score/ada", "value": {"points": 5}, "version": 1}),
    )
    .await
    .unwrap();
    assert_eq!(second["version"], 2);
    let stale = kv(
        &mut writer,
        "kv_put",
        json!({"key": "score/ada", "value": {"points": 9}, "version": 1}),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&stale), "version_conflict");
    // Version 0: create only.
    let exists = kv(
        &mut writer,
        "kv_put",
        json!({"key": "score/ada", "value": 0, "version": 0}),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&exists), "version_conflict");
    kv(
        &mut writer,
        "kv_put",
        json!({"key": "score/bob", "value": 1, "version": 0}),
    )
    .await
    .unwrap();
    kv(
        &mut writer,
        "kv_put",
        json!({"key": "settings", "value": "dark"}),
    )
    .await
    .unwrap();

    let got = kv(&mut quiet, "kv_get", json!({"key": "score/ada"}))
        .await
        .unwrap();
    assert_eq!(
        (got["value"]["points"].as_u64(), got["version"].as_u64()),
        (Some(5), Some(2))
    );
    let page = kv(
        &mut quiet,
        "kv_list",
        json!({"prefix": "score/", "limit": 1}),
    )
    .await
    .unwrap();
    assert_eq!(page["entries"][0]["key"], "score/ada");
    assert_eq!(page["next"], "score/ada");
    let page = kv(
        &mut quiet,
        "kv_list",
        json!({"prefix": "score/", "after": "score/ada", "limit": 10}),
    )
    .await
    .unwrap();
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    assert_eq!(page["entries"][0]["key"], "score/bob");
    assert!(page.get("next").is_none());

    let conflict = kv(
        &mut writer,
        "kv_delete",
        json!({"key": "score/bob", "version": 7}),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&conflict), "version_conflict");
    kv(&mut writer, "kv_delete", json!({"key": "score/bob"}))
        .await
        .unwrap();
    let gone = kv(&mut quiet, "kv_get", json!({"key": "score/bob"}))
        .await
        .unwrap_err();
    assert_eq!(code(&gone), "not_found");
    quiet
        .assert_none(Duration::from_millis(100), |g| g.event == "kv_change")
        .await;

    // Storage is durable: a restart keeps it.
    drop((writer, watcher, quiet));
    s.restart().await;
    let mut again = s.raw().await;
    again.join("board", agent("again")).await.unwrap();
    let got = kv(&mut again, "kv_get", json!({"key": "score/ada"}))
        .await
        .unwrap();
    assert_eq!(got["version"], 2);
}

#[tokio::test]
async fn expiry_limits_and_bad_input() {
    let s = TestServer::with(|c| {
        c.limits.max_kv_keys_per_channel = 2;
        c.limits.max_kv_value_bytes = 100;
    })
    .await;
    let mut a = s.raw().await;
    a.join("board", agent("a")).await.unwrap();
    kv(
        &mut a,
        "kv_put",
        json!({"key": "short", "value": 1, "ttl_secs": 1}),
    )
    .await
    .unwrap();
    kv(&mut a, "kv_put", json!({"key": "long", "value": 2}))
        .await
        .unwrap();
    let full = kv(&mut a, "kv_put", json!({"key": "third", "value": 3}))
        .await
        .unwrap_err();
    assert_eq!(code(&full), "too_many_keys");
    let big = kv(
        &mut a,
        "kv_put",
        json!({"key": "big", "value": "x".repeat(200)}),
    )
    .await
    .unwrap_err();
    assert_eq!(code(&big), "message_too_large");
    for bad in [
        json!({"key": "", "value": 1}),
        json!({"key": "a\u{7}b", "value": 1}),
    ] {
        let err = kv(&mut a, "kv_put", bad).await.unwrap_err();
        assert_eq!(code(&err), "invalid_payload");
    }
    let err = kv(&mut a, "kv_list", json!({"limit": 0}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "invalid_payload");
    let err = a
        .request("channel:elsewhere", "kv_get", json!({"key": "long"}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not_joined");

    // The short-lived key expires (and frees its place).
    let mut tries = 0;
    loop {
        match kv(&mut a, "kv_get", json!({"key": "short"})).await {
            Err(e) => {
                assert_eq!(code(&e), "not_found");
                break;
            }
            Ok(_) => {
                tries += 1;
                assert!(tries < 60, "the entry expires after its ttl");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    kv(&mut a, "kv_put", json!({"key": "third", "value": 3}))
        .await
        .unwrap();
}

#[tokio::test]
async fn http_routes_and_temporary_keys() {
    let s = TestServer::start().await;
    let (status, _) = s
        .http("POST", "/v1/channels", Some(json!({"name": "board"})))
        .await;
    assert_eq!(status, 201);
    let (status, put) = s
        .http(
            "PUT",
            "/v1/channels/board/kv/config/theme",
            Some(json!({"value": {"dark": true}})),
        )
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        (put["key"].as_str(), put["updated_by"].as_str()),
        (Some("config/theme"), Some("http"))
    );
    let (status, conflict) = s
        .http(
            "PUT",
            "/v1/channels/board/kv/config/theme",
            Some(json!({"value": 1, "version": 9})),
        )
        .await;
    assert_eq!((status, code(&conflict)), (409, "version_conflict"));
    let (status, got) = s
        .http("GET", "/v1/channels/board/kv/config/theme", None)
        .await;
    assert_eq!((status, got["value"]["dark"].as_bool()), (200, Some(true)));
    let (_, page) = s
        .http("GET", "/v1/channels/board/kv?prefix=config/", None)
        .await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 1);
    let (status, err) = s.http("GET", "/v1/channels/nowhere/kv/x", None).await;
    assert_eq!((status, code(&err)), (404, "channel_not_found"));

    // A temporary key with kv may read and write; a read-only one may only read.
    let mint = |grant: Value| {
        let s = &s;
        async move {
            let (_, k) = s.http("POST", "/v1/keys/temporary", Some(grant)).await;
            k["key"].as_str().unwrap().to_owned()
        }
    };
    let reader =
        mint(json!({"ttl_secs": 60, "capabilities": ["subscribe", "kv"], "read_only": true})).await;
    let mut r = s.raw_with_key(&reader).await;
    r.join("board", agent("r")).await.unwrap();
    let got = kv(&mut r, "kv_get", json!({"key": "config/theme"}))
        .await
        .unwrap();
    assert_eq!(got["version"], 1);
    let err = kv(&mut r, "kv_put", json!({"key": "x", "value": 1}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "forbidden");
    let none = mint(json!({"ttl_secs": 60, "capabilities": ["subscribe"]})).await;
    let mut n = s.raw_with_key(&none).await;
    n.join("board", agent("n")).await.unwrap();
    let err = kv(&mut n, "kv_get", json!({"key": "config/theme"}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "forbidden");

    // Deleting the channel purges its storage.
    let (status, _) = s.http("DELETE", "/v1/channels/board", None).await;
    assert_eq!(status, 204);
    s.http("POST", "/v1/channels", Some(json!({"name": "board"})))
        .await;
    let (status, err) = s
        .http("GET", "/v1/channels/board/kv/config/theme", None)
        .await;
    assert_eq!((status, code(&err)), (404, "not_found"));
}
