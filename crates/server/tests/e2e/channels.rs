//! Passwords, agent names, takeover, scopes and tenant isolation, the channel HTTP API.

use crate::harness::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_first_join_sets_the_password_and_later_joins_must_match() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("vault", json!({"agent_name": "a", "password": "pw1"}))
        .await
        .unwrap();
    let err = b
        .join("vault", json!({"agent_name": "b", "password": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "bad_password");
    let err = b
        .join("vault", json!({"agent_name": "b"}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "bad_password");
    b.join("vault", json!({"agent_name": "b", "password": "pw1"}))
        .await
        .unwrap();
    let (status, info) = s.http("GET", "/v1/channels/vault", None).await;
    assert_eq!(status, 200);
    assert_eq!(info["has_password"], true);
    assert!(
        !info.to_string().contains("pw1"),
        "the password is never echoed"
    );
}

#[tokio::test]
async fn agent_names_are_unique_unless_the_session_is_taken_over() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    let first = a.join("room", agent("worker")).await.unwrap();
    let err = b.join("room", agent("worker")).await.unwrap_err();
    assert_eq!(code(&err), "agent_name_taken");
    let err = b
        .join(
            "room",
            json!({"agent_name": "worker", "session_id": "guess"}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "agent_name_taken");
    let second = b
        .join(
            "room",
            json!({"agent_name": "worker", "session_id": first["session_id"]}),
        )
        .await
        .unwrap();
    assert_ne!(second["session_id"], first["session_id"]);
    let kicked = a.event("kicked").await;
    assert_eq!(kicked.payload["code"], "session_taken_over");
    a.event("phx_close").await;
    let err = a.publish("room", json!({"type": "t"})).await.unwrap_err();
    assert_eq!(code(&err), "not_joined");
    b.publish("room", json!({"type": "t"})).await.unwrap();
}

#[tokio::test]
async fn bad_names_and_topics_get_their_codes() {
    let s = TestServer::start().await;
    let mut a = s.raw().await;
    assert_eq!(
        code(&a.join("room", agent("has space")).await.unwrap_err()),
        "invalid_agent_name"
    );
    assert_eq!(
        code(&a.join("bad name", agent("a")).await.unwrap_err()),
        "invalid_channel_name"
    );
    assert_eq!(
        code(&a.join(&"x".repeat(129), agent("a")).await.unwrap_err()),
        "invalid_channel_name"
    );
    assert_eq!(
        code(&a.join("room", json!({"name": "a"})).await.unwrap_err()),
        "invalid_payload"
    );
    assert_eq!(
        code(
            &a.join("room", json!({"agent_name": "a", "scope": "galaxy"}))
                .await
                .unwrap_err()
        ),
        "invalid_payload"
    );
    assert_eq!(
        code(
            &a.request("room:x", "phx_join", agent("a"))
                .await
                .unwrap_err()
        ),
        "invalid_topic"
    );
    assert_eq!(
        code(
            &a.request("channel:room", "publish", json!({"type": "t"}))
                .await
                .unwrap_err()
        ),
        "not_joined"
    );
    a.join("room", agent("a")).await.unwrap();
    assert_eq!(
        code(&a.join("room", agent("a2")).await.unwrap_err()),
        "already_joined"
    );
    assert_eq!(
        code(
            &a.request("channel:room", "dance", json!({}))
                .await
                .unwrap_err()
        ),
        "unknown_event"
    );
    assert_eq!(
        code(&a.request("phoenix", "dance", json!({})).await.unwrap_err()),
        "unknown_event"
    );
}

#[tokio::test]
async fn private_channels_of_two_tenants_never_meet_and_public_ones_do() {
    let s = TestServer::start().await;
    let other_key = s.server().create_key("acme").await.unwrap();
    let mut mine = s.raw().await;
    let mut theirs = s.raw_with_key(&other_key).await;
    mine.join("lobby", json!({"agent_name": "a", "password": "mine"}))
        .await
        .unwrap();
    // Same name, other tenant: a different channel, so our password does not apply.
    theirs
        .join("lobby", json!({"agent_name": "a"}))
        .await
        .unwrap();
    mine.publish("lobby", json!({"type": "t", "data": "private-1"}))
        .await
        .unwrap();
    theirs
        .publish("lobby", json!({"type": "t", "data": "private-2"}))
        .await
        .unwrap();
    assert_eq!(mine.message("lobby").await["data"], "private-1");
    assert_eq!(theirs.message("lobby").await["data"], "private-2");
    mine.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    theirs
        .assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    let (status, _) = http_request(
        &s.http_url(),
        "GET",
        "/v1/channels/lobby/messages",
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = http_request(
        &s.http_url(),
        "GET",
        "/v1/channels/lobby/messages",
        Some(&other_key),
        None,
    )
    .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["data"], "private-2");

    // Public scope: one namespace across tenants.
    mine.join("plaza", json!({"agent_name": "m", "scope": "public"}))
        .await
        .unwrap();
    theirs
        .join("plaza", json!({"agent_name": "t", "scope": "public"}))
        .await
        .unwrap();
    theirs
        .publish("plaza", json!({"type": "hello", "data": "from acme"}))
        .await
        .unwrap();
    assert_eq!(mine.message("plaza").await["data"], "from acme");
    let (status, presence) = s
        .http("GET", "/v1/channels/plaza/presence?scope=public", None)
        .await;
    assert_eq!(status, 200);
    assert!(presence.get("m").is_some() && presence.get("t").is_some());
}

#[tokio::test]
async fn channels_over_http_create_get_delete() {
    let s = TestServer::start().await;
    let (status, info) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "ops", "password": "pw", "retention": {"max_messages": 10}})),
        )
        .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["retention"]["max_messages"], 10);
    assert_eq!(info["storage"], "persistent");
    let (status, err) = s
        .http("POST", "/v1/channels", Some(json!({"name": "ops"})))
        .await;
    assert_eq!((status, code(&err)), (409, "channel_exists"));
    let (status, err) = s
        .http("POST", "/v1/channels", Some(json!({"name": "bad name"})))
        .await;
    assert_eq!((status, code(&err)), (400, "invalid_channel_name"));
    let (status, err) = s
        .http("POST", "/v1/channels", Some(json!({"nam": "x"})))
        .await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));

    let mut a = s.raw().await;
    assert_eq!(
        code(&a.join("ops", agent("a")).await.unwrap_err()),
        "bad_password"
    );
    a.join("ops", json!({"agent_name": "a", "password": "pw"}))
        .await
        .unwrap();
    let (status, _) = s.http("DELETE", "/v1/channels/ops", None).await;
    assert_eq!(status, 204);
    assert_eq!(a.event("kicked").await.payload["code"], "channel_deleted");
    let (status, err) = s.http("GET", "/v1/channels/ops", None).await;
    assert_eq!((status, code(&err)), (404, "channel_not_found"));

    // Ephemeral-only channels keep nothing.
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "pings", "storage": "ephemeral"})),
        )
        .await;
    assert_eq!(status, 201);
    let mut b = s.raw().await;
    let joined = b.join("pings", agent("b")).await.unwrap();
    assert_eq!(joined["persistent"], false);
    let ack = b.publish("pings", json!({"type": "ping"})).await.unwrap();
    assert!(ack.get("offset").is_none());
    assert_eq!(
        code(
            &b.request("channel:pings", "history", json!({}))
                .await
                .unwrap_err()
        ),
        "no_history"
    );
}

#[tokio::test]
async fn http_requires_a_valid_key() {
    let s = TestServer::start().await;
    let (status, err) = http_request(&s.http_url(), "GET", "/v1/channels/x", None, None).await;
    assert_eq!((status, code(&err)), (401, "unauthenticated"));
    let (status, err) = http_request(
        &s.http_url(),
        "GET",
        "/v1/channels/x",
        Some("sk_nope_nope"),
        None,
    )
    .await;
    assert_eq!((status, code(&err)), (401, "invalid_key"));
    let (status, health) = http_request(&s.http_url(), "GET", "/healthz", None, None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, err) = s.http("GET", "/v1/channels/x?scope=bogus", None).await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
    let (status, err) = s.http("PUT", "/v1/channels/x", None).await;
    assert_eq!((status, code(&err)), (405, "method_not_allowed"));
    let (status, err) = s.http("GET", "/v2/nothing", None).await;
    assert_eq!((status, code(&err)), (404, "not_found"));
    let lower = [("Authorization", format!("bearer {}", s.key))];
    let lower: Vec<(&str, &str)> = lower.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, _) = http_request_with(
        &s.http_url(),
        "POST",
        "/v1/channels",
        None,
        Some(json!({"name": "lc"})),
        &lower,
    )
    .await;
    assert_eq!(status, 201, "the auth scheme is case-insensitive");
    let (status, api) = http_request(&s.http_url(), "GET", "/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn a_data_directory_serves_one_server_at_a_time() {
    let s = TestServer::start().await;
    let mut second = s.config.clone();
    second.server.listen = "127.0.0.1:0".parse().unwrap();
    let err = switchboard_server::Server::start(second)
        .await
        .err()
        .expect("the second start is refused");
    assert!(
        err.to_string()
            .contains("in use by another switchboard process"),
        "{err}"
    );
}
