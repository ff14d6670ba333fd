//! RFC 6455 on the wire: the opening handshake, pings, fragmentation, and protocol violations,
//! spoken byte by byte over a plain TCP socket.

use crate::harness::*;
use bytes::{Buf, BytesMut};
use serde_json::{Value, json};
use switchboard_protocol::websocket::{Opcode, encode_client_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket spoken by hand, to send what no well-behaved client library would.
struct Wire {
    stream: TcpStream,
    buf: BytesMut,
}

impl Wire {
    async fn connect(server: &TestServer) -> Wire {
        let addr = server.http_url().trim_start_matches("http://").to_owned();
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET /socket/websocket?vsn=2.0.0&api_key={} HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.key
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0, "closed");
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        // The RFC 6455 example key and its accept value.
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        buf.advance(end);
        Wire { stream, buf }
    }

    async fn send(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let frame = encode_client_frame(fin, opcode, payload, [0x37, 0xfa, 0x21, 0x3d]);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next server frame: opcode and payload (server frames are never masked).
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
                let (len, at) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    assert_eq!(self.buf[0] & 0x80, 0x80, "server frames are final");
                    let opcode = self.buf[0] & 0x0f;
                    let frame = self.buf.split_to(at + len);
                    return (opcode, frame[at..].to_vec());
                }
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("a frame in time")
                .unwrap();
            assert!(read > 0, "the server closed without a close frame");
        }
    }

    /// The next text frame, skipping anything else, parsed as a Phoenix frame.
    async fn text(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.frame().await;
            if opcode == Opcode::Text as u8 {
                return serde_json::from_slice(&payload).unwrap();
            }
            assert_ne!(opcode, Opcode::Close as u8, "closed: {payload:?}");
        }
    }

    /// Waits for the close frame; returns its code. The server then ends the TCP stream.
    async fn close_code(&mut self) -> u16 {
        loop {
            let (opcode, payload) = self.frame().await;
            if opcode == Opcode::Close as u8 {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let mut rest = Vec::new();
                let eof = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
                assert!(eof.is_ok(), "the server ends the stream after closing");
                return code;
            }
        }
    }
}

#[tokio::test]
async fn pings_fragments_and_a_clean_close() {
    let server = TestServer::start().await;
    let mut wire = Wire::connect(&server).await;

    wire.send(true, Opcode::Ping, b"are you there").await;
    assert_eq!(
        wire.frame().await,
        (Opcode::Pong as u8, b"are you there".to_vec())
    );

    // A join split over three fragments, with a ping between them.
    let join = json!(["1", "1", "channel:wire", "phx_join", {"agent_name": "a"}]).to_string();
    let (a, rest) = join.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    wire.send(false, Opcode::Text, a).await;
    wire.send(true, Opcode::Ping, b"").await;
    wire.send(false, Opcode::Continuation, b).await;
    wire.send(true, Opcode::Continuation, c).await;
    assert_eq!(wire.frame().await, (Opcode::Pong as u8, vec![]));
    let reply = wire.text().await;
    assert_eq!(reply[3], "phx_reply");
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    wire.send(true, Opcode::Close, &1000u16.to_be_bytes()).await;
    assert_eq!(wire.close_code().await, 1000);
}

#[tokio::test]
async fn protocol_violations_close_with_1002_and_bad_utf8_with_1007() {
    let server = TestServer::start().await;

    let mut wire = Wire::connect(&server).await;
    let unmasked = [0x81, 0x02, b'h', b'i'];
    wire.stream.write_all(&unmasked).await.unwrap();
    assert_eq!(wire.close_code().await, 1002);

    let mut wire = Wire::connect(&server).await;
    wire.send(true, Opcode::Continuation, b"no start").await;
    assert_eq!(wire.close_code().await, 1002);

    let mut wire = Wire::connect(&server).await;
    wire.send(true, Opcode::Text, &[0xff, 0xfe]).await;
    assert_eq!(wire.close_code().await, 1007);

    // The server is unharmed.
    let mut wire = Wire::connect(&server).await;
    wire.send(
        true,
        Opcode::Text,
        json!([null, "1", "phoenix", "heartbeat", {}])
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(wire.text().await[4]["status"], "ok");
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header() {
    let server = TestServer::with(|c| c.limits.max_frame_bytes = 64 * 1024).await;
    let mut wire = Wire::connect(&server).await;
    // Only the header of a 1 GiB frame: the server must not wait for (or buffer) the payload.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    wire.stream.write_all(&header).await.unwrap();
    let error = wire.text().await;
    assert_eq!(error[3], "error");
    assert_eq!(error[4]["code"], "frame_too_large");
    assert_eq!(wire.close_code().await, 4502);
}

#[tokio::test]
async fn plain_http_and_wrong_versions_get_426() {
    let server = TestServer::start().await;
    let (status, body) =
        http_request(&server.http_url(), "GET", "/socket/websocket", None, None).await;
    assert_eq!(status, 426);
    assert_eq!(body["code"], "invalid_payload");

    let (status, _) = http_request_with(
        &server.http_url(),
        "GET",
        "/socket/websocket",
        None,
        None,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "8"),
        ],
    )
    .await;
    assert_eq!(status, 426);

    // A request without a key cannot be upgraded.
    let (status, body) = http_request_with(
        &server.http_url(),
        "GET",
        "/socket/websocket",
        None,
        None,
        &[
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_payload"))
    );
}
