//! Team channels: a member list, and self-destruction on `complete` or at `expires_at`.

use crate::harness::*;
use serde_json::json;

#[tokio::test]
async fn only_members_join_and_completing_purges_everything() {
    let s = TestServer::start().await;
    let (status, info) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "task-42", "members": ["planner", "coder"]})),
        )
        .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["members"], json!(["planner", "coder"]));

    let mut planner = s.raw().await;
    planner.join("task-42", agent("planner")).await.unwrap();
    let mut coder = s.raw().await;
    coder.join("task-42", agent("coder")).await.unwrap();
    let mut outsider = s.raw().await;
    let err = outsider
        .join("task-42", agent("intruder"))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "not_a_member");

    planner
        .publish("task-42", json!({"type": "plan", "data": "step 1"}))
        .await
        .unwrap();
    planner
        .request(
            "channel:task-42",
            "kv_put",
            json!({"key": "status", "value": "working"}),
        )
        .await
        .unwrap();

    // A member completes it: everyone is told, the channel and its contents are gone.
    coder
        .request("channel:task-42", "complete", json!({}))
        .await
        .unwrap();
    for socket in [&mut planner, &mut coder] {
        let kicked = socket.event("kicked").await;
        assert_eq!(kicked.payload["code"], "channel_completed");
    }
    let (status, err) = s.http("GET", "/v1/channels/task-42", None).await;
    assert_eq!((status, code(&err)), (404, "channel_not_found"));
    // The name is free again, and nothing of the old channel remains.
    let (status, _) = s
        .http("POST", "/v1/channels", Some(json!({"name": "task-42"})))
        .await;
    assert_eq!(status, 201);
    let (_, page) = s.http("GET", "/v1/channels/task-42/messages", None).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
    let (status, _) = s.http("GET", "/v1/channels/task-42/kv/status", None).await;
    assert_eq!(status, 404);

    // Ordinary channels do not complete; bad member lists and past expiries are refused.
    let mut plain = s.raw().await;
    plain.join("lobby", agent("a")).await.unwrap();
    let err = plain
        .request("channel:lobby", "complete", json!({}))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "invalid_payload");
    let (status, err) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "t", "members": ["a b"]})),
        )
        .await;
    assert_eq!((status, code(&err)), (400, "invalid_agent_name"));
    let (status, err) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "t", "members": ["a"], "expires_at": 1})),
        )
        .await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
}

#[tokio::test]
async fn a_team_channel_completes_itself_at_expires_at_and_over_http() {
    let s = TestServer::with(|c| c.storage.retention_interval_ms = 100).await;
    let soon = switchboard_server::now_ms() + 300;
    let (status, _) = s
        .http(
            "POST",
            "/v1/channels",
            Some(json!({"name": "sprint", "members": ["a"], "expires_at": soon})),
        )
        .await;
    assert_eq!(status, 201);
    let mut a = s.raw().await;
    a.join("sprint", agent("a")).await.unwrap();
    let kicked = a.event("kicked").await;
    assert_eq!(kicked.payload["code"], "channel_completed");
    let (status, _) = s.http("GET", "/v1/channels/sprint", None).await;
    assert_eq!(status, 404);

    // Completing over HTTP, with the original key.
    s.http(
        "POST",
        "/v1/channels",
        Some(json!({"name": "job", "members": ["b"]})),
    )
    .await;
    let mut b = s.raw().await;
    b.join("job", agent("b")).await.unwrap();
    let (status, _) = s.http("POST", "/v1/channels/job/complete", None).await;
    assert_eq!(status, 204);
    assert_eq!(b.event("kicked").await.payload["code"], "channel_completed");
}
