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
    /// A short-lived, attenuable key (`tk_…`) minted from an original key.
    Temporary,
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
    /// Expiry (temporary keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    /// The original key it was minted from (temporary keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
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

/// What a temporary key may do. Each request needs the capability of its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Publish messages (a write).
    Publish,
    /// Join channels and receive their messages.
    Subscribe,
    /// Read history.
    History,
    /// See who is present.
    Presence,
    /// Channel key-value storage.
    Kv,
    /// WebRTC signaling relay.
    Signal,
    /// Streams of large payloads.
    Stream,
    /// Durable inboxes.
    Inbox,
}

impl Capability {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Publish => "publish",
            Capability::Subscribe => "subscribe",
            Capability::History => "history",
            Capability::Presence => "presence",
            Capability::Kv => "kv",
            Capability::Signal => "signal",
            Capability::Stream => "stream",
            Capability::Inbox => "inbox",
        }
    }
}

/// `POST /v1/keys/temporary` body (authorized by an original key): what the new key grants.
/// Absent lists mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTemporaryKey {
    /// Lifetime in seconds (at most the server's `max_temporary_key_ttl_secs`).
    pub ttl_secs: u64,
    /// The operations granted.
    pub capabilities: Vec<Capability>,
    /// The agent names the holder may act as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_names: Option<Vec<String>>,
    /// The channels: exact names, or prefixes written `prefix*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
    /// The message types the holder may publish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// The one scope allowed (both when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::Scope>,
    /// No writes at all, whatever the capabilities say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// `POST /v1/keys/temporary` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporaryKey {
    /// The key, `tk_…`: hand it to the browser or device.
    pub key: String,
    /// Its id, for `DELETE /v1/keys/{id}` (revokes every key attenuated from it too).
    pub id: String,
    /// When it stops working, ms since the epoch.
    pub expires_at: Millis,
}
