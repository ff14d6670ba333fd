//! Phoenix Presence shapes: presence_state on join, presence_diff on joins and leaves.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn presence_state_and_diffs() {
    let s = TestServer::start().await;
    let (mut a, mut b) = (s.raw().await, s.raw().await);
    a.join(
        "room",
        json!({"agent_name": "alice", "meta": {"role": "pilot"}}),
    )
    .await
    .unwrap();
    let state = a.event("presence_state").await.payload;
    let metas = state["alice"]["metas"].as_array().unwrap();
    assert_eq!(metas.len(), 1);
    assert_eq!(metas[0]["meta"], json!({"role": "pilot"}));
    assert!(metas[0]["phx_ref"].is_string());
    assert!(metas[0]["joined_at"].as_i64().unwrap() > 0);

    b.join("room", agent("bob")).await.unwrap();
    let state = b.event("presence_state").await.payload;
    assert!(state.get("alice").is_some() && state.get("bob").is_some());
    let diff = a.event("presence_diff").await.payload;
    assert!(diff["joins"].get("bob").is_some());
    assert_eq!(diff["leaves"], json!({}));

    let (status, listed) = s.http("GET", "/v1/channels/room/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_object().unwrap().len(), 2);
    let over_socket = a
        .request("channel:room", "presence", json!({}))
        .await
        .unwrap();
    assert_eq!(over_socket.as_object().unwrap().len(), 2);

    b.request("channel:room", "phx_leave", json!({}))
        .await
        .unwrap();
    let diff = a.event("presence_diff").await.payload;
    assert!(diff["leaves"].get("bob").is_some());

    // A dropped connection leaves too.
    let mut c = s.raw().await;
    c.join("room", agent("carol")).await.unwrap();
    a.event("presence_diff").await;
    drop(c);
    let diff = a.event("presence_diff").await.payload;
    assert!(diff["leaves"].get("carol").is_some());
}
