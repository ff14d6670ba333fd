//! The Phoenix Channels V2 serializer.
//!
//! Text frames are JSON arrays `[join_ref, ref, topic, event, payload]`. Binary frames carry
//! raw bytes as the payload, behind a one-byte kind and length-prefixed strings:
//!
//! ```text
//! push (client → server)  [0][jr][ref][topic][event] join_ref ref topic event payload
//! push (server → client)  [0][jr][topic][event]      join_ref topic event payload
//! reply (server → client) [1][jr][ref][topic][status] join_ref ref topic status payload
//! broadcast (server → client) [2][topic][event]     topic event payload
//! ```
//!
//! Each bracketed length is one byte, so every string field is at most 255 bytes.
//! JSON payloads stay unparsed (`RawValue`) until a handler reads them as its own type, so a
//! frame is scanned once and user data is never rebuilt as a tree.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The text frame is not a five-element JSON array of the right types.
    #[error("malformed text frame: {0}")]
    Json(String),
    /// The binary frame is shorter than its header says.
    #[error("binary frame truncated")]
    Truncated,
    /// The binary frame starts with an unknown kind byte.
    #[error("unknown binary frame kind {0}")]
    UnknownKind(u8),
    /// A string field of a binary frame is not UTF-8.
    #[error("binary frame field is not UTF-8")]
    NotUtf8,
    /// A string field is longer than the 255 bytes a binary frame can carry.
    #[error("binary frame field `{0}` exceeds 255 bytes")]
    FieldTooLong(&'static str),
}

/// The payload of a frame: JSON (text frames) or bytes (binary frames).
#[derive(Debug, Clone)]
pub enum Payload {
    /// A JSON value, kept as its source text.
    Json(Box<RawValue>),
    /// Raw bytes from a binary push or broadcast.
    Binary(Bytes),
    /// A binary reply: the reply status and its raw response bytes.
    BinaryReply {
        /// `ok` or `error`.
        status: String,
        /// The response bytes.
        response: Bytes,
    },
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Payload::Json(a), Payload::Json(b)) => a.get() == b.get(),
            (Payload::Binary(a), Payload::Binary(b)) => a == b,
            (
                Payload::BinaryReply {
                    status: s1,
                    response: r1,
                },
                Payload::BinaryReply {
                    status: s2,
                    response: r2,
                },
            ) => s1 == s2 && r1 == r2,
            _ => false,
        }
    }
}

impl Payload {
    /// Serializes `value` as a JSON payload.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        Payload::Json(serde_json::value::to_raw_value(value).expect("payload serializes to JSON"))
    }

    /// The empty JSON object `{}`.
    pub fn empty() -> Self {
        Payload::Json(RawValue::from_string("{}".to_owned()).expect("valid JSON"))
    }

    /// Parses a JSON payload as `T`; binary payloads are an error.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        match self {
            Payload::Json(raw) => serde_json::from_str(raw.get()).map_err(|e| e.to_string()),
            _ => Err("expected a JSON payload, got binary".to_owned()),
        }
    }
}

/// One Phoenix frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The ref of the join this frame belongs to.
    pub join_ref: Option<String>,
    /// The ref a reply echoes; `None` for server pushes.
    pub reference: Option<String>,
    /// `phoenix` or `channel:<name>`.
    pub topic: String,
    /// The event name.
    pub event: String,
    /// JSON or bytes.
    pub payload: Payload,
}

const KIND_PUSH: u8 = 0;
const KIND_REPLY: u8 = 1;
const KIND_BROADCAST: u8 = 2;

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Ref {
    Text(String),
    Number(u64),
}

impl From<Ref> for String {
    fn from(r: Ref) -> String {
        match r {
            Ref::Text(s) => s,
            Ref::Number(n) => n.to_string(),
        }
    }
}

impl Frame {
    /// A frame with a JSON payload.
    pub fn new(
        join_ref: Option<String>,
        reference: Option<String>,
        topic: impl Into<String>,
        event: impl Into<String>,
        payload: Payload,
    ) -> Self {
        Frame {
            join_ref,
            reference,
            topic: topic.into(),
            event: event.into(),
            payload,
        }
    }

    /// Decodes a text frame. Refs may be strings, numbers or null.
    pub fn decode_text(text: &str) -> Result<Frame, FrameError> {
        type Wire = (Option<Ref>, Option<Ref>, String, String, Box<RawValue>);
        let (join_ref, reference, topic, event, payload): Wire =
            serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
        Ok(Frame {
            join_ref: join_ref.map(Into::into),
            reference: reference.map(Into::into),
            topic,
            event,
            payload: Payload::Json(payload),
        })
    }

    /// Encodes a JSON frame as text. Binary payloads must use the binary encoders.
    pub fn encode_text(&self) -> String {
        let payload: &RawValue = match &self.payload {
            Payload::Json(raw) => raw,
            _ => panic!("encode_text called on a binary payload"),
        };
        encode_text_parts(
            self.join_ref.as_deref(),
            self.reference.as_deref(),
            &self.topic,
            &self.event,
            payload.get(),
        )
    }

    /// Decodes a binary frame sent by a client (kind 0, a push with a ref).
    pub fn decode_client_binary(bytes: &Bytes) -> Result<Frame, FrameError> {
        let kind = *bytes.first().ok_or(FrameError::Truncated)?;
        if kind != KIND_PUSH {
            return Err(FrameError::UnknownKind(kind));
        }
        let mut r = Reader::new(bytes, 1);
        let sizes = r.sizes::<4>()?;
        let join_ref = r.string(sizes[0])?;
        let reference = r.string(sizes[1])?;
        let topic = r.string(sizes[2])?;
        let event = r.string(sizes[3])?;
        Ok(Frame {
            join_ref: non_empty(join_ref),
            reference: non_empty(reference),
            topic,
            event,
            payload: Payload::Binary(r.rest()),
        })
    }

    /// Encodes a client push with a binary payload (kind 0, with a ref).
    pub fn encode_client_binary(&self) -> Result<Bytes, FrameError> {
        let Payload::Binary(payload) = &self.payload else {
            panic!("encode_client_binary needs a binary payload");
        };
        let fields = [
            ("join_ref", self.join_ref.as_deref().unwrap_or("")),
            ("ref", self.reference.as_deref().unwrap_or("")),
            ("topic", self.topic.as_str()),
            ("event", self.event.as_str()),
        ];
        encode_binary(KIND_PUSH, &fields, payload)
    }

    /// Decodes a binary frame sent by the server (push, reply or broadcast).
    pub fn decode_server_binary(bytes: &Bytes) -> Result<Frame, FrameError> {
        let kind = *bytes.first().ok_or(FrameError::Truncated)?;
        let mut r = Reader::new(bytes, 1);
        match kind {
            KIND_PUSH => {
                let sizes = r.sizes::<3>()?;
                let join_ref = r.string(sizes[0])?;
                let topic = r.string(sizes[1])?;
                let event = r.string(sizes[2])?;
                Ok(Frame {
                    join_ref: non_empty(join_ref),
                    reference: None,
                    topic,
                    event,
                    payload: Payload::Binary(r.rest()),
                })
            }
            KIND_REPLY => {
                let sizes = r.sizes::<4>()?;
                let join_ref = r.string(sizes[0])?;
                let reference = r.string(sizes[1])?;
                let topic = r.string(sizes[2])?;
                let status = r.string(sizes[3])?;
                Ok(Frame {
                    join_ref: non_empty(join_ref),
                    reference: non_empty(reference),
                    topic,
                    event: crate::events::REPLY.to_owned(),
                    payload: Payload::BinaryReply {
                        status,
                        response: r.rest(),
                    },
                })
            }
            KIND_BROADCAST => {
                let sizes = r.sizes::<2>()?;
                let topic = r.string(sizes[0])?;
                let event = r.string(sizes[1])?;
                Ok(Frame {
                    join_ref: None,
                    reference: None,
                    topic,
                    event,
                    payload: Payload::Binary(r.rest()),
                })
            }
            other => Err(FrameError::UnknownKind(other)),
        }
    }

    /// Encodes a server frame with a binary payload: a push when it has a join ref, else a
    /// broadcast; a `BinaryReply` payload encodes as a reply.
    pub fn encode_server_binary(&self) -> Result<Bytes, FrameError> {
        match &self.payload {
            Payload::Json(_) => panic!("encode_server_binary needs a binary payload"),
            Payload::BinaryReply { status, response } => {
                let fields = [
                    ("join_ref", self.join_ref.as_deref().unwrap_or("")),
                    ("ref", self.reference.as_deref().unwrap_or("")),
                    ("topic", self.topic.as_str()),
                    ("status", status.as_str()),
                ];
                encode_binary(KIND_REPLY, &fields, response)
            }
            Payload::Binary(payload) => match &self.join_ref {
                Some(join_ref) => {
                    let fields = [
                        ("join_ref", join_ref.as_str()),
                        ("topic", self.topic.as_str()),
                        ("event", self.event.as_str()),
                    ];
                    encode_binary(KIND_PUSH, &fields, payload)
                }
                None => {
                    let fields = [
                        ("topic", self.topic.as_str()),
                        ("event", self.event.as_str()),
                    ];
                    encode_binary(KIND_BROADCAST, &fields, payload)
                }
            },
        }
    }
}

/// Encodes a text frame from parts; `payload_json` must be valid JSON. The hot path uses this
/// to encode a message once for every subscriber.
pub fn encode_text_parts(
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload_json: &str,
) -> String {
    let mut out = String::with_capacity(payload_json.len() + topic.len() + event.len() + 32);
    out.push('[');
    push_opt_str(&mut out, join_ref);
    out.push(',');
    push_opt_str(&mut out, reference);
    out.push(',');
    push_opt_str(&mut out, Some(topic));
    out.push(',');
    push_opt_str(&mut out, Some(event));
    out.push(',');
    out.push_str(payload_json);
    out.push(']');
    out
}

fn push_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        None => out.push_str("null"),
        Some(s) => out.push_str(&serde_json::to_string(s).expect("strings serialize")),
    }
}

fn encode_binary(
    kind: u8,
    fields: &[(&'static str, &str)],
    payload: &[u8],
) -> Result<Bytes, FrameError> {
    let header: usize = fields.iter().map(|(_, f)| f.len()).sum();
    let mut out = BytesMut::with_capacity(1 + fields.len() + header + payload.len());
    out.put_u8(kind);
    for (name, field) in fields {
        let len = u8::try_from(field.len()).map_err(|_| FrameError::FieldTooLong(name))?;
        out.put_u8(len);
    }
    for (_, field) in fields {
        out.put_slice(field.as_bytes());
    }
    out.put_slice(payload);
    Ok(out.freeze())
}

fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

struct Reader<'a> {
    bytes: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a Bytes, pos: usize) -> Self {
        Reader { bytes, pos }
    }

    fn sizes<const N: usize>(&mut self) -> Result<[usize; N], FrameError> {
        let slice = self
            .bytes
            .get(self.pos..self.pos + N)
            .ok_or(FrameError::Truncated)?;
        self.pos += N;
        let mut out = [0usize; N];
        for (o, b) in out.iter_mut().zip(slice) {
            *o = *b as usize;
        }
        Ok(out)
    }

    fn string(&mut self, len: usize) -> Result<String, FrameError> {
        let slice = self
            .bytes
            .get(self.pos..self.pos + len)
            .ok_or(FrameError::Truncated)?;
        self.pos += len;
        String::from_utf8(slice.to_vec()).map_err(|_| FrameError::NotUtf8)
    }

    fn rest(&self) -> Bytes {
        self.bytes.slice(self.pos..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phoenix_js_text_frame() {
        let f = Frame::decode_text(r#"["1","2","channel:lobby","phx_join",{"agent_name":"a"}]"#)
            .unwrap();
        assert_eq!(f.join_ref.as_deref(), Some("1"));
        assert_eq!(f.reference.as_deref(), Some("2"));
        assert_eq!(f.topic, "channel:lobby");
        assert_eq!(f.event, "phx_join");
        let heartbeat = Frame::decode_text(r#"[null,"3","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(heartbeat.join_ref, None);
        assert_eq!(
            heartbeat.encode_text(),
            r#"[null,"3","phoenix","heartbeat",{}]"#
        );
        let numeric = Frame::decode_text(r#"[1,2,"phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(numeric.reference.as_deref(), Some("2"));
    }

    #[test]
    fn malformed_text_frames() {
        for bad in [
            "",
            "[",
            "{}",
            "[1,2,3]",
            r#"[null,null,"t","e"]"#,
            r#"[null,null,1,"e",{}]"#,
        ] {
            assert!(Frame::decode_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phoenix_js_binary_push_layout() {
        // What phoenix.js binaryEncode produces for join_ref "1", ref "2", topic "t", event "e".
        let raw = Bytes::from_static(b"\x00\x01\x01\x01\x01" as &[u8]);
        let mut full = raw.to_vec();
        full.extend_from_slice(b"12te\xff\x00");
        let f = Frame::decode_client_binary(&Bytes::from(full.clone())).unwrap();
        assert_eq!(f.topic, "t");
        assert_eq!(f.event, "e");
        assert_eq!(f.payload, Payload::Binary(Bytes::from_static(b"\xff\x00")));
        assert_eq!(f.encode_client_binary().unwrap(), Bytes::from(full));
    }

    #[test]
    fn field_too_long() {
        let f = Frame::new(
            None,
            None,
            "t".repeat(256),
            "e",
            Payload::Binary(Bytes::new()),
        );
        assert_eq!(
            f.encode_server_binary(),
            Err(FrameError::FieldTooLong("topic"))
        );
    }

    fn field() -> impl Strategy<Value = String> {
        "[a-z0-9:_]{1,40}"
    }

    proptest! {
        #[test]
        fn text_round_trip(jr in proptest::option::of(field()), r in proptest::option::of(field()),
                           topic in field(), event in field(), s in ".{0,64}", n in any::<i64>()) {
            let payload = Payload::json(&serde_json::json!({"s": s, "n": n}));
            let f = Frame::new(jr, r, topic, event, payload);
            let back = Frame::decode_text(&f.encode_text()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn client_binary_round_trip(jr in proptest::option::of(field()), r in proptest::option::of(field()),
                                    topic in field(), event in field(), data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let f = Frame::new(jr, r, topic, event, Payload::Binary(Bytes::from(data)));
            let back = Frame::decode_client_binary(&f.encode_client_binary().unwrap()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn server_binary_round_trip(jr in proptest::option::of(field()), topic in field(), event in field(),
                                    data in proptest::collection::vec(any::<u8>(), 0..256)) {
            let f = Frame::new(jr, None, topic, event, Payload::Binary(Bytes::from(data)));
            let back = Frame::decode_server_binary(&f.encode_server_binary().unwrap()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn binary_reply_round_trip(jr in field(), r in field(), topic in field(),
                                   data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let f = Frame::new(Some(jr), Some(r), topic, crate::events::REPLY,
                Payload::BinaryReply { status: "ok".into(), response: Bytes::from(data) });
            let back = Frame::decode_server_binary(&f.encode_server_binary().unwrap()).unwrap();
            prop_assert_eq!(back, f);
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = Frame::decode_text(&s);
        }

        #[test]
        fn arbitrary_binary_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let b = Bytes::from(data);
            let _ = Frame::decode_client_binary(&b);
            let _ = Frame::decode_server_binary(&b);
        }
    }
}
