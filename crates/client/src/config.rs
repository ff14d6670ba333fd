//! Client configuration and the URLs derived from it.

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use reqwest::Url;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use switchboard_protocol::limits::DEFAULT_MAX_FRAME_BYTES;

/// The socket path below the server URL.
const SOCKET_PATH: &str = "socket/websocket";
/// The serializer version this SDK speaks.
const VSN: &str = "2.0.0";

/// How to reach a server and how to behave on a flaky network.
///
/// Build it with [`ClientConfig::new`] and the `with_*` methods, or as a struct literal with
/// `..ClientConfig::default()`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server URL, `ws://host:port` or `wss://host:port` (an `http(s)://` URL works too).
    pub url: String,
    /// The API key: an original key (`sk_…`) or a temporary one (`tk_…`).
    pub api_key: String,
    /// Where a fresh key comes from when the current one expires or is refused (see
    /// [`ClientConfig::with_key_refresh`]); `None` keeps the key for the client's lifetime.
    pub key_refresh: Option<KeyRefresh>,
    /// How often to send a heartbeat; a connection silent for two intervals is dropped.
    pub heartbeat_interval: Duration,
    /// How long a request (connect, join, publish, history, presence) waits for its reply.
    pub request_timeout: Duration,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
    /// Reconnect and resume after the connection drops (default true).
    pub reconnect: bool,
    /// Largest frame this client sends; larger publishes fail locally with
    /// [`Error::FrameTooLarge`] instead of making the server close the connection.
    pub max_frame_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: "ws://127.0.0.1:7400".to_owned(),
            api_key: String::new(),
            key_refresh: None,
            heartbeat_interval: Duration::from_secs(20),
            request_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            reconnect: true,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

impl ClientConfig {
    /// A configuration for `url` and `api_key` with every other setting at its default.
    pub fn new(url: impl Into<String>, api_key: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            api_key: api_key.into(),
            ..ClientConfig::default()
        }
    }

    /// Sets the heartbeat interval.
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// Sets the request timeout.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the reconnect backoff.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Turns automatic reconnection on or off.
    pub fn with_reconnect(mut self, reconnect: bool) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Fetches a fresh API key with `refresh` (typically from the application's backend, which
    /// mints temporary keys with [`HttpClient::mint_temporary_key`](crate::HttpClient::mint_temporary_key)).
    ///
    /// The client calls it when the server warns that the connection's temporary key is about
    /// to expire (`key_expiring`) and swaps the fresh key in over the live socket, without
    /// reconnecting; and once before reconnecting after the server closed the connection for
    /// its key (4500 `invalid_key`, 4503 `key_revoked`, 4504 `key_expired`). A refresh that
    /// fails is retried with the reconnect backoff.
    pub fn with_key_refresh<F, Fut, E>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        self.key_refresh = Some(KeyRefresh::new(refresh));
        self
    }

    /// Sets the largest frame this client sends.
    pub fn with_max_frame_bytes(mut self, max: usize) -> Self {
        self.max_frame_bytes = max;
        self
    }

    /// The WebSocket URL: `{url}/socket/websocket?vsn=2.0.0&api_key=…`.
    pub fn socket_url(&self) -> Result<Url> {
        socket_url(&self.url, &self.api_key)
    }

    /// The HTTP API base URL: the server URL with `ws` → `http` and `wss` → `https`.
    pub fn http_base_url(&self) -> Result<Url> {
        http_base_url(&self.url)
    }
}

/// A fallible future of a fresh key, as [`KeyRefresh`] returns it.
pub type KeyFuture =
    Pin<Box<dyn Future<Output = Result<String, Box<dyn std::error::Error + Send + Sync>>> + Send>>;

/// A callback that returns a fresh API key; cheap to clone.
#[derive(Clone)]
pub struct KeyRefresh(Arc<dyn Fn() -> KeyFuture + Send + Sync>);

impl KeyRefresh {
    /// Wraps an async function returning a key.
    pub fn new<F, Fut, E>(refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        KeyRefresh(Arc::new(move || {
            let fetch = refresh();
            Box::pin(async move { fetch.await.map_err(Into::into) })
        }))
    }

    /// Asks for a fresh key.
    pub fn fetch(&self) -> KeyFuture {
        (self.0)()
    }
}

impl fmt::Debug for KeyRefresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyRefresh(..)")
    }
}

fn parse(url: &str) -> Result<Url> {
    let parsed = Url::parse(url).map_err(|e| bad_url(url, e.to_string()))?;
    if parsed.host_str().is_none() {
        return Err(bad_url(url, "no host"));
    }
    Ok(parsed)
}

fn bad_url(url: &str, reason: impl Into<String>) -> Error {
    Error::Url {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Swaps the scheme for its WebSocket (`ws`) or HTTP (`http`) counterpart.
fn with_scheme(url: &str, mut parsed: Url, websocket: bool) -> Result<Url> {
    let scheme = match (parsed.scheme(), websocket) {
        ("ws" | "http", true) => "ws",
        ("wss" | "https", true) => "wss",
        ("ws" | "http", false) => "http",
        ("wss" | "https", false) => "https",
        (other, _) => {
            return Err(bad_url(
                url,
                format!("scheme `{other}` is not ws, wss, http or https"),
            ));
        }
    };
    // Switching between these "special" schemes always succeeds.
    let _ = parsed.set_scheme(scheme);
    Ok(parsed)
}

/// The base path without the socket path and without a trailing slash.
fn base_path(parsed: &Url) -> String {
    let path = parsed.path().trim_end_matches('/');
    path.strip_suffix(SOCKET_PATH)
        .unwrap_or(path)
        .trim_end_matches('/')
        .to_owned()
}

/// Derives the socket URL from a server URL and an API key.
pub(crate) fn socket_url(url: &str, api_key: &str) -> Result<Url> {
    let mut parsed = with_scheme(url, parse(url)?, true)?;
    let path = format!("{}/{SOCKET_PATH}", base_path(&parsed));
    parsed.set_path(&path);
    parsed.set_fragment(None);
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "vsn" && k != "api_key")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &kept {
            query.append_pair(k, v);
        }
        query.append_pair("vsn", VSN);
        if !api_key.is_empty() {
            query.append_pair("api_key", api_key);
        }
    }
    Ok(parsed)
}

/// Derives the HTTP API base URL (no trailing slash) from a server URL.
pub(crate) fn http_base_url(url: &str) -> Result<Url> {
    let mut parsed = with_scheme(url, parse(url)?, false)?;
    let path = base_path(&parsed);
    parsed.set_path(&path);
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls() {
        let u = socket_url("ws://127.0.0.1:7400", "sk_a b").unwrap();
        assert_eq!(
            u.as_str(),
            "ws://127.0.0.1:7400/socket/websocket?vsn=2.0.0&api_key=sk_a+b"
        );
        let u = socket_url("https://example.com/sb/", "k").unwrap();
        assert_eq!(
            u.as_str(),
            "wss://example.com/sb/socket/websocket?vsn=2.0.0&api_key=k"
        );
        let u = socket_url("ws://h/socket/websocket?vsn=1&x=y&api_key=old", "new").unwrap();
        assert_eq!(
            u.as_str(),
            "ws://h/socket/websocket?x=y&vsn=2.0.0&api_key=new"
        );
        let u = socket_url("ws://h:1", "").unwrap();
        assert_eq!(u.as_str(), "ws://h:1/socket/websocket?vsn=2.0.0");
    }

    #[test]
    fn http_urls() {
        let base = |u| http_base_url(u).unwrap().to_string();
        assert_eq!(base("ws://127.0.0.1:7400"), "http://127.0.0.1:7400/");
        assert_eq!(base("wss://example.com/sb/"), "https://example.com/sb");
        assert_eq!(
            base("wss://example.com/socket/websocket?vsn=2.0.0"),
            "https://example.com/"
        );
        assert_eq!(base("http://h:8080"), "http://h:8080/");
    }

    #[test]
    fn bad_urls() {
        for url in ["", "127.0.0.1:7400", "ftp://h", "ws://", "mailto:x@y"] {
            assert!(
                matches!(socket_url(url, "k"), Err(Error::Url { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn defaults() {
        let c = ClientConfig::new("ws://h", "k");
        assert_eq!(c.heartbeat_interval, Duration::from_secs(20));
        assert_eq!(c.request_timeout, Duration::from_secs(10));
        assert_eq!(c.backoff, Backoff::default());
        assert!(c.reconnect);
    }
}
