//! Switchboard: Phoenix V2 frames on `/socket/websocket`, `phx_join` then `publish` events.

use super::{Target, await_frame};
use crate::ws::{Endpoint, Opcode, Ws};
use std::io;
use std::net::IpAddr;

// Benchmark agents opt out of presence events: the peers have no presence, and a presence
// state sent on every join grows with the channel.
async fn join(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    agent: &str,
    echo: bool,
) -> io::Result<Ws> {
    let key = t.key.as_deref().unwrap_or_default();
    let path = format!("/socket/websocket?vsn=2.0.0&api_key={key}");
    let mut ws = Ws::connect(&Endpoint {
        addr: t.addr,
        local,
        path: &path,
        subprotocol: None,
    })
    .await?;
    let join = format!(
        r#"["1","1","channel:{channel}","phx_join",{{"agent_name":"{agent}","echo":{echo},"presence":false}}]"#
    );
    ws.send(Opcode::Text, join.as_bytes()).await?;
    let mut refused = None;
    await_frame(t, &mut ws, 64, |f| {
        let text = &f.payload[..];
        if text.starts_with(br#"["1","1","#) && contains(text, b"phx_reply") {
            if !contains(text, br#""status":"ok""#) {
                refused = Some(String::from_utf8_lossy(text).into_owned());
            }
            return true;
        }
        false
    })
    .await?;
    match refused {
        Some(reply) => Err(io::Error::new(io::ErrorKind::PermissionDenied, reply)),
        None => Ok(ws),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Joins `channel` as agent `s<id>`.
pub async fn subscribe(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    id: u64,
) -> io::Result<Ws> {
    join(t, local, channel, &format!("s{id}"), true).await
}

/// Joins `channel` as agent `p<id>`, without echo: publishers do not receive their own.
pub async fn publisher(
    t: &Target,
    local: Option<IpAddr>,
    channel: &str,
    id: u64,
) -> io::Result<Ws> {
    join(t, local, channel, &format!("p{id}"), false).await
}

/// A `publish` push: ephemeral and fire-and-forget for fan-out runs, persisted (acknowledged
/// after fsync) when `durable`.
pub fn publish(ws: &mut Ws, channel: &str, payload: &str, seq: u64, durable: bool) -> Vec<u8> {
    // Ephemeral publishes go without a ref: fire-and-forget, like MQTT QoS 0 and core NATS.
    // Durable ones carry a ref, and the reply is the ack the scenario waits for.
    let reference = if durable {
        format!("\"{seq}\"")
    } else {
        "null".to_owned()
    };
    let text = format!(
        r#"["1",{reference},"channel:{channel}","publish",{{"type":"b","data":"{payload}","ephemeral":{}}}]"#,
        !durable
    );
    ws.encode(Opcode::Text, text.as_bytes())
}
