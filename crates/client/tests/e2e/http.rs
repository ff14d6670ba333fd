//! The HTTP API client.

use crate::harness::*;
use serde_json::json;
use switchboard_client::{
    CreateChannel, ErrorCode, HistoryQuery, HttpClient, JoinParams, Publish, Scope, StoragePolicy,
};

#[tokio::test]
async fn http_publish_history_presence_and_channels() {
    let s = TestServer::start().await;
    let http = HttpClient::new(&s.url(), &s.key).unwrap();
    http.health().await.unwrap();

    let mut create = CreateChannel::new("news");
    create.password = Some("pw".into());
    let info = http.create_channel(&create).await.unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.head,
            info.storage == StoragePolicy::Persistent
        ),
        ("news", 0, true)
    );
    let err = http.create_channel(&create).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelExists));

    let mut params = JoinParams::new("reader");
    params.password = Some("pw".into());
    let mut reader = s.client().await.join("news", params).await.unwrap();

    let ack = http
        .publish(
            "news",
            &Publish::new("headline", &json!("hello")),
            Scope::Private,
        )
        .await
        .unwrap();
    assert_eq!(ack.offset, Some(1));
    let m = next_message(&mut reader).await;
    assert_eq!((m.from.as_str(), m.offset), ("http", Some(1)));
    let ack = http
        .publish_from(
            "news",
            Some("bot"),
            &Publish::new("headline", &2),
            Scope::Private,
        )
        .await
        .unwrap();
    assert_eq!(next_message(&mut reader).await.from, "bot");

    let page = http
        .history("news", &HistoryQuery::default(), Scope::Private)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.head, ack.offset.unwrap());
    let page = http
        .history(
            "news",
            &HistoryQuery {
                sender: Some("bot".into()),
                ..HistoryQuery::default()
            },
            Scope::Private,
        )
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);

    let present = http.presence("news", Scope::Private).await.unwrap();
    assert!(present.contains_key("reader"));
    let info = http.get_channel("news", Scope::Private).await.unwrap();
    assert_eq!((info.head, info.agents), (2, 1));

    http.delete_channel("news", Scope::Private).await.unwrap();
    let err = http.get_channel("news", Scope::Private).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ChannelNotFound), "{err}");

    let mut ephemeral = CreateChannel::new("pings");
    ephemeral.storage = Some(StoragePolicy::Ephemeral);
    let info = http.create_channel(&ephemeral).await.unwrap();
    assert_eq!(info.storage, StoragePolicy::Ephemeral);

    let bad = HttpClient::new(&s.url(), "sk_nope").unwrap();
    let err = bad
        .history("news", &HistoryQuery::default(), Scope::Private)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidKey), "{err}");
}

#[tokio::test]
async fn public_channels_need_their_password_over_http() {
    let s = TestServer::start().await;
    let mut params = JoinParams::new("host");
    params.scope = Scope::Public;
    params.password = Some("pw".into());
    let _host = s.client().await.join("lobby", params).await.unwrap();
    let http = HttpClient::new(&s.url(), &s.key).unwrap();
    let err = http.presence("lobby", Scope::Public).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadPassword), "{err}");
    let http = http.with_channel_password(Some("pw".into()));
    let present = http.presence("lobby", Scope::Public).await.unwrap();
    assert!(present.contains_key("host"));
}
