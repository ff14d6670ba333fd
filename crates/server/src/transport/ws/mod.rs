//! The WebSocket endpoint `/socket/websocket`, speaking the Phoenix Channels V2 serializer.
//!
//! The server does its own RFC 6455 framing on the raw TCP stream
//! ([`switchboard_protocol::websocket`]): a message is framed once and the same bytes go to
//! every subscriber, the writer hands whole batches to the kernel in one vectored write, and
//! an idle connection holds no read buffer at all.
//!
//! Each connection is two tasks: the reader, which decodes frames and acts on them
//! ([`session`]), and the writer, which drains the connection's bounded queue to the socket.
//! Everything the server sends (replies, messages, presence) goes through that one queue, so
//! frames for a topic are never reordered.

mod session;

pub use session::{refuse_system_channel, validate_publish};

use crate::App;
use crate::connection::{ConnHandle, Outbound, Task, socket_error, text_frame};
use crate::error::err;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use session::Session;
use sha1::{Digest, Sha1};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;
use switchboard_protocol::websocket::{ACCEPT_GUID, DecodeError, Decoder, Incoming, WsFrame};
use switchboard_protocol::{CloseCode, ErrorCode, Millis};
use tokio::io::{AsyncWrite as _, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Connect parameters in the upgrade URL.
#[derive(Deserialize)]
pub struct ConnectParams {
    vsn: Option<String>,
    api_key: Option<String>,
}

/// Frames one vectored write hands to the kernel at most.
const MAX_IOVECS: usize = 64;
/// Bytes the writer gathers from the queue before writing.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// What a read asks the kernel for at least.
const READ_CHUNK: usize = 4 * 1024;

/// Decrements the connection count when the connection (or a failed upgrade) ends.
struct Counted(Arc<App>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /socket/websocket`: checks the handshake and the limits, then upgrades.
pub async fn upgrade(
    State(app): State<Arc<App>>,
    Query(params): Query<ConnectParams>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let accept = match handshake(request.headers()) {
        Ok(accept) => accept,
        Err(bad) => return bad.into_response(),
    };
    if let Err(e) = check_origin(&app.config.server.allowed_origins, request.headers()) {
        return e.into_response();
    }
    // A connection without a key in the URL counts against its address until it authenticates.
    let unauthenticated = match params.api_key {
        Some(_) => None,
        None => match app.rate_limits.unauthenticated(peer.ip()) {
            Ok(guard) => Some(guard),
            Err(e) => return e.into_response(),
        },
    };
    if params.vsn.as_deref().is_some_and(|v| !v.starts_with("2.")) {
        return err!(
            InvalidPayload,
            "only the Phoenix V2 serializer is spoken: connect with vsn=2.0.0"
        )
        .into_response();
    }
    if *app.shutdown.borrow() {
        return err!(
            ServerShutdown,
            "the server is shutting down; connect to another node or retry"
        )
        .into_response();
    }
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return err!(
            InvalidPayload,
            "this connection cannot be upgraded; use HTTP/1.1"
        )
        .into_response();
    };
    let max = app.config.limits.max_connections;
    if app.connections.fetch_add(1, Ordering::Relaxed) >= max {
        app.connections.fetch_sub(1, Ordering::Relaxed);
        return err!(
            TooManyConnections,
            "the server holds its maximum of {max} connections; retry later"
        )
        .into_response();
    }
    let counted = Counted(app);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => return tracing::debug!(error = %e, "upgrade failed"),
        };
        // The listener hands hyper plain TCP streams: take the stream back, with any bytes
        // hyper read past the request.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let buf = BytesMut::from(parts.read_buf);
                let stream = parts.io.into_inner();
                let who = Peer {
                    ip: peer.ip(),
                    unauthenticated,
                };
                run(counted, who, stream, buf, params.api_key).await;
            }
            Err(_) => tracing::error!("upgraded connection is not a TCP stream"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::CONNECTION, HeaderValue::from_static("upgrade")),
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}

/// Refuses a browser whose `Origin` is not in `allowed_origins` (an empty list allows any;
/// clients that send no `Origin` are not browsers and pass).
fn check_origin(allowed: &[String], headers: &HeaderMap) -> crate::error::Result<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    if allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a == "*" || a.as_bytes() == origin.as_bytes())
    {
        return Ok(());
    }
    Err(err!(
        Forbidden,
        "this origin may not open WebSockets here (server.allowed_origins)"
    ))
}

/// Why an opening handshake is refused.
enum BadHandshake {
    NotAnUpgrade,
    Version,
    NoKey,
}

impl IntoResponse for BadHandshake {
    fn into_response(self) -> Response {
        let (error, header) = match self {
            BadHandshake::NotAnUpgrade => (
                err!(
                    InvalidPayload,
                    "this endpoint speaks WebSocket: send an Upgrade: websocket request"
                ),
                Some((header::UPGRADE, "websocket")),
            ),
            BadHandshake::Version => (
                err!(InvalidPayload, "only WebSocket version 13 is spoken"),
                Some((header::SEC_WEBSOCKET_VERSION, "13")),
            ),
            BadHandshake::NoKey => (err!(InvalidPayload, "Sec-WebSocket-Key is missing"), None),
        };
        let mut response = error.into_response();
        if let Some((name, value)) = header {
            *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// Checks an RFC 6455 opening handshake; returns the `Sec-WebSocket-Accept` value.
fn handshake(headers: &HeaderMap) -> Result<HeaderValue, BadHandshake> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(BadHandshake::NotAnUpgrade);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(BadHandshake::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| !k.is_empty())
        .ok_or(BadHandshake::NoKey)?;
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(ACCEPT_GUID);
    let accept = base64::engine::general_purpose::STANDARD.encode(sha1.finalize());
    Ok(HeaderValue::from_str(&accept).expect("base64 is a valid header value"))
}

/// Where a connection comes from, and its place in the unauthenticated count until it
/// authenticates.
pub(super) struct Peer {
    pub(super) ip: IpAddr,
    pub(super) unauthenticated: Option<crate::rate_limit::Unauthenticated>,
}

async fn run(
    counted: Counted,
    peer: Peer,
    stream: TcpStream,
    buf: BytesMut,
    api_key: Option<String>,
) {
    let app = counted.0.clone();
    app.metrics.connections.inc();
    let (conn, rx) = ConnHandle::new(
        app.next_conn_id(),
        app.config.limits.outbound_queue,
        app.metrics.clone(),
    );
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(write_loop(wr, rx, conn.clone(), app.clone()));
    let mut session = Session::new(app.clone(), conn.clone(), peer);
    if let Some(key) = api_key {
        session.authenticate_with(&key);
    }
    read_loop(&mut session, rd, buf).await;
    session.leave_all();
    conn.close(1000, "");
    let _ = writer.await;
    app.metrics.connections.dec();
    drop(counted);
}

/// Reads, decodes and dispatches frames until the connection ends.
async fn read_loop(session: &mut Session, rd: OwnedReadHalf, mut buf: BytesMut) {
    let app = session.app.clone();
    let conn = session.conn.clone();
    let limits = &app.config.limits;
    let heartbeat = Duration::from_millis(limits.heartbeat_timeout_ms);
    let deadline = tokio::time::sleep(if session.authenticated() {
        heartbeat
    } else {
        Duration::from_millis(limits.auth_timeout_ms)
    });
    tokio::pin!(deadline);
    let mut shutdown = app.shutdown.clone();
    let mut decoder = Decoder::new(limits.max_frame_bytes);
    let mut key_clock = KeyClock::new(session.key_expires_at());
    // Only temporary keys have a clock; the timer lives on the heap so that the many
    // connections with original keys do not carry one.
    let mut key_timer = key_clock.timer();
    loop {
        loop {
            let incoming = match decoder.decode(&mut buf) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => break,
                Err(DecodeError::TooLarge { .. }) => {
                    conn.push(socket_error(
                        ErrorCode::FrameTooLarge,
                        "frame exceeds max_frame_bytes",
                    ));
                    conn.close(CloseCode::FrameTooLarge.code(), "frame_too_large");
                    return;
                }
                Err(DecodeError::Protocol(why)) => {
                    conn.close(1002, why);
                    return;
                }
            };
            let was_authed = session.authenticated();
            match incoming {
                Incoming::Text(text) => {
                    app.metrics.bytes_in.inc_by(text.len() as u64);
                    match std::str::from_utf8(&text) {
                        Ok(text) => session.on_text(text).await,
                        Err(_) => {
                            conn.close(1007, "text frames must be UTF-8");
                            return;
                        }
                    }
                }
                Incoming::Binary(bytes) => {
                    app.metrics.bytes_in.inc_by(bytes.len() as u64);
                    session.on_binary(&bytes).await;
                }
                Incoming::Ping(payload) => {
                    conn.push(WsFrame::pong(&payload));
                }
                Incoming::Pong => {}
                Incoming::Close(_) => return,
            }
            // Any frame is a sign of life; before authentication only `auth` resets the clock.
            if was_authed || session.authenticated() {
                deadline
                    .as_mut()
                    .reset(tokio::time::Instant::now() + heartbeat);
            }
            // A refreshed (or first) temporary key moves the expiry.
            if session.key_expires_at() != key_clock.expires_at {
                key_clock = KeyClock::new(session.key_expires_at());
                key_timer = key_clock.timer();
            }
        }
        if buf.is_empty() {
            // An idle connection keeps no read buffer (payloads still in use keep theirs).
            buf = BytesMut::new();
        }
        tokio::select! {
            biased;
            _ = std::future::poll_fn(|cx| conn.poll_closing(Task::Reader, cx)) => return,
            _ = crate::shutting_down(&mut shutdown) => {
                conn.close(CloseCode::GoingAway.code(), "server_shutdown: reconnect and resume by offset");
                return;
            }
            ready = rd.readable() => {
                if ready.is_err() {
                    return;
                }
                buf.reserve(decoder.need().saturating_sub(buf.len()).max(READ_CHUNK));
                match rd.try_read_buf(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
            _ = std::future::poll_fn(|cx| match &mut key_timer {
                Some(timer) => timer.as_mut().poll(cx),
                None => Poll::Pending,
            }) => {
                if key_clock.warned {
                    conn.push(socket_error(
                        ErrorCode::KeyExpired,
                        "the temporary key expired; connect again with a fresh key",
                    ));
                    conn.close(CloseCode::KeyExpired.code(), "key_expired");
                    return;
                }
                key_clock.warned = true;
                let expiring = serde_json::json!({ "expires_at": key_clock.expires_at });
                conn.push(text_frame(
                    None,
                    None,
                    switchboard_protocol::PHOENIX_TOPIC,
                    switchboard_protocol::events::KEY_EXPIRING,
                    &expiring.to_string(),
                ));
                key_timer = key_clock.timer();
            }
            _ = &mut deadline => {
                if session.authenticated() {
                    conn.close(CloseCode::HeartbeatTimeout.code(), "heartbeat_timeout");
                } else {
                    conn.push(socket_error(ErrorCode::AuthTimeout, "authenticate with api_key in the URL or an auth event"));
                    conn.close(CloseCode::AuthTimeout.code(), "auth_timeout");
                }
                return;
            }
        }
    }
}

/// A temporary key's two moments on a connection: a `key_expiring` warning a little before
/// expiry (a tenth of the remaining lifetime, 1 to 30 seconds), then the close.
struct KeyClock {
    expires_at: Option<Millis>,
    warn_at: Millis,
    warned: bool,
}

impl KeyClock {
    fn new(expires_at: Option<Millis>) -> KeyClock {
        let now = crate::now_ms();
        let lead = expires_at.map_or(0, |e| ((e - now) / 10).clamp(1_000, 30_000));
        KeyClock {
            expires_at,
            warn_at: expires_at.map_or(Millis::MAX, |e| e - lead),
            warned: false,
        }
    }

    /// The timer for the next moment (none for original keys).
    fn timer(&self) -> Option<Pin<Box<tokio::time::Sleep>>> {
        let expires_at = self.expires_at?;
        let at = if self.warned {
            expires_at
        } else {
            self.warn_at
        };
        let wait = (at - crate::now_ms()).max(0) as u64;
        // The close comes a moment after the expiry, so a refresh racing it still wins.
        let slack = if self.warned { 1 } else { 0 };
        Some(Box::pin(tokio::time::sleep(Duration::from_millis(
            wait + slack,
        ))))
    }
}

/// Frames waiting for the socket, with partial writes accounted for.
#[derive(Default)]
struct Pending {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, out: Outbound) {
        match out {
            Outbound::Frame(frame) => self.push_frame(frame),
            Outbound::Batch(frames) => frames.into_iter().for_each(|f| self.push_frame(f)),
        }
    }

    fn push_frame(&mut self, frame: WsFrame) {
        self.bytes += frame.len();
        self.frames.push_back(frame.into_bytes());
    }

    /// Writes everything, many frames per system call; returns the bytes written.
    async fn write_to(&mut self, wr: &mut OwnedWriteHalf) -> io::Result<u64> {
        let total = self.bytes as u64;
        while !self.frames.is_empty() {
            // The slices live only inside the poll, so an idle writer's future stays small.
            let written = std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let n = slices
                    .iter_mut()
                    .zip(&self.frames)
                    .map(|(slice, frame)| *slice = IoSlice::new(frame))
                    .count();
                Pin::new(&mut *wr).poll_write_vectored(cx, &slices[..n])
            })
            .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        Ok(total)
    }

    fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let front = self.frames.front_mut().expect("written bytes were queued");
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.frames.pop_front();
        }
    }
}

/// Drains the connection's queue to the socket, then writes the close frame.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outbound>,
    conn: Arc<ConnHandle>,
    app: Arc<App>,
) {
    let mut pending = Pending::default();
    loop {
        let next = std::future::poll_fn(|cx| match conn.poll_closing(Task::Writer, cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => rx.poll_recv(cx),
        });
        let Some(out) = next.await else { break };
        pending.push(out);
        while pending.bytes < MAX_BATCH_BYTES {
            let Ok(more) = rx.try_recv() else { break };
            pending.push(more);
        }
        let write = pending.write_to(&mut wr);
        // A peer that stopped reading can block a write forever. On a close request, the write
        // in progress gets a moment to finish, so the close frame after it stays readable;
        // a peer that still reads nothing is dropped without one.
        tokio::pin!(write);
        let written = std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(written) => Poll::Ready(Some(written)),
            Poll::Pending => conn.poll_closing(Task::Writer, cx).map(|()| None),
        })
        .await;
        let Some(written) = written else {
            match tokio::time::timeout(Duration::from_secs(1), &mut write).await {
                Ok(Ok(bytes)) => {
                    app.metrics.bytes_out.inc_by(bytes);
                    break;
                }
                _ => return,
            }
        };
        match written {
            Ok(bytes) => {
                app.metrics.bytes_out.inc_by(bytes);
            }
            Err(_) => {
                conn.close(1006, "write failed");
                return;
            }
        }
    }
    let (code, reason) = conn
        .close_requested()
        .cloned()
        .unwrap_or((1000, String::new()));
    if code != CloseCode::SlowConsumer.code() {
        // Deliver what was queued before the close (e.g. the error that explains it).
        while let Ok(out) = rx.try_recv() {
            pending.push(out);
        }
    }
    pending.push_frame(WsFrame::close(code, &reason));
    let flush = async {
        pending.write_to(&mut wr).await?;
        wr.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
}
