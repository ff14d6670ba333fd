//! Tenants, original API keys, admin keys, temporary keys and channel passwords.
//!
//! A tenant key reads `sk_<id>_<secret>`, an admin key `ak_<id>_<secret>`: the id finds the
//! record, the secret is checked against its SHA-256 in constant time (secrets are 256 random
//! bits, so a fast hash is the right tool). Admin keys manage tenants and keys and nothing else.
//! Temporary keys (`tk_…`, [`temporary`]) are signed tokens minted from an original key; the
//! server keeps a record of each only to list and revoke it.
//! Channel passwords are chosen by people, so they get Argon2id.

pub mod temporary;

use crate::error::{Result, err};
use crate::storage::{Database, KeyRow, TemporaryRow, TenantRow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use dashmap::DashMap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use switchboard_protocol::limits::MAX_TYPE_LEN;
use switchboard_protocol::{
    Capability, CreateTemporaryKey, KeyInfo, KeyKind, Millis, Scope, TemporaryKey, TenantInfo,
    valid_name,
};
use temporary::{Authority, Request, Token};

/// Name of the tenant created on first start.
pub const DEFAULT_TENANT: &str = "default";

/// Who a connection or request acts for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant.
    pub tenant_id: Arc<str>,
    /// The key id used.
    pub key_id: Arc<str>,
    /// For a temporary key: what it grants, the original key it came from, its expiry.
    pub grant: Option<Arc<Grant>>,
}

/// Most authorization decisions a connection remembers (the cache starts over when full).
const MAX_DECISIONS: usize = 256;

/// A verified temporary key and the decisions made on it so far: each distinct request runs
/// the token's Datalog once, then costs a map lookup until the key expires.
#[derive(Debug)]
pub struct Grant {
    token: Token,
    decisions: Mutex<HashMap<Request, bool>>,
}

impl Grant {
    /// The original key this temporary key was minted from.
    pub fn parent(&self) -> &str {
        &self.token.parent
    }

    /// When the key expires, ms since the epoch.
    pub fn expires_at(&self) -> Millis {
        self.token.expires_at
    }
}

impl Principal {
    /// Whether this key may make `request`: always for original keys; for temporary keys
    /// what the token says (`forbidden`, or `key_expired`).
    pub fn allow(&self, request: Request) -> Result<()> {
        let Some(grant) = &self.grant else {
            return Ok(());
        };
        if crate::now_ms() > grant.token.expires_at {
            return Err(err!(KeyExpired, "the temporary key expired; refresh it"));
        }
        let cached = grant.decisions.lock().get(&request).copied();
        let allowed = match cached {
            Some(allowed) => allowed,
            None => {
                let decision = grant.token.authorize(&request);
                if let Err(e) = &decision
                    && e.code != switchboard_protocol::ErrorCode::Forbidden
                {
                    return decision;
                }
                let mut decisions = grant.decisions.lock();
                if decisions.len() >= MAX_DECISIONS {
                    decisions.clear();
                }
                decisions.insert(request.clone(), decision.is_ok());
                decision.is_ok()
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(err!(
                Forbidden,
                "this temporary key does not allow {} here",
                request.operation.as_str()
            ))
        }
    }

    /// Refuses temporary keys (for what only original keys do: keys, channel management).
    pub fn original_only(&self, what: &str) -> Result<()> {
        match self.grant {
            None => Ok(()),
            Some(_) => Err(err!(
                Forbidden,
                "{what} needs an original key, not a temporary one"
            )),
        }
    }

    /// The original key this principal's usage counts for: its own, or a temporary key's parent.
    pub fn usage_key(&self) -> &str {
        match &self.grant {
            Some(grant) => grant.parent(),
            None => &self.key_id,
        }
    }

    /// Whether revoking `key_id` reaches this principal (its key, or the key it came from).
    pub fn uses_key(&self, key_id: &str) -> bool {
        &*self.key_id == key_id || self.grant.as_ref().is_some_and(|g| g.parent() == key_id)
    }
}

/// The holder of a verified key of either kind.
#[derive(Debug, Clone)]
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
    store: Arc<dyn Database>,
    keys: DashMap<String, KeyRow>,
    tenants: DashMap<String, TenantRow>,
    /// Temporary keys not yet expired.
    temporary: DashMap<String, TemporaryRow>,
    authority: Authority,
    /// Runs after every change (a cluster tells the other nodes to reload).
    on_change: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// The setting holding the root key that signs temporary keys.
const ROOT_KEY_SETTING: &str = "temporary_key_root";
/// Most entries in each list of a temporary key request.
const MAX_GRANT_ENTRIES: usize = 64;

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

fn temporary_info(row: &TemporaryRow) -> KeyInfo {
    KeyInfo {
        id: row.id.clone(),
        kind: KeyKind::Temporary,
        tenant: Some(row.tenant_id.clone()),
        created_at: row.created_at,
        revoked_at: row.revoked_at,
        expires_at: Some(row.expires_at),
        parent: Some(row.parent.clone()),
    }
}

fn key_info(row: &KeyRow) -> KeyInfo {
    KeyInfo {
        expires_at: None,
        parent: None,
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
    /// Loads every tenant and key from the store, and the root key of temporary keys
    /// (creating it on first use).
    pub async fn load(store: Arc<dyn Database>) -> Result<Self> {
        let now = crate::now_ms();
        let (tenants, keys) = store.load_keys().await?;
        let temporary = store.load_temporary(now).await?;
        let root = store.get_setting(ROOT_KEY_SETTING).await?;
        let authority = match root {
            Some(stored) => Authority::from_stored(&stored)?,
            None => {
                // Nodes sharing a database that start at once keep whichever was first.
                let (_, generated) = Authority::generate();
                let stored = store.init_setting(ROOT_KEY_SETTING, &generated).await?;
                Authority::from_stored(&stored)?
            }
        };
        Ok(Keys {
            store,
            keys: keys.into_iter().map(|k| (k.id.clone(), k)).collect(),
            tenants: tenants.into_iter().map(|t| (t.id.clone(), t)).collect(),
            temporary: temporary.into_iter().map(|t| (t.id.clone(), t)).collect(),
            authority,
            on_change: std::sync::OnceLock::new(),
        })
    }

    /// Runs `f` after every change of a tenant or key made here.
    pub fn on_change(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_change.set(f);
    }

    fn changed(&self) {
        if let Some(f) = self.on_change.get() {
            f();
        }
    }

    /// Reads every tenant and key again (another node changed them).
    pub async fn reload(&self) -> Result<()> {
        let now = crate::now_ms();
        let (tenants, keys) = self.store.load_keys().await?;
        let temporary = self.store.load_temporary(now).await?;
        for t in tenants {
            self.tenants.insert(t.id.clone(), t);
        }
        for k in keys {
            self.keys.insert(k.id.clone(), k);
        }
        for t in temporary {
            self.temporary.insert(t.id.clone(), t);
        }
        Ok(())
    }

    /// The public key verifying temporary keys (`ed25519/<hex>`).
    pub fn temporary_public_key(&self) -> String {
        self.authority.public_key().to_string()
    }

    /// Mints a temporary key for an original key's holder.
    pub async fn mint(
        &self,
        minter: &Principal,
        request: CreateTemporaryKey,
        max_ttl_secs: u64,
    ) -> Result<TemporaryKey> {
        minter.original_only("minting a temporary key")?;
        validate_grant(&request, max_ttl_secs)?;
        let mut id = random_id::<8>();
        while self.temporary.contains_key(&id) || self.keys.contains_key(&id) {
            id = random_id::<8>();
        }
        let now = crate::now_ms();
        let expires_at = now + (request.ttl_secs as Millis) * 1000;
        let mut capabilities = request.capabilities.clone();
        capabilities.sort();
        capabilities.dedup();
        let key = self.authority.mint(&temporary::Mint {
            tenant: minter.tenant_id.to_string(),
            parent: minter.key_id.to_string(),
            id: id.clone(),
            expires_at,
            capabilities,
            agent_names: request.agent_names,
            channels: request.channels,
            event_types: request.event_types,
            scope: request.scope,
            read_only: request.read_only,
        })?;
        let row = TemporaryRow {
            id: id.clone(),
            tenant_id: minter.tenant_id.to_string(),
            parent: minter.key_id.to_string(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        let stored = row.clone();
        self.store.insert_temporary(stored).await?;
        self.temporary.insert(id.clone(), row);
        self.changed();
        Ok(TemporaryKey {
            key,
            id,
            expires_at,
        })
    }

    /// Forgets temporary keys that expired (their rows too).
    pub async fn prune_expired(&self) -> Result<()> {
        let now = crate::now_ms();
        self.temporary.retain(|_, t| t.expires_at >= now);
        self.store.prune_temporary(now).await
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
        let inserted = self.store.insert_tenant(stored).await?;
        if !inserted {
            return Err(err!(TenantExists, "a tenant named {id:?} exists already"));
        }
        self.tenants.insert(row.id.clone(), row);
        self.changed();
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
        self.store.insert_key(stored).await?;
        let info = key_info(&row);
        self.keys.insert(id.clone(), row);
        self.changed();
        Ok(NewKey {
            key: format!("{prefix}_{id}_{secret}"),
            info,
        })
    }

    /// Revokes a key; the caller closes the connections using it.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyInfo> {
        if self.temporary.contains_key(id) {
            let now = crate::now_ms();
            let stored = id.to_owned();
            self.store.revoke_key(&stored, now).await?;
            let mut row = self.temporary.get_mut(id).expect("checked above");
            row.revoked_at.get_or_insert(now);
            let info = temporary_info(&row);
            drop(row);
            self.changed();
            return Ok(info);
        }
        if !self.keys.contains_key(id) {
            return Err(err!(NotFound, "no key with id {id:?}"));
        }
        let now = crate::now_ms();
        let stored = id.to_owned();
        self.store.revoke_key(&stored, now).await?;
        let mut row = self.keys.get_mut(id).expect("checked above");
        row.revoked_at.get_or_insert(now);
        let info = key_info(&row);
        drop(row);
        self.changed();
        Ok(info)
    }

    /// Revokes a tenant and all its keys; the caller closes the connections.
    pub async fn revoke_tenant(&self, id: &str) -> Result<TenantInfo> {
        if !self.tenants.contains_key(id) {
            return Err(err!(NotFound, "no tenant named {id:?}"));
        }
        let now = crate::now_ms();
        let stored = id.to_owned();
        self.store.revoke_tenant(&stored, now).await?;
        if let Some(mut t) = self.tenants.get_mut(id) {
            t.revoked_at.get_or_insert(now);
        }
        for mut key in self.keys.iter_mut() {
            if key.tenant_id.as_deref() == Some(id) {
                key.revoked_at.get_or_insert(now);
            }
        }
        self.changed();
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
    /// Temporary keys are listed until they expire.
    pub fn keys(&self, tenant: Option<&str>) -> Vec<KeyInfo> {
        let mut keys: Vec<KeyInfo> = self
            .keys
            .iter()
            .filter(|k| tenant.is_none() || k.tenant_id.as_deref() == tenant)
            .map(|k| key_info(&k))
            .collect();
        keys.extend(
            self.temporary
                .iter()
                .filter(|t| tenant.is_none_or(|tenant| t.tenant_id == tenant))
                .map(|t| temporary_info(&t)),
        );
        keys.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        keys
    }

    /// One key's record.
    pub fn key(&self, id: &str) -> Option<KeyInfo> {
        match self.keys.get(id) {
            Some(k) => Some(key_info(&k)),
            None => self.temporary.get(id).map(|t| temporary_info(&t)),
        }
    }

    /// Whether a principal's key is still live: not revoked, nor its tenant, nor (for a
    /// temporary key) the original key it came from.
    pub fn is_live(&self, principal: &Principal) -> bool {
        let original = match &principal.grant {
            None => &*principal.key_id,
            Some(grant) => {
                let live = self
                    .temporary
                    .get(&*principal.key_id)
                    .is_some_and(|t| t.revoked_at.is_none());
                if !live {
                    return false;
                }
                grant.parent()
            }
        };
        self.keys
            .get(original)
            .is_some_and(|k| k.revoked_at.is_none())
    }

    fn verify_temporary(&self, key: &str) -> Result<Principal> {
        let token = self.authority.verify(key)?;
        let invalid = || err!(InvalidKey, "the API key is unknown, malformed or revoked");
        let parent_tenant = self
            .keys
            .get(&token.parent)
            .and_then(|k| k.tenant_id.clone())
            .ok_or_else(invalid)?;
        if parent_tenant != token.tenant {
            return Err(invalid());
        }
        token.connect()?;
        let principal = Principal {
            tenant_id: token.tenant.as_str().into(),
            key_id: token.id.as_str().into(),
            grant: Some(Arc::new(Grant {
                token,
                decisions: Mutex::new(HashMap::new()),
            })),
        };
        if !self.is_live(&principal) {
            return Err(invalid());
        }
        Ok(principal)
    }

    /// Checks a key string of any kind; constant-time in the secret.
    pub fn verify_any(&self, key: &str) -> Result<Caller> {
        if key.starts_with(temporary::PREFIX) {
            return self.verify_temporary(key).map(Caller::Tenant);
        }
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
                grant: None,
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

/// Checks a temporary key request against the limits.
fn validate_grant(r: &CreateTemporaryKey, max_ttl_secs: u64) -> Result<()> {
    if r.ttl_secs == 0 || r.ttl_secs > max_ttl_secs {
        return Err(err!(
            InvalidPayload,
            "ttl_secs must be 1-{max_ttl_secs} (limits.max_temporary_key_ttl_secs)"
        ));
    }
    if r.capabilities.is_empty() {
        return Err(err!(InvalidPayload, "capabilities: grant at least one"));
    }
    let too_long =
        |list: &Option<Vec<String>>| list.as_ref().is_some_and(|l| l.len() > MAX_GRANT_ENTRIES);
    if too_long(&r.agent_names) || too_long(&r.channels) || too_long(&r.event_types) {
        return Err(err!(
            InvalidPayload,
            "agent_names, channels and event_types hold at most {MAX_GRANT_ENTRIES} entries each"
        ));
    }
    if let Some(names) = &r.agent_names
        && let Some(bad) = names.iter().find(|n| !valid_name(n))
    {
        return Err(err!(
            InvalidAgentName,
            "agent_names: {bad:?} fails the name rule"
        ));
    }
    if let Some(patterns) = &r.channels
        && let Some(bad) = patterns
            .iter()
            .find(|p| !valid_name(p.strip_suffix('*').unwrap_or(p)))
    {
        return Err(err!(
            InvalidChannelName,
            "channels: {bad:?} is neither a channel name nor a prefix pattern `prefix*`"
        ));
    }
    if let Some(types) = &r.event_types
        && types.iter().any(|t| t.is_empty() || t.len() > MAX_TYPE_LEN)
    {
        return Err(err!(
            InvalidPayload,
            "event_types are 1-{MAX_TYPE_LEN} bytes"
        ));
    }
    Ok(())
}

/// A channel-storage request: reading, or (`write`) putting and deleting.
pub fn kv_request(channel: &str, scope: Scope, agent: Option<&str>, write: bool) -> Request {
    Request {
        write,
        ..channel_request(Capability::Kv, channel, scope, agent, None)
    }
}

/// A request on a channel, as temporary keys are asked about it.
pub fn channel_request(
    operation: Capability,
    channel: &str,
    scope: Scope,
    agent: Option<&str>,
    event_type: Option<&str>,
) -> Request {
    Request {
        operation,
        channel: Some((channel.to_owned(), scope)),
        agent: agent.map(str::to_owned),
        event_type: event_type.map(str::to_owned),
        write: operation == Capability::Publish,
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
