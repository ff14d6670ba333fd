//! A log record and its binary encoding.
//!
//! On disk a record is `len: u32 | crc32: u32 | body`, big-endian, where the CRC covers the
//! body. The body starts with the record's position and kind; a message body then holds
//! the channel id, offset, timestamp, flags and the message's fields as length-prefixed
//! strings. Decoding checks every length against the body, so a torn or corrupted record is
//! an error, never a panic.

use crate::storage::InboxWrite;
use bytes::{Buf, BufMut, Bytes};
use serde_json::value::RawValue;
use std::sync::Arc;
use switchboard_protocol::Message;

/// Bytes before a record's body: its length and CRC.
pub(super) const HEADER: usize = 8;
/// The largest body accepted when reading (a message is at most a few MiB).
pub(super) const MAX_BODY: usize = 64 << 20;

const KIND_MESSAGE: u8 = 1;
const KIND_CHANNEL_DELETED: u8 = 2;

const FLAG_DATABASE: u8 = 1;
const FLAG_INBOX: u8 = 2;
const FLAG_RECEIPT: u8 = 4;
const FLAG_TO: u8 = 8;

/// One entry of the log.
#[derive(Debug, Clone)]
pub enum Record {
    /// A persisted message.
    Message(MessageRecord),
    /// The channel was deleted: records before this one no longer belong to any channel.
    ChannelDeleted {
        /// The deleted channel's id.
        channel_id: i64,
    },
}

/// A persisted message and where else it goes.
#[derive(Debug, Clone)]
pub struct MessageRecord {
    /// The channel's id.
    pub channel_id: i64,
    /// The message (with its offset).
    pub message: Arc<Message>,
    /// Whether the database tier keeps it too.
    pub to_database: bool,
    /// Set when the message also goes to its recipient's inbox.
    pub inbox: Option<InboxWrite>,
}

impl Record {
    /// The channel the record belongs to.
    pub fn channel_id(&self) -> i64 {
        match self {
            Record::Message(m) => m.channel_id,
            Record::ChannelDeleted { channel_id } => *channel_id,
        }
    }

    /// Appends the record (header and body) with `position` to `out`.
    pub(super) fn encode(&self, position: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        out.put_u64(position);
        match self {
            Record::ChannelDeleted { channel_id } => {
                out.put_u8(KIND_CHANNEL_DELETED);
                out.put_i64(*channel_id);
            }
            Record::Message(r) => {
                let m = &r.message;
                out.put_u8(KIND_MESSAGE);
                out.put_i64(r.channel_id);
                out.put_u64(m.offset.unwrap_or(0));
                out.put_i64(m.ts);
                let mut flags = 0;
                if r.to_database {
                    flags |= FLAG_DATABASE;
                }
                if let Some(inbox) = &r.inbox {
                    flags |= FLAG_INBOX;
                    if inbox.receipt {
                        flags |= FLAG_RECEIPT;
                    }
                }
                if m.to.is_some() {
                    flags |= FLAG_TO;
                }
                out.put_u8(flags);
                put_str(out, &m.channel);
                put_str(out, &m.id);
                put_str(out, &m.from);
                if let Some(to) = &m.to {
                    put_str(out, to);
                }
                put_str(out, &m.kind);
                put_str(out, m.data.get());
                if let Some(inbox) = &r.inbox {
                    put_str(out, &inbox.sender_tenant);
                }
                out.put_u32(m.attachments.len() as u32);
                for a in &m.attachments {
                    out.put_u32(a.len() as u32);
                    out.extend_from_slice(a);
                }
            }
        }
        let body_len = out.len() - start - HEADER;
        let crc = crc32fast::hash(&out[start + HEADER..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_be_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    }

    /// Decodes a body (after its header was read and its CRC checked): `(position, record)`.
    pub(super) fn decode(mut b: &[u8]) -> Result<(u64, Record), &'static str> {
        let position = get_u64(&mut b)?;
        let kind = get_u8(&mut b)?;
        let channel_id = get_u64(&mut b)? as i64;
        let record = match kind {
            KIND_CHANNEL_DELETED => Record::ChannelDeleted { channel_id },
            KIND_MESSAGE => {
                let offset = get_u64(&mut b)?;
                let ts = get_u64(&mut b)? as i64;
                let flags = get_u8(&mut b)?;
                let channel = get_str(&mut b)?;
                let id = get_str(&mut b)?;
                let from = get_str(&mut b)?;
                let to = if flags & FLAG_TO != 0 {
                    Some(get_str(&mut b)?)
                } else {
                    None
                };
                let kind = get_str(&mut b)?;
                let data = RawValue::from_string(get_str(&mut b)?).map_err(|_| "invalid data")?;
                let inbox = if flags & FLAG_INBOX != 0 {
                    Some(InboxWrite {
                        sender_tenant: get_str(&mut b)?.into(),
                        receipt: flags & FLAG_RECEIPT != 0,
                    })
                } else {
                    None
                };
                let n = get_u32(&mut b)? as usize;
                let mut attachments = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    let len = get_u32(&mut b)? as usize;
                    if b.remaining() < len {
                        return Err("truncated attachment");
                    }
                    attachments.push(Bytes::copy_from_slice(&b[..len]));
                    b.advance(len);
                }
                Record::Message(MessageRecord {
                    channel_id,
                    message: Arc::new(Message {
                        id,
                        offset: Some(offset),
                        channel,
                        from,
                        to,
                        kind,
                        data,
                        ts,
                        ephemeral: false,
                        attachments,
                    }),
                    to_database: flags & FLAG_DATABASE != 0,
                    inbox,
                })
            }
            _ => return Err("unknown record kind"),
        };
        Ok((position, record))
    }
}

/// Parses a header: `(body length, crc)`.
pub(super) fn header(h: [u8; HEADER]) -> (usize, u32) {
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    (len, crc)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_u32(s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

fn get_u8(b: &mut &[u8]) -> Result<u8, &'static str> {
    if b.remaining() < 1 {
        return Err("truncated record");
    }
    Ok(b.get_u8())
}

fn get_u32(b: &mut &[u8]) -> Result<u32, &'static str> {
    if b.remaining() < 4 {
        return Err("truncated record");
    }
    Ok(b.get_u32())
}

fn get_u64(b: &mut &[u8]) -> Result<u64, &'static str> {
    if b.remaining() < 8 {
        return Err("truncated record");
    }
    Ok(b.get_u64())
}

fn get_str(b: &mut &[u8]) -> Result<String, &'static str> {
    let len = get_u32(b)? as usize;
    if b.remaining() < len {
        return Err("truncated string");
    }
    let s = std::str::from_utf8(&b[..len]).map_err(|_| "invalid utf-8")?;
    b.advance(len);
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: Option<&str>) -> Message {
        Message {
            id: "m1".into(),
            offset: Some(7),
            channel: "room".into(),
            from: "alice".into(),
            to: to.map(str::to_owned),
            kind: "chat".into(),
            data: RawValue::from_string("{\"x\":1}".into()).unwrap(),
            ts: 1_700_000_000_000,
            ephemeral: false,
            attachments: vec![Bytes::from_static(b"\x00\x01"), Bytes::new()],
        }
    }

    fn round_trip(record: &Record) -> (u64, Record) {
        let mut out = Vec::new();
        record.encode(42, &mut out);
        let (len, crc) = header(out[..HEADER].try_into().unwrap());
        assert_eq!(len, out.len() - HEADER);
        assert_eq!(crc, crc32fast::hash(&out[HEADER..]));
        Record::decode(&out[HEADER..]).unwrap()
    }

    #[test]
    fn messages_round_trip() {
        for to in [None, Some("bob")] {
            let record = Record::Message(MessageRecord {
                channel_id: 3,
                message: Arc::new(message(to)),
                to_database: true,
                inbox: to.map(|_| InboxWrite {
                    sender_tenant: "t1".into(),
                    receipt: true,
                }),
            });
            let (position, back) = round_trip(&record);
            assert_eq!(position, 42);
            let (Record::Message(a), Record::Message(b)) = (&record, &back) else {
                panic!("kind changed");
            };
            assert_eq!(a.message, b.message);
            assert_eq!(a.to_database, b.to_database);
            assert_eq!(
                a.inbox
                    .as_ref()
                    .map(|i| (i.sender_tenant.clone(), i.receipt)),
                b.inbox
                    .as_ref()
                    .map(|i| (i.sender_tenant.clone(), i.receipt))
            );
        }
        let (_, back) = round_trip(&Record::ChannelDeleted { channel_id: 9 });
        assert!(matches!(back, Record::ChannelDeleted { channel_id: 9 }));
    }

    #[test]
    fn truncated_bodies_are_errors() {
        let mut out = Vec::new();
        Record::Message(MessageRecord {
            channel_id: 3,
            message: Arc::new(message(Some("bob"))),
            to_database: false,
            inbox: None,
        })
        .encode(1, &mut out);
        for cut in HEADER..out.len() - 1 {
            assert!(Record::decode(&out[HEADER..cut]).is_err(), "cut at {cut}");
        }
    }
}
