//! Durable inboxes: delivery while offline, ack and reject, redelivery, dead letters,
//! receipts, limits, restarts, and the HTTP consumer.

use crate::harness::{TestServer, WAIT, next_message};
use serde_json::json;
use std::time::Duration;
use switchboard_client::{
    Channel, ChannelEvent, DeadLetterQuery, ErrorCode, HttpClient, InboxMessage, JoinParams,
    Publish, Receipt, ReceiptStatus, Receive, Reject, Scope,
};

fn consumer(name: &str) -> JoinParams {
    let mut params = JoinParams::new(name);
    params.inbox = true;
    params.presence = false;
    params
}

fn task(to: &str, n: u32, receipt: bool) -> Publish {
    let mut p = Publish::new("task", &json!({ "n": n }));
    p.to = Some(to.to_owned());
    p.receipt = receipt;
    p
}

async fn next_inbox(channel: &mut Channel) -> InboxMessage {
    loop {
        match tokio::time::timeout(WAIT, channel.recv()).await.unwrap() {
            Some(ChannelEvent::InboxMessage(m)) => return m,
            Some(ChannelEvent::Message(m)) => panic!("expected an inbox message, got {m:?}"),
            Some(_) => {}
            None => panic!("the channel ended"),
        }
    }
}

async fn next_receipt(channel: &mut Channel) -> Receipt {
    loop {
        match tokio::time::timeout(WAIT, channel.recv()).await.unwrap() {
            Some(ChannelEvent::Receipt(r)) => return r,
            Some(_) => {}
            None => panic!("the channel ended"),
        }
    }
}

async fn assert_no_inbox(channel: &mut Channel, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, channel.recv()).await {
            Err(_) | Ok(None) => return,
            Ok(Some(ChannelEvent::InboxMessage(m))) => panic!("unexpected inbox message {m:?}"),
            Ok(Some(_)) => {}
        }
    }
}

#[tokio::test]
async fn an_absent_agent_finds_its_inbox_on_join_and_the_sender_gets_receipts() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let mut a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let first = a.publish(task("bob", 1, true)).await.unwrap();
    a.publish(task("bob", 2, false)).await.unwrap();

    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let m1 = next_inbox(&mut b).await;
    let m2 = next_inbox(&mut b).await;
    assert_eq!((m1.delivery_count, m2.delivery_count), (1, 1));
    assert_eq!(m1.message.id, first.id);
    assert_eq!(m1.message.data.get(), r#"{"n":1}"#);
    assert_eq!(m2.message.data.get(), r#"{"n":2}"#);
    assert_eq!(m1.message.to.as_deref(), Some("bob"));

    let delivered = next_receipt(&mut a).await;
    assert_eq!(
        (
            delivered.id.as_str(),
            delivered.to.as_str(),
            delivered.status
        ),
        (first.id.as_str(), "bob", ReceiptStatus::Delivered)
    );
    b.ack(&m1.message.id).await.unwrap();
    b.ack(&m2.message.id).await.unwrap();
    let acked = next_receipt(&mut a).await;
    assert_eq!(acked.status, ReceiptStatus::Acknowledged);
    assert_eq!(acked.delivery_count, 1);

    // A live message to the consumer arrives through the inbox, not as a plain message.
    a.publish(task("bob", 3, false)).await.unwrap();
    let m3 = next_inbox(&mut b).await;
    assert_eq!(m3.message.data.get(), r#"{"n":3}"#);
    b.ack(&m3.message.id).await.unwrap();
    // Broadcasts still arrive as messages.
    a.publish(Publish::new("note", &json!("hi"))).await.unwrap();
    assert_eq!(next_message(&mut b).await.kind, "note");

    // Acknowledged messages never come back; acking again finds nothing.
    b.leave().await.unwrap();
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    assert_no_inbox(&mut b, Duration::from_millis(300)).await;
    let err = b.ack(&m1.message.id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn a_present_agent_without_inbox_gets_direct_messages_live_as_before() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let a = alice.join("chat", JoinParams::new("alice")).await.unwrap();
    let mut b = bob.join("chat", JoinParams::new("bob")).await.unwrap();
    a.publish(task("bob", 1, false)).await.unwrap();
    assert_eq!(next_message(&mut b).await.data.get(), r#"{"n":1}"#);
    b.leave().await.unwrap();
    let mut b = bob.join("chat", consumer("bob")).await.unwrap();
    assert_no_inbox(&mut b, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn unacknowledged_messages_come_back_until_max_deliveries_then_dead_letter() {
    let s = TestServer::start_with(|c| {
        c.inbox.visibility_timeout_ms = 200;
        c.inbox.max_deliveries = 2;
    })
    .await;
    let (alice, bob) = (s.client().await, s.client().await);
    let mut a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let sent = a.publish(task("bob", 1, true)).await.unwrap();
    assert_eq!(next_inbox(&mut b).await.delivery_count, 1);
    // Not acknowledged: delivered again after the visibility timeout.
    let again = next_inbox(&mut b).await;
    assert_eq!(
        (again.delivery_count, again.message.id.as_str()),
        (2, sent.id.as_str())
    );
    assert_eq!(next_receipt(&mut a).await.status, ReceiptStatus::Delivered);
    let dead = next_receipt(&mut a).await;
    assert_eq!(dead.status, ReceiptStatus::DeadLettered);
    assert_eq!(dead.reason.as_deref(), Some("max_deliveries"));
    assert_no_inbox(&mut b, Duration::from_millis(400)).await;

    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let page = http
        .dead_letters("work", &DeadLetterQuery::default(), Scope::Private)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    let letter = &page.entries[0];
    assert_eq!(
        (
            letter.message.id.as_str(),
            letter.recipient.as_str(),
            letter.delivery_count
        ),
        (sent.id.as_str(), "bob", 2)
    );
    assert_eq!(letter.reason, "max_deliveries");
    http.delete_dead_letter("work", &sent.id, Scope::Private)
        .await
        .unwrap();
    let page = http
        .dead_letters("work", &DeadLetterQuery::default(), Scope::Private)
        .await
        .unwrap();
    assert!(page.entries.is_empty());
    let err = http
        .delete_dead_letter("work", &sent.id, Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn rejections_requeue_until_max_rejections_or_dead_letter_at_once() {
    let s = TestServer::start_with(|c| c.inbox.max_rejections = 2).await;
    let (alice, bob) = (s.client().await, s.client().await);
    let mut a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let sent = a.publish(task("bob", 1, true)).await.unwrap();
    let m = next_inbox(&mut b).await;
    b.reject(&m.message.id, Some("busy"), true).await.unwrap();
    let m = next_inbox(&mut b).await;
    assert_eq!(m.delivery_count, 2);
    b.reject(&m.message.id, Some("still busy"), true)
        .await
        .unwrap();

    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = next_receipt(&mut a).await;
        assert_eq!(r.id, sent.id);
        statuses.push((r.status, r.reason));
    }
    assert_eq!(
        statuses,
        [
            (ReceiptStatus::Delivered, None),
            (ReceiptStatus::Rejected, Some("busy".to_owned())),
            (ReceiptStatus::DeadLettered, Some("still busy".to_owned())),
        ]
    );
    assert_no_inbox(&mut b, Duration::from_millis(300)).await;

    // requeue: false dead-letters at once, whatever the limit.
    let second = a.publish(task("bob", 2, false)).await.unwrap();
    let m = next_inbox(&mut b).await;
    b.reject(&m.message.id, None, false).await.unwrap();
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let query = DeadLetterQuery {
        recipient: Some("bob".into()),
        limit: Some(1),
        ..DeadLetterQuery::default()
    };
    let page = http
        .dead_letters("work", &query, Scope::Private)
        .await
        .unwrap();
    assert_eq!(page.entries[0].message.id, sent.id);
    assert_eq!(page.entries[0].rejections, 2);
    let next = DeadLetterQuery {
        after: page.next.clone(),
        ..query
    };
    let page = http
        .dead_letters("work", &next, Scope::Private)
        .await
        .unwrap();
    assert_eq!(page.entries[0].message.id, second.id);
    assert_eq!(page.entries[0].reason, "rejected");
    assert!(page.next.is_none());
}

#[tokio::test]
async fn a_dropped_consumer_releases_its_messages_at_once() {
    let s = TestServer::start().await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    a.publish(task("bob", 1, false)).await.unwrap();
    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let m = next_inbox(&mut b).await;
    drop(b);
    bob.close().await;
    // The visibility timeout is 30 s: the message comes back sooner only if it was released.
    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let again = next_inbox(&mut b).await;
    assert_eq!(again.message.id, m.message.id);
    assert_eq!(again.delivery_count, 2);
}

#[tokio::test]
async fn the_inbox_survives_a_restart() {
    let mut s = TestServer::start().await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let kept = a.publish(task("bob", 1, false)).await.unwrap();
    a.publish(task("bob", 2, false)).await.unwrap();
    drop(a);
    alice.close().await;
    s.stop().await;
    s.start_again().await;

    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let m1 = next_inbox(&mut b).await;
    let m2 = next_inbox(&mut b).await;
    assert_eq!(m1.message.id, kept.id);
    b.ack(&m1.message.id).await.unwrap();
    drop(b);
    bob.close().await;
    s.stop().await;
    s.start_again().await;

    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    // Only the unacknowledged one comes back (released or not, it waits out nothing).
    let again = next_inbox(&mut b).await;
    assert_eq!(again.message.id, m2.message.id);
    assert_no_inbox(&mut b, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn prefetch_bounds_what_is_delivered_before_acks() {
    let s = TestServer::start_with(|c| c.inbox.prefetch = 2).await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    for n in 0..5 {
        a.publish(task("bob", n, false)).await.unwrap();
    }
    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let first = next_inbox(&mut b).await;
    let second = next_inbox(&mut b).await;
    assert_no_inbox(&mut b, Duration::from_millis(300)).await;
    b.ack(&first.message.id).await.unwrap();
    let third = next_inbox(&mut b).await;
    assert_eq!(third.message.data.get(), r#"{"n":2}"#);
    assert_no_inbox(&mut b, Duration::from_millis(200)).await;
    b.ack(&second.message.id).await.unwrap();
    b.ack(&third.message.id).await.unwrap();
    let rest = [next_inbox(&mut b).await, next_inbox(&mut b).await];
    assert_eq!(rest[0].message.data.get(), r#"{"n":3}"#);
    assert_eq!(rest[1].message.data.get(), r#"{"n":4}"#);
}

#[tokio::test]
async fn limits_and_bad_input_have_clear_errors() {
    let s = TestServer::start_with(|c| c.inbox.max_messages_per_agent = 2).await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    a.publish(task("bob", 1, false)).await.unwrap();
    a.publish(task("bob", 2, false)).await.unwrap();
    let err = a.publish(task("bob", 3, false)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InboxFull));
    // Other recipients are not affected.
    a.publish(task("carol", 1, false)).await.unwrap();

    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    let m = next_inbox(&mut b).await;
    b.ack(&m.message.id).await.unwrap();
    // Room again once one is acknowledged.
    a.publish(task("bob", 3, false)).await.unwrap();

    let err = b.ack("no-such-id").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let long = "x".repeat(switchboard_client::protocol::inbox::MAX_REASON_LEN + 1);
    let err = b.reject("any", Some(&long), true).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPayload));

    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let too_many = Receive {
        max: Some(1000),
        visibility_timeout_ms: None,
    };
    let err = http
        .inbox_receive("work", "carol", &too_many, Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPayload));
    let err = http
        .inbox_receive("work", "not a name", &Receive::default(), Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidAgentName));
    let err = http
        .inbox_receive("nowhere", "carol", &Receive::default(), Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelNotFound));
}

#[tokio::test]
async fn backends_consume_an_inbox_over_http() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let alice = s.client().await;
    let mut a = alice.join("jobs", JoinParams::new("alice")).await.unwrap();
    let one = a.publish(task("worker", 1, true)).await.unwrap();
    let two = a.publish(task("worker", 2, false)).await.unwrap();

    let lease = Receive {
        max: Some(10),
        visibility_timeout_ms: Some(60_000),
    };
    let got = http
        .inbox_receive("jobs", "worker", &lease, Scope::Private)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].message.id.as_str(), got[0].delivery_count),
        (one.id.as_str(), 1)
    );
    // Leased: a second receive finds nothing until the lease runs out.
    let none = http
        .inbox_receive("jobs", "worker", &lease, Scope::Private)
        .await
        .unwrap();
    assert!(none.is_empty());
    http.inbox_ack("jobs", "worker", &one.id, Scope::Private)
        .await
        .unwrap();
    assert_eq!(next_receipt(&mut a).await.status, ReceiptStatus::Delivered);
    assert_eq!(
        next_receipt(&mut a).await.status,
        ReceiptStatus::Acknowledged
    );
    let reject = Reject {
        id: two.id.clone(),
        reason: Some("unsupported".into()),
        requeue: false,
    };
    http.inbox_reject("jobs", "worker", &reject, Scope::Private)
        .await
        .unwrap();
    let page = http
        .dead_letters("jobs", &DeadLetterQuery::default(), Scope::Private)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].reason, "unsupported");
    let err = http
        .inbox_ack("jobs", "worker", &two.id, Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // Another tenant sees none of this tenant's dead letters.
    let other = s.server().create_key("other").await.unwrap();
    let other = HttpClient::new(&s.server().http_url(), other).unwrap();
    let err = other
        .dead_letters("jobs", &DeadLetterQuery::default(), Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelNotFound));
}

#[tokio::test]
async fn a_takeover_gets_the_messages_of_the_session_it_replaced() {
    let s = TestServer::start().await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let sent = a.publish(task("bob", 1, false)).await.unwrap();
    let (bob1, bob2) = (s.client().await, s.client().await);
    let mut first = bob1.join("work", consumer("bob")).await.unwrap();
    assert_eq!(next_inbox(&mut first).await.message.id, sent.id);
    // The new session may lease before the old one's messages are released; the release
    // wakes it, so it does not wait out the 30 s visibility timeout.
    let mut params = consumer("bob");
    params.session_id = Some(first.join_reply().session_id);
    let mut second = bob2.join("work", params).await.unwrap();
    let again = next_inbox(&mut second).await;
    assert_eq!(
        (again.message.id.as_str(), again.delivery_count),
        (sent.id.as_str(), 2)
    );
    second.ack(&sent.id).await.unwrap();
}

#[tokio::test]
async fn a_full_consumer_still_wakes_for_its_own_deadlines() {
    // prefetch 1. A backend leases the first message over HTTP for 100 ms; bob then takes
    // the second for 600 ms and has no room left. When the backend's lease runs out, bob's
    // pump wakes without room; it must still wake when its own lease runs out, and then
    // deliver what is waiting.
    let s = TestServer::start_with(|c| {
        c.inbox.prefetch = 1;
        c.inbox.visibility_timeout_ms = 600;
    })
    .await;
    let alice = s.client().await;
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let first = a.publish(task("bob", 1, false)).await.unwrap();
    let second = a.publish(task("bob", 2, false)).await.unwrap();
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let short = Receive {
        max: Some(1),
        visibility_timeout_ms: Some(100),
    };
    let leased = http
        .inbox_receive("work", "bob", &short, Scope::Private)
        .await
        .unwrap();
    assert_eq!(leased[0].message.id, first.id);
    let bob = s.client().await;
    let mut b = bob.join("work", consumer("bob")).await.unwrap();
    assert_eq!(next_inbox(&mut b).await.message.id, second.id);
    // Neither is settled: after bob's lease expires, one of them comes to bob again.
    let again = next_inbox(&mut b).await;
    assert_eq!(again.delivery_count, 2);
}
