//! The browser SDK and the examples, embedded in the binary and served as static files.
//!
//! A page can use Switchboard with one `<script src="/sdk/switchboard.js">`, and
//! `switchboard serve` alone shows the examples under `/examples/`: no web server beside it, no
//! files to deploy. The files are committed in `sdks/js` (the bundle is rebuilt there with
//! `npm run build`, and its tests fail when the committed bundle is stale) and compiled in with
//! `include_bytes!`. URLs are not versioned, so responses carry a strong `ETag` and
//! `Cache-Control: no-cache`: browsers revalidate each time and get a body-less 304 while the
//! binary is the same.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One embedded file.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    /// A hash of the body, computed at compile time.
    hash: u64,
}

macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        Asset {
            path: $path,
            body: include_bytes!(concat!("../../../../sdks/js/", $file)),
            content_type: $content_type,
            hash: fnv1a(include_bytes!(concat!("../../../../sdks/js/", $file))),
        }
    };
}

/// Every embedded file.
const ASSETS: &[Asset] = &[
    asset!("/sdk/switchboard.js", "bundle/switchboard.js", JS),
    asset!("/examples/", "examples/index.html", HTML),
    asset!("/examples/chat/", "examples/chat/index.html", HTML),
    asset!("/examples/chat/chat.js", "examples/chat/chat.js", JS),
    asset!("/examples/chat/chat.css", "examples/chat/chat.css", CSS),
    asset!("/examples/call/", "examples/call/index.html", HTML),
    asset!("/examples/call/call.js", "examples/call/call.js", JS),
    asset!("/examples/call/call.css", "examples/call/call.css", CSS),
    asset!("/examples/game/", "examples/game/index.html", HTML),
    asset!("/examples/game/game.js", "examples/game/game.js", JS),
    asset!("/examples/game/game.css", "examples/game/game.css", CSS),
];

/// Directory paths without their trailing slash, redirected so relative links resolve.
const DIRECTORIES: &[&str] = &[
    "/examples",
    "/examples/chat",
    "/examples/call",
    "/examples/game",
];

/// 64-bit FNV-1a: enough to tell two builds' files apart, and cheap in a `const fn`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The routes of the embedded files.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new();
    for asset in ASSETS {
        router = router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        );
    }
    for dir in DIRECTORIES {
        let target = format!("{dir}/");
        router = router.route(
            dir,
            get(move || async move { Redirect::permanent(&target) }),
        );
    }
    router
}

/// The file, or 304 when the client's copy is current.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header value");
    let cached = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let headers = [
        (header::ETAG, etag_value),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one HTTP/1.1 request to the routes on a real socket; returns the raw response.
    async fn fetch(request_head: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, routes::<()>()).await.unwrap();
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{request_head}Host: test\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        server.abort();
        String::from_utf8(response).unwrap()
    }

    fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let head = response.split("\r\n\r\n").next()?;
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    #[tokio::test]
    async fn serves_the_bundle_with_type_and_cache_headers() {
        let response = fetch("GET /sdk/switchboard.js HTTP/1.1\r\n").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response:.200}");
        assert_eq!(header_of(&response, "content-type"), Some(JS));
        assert_eq!(header_of(&response, "cache-control"), Some("no-cache"));
        assert_eq!(
            header_of(&response, "x-content-type-options"),
            Some("nosniff")
        );
        let body = response.split_once("\r\n\r\n").unwrap().1;
        assert!(
            body.contains("var Switchboard"),
            "the IIFE defines window.Switchboard"
        );
        assert!(body.contains("AgentConnection"));

        let etag = header_of(&response, "etag").unwrap().to_owned();
        assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
        let again = fetch(&format!(
            "GET /sdk/switchboard.js HTTP/1.1\r\nIf-None-Match: {etag}\r\n"
        ))
        .await;
        assert!(again.starts_with("HTTP/1.1 304"), "{again:.200}");
        assert_eq!(header_of(&again, "etag"), Some(etag.as_str()));
        assert_eq!(again.split_once("\r\n\r\n").unwrap().1, "");
        let stale =
            fetch("GET /sdk/switchboard.js HTTP/1.1\r\nIf-None-Match: \"0000000000000000\"\r\n")
                .await;
        assert!(stale.starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn serves_the_examples() {
        for (path, content_type, needle) in [
            ("/examples/", HTML, "chat/"),
            ("/examples/chat/", HTML, "/sdk/switchboard.js"),
            ("/examples/chat/chat.js", JS, "AgentConnection"),
            ("/examples/chat/chat.css", CSS, "#presence"),
            ("/examples/call/", HTML, "/sdk/switchboard.js"),
            ("/examples/call/call.js", JS, "WebRtcHelper"),
            ("/examples/call/call.css", CSS, ".videos"),
            ("/examples/game/", HTML, "/sdk/switchboard.js"),
            ("/examples/game/game.js", JS, "storageEvents"),
            ("/examples/game/game.css", CSS, "#rink"),
        ] {
            let response = fetch(&format!("GET {path} HTTP/1.1\r\n")).await;
            assert!(
                response.starts_with("HTTP/1.1 200"),
                "{path}: {response:.200}"
            );
            assert_eq!(
                header_of(&response, "content-type"),
                Some(content_type),
                "{path}"
            );
            assert!(response.contains(needle), "{path} contains {needle}");
        }
        let redirect = fetch("GET /examples/chat HTTP/1.1\r\n").await;
        assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect:.200}");
        assert_eq!(header_of(&redirect, "location"), Some("/examples/chat/"));
        let redirect = fetch("GET /examples/call HTTP/1.1\r\n").await;
        assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect:.200}");
        assert_eq!(header_of(&redirect, "location"), Some("/examples/call/"));
        let redirect = fetch("GET /examples/game HTTP/1.1\r\n").await;
        assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect:.200}");
        assert_eq!(header_of(&redirect, "location"), Some("/examples/game/"));
    }

    #[test]
    fn etags_differ_per_file() {
        let mut hashes: Vec<u64> = ASSETS.iter().map(|a| a.hash).collect();
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), ASSETS.len());
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
    }
}
