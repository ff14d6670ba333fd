//! Webhooks against a real HTTP receiver started by the test: signatures, filters, retries
//! with backoff, the delivery log, registration errors, and a dead receiver that must not
//! slow publishing.

use crate::harness::{TestServer, WAIT};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchboard_client::{
    ChannelEvent, CreateWebhook, ErrorCode, HttpClient, JoinParams, Publish, Scope, WebhookEvent,
};
use tokio::sync::mpsc;

/// One POST the receiver got.
#[derive(Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn event(&self) -> String {
        self.json()["event"].as_str().unwrap().to_owned()
    }
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Received>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicUsize>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let _ = r.tx.send(Received { headers, body });
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

/// Starts a receiver; returns its URL and what it receives.
async fn receiver(fail_first: usize) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        tx,
        fail_first: Arc::new(AtomicUsize::new(fail_first)),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a webhook POST in time")
        .unwrap()
}

fn verify(secret: &str, r: &Received) {
    let signature = r.headers["x-switchboard-signature"].to_str().unwrap();
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", r.body).as_bytes());
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
    let body = r.json();
    assert_eq!(
        r.headers["x-switchboard-delivery"],
        body["id"].as_str().unwrap()
    );
    assert_eq!(
        r.headers["x-switchboard-event"],
        body["event"].as_str().unwrap()
    );
}

fn hook(url: &str, events: &[WebhookEvent]) -> CreateWebhook {
    CreateWebhook {
        url: url.to_owned(),
        events: events.to_vec(),
        channel: None,
        types: None,
    }
}

#[tokio::test]
async fn events_are_signed_filtered_and_delivered() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let (url, mut rx) = receiver(0).await;
    let mut create = hook(
        &url,
        &[
            WebhookEvent::ChannelOccupied,
            WebhookEvent::AgentJoined,
            WebhookEvent::MessagePublished,
            WebhookEvent::AgentLeft,
            WebhookEvent::ChannelVacated,
            WebhookEvent::InboxRejected,
            WebhookEvent::InboxDeadLettered,
        ],
    );
    create.channel = Some("orders-*".into());
    create.types = Some(vec!["order".into(), "task".into()]);
    let created = http.create_webhook(&create).await.unwrap();
    assert!(created.secret.starts_with("whsec_"));
    assert_eq!(
        http.webhooks().await.unwrap(),
        std::slice::from_ref(&created.webhook)
    );

    let client = s.client().await;
    let alice = client
        .join("orders-1", JoinParams::new("alice"))
        .await
        .unwrap();
    let mut got = vec![next(&mut rx).await, next(&mut rx).await];
    alice
        .publish(Publish::new("order", &json!({"sku": 7})))
        .await
        .unwrap();
    // Not for this webhook: another type, another channel.
    alice
        .publish(Publish::new("chat", &json!("hi")))
        .await
        .unwrap();
    let lobby = client
        .join("lobby", JoinParams::new("alice"))
        .await
        .unwrap();
    lobby
        .publish(Publish::new("order", &json!(1)))
        .await
        .unwrap();
    got.push(next(&mut rx).await);

    // Inbox events: a requeued rejection, then a dead letter.
    let mut task = Publish::new("task", &json!("x"));
    task.to = Some("bob".into());
    alice.publish(task).await.unwrap();
    got.push(next(&mut rx).await); // the task's own message.published
    let bob_client = s.client().await;
    let mut params = JoinParams::new("bob");
    params.inbox = true;
    let mut bob = bob_client.join("orders-1", params).await.unwrap();
    got.push(next(&mut rx).await); // bob joined
    let delivered = loop {
        match tokio::time::timeout(WAIT, bob.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ChannelEvent::InboxMessage(m) => break m,
            _ => continue,
        }
    };
    bob.reject(&delivered.message.id, Some("later"), true)
        .await
        .unwrap();
    got.push(next(&mut rx).await);
    let again = loop {
        match tokio::time::timeout(WAIT, bob.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ChannelEvent::InboxMessage(m) => break m,
            _ => continue,
        }
    };
    bob.reject(&again.message.id, Some("never"), false)
        .await
        .unwrap();
    got.push(next(&mut rx).await);
    bob.leave().await.unwrap();
    got.push(next(&mut rx).await);
    alice.leave().await.unwrap();
    got.push(next(&mut rx).await);
    got.push(next(&mut rx).await);

    for r in &got {
        verify(&created.secret, r);
        assert_eq!(r.json()["channel"], "orders-1");
    }
    let events: Vec<String> = got.iter().map(Received::event).collect();
    let expected = [
        "channel.occupied",
        "agent.joined",
        "message.published",
        "message.published",
        "agent.joined",
        "inbox.rejected",
        "inbox.dead_lettered",
        "agent.left",
        "agent.left",
        "channel.vacated",
    ];
    // POSTs run concurrently: compare as multisets.
    let mut sorted_events = events.clone();
    sorted_events.sort();
    let mut sorted_expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
    sorted_expected.sort();
    assert_eq!(sorted_events, sorted_expected, "{events:?}");
    let order = got
        .iter()
        .find(|r| r.event() == "message.published")
        .unwrap()
        .json();
    assert!(["order", "task"].contains(&order["data"]["type"].as_str().unwrap()));
    let dead = got
        .iter()
        .find(|r| r.event() == "inbox.dead_lettered")
        .unwrap()
        .json();
    assert_eq!(dead["data"]["reason"], "never");
    assert_eq!(dead["data"]["recipient"], "bob");
    // The chat message and the lobby produced nothing.
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn failures_are_retried_with_backoff_and_logged() {
    let s = TestServer::start_with(|c| {
        c.webhooks.initial_backoff_ms = 20;
        c.webhooks.max_attempts = 3;
    })
    .await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let (url, mut rx) = receiver(2).await;
    let created = http
        .create_webhook(&hook(&url, &[WebhookEvent::MessagePublished]))
        .await
        .unwrap();
    http.publish("jobs", &Publish::new("job", &json!(1)), Scope::Private)
        .await
        .unwrap();
    let attempts = [
        next(&mut rx).await,
        next(&mut rx).await,
        next(&mut rx).await,
    ];
    let ids: BTreeSet<String> = attempts
        .iter()
        .map(|r| {
            r.headers["x-switchboard-delivery"]
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same delivery id");
    for r in &attempts {
        verify(&created.secret, r);
    }

    // A receiver that is gone: both attempts fail, the last without a retry.
    let dead = http
        .create_webhook(&hook(
            "http://127.0.0.1:9/gone",
            &[WebhookEvent::MessagePublished],
        ))
        .await
        .unwrap();
    http.publish("jobs", &Publish::new("job", &json!(2)), Scope::Private)
        .await
        .unwrap();
    let _fourth = next(&mut rx).await; // the first webhook gets job 2 at once

    let log = wait_for_log(&http, &created.webhook.id, 4).await;
    let statuses: Vec<(u32, Option<u16>, bool)> = log
        .iter()
        .rev()
        .take(3)
        .map(|a| (a.attempt, a.status, a.will_retry))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, Some(500), true),
            (2, Some(500), true),
            (3, Some(204), false)
        ]
    );
    assert_eq!(
        log.last().unwrap().error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    let log = wait_for_log(&http, &dead.webhook.id, 3).await;
    assert!(log.iter().all(|a| a.status.is_none() && a.error.is_some()));
    assert!(!log[0].will_retry, "the last attempt gives up");
    assert_eq!(log[0].attempt, 3);
}

/// The webhook's log once it has `n` attempts, newest first.
async fn wait_for_log(
    http: &HttpClient,
    id: &str,
    n: usize,
) -> Vec<switchboard_client::DeliveryAttempt> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = http.webhook_deliveries(id, 100).await.unwrap().attempts;
        if log.len() >= n {
            return log;
        }
        assert!(tokio::time::Instant::now() < deadline, "log: {log:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_does_not_slow_publishing() {
    let s = TestServer::start_with(|c| {
        c.webhooks.timeout_ms = 60_000;
        c.webhooks.concurrency = 1;
        c.webhooks.queue = 4;
    })
    .await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            sockets.push(socket);
        }
    });
    http.create_webhook(&hook(&url, &[WebhookEvent::MessagePublished]))
        .await
        .unwrap();
    let client = s.client().await;
    let room = client.join("busy", JoinParams::new("alice")).await.unwrap();
    for n in 0..200 {
        room.publish(Publish::new("tick", &json!(n))).await.unwrap();
    }
    let metrics = reqwest_text(&format!("{}/metrics", s.server().http_url())).await;
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_webhook_dropped_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped >= 190.0, "{dropped} events dropped");
    held.abort();
}

async fn reqwest_text(url: &str) -> String {
    let (host, path) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn registrations_are_checked() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let invalid =
        |e: switchboard_client::Error| assert_eq!(e.code(), Some(ErrorCode::InvalidPayload));
    let events = [WebhookEvent::AgentJoined];
    invalid(
        http.create_webhook(&hook("ftp://x/y", &events))
            .await
            .unwrap_err(),
    );
    invalid(
        http.create_webhook(&hook("not a url", &events))
            .await
            .unwrap_err(),
    );
    invalid(
        http.create_webhook(&hook("http://127.0.0.1:1/x", &[]))
            .await
            .unwrap_err(),
    );
    let mut bad_channel = hook("http://127.0.0.1:1/x", &events);
    bad_channel.channel = Some("no spaces*".into());
    invalid(http.create_webhook(&bad_channel).await.unwrap_err());
    if !cfg!(feature = "tls") {
        invalid(
            http.create_webhook(&hook("https://example.com/x", &events))
                .await
                .unwrap_err(),
        );
    }

    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(
            http.create_webhook(&hook("http://127.0.0.1:1/x", &events))
                .await
                .unwrap()
                .webhook
                .id,
        );
    }
    let err = http
        .create_webhook(&hook("http://127.0.0.1:1/x", &events))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RateLimited));
    http.delete_webhook(&ids[0]).await.unwrap();
    assert_eq!(http.webhooks().await.unwrap().len(), 19);
    let err = http.delete_webhook(&ids[0]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    let err = http.webhook_deliveries(&ids[0], 10).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));

    // Another tenant sees none of them; temporary keys may not manage webhooks.
    let other = s.server().create_key("other").await.unwrap();
    let other = HttpClient::new(&s.server().http_url(), other).unwrap();
    assert!(other.webhooks().await.unwrap().is_empty());
    let err = other.delete_webhook(&ids[1]).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn webhooks_survive_a_restart() {
    let mut s = TestServer::start().await;
    let (url, mut rx) = receiver(0).await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let created = http
        .create_webhook(&hook(&url, &[WebhookEvent::MessagePublished]))
        .await
        .unwrap();
    s.stop().await;
    s.start_again().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    http.publish("after", &Publish::new("x", &json!(1)), Scope::Private)
        .await
        .unwrap();
    let r = next(&mut rx).await;
    verify(&created.secret, &r);
    assert_eq!(r.json()["data"]["channel"], "after");
}

#[tokio::test]
async fn a_completed_stream_raises_stream_completed() {
    use switchboard_client::stream::{self, Incoming, SendOptions};
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let (url, mut rx) = receiver(0).await;
    let created = http
        .create_webhook(&hook(&url, &[WebhookEvent::StreamCompleted]))
        .await
        .unwrap();
    let (alice, bob) = (s.client().await, s.client().await);
    let a = alice.join("files", JoinParams::new("alice")).await.unwrap();
    let mut b = bob.join("files", JoinParams::new("bob")).await.unwrap();
    let options = SendOptions {
        name: Some("notes.txt".into()),
        ..SendOptions::default()
    };
    let sent = stream::send(&a.sender(), "bob", &b"hello, stream"[..], options, |_| {})
        .await
        .unwrap();
    let sender = b.sender();
    let mut incoming = None;
    loop {
        match tokio::time::timeout(WAIT, b.recv()).await.unwrap().unwrap() {
            ChannelEvent::StreamOffer(offer) => {
                incoming = Some(Incoming::accept(&sender, &offer, Vec::new()).await.unwrap());
            }
            ChannelEvent::StreamData { offset, bytes, .. } => {
                let incoming = incoming.as_mut().unwrap();
                incoming.data(&sender, offset, &bytes).await.unwrap();
            }
            ChannelEvent::StreamEnd(end) => {
                let got = incoming
                    .take()
                    .unwrap()
                    .finish(&sender, &end)
                    .await
                    .unwrap();
                assert_eq!(got, b"hello, stream");
                break;
            }
            _ => {}
        }
    }
    let r = next(&mut rx).await;
    verify(&created.secret, &r);
    let body = r.json();
    assert_eq!(body["event"], "stream.completed");
    assert_eq!(body["data"]["stream_id"], sent.stream_id.as_str());
    assert_eq!(body["data"]["total_size"], 13);
    assert_eq!(body["data"]["name"], "notes.txt");
}
