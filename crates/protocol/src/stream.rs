//! Streams: a large payload sent from one agent to another in a channel as ordered chunks,
//! closed by its SHA-256 and size. The server spools the bytes to disk as they arrive, so its
//! memory stays bounded whatever the size, and pushes them to the recipient at the pace the
//! recipient acknowledges. Either side may resume after a reconnect: the sender from the
//! position the server reports, the recipient from the last offset it acknowledged.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Largest chunk the SDKs send (the server accepts up to its frame limit).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 256;

/// `stream_open` push (the sender): start a stream, or find the position of one to resume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOpen {
    /// The recipient (an agent name in this channel).
    pub to: String,
    /// The id of a stream this agent opened before: resume it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    /// A name for the payload, e.g. a file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The total size, when known in advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Anything else the recipient should know (a JSON object, at most 4 KiB).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
}

/// Reply to `stream_open`, and to `stream_chunk`: where the stream stands on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// The stream.
    pub stream_id: String,
    /// The next chunk's `seq`.
    pub next_seq: u64,
    /// Bytes the server holds (the next chunk's first byte).
    pub offset: u64,
}

/// The header of a `stream_chunk` binary push: `u32 big-endian header length | header JSON |
/// chunk bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    /// The stream.
    pub stream_id: String,
    /// 0 for the first chunk, then one more per chunk.
    pub seq: u64,
}

/// `stream_close` push (the sender): no more chunks; the server checks both values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamClose {
    /// The stream.
    pub stream_id: String,
    /// Hex SHA-256 of the whole payload.
    pub checksum: String,
    /// Its size in bytes.
    pub total_size: u64,
}

/// `stream_cancel` push (either side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamCancel {
    /// The stream.
    pub stream_id: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `stream_accept` push (the recipient): send me the bytes from `offset` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAccept {
    /// The stream.
    pub stream_id: String,
    /// Where to start (the last offset it acknowledged, to resume; default 0).
    #[serde(default)]
    pub offset: u64,
}

/// `stream_ack` push (the recipient): everything before `offset` is safely received. Opens
/// the flow-control window, and is the recipient's checkpoint: a resume starts there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamAck {
    /// The stream.
    pub stream_id: String,
    /// Bytes received, from the start.
    pub offset: u64,
    /// After `stream_end`: the recipient has every byte and verified the checksum; the
    /// stream is complete (the sender is told, and the server forgets it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

/// `stream_offer` event (server → the recipient): a stream for it; `stream_accept` it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOffer {
    /// The stream.
    pub stream_id: String,
    /// The sending agent.
    pub from: String,
    /// The payload's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The size the sender announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The sender's metadata.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub meta: Map<String, Value>,
    /// What the recipient acknowledged already (a resume starts here).
    pub acked: u64,
}

/// The header of a `stream_data` binary push (server → recipient): `u32 big-endian header
/// length | header JSON | bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataHeader {
    /// The stream.
    pub stream_id: String,
    /// The offset of the first byte.
    pub offset: u64,
}

/// `stream_end` event (server → recipient), after the last `stream_data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// The stream.
    pub stream_id: String,
    /// Hex SHA-256 of the whole payload (verified by the server; verify it again).
    pub checksum: String,
    /// Its size.
    pub total_size: u64,
}

/// `stream_progress` event (server → sender): the recipient acknowledged `offset` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamProgress {
    /// The stream.
    pub stream_id: String,
    /// Bytes the recipient acknowledged.
    pub offset: u64,
}

/// `stream_checkpoint` event (server → sender): the bytes up to `offset` (chunks before
/// `next_seq`) are on disk; after a server restart the stream resumes from here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCheckpoint {
    /// The stream.
    pub stream_id: String,
    /// The first chunk not covered.
    pub next_seq: u64,
    /// Bytes covered.
    pub offset: u64,
}

/// `stream_error` event (server → both sides): the stream failed and is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamError {
    /// The stream.
    pub stream_id: String,
    /// A stable error code.
    pub code: crate::ErrorCode,
    /// What happened.
    pub message: String,
}

/// `stream_cancelled` event (server → both sides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCancelled {
    /// The stream.
    pub stream_id: String,
    /// The agent that cancelled it.
    pub by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `stream_complete` event (server → sender): the recipient acknowledged every byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamComplete {
    /// The stream.
    pub stream_id: String,
    /// Its size.
    pub total_size: u64,
}

/// Builds a `u32 | header JSON | bytes` envelope.
pub fn encode<H: Serialize>(header: &H, bytes: &[u8]) -> Bytes {
    let json = serde_json::to_vec(header).expect("headers serialize");
    let mut out = BytesMut::with_capacity(4 + json.len() + bytes.len());
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    out.put_slice(bytes);
    out.freeze()
}

/// Splits a `u32 | header JSON | bytes` envelope.
pub fn decode<H: serde::de::DeserializeOwned>(envelope: &Bytes) -> Result<(H, Bytes), String> {
    if envelope.len() < 4 {
        return Err("envelope shorter than its length prefix".into());
    }
    let len = u32::from_be_bytes(envelope[..4].try_into().expect("4 bytes")) as usize;
    let end = 4usize
        .checked_add(len)
        .filter(|end| *end <= envelope.len())
        .ok_or("header length exceeds the envelope")?;
    let header = serde_json::from_slice(&envelope[4..end]).map_err(|e| format!("header: {e}"))?;
    Ok((header, envelope.slice(end..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_reject_garbage() {
        let header = ChunkHeader {
            stream_id: "s1".into(),
            seq: 7,
        };
        let env = encode(&header, b"abc");
        let (back, bytes): (ChunkHeader, Bytes) = decode(&env).unwrap();
        assert_eq!((back, &bytes[..]), (header, &b"abc"[..]));
        assert!(decode::<ChunkHeader>(&Bytes::from_static(b"\0\0")).is_err());
        assert!(decode::<ChunkHeader>(&Bytes::from_static(b"\0\0\0\x09{}")).is_err());
        assert!(decode::<ChunkHeader>(&Bytes::from_static(b"\0\0\0\x02{}")).is_err());
    }
}
