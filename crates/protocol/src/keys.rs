//! Tenants and keys as the HTTP API shows them (`/v1/tenants`, `/v1/keys`).

use crate::Millis;
use serde::{Deserialize, Serialize};

/// What a key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// A tenant's permanent secret (`sk_…`): full access to the tenant's resources.
    Original,
    /// A server administrator's key (`ak_…`): manages tenants and keys, nothing else.
    Admin,
}

/// A key's record; the secret is never shown again after creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key id (the part after the prefix in the key string).
    pub id: String,
    /// What the key is for.
    pub kind: KeyKind,
    /// The owning tenant (absent for admin keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Creation time.
    pub created_at: Millis,
    /// Revocation time, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
}

/// `POST /v1/keys` and `POST /v1/tenants` answer with the new key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The full key string.
    pub key: String,
    /// Its record.
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// `POST /v1/keys` body. A tenant key creates a key for its own tenant and sends `{}`; an admin
/// key names the tenant, or asks for another admin key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The tenant (admin callers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Create an admin key (admin callers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
}

/// A tenant's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// The tenant id.
    pub id: String,
    /// Creation time.
    pub created_at: Millis,
    /// Revocation time, if revoked (every key of a revoked tenant is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Millis>,
    /// Keys not revoked.
    pub live_keys: usize,
}

/// `POST /v1/tenants` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant id: 1–128 bytes of `[A-Za-z0-9_.:@-]`.
    pub id: String,
}

/// `POST /v1/tenants` answer: the tenant and its first original key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: TenantInfo,
    /// Its first key, shown this once.
    pub key: CreatedKey,
}
