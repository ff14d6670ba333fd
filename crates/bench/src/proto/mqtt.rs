//! MQTT 3.1.1 over WebSocket (Mosquitto): binary frames, subprotocol `mqtt`, QoS 0 throughout.
//!
//! Packets are encoded by hand: a fixed header (type, remaining length as a base-128 varint)
//! and, here, only CONNECT, SUBSCRIBE and PUBLISH outbound. A broker may put several packets
//! in one frame or split one over several, so the handshake reads through [`Packets`], which
//! reassembles the byte stream; the receive path after it only scans for payload markers.
//!
//! MQTT has no durable publish in this suite (Mosquitto runs without persistence): `durable`
//! is ignored and every publish is QoS 0.

use super::{Target, await_frame};
use crate::ws::{Endpoint, Frame, Opcode, Ws};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const SUBSCRIBE: u8 = 0x82; // type 8 with the reserved flags 0b0010
const SUBACK: u8 = 0x90;

/// Client ids must be unique per broker (a duplicate takes the session over and disconnects
/// the first holder), so they carry the process id and a process-wide counter besides `id`.
fn client_id(role: char, id: u64) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("sb{role}{id}x{}x{n}", std::process::id())
}

/// Appends the remaining-length varint.
fn put_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

/// Appends a length-prefixed UTF-8 string.
fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// CONNECT: protocol level 4 (3.1.1), clean session, keep-alive off.
fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + client_id.len());
    put_str(&mut body, "MQTT");
    body.push(4); // protocol level
    body.push(0x02); // clean session
    body.extend_from_slice(&0u16.to_be_bytes()); // keep-alive 0: the broker never times us out
    put_str(&mut body, client_id);
    packet(CONNECT, &body)
}

/// SUBSCRIBE to one topic filter at QoS 0.
fn subscribe_packet(packet_id: u16, topic: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + topic.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    put_str(&mut body, topic);
    body.push(0); // requested QoS
    packet(SUBSCRIBE, &body)
}

/// PUBLISH at QoS 0 (no packet id).
fn publish_packet(topic: &str, payload: &[u8]) -> Vec<u8> {
    let len = 2 + topic.len() + payload.len();
    let mut out = Vec::with_capacity(5 + len);
    out.push(PUBLISH);
    put_length(&mut out, len);
    put_str(&mut out, topic);
    out.extend_from_slice(payload);
    out
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(first);
    put_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Reassembles MQTT packets from WebSocket frame payloads.
#[derive(Default)]
struct Packets {
    buf: Vec<u8>,
}

impl Packets {
    /// Adds the bytes of one frame.
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete packet: (first byte, body).
    fn pop(&mut self) -> io::Result<Option<(u8, Vec<u8>)>> {
        let b = &self.buf;
        if b.is_empty() {
            return Ok(None);
        }
        let mut len = 0usize;
        let mut header = 1;
        loop {
            let Some(&byte) = b.get(header) else {
                return Ok(None);
            };
            len |= ((byte & 0x7f) as usize) << (7 * (header - 1));
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if header > 4 {
                return Err(invalid("malformed remaining length"));
            }
        }
        if b.len() < header + len {
            return Ok(None);
        }
        let first = b[0];
        let body = b[header..header + len].to_vec();
        self.buf.drain(..header + len);
        Ok(Some((first, body)))
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Connects, sends CONNECT (and SUBSCRIBE, pipelined: MQTT allows it before CONNACK), and
/// waits for CONNACK and, when subscribing, the SUBACK.
async fn session(
    t: &Target,
    local: Option<IpAddr>,
    client_id: &str,
    topic: Option<&str>,
) -> io::Result<Ws> {
    let mut ws = Ws::connect(&Endpoint {
        addr: t.addr,
        local,
        path: "/",
        subprotocol: Some("mqtt"),
    })
    .await?;
    let mut hello = connect_packet(client_id);
    if let Some(topic) = topic {
        hello.extend_from_slice(&subscribe_packet(1, topic));
    }
    ws.send(Opcode::Binary, &hello).await?;
    let mut packets = Packets::default();
    let mut connacked = false;
    let mut subacked = topic.is_none();
    let mut failure = None;
    await_frame(t, &mut ws, 64, |f: &Frame| {
        if !matches!(f.opcode, Opcode::Binary | Opcode::Continuation) {
            return false;
        }
        packets.push(&f.payload);
        loop {
            match packets.pop() {
                Ok(Some((CONNACK, body))) => {
                    connacked = true;
                    if body.get(1) != Some(&0) {
                        failure = Some(format!("CONNACK refused: return code {:?}", body.get(1)));
                    }
                }
                Ok(Some((SUBACK, body))) => {
                    subacked = true;
                    // Packet id (2 bytes), then one return code per filter: 0x80 is failure.
                    if body.get(2).is_none_or(|&rc| rc == 0x80) {
                        failure = Some(format!("SUBACK refused: {body:?}"));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        failure.is_some() || (connacked && subacked)
    })
    .await?;
    match failure {
        Some(why) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        None => Ok(ws),
    }
}

/// Connects as client `sb s<id>…` and subscribes to topic `channel` at QoS 0.
pub async fn subscribe(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    id: u64,
) -> io::Result<Ws> {
    session(t, local, &client_id('s', id), Some(channel)).await
}

/// Connects as client `sb p<id>…`, ready to publish.
pub async fn publisher(
    t: &Target,
    local: Option<IpAddr>,
    _channel: &str,
    id: u64,
) -> io::Result<Ws> {
    session(t, local, &client_id('p', id), None).await
}

/// A QoS 0 PUBLISH to topic `channel` in one binary frame (`durable` is ignored).
pub fn publish(ws: &mut Ws, channel: &str, payload: &str, _seq: u64, _durable: bool) -> Vec<u8> {
    ws.encode(Opcode::Binary, &publish_packet(channel, payload.as_bytes()))
}

/// Nothing: an MQTT broker never pings a client (keep-alive is the client's job, and off).
pub fn answer(_ws: &mut Ws, _frame: &Frame) -> Option<Vec<u8>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_varint() {
        for (len, expect) in [
            (0usize, vec![0x00]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xff, 0x7f]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_length(&mut out, len);
            assert_eq!(out, expect, "{len}");
        }
    }

    #[test]
    fn packets_split_and_joined() {
        let body = vec![b'x'; 300];
        let one = publish_packet("t", &body);
        let mut stream = vec![CONNACK, 2, 0, 0];
        stream.extend_from_slice(&one);
        stream.extend_from_slice(&[SUBACK, 3, 0, 1, 0]);
        // Feed it in awkward pieces: mid-header, mid-varint, mid-body, several at once.
        let mut packets = Packets::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(7) {
            packets.push(piece);
            while let Some((first, body)) = packets.pop().unwrap() {
                seen.push((first, body.len()));
            }
        }
        assert_eq!(seen, vec![(CONNACK, 2), (PUBLISH, 303), (SUBACK, 3)]);
    }

    #[test]
    fn connect_bytes() {
        let p = connect_packet("c1");
        assert_eq!(
            p,
            [
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0, 0, 2, b'c', b'1'
            ]
        );
        assert_eq!(
            subscribe_packet(1, "ab"),
            [0x82, 7, 0, 1, 0, 2, b'a', b'b', 0]
        );
    }
}
