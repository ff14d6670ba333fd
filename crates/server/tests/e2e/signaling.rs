//! The WebRTC signaling relay: `signal` reaches one named agent, is never stored, and is refused
//! when either end did not enable the relay or the target is absent.

use crate::harness::*;
use serde_json::json;
use std::time::Duration;

fn relay(name: &str) -> serde_json::Value {
    json!({"agent_name": name, "enable_webrtc_relay": true})
}

#[tokio::test]
async fn signals_reach_only_the_named_agent_and_are_never_stored() {
    let s = TestServer::start().await;
    let mut caller = s.raw().await;
    caller.join("call", relay("caller")).await.unwrap();
    let mut callee = s.raw().await;
    callee.join("call", relay("callee")).await.unwrap();
    let mut bystander = s.raw().await;
    bystander.join("call", relay("bystander")).await.unwrap();

    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"});
    let reply = caller
        .request(
            "channel:call",
            "signal",
            json!({"to": "callee", "kind": "offer", "data": offer}),
        )
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    let got = callee.event("signal").await;
    assert_eq!(got.topic, "channel:call");
    assert_eq!(got.payload["from"], "caller");
    assert_eq!(got.payload["kind"], "offer");
    assert_eq!(got.payload["data"], offer);
    callee
        .request(
            "channel:call",
            "signal",
            json!({"to": "caller", "kind": "answer", "data": {"sdp": "answer"}}),
        )
        .await
        .unwrap();
    assert_eq!(caller.event("signal").await.payload["kind"], "answer");

    bystander
        .assert_none(Duration::from_millis(200), |g| g.event == "signal")
        .await;
    let (_, page) = s.http("GET", "/v1/channels/call/messages", None).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0, "{page}");
}

#[tokio::test]
async fn signals_are_refused_without_the_relay_an_absent_target_or_a_bad_payload() {
    let s = TestServer::start().await;
    let mut on = s.raw().await;
    on.join("room", relay("on")).await.unwrap();
    let mut off = s.raw().await;
    off.join("room", agent("off")).await.unwrap();

    let signal = |to: &str| json!({"to": to, "kind": "ice", "data": {"candidate": "c"}});
    let err = off
        .request("channel:room", "signal", signal("on"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "relay_disabled");
    let err = on
        .request("channel:room", "signal", signal("off"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "relay_disabled");
    let err = on
        .request("channel:room", "signal", signal("nobody"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "agent_not_present");
    let err = on
        .request(
            "channel:room",
            "signal",
            json!({"to": "on", "kind": "telepathy", "data": 1}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "invalid_payload");
    let big = "x".repeat(70 * 1024);
    let err = on
        .request(
            "channel:room",
            "signal",
            json!({"to": "on", "kind": "offer", "data": big}),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err), "message_too_large");
    let err = on
        .request("channel:elsewhere", "signal", signal("on"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not_joined");

    // A temporary key needs the `signal` capability.
    let (_, minted) = s
        .http(
            "POST",
            "/v1/keys/temporary",
            Some(json!({"ttl_secs": 60, "capabilities": ["subscribe"]})),
        )
        .await;
    let mut limited = s.raw_with_key(minted["key"].as_str().unwrap()).await;
    limited.join("room", relay("limited")).await.unwrap();
    let err = limited
        .request("channel:room", "signal", signal("on"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "forbidden");
}
