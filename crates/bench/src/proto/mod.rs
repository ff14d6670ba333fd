//! The protocols the load generator speaks, one file each, behind one dispatch.
//!
//! Every adapter provides the same four operations:
//! - `subscribe`: connect and subscribe to a channel, returning once the server confirmed it
//!   (or, for protocols without confirmation, once the subscription is sent and a round trip
//!   proved it was processed);
//! - `publisher`: connect, ready to publish to a channel;
//! - `publish`: encode the frame(s) that publish one payload (with `durable`, the protocol's
//!   acknowledged, persisted publish, where it has one);
//! - `answer`: the reply an incoming frame requires (protocol-level pings), if any.

pub mod mqtt;
pub mod nats;
pub mod raw;
pub mod socketio;
pub mod switchboard;

use crate::ws::{Frame, Opcode, Ws};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::{IpAddr, SocketAddr};

/// A protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// Plain WebSocket frames (the bare baseline, the Node `ws` server).
    Raw,
    /// Switchboard's Phoenix V2 protocol.
    Switchboard,
    /// MQTT 3.1.1 over WebSocket (Mosquitto).
    Mqtt,
    /// The NATS text protocol over WebSocket (nats-server, JetStream for durable publishes).
    Nats,
    /// Socket.IO 4 rooms (the Node peer in bench/peers).
    SocketIo,
}

/// A server under test and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    /// Display name.
    pub name: String,
    /// Its protocol.
    pub proto: Proto,
    /// Its address.
    pub addr: SocketAddr,
    /// API key (Switchboard).
    pub key: Option<String>,
}

impl Target {
    /// A connection subscribed to `channel`.
    pub async fn subscribe(&self, local: Option<IpAddr>, channel: &str, id: u64) -> io::Result<Ws> {
        match self.proto {
            Proto::Raw => raw::subscribe(self, local, channel, id).await,
            Proto::Switchboard => switchboard::subscribe(self, local, channel, id).await,
            Proto::Mqtt => mqtt::subscribe(self, local, channel, id).await,
            Proto::Nats => nats::subscribe(self, local, channel, id).await,
            Proto::SocketIo => socketio::subscribe(self, local, channel, id).await,
        }
    }

    /// A connection ready to publish to `channel`.
    pub async fn publisher(&self, local: Option<IpAddr>, channel: &str, id: u64) -> io::Result<Ws> {
        match self.proto {
            Proto::Raw => raw::publisher(self, local, channel, id).await,
            Proto::Switchboard => switchboard::publisher(self, local, channel, id).await,
            Proto::Mqtt => mqtt::publisher(self, local, channel, id).await,
            Proto::Nats => nats::publisher(self, local, channel, id).await,
            Proto::SocketIo => socketio::publisher(self, local, channel, id).await,
        }
    }

    /// The bytes that publish `payload`.
    pub fn publish(
        &self,
        ws: &mut Ws,
        channel: &str,
        payload: &str,
        seq: u64,
        durable: bool,
    ) -> Vec<u8> {
        match self.proto {
            Proto::Raw => raw::publish(ws, channel, payload, seq, durable),
            Proto::Switchboard => switchboard::publish(ws, channel, payload, seq, durable),
            Proto::Mqtt => mqtt::publish(ws, channel, payload, seq, durable),
            Proto::Nats => nats::publish(ws, channel, payload, seq, durable),
            Proto::SocketIo => socketio::publish(ws, channel, payload, seq, durable),
        }
    }

    /// What an incoming frame requires in return (WebSocket pings always get a pong).
    pub fn answer(&self, ws: &mut Ws, frame: &Frame) -> Option<Vec<u8>> {
        if frame.opcode == Opcode::Ping {
            return Some(ws.encode(Opcode::Pong, &frame.payload));
        }
        match self.proto {
            Proto::Raw => None,
            Proto::Switchboard => None,
            Proto::Mqtt => mqtt::answer(ws, frame),
            Proto::Nats => nats::answer(ws, frame),
            Proto::SocketIo => socketio::answer(ws, frame),
        }
    }
}

impl Target {
    /// Publish acknowledgements in `frame`: (accepted, refused). Only durable publishes are
    /// acknowledged; a connection's acks come in publish order.
    pub fn acks(&self, frame: &Frame) -> (u64, u64) {
        let text = &frame.payload[..];
        let has = |needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
        match self.proto {
            Proto::Switchboard if has(b"phx_reply") => {
                if has(br#""status":"ok""#) {
                    (1, 0)
                } else {
                    (0, 1)
                }
            }
            Proto::Nats => nats::acks(frame),
            _ => (0, 0),
        }
    }
}

/// Reads frames until `done` accepts one, answering what needs answering; fails after `limit`
/// frames or on close.
pub async fn await_frame(
    target: &Target,
    ws: &mut Ws,
    limit: usize,
    mut done: impl FnMut(&Frame) -> bool,
) -> io::Result<()> {
    for _ in 0..limit {
        let frame = ws.next().await?;
        if frame.opcode == Opcode::Close {
            let why = String::from_utf8_lossy(&frame.payload).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("closed: {why}"),
            ));
        }
        if let Some(reply) = target.answer(ws, &frame) {
            ws.write_raw(&reply).await?;
        }
        if done(&frame) {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the expected reply never came",
    ))
}
