//! `GET /v1/usage`: what a tenant used, per key and period.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The granularity of a usage report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsagePeriod {
    /// One row per key and hour.
    #[default]
    Hour,
    /// One row per key and day (UTC).
    Day,
}

/// Counts for one key in one period (temporary keys count for the original key that minted
/// them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounts {
    /// Messages accepted (socket and HTTP publishes).
    pub messages_in: u64,
    /// Messages delivered to the key's connections.
    pub messages_out: u64,
    /// Message bytes accepted (data plus attachments).
    pub bytes_in: u64,
    /// Frame bytes delivered.
    pub bytes_out: u64,
    /// Most connections open at once.
    pub peak_connections: u64,
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Start of the period, ms since the epoch.
    pub start: Millis,
    /// The key id.
    pub key: String,
    /// What it used.
    #[serde(flatten)]
    pub counts: UsageCounts,
}

/// What a tenant stores now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageUsage {
    /// Messages stored.
    pub messages: u64,
    /// Their bytes (data plus attachments).
    pub bytes: u64,
}

/// `GET /v1/usage` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The tenant.
    pub tenant: String,
    /// The granularity.
    pub period: UsagePeriod,
    /// Rows from this time on (ms, inclusive).
    pub from: Millis,
    /// Rows before this time (ms, exclusive).
    pub to: Millis,
    /// Per key and period, oldest first.
    pub rows: Vec<UsageEntry>,
    /// The sum of the rows (`peak_connections`: the highest).
    pub totals: UsageCounts,
    /// Connections open now.
    pub connections: u64,
    /// Storage now.
    pub storage: StorageUsage,
}
