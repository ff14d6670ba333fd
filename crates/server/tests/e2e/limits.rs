//! Every limit and failure path: sizes, counts, timeouts, slow consumers, bad frames and keys.

use crate::harness::*;
use bytes::Bytes;
use serde_json::json;

#[tokio::test]
async fn oversized_frames_close_the_connection_and_large_messages_are_refused() {
    let s = TestServer::with(|c| {
        c.limits.max_frame_bytes = 64 * 1024;
        c.limits.max_message_bytes = 8 * 1024;
    })
    .await;
    let mut a = s.raw().await;
    a.join("room", agent("a")).await.unwrap();
    let err = a
        .publish("room", json!({"type": "t", "data": "x".repeat(9000)}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "message_too_large");
    a.publish("room", json!({"type": "t", "data": "x".repeat(7000)}))
        .await
        .unwrap();
    let mut frame = String::from(r#"[null,"1","channel:room","publish",{"type":"t","data":""#);
    frame.push_str(&"x".repeat(70 * 1024));
    frame.push_str(r#""}]"#);
    a.send_text(frame).await;
    assert_eq!(a.closed_with().await, 4502);
    // Other clients are unaffected.
    let mut b = s.raw().await;
    b.join("room", agent("b")).await.unwrap();
}

#[tokio::test]
async fn publish_payload_limits() {
    let s = TestServer::start().await;
    let mut a = s.raw().await;
    a.join("room", agent("a")).await.unwrap();
    for (payload, expected) in [
        (json!({"data": 1}), "invalid_payload"),
        (json!({"type": ""}), "invalid_payload"),
        (json!({"type": "x".repeat(129)}), "invalid_payload"),
        (
            json!({"type": "t", "id": "i".repeat(129)}),
            "invalid_payload",
        ),
        (
            json!({"type": "t", "to": "no spaces"}),
            "invalid_agent_name",
        ),
        (
            json!({"type": "t", "attachments": ["not base64!"]}),
            "invalid_payload",
        ),
        (json!("not an object"), "invalid_payload"),
    ] {
        let err = a.publish("room", payload.clone()).await.unwrap_err();
        assert_eq!(code(&err), expected, "{payload}");
    }
    // A binary publish whose envelope lies about its sizes.
    let mut envelope = br#"{"type":"t","attachment_sizes":[1000]}"#.to_vec();
    envelope.splice(0..0, (envelope.len() as u32).to_be_bytes());
    let frame = switchboard_protocol::Frame::new(
        Some("j".into()),
        Some("9".into()),
        "channel:room",
        "publish",
        switchboard_protocol::Payload::Binary(Bytes::from(envelope)),
    );
    a.send_binary(frame.encode_client_binary().unwrap()).await;
    assert_eq!(code(&a.reply("9").await.unwrap_err()), "invalid_payload");
    a.publish("room", json!({"type": "t"})).await.unwrap();
}

#[tokio::test]
async fn malformed_frames_get_an_error_and_the_connection_survives() {
    let s = TestServer::start().await;
    let mut a = s.raw().await;
    for garbage in ["not json", "[1,2,3]", "{}", "[null,null,7,\"e\",{}]"] {
        a.send_text(garbage.to_owned()).await;
        let got = a.event("error").await;
        assert_eq!(got.payload["code"], "malformed_frame");
    }
    a.send_binary(Bytes::from_static(&[9, 9, 9])).await;
    assert_eq!(a.event("error").await.payload["code"], "malformed_frame");
    a.send_binary(Bytes::from_static(&[0, 200])).await;
    assert_eq!(a.event("error").await.payload["code"], "malformed_frame");
    a.request("phoenix", "heartbeat", json!({})).await.unwrap();
    a.join("room", agent("a")).await.unwrap();
}

#[tokio::test]
async fn invalid_keys_are_refused_and_late_auth_works() {
    let s = TestServer::start().await;
    let mut bad = s.raw_with_key("sk_abc_def").await;
    assert_eq!(bad.event("error").await.payload["code"], "invalid_key");
    assert_eq!(bad.closed_with().await, 4500);

    let mut late = s.raw_unauthenticated().await;
    assert_eq!(
        code(&late.join("room", agent("a")).await.unwrap_err()),
        "unauthenticated"
    );
    let key = s.key.clone();
    late.request("phoenix", "auth", json!({"api_key": key}))
        .await
        .unwrap();
    late.join("room", agent("a")).await.unwrap();

    let mut wrong = s.raw_unauthenticated().await;
    assert_eq!(
        code(
            &wrong
                .request("phoenix", "auth", json!({"api_key": "sk_x_y"}))
                .await
                .unwrap_err()
        ),
        "invalid_key"
    );
    assert_eq!(wrong.closed_with().await, 4500);
}

#[tokio::test]
async fn auth_and_heartbeat_timeouts() {
    let s = TestServer::with(|c| {
        c.limits.auth_timeout_ms = 200;
        c.limits.heartbeat_timeout_ms = 400;
    })
    .await;
    let mut silent = s.raw_unauthenticated().await;
    assert_eq!(silent.event("error").await.payload["code"], "auth_timeout");
    assert_eq!(silent.closed_with().await, 4501);

    let mut idle = s.raw().await;
    idle.join("room", agent("a")).await.unwrap();
    assert_eq!(idle.closed_with().await, 4001);
    // The dead peer's agent name is free again.
    let mut next = s.raw().await;
    next.join("room", agent("a")).await.unwrap();
}

#[tokio::test]
async fn connection_and_channel_caps() {
    let s = TestServer::with(|c| {
        c.limits.max_connections = 2;
        c.limits.max_channels_per_connection = 2;
    })
    .await;
    let mut a = s.raw().await;
    let _b = s.raw().await;
    let url = format!(
        "{}/socket/websocket?vsn=2.0.0&api_key={}",
        s.ws_url(),
        s.key
    );
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected a 503 refusal, got {:?}", other.map(|_| ())),
    }
    a.join("one", agent("a")).await.unwrap();
    a.join("two", agent("a")).await.unwrap();
    assert_eq!(
        code(&a.join("three", agent("a")).await.unwrap_err()),
        "too_many_channels"
    );
    a.request("channel:one", "phx_leave", json!({}))
        .await
        .unwrap();
    a.join("three", agent("a")).await.unwrap();

    let bad_vsn = format!(
        "{}/socket/websocket?vsn=1.0.0&api_key={}",
        s.ws_url(),
        s.key
    );
    drop(a);
    match tokio_tungstenite::connect_async(&bad_vsn).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("expected a 400 refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn too_many_unacknowledged_publishes_are_rate_limited() {
    let s = TestServer::with(|c| c.limits.max_inflight_publishes = 1).await;
    let mut a = s.raw().await;
    a.join("room", agent("a")).await.unwrap();
    let mut refs = Vec::new();
    for _ in 0..30 {
        refs.push(
            a.push("channel:room", "publish", json!({"type": "t"}))
                .await,
        );
    }
    let mut limited = 0;
    for r in refs {
        match a.reply(&r).await {
            Ok(ack) => assert!(ack["offset"].as_u64().is_some()),
            Err(e) => {
                assert_eq!(code(&e), "rate_limited");
                assert!(e["retry_after_ms"].as_u64().is_some());
                limited += 1;
            }
        }
    }
    assert!(
        limited > 0,
        "30 pipelined publishes with room for 1 in flight"
    );
}

#[tokio::test]
async fn a_slow_consumer_is_dropped_without_slowing_the_others() {
    let s = TestServer::with(|c| c.limits.outbound_queue = 16).await;
    let mut publisher = s.raw().await;
    let mut fast = s.raw().await;
    let mut slow = s.raw_small_buffer().await;
    publisher.join("firehose", agent("pub")).await.unwrap();
    fast.join("firehose", json!({"agent_name": "fast"}))
        .await
        .unwrap();
    slow.join("firehose", json!({"agent_name": "slow"}))
        .await
        .unwrap();
    // `slow` never reads; 400 × 32 KiB outgrows its socket buffers and then its queue.
    let data = "y".repeat(32 * 1024);
    let total = 400;
    let reader = tokio::spawn(async move {
        let mut last = 0;
        while last < total {
            last = fast.message("firehose").await["offset"].as_u64().unwrap();
        }
        (last, fast)
    });
    for _ in 0..total {
        publisher
            .publish(
                "firehose",
                json!({"type": "blob", "data": data, "ephemeral": false}),
            )
            .await
            .unwrap();
    }
    let (last, _fast) = reader.await.unwrap();
    assert_eq!(last, total, "the fast subscriber got everything");
    // The server lets go of the stuck connection while its peer still reads nothing.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = s.http("GET", "/metrics", None).await;
        let metrics = metrics.as_str().unwrap().to_owned();
        if metrics.contains("switchboard_connections 2\n")
        /* publisher and fast */
        {
            assert!(metrics.contains("switchboard_slow_consumers_total 1"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slow connection lingers: {metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // A peer that reads nothing cannot even be sent a close frame: the server drops it, and
    // whatever it had buffered ends either with the 4000 close or with the TCP connection.
    let code = slow.closed_code().await;
    assert!(matches!(code, None | Some(4000)), "closed with {code:?}");
}
