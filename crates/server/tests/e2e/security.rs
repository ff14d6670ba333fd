//! Abuse limits and isolation, each case asserting the exact code and that nothing leaked.
//!
//! The rest of the security suite lives with the feature it guards: wrong, revoked and
//! cross-tenant keys in `keys`, temporary keys used outside their grant in `temporary_keys`,
//! private and public scopes in `channels`, malformed and oversized frames in `limits` and
//! `websocket`.

use crate::harness::*;
use serde_json::json;
use tokio::net::TcpSocket;

/// A raw socket from a chosen loopback address (127.0.0.x), to be another client "machine".
async fn raw_from(s: &TestServer, ip: [u8; 4], key: Option<&str>) -> Raw {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind((std::net::Ipv4Addr::from(ip), 0).into())
        .unwrap();
    let stream = socket.connect(s.server().local_addr).await.unwrap();
    let url = match key {
        Some(key) => format!("{}/socket/websocket?vsn=2.0.0&api_key={key}", s.ws_url()),
        None => format!("{}/socket/websocket?vsn=2.0.0", s.ws_url()),
    };
    Raw::over(stream, &url).await
}

#[tokio::test]
async fn publishes_over_the_connection_rate_get_rate_limited_with_a_hint() {
    let s = TestServer::with(|c| c.limits.connection_messages_per_sec = 5).await;
    let mut a = s.raw().await;
    a.join("flood", agent("a")).await.unwrap();
    for _ in 0..5 {
        a.publish("flood", json!({"type": "t", "data": 1}))
            .await
            .unwrap();
    }
    let err = a
        .publish("flood", json!({"type": "t", "data": 1}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "rate_limited");
    let hint = err["retry_after_ms"].as_u64().unwrap();
    assert!((1..=200).contains(&hint), "{err}");
    assert!(!err.to_string().contains(&s.key), "no secret in errors");
    // Another connection of the same key has its own connection bucket.
    let mut b = s.raw().await;
    b.join("flood", agent("b")).await.unwrap();
    b.publish("flood", json!({"type": "t", "data": 2}))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_flooding_tenant_is_limited_while_another_goes_on() {
    let s = TestServer::with(|c| {
        c.limits.tenant_messages_per_sec = 20;
        c.limits.connection_messages_per_sec = 0;
        c.limits.key_messages_per_sec = 0;
    })
    .await;
    let acme = s.server().create_key("acme").await.unwrap();
    let mut flood = s.raw_with_key(&acme).await;
    flood.join("shared-name", agent("f")).await.unwrap();
    let mut quiet = s.raw().await;
    quiet.join("shared-name", agent("q")).await.unwrap();

    // acme spends its whole budget, over two connections, and is refused...
    let mut second = s.raw_with_key(&acme).await;
    second.join("other", agent("f2")).await.unwrap();
    let mut refused = 0;
    for i in 0..40 {
        let socket = if i % 2 == 0 { &mut flood } else { &mut second };
        let channel = if i % 2 == 0 { "shared-name" } else { "other" };
        if let Err(e) = socket
            .publish(channel, json!({"type": "t", "data": i}))
            .await
        {
            assert_eq!(code(&e), "rate_limited");
            refused += 1;
        }
    }
    // 40 attempts on a bucket of 20 that refills at 20/s: most of the second half is refused,
    // however slowly this test runs.
    assert!(refused >= 10, "{refused} refused");
    // ...and over HTTP too, while the default tenant publishes as if nothing happened.
    let (status, err) = http_request(
        &s.http_url(),
        "POST",
        "/v1/channels/shared-name/messages",
        Some(&acme),
        Some(json!({"type": "t", "data": 1})),
    )
    .await;
    assert_eq!((status, code(&err)), (429, "rate_limited"));
    // (Its own budget is the same 20 per second, untouched by acme's flood.)
    for i in 0..15 {
        quiet
            .publish("shared-name", json!({"type": "t", "data": i}))
            .await
            .unwrap();
    }
    // Same channel name, other tenant: none of acme's messages reached the default tenant.
    quiet
        .assert_none(std::time::Duration::from_millis(100), |g| {
            g.event == "message" && g.payload["from"] == "f"
        })
        .await;
}

#[tokio::test]
async fn tenant_caps_on_connections_and_channels() {
    let s = TestServer::with(|c| {
        c.limits.max_connections_per_tenant = 2;
        c.limits.max_channels_per_tenant = 2;
    })
    .await;
    let mut one = s.raw().await;
    one.join("c1", agent("a")).await.unwrap();
    let mut two = s.raw().await;
    two.join("c2", agent("b")).await.unwrap();
    let mut three = s.raw().await;
    assert_eq!(
        three.event("error").await.payload["code"],
        "too_many_connections"
    );
    assert_eq!(three.closed_with().await, 1013);
    // Another tenant is not affected by this tenant's count.
    let acme = s.server().create_key("acme").await.unwrap();
    let mut other = s.raw_with_key(&acme).await;
    other.join("c3", agent("x")).await.unwrap();

    // Two channels exist for the default tenant: a third is refused, on the socket and over
    // HTTP; joining an existing one still works. A closed connection frees its place.
    let err = one.join("c3", agent("a")).await.unwrap_err();
    assert_eq!(code(&err), "too_many_channels");
    let (status, err) = s
        .http("POST", "/v1/channels", Some(json!({"name": "c4"})))
        .await;
    assert_eq!((status, code(&err)), (429, "too_many_channels"));
    drop(two);
    let mut again = {
        let mut tries = 0;
        loop {
            let mut r = s.raw().await;
            if r.join("c2", agent("b2")).await.is_ok() {
                break r;
            }
            tries += 1;
            // Nothing tells a client when the server has seen the other socket close.
            assert!(tries < 100, "the closed connection's place comes back");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    again
        .publish("c2", json!({"type": "t", "data": 1}))
        .await
        .unwrap();
}

#[tokio::test]
async fn unauthenticated_connections_are_capped_per_address() {
    let s = TestServer::with(|c| c.limits.max_unauthenticated_per_ip = 2).await;
    let _a = raw_from(&s, [127, 0, 0, 2], None).await;
    let _b = raw_from(&s, [127, 0, 0, 2], None).await;
    // A third from the same address is refused at the upgrade...
    let url = format!("{}/socket/websocket?vsn=2.0.0", s.ws_url());
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(([127, 0, 0, 2], 0).into()).unwrap();
    let stream = socket.connect(s.server().local_addr).await.unwrap();
    match tokio_tungstenite::client_async(&url, stream).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "rate_limited");
        }
        other => panic!("expected HTTP 429, got {:?}", other.map(|_| ())),
    }
    // ...but not from another address, nor with a key in the URL.
    let _c = raw_from(&s, [127, 0, 0, 3], None).await;
    let mut keyed = raw_from(&s, [127, 0, 0, 2], Some(&s.key)).await;
    keyed.join("fine", agent("k")).await.unwrap();
}

#[tokio::test]
async fn wrong_passwords_are_limited_per_channel_and_address() {
    let s = TestServer::with(|c| c.limits.password_attempts_per_minute = 3).await;
    let mut owner = s.raw().await;
    owner
        .join("vault", json!({"agent_name": "owner", "password": "right"}))
        .await
        .unwrap();
    let mut guesser = raw_from(&s, [127, 0, 0, 4], Some(&s.key)).await;
    for i in 0..3 {
        let err = guesser
            .join(
                "vault",
                json!({"agent_name": format!("g{i}"), "password": "wrong"}),
            )
            .await
            .unwrap_err();
        assert_eq!(code(&err), "bad_password");
    }
    // The fourth attempt is not even checked, the right password included.
    let err = guesser
        .join("vault", json!({"agent_name": "g", "password": "right"}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "rate_limited");
    assert!(err["retry_after_ms"].as_u64().unwrap() > 0);
    // Another address is not held back.
    let mut friend = raw_from(&s, [127, 0, 0, 5], Some(&s.key)).await;
    friend
        .join(
            "vault",
            json!({"agent_name": "friend", "password": "right"}),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused() {
    let s = TestServer::with(|c| {
        c.server.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let upgrade = |origin: Option<&'static str>| {
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        headers
    };
    let path = format!("/socket/websocket?api_key={}", s.key);
    let (status, err) = http_request_with(
        &s.http_url(),
        "GET",
        &path,
        None,
        None,
        &upgrade(Some("https://evil.example.net")),
    )
    .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    for origin in [Some("https://app.example.com"), None] {
        let mut url = s.ws_url();
        url.push_str(&path);
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
                .unwrap();
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        let (ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(response.status(), 101, "{origin:?}");
        drop(ws);
    }
}
