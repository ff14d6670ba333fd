//! Messages, publishes and acknowledgements, and the binary envelope for attachments.
//!
//! A message with attachments travels in a binary frame whose payload is
//! `[u32 big-endian header length][header JSON][attachment bytes…]`; the header is the
//! message (or publish) without its attachments plus `attachment_sizes`, the byte length of
//! each attachment in order. In JSON (history replies, HTTP) attachments are base64 strings.

use crate::Millis;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A message as delivered to agents and stored in history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Client-chosen or server-generated id; unique per channel within the dedup window.
    pub id: String,
    /// Position in the channel's total order; absent for ephemeral messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The channel name.
    pub channel: String,
    /// The sending agent (`http` for messages published over the HTTP API without a name).
    pub from: String,
    /// The addressed agent; absent for broadcasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Application-defined event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Any JSON value, kept as text.
    pub data: Box<RawValue>,
    /// Server receive time, milliseconds since the Unix epoch.
    pub ts: Millis,
    /// Ephemeral messages are never stored or replayed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Binary attachments (base64 in JSON).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "base64_list")]
    pub attachments: Vec<Bytes>,
}

impl PartialEq for Message {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.offset == o.offset
            && self.channel == o.channel
            && self.from == o.from
            && self.to == o.to
            && self.kind == o.kind
            && self.data.get() == o.data.get()
            && self.ts == o.ts
            && self.ephemeral == o.ephemeral
            && self.attachments == o.attachments
    }
}

impl Message {
    /// Parses `data` as `T`.
    pub fn data_as<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.data.get())
    }

    /// Total size counted against `max_message_bytes`: data plus attachments.
    pub fn body_len(&self) -> usize {
        self.data.get().len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Encodes the binary envelope of this message (for frames with attachments).
    pub fn encode_envelope(&self) -> Bytes {
        let header = MessageHeader {
            id: &self.id,
            offset: self.offset,
            channel: &self.channel,
            from: &self.from,
            to: self.to.as_deref(),
            kind: &self.kind,
            data: &self.data,
            ts: self.ts,
            ephemeral: self.ephemeral,
            attachment_sizes: self.attachments.iter().map(Bytes::len).collect(),
        };
        envelope(&header, &self.attachments)
    }

    /// Decodes a binary envelope into a message.
    pub fn decode_envelope(bytes: &Bytes) -> Result<Message, String> {
        #[derive(Deserialize)]
        struct Header {
            id: String,
            #[serde(default)]
            offset: Option<u64>,
            channel: String,
            from: String,
            #[serde(default)]
            to: Option<String>,
            #[serde(rename = "type")]
            kind: String,
            data: Box<RawValue>,
            ts: Millis,
            #[serde(default)]
            ephemeral: bool,
            #[serde(default)]
            attachment_sizes: Vec<usize>,
        }
        let h: Header = split_envelope(bytes)?;
        let mut msg = Message {
            id: h.id,
            offset: h.offset,
            channel: h.channel,
            from: h.from,
            to: h.to,
            kind: h.kind,
            data: h.data,
            ts: h.ts,
            ephemeral: h.ephemeral,
            attachments: Vec::new(),
        };
        let sizes = h.attachment_sizes;
        msg.attachments = slice_attachments(bytes, &sizes)?;
        Ok(msg)
    }
}

#[derive(Serialize)]
struct MessageHeader<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    channel: &'a str,
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a RawValue,
    ts: Millis,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ephemeral: bool,
    attachment_sizes: Vec<usize>,
}

fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("valid JSON")
}

/// A publish request: the `publish` event's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Publish {
    /// Application-defined event type (1–128 bytes).
    #[serde(rename = "type")]
    pub kind: String,
    /// Any JSON value.
    #[serde(default = "null")]
    pub data: Box<RawValue>,
    /// Deliver only to this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Deliver to connected agents only; never store.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ephemeral: bool,
    /// Client-chosen id: a retry with the same id is acknowledged with the original offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Binary attachments (base64 in JSON; raw in the binary envelope).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "base64_list")]
    pub attachments: Vec<Bytes>,
    /// With `to`: send this agent `receipt` events as the recipient's inbox handles it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub receipt: bool,
}

impl Publish {
    /// A broadcast of `kind` with JSON `data`.
    pub fn new(kind: impl Into<String>, data: &impl Serialize) -> Self {
        Publish {
            kind: kind.into(),
            data: serde_json::value::to_raw_value(data).expect("data serializes to JSON"),
            to: None,
            ephemeral: false,
            id: None,
            attachments: Vec::new(),
            receipt: false,
        }
    }

    /// Size counted against `max_message_bytes`.
    pub fn body_len(&self) -> usize {
        self.data.get().len() + self.attachments.iter().map(Bytes::len).sum::<usize>()
    }

    /// Encodes the binary envelope of this publish (for pushes with attachments).
    pub fn encode_envelope(&self) -> Bytes {
        #[derive(Serialize)]
        struct Header<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            data: &'a RawValue,
            #[serde(skip_serializing_if = "Option::is_none")]
            to: Option<&'a str>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            ephemeral: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            receipt: bool,
            attachment_sizes: Vec<usize>,
        }
        let header = Header {
            kind: &self.kind,
            data: &self.data,
            to: self.to.as_deref(),
            ephemeral: self.ephemeral,
            id: self.id.as_deref(),
            receipt: self.receipt,
            attachment_sizes: self.attachments.iter().map(Bytes::len).collect(),
        };
        envelope(&header, &self.attachments)
    }

    /// Decodes a binary publish envelope.
    pub fn decode_envelope(bytes: &Bytes) -> Result<Publish, String> {
        #[derive(Deserialize)]
        struct Header {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default = "null")]
            data: Box<RawValue>,
            #[serde(default)]
            to: Option<String>,
            #[serde(default)]
            ephemeral: bool,
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            receipt: bool,
            #[serde(default)]
            attachment_sizes: Vec<usize>,
        }
        let h: Header = split_envelope(bytes)?;
        let mut publish = Publish {
            kind: h.kind,
            data: h.data,
            to: h.to,
            ephemeral: h.ephemeral,
            id: h.id,
            attachments: Vec::new(),
            receipt: h.receipt,
        };
        let sizes = h.attachment_sizes;
        publish.attachments = slice_attachments(bytes, &sizes)?;
        Ok(publish)
    }
}

/// The reply to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// The message id (the client's, or one the server generated).
    pub id: String,
    /// The offset of a persisted message; absent for ephemeral ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// True when the id was seen before: this is the original message's offset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

fn envelope<H: Serialize>(header: &H, attachments: &[Bytes]) -> Bytes {
    let json = serde_json::to_vec(header).expect("header serializes");
    let total = 4 + json.len() + attachments.iter().map(Bytes::len).sum::<usize>();
    let mut out = BytesMut::with_capacity(total);
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    for a in attachments {
        out.put_slice(a);
    }
    out.freeze()
}

fn split_envelope<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    let len_bytes: [u8; 4] = bytes
        .get(..4)
        .ok_or("binary envelope shorter than its 4-byte header length")?
        .try_into()
        .expect("four bytes");
    let len = u32::from_be_bytes(len_bytes) as usize;
    let header = bytes
        .get(4..4 + len)
        .ok_or("binary envelope header truncated")?;
    serde_json::from_slice(header).map_err(|e| format!("binary envelope header: {e}"))
}

fn slice_attachments(bytes: &Bytes, sizes: &[usize]) -> Result<Vec<Bytes>, String> {
    if sizes.len() > crate::limits::MAX_ATTACHMENTS {
        return Err(format!(
            "at most {} attachments",
            crate::limits::MAX_ATTACHMENTS
        ));
    }
    let header_len = u32::from_be_bytes(bytes[..4].try_into().expect("checked")) as usize;
    let mut pos = 4 + header_len;
    let mut out = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let end = pos.checked_add(size).ok_or("attachment size overflows")?;
        if end > bytes.len() {
            return Err("attachment_sizes exceed the frame".to_owned());
        }
        out.push(bytes.slice(pos..end));
        pos = end;
    }
    if pos != bytes.len() {
        return Err("bytes left over after the attachments".to_owned());
    }
    Ok(out)
}

/// Serde helpers for a list of byte strings as base64 strings (attachments in JSON).
pub mod base64_list {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Serializes each item as a standard base64 string.
    pub fn serialize<S: Serializer>(list: &[Bytes], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for b in list {
            seq.serialize_element(&STANDARD.encode(b))?;
        }
        seq.end()
    }

    /// Parses a list of standard base64 strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Bytes>, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.into_iter()
            .map(|s| {
                STANDARD
                    .decode(s)
                    .map(Bytes::from)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(attachments: Vec<Bytes>, to: Option<String>, offset: Option<u64>) -> Message {
        Message {
            id: "m1".into(),
            offset,
            channel: "room".into(),
            from: "alice".into(),
            to,
            kind: "chat".into(),
            data: serde_json::value::to_raw_value(&serde_json::json!({"text": "hi"})).unwrap(),
            ts: 1_700_000_000_000,
            ephemeral: offset.is_none(),
            attachments,
        }
    }

    #[test]
    fn publish_defaults() {
        let p: Publish = serde_json::from_str(r#"{"type":"chat"}"#).unwrap();
        assert_eq!(p.data.get(), "null");
        assert!(!p.ephemeral && p.to.is_none() && p.id.is_none() && p.attachments.is_empty());
        assert!(serde_json::from_str::<Publish>(r#"{"data":1}"#).is_err());
    }

    #[test]
    fn envelope_errors() {
        assert!(Publish::decode_envelope(&Bytes::from_static(b"\x00\x00")).is_err());
        assert!(Publish::decode_envelope(&Bytes::from_static(b"\x00\x00\x00\x09{}")).is_err());
        let mut bad = vec![0, 0, 0, 41];
        bad.extend_from_slice(br#"{"type":"t","attachment_sizes":[5,5,5,5]}"#);
        bad.extend_from_slice(b"abc");
        assert!(Publish::decode_envelope(&Bytes::from(bad)).is_err());
    }

    proptest! {
        #[test]
        fn message_json_round_trip(att in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
                                   to in proptest::option::of("[a-z]{1,8}"), offset in proptest::option::of(1u64..u64::MAX)) {
            let m = message(att.into_iter().map(Bytes::from).collect(), to, offset);
            let back: Message = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
            prop_assert_eq!(&back, &m);
            let back = Message::decode_envelope(&m.encode_envelope()).unwrap();
            prop_assert_eq!(back, m);
        }

        #[test]
        fn publish_envelope_round_trip(att in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
                                       id in proptest::option::of("[a-z0-9]{1,12}")) {
            let mut p = Publish::new("file", &serde_json::json!({"name": "x"}));
            p.id = id;
            p.attachments = att.into_iter().map(Bytes::from).collect();
            let back = Publish::decode_envelope(&p.encode_envelope()).unwrap();
            prop_assert_eq!(back.attachments, p.attachments);
            prop_assert_eq!(back.id, p.id);
            prop_assert_eq!(back.data.get(), p.data.get());
        }

        #[test]
        fn envelope_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let b = Bytes::from(data);
            let _ = Publish::decode_envelope(&b);
            let _ = Message::decode_envelope(&b);
        }
    }
}
