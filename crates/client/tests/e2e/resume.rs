//! Reconnect and resume: no gap, no duplicate, re-sent publishes, session takeover.

use crate::harness::*;
use serde_json::json;
use std::time::Duration;
use switchboard_client::{ChannelEvent, Client, ClientConfig, JoinParams, Publish};

/// Waits for `Reconnected`, skipping presence events; messages before it are returned.
async fn until_reconnected(channel: &mut switchboard_client::Channel) -> Vec<u64> {
    let mut before = Vec::new();
    loop {
        match next_event(channel).await {
            ChannelEvent::Reconnected => return before,
            ChannelEvent::Message(m) => before.push(m.offset.unwrap()),
            ChannelEvent::PresenceState(_) | ChannelEvent::PresenceDiff(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn network_cut_resumes_without_gap_or_duplicate() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let listener = Client::connect(fast(ClientConfig::new(proxy.url(), &s.key)))
        .await
        .unwrap();
    let mut reader = listener
        .join("feed", JoinParams::new("reader"))
        .await
        .unwrap();
    let session = reader.join_reply().session_id;
    let writer = s
        .client()
        .await
        .join("feed", JoinParams::new("writer"))
        .await
        .unwrap();

    for i in 1..=3 {
        writer.publish(Publish::new("n", &i)).await.unwrap();
    }
    for expected in 1..=3 {
        assert_eq!(next_message(&mut reader).await.offset, Some(expected));
    }
    proxy.cut();
    // Published while the reader is away (the server may not have noticed yet: the old session
    // is taken over by the rejoin).
    for i in 4..=6 {
        writer.publish(Publish::new("n", &i)).await.unwrap();
    }
    let early = until_reconnected(&mut reader).await;
    assert!(
        early.is_empty(),
        "nothing arrives through a cut socket: {early:?}"
    );
    assert_eq!(reader.join_reply().session_id.len(), session.len());
    for expected in 4..=6 {
        assert_eq!(next_message(&mut reader).await.offset, Some(expected));
    }
    writer.publish(Publish::new("n", &7)).await.unwrap();
    assert_eq!(next_message(&mut reader).await.offset, Some(7));
    assert_no_message(&mut reader, Duration::from_millis(200)).await;
    // The reader kept its name: the takeover replaced the stale session.
    let present = writer.presence().await.unwrap();
    assert_eq!(present["reader"].metas.len(), 1);
}

#[tokio::test]
async fn server_restart_resumes_and_resends_queued_publishes() {
    let mut s = TestServer::start().await;
    let client = s.client().await;
    let mut reader = client
        .join("feed", JoinParams::new("reader"))
        .await
        .unwrap();
    let writer = reader.sender();
    writer.publish(Publish::new("n", &1)).await.unwrap();
    assert_eq!(next_message(&mut reader).await.offset, Some(1));

    s.stop().await;
    while client.is_connected() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Published while the server is down: queued, then sent after the rejoin.
    let queued = tokio::spawn(async move { writer.publish(Publish::new("n", &2)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.start_again().await;
    let ack = queued.await.unwrap().unwrap();
    assert_eq!(ack.offset, Some(2));
    assert!(!ack.duplicate);
    assert_eq!(next_message(&mut reader).await.offset, Some(2));
    assert_no_message(&mut reader, Duration::from_millis(200)).await;
    assert!(client.is_connected());
}

#[tokio::test]
async fn publishes_in_flight_during_a_cut_are_stored_once() {
    const TASKS: i64 = 4;
    const EACH: i64 = 50;
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let client = Client::connect(fast(ClientConfig::new(proxy.url(), &s.key)))
        .await
        .unwrap();
    let channel = client.join("burst", JoinParams::new("w")).await.unwrap();
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let sender = channel.sender();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                let ack = sender
                    .publish(Publish::new("n", &json!(t * 1000 + i)))
                    .await
                    .unwrap();
                assert!(!ack.duplicate || ack.offset.is_some());
                acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    // Cut twice while publishes are in flight.
    for threshold in [20, 100] {
        while acked.load(std::sync::atomic::Ordering::SeqCst) < threshold {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy.cut();
    }
    for task in tasks {
        tokio::time::timeout(WAIT * 3, task).await.unwrap().unwrap();
    }
    assert!(proxy.connections() >= 3, "the client reconnected twice");
    let page = channel
        .history(switchboard_client::HistoryQuery {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let data: Vec<i64> = page.messages.iter().map(|m| m.data_as().unwrap()).collect();
    assert_eq!(
        data.len() as i64,
        TASKS * EACH,
        "no publish was lost or stored twice"
    );
    for t in 0..TASKS {
        let mine: Vec<i64> = data.iter().copied().filter(|d| d / 1000 == t).collect();
        assert_eq!(
            mine,
            (0..EACH).map(|i| t * 1000 + i).collect::<Vec<_>>(),
            "task {t} in order"
        );
    }
}

#[tokio::test]
async fn a_silent_connection_is_detected_by_heartbeats() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let config = fast(ClientConfig::new(proxy.url(), &s.key))
        .with_heartbeat_interval(Duration::from_millis(100));
    let client = Client::connect(config).await.unwrap();
    let mut reader = client
        .join("feed", JoinParams::new("reader"))
        .await
        .unwrap();
    let writer = s
        .client()
        .await
        .join("feed", JoinParams::new("writer"))
        .await
        .unwrap();
    writer.publish(Publish::new("n", &1)).await.unwrap();
    assert_eq!(next_message(&mut reader).await.offset, Some(1));

    proxy.freeze();
    writer.publish(Publish::new("n", &2)).await.unwrap();
    // No close ever arrives: only the missing heartbeat replies reveal the dead socket.
    let early = until_reconnected(&mut reader).await;
    assert!(early.is_empty(), "{early:?}");
    assert_eq!(proxy.connections(), 2);
    assert_eq!(next_message(&mut reader).await.offset, Some(2));
}
