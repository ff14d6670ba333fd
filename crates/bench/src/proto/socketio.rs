//! Socket.IO 4 (engine.io v4, websocket transport only) against `bench/peers/socketio-server.mjs`.
//!
//! Every WebSocket text frame is one engine.io packet: `0{…}` open, `2` ping, `3` pong, and
//! `4` message, whose body is a socket.io packet: `0` connect, `2["event",…]` event. So the
//! handshake is open → `40` → `40{"sid":…}`, and the peer server's events are
//! `42["join","<room>"]` (answered `42["joined","<room>"]`), `42["pub",{"room","data"}]`, and
//! the broadcast `42["msg","<data>"]`. The server pings and closes a client that does not
//! pong within its `pingTimeout`, so [`answer`] matters on idle subscribers.
//!
//! Payloads are ASCII without quotes or backslashes, so they go into JSON strings as they are.

use super::{Target, await_frame};
use crate::ws::{Endpoint, Frame, Opcode, Ws};
use std::io;
use std::net::IpAddr;

const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// Opens the engine.io session and connects to the default namespace.
async fn connect(t: &Target, local: Option<IpAddr>) -> io::Result<Ws> {
    let mut ws = Ws::connect(&Endpoint {
        addr: t.addr,
        local,
        path: PATH,
        subprotocol: None,
    })
    .await?;
    await_frame(t, &mut ws, 16, |f| f.payload.starts_with(b"0{")).await?;
    ws.send(Opcode::Text, b"40").await?;
    // The namespace connect is asynchronous on the server: events sent before `40{…}` comes
    // back would be dropped, so nothing is pipelined here.
    let mut refused = None;
    await_frame(t, &mut ws, 16, |f| {
        if f.payload.starts_with(b"44") {
            refused = Some(String::from_utf8_lossy(&f.payload).into_owned());
        }
        f.payload.starts_with(b"40") || refused.is_some()
    })
    .await?;
    match refused {
        Some(why) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
        None => Ok(ws),
    }
}

/// Connects and joins room `channel`, returning once the server confirmed with `joined`.
pub async fn subscribe(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    _id: u64,
) -> io::Result<Ws> {
    let mut ws = connect(t, local).await?;
    let join = format!(r#"42["join","{channel}"]"#);
    ws.send(Opcode::Text, join.as_bytes()).await?;
    let joined = format!(r#"42["joined","{channel}"]"#);
    await_frame(t, &mut ws, 64, |f| f.payload[..] == *joined.as_bytes()).await?;
    Ok(ws)
}

/// Connects; publishers do not join the room (the server excludes the sender anyway).
pub async fn publisher(
    t: &Target,
    local: Option<IpAddr>,
    _channel: &str,
    _id: u64,
) -> io::Result<Ws> {
    connect(t, local).await
}

/// A `pub` event for room `channel` (`durable` is ignored: Socket.IO stores nothing).
pub fn publish(ws: &mut Ws, channel: &str, payload: &str, _seq: u64, _durable: bool) -> Vec<u8> {
    let text = format!(r#"42["pub",{{"room":"{channel}","data":"{payload}"}}]"#);
    ws.encode(Opcode::Text, text.as_bytes())
}

/// engine.io ping `2` → pong `3`.
pub fn answer(ws: &mut Ws, frame: &Frame) -> Option<Vec<u8>> {
    (frame.opcode == Opcode::Text && frame.payload[..] == *b"2")
        .then(|| ws.encode(Opcode::Text, b"3"))
}
