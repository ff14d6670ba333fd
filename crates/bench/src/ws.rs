//! A minimal WebSocket client for load generation: just enough RFC 6455 to handshake, send
//! masked frames and parse unmasked ones, on a plain `TcpStream` with one read buffer.
//!
//! A general client (tungstenite) costs more per frame than the servers under test spend, and
//! the load generator must never be the bottleneck, so the hot receive path here is a header
//! parse and a slice.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// WebSocket opcodes used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation = 0,
    /// UTF-8 text.
    Text = 1,
    /// Bytes.
    Binary = 2,
    /// Close.
    Close = 8,
    /// Ping (must be answered with a pong).
    Ping = 9,
    /// Pong.
    Pong = 10,
}

impl Opcode {
    fn from_u8(b: u8) -> io::Result<Opcode> {
        Ok(match b {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("opcode {other}"),
                ));
            }
        })
    }
}

/// One received frame.
#[derive(Debug)]
pub struct Frame {
    /// Its opcode.
    pub opcode: Opcode,
    /// Its payload.
    pub payload: Bytes,
}

/// A connected WebSocket.
pub struct Ws {
    stream: TcpStream,
    buf: BytesMut,
    mask_state: u32,
}

/// Where and how to connect.
pub struct Endpoint<'a> {
    /// Server address.
    pub addr: SocketAddr,
    /// Local address to bind (spreads ephemeral ports over 127.0.0.x).
    pub local: Option<IpAddr>,
    /// Request path with query.
    pub path: &'a str,
    /// `Sec-WebSocket-Protocol`, if the server requires one (MQTT: `mqtt`).
    pub subprotocol: Option<&'a str>,
}

impl Ws {
    /// Connects and completes the opening handshake.
    pub async fn connect(ep: &Endpoint<'_>) -> io::Result<Ws> {
        let socket = TcpSocket::new_v4()?;
        if let Some(local) = ep.local {
            socket.bind(SocketAddr::new(local, 0))?;
        }
        let mut stream = socket.connect(ep.addr).await?;
        stream.set_nodelay(true)?;
        let protocol = ep
            .subprotocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n",
            ep.path, ep.addr
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let end = loop {
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the handshake",
                ));
            }
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > 64 * 1024 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "handshake response too long",
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let line = head.lines().next().unwrap_or("").to_owned();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("upgrade refused: {line}"),
            ));
        }
        buf.advance(end);
        let seed = ep.addr.port() as u32 ^ (stream.local_addr()?.port() as u32) << 16;
        Ok(Ws {
            stream,
            buf,
            mask_state: seed | 1,
        })
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: Opcode, payload: &[u8]) -> io::Result<()> {
        let frame = self.encode(opcode, payload);
        self.stream.write_all(&frame).await
    }

    /// Encodes one masked frame (for callers that batch writes).
    pub fn encode(&mut self, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        // xorshift: masks need not be secret for a load generator, only present.
        self.mask_state ^= self.mask_state << 13;
        self.mask_state ^= self.mask_state >> 17;
        self.mask_state ^= self.mask_state << 5;
        encode_frame(opcode, payload, self.mask_state.to_be_bytes())
    }

    /// Writes pre-encoded bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Reads the next frame. Pings are returned like any frame; the caller answers them.
    pub async fn next(&mut self) -> io::Result<Frame> {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
        }
    }

    /// A blocking `std` handle on the same socket, for a thread that must write on a precise
    /// schedule (tokio's timer ticks in milliseconds). Frames are still encoded with
    /// [`Ws::encode`]; this connection's own reads must stop once the clone is in use.
    pub fn std_clone(&self) -> io::Result<std::net::TcpStream> {
        use std::os::fd::AsFd;
        let stream = std::net::TcpStream::from(self.stream.as_fd().try_clone_to_owned()?);
        stream.set_nonblocking(false)?;
        Ok(stream)
    }

    fn parse(&mut self) -> io::Result<Option<Frame>> {
        parse_frame(&mut self.buf)
    }
}

/// Parses one frame from the front of `buf`, if it is complete.
pub fn parse_frame(buf: &mut BytesMut) -> io::Result<Option<Frame>> {
    {
        let b = &buf[..];
        if b.len() < 2 {
            return Ok(None);
        }
        let opcode = Opcode::from_u8(b[0] & 0x0f)?;
        let masked = b[1] & 0x80 != 0;
        let (len, mut header) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")) as usize,
                10,
            ),
            126 | 127 => return Ok(None),
            n => (n as usize, 2),
        };
        if masked {
            header += 4;
        }
        if b.len() < header + len {
            let missing = header + len - b.len();
            buf.reserve(missing);
            return Ok(None);
        }
        buf.advance(header);
        let payload = buf.split_to(len).freeze();
        Ok(Some(Frame { opcode, payload }))
    }
}

/// Encodes a frame with the given mask.
pub fn encode_frame(opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode as u8);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Encodes an unmasked frame (server side).
pub fn encode_server_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode as u8);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}
