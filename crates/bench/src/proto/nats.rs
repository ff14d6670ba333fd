//! NATS over WebSocket: the plain text protocol (`INFO`, `CONNECT`, `SUB`, `PUB`, `MSG`,
//! `PING`/`PONG`, CRLF-terminated) carried in WebSocket frames, subject = channel.
//!
//! nats-server writes everything pending for a non-browser client into one binary frame, so
//! a frame holds whole protocol messages, often many; subscribers only scan it for markers.
//! `SUB` has no reply, so `subscribe` follows it with `PING` and waits for the `PONG`: the
//! server handles a connection's protocol in order, so the `PONG` proves the `SUB` is active.
//!
//! Durable publishes go to JetStream: `PUB <channel> <inbox>.<seq> <len>` makes a stream that
//! captures `<channel>` store the message and reply on `<inbox>.<seq>` with
//! `{"stream":"<name>", "seq":<n>}` (a stream-level failure replies `{"error":{…}}` instead).
//! Publishers subscribe to the inbox, and when the server has JetStream on (`INFO` says
//! `"jetstream":true`) they create the stream for their channel first (create is idempotent
//! for an identical configuration). The inbox is derived from the channel, so run one durable
//! publisher per channel, or each sees the others' acks.

use super::{Target, await_frame};
use crate::payload::find;
use crate::ws::{Endpoint, Frame, Opcode, Ws};
use std::io;
use std::net::IpAddr;

const CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n";

/// The reply subject prefix of the publisher of `channel`.
fn inbox(channel: &str) -> String {
    format!("_INBOX.sbbench.{channel}")
}

/// A JetStream stream name for `channel` (names allow no `.`, `*`, `>` or whitespace).
fn stream_name(channel: &str) -> String {
    channel
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Connects, reads `INFO`, sends `CONNECT` plus `subs` (`SUB` lines) and a `PING`, and waits
/// for the `PONG`. Returns the connection and the `INFO` line.
async fn session(t: &Target, local: Option<IpAddr>, subs: &str) -> io::Result<(Ws, String)> {
    let mut ws = Ws::connect(&Endpoint {
        addr: t.addr,
        local,
        path: "/",
        subprotocol: None,
    })
    .await?;
    let mut info = String::new();
    await_frame(t, &mut ws, 16, |f| {
        if f.payload.starts_with(b"INFO ") {
            info = String::from_utf8_lossy(&f.payload).trim_end().to_owned();
            return true;
        }
        false
    })
    .await?;
    let hello = format!("{CONNECT}{subs}PING\r\n");
    ws.send(Opcode::Binary, hello.as_bytes()).await?;
    let mut error = None;
    await_frame(t, &mut ws, 64, |f| {
        let mut pong = false;
        lines(&f.payload, |line| {
            if line == b"PONG" {
                pong = true;
            } else if line.starts_with(b"-ERR") {
                error = Some(String::from_utf8_lossy(line).into_owned());
            }
        });
        pong || error.is_some()
    })
    .await?;
    match error {
        Some(e) => Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
        None => Ok((ws, info)),
    }
}

/// Subscribes to subject `channel` (sid 1).
pub async fn subscribe(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    _id: u64,
) -> io::Result<Ws> {
    let (ws, _) = session(t, local, &format!("SUB {channel} 1\r\n")).await?;
    Ok(ws)
}

/// Connects with the ack inbox subscribed; on a JetStream server, also makes sure a stream
/// captures `channel`.
pub async fn publisher(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    _id: u64,
) -> io::Result<Ws> {
    let inbox = inbox(channel);
    let (mut ws, info) = session(t, local, &format!("SUB {inbox}.* 1\r\n")).await?;
    if info.contains("\"jetstream\":true") {
        create_stream(t, &mut ws, channel, &inbox).await?;
    }
    Ok(ws)
}

/// Creates (or finds, identically configured) the file-stored stream that captures `channel`.
async fn create_stream(t: &Target, ws: &mut Ws, channel: &str, inbox: &str) -> io::Result<()> {
    let name = stream_name(channel);
    let config = format!(
        r#"{{"name":"{name}","subjects":["{channel}"],"storage":"file","retention":"limits","discard":"old","num_replicas":1}}"#
    );
    let reply = format!("{inbox}.create");
    let request = format!(
        "PUB $JS.API.STREAM.CREATE.{name} {reply} {}\r\n{config}\r\n",
        config.len()
    );
    ws.send(Opcode::Binary, request.as_bytes()).await?;
    let mut response = None;
    let head = format!("MSG {reply} ");
    await_frame(t, ws, 64, |f| {
        if let Some(at) = find(&f.payload, head.as_bytes()) {
            response = Some(String::from_utf8_lossy(&f.payload[at..]).into_owned());
            return true;
        }
        false
    })
    .await?;
    let response = response.unwrap_or_default();
    if response.contains("\"error\"") {
        return Err(io::Error::other(format!(
            "creating JetStream stream {name}: {response}"
        )));
    }
    Ok(())
}

/// `PUB <channel> <len>` and the payload, in one frame; durable adds the reply subject that
/// makes JetStream acknowledge.
pub fn publish(ws: &mut Ws, channel: &str, payload: &str, seq: u64, durable: bool) -> Vec<u8> {
    let text = if durable {
        format!(
            "PUB {channel} {}.{seq} {}\r\n{payload}\r\n",
            inbox(channel),
            payload.len()
        )
    } else {
        format!("PUB {channel} {}\r\n{payload}\r\n", payload.len())
    };
    ws.encode(Opcode::Binary, text.as_bytes())
}

/// `PONG` for every server `PING` line in the frame (message payloads are skipped, so text
/// inside them is never mistaken for one).
pub fn answer(ws: &mut Ws, frame: &Frame) -> Option<Vec<u8>> {
    // Cheap rejection first: this runs on every frame a subscriber receives.
    find(&frame.payload, b"PING\r\n")?;
    let mut pings = 0;
    lines(&frame.payload, |line| {
        if line == b"PING" {
            pings += 1;
        }
    });
    (pings > 0).then(|| ws.encode(Opcode::Binary, "PONG\r\n".repeat(pings).as_bytes()))
}

/// JetStream publish acknowledgements in a publisher's frame: (accepted, refused). Only the
/// ack inbox is subscribed on a publisher, so every message payload it receives is one.
pub fn acks(frame: &Frame) -> (u64, u64) {
    let (mut accepted, mut refused) = (0, 0);
    each_unit(&frame.payload, |unit, is_payload| {
        if is_payload && unit.starts_with(b"{\"stream\"") {
            accepted += 1;
        } else if is_payload && unit.starts_with(b"{\"error\"") {
            refused += 1;
        }
    });
    (accepted, refused)
}

/// Calls `f` with every protocol line (without its CRLF) of a frame, skipping `MSG`/`HMSG`
/// payloads.
fn lines(frame: &[u8], mut f: impl FnMut(&[u8])) {
    each_unit(frame, |unit, is_payload| {
        if !is_payload {
            f(unit)
        }
    });
}

/// Walks a frame: protocol lines (`false`) and the message payloads after `MSG`/`HMSG` lines
/// (`true`). The payload size is the last field of those lines (fields may be separated by
/// more than one space).
fn each_unit(frame: &[u8], mut f: impl FnMut(&[u8], bool)) {
    let mut at = 0;
    while at < frame.len() {
        let Some(eol) = find(&frame[at..], b"\r\n") else {
            return;
        };
        let line = &frame[at..at + eol];
        f(line, false);
        at += eol + 2;
        if line.starts_with(b"MSG ") || line.starts_with(b"HMSG ") {
            let size = line
                .rsplit(|&b| b == b' ')
                .find(|w| !w.is_empty())
                .and_then(|w| std::str::from_utf8(w).ok())
                .and_then(|w| w.parse::<usize>().ok());
            let Some(size) = size else {
                return;
            };
            let end = (at + size).min(frame.len());
            f(&frame[at..end], true);
            at = end + 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protocol_lines(frame: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        lines(frame, |l| out.push(String::from_utf8_lossy(l).into_owned()));
        out
    }

    #[test]
    fn pings_inside_payloads_are_not_lines() {
        let frame = b"MSG a 1 12\r\nPING\r\nPING\r\n\r\nPING\r\nMSG b 1  6\r\nx\r\nPI\r\n";
        assert_eq!(protocol_lines(frame), ["MSG a 1 12", "PING", "MSG b 1  6"]);
    }

    #[test]
    fn acks_count_publish_replies_only() {
        let ok = |n: u64| format!("{{\"stream\":\"durable\", \"seq\":{n}}}");
        let err = r#"{"error":{"code":503,"description":"x"},"stream":"durable","seq":0}"#;
        let mut text = String::from("PONG\r\n");
        for (seq, body) in [(2, ok(1)), (3, err.to_owned()), (4, ok(2))] {
            text += &format!("MSG _INBOX.sbbench.d.{seq} 1  {}\r\n{body}\r\n", body.len());
        }
        let frame = text.into_bytes();
        let frame = Frame {
            opcode: Opcode::Binary,
            payload: bytes::Bytes::from(frame),
        };
        assert_eq!(acks(&frame), (2, 1));
    }

    #[test]
    fn stream_names() {
        assert_eq!(stream_name("durable-half"), "durable-half");
        assert_eq!(stream_name("a.b*c"), "a_b_c");
    }
}
