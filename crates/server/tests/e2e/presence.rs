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

#[tokio::test]
async fn presence_diffs_are_merged_and_a_quick_join_and_leave_cancel_out() {
    let s = TestServer::with(|c| c.limits.presence_batch_ms = 400).await;
    let mut a = s.raw().await;
    a.join("room", agent("alice")).await.unwrap();
    a.event("presence_state").await;
    assert!(
        a.event("presence_diff").await.payload["joins"]
            .get("alice")
            .is_some()
    );
    // Within one batch period: two joins, and a third agent that joins and leaves again.
    let (mut b, mut c, mut e) = (s.raw().await, s.raw().await, s.raw().await);
    b.join("room", agent("bob")).await.unwrap();
    c.join("room", agent("carol")).await.unwrap();
    e.join("room", agent("eve")).await.unwrap();
    e.request("channel:room", "phx_leave", json!({}))
        .await
        .unwrap();
    let diff = a.event("presence_diff").await.payload;
    let joins = diff["joins"].as_object().unwrap();
    assert!(
        joins.contains_key("bob") && joins.contains_key("carol"),
        "one merged diff: {diff}"
    );
    assert!(
        !joins.contains_key("eve") && diff["leaves"].get("eve").is_none(),
        "eve cancelled out: {diff}"
    );
}

#[tokio::test]
async fn a_large_presence_map_arrives_in_bounded_frames_that_add_up() {
    let s = TestServer::start().await;
    let mut members = Vec::new();
    for i in 0..100 {
        let mut c = s.raw().await;
        c.join("crowd", agent(&format!("agent-{i}"))).await.unwrap();
        members.push(c);
    }
    let mut late = s.raw().await;
    late.join("crowd", agent("late")).await.unwrap();
    let state = late.event("presence_state").await.payload;
    let mut seen: std::collections::BTreeSet<String> =
        state.as_object().unwrap().keys().cloned().collect();
    assert!(
        seen.len() <= 64,
        "presence_state carries at most 64 agents, got {}",
        seen.len()
    );
    while seen.len() < 101 {
        let diff = late.event("presence_diff").await.payload;
        let joins = diff["joins"].as_object().unwrap();
        assert!(joins.len() <= 64);
        seen.extend(joins.keys().cloned());
    }
    assert!(seen.contains("late") && seen.contains("agent-0") && seen.contains("agent-99"));
}

#[tokio::test]
async fn agents_can_opt_out_of_presence_events_and_still_be_seen() {
    let s = TestServer::with(|c| c.limits.presence_batch_ms = 20).await;
    let mut quiet = s.raw().await;
    quiet
        .join("room", json!({"agent_name": "quiet", "presence": false}))
        .await
        .unwrap();
    let mut loud = s.raw().await;
    loud.join("room", agent("loud")).await.unwrap();
    let state = loud.event("presence_state").await.payload;
    assert!(
        state.get("quiet").is_some(),
        "an opted-out agent is still present"
    );
    loud.publish("room", json!({"type": "t"})).await.unwrap();
    assert_eq!(quiet.message("room").await["from"], "loud");
    quiet
        .assert_none(std::time::Duration::from_millis(100), |g| {
            g.event.starts_with("presence")
        })
        .await;
}
