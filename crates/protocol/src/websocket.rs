//! RFC 6455 framing, server side.
//!
//! Frames the server sends are unmasked, so a message is framed once ([`WsFrame`]) and the
//! same buffer is written to every subscriber. Frames clients send are masked; [`Decoder`]
//! unmasks them in place, reassembles fragmented messages and enforces a size limit before a
//! single payload byte is buffered. No extensions are negotiated, so every RSV bit must be 0.

use bytes::{Buf, Bytes, BytesMut};

/// The largest payload of a control frame (close, ping, pong).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The GUID the opening handshake appends to the client's key (RFC 6455 §1.3).
pub const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// The next fragment of a text or binary message.
    Continuation = 0,
    /// UTF-8 text.
    Text = 1,
    /// Bytes.
    Binary = 2,
    /// Close, with an optional code and reason.
    Close = 8,
    /// Ping: answered with a pong carrying the same payload.
    Ping = 9,
    /// Pong.
    Pong = 10,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            10 => Opcode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        self as u8 >= 8
    }
}

/// One encoded server frame, header and payload in one shared buffer: cloning it is a
/// reference-count increment, so a fan-out to N sockets writes the same bytes N times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame(Bytes);

impl WsFrame {
    /// A final, unmasked frame.
    pub fn encode(opcode: Opcode, payload: &[u8]) -> WsFrame {
        let len = payload.len();
        let mut out = Vec::with_capacity(len + 10);
        out.push(0x80 | opcode as u8);
        if len < 126 {
            out.push(len as u8);
        } else if len <= u16::MAX as usize {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        WsFrame(out.into())
    }

    /// A text frame (the caller guarantees UTF-8).
    pub fn text(payload: &[u8]) -> WsFrame {
        WsFrame::encode(Opcode::Text, payload)
    }

    /// A binary frame.
    pub fn binary(payload: &[u8]) -> WsFrame {
        WsFrame::encode(Opcode::Binary, payload)
    }

    /// The pong answering a ping with `payload`.
    pub fn pong(payload: &[u8]) -> WsFrame {
        WsFrame::encode(
            Opcode::Pong,
            &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)],
        )
    }

    /// A close frame; the reason is cut to the 123 bytes a close frame has room for.
    pub fn close(code: u16, reason: &str) -> WsFrame {
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut payload = Vec::with_capacity(2 + end);
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        WsFrame::encode(Opcode::Close, &payload)
    }

    /// The encoded bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The encoded bytes, header included.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: every frame has a header.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message (not yet checked for UTF-8: the reader checks it once, where it parses).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, to be answered with a pong carrying this payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close, with the code and reason when the client gave them.
    Close(Option<(u16, String)>),
}

/// Why the client's bytes cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes break RFC 6455 (close with 1002).
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message exceeds the limit (`size` is what it would have reached at least).
    #[error("a message of at least {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The size the message reached or announced.
        size: u64,
        /// The limit.
        limit: usize,
    },
}

/// Decodes masked client frames into messages.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// A fragmented message being reassembled: its opcode and the fragments so far.
    partial: Option<(Opcode, BytesMut)>,
    /// Bytes the frame at the head of the buffer needs in total (a read-size hint).
    need: usize,
}

impl Decoder {
    /// A decoder accepting messages of at most `max_message` payload bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            partial: None,
            need: 0,
        }
    }

    /// How many bytes the incomplete frame at the head of the buffer needs in total, so the
    /// reader can make room for a large frame in one allocation (0 when unknown).
    pub fn need(&self) -> usize {
        self.need
    }

    /// Takes the next complete message out of `buf`; `Ok(None)` until enough bytes arrived.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, DecodeError> {
        loop {
            self.need = 0;
            let Some(head) = Header::parse(buf)? else {
                return Ok(None);
            };
            let so_far = self.partial.as_ref().map_or(0, |(_, b)| b.len());
            let size = so_far as u64 + head.len;
            if size > self.max_message as u64 {
                return Err(DecodeError::TooLarge {
                    size,
                    limit: self.max_message,
                });
            }
            let total = head.header_len + head.len as usize;
            if buf.len() < total {
                self.need = total;
                return Ok(None);
            }
            let mut payload = buf.split_to(total);
            payload.advance(head.header_len);
            unmask(&mut payload, head.mask);
            match (head.opcode, self.partial.as_mut()) {
                (Opcode::Close, _) => return close(&payload).map(Some),
                (Opcode::Ping, _) => return Ok(Some(Incoming::Ping(payload.freeze()))),
                (Opcode::Pong, _) => return Ok(Some(Incoming::Pong)),
                (Opcode::Continuation, None) => {
                    return Err(DecodeError::Protocol(
                        "a continuation frame without a start",
                    ));
                }
                (Opcode::Continuation, Some((_, fragments))) => {
                    fragments.extend_from_slice(&payload);
                    if head.fin {
                        let (opcode, fragments) = self.partial.take().expect("matched Some");
                        return Ok(Some(message(opcode, fragments.freeze())));
                    }
                }
                (_, Some(_)) => {
                    return Err(DecodeError::Protocol(
                        "a new message began inside a fragmented one",
                    ));
                }
                (opcode, None) if head.fin => return Ok(Some(message(opcode, payload.freeze()))),
                (opcode, None) => self.partial = Some((opcode, payload)),
            }
        }
    }
}

struct Header {
    fin: bool,
    opcode: Opcode,
    mask: [u8; 4],
    header_len: usize,
    len: u64,
}

impl Header {
    fn parse(buf: &[u8]) -> Result<Option<Header>, DecodeError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(DecodeError::Protocol("RSV bits set without an extension"));
        }
        let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(DecodeError::Protocol("unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        if b1 & 0x80 == 0 {
            return Err(DecodeError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 10),
                None => return Ok(None),
            },
            n => (n as u64, 2),
        };
        if opcode.is_control() && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
            return Err(DecodeError::Protocol(
                "control frames are unfragmented and at most 125 bytes",
            ));
        }
        let Some(mask) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: mask.try_into().expect("4 bytes"),
            header_len: at + 4,
            len,
        }))
    }
}

fn message(opcode: Opcode, payload: Bytes) -> Incoming {
    match opcode {
        Opcode::Text => Incoming::Text(payload),
        _ => Incoming::Binary(payload),
    }
}

fn close(payload: &[u8]) -> Result<Incoming, DecodeError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(DecodeError::Protocol("a close payload of one byte")),
        [hi, lo, reason @ ..] => {
            let reason = std::str::from_utf8(reason)
                .map_err(|_| DecodeError::Protocol("a close reason that is not UTF-8"))?;
            Ok(Incoming::Close(Some((
                u16::from_be_bytes([*hi, *lo]),
                reason.to_owned(),
            ))))
        }
    }
}

/// XORs `data` with the repeating 4-byte `mask`, eight bytes at a time.
pub fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask) as u64;
    let wide = word | (word << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // Chunks start at multiples of 8, so the remainder starts at mask index 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Encodes a masked client frame (for clients and tests).
pub fn encode_client_frame(fin: bool, opcode: Opcode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = WsFrame::encode(opcode, payload).into_bytes().to_vec();
    if !fin {
        out[0] &= 0x7f;
    }
    out[1] |= 0x80;
    let header = out.len() - payload.len();
    out.splice(header..header, mask);
    unmask(&mut out[header + 4..], mask);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Incoming>, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = decoder.decode(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        assert_eq!(WsFrame::text(b"hi").bytes().as_ref(), b"\x81\x02hi");
        let medium = WsFrame::binary(&[0; 200]);
        assert_eq!(&medium.bytes()[..4], &[0x82, 126, 0, 200]);
        let large = WsFrame::binary(&[0; 70_000]);
        assert_eq!(large.bytes()[1], 127);
        assert_eq!(large.len(), 70_010);
    }

    #[test]
    fn close_reasons_are_cut_on_a_char_boundary() {
        let frame = WsFrame::close(4000, &"é".repeat(100));
        let payload = &frame.bytes()[2..];
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&payload[..2], &4000u16.to_be_bytes());
        assert!(std::str::from_utf8(&payload[2..]).is_ok());
    }

    #[test]
    fn control_frames_and_close() {
        let mut d = Decoder::new(1024);
        let mut bytes = encode_client_frame(true, Opcode::Ping, b"p", [1, 2, 3, 4]);
        bytes.extend(encode_client_frame(
            true,
            Opcode::Close,
            b"\x03\xe8bye",
            [9, 9, 9, 9],
        ));
        assert_eq!(
            decode_all(&mut d, &bytes).unwrap(),
            vec![
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Close(Some((1000, "bye".into())))
            ]
        );
    }

    #[test]
    fn protocol_violations() {
        let violation = |bytes: Vec<u8>| {
            matches!(
                decode_all(&mut Decoder::new(1024), &bytes),
                Err(DecodeError::Protocol(_))
            )
        };
        assert!(violation(WsFrame::text(b"unmasked").into_bytes().to_vec()));
        assert!(violation(vec![0x83, 0x80, 0, 0, 0, 0]), "opcode 3");
        assert!(violation(vec![0xc1, 0x80, 0, 0, 0, 0]), "RSV1");
        assert!(violation(encode_client_frame(
            false,
            Opcode::Ping,
            b"",
            [0; 4]
        )));
        assert!(violation(encode_client_frame(
            true,
            Opcode::Ping,
            &[0; 126],
            [0; 4]
        )));
        assert!(violation(encode_client_frame(
            true,
            Opcode::Continuation,
            b"x",
            [0; 4]
        )));
        let mut two_starts = encode_client_frame(false, Opcode::Text, b"a", [0; 4]);
        two_starts.extend(encode_client_frame(true, Opcode::Text, b"b", [0; 4]));
        assert!(violation(two_starts));
        assert!(violation(encode_client_frame(
            true,
            Opcode::Close,
            b"\x03",
            [0; 4]
        )));
    }

    #[test]
    fn the_limit_is_checked_from_the_header() {
        // Only the header arrived: the announced length alone is refused.
        let frame = encode_client_frame(true, Opcode::Binary, &[0; 2000], [1; 4]);
        let mut buf = BytesMut::from(&frame[..8]);
        let err = Decoder::new(1000).decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooLarge {
                size: 2000,
                limit: 1000
            }
        );
        // Fragments count together.
        let mut d = Decoder::new(1000);
        let mut bytes = encode_client_frame(false, Opcode::Binary, &[0; 600], [1; 4]);
        bytes.extend(encode_client_frame(
            true,
            Opcode::Continuation,
            &[0; 600],
            [1; 4],
        ));
        assert!(matches!(
            decode_all(&mut d, &bytes),
            Err(DecodeError::TooLarge { size: 1200, .. })
        ));
    }

    #[test]
    fn the_read_hint_covers_a_large_frame() {
        let frame = encode_client_frame(true, Opcode::Binary, &[7; 100_000], [1, 2, 3, 4]);
        let mut d = Decoder::new(1 << 20);
        let mut buf = BytesMut::from(&frame[..4096]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(d.need(), frame.len());
        buf.extend_from_slice(&frame[4096..]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Incoming::Binary(vec![7; 100_000].into()))
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any messages, fragmented anyhow, masked with any keys and delivered in any chunks,
        /// decode to the same messages.
        #[test]
        fn fragmented_masked_messages_round_trip(
            messages in prop::collection::vec((any::<bool>(), prop::collection::vec(any::<u8>(), 0..70_000), 1usize..4), 1..6),
            mask in any::<[u8; 4]>(),
            chunk in 1usize..5000,
        ) {
            let mut wire = Vec::new();
            let mut expected = Vec::new();
            for (text, payload, pieces) in &messages {
                let opcode = if *text { Opcode::Text } else { Opcode::Binary };
                let step = payload.len().div_ceil(*pieces).max(1);
                let parts: Vec<&[u8]> = if payload.is_empty() { vec![&[]] } else { payload.chunks(step).collect() };
                for (i, part) in parts.iter().enumerate() {
                    let op = if i == 0 { opcode } else { Opcode::Continuation };
                    wire.extend(encode_client_frame(i + 1 == parts.len(), op, part, mask));
                    if i == 0 && parts.len() > 1 {
                        // A ping may arrive between fragments.
                        wire.extend(encode_client_frame(true, Opcode::Ping, b"!", mask));
                        expected.push(Incoming::Ping(Bytes::from_static(b"!")));
                    }
                }
                let payload = Bytes::from(payload.clone());
                expected.push(if *text { Incoming::Text(payload) } else { Incoming::Binary(payload) });
            }
            let mut decoder = Decoder::new(1 << 20);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(m) = decoder.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(got, expected);
        }
    }
}
