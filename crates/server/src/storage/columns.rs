//! How the database tier stores the fields of its rows that are not plain SQL values. Every
//! backend uses these encodings, so a row reads back the same from each and the bytes a
//! tenant stores count the same.

use super::rows::ChannelRow;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use switchboard_protocol::{CacheRetention, LogRetention, StoragePolicy};

/// Encodes a message's attachments into one blob (stored only when there are any):
/// `count: u32 | (len: u32 | bytes)*`, big-endian.
pub(crate) fn encode_attachments(list: &[Bytes]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.put_u32(list.len() as u32);
    for a in list {
        out.put_u32(a.len() as u32);
        out.put_slice(a);
    }
    out.to_vec()
}

/// Decodes a blob [`encode_attachments`] wrote; a truncated blob yields the attachments it
/// holds whole.
pub(crate) fn decode_attachments(mut raw: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    if raw.remaining() < 4 {
        return out;
    }
    let n = raw.get_u32();
    for _ in 0..n {
        if raw.remaining() < 4 {
            break;
        }
        let len = raw.get_u32() as usize;
        if raw.remaining() < len {
            break;
        }
        out.push(Bytes::copy_from_slice(&raw[..len]));
        raw.advance(len);
    }
    out
}

/// A channel's own tier limits, as the `tier_retention` column holds them (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct TierRetention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cache: Option<CacheRetention>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) log: Option<LogRetention>,
}

impl TierRetention {
    /// The column's value for `row` (`None` when the channel sets no limits of its own).
    pub(crate) fn column(row: &ChannelRow) -> Option<String> {
        (row.cache_retention.is_some() || row.log_retention.is_some()).then(|| {
            serde_json::to_string(&TierRetention {
                cache: row.cache_retention,
                log: row.log_retention,
            })
            .expect("limits serialize")
        })
    }

    /// Reads the column (an unreadable value counts as no limits).
    pub(crate) fn parse(column: Option<&str>) -> (Option<CacheRetention>, Option<LogRetention>) {
        match column.and_then(|t| serde_json::from_str::<TierRetention>(t).ok()) {
            Some(t) => (t.cache, t.log),
            None => (None, None),
        }
    }
}

/// A team channel's members, as the `members` column holds them (a JSON array).
pub(crate) fn members_column(members: &Option<Vec<String>>) -> Option<String> {
    members
        .as_ref()
        .map(|m| serde_json::to_string(m).expect("names serialize"))
}

/// Reads the `members` column.
pub(crate) fn parse_members(column: Option<&str>) -> Option<Vec<String>> {
    column.and_then(|m| serde_json::from_str(m).ok())
}

/// The storage policy as the `persistent` column holds it.
pub(crate) fn policy_column(policy: StoragePolicy) -> i64 {
    match policy {
        StoragePolicy::Ephemeral => 0,
        StoragePolicy::Persistent => 1,
        StoragePolicy::Cache => 2,
        StoragePolicy::Log => 3,
    }
}

/// Reads the `persistent` column.
pub(crate) fn policy_from_column(v: i64) -> StoragePolicy {
    match v {
        0 => StoragePolicy::Ephemeral,
        2 => StoragePolicy::Cache,
        3 => StoragePolicy::Log,
        _ => StoragePolicy::Persistent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip() {
        let list = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"\x00\xff"),
        ];
        assert_eq!(decode_attachments(&encode_attachments(&list)), list);
        assert!(decode_attachments(&[0, 0]).is_empty());
        // A truncated blob keeps the attachments before the cut.
        let blob = encode_attachments(&list);
        assert_eq!(decode_attachments(&blob[..blob.len() - 1]), list[..2]);
    }

    #[test]
    fn policies_round_trip() {
        for p in [
            StoragePolicy::Ephemeral,
            StoragePolicy::Persistent,
            StoragePolicy::Cache,
            StoragePolicy::Log,
        ] {
            assert_eq!(policy_from_column(policy_column(p)), p);
        }
    }
}
