//! The physical-limit baseline: a bare tokio WebSocket broadcast server with no features.
//!
//! Every text frame one client sends is encoded once as a server frame and written, as the
//! same shared bytes, to every other client connected on the same path (the path is the room). No auth, no channels, no storage, no
//! per-message allocation beyond the one shared buffer: what is left is the cost of moving
//! bytes from one socket to N sockets with tokio.

use crate::ws::{Opcode, encode_server_frame};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Room (the request path) → connection id → its queue.
type Peers = Arc<Mutex<HashMap<String, HashMap<u64, mpsc::Sender<Bytes>>>>>;

/// Serves until the process is killed; prints `listening <addr>` once bound.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening {}", listener.local_addr()?);
    let peers: Peers = Arc::default();
    let mut next = 0u64;
    loop {
        let (stream, _) = listener.accept().await?;
        next += 1;
        tokio::spawn(connection(stream, next, peers.clone()));
    }
}

async fn connection(mut stream: TcpStream, id: u64, peers: Peers) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let end = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let room = String::from_utf8_lossy(&buf[..end])
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    buf.advance(end);
    // Fixed key in the load generator, so the accept hash is fixed too.
    stream
        .write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        )
        .await?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(1024);
    peers
        .lock()
        .expect("not poisoned")
        .entry(room.clone())
        .or_default()
        .insert(id, tx);
    let writer = tokio::spawn(async move {
        // Batch whatever is queued into one write, as a well-built server would.
        let mut out = Vec::with_capacity(64 * 1024);
        while let Some(frame) = rx.recv().await {
            out.extend_from_slice(&frame);
            while out.len() < 256 * 1024 {
                match rx.try_recv() {
                    Ok(more) => out.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if wr.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
    });
    loop {
        while let Some((opcode, payload)) = parse_masked(&mut buf) {
            if opcode == Opcode::Close as u8 {
                leave(&peers, &room, id);
                return Ok(());
            }
            if opcode == Opcode::Text as u8 {
                let frame = Bytes::from(encode_server_frame(Opcode::Text, &payload));
                let peers = peers.lock().expect("not poisoned");
                for (peer, tx) in peers.get(&room).into_iter().flatten() {
                    if *peer != id {
                        let _ = tx.try_send(frame.clone());
                    }
                }
            }
        }
        if rd.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    leave(&peers, &room, id);
    writer.abort();
    Ok(())
}

fn leave(peers: &Peers, room: &str, id: u64) {
    let mut peers = peers.lock().expect("not poisoned");
    if let Some(members) = peers.get_mut(room) {
        members.remove(&id);
        if members.is_empty() {
            peers.remove(room);
        }
    }
}

fn parse_masked(buf: &mut BytesMut) -> Option<(u8, Vec<u8>)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, mut header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let masked = buf[1] & 0x80 != 0;
    let mask = if masked {
        let m: [u8; 4] = buf.get(header..header + 4)?.try_into().ok()?;
        header += 4;
        Some(m)
    } else {
        None
    };
    if buf.len() < header + len {
        return None;
    }
    buf.advance(header);
    let mut payload = buf.split_to(len).to_vec();
    if let Some(mask) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((opcode, payload))
}
