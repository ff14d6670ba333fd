//! Plain WebSocket: every text frame a client sends is broadcast to every other client on the
//! same path (the bare baseline treats the path as a room; the Node `ws` peer ignores it).

use super::Target;
use crate::ws::{Endpoint, Opcode, Ws};
use std::io;
use std::net::IpAddr;

/// Connects; every connection receives every broadcast.
pub async fn subscribe(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    _id: u64,
) -> io::Result<Ws> {
    Ws::connect(&Endpoint {
        addr: t.addr,
        local,
        path: &format!("/{channel}"),
        subprotocol: None,
    })
    .await
}

/// Connects.
pub async fn publisher(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    id: u64,
) -> io::Result<Ws> {
    subscribe(t, local, channel, id).await
}

/// The payload as one text frame.
pub fn publish(ws: &mut Ws, _channel: &str, payload: &str, _seq: u64, _durable: bool) -> Vec<u8> {
    ws.encode(Opcode::Text, payload.as_bytes())
}
