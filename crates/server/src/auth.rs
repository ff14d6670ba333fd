//! Tenants, original API keys, admin keys and channel passwords.
//!
//! A tenant key reads `sk_<id>_<secret>`, an admin key `ak_<id>_<secret>`: the id finds the
//! record, the secret is checked against its SHA-256 in constant time (secrets are 256 random
//! bits, so a fast hash is the right tool). Admin keys manage tenants and keys and nothing else.
//! Channel passwords are chosen by people, so they get Argon2id.

use crate::error::{Result, err};
use crate::storage::{KeyRow, SqliteStore, TenantRow, sqlite_queries};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchboard_protocol::{KeyInfo, KeyKind, TenantInfo};

/// Name of the tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

/// Who a connection or request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant_id: Arc<str>,
    /// The key id used.
    pub key_id: Arc<str>,
}

/// The holder of a verified key of either kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An admin key: manages tenants and keys.
    Admin {
        /// The key id used.
        key_id: Arc<str>,
    },
    /// A tenant's key.
    Tenant(Principal),
}

/// A key just created: the only time its secret exists outside the caller.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The full key string, shown once.
    pub key: String,
    /// Its record.
    pub info: KeyInfo,
}

/// The key registry: every tenant and key record in memory, backed by the store.
pub struct Keys {
    store: Arc<SqliteStore>,
    keys: DashMap<String, KeyRow>,
    tenants: DashMap<String, TenantRow>,
}

/// Fills `buf` with random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source works");
    buf
}

/// A random lowercase hex id of `2 * N` characters.
pub fn random_id<const N: usize>() -> String {
    hex::encode(random_bytes::<N>())
}

fn key_info(row: &KeyRow) -> KeyInfo {
    KeyInfo {
        id: row.id.clone(),
        kind: if row.tenant_id.is_some() {
            KeyKind::Original
        } else {
            KeyKind::Admin
        },
        tenant: row.tenant_id.clone(),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
    }
}

impl Keys {
    /// Loads every tenant and key from the store.
    pub fn load(store: Arc<SqliteStore>) -> Result<Self> {
        let (tenants, keys) = store.read_now(sqlite_queries::load_keys)?;
        Ok(Keys {
            store,
            keys: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            tenants: tenants.into_iter().map(|t| (t.id.clone(), t)).collect(),
        })
    }

    /// Whether no tenant exists yet (first start).
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Whether a live admin key exists.
    pub fn has_admin_key(&self) -> bool {
        self.keys
            .iter()
            .any(|k| k.tenant_id.is_none() && k.revoked_at.is_none())
    }

    /// Creates a tenant; `tenant_exists` if the id is taken (even by a revoked tenant).
    pub async fn create_tenant(&self, id: &str) -> Result<TenantInfo> {
        if !switchboard_protocol::valid_name(id) {
            return Err(err!(
                InvalidPayload,
                "tenant ids follow the name rule: 1-128 of [A-Za-z0-9_.:@-]"
            ));
        }
        let row = TenantRow {
            id: id.to_owned(),
            created_at: crate::now_ms(),
            revoked_at: None,
        };
        let stored = row.clone();
        let inserted = self
            .store
            .write(move |conn| sqlite_queries::insert_tenant(conn, &stored))
            .await?;
        if !inserted {
            return Err(err!(TenantExists, "a tenant named {id:?} exists already"));
        }
        self.tenants.insert(row.id.clone(), row);
        Ok(self.tenant_info(id).expect("just inserted"))
    }

    /// Creates an original key for a live tenant.
    pub async fn create_key(&self, tenant_id: &str) -> Result<NewKey> {
        match self.tenants.get(tenant_id) {
            None => return Err(err!(NotFound, "no tenant named {tenant_id:?}")),
            Some(t) if t.revoked_at.is_some() => {
                return Err(err!(Forbidden, "tenant {tenant_id:?} is revoked"));
            }
            Some(_) => {}
        }
        self.insert_key(Some(tenant_id.to_owned())).await
    }

    /// Creates an admin key.
    pub async fn create_admin_key(&self) -> Result<NewKey> {
        self.insert_key(None).await
    }

    async fn insert_key(&self, tenant_id: Option<String>) -> Result<NewKey> {
        let mut id = random_id::<6>();
        while self.keys.contains_key(&id) {
            id = random_id::<6>();
        }
        let secret = random_id::<32>();
        let prefix = if tenant_id.is_some() { "sk" } else { "ak" };
        let row = KeyRow {
            id: id.clone(),
            tenant_id,
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            created_at: crate::now_ms(),
            revoked_at: None,
        };
        let stored = row.clone();
        self.store
            .write(move |conn| sqlite_queries::insert_key(conn, &stored))
            .await?;
        let info = key_info(&row);
        self.keys.insert(id.clone(), row);
        Ok(NewKey {
            key: format!("{prefix}_{id}_{secret}"),
            info,
        })
    }

    /// Revokes a key; the caller closes the connections using it.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyInfo> {
        if !self.keys.contains_key(id) {
            return Err(err!(NotFound, "no key with id {id:?}"));
        }
        let now = crate::now_ms();
        let stored = id.to_owned();
        self.store
            .write(move |conn| sqlite_queries::revoke_key(conn, &stored, now))
            .await?;
        let mut row = self.keys.get_mut(id).expect("checked above");
        row.revoked_at.get_or_insert(now);
        Ok(key_info(&row))
    }

    /// Revokes a tenant and all its keys; the caller closes the connections.
    pub async fn revoke_tenant(&self, id: &str) -> Result<TenantInfo> {
        if !self.tenants.contains_key(id) {
            return Err(err!(NotFound, "no tenant named {id:?}"));
        }
        let now = crate::now_ms();
        let stored = id.to_owned();
        self.store
            .write(move |conn| sqlite_queries::revoke_tenant(conn, &stored, now))
            .await?;
        if let Some(mut t) = self.tenants.get_mut(id) {
            t.revoked_at.get_or_insert(now);
        }
        for mut key in self.keys.iter_mut() {
            if key.tenant_id.as_deref() == Some(id) {
                key.revoked_at.get_or_insert(now);
            }
        }
        Ok(self.tenant_info(id).expect("exists"))
    }

    /// One tenant with its key count.
    pub fn tenant_info(&self, id: &str) -> Option<TenantInfo> {
        let t = self.tenants.get(id)?;
        let live_keys = self
            .keys
            .iter()
            .filter(|k| k.tenant_id.as_deref() == Some(id) && k.revoked_at.is_none())
            .count();
        Some(TenantInfo {
            id: t.id.clone(),
            created_at: t.created_at,
            revoked_at: t.revoked_at,
            live_keys,
        })
    }

    /// Every tenant, by id.
    pub fn tenants(&self) -> Vec<TenantInfo> {
        let mut ids: Vec<String> = self.tenants.iter().map(|t| t.id.clone()).collect();
        ids.sort();
        ids.iter().filter_map(|id| self.tenant_info(id)).collect()
    }

    /// The keys of one tenant, or every key (admin keys included) with `None`; oldest first.
    pub fn keys(&self, tenant: Option<&str>) -> Vec<KeyInfo> {
        let mut keys: Vec<KeyInfo> = self
            .keys
            .iter()
            .filter(|k| tenant.is_none() || k.tenant_id.as_deref() == tenant)
            .map(|k| key_info(&k))
            .collect();
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// One key's record.
    pub fn key(&self, id: &str) -> Option<KeyInfo> {
        self.keys.get(id).map(|k| key_info(&k))
    }

    /// Whether a key (and its tenant) is still live.
    pub fn is_live(&self, key_id: &str) -> bool {
        self.keys
            .get(key_id)
            .is_some_and(|k| k.revoked_at.is_none())
    }

    /// Checks a key string of either kind; constant-time in the secret.
    pub fn verify_any(&self, key: &str) -> Result<Caller> {
        let invalid = || err!(InvalidKey, "the API key is unknown, malformed or revoked");
        let (prefix, rest) = key.split_once('_').ok_or_else(invalid)?;
        let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
        let record = self.keys.get(id).ok_or_else(invalid)?;
        let hash = Sha256::digest(secret.as_bytes());
        let matches: bool = hash.as_slice().ct_eq(&record.secret_hash).into();
        if !matches || record.revoked_at.is_some() {
            return Err(invalid());
        }
        match (prefix, &record.tenant_id) {
            ("sk", Some(tenant)) => Ok(Caller::Tenant(Principal {
                tenant_id: tenant.as_str().into(),
                key_id: id.into(),
            })),
            ("ak", None) => Ok(Caller::Admin { key_id: id.into() }),
            _ => Err(invalid()),
        }
    }

    /// Checks a tenant key; an admin key is refused with `forbidden`.
    pub fn verify(&self, key: &str) -> Result<Principal> {
        match self.verify_any(key)? {
            Caller::Tenant(principal) => Ok(principal),
            Caller::Admin { .. } => Err(err!(
                Forbidden,
                "admin keys manage tenants and keys only; use a tenant key"
            )),
        }
    }
}

/// Hashes a channel password with Argon2id (CPU-heavy: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String> {
    let salt =
        SaltString::encode_b64(&random_bytes::<16>()).map_err(crate::error::Error::internal)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(crate::error::Error::internal)
}

/// Checks a password against an Argon2id PHC string (CPU-heavy: call from a blocking thread).
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            argon2::Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("S3cret", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }
}
