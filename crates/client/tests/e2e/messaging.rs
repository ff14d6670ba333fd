//! Join, publish, receive, attachments, history, presence and errors over the socket.

use crate::harness::*;
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use switchboard_client::{
    ChannelEvent, Client, ClientConfig, Error, ErrorCode, HistoryQuery, JoinParams, Publish,
    protocol::history::Direction,
};

#[tokio::test]
async fn publish_is_acknowledged_and_delivered_once() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let a = alice.join("room", JoinParams::new("alice")).await.unwrap();
    let mut b = bob.join("room", JoinParams::new("bob")).await.unwrap();
    assert_eq!(a.join_reply().head, 0);
    assert_eq!(a.join_reply().agent_name, "alice");

    let ack = a
        .publish(Publish::new("chat", &json!({"text": "hi"})))
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(1));
    assert_eq!(ack.id.len(), 32, "the SDK generated an id");
    let m = next_message(&mut b).await;
    assert_eq!(
        (m.offset, m.from.as_str(), m.kind.as_str()),
        (Some(1), "alice", "chat")
    );
    assert_eq!(
        m.data_as::<serde_json::Value>().unwrap(),
        json!({"text": "hi"})
    );
    assert_eq!(m.id, ack.id);

    // Retrying with the same id is acknowledged with the original offset and not delivered.
    let mut again = Publish::new("chat", &json!({"text": "hi"}));
    again.id = Some(ack.id.clone());
    let dup = a.publish(again).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.offset, Some(1));
    assert_no_message(&mut b, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn attachments_and_ephemeral_messages() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let a = client
        .join("files", JoinParams::new("alice"))
        .await
        .unwrap();
    let mut b = s
        .client()
        .await
        .join("files", JoinParams::new("bob"))
        .await
        .unwrap();

    let mut with_files = Publish::new("file", &json!({"name": "x.bin"}));
    with_files.attachments = vec![Bytes::from_static(b"\x00\x01\xff"), Bytes::new()];
    let ack = a.publish(with_files).await.unwrap();
    let m = next_message(&mut b).await;
    assert_eq!(m.offset, ack.offset);
    assert_eq!(
        m.attachments,
        vec![Bytes::from_static(b"\x00\x01\xff"), Bytes::new()]
    );

    let mut blip = Publish::new("pos", &json!([1, 2]));
    blip.ephemeral = true;
    let ack = a.publish(blip).await.unwrap();
    assert_eq!(ack.offset, None);
    let m = next_message(&mut b).await;
    assert!(m.ephemeral && m.offset.is_none());

    let page = b.history(HistoryQuery::default()).await.unwrap();
    assert_eq!(page.messages.len(), 1, "ephemeral messages are not stored");
    assert_eq!(page.messages[0].attachments.len(), 2);
}

#[tokio::test]
async fn join_with_since_replays_then_goes_live() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let writer = client.join("log", JoinParams::new("w")).await.unwrap();
    for i in 1..=5 {
        writer.publish(Publish::new("n", &i)).await.unwrap();
    }
    let mut params = JoinParams::new("reader");
    params.since = Some(2);
    let mut reader = s.client().await.join("log", params).await.unwrap();
    assert_eq!(reader.join_reply().head, 5);
    for expected in 3..=5u64 {
        assert_eq!(next_message(&mut reader).await.offset, Some(expected));
    }
    writer.publish(Publish::new("n", &6)).await.unwrap();
    assert_eq!(next_message(&mut reader).await.offset, Some(6));
}

#[tokio::test]
async fn history_and_presence_over_the_socket() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let mut params = JoinParams::new("alice");
    params.meta = Some(json!({"role": "writer"}).as_object().unwrap().clone());
    let mut a = client.join("room", params).await.unwrap();
    match next_event(&mut a).await {
        ChannelEvent::PresenceState(state) => assert!(state.contains_key("alice")),
        other => panic!("expected presence_state, got {other:?}"),
    }
    let _b = s
        .client()
        .await
        .join("room", JoinParams::new("bob"))
        .await
        .unwrap();
    match next_event(&mut a).await {
        ChannelEvent::PresenceDiff(diff) => assert!(diff.joins.contains_key("bob")),
        other => panic!("expected presence_diff, got {other:?}"),
    }
    let present = a.presence().await.unwrap();
    assert_eq!(
        present.keys().map(String::as_str).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(present["alice"].metas[0].meta["role"], "writer");

    for i in 0..5 {
        a.publish(Publish::new(if i % 2 == 0 { "even" } else { "odd" }, &i))
            .await
            .unwrap();
    }
    let page = a
        .history(HistoryQuery {
            limit: Some(2),
            direction: Direction::Backward,
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    let offsets: Vec<_> = page.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [Some(5), Some(4)]);
    assert_eq!(page.head, 5);
    assert!(page.next.is_some());
    let page = a
        .history(HistoryQuery {
            kind: Some("odd".into()),
            ..HistoryQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
}

#[tokio::test]
async fn server_errors_keep_their_codes() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let mut params = JoinParams::new("alice");
    params.password = Some("secret".into());
    let _room = client.join("locked", params).await.unwrap();

    let mut wrong = JoinParams::new("eve");
    wrong.password = Some("guess".into());
    let err = s.client().await.join("locked", wrong).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadPassword), "{err}");

    let mut same_name = JoinParams::new("alice");
    same_name.password = Some("secret".into());
    let err = s
        .client()
        .await
        .join("locked", same_name)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentNameTaken), "{err}");

    let err = client
        .join("locked", JoinParams::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyJoined));
    let err = client
        .join("bad name", JoinParams::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidChannelName));

    let room = client.join("open", JoinParams::new("alice")).await.unwrap();
    let mut direct = Publish::new("dm", &1);
    direct.to = Some("ghost".into());
    direct.ephemeral = true;
    let err = room.publish(direct).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentNotPresent));

    let huge = Publish::new("big", &"x".repeat(2 << 20));
    let err = room.publish(huge).await.unwrap_err();
    assert!(matches!(err, Error::FrameTooLarge { .. }), "{err}");
    // The connection survived: the frame was never sent.
    room.publish(Publish::new("small", &1)).await.unwrap();
}

#[tokio::test]
async fn invalid_key_fails_requests_and_does_not_reconnect() {
    let s = TestServer::start().await;
    let client = Client::connect(fast(ClientConfig::new(s.url(), "sk_wrong")))
        .await
        .unwrap();
    let err = client.join("room", JoinParams::new("a")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!client.is_connected());
    let err = client.join("room", JoinParams::new("a")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey), "{err}");
}

#[tokio::test]
async fn leave_close_and_kicks_end_the_stream() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let room = client.join("room", JoinParams::new("alice")).await.unwrap();
    room.leave().await.unwrap();
    // The name is free again and the topic can be joined again on the same client.
    let mut room = client.join("room", JoinParams::new("alice")).await.unwrap();

    // Taking the session over kicks this one.
    let mut takeover = JoinParams::new("alice");
    takeover.session_id = Some(room.join_reply().session_id);
    let other = s.client().await;
    let _new = other.join("room", takeover).await.unwrap();
    loop {
        match next_event(&mut room).await {
            ChannelEvent::Kicked(reply) => {
                assert_eq!(reply.code, ErrorCode::SessionTakenOver);
                break;
            }
            ChannelEvent::PresenceState(_) | ChannelEvent::PresenceDiff(_) => {}
            other => panic!("expected a kick, got {other:?}"),
        }
    }
    let end = tokio::time::timeout(WAIT, async {
        while let Some(event) = room.recv().await {
            assert!(!matches!(event, ChannelEvent::Message(_)));
        }
    })
    .await;
    assert!(end.is_ok(), "the stream ends after a kick");
    let err = room.publish(Publish::new("x", &1)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotJoined), "{err}");

    let mut other_room = other.join("else", JoinParams::new("b")).await.unwrap();
    other.close().await;
    let end =
        tokio::time::timeout(WAIT, async { while other_room.recv().await.is_some() {} }).await;
    assert!(end.is_ok(), "close ends every stream");
    let err = other_room.presence().await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
}

#[tokio::test]
async fn webrtc_signals_go_to_the_named_agent() {
    use switchboard_client::SignalKind;
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let relay = |name: &str| {
        let mut params = JoinParams::new(name);
        params.enable_webrtc_relay = true;
        params
    };
    let a = alice.join("call", relay("alice")).await.unwrap();
    let mut b = bob.join("call", relay("bob")).await.unwrap();
    a.signal("bob", SignalKind::Offer, &json!({"sdp": "v=0"}))
        .await
        .unwrap();
    let signal = loop {
        match tokio::time::timeout(WAIT, b.recv()).await.unwrap() {
            Some(ChannelEvent::Signal(signal)) => break signal,
            Some(_) => continue,
            None => panic!("the channel ended"),
        }
    };
    assert_eq!(
        (signal.from.as_str(), signal.kind),
        ("alice", SignalKind::Offer)
    );
    assert_eq!(signal.data.get(), r#"{"sdp":"v=0"}"#);
    let err = a
        .signal("carol", SignalKind::Ice, &json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentNotPresent));
}

#[tokio::test]
async fn channel_storage_over_the_socket_and_http() {
    use switchboard_client::{HttpClient, KvList, KvOp, Scope};
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let a = alice.join("board", JoinParams::new("alice")).await.unwrap();
    let mut watch = JoinParams::new("bob");
    watch.kv_events = true;
    let mut b = bob.join("board", watch).await.unwrap();

    let first = a
        .kv_put("score", &json!({"points": 1}), Some(0), None)
        .await
        .unwrap();
    assert_eq!((first.version, first.updated_by.as_str()), (1, "alice"));
    let change = loop {
        match tokio::time::timeout(WAIT, b.recv()).await.unwrap() {
            Some(ChannelEvent::KvChange(change)) => break change,
            Some(_) => continue,
            None => panic!("the channel ended"),
        }
    };
    assert_eq!(
        (change.key.as_str(), change.version, change.op),
        ("score", 1, KvOp::Put)
    );
    let err = a
        .kv_put("score", &json!({"points": 2}), Some(0), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::VersionConflict));

    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let entry = http.kv_get("board", "score", Scope::Private).await.unwrap();
    assert_eq!(entry.value.get(), r#"{"points":1}"#);
    http.kv_put("board", "a/b", &json!(true), None, None, Scope::Private)
        .await
        .unwrap();
    let page = a.kv_list(&KvList::default()).await.unwrap();
    let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["a/b", "score"]);
    http.kv_delete("board", "a/b", Some(1), Scope::Private)
        .await
        .unwrap();
    let err = a.kv_get("a/b").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn team_channels_admit_members_and_complete() {
    use switchboard_client::{CreateChannel, HttpClient, Scope};
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let mut create = CreateChannel::new("team");
    create.members = Some(vec!["ann".into(), "ben".into()]);
    let info = http.create_channel(&create).await.unwrap();
    assert_eq!(
        info.members.as_deref(),
        Some(&["ann".to_owned(), "ben".to_owned()][..])
    );
    let (ann, eve) = (s.client().await, s.client().await);
    let mut a = ann.join("team", JoinParams::new("ann")).await.unwrap();
    let err = eve.join("team", JoinParams::new("eve")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotAMember));
    a.complete().await.unwrap();
    let kicked = loop {
        match tokio::time::timeout(WAIT, a.recv()).await.unwrap() {
            Some(ChannelEvent::Kicked(reply)) => break reply,
            Some(_) => continue,
            None => panic!("ended without a kick"),
        }
    };
    assert_eq!(kicked.code, ErrorCode::ChannelCompleted);
    let err = http.get_channel("team", Scope::Private).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelNotFound));
}
