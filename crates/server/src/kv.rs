//! Channel storage: a durable key-value store per channel. Writes go through the store's writer
//! thread (so a compare-and-set is atomic and acknowledged writes are fsynced); reads use the
//! reader pool; expired entries read as absent and are deleted by the retention loop. After
//! each write the channel tells the agents that joined with `kv_events`.

use crate::App;
use crate::channel::Channel;
use crate::error::{Error, Result, err};
use crate::storage::{KvRefused, KvRow, KvWrite};
use serde_json::value::RawValue;
use switchboard_protocol::kv::{
    KvChange, KvEntry, KvKey, KvList, KvOp, KvPage, KvPut, MAX_KEY_LEN, MAX_LIST_LIMIT, valid_key,
};

fn check_key(key: &str) -> Result<()> {
    if valid_key(key) {
        Ok(())
    } else {
        Err(err!(
            InvalidPayload,
            "keys are 1-{MAX_KEY_LEN} bytes without control characters"
        ))
    }
}

fn entry(row: KvRow) -> Result<KvEntry> {
    Ok(KvEntry {
        value: RawValue::from_string(row.value).map_err(Error::internal)?,
        key: row.key,
        version: row.version,
        updated_at: row.updated_at,
        updated_by: row.updated_by,
        expires_at: row.expires_at,
    })
}

fn refused(key: &str, why: KvRefused, max_keys: usize) -> Error {
    match why {
        KvRefused::Conflict(current) => err!(
            VersionConflict,
            "{key:?} is at version {current}; read it again and retry"
        ),
        KvRefused::Full => err!(
            TooManyKeys,
            "the channel holds its maximum of {max_keys} keys; delete some first"
        ),
    }
}

/// Writes a key; returns the stored entry.
pub async fn put(app: &App, channel: &Channel, by: &str, req: KvPut) -> Result<KvEntry> {
    check_key(&req.key)?;
    let limits = &app.config.limits;
    let size = req.value.get().len();
    if size > limits.max_kv_value_bytes {
        return Err(err!(
            MessageTooLarge,
            "the value is {size} bytes; at most {}",
            limits.max_kv_value_bytes
        ));
    }
    let now = crate::now_ms();
    let expires_at = match req.ttl_secs {
        Some(0) => return Err(err!(InvalidPayload, "ttl_secs must be at least 1")),
        Some(ttl) => Some(now.saturating_add((ttl.min(u32::MAX as u64) as i64) * 1000)),
        None => None,
    };
    let (id, max_keys) = (channel.row.id, limits.max_kv_keys_per_channel);
    let written = app
        .store
        .kv_put(KvWrite {
            channel_id: id,
            key: req.key.clone(),
            value: req.value.get().to_owned(),
            expected: req.version,
            expires_at,
            by: by.to_owned(),
            now,
            max_keys,
        })
        .await?
        .map_err(|why| refused(&req.key, why, max_keys))?;
    let stored = entry(written)?;
    channel.kv_changed(&KvChange {
        key: stored.key.clone(),
        version: stored.version,
        value: Some(stored.value.clone()),
        updated_by: stored.updated_by.clone(),
        op: KvOp::Put,
    });
    Ok(stored)
}

/// Reads a key; `not_found` when absent or expired.
pub async fn get(app: &App, channel: &Channel, req: &KvKey) -> Result<KvEntry> {
    check_key(&req.key)?;
    let (id, key, now) = (channel.row.id, req.key.clone(), crate::now_ms());
    let row = app
        .store
        .kv_get(id, &key, now)
        .await?
        .ok_or_else(|| err!(NotFound, "no key {:?} in this channel", req.key))?;
    entry(row)
}

/// Deletes a key (compare-and-delete with `version`); `not_found` when there is none.
pub async fn delete(app: &App, channel: &Channel, by: &str, req: KvKey) -> Result<()> {
    check_key(&req.key)?;
    let (id, key, now) = (channel.row.id, req.key.clone(), crate::now_ms());
    let deleted = app
        .store
        .kv_delete(id, &key, req.version, now)
        .await?
        .map_err(|why| refused(&req.key, why, 0))?
        .ok_or_else(|| err!(NotFound, "no key {:?} in this channel", req.key))?;
    channel.kv_changed(&KvChange {
        key: req.key,
        version: deleted,
        value: None,
        updated_by: by.to_owned(),
        op: KvOp::Delete,
    });
    Ok(())
}

/// Lists keys in order by prefix, a page at a time.
pub async fn list(app: &App, channel: &Channel, req: KvList) -> Result<KvPage> {
    let limit = req.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(err!(InvalidPayload, "limit must be 1-{MAX_LIST_LIMIT}"));
    }
    let prefix = req.prefix.unwrap_or_default();
    let after = req.after.unwrap_or_default();
    if prefix.len() > MAX_KEY_LEN || after.len() > MAX_KEY_LEN {
        return Err(err!(
            InvalidPayload,
            "prefix and after are at most {MAX_KEY_LEN} bytes"
        ));
    }
    let (id, now) = (channel.row.id, crate::now_ms());
    // One more than asked tells whether another page follows.
    let mut rows = app
        .store
        .kv_list(id, &prefix, &after, limit + 1, now)
        .await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.key.clone())
    } else {
        None
    };
    Ok(KvPage {
        entries: rows.into_iter().map(entry).collect::<Result<_>>()?,
        next,
    })
}
