//! Discovery: announce, update_metadata, discover with filters and online status, the
//! discovery channel's change messages, persistence, and the failure paths.

use crate::harness::{TestServer, WAIT};
use serde_json::{Map, Value, json};
use switchboard_client::{
    AgentChange, AgentUpdate, Announce, Channel, ChannelEvent, DISCOVERY_CHANNEL, Discover,
    ErrorCode, HttpClient, JoinParams, Publish,
};

fn announce(capabilities: &[&str], metadata: Value) -> Announce {
    Announce {
        capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        metadata: metadata.as_object().unwrap().clone(),
    }
}

fn query(v: Value) -> Discover {
    serde_json::from_value(v).unwrap()
}

fn names(cards: &[switchboard_client::AgentCard]) -> Vec<&str> {
    cards.iter().map(|c| c.name.as_str()).collect()
}

async fn next_update(watcher: &mut Channel) -> AgentUpdate {
    loop {
        match tokio::time::timeout(WAIT, watcher.recv()).await.unwrap() {
            Some(ChannelEvent::Message(m)) => {
                assert_eq!((m.kind.as_str(), m.from.as_str()), ("agent", "switchboard"));
                assert!(m.ephemeral);
                return serde_json::from_str(m.data.get()).unwrap();
            }
            Some(_) => {}
            None => panic!("the channel ended"),
        }
    }
}

#[tokio::test]
async fn agents_announce_and_are_discovered_by_capability_metadata_and_presence() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let (alice, bob) = (s.client().await, s.client().await);
    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    let b = bob.join("work", JoinParams::new("bob")).await.unwrap();
    let card = a
        .announce(&announce(
            &["translate", "summarize"],
            json!({"status": "idle", "price": 5, "stats": {"reputation": 4.8}}),
        ))
        .await
        .unwrap();
    assert!(card.online);
    b.announce(&announce(
        &["translate"],
        json!({"status": "busy", "price": 12}),
    ))
    .await
    .unwrap();
    // A backend announces an agent that is not connected.
    let carol = http
        .announce_agent("carol", &announce(&["draw"], json!({"price": 1})))
        .await
        .unwrap();
    assert!(!carol.online);

    let found = a
        .discover(&query(json!({"capability": "translate"})))
        .await
        .unwrap();
    assert_eq!(names(&found), ["alice", "bob"]);
    let cheap = query(json!({"capability": "translate", "filters": {"price": {"max": 10}}}));
    assert_eq!(names(&a.discover(&cheap).await.unwrap()), ["alice"]);
    let busy = query(json!({"filters": {"status": "busy"}}));
    assert_eq!(names(&b.discover(&busy).await.unwrap()), ["bob"]);
    let trusted = query(json!({"filters": {"stats.reputation": {"min": 4.5}}}));
    assert_eq!(names(&http.discover(&trusted).await.unwrap()), ["alice"]);
    let mut cheaper = Map::new();
    cheaper.insert("price".into(), json!(0.5));
    let carol = http.update_agent_metadata("carol", cheaper).await.unwrap();
    assert_eq!(
        (carol.capabilities[0].as_str(), &carol.metadata["price"]),
        ("draw", &json!(0.5))
    );
    let offline = query(json!({"online": false}));
    assert_eq!(names(&http.discover(&offline).await.unwrap()), ["carol"]);
    let limited = query(json!({"limit": 2}));
    assert_eq!(
        names(&http.discover(&limited).await.unwrap()),
        ["alice", "bob"]
    );

    let mut metadata = Map::new();
    metadata.insert("status".into(), json!("idle"));
    metadata.insert("price".into(), json!(8));
    let updated = b.update_metadata(metadata).await.unwrap();
    assert_eq!(updated.capabilities, ["translate"]);
    assert_eq!(names(&a.discover(&cheap).await.unwrap()), ["alice", "bob"]);

    // Leaving every channel makes an agent offline; its card stays.
    drop(b);
    bob.close().await;
    let online = query(json!({"online": true}));
    let deadline = tokio::time::Instant::now() + WAIT;
    while names(&http.discover(&online).await.unwrap()) != ["alice"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob never went offline"
        );
        tokio::task::yield_now().await;
    }
    assert!(!http.agent("bob").await.unwrap().online);
    http.remove_agent("bob").await.unwrap();
    let err = http.agent("bob").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn the_discovery_channel_carries_every_change() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let (watching, alice) = (s.client().await, s.client().await);
    let mut params = JoinParams::new("watcher");
    params.presence = false;
    let mut watcher = watching.join(DISCOVERY_CHANNEL, params).await.unwrap();

    let a = alice.join("work", JoinParams::new("alice")).await.unwrap();
    a.announce(&announce(&["translate"], json!({"status": "idle"})))
        .await
        .unwrap();
    let update = next_update(&mut watcher).await;
    assert_eq!(update.change, AgentChange::Announced);
    assert_eq!(
        (update.agent.name.as_str(), update.agent.online),
        ("alice", true)
    );

    let mut metadata = Map::new();
    metadata.insert("status".into(), json!("busy"));
    a.update_metadata(metadata).await.unwrap();
    let update = next_update(&mut watcher).await;
    assert_eq!(update.change, AgentChange::Updated);
    assert_eq!(update.agent.metadata["status"], "busy");

    a.leave().await.unwrap();
    let update = next_update(&mut watcher).await;
    assert_eq!(
        (update.change, update.agent.online),
        (AgentChange::Offline, false)
    );
    let _again = alice.join("lobby", JoinParams::new("alice")).await.unwrap();
    let update = next_update(&mut watcher).await;
    assert_eq!(
        (update.change, update.agent.online),
        (AgentChange::Online, true)
    );
    http.remove_agent("alice").await.unwrap();
    assert_eq!(next_update(&mut watcher).await.change, AgentChange::Removed);

    // Only the server writes in sys. channels.
    let err = watcher
        .publish(Publish::new("agent", &json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = http
        .publish(
            DISCOVERY_CHANNEL,
            &Publish::new("agent", &json!({})),
            switchboard_client::Scope::Private,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
}

#[tokio::test]
async fn cards_survive_a_restart_and_stay_in_their_tenant() {
    let mut s = TestServer::start().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    http.announce_agent("scribe", &announce(&["summarize"], json!({"lang": "en"})))
        .await
        .unwrap();
    s.stop().await;
    s.start_again().await;
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let found = http
        .discover(&query(json!({"capability": "summarize"})))
        .await
        .unwrap();
    assert_eq!(names(&found), ["scribe"]);
    assert_eq!(found[0].metadata["lang"], "en");
    assert!(!found[0].online);

    let other = s.server().create_key("other").await.unwrap();
    let other = HttpClient::new(&s.server().http_url(), other).unwrap();
    assert!(
        other
            .discover(&Discover::default())
            .await
            .unwrap()
            .is_empty()
    );
    let err = other.agent("scribe").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn bad_announcements_and_queries_have_clear_errors() {
    let s = TestServer::start().await;
    let client = s.client().await;
    let a = client.join("work", JoinParams::new("alice")).await.unwrap();
    let invalid =
        |e: switchboard_client::Error| assert_eq!(e.code(), Some(ErrorCode::InvalidPayload));

    let many: Vec<String> = (0..33).map(|i| format!("c{i}")).collect();
    let too_many = Announce {
        capabilities: many,
        metadata: Map::new(),
    };
    invalid(a.announce(&too_many).await.unwrap_err());
    invalid(a.announce(&announce(&[""], json!({}))).await.unwrap_err());
    let huge = json!({"blob": "x".repeat(5000)});
    invalid(a.announce(&announce(&["ok"], huge)).await.unwrap_err());
    let err = a.update_metadata(Map::new()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    invalid(a.discover(&query(json!({"limit": 0}))).await.unwrap_err());
    let http = HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let err = http.agent("not a name").await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidAgentName));
}
