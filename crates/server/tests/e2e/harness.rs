//! Test harness: a real server on port 0 in a temp dir, and a raw Phoenix-frame client.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use switchboard_protocol::{Frame, Payload};
use switchboard_server::{Config, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    server: Option<Server>,
    pub config: Config,
    _dir: tempfile::TempDir,
    pub key: String,
    pub admin_key: String,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.data_dir = dir.path().to_owned();
        adjust(&mut config);
        let server = Server::start(config.clone()).await.unwrap();
        let key = server
            .bootstrap_key
            .clone()
            .expect("first start creates a key");
        let admin_key = server
            .admin_key
            .clone()
            .expect("first start creates an admin key");
        TestServer {
            server: Some(server),
            config,
            _dir: dir,
            key,
            admin_key,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn ws_url(&self) -> String {
        self.server().ws_url()
    }

    pub fn http_url(&self) -> String {
        self.server().http_url()
    }

    /// Graceful restart on the same port and data directory.
    pub async fn restart(&mut self) {
        let old = self.server.take().unwrap();
        self.config.server.listen = old.local_addr;
        old.shutdown().await;
        let server = Server::start(self.config.clone()).await.unwrap();
        assert!(
            server.bootstrap_key.is_none(),
            "a restart keeps the existing tenant"
        );
        self.server = Some(server);
    }

    pub async fn raw(&self) -> Raw {
        Raw::connect(&format!(
            "{}/socket/websocket?vsn=2.0.0&api_key={}",
            self.ws_url(),
            self.key
        ))
        .await
    }

    /// A client whose socket receive buffer is tiny, so a peer that stops reading stalls the
    /// server's writes at once instead of after megabytes of kernel buffering.
    pub async fn raw_small_buffer(&self) -> Raw {
        let url = format!(
            "{}/socket/websocket?vsn=2.0.0&api_key={}",
            self.ws_url(),
            self.key
        );
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.server().local_addr).await.unwrap();
        Raw::over(stream, &url).await
    }

    pub async fn raw_with_key(&self, key: &str) -> Raw {
        Raw::connect(&format!(
            "{}/socket/websocket?vsn=2.0.0&api_key={key}",
            self.ws_url()
        ))
        .await
    }

    pub async fn raw_unauthenticated(&self) -> Raw {
        Raw::connect(&format!("{}/socket/websocket?vsn=2.0.0", self.ws_url())).await
    }

    /// An HTTP request with the tenant key; returns (status, JSON body).
    pub async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        http_request(&self.http_url(), method, path, Some(&self.key), body).await
    }
}

/// A minimal HTTP/1.1 client (one request per connection), enough for API tests.
pub async fn http_request(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    http_request_with(base, method, path, key, body, &[]).await
}

/// [`http_request`] with extra headers.
pub async fn http_request_with(
    base: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    for (name, value) in headers {
        auth.push_str(&format!("{name}: {value}\r\n"));
    }
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let Some((size, rest)) = s.split_once("\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

/// A received frame, decoded.
#[derive(Debug, Clone)]
pub struct Got {
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
    pub binary: Option<Bytes>,
}

pub struct Raw {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
    pending: VecDeque<Got>,
    pub closed: Option<(u16, String)>,
}

impl Raw {
    /// The WebSocket handshake over a connected stream (for chosen local addresses or options).
    pub async fn over(stream: TcpStream, url: &str) -> Raw {
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
        Raw {
            ws,
            next_ref: 0,
            pending: VecDeque::new(),
            closed: None,
        }
    }

    pub async fn connect(url: &str) -> Raw {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Raw {
            ws,
            next_ref: 0,
            pending: VecDeque::new(),
            closed: None,
        }
    }

    pub fn next_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Ws::Text(text.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Bytes) {
        self.ws.send(Ws::Binary(bytes)).await.unwrap();
    }

    /// Sends a push; returns its ref.
    pub async fn push(&mut self, topic: &str, event: &str, payload: Value) -> String {
        let r = self.next_ref();
        let frame = Frame::new(
            Some("j".into()),
            Some(r.clone()),
            topic,
            event,
            Payload::json(&payload),
        );
        self.send_text(frame.encode_text()).await;
        r
    }

    /// Sends a push and waits for its reply: Ok(response) or Err(error response).
    pub async fn request(
        &mut self,
        topic: &str,
        event: &str,
        payload: Value,
    ) -> Result<Value, Value> {
        let r = self.push(topic, event, payload).await;
        self.reply(&r).await
    }

    pub async fn reply(&mut self, r: &str) -> Result<Value, Value> {
        let got = self
            .take(|g| g.event == "phx_reply" && g.reference.as_deref() == Some(r))
            .await;
        let status = got.payload["status"].as_str().unwrap().to_owned();
        let response = got.payload["response"].clone();
        if status == "ok" {
            Ok(response)
        } else {
            Err(response)
        }
    }

    pub async fn join(&mut self, channel: &str, params: Value) -> Result<Value, Value> {
        self.request(&format!("channel:{channel}"), "phx_join", params)
            .await
    }

    pub async fn publish(&mut self, channel: &str, payload: Value) -> Result<Value, Value> {
        self.request(&format!("channel:{channel}"), "publish", payload)
            .await
    }

    /// The next `message` event on `channel`.
    pub async fn message(&mut self, channel: &str) -> Value {
        let topic = format!("channel:{channel}");
        self.take(|g| g.topic == topic && g.event == "message")
            .await
            .payload
    }

    /// The next frame with this event (any topic).
    pub async fn event(&mut self, event: &str) -> Got {
        self.take(|g| g.event == event).await
    }

    /// Waits up to `WAIT` for a frame matching `pred`, keeping others for later.
    pub async fn take(&mut self, pred: impl Fn(&Got) -> bool) -> Got {
        if let Some(i) = self.pending.iter().position(&pred) {
            return self.pending.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out; pending: {:?}, closed: {:?}",
                        self.pending, self.closed
                    )
                })
                .unwrap_or_else(|| {
                    panic!(
                        "socket closed {:?}; pending: {:?}",
                        self.closed, self.pending
                    )
                });
            if pred(&got) {
                return got;
            }
            self.pending.push_back(got);
        }
    }

    /// Asserts that no frame matching `pred` arrives within `quiet` (after a round trip).
    pub async fn assert_none(&mut self, quiet: Duration, pred: impl Fn(&Got) -> bool) {
        // A heartbeat round trip proves every frame sent before it has arrived.
        let r = self.push("phoenix", "heartbeat", json!({})).await;
        self.reply(&r).await.unwrap();
        let _ = tokio::time::timeout(quiet, async {
            while let Some(got) = self.recv().await {
                self.pending.push_back(got);
            }
        })
        .await;
        if let Some(found) = self.pending.iter().find(|g| pred(g)) {
            panic!("unexpected frame {found:?}");
        }
    }

    /// Reads the next frame; None when the socket closed (close code in `closed`).
    pub async fn recv(&mut self) -> Option<Got> {
        loop {
            match self.ws.next().await? {
                Ok(Ws::Text(t)) => {
                    let f = Frame::decode_text(&t).expect("server frames decode");
                    let Payload::Json(raw) = f.payload else {
                        unreachable!()
                    };
                    return Some(Got {
                        reference: f.reference,
                        topic: f.topic,
                        event: f.event,
                        payload: serde_json::from_str(raw.get()).unwrap(),
                        binary: None,
                    });
                }
                Ok(Ws::Binary(b)) => {
                    let f = Frame::decode_server_binary(&b).expect("server binary frames decode");
                    let Payload::Binary(bytes) = f.payload else {
                        unreachable!()
                    };
                    return Some(Got {
                        reference: f.reference,
                        topic: f.topic,
                        event: f.event,
                        payload: Value::Null,
                        binary: Some(bytes),
                    });
                }
                Ok(Ws::Close(frame)) => {
                    self.closed = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                    return None;
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Waits for the socket to end; returns the close code, if a close frame arrived.
    pub async fn closed_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Some(got)) = tokio::time::timeout_at(deadline, self.recv()).await {
            self.pending.push_back(got);
        }
        self.closed.as_ref().map(|c| c.0)
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn closed_with(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Ok(Some(got)) = tokio::time::timeout_at(deadline, self.recv()).await {
            self.pending.push_back(got);
        }
        self.closed
            .as_ref()
            .map(|c| c.0)
            .expect("the server closed with a code")
    }
}

/// The error code of an error response.
pub fn code(err: &Value) -> &str {
    err["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error reply: {err}"))
}

pub fn agent(name: &str) -> Value {
    json!({ "agent_name": name })
}
