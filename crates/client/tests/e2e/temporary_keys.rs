//! Temporary keys from the SDK's side: minting over HTTP, refreshing in place before expiry,
//! refreshing after a close for the key, and attenuating offline.

use crate::harness::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_client::{
    Capability, ChannelEvent, Client, ClientConfig, CreateTemporaryKey, ErrorCode, HistoryQuery,
    HttpClient, JoinParams, Publish, Restriction, Scope, TemporaryKey, attenuate,
};

fn grant(ttl_secs: u64, capabilities: &[Capability]) -> CreateTemporaryKey {
    CreateTemporaryKey {
        ttl_secs,
        capabilities: capabilities.to_vec(),
        agent_names: None,
        channels: None,
        event_types: None,
        scope: None,
        read_only: false,
    }
}

const CHAT: &[Capability] = &[Capability::Subscribe, Capability::Publish];

async fn mint(s: &TestServer, grant: &CreateTemporaryKey) -> TemporaryKey {
    HttpClient::new(&s.url(), &s.key)
        .unwrap()
        .mint_temporary_key(grant)
        .await
        .unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Waits until the wall clock is past `expires_at` (ms), plus a margin.
async fn outlive(expires_at: i64) {
    let left = (expires_at - now_ms()).max(0) as u64 + 300;
    tokio::time::sleep(Duration::from_millis(left)).await;
}

/// A key-refresh callback minting `grant` with the original key, counting its calls.
fn minting(s: &TestServer, grant: CreateTemporaryKey, calls: Arc<AtomicUsize>) -> ClientConfig {
    let http = HttpClient::new(&s.url(), &s.key).unwrap();
    ClientConfig::new(s.url(), "").with_key_refresh(move || {
        let http = http.clone();
        let grant = grant.clone();
        calls.fetch_add(1, Ordering::SeqCst);
        async move { http.mint_temporary_key(&grant).await.map(|k| k.key) }
    })
}

fn chat(text: &str) -> Publish {
    Publish::new("chat", &json!(text))
}

async fn assert_kicked_with(channel: &mut switchboard_client::Channel, code: ErrorCode) {
    loop {
        match next_event(channel).await {
            ChannelEvent::Kicked(reply) => {
                assert_eq!(reply.code, code, "{reply:?}");
                return;
            }
            ChannelEvent::PresenceState(_) | ChannelEvent::PresenceDiff(_) => {}
            other => panic!("expected a kick, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_minted_key_connects_and_manages_nothing() {
    let s = TestServer::start().await;
    let mut g = grant(600, CHAT);
    g.channels = Some(vec!["lobby".into()]);
    let minted = mint(&s, &g).await;
    assert!(minted.key.starts_with("tk_"));
    assert!(minted.expires_at > now_ms() + 590_000);

    let client = Client::connect(ClientConfig::new(s.url(), &minted.key))
        .await
        .unwrap();
    let mut lobby = client
        .join("lobby", JoinParams::new("web-1"))
        .await
        .unwrap();
    let ack = lobby.publish(chat("hi")).await.unwrap();
    assert_eq!(next_message(&mut lobby).await.offset, ack.offset);
    let err = client
        .join("kitchen", JoinParams::new("web-1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));

    // A temporary key mints nothing; and revoking it by id works like any key.
    let with_temporary = HttpClient::new(&s.url(), &minted.key).unwrap();
    let err = with_temporary.mint_temporary_key(&g).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = HttpClient::new(&s.url(), &s.key)
        .unwrap()
        .mint_temporary_key(&grant(0, CHAT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidPayload));
    HttpClient::new(&s.url(), &s.key)
        .unwrap()
        .revoke_key(&minted.id)
        .await
        .unwrap();
    assert_kicked_with(&mut lobby, ErrorCode::KeyRevoked).await;
}

#[tokio::test]
async fn the_key_is_refreshed_in_place_before_it_expires() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let first = mint(&s, &grant(2, CHAT)).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = minting(&s, grant(600, CHAT), calls.clone());
    config.url = proxy.url();
    config.api_key = first.key.clone();
    let client = Client::connect(fast(config)).await.unwrap();
    let mut clock = client.join("clock", JoinParams::new("a")).await.unwrap();
    clock.publish(chat("before")).await.unwrap();

    outlive(first.expires_at).await;
    let ack = clock.publish(chat("after")).await.unwrap();
    assert!(ack.offset.is_some());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one refresh, on key_expiring"
    );
    assert_eq!(proxy.connections(), 1, "the socket was never replaced");
    assert!(client.is_connected());
    // Nothing but messages and presence: no reconnect, no kick.
    let mut messages = 0;
    while messages < 2 {
        match next_event(&mut clock).await {
            ChannelEvent::Message(_) => messages += 1,
            ChannelEvent::PresenceState(_) | ChannelEvent::PresenceDiff(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn without_a_refresh_callback_the_key_lapses() {
    let s = TestServer::start().await;
    let short = mint(&s, &grant(1, CHAT)).await;
    let client = Client::connect(ClientConfig::new(s.url(), &short.key))
        .await
        .unwrap();
    let mut clock = client.join("clock", JoinParams::new("a")).await.unwrap();
    assert_kicked_with(&mut clock, ErrorCode::KeyExpired).await;
    let err = client
        .join("clock", JoinParams::new("a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::KeyExpired));
}

#[tokio::test]
async fn a_close_for_the_key_fetches_a_fresh_one_and_resumes() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let first = mint(&s, &grant(2, CHAT)).await;
    // The refresh on key_expiring fails, so the key expires (4504); the one after works.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let http = HttpClient::new(&s.url(), &s.key).unwrap();
    let config = ClientConfig::new(proxy.url(), &first.key).with_key_refresh(move || {
        let http = http.clone();
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if call == 0 {
                return Err("the backend is down".into());
            }
            let key: Result<String, Box<dyn std::error::Error + Send + Sync>> = http
                .mint_temporary_key(&grant(600, CHAT))
                .await
                .map(|k| k.key)
                .map_err(Into::into);
            key
        }
    });
    let client = Client::connect(fast(config)).await.unwrap();
    let mut clock = client.join("clock", JoinParams::new("a")).await.unwrap();
    let before = clock.publish(chat("before")).await.unwrap();

    loop {
        match next_event(&mut clock).await {
            ChannelEvent::Reconnected => break,
            ChannelEvent::Kicked(reply) => panic!("kicked: {reply:?}"),
            _ => {}
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(proxy.connections(), 2);
    let after = clock.publish(chat("after")).await.unwrap();
    assert_eq!(after.offset, before.offset.map(|o| o + 1));
}

#[tokio::test]
async fn an_attenuated_key_can_do_only_what_both_allow() {
    let s = TestServer::start().await;
    let mut g = grant(
        600,
        &[
            Capability::Subscribe,
            Capability::Publish,
            Capability::History,
        ],
    );
    g.channels = Some(vec!["team-*".into(), "lobby".into()]);
    let parent = mint(&s, &g).await;
    let helper = attenuate(
        &parent.key,
        &Restriction::new()
            .with_capabilities([Capability::Subscribe, Capability::Publish])
            .with_channels(["team-a", "lobby", "elsewhere"])
            .with_agent_names(["helper"])
            .with_event_types(["result"]),
    )
    .unwrap();
    assert!(helper.starts_with("tk_") && helper != parent.key);

    let client = Client::connect(ClientConfig::new(s.url(), &helper))
        .await
        .unwrap();
    let team = client
        .join("team-a", JoinParams::new("helper"))
        .await
        .unwrap();
    team.publish(Publish::new("result", &json!(42)))
        .await
        .unwrap();
    let forbidden = [
        team.publish(chat("off-topic")).await.map(drop),
        team.history(HistoryQuery::default()).await.map(drop),
        client
            .join("team-b", JoinParams::new("helper"))
            .await
            .map(drop),
        // Allowed by the restriction but not by the key it narrows: never widened.
        client
            .join("elsewhere", JoinParams::new("helper"))
            .await
            .map(drop),
        client
            .join("lobby", JoinParams::new("boss"))
            .await
            .map(drop),
    ];
    for (i, result) in forbidden.into_iter().enumerate() {
        assert_eq!(
            result.unwrap_err().code(),
            Some(ErrorCode::Forbidden),
            "case {i}"
        );
    }
    assert!(client.is_connected(), "refusals leave the connection up");
    let lobby = client
        .join("lobby", JoinParams::new("helper"))
        .await
        .unwrap();
    lobby
        .publish(Publish::new("result", &json!("done")))
        .await
        .unwrap();

    // Over HTTP too; while the key it narrows keeps its full grant.
    let http = HttpClient::new(&s.url(), &helper).unwrap();
    let err = http
        .publish_from(
            "team-a",
            Some("boss"),
            &Publish::new("result", &1),
            Scope::Private,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    http.publish_from(
        "team-a",
        Some("helper"),
        &Publish::new("result", &1),
        Scope::Private,
    )
    .await
    .unwrap();
    let parent_client = Client::connect(ClientConfig::new(s.url(), &parent.key))
        .await
        .unwrap();
    let boss = parent_client
        .join("team-b", JoinParams::new("boss"))
        .await
        .unwrap();
    boss.history(HistoryQuery::default()).await.unwrap();
    boss.publish(chat("any type")).await.unwrap();

    // Attenuating again narrows further; read_only takes every write away.
    let reader = attenuate(&helper, &Restriction::new().read_only()).unwrap();
    let reading = Client::connect(ClientConfig::new(s.url(), &reader))
        .await
        .unwrap();
    // Still agent `helper` only: it takes the first client's session of team-a over.
    let mut takeover = JoinParams::new("helper");
    takeover.session_id = Some(team.join_reply().session_id);
    let team = reading.join("team-a", takeover).await.unwrap();
    let err = team.publish(Publish::new("result", &0)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));

    // Revoking the parent by id revokes the keys attenuated from it.
    HttpClient::new(&s.url(), &s.key)
        .unwrap()
        .revoke_key(&parent.id)
        .await
        .unwrap();
    let err = HttpClient::new(&s.url(), &helper)
        .unwrap()
        .publish_from(
            "team-a",
            Some("helper"),
            &Publish::new("result", &1),
            Scope::Private,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey));
}

#[tokio::test]
async fn an_attenuated_lifetime_is_enforced_on_live_connections() {
    let s = TestServer::start().await;
    let parent = mint(&s, &grant(600, CHAT)).await;
    let short = Restriction::new().with_lifetime(Duration::from_secs(2));
    let expires_at = short.expires_at.unwrap();
    let brief = attenuate(&parent.key, &short).unwrap();

    // Without a refresh callback: closed with key_expired at the earlier expiry.
    let lapsing = Client::connect(ClientConfig::new(s.url(), &brief))
        .await
        .unwrap();
    let mut lapsed = lapsing.join("clock", JoinParams::new("a")).await.unwrap();

    // With one: warned at the earlier expiry, refreshed (to another short-lived attenuation),
    // and still up after it.
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let parent_key = parent.key.clone();
    let config = ClientConfig::new(s.url(), &brief).with_key_refresh(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let fresh = attenuate(
            &parent_key,
            &Restriction::new().with_lifetime(Duration::from_secs(60)),
        );
        async move { fresh }
    });
    let refreshing = Client::connect(config).await.unwrap();
    let kept = refreshing
        .join("clock", JoinParams::new("b"))
        .await
        .unwrap();

    assert_kicked_with(&mut lapsed, ErrorCode::KeyExpired).await;
    assert!(
        now_ms() >= expires_at - 1_000,
        "closed at the attenuated expiry, not before"
    );
    assert!(now_ms() < parent.expires_at);
    outlive(expires_at).await;
    kept.publish(chat("still here")).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(refreshing.is_connected());
}

#[tokio::test]
async fn malformed_keys_are_refused_clearly() {
    let s = TestServer::start().await;
    let r = Restriction::new().with_channels(["lobby"]);
    for key in ["tk_not-base64!", "hello", &s.key] {
        let err = attenuate(key, &r).unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::InvalidKey), "{key}");
        assert!(err.to_string().contains("not a temporary key"), "{err}");
    }
    // A key tampered with after attenuation is refused by the server.
    let parent = mint(&s, &grant(600, CHAT)).await;
    let narrowed = attenuate(&parent.key, &r).unwrap();
    let mut bytes = narrowed.into_bytes();
    let i = bytes.len() - 10;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let client = Client::connect(ClientConfig::new(s.url(), &tampered))
        .await
        .unwrap();
    let err = client
        .join("lobby", JoinParams::new("a"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey));
}
