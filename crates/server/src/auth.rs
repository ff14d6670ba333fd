//! Tenants, original API keys and channel passwords.
//!
//! A key reads `sk_<id>_<secret>`: the id finds the record, the secret is checked against its
//! SHA-256 in constant time (secrets are 256 random bits, so a fast hash is the right tool).
//! Channel passwords are chosen by people, so they get Argon2id.

use crate::error::{Result, err};
use crate::storage::{KeyRow, SqliteStore, sqlite_queries};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use dashmap::DashMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

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

/// The key registry: every key record in memory, backed by the store.
pub struct Keys {
    store: Arc<SqliteStore>,
    keys: DashMap<String, KeyRow>,
    tenants: DashMap<String, ()>,
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

impl Keys {
    /// Loads every tenant and key from the store.
    pub fn load(store: Arc<SqliteStore>) -> Result<Self> {
        let (tenants, keys) = store.read_now(sqlite_queries::load_keys)?;
        Ok(Keys {
            store,
            keys: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            tenants: tenants.into_iter().map(|t| (t, ())).collect(),
        })
    }

    /// Whether no tenant exists yet (first start).
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Creates a key for `tenant_id` (creating the tenant if new); returns the key string,
    /// which is shown once and never stored.
    pub async fn create_key(&self, tenant_id: &str) -> Result<String> {
        if !switchboard_protocol::valid_name(tenant_id) {
            return Err(err!(
                InvalidPayload,
                "tenant ids follow the name rule: 1-128 of [A-Za-z0-9_.:@-]"
            ));
        }
        let id = random_id::<6>();
        let secret = random_id::<32>();
        let row = KeyRow {
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            secret_hash: Sha256::digest(secret.as_bytes()).to_vec(),
            revoked: false,
        };
        let stored = row.clone();
        let now = crate::now_ms();
        self.store
            .write(move |conn| sqlite_queries::insert_tenant_key(conn, &stored, now))
            .await?;
        self.tenants.insert(row.tenant_id.clone(), ());
        self.keys.insert(id.clone(), row);
        Ok(format!("sk_{id}_{secret}"))
    }

    /// Checks a key string; constant-time in the secret.
    pub fn verify(&self, key: &str) -> Result<Principal> {
        let invalid = || err!(InvalidKey, "the API key is unknown, malformed or revoked");
        let rest = key.strip_prefix("sk_").ok_or_else(invalid)?;
        let (id, secret) = rest.split_once('_').ok_or_else(invalid)?;
        let record = self.keys.get(id).ok_or_else(invalid)?;
        let hash = Sha256::digest(secret.as_bytes());
        let matches: bool = hash.as_slice().ct_eq(&record.secret_hash).into();
        if !matches || record.revoked {
            return Err(invalid());
        }
        Ok(Principal {
            tenant_id: record.tenant_id.as_str().into(),
            key_id: id.into(),
        })
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
