//! The HTTP API client: publish, history and presence without a socket, and channel management.
//!
//! It reaches the same server as the socket; its base URL is derived from the socket URL
//! (`ws` → `http`, `wss` → `https`), so one `--url` serves both.

use crate::config::{ClientConfig, http_base_url};
use crate::error::{Error, Result};
use reqwest::{Method, RequestBuilder, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_protocol::kv::{KvEntry, KvList, KvPage};
use switchboard_protocol::{
    ErrorReply, HistoryPage, HistoryQuery, PresenceState, Publish, PublishAck, Scope,
};

/// Header carrying the password of a public channel.
const PASSWORD_HEADER: &str = "x-channel-password";
/// Most bytes of an unreadable error body kept in [`Error::Http`].
const MAX_ERROR_BODY: usize = 512;

pub use switchboard_protocol::{
    Capability, ChannelInfo, CreateChannel, CreateKey, CreateTemporaryKey, CreateTenant,
    CreatedKey, CreatedTenant, KeyInfo, KeyKind, Retention, StoragePolicy, TemporaryKey,
    TenantInfo,
};

/// A client of the HTTP API, authenticated with a bearer key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    channel_password: Option<String>,
}

impl HttpClient {
    /// A client for the server at `url` (`ws(s)://` or `http(s)://`) with `api_key`.
    pub fn new(url: &str, api_key: impl Into<String>) -> Result<Self> {
        Ok(HttpClient {
            http: reqwest::Client::new(),
            base: http_base_url(url)?,
            api_key: api_key.into(),
            channel_password: None,
        })
    }

    /// A client for the server and key of a socket configuration (uses its request timeout).
    pub fn from_config(config: &ClientConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| Error::Connection(e.to_string()))?;
        Ok(HttpClient {
            http,
            base: config.http_base_url()?,
            api_key: config.api_key.clone(),
            channel_password: None,
        })
    }

    /// Sends this password (`x-channel-password`) with channel requests, for public channels
    /// that have one.
    pub fn with_channel_password(mut self, password: Option<String>) -> Self {
        self.channel_password = password;
        self
    }

    /// The HTTP base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Publishes as the agent `http`; returns once the message is durable.
    pub async fn publish(
        &self,
        channel: &str,
        publish: &Publish,
        scope: Scope,
    ) -> Result<PublishAck> {
        self.publish_from(channel, None, publish, scope).await
    }

    /// Publishes as `from` (default `http`); returns once the message is durable.
    pub async fn publish_from(
        &self,
        channel: &str,
        from: Option<&str>,
        publish: &Publish,
        scope: Scope,
    ) -> Result<PublishAck> {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(flatten)]
            publish: &'a Publish,
            #[serde(skip_serializing_if = "Option::is_none")]
            from: Option<&'a str>,
        }
        let request = self
            .request(
                Method::POST,
                &["v1", "channels", channel, "messages"],
                scope,
            )
            .json(&Body { publish, from });
        self.call(request).await
    }

    /// Reads history (every message, direct ones too).
    pub async fn history(
        &self,
        channel: &str,
        query: &HistoryQuery,
        scope: Scope,
    ) -> Result<HistoryPage> {
        let request = self
            .request(Method::GET, &["v1", "channels", channel, "messages"], scope)
            .query(query);
        self.call(request).await
    }

    /// The agents present in a channel.
    pub async fn presence(&self, channel: &str, scope: Scope) -> Result<PresenceState> {
        let request = self.request(Method::GET, &["v1", "channels", channel, "presence"], scope);
        self.call(request).await
    }

    /// Creates a channel; `channel_exists` when it exists already.
    pub async fn create_channel(&self, create: &CreateChannel) -> Result<ChannelInfo> {
        let request = self
            .request(Method::POST, &["v1", "channels"], Scope::Private)
            .json(create);
        self.call(request).await
    }

    /// Describes a channel; `channel_not_found` when there is none.
    pub async fn get_channel(&self, channel: &str, scope: Scope) -> Result<ChannelInfo> {
        let request = self.request(Method::GET, &["v1", "channels", channel], scope);
        self.call(request).await
    }

    /// Deletes a channel; agents present are kicked with `channel_deleted`.
    pub async fn delete_channel(&self, channel: &str, scope: Scope) -> Result<()> {
        let request = self.request(Method::DELETE, &["v1", "channels", channel], scope);
        let response = self.send(request).await?;
        check(response).await.map(drop)
    }

    /// Creates a tenant and its first original key (admin keys only).
    pub async fn create_tenant(&self, id: &str) -> Result<CreatedTenant> {
        let request = self
            .request(Method::POST, &["v1", "tenants"], Scope::Private)
            .json(&CreateTenant { id: id.to_owned() });
        self.call(request).await
    }

    /// Every tenant (admin keys only).
    pub async fn tenants(&self) -> Result<Vec<TenantInfo>> {
        #[derive(serde::Deserialize)]
        struct List {
            tenants: Vec<TenantInfo>,
        }
        let request = self.request(Method::GET, &["v1", "tenants"], Scope::Private);
        Ok(self.call::<List>(request).await?.tenants)
    }

    /// Revokes a tenant and every key of it; its live connections are closed (admin keys only).
    pub async fn revoke_tenant(&self, id: &str) -> Result<TenantInfo> {
        let request = self.request(Method::DELETE, &["v1", "tenants", id], Scope::Private);
        self.call(request).await
    }

    /// Creates a key: `CreateKey::default()` with a tenant key makes another key of the same
    /// tenant; an admin key names the tenant or asks for an admin key.
    pub async fn create_key(&self, create: &CreateKey) -> Result<CreatedKey> {
        let request = self
            .request(Method::POST, &["v1", "keys"], Scope::Private)
            .json(create);
        self.call(request).await
    }

    /// The keys this key may see: its tenant's, or with an admin key every key (or `tenant`'s).
    pub async fn keys(&self, tenant: Option<&str>) -> Result<Vec<KeyInfo>> {
        #[derive(serde::Deserialize)]
        struct List {
            keys: Vec<KeyInfo>,
        }
        let mut request = self.request(Method::GET, &["v1", "keys"], Scope::Private);
        if let Some(tenant) = tenant {
            request = request.query(&[("tenant", tenant)]);
        }
        Ok(self.call::<List>(request).await?.keys)
    }

    /// Revokes a key; connections using it are closed with `key_revoked`.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyInfo> {
        let request = self.request(Method::DELETE, &["v1", "keys", id], Scope::Private);
        self.call(request).await
    }

    /// Mints a short-lived temporary key (`tk_…`) granting `grant`, safe to hand to a browser
    /// or a device (original keys only). Revoke it with [`HttpClient::revoke_key`] and its id.
    pub async fn mint_temporary_key(&self, grant: &CreateTemporaryKey) -> Result<TemporaryKey> {
        let request = self
            .request(Method::POST, &["v1", "keys", "temporary"], Scope::Private)
            .json(grant);
        self.call(request).await
    }

    /// Reads a key of a channel's storage (`not_found` when absent).
    pub async fn kv_get(&self, channel: &str, key: &str, scope: Scope) -> Result<KvEntry> {
        let request = self.request(Method::GET, &["v1", "channels", channel, "kv", key], scope);
        self.call(request).await
    }

    /// Writes a key of a channel's storage; with `version`, only if the key is at that version
    /// (0: only if absent), else `version_conflict`.
    pub async fn kv_put(
        &self,
        channel: &str,
        key: &str,
        value: &serde_json::Value,
        version: Option<u64>,
        ttl_secs: Option<u64>,
        scope: Scope,
    ) -> Result<KvEntry> {
        let mut body = serde_json::json!({ "value": value });
        if let Some(version) = version {
            body["version"] = version.into();
        }
        if let Some(ttl) = ttl_secs {
            body["ttl_secs"] = ttl.into();
        }
        let request = self
            .request(Method::PUT, &["v1", "channels", channel, "kv", key], scope)
            .json(&body);
        self.call(request).await
    }

    /// Deletes a key of a channel's storage (compare-and-delete with `version`).
    pub async fn kv_delete(
        &self,
        channel: &str,
        key: &str,
        version: Option<u64>,
        scope: Scope,
    ) -> Result<()> {
        let mut request = self.request(
            Method::DELETE,
            &["v1", "channels", channel, "kv", key],
            scope,
        );
        if let Some(version) = version {
            request = request.query(&[("version", version)]);
        }
        check(self.send(request).await?).await.map(drop)
    }

    /// Lists a channel's storage in key order.
    pub async fn kv_list(&self, channel: &str, query: &KvList, scope: Scope) -> Result<KvPage> {
        let request = self
            .request(Method::GET, &["v1", "channels", channel, "kv"], scope)
            .query(query);
        self.call(request).await
    }

    /// Completes a team channel: its agents are kicked with `channel_completed`, and the
    /// channel, its messages and its storage are purged.
    pub async fn complete_channel(&self, channel: &str, scope: Scope) -> Result<()> {
        let request = self.request(
            Method::POST,
            &["v1", "channels", channel, "complete"],
            scope,
        );
        check(self.send(request).await?).await.map(drop)
    }

    /// Leases up to `receive.max` messages of `agent`'s inbox in `channel` (for backends that
    /// poll): each must be acknowledged or rejected within the visibility timeout, else it
    /// is delivered again.
    pub async fn inbox_receive(
        &self,
        channel: &str,
        agent: &str,
        receive: &switchboard_protocol::inbox::Receive,
        scope: Scope,
    ) -> Result<Vec<switchboard_protocol::InboxMessage>> {
        let request = self
            .request(
                Method::POST,
                &["v1", "channels", channel, "inbox", agent, "receive"],
                scope,
            )
            .json(receive);
        let received: switchboard_protocol::inbox::Received = self.call(request).await?;
        Ok(received.messages)
    }

    /// Acknowledges a message of `agent`'s inbox.
    pub async fn inbox_ack(
        &self,
        channel: &str,
        agent: &str,
        id: &str,
        scope: Scope,
    ) -> Result<()> {
        let request = self
            .request(
                Method::POST,
                &["v1", "channels", channel, "inbox", agent, "ack"],
                scope,
            )
            .json(&switchboard_protocol::Ack { id: id.to_owned() });
        check(self.send(request).await?).await.map(drop)
    }

    /// Rejects a message of `agent`'s inbox.
    pub async fn inbox_reject(
        &self,
        channel: &str,
        agent: &str,
        reject: &switchboard_protocol::Reject,
        scope: Scope,
    ) -> Result<()> {
        let request = self
            .request(
                Method::POST,
                &["v1", "channels", channel, "inbox", agent, "reject"],
                scope,
            )
            .json(reject);
        check(self.send(request).await?).await.map(drop)
    }

    /// A page of the channel's dead letters sent by this tenant's agents, oldest first.
    pub async fn dead_letters(
        &self,
        channel: &str,
        query: &switchboard_protocol::inbox::DeadLetterQuery,
        scope: Scope,
    ) -> Result<switchboard_protocol::DeadLetterPage> {
        let request = self
            .request(
                Method::GET,
                &["v1", "channels", channel, "dead_letters"],
                scope,
            )
            .query(query);
        self.call(request).await
    }

    /// Deletes one of this tenant's dead letters.
    pub async fn delete_dead_letter(&self, channel: &str, id: &str, scope: Scope) -> Result<()> {
        let request = self.request(
            Method::DELETE,
            &["v1", "channels", channel, "dead_letters", id],
            scope,
        );
        check(self.send(request).await?).await.map(drop)
    }

    /// Announces agent `name` (for backends that act as agents over HTTP).
    pub async fn announce_agent(
        &self,
        name: &str,
        announce: &switchboard_protocol::discovery::Announce,
    ) -> Result<switchboard_protocol::discovery::AgentCard> {
        let request = self
            .request(Method::PUT, &["v1", "agents", name], Scope::Private)
            .json(announce);
        self.call(request).await
    }

    /// Replaces announced agent `name`'s metadata.
    pub async fn update_agent_metadata(
        &self,
        name: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<switchboard_protocol::discovery::AgentCard> {
        let body = switchboard_protocol::discovery::UpdateMetadata { metadata };
        let request = self
            .request(Method::PATCH, &["v1", "agents", name], Scope::Private)
            .json(&body);
        self.call(request).await
    }

    /// Agent `name`'s card.
    pub async fn agent(&self, name: &str) -> Result<switchboard_protocol::discovery::AgentCard> {
        let request = self.request(Method::GET, &["v1", "agents", name], Scope::Private);
        self.call(request).await
    }

    /// Removes agent `name`'s card from the directory.
    pub async fn remove_agent(&self, name: &str) -> Result<()> {
        let request = self.request(Method::DELETE, &["v1", "agents", name], Scope::Private);
        check(self.send(request).await?).await.map(drop)
    }

    /// Finds the tenant's agents.
    pub async fn discover(
        &self,
        query: &switchboard_protocol::discovery::Discover,
    ) -> Result<Vec<switchboard_protocol::discovery::AgentCard>> {
        let request = self
            .request(Method::POST, &["v1", "agents", "discover"], Scope::Private)
            .json(query);
        let found: switchboard_protocol::discovery::Discovered = self.call(request).await?;
        Ok(found.agents)
    }

    /// Registers a webhook (original keys only); the reply holds its signing secret, shown
    /// only here.
    pub async fn create_webhook(
        &self,
        create: &switchboard_protocol::webhooks::CreateWebhook,
    ) -> Result<switchboard_protocol::webhooks::CreatedWebhook> {
        let request = self
            .request(Method::POST, &["v1", "webhooks"], Scope::Private)
            .json(create);
        self.call(request).await
    }

    /// This tenant's webhooks.
    pub async fn webhooks(&self) -> Result<Vec<switchboard_protocol::webhooks::Webhook>> {
        let request = self.request(Method::GET, &["v1", "webhooks"], Scope::Private);
        self.call(request).await
    }

    /// Deletes a webhook (its pending retries are dropped).
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let request = self.request(Method::DELETE, &["v1", "webhooks", id], Scope::Private);
        check(self.send(request).await?).await.map(drop)
    }

    /// A webhook's newest `limit` delivery attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        id: &str,
        limit: u32,
    ) -> Result<switchboard_protocol::webhooks::DeliveryLog> {
        let request = self
            .request(
                Method::GET,
                &["v1", "webhooks", id, "deliveries"],
                Scope::Private,
            )
            .query(&[("limit", limit)]);
        self.call(request).await
    }

    /// Checks that the server answers `/healthz`.
    pub async fn health(&self) -> Result<()> {
        let request = self.request(Method::GET, &["healthz"], Scope::Private);
        let response = self.send(request).await?;
        check(response).await.map(drop)
    }

    fn request(&self, method: Method, segments: &[&str], scope: Scope) -> RequestBuilder {
        let url = endpoint(&self.base, segments, scope);
        let mut request = self.http.request(method, url).bearer_auth(&self.api_key);
        if let Some(password) = &self.channel_password {
            request = request.header(PASSWORD_HEADER, password);
        }
        request
    }

    async fn send(&self, request: RequestBuilder) -> Result<reqwest::Response> {
        request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "HTTP request timed out"
            } else {
                "HTTP request failed"
            };
            Error::Connection(format!("{what}: {}", with_causes(&e)))
        })
    }

    async fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = check(self.send(request).await?).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Error::Connection(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Protocol(format!("HTTP response: {e}")))
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message leaves the cause out).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `base/segments…`, with `?scope=public` for public channels; segments are percent-encoded.
fn endpoint(base: &Url, segments: &[&str], scope: Scope) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if scope == Scope::Public {
        url.query_pairs_mut().append_pair("scope", "public");
    }
    url
}

/// Turns a non-success response into an error: the server's `{code, message}` when it sent one.
async fn check(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.bytes().await.unwrap_or_default();
    Err(error_from_body(status.as_u16(), &body))
}

fn error_from_body(status: u16, body: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorReply>(body) {
        Ok(reply) => Error::Server(reply),
        Err(_) => {
            let mut text = String::from_utf8_lossy(body).into_owned();
            if text.len() > MAX_ERROR_BODY {
                let mut cut = MAX_ERROR_BODY;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            Error::Http { status, body: text }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ErrorCode;

    #[test]
    fn endpoints() {
        let base = http_base_url("ws://127.0.0.1:7400").unwrap();
        assert_eq!(
            endpoint(&base, &["v1", "channels", "room"], Scope::Private).as_str(),
            "http://127.0.0.1:7400/v1/channels/room"
        );
        assert_eq!(
            endpoint(
                &base,
                &["v1", "channels", "a b/c", "messages"],
                Scope::Public
            )
            .as_str(),
            "http://127.0.0.1:7400/v1/channels/a%20b%2Fc/messages?scope=public"
        );
        let base = http_base_url("wss://example.com/sb/").unwrap();
        assert_eq!(
            endpoint(&base, &["healthz"], Scope::Private).as_str(),
            "https://example.com/sb/healthz"
        );
    }

    #[test]
    fn error_bodies() {
        let e = error_from_body(403, br#"{"code":"bad_password","message":"wrong"}"#);
        assert_eq!(e.code(), Some(ErrorCode::BadPassword));
        let e = error_from_body(502, "é".repeat(400).as_bytes());
        match e {
            Error::Http { status, body } => {
                assert_eq!(status, 502);
                assert!(body.len() <= MAX_ERROR_BODY);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn publish_body_and_query() {
        let q = HistoryQuery {
            from_offset: Some(3),
            kind: Some("chat".into()),
            direction: switchboard_protocol::history::Direction::Backward,
            ..HistoryQuery::default()
        };
        let url = reqwest::Client::new()
            .get("http://h/x")
            .query(&q)
            .build()
            .unwrap()
            .url()
            .clone();
        assert_eq!(
            url.query(),
            Some("from_offset=3&type=chat&direction=backward")
        );
    }
}
