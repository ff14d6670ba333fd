//! Broadcast, direct, ephemeral, filters, echo, attachments, idempotency.

use crate::harness::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn broadcast_reaches_every_agent_with_offsets() {
    let s = TestServer::start().await;
    let mut a = s.raw().await;
    let mut b = s.raw().await;
    let joined = a.join("room", agent("alice")).await.unwrap();
    assert_eq!(joined["head"], 0);
    assert_eq!(joined["persistent"], true);
    b.join("room", agent("bob")).await.unwrap();
    let ack = a
        .publish("room", json!({"type": "chat", "data": {"text": "hi"}}))
        .await
        .unwrap();
    assert_eq!(ack["offset"], 1);
    for c in [&mut a, &mut b] {
        let m = c.message("room").await;
        assert_eq!(m["offset"], 1);
        assert_eq!(m["from"], "alice");
        assert_eq!(m["type"], "chat");
        assert_eq!(m["data"], json!({"text": "hi"}));
        assert_eq!(m["id"], ack["id"]);
        assert_eq!(m["channel"], "room");
        assert!(m.get("to").is_none());
    }
    let ack2 = b
        .publish("room", json!({"type": "chat", "data": 2}))
        .await
        .unwrap();
    assert_eq!(ack2["offset"], 2);
    assert_eq!(a.message("room").await["data"], 2);
}

#[tokio::test]
async fn direct_messages_reach_only_their_target_and_sender() {
    let s = TestServer::start().await;
    let (mut a, mut b, mut c) = (s.raw().await, s.raw().await, s.raw().await);
    a.join("room", agent("alice")).await.unwrap();
    b.join("room", agent("bob")).await.unwrap();
    c.join("room", agent("carol")).await.unwrap();
    a.publish("room", json!({"type": "dm", "to": "bob", "data": "secret"}))
        .await
        .unwrap();
    let m = b.message("room").await;
    assert_eq!(
        (m["to"].as_str(), m["data"].as_str()),
        (Some("bob"), Some("secret"))
    );
    assert_eq!(
        a.message("room").await["to"],
        "bob",
        "the sender sees its own direct message (echo)"
    );
    c.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    // History hides other agents' direct messages.
    let page = c
        .request("channel:room", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
    let page = b
        .request("channel:room", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn ephemeral_messages_are_delivered_but_never_stored() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("game", agent("p1")).await.unwrap();
    b.join("game", agent("p2")).await.unwrap();
    let ack = a
        .publish(
            "game",
            json!({"type": "pos", "data": [1, 2], "ephemeral": true}),
        )
        .await
        .unwrap();
    assert!(ack.get("offset").is_none());
    let m = b.message("game").await;
    assert_eq!(m["ephemeral"], true);
    assert!(m.get("offset").is_none());
    let page = b
        .request("channel:game", "history", json!({}))
        .await
        .unwrap();
    assert!(page["messages"].as_array().unwrap().is_empty());
    assert_eq!(page["head"], 0);
    let err = a
        .publish(
            "game",
            json!({"type": "pos", "to": "ghost", "ephemeral": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "agent_not_present");
}

#[tokio::test]
async fn event_type_filter_and_echo_off() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("room", json!({"agent_name": "alice", "echo": false}))
        .await
        .unwrap();
    b.join(
        "room",
        json!({"agent_name": "bob", "event_types": ["alert"]}),
    )
    .await
    .unwrap();
    a.publish("room", json!({"type": "chat", "data": 1}))
        .await
        .unwrap();
    a.publish("room", json!({"type": "alert", "data": 2}))
        .await
        .unwrap();
    let m = b.message("room").await;
    assert_eq!(
        (m["type"].as_str(), m["data"].as_i64()),
        (Some("alert"), Some(2))
    );
    b.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    a.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    b.publish("room", json!({"type": "chat", "data": 3}))
        .await
        .unwrap();
    assert_eq!(
        a.message("room").await["data"],
        3,
        "echo off still receives others"
    );
}

#[tokio::test]
async fn a_retried_publish_with_the_same_id_is_stored_and_delivered_once() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("room", agent("alice")).await.unwrap();
    b.join("room", agent("bob")).await.unwrap();
    let first = a
        .publish("room", json!({"type": "t", "id": "order-1", "data": 1}))
        .await
        .unwrap();
    let again = a
        .publish("room", json!({"type": "t", "id": "order-1", "data": 1}))
        .await
        .unwrap();
    assert_eq!(first["offset"], again["offset"]);
    assert_eq!(again["duplicate"], true);
    assert!(first.get("duplicate").is_none());
    // Pipelined duplicates (the original not yet durable) also resolve to one offset.
    let r1 = a
        .push(
            "channel:room",
            "publish",
            json!({"type": "t", "id": "order-2"}),
        )
        .await;
    let r2 = a
        .push(
            "channel:room",
            "publish",
            json!({"type": "t", "id": "order-2"}),
        )
        .await;
    let (x, y) = (a.reply(&r1).await.unwrap(), a.reply(&r2).await.unwrap());
    assert_eq!(x["offset"], y["offset"]);
    assert_eq!(b.message("room").await["id"], "order-1");
    assert_eq!(b.message("room").await["id"], "order-2");
    b.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
    let page = b
        .request("channel:room", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn binary_attachments_round_trip() {
    use switchboard_protocol::{Message, Publish};
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("files", agent("alice")).await.unwrap();
    b.join("files", agent("bob")).await.unwrap();
    let mut p = Publish::new("file", &json!({"name": "blob.bin"}));
    p.attachments = vec![
        bytes::Bytes::from(vec![0u8, 1, 2, 255]),
        bytes::Bytes::from_static(b"second"),
    ];
    let frame = switchboard_protocol::Frame::new(
        Some("j".into()),
        Some("77".into()),
        "channel:files",
        "publish",
        switchboard_protocol::Payload::Binary(p.encode_envelope()),
    );
    a.send_binary(frame.encode_client_binary().unwrap()).await;
    let ack = a.reply("77").await.unwrap();
    assert_eq!(ack["offset"], 1);
    let got = b.take(|g| g.event == "message").await;
    let m = Message::decode_envelope(got.binary.as_ref().expect("a binary frame")).unwrap();
    assert_eq!(m.attachments, p.attachments);
    assert_eq!(
        m.data_as::<serde_json::Value>().unwrap(),
        json!({"name": "blob.bin"})
    );
    // History carries them as base64.
    let page = b
        .request("channel:files", "history", json!({}))
        .await
        .unwrap();
    assert_eq!(
        page["messages"][0]["attachments"],
        json!(["AAEC/w==", "c2Vjb25k"])
    );
}

#[tokio::test]
async fn http_publish_reaches_agents_and_is_idempotent() {
    let s = TestServer::start().await;
    let mut a = s.raw().await;
    a.join("ops", agent("watcher")).await.unwrap();
    let body = json!({"type": "deploy", "data": {"v": 2}, "id": "deploy-2", "from": "ci"});
    let (status, ack) = s
        .http("POST", "/v1/channels/ops/messages", Some(body.clone()))
        .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["offset"], 1);
    let m = a.message("ops").await;
    assert_eq!(
        (m["from"].as_str(), m["type"].as_str()),
        (Some("ci"), Some("deploy"))
    );
    let (_, again) = s
        .http("POST", "/v1/channels/ops/messages", Some(body))
        .await;
    assert_eq!(
        (again["offset"].as_u64(), again["duplicate"].as_bool()),
        (Some(1), Some(true))
    );
    a.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;

    let (status, ack) = s
        .http(
            "POST",
            "/v1/channels/ops/messages",
            Some(json!({"type": "dm", "to": "watcher", "data": 1})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(a.message("ops").await["offset"], ack["offset"]);
    // Publishing to a channel that does not exist creates it.
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels/fresh/messages",
            Some(json!({"type": "t"})),
        )
        .await;
    assert_eq!(status, 200);

    for (body, status, expected) in [
        (json!({"data": 1}), 400, "invalid_payload"),
        (
            json!({"type": "t", "from": "bad name"}),
            400,
            "invalid_agent_name",
        ),
        (
            json!({"type": "t", "data": "x".repeat(600 * 1024)}),
            413,
            "message_too_large",
        ),
        (
            json!({"type": "t", "ephemeral": true, "to": "ghost"}),
            404,
            "agent_not_present",
        ),
    ] {
        let (got, err) = s
            .http("POST", "/v1/channels/ops/messages", Some(body))
            .await;
        assert_eq!((got, code(&err)), (status, expected));
    }
}

#[tokio::test]
async fn public_channels_with_a_password_need_it_over_http() {
    let s = TestServer::start().await;
    let other = s.server().create_key("acme").await.unwrap();
    let mut a = s.raw().await;
    a.join(
        "arena",
        json!({"agent_name": "host", "scope": "public", "password": "open-sesame"}),
    )
    .await
    .unwrap();
    let url = s.http_url();
    let body = Some(json!({"type": "t"}));
    let (status, err) = http_request(
        &url,
        "POST",
        "/v1/channels/arena/messages?scope=public",
        Some(&other),
        body.clone(),
    )
    .await;
    assert_eq!((status, code(&err)), (403, "bad_password"));
    let password = [("x-channel-password", "open-sesame")];
    let (status, ack) = http_request_with(
        &url,
        "POST",
        "/v1/channels/arena/messages?scope=public",
        Some(&other),
        body.clone(),
        &password,
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(a.message("arena").await["offset"], ack["offset"]);
    // The same name in the other tenant's private scope is another channel, unaffected.
    let (status, _) = http_request(
        &url,
        "POST",
        "/v1/channels/arena/messages",
        Some(&other),
        body,
    )
    .await;
    assert_eq!(status, 200);
    a.assert_none(Duration::from_millis(100), |g| g.event == "message")
        .await;
}

#[tokio::test]
async fn a_publish_without_a_ref_is_fire_and_forget_but_failures_still_surface() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join("room", agent("alice")).await.unwrap();
    b.join("room", agent("bob")).await.unwrap();
    a.send_text(
        r#"["j",null,"channel:room","publish",{"type":"t","data":1,"ephemeral":true}]"#.to_owned(),
    )
    .await;
    a.send_text(r#"["j",null,"channel:room","publish",{"type":"t","data":2}]"#.to_owned())
        .await;
    assert_eq!(b.message("room").await["data"], 1);
    let stored = b.message("room").await;
    assert_eq!(
        (stored["data"].as_i64(), stored["offset"].as_u64()),
        (Some(2), Some(1))
    );
    a.send_text(r#"["j",null,"channel:room","publish",{"data":3}]"#.to_owned())
        .await;
    assert_eq!(a.event("error").await.payload["code"], "invalid_payload");
    a.assert_none(Duration::from_millis(100), |g| g.event == "phx_reply")
        .await;
}
