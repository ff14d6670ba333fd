//! Reading history: the `history` event's payload and reply (also the HTTP history query).

use crate::{Message, Millis};
use serde::{Deserialize, Serialize};

/// Which end of the range a history read starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Oldest first from the lower bound (default).
    #[default]
    Forward,
    /// Newest first from the upper bound: "the last N messages".
    Backward,
}

/// Which storage tier a history read is served from.
///
/// On the wire the names are upper case (`"CACHE"`, `"LOG"`, `"DATABASE"`, `"AUTO"`); lower
/// case is accepted too, and `KAFKA` is an alias of `LOG` (the design documents' name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PollSource {
    /// The in-memory ring of recent messages only.
    Cache,
    /// The durable log only (the point of acknowledgement; retention-limited).
    Log,
    /// The database only (permanent and queryable; written from the log asynchronously, so
    /// its newest messages may lag the log by a moment).
    Database,
    /// Cache, then log, then database, stitched by offset without gaps or duplicates
    /// (default).
    #[default]
    Auto,
}

impl PollSource {
    /// Parses a source name in any case (`kafka` is `log`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "cache" => Some(PollSource::Cache),
            "log" | "kafka" => Some(PollSource::Log),
            "database" => Some(PollSource::Database),
            "auto" => Some(PollSource::Auto),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for PollSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        PollSource::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown poll_source {text:?}: expected CACHE, LOG (or KAFKA), DATABASE or AUTO"
            ))
        })
    }
}

/// A storage tier, as a history reply names the one that served a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Tier {
    /// The in-memory ring.
    Cache,
    /// The durable log.
    Log,
    /// The database.
    Database,
}

impl Tier {
    /// The tier's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Cache => "CACHE",
            Tier::Log => "LOG",
            Tier::Database => "DATABASE",
        }
    }
}

/// One tier's part of a history reply: it served the offsets `from..=to` (inclusive, in
/// ascending order whatever the read's direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRange {
    /// The tier that served the range.
    pub tier: Tier,
    /// Lowest offset of the range.
    pub from: u64,
    /// Highest offset of the range.
    pub to: u64,
}

/// A history read. Every bound is inclusive; absent bounds are open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Lowest offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_offset: Option<u64>,
    /// Highest offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_offset: Option<u64>,
    /// Earliest timestamp (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ts: Option<Millis>,
    /// Latest timestamp (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ts: Option<Millis>,
    /// Only messages from this agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Only messages of this type.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<String>,
    /// At most this many messages (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `forward` (default) or `backward`.
    #[serde(default)]
    pub direction: Direction,
    /// The tier to read (absent: the source the connection chose at join, else `AUTO`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_source: Option<PollSource>,
}

/// The reply to a history read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Matching messages in the requested direction. Messages sent directly to other agents
    /// are visible only to their sender and recipient (and to the tenant's HTTP key).
    pub messages: Vec<Message>,
    /// The channel's epoch.
    pub epoch: String,
    /// The channel's last persisted offset.
    pub head: u64,
    /// The oldest offset the channel still has (head + 1 when empty).
    pub first_available: u64,
    /// Set when `limit` cut the read short: repeat with this as the next bound
    /// (`from_offset` going forward, `to_offset` going backward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
    /// Which tier served which offsets, in ascending offset order. The ranges are what each
    /// tier examined: a range holds every matching message the tier had there.
    #[serde(default)]
    pub sources: Vec<TierRange>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_sources_take_any_case_and_kafka_is_the_log() {
        for (text, source) in [
            ("\"CACHE\"", PollSource::Cache),
            ("\"Log\"", PollSource::Log),
            ("\"kafka\"", PollSource::Log),
            ("\"KAFKA\"", PollSource::Log),
            ("\"database\"", PollSource::Database),
            ("\"auto\"", PollSource::Auto),
        ] {
            assert_eq!(serde_json::from_str::<PollSource>(text).unwrap(), source);
        }
        assert!(serde_json::from_str::<PollSource>("\"tape\"").is_err());
        assert_eq!(serde_json::to_string(&PollSource::Log).unwrap(), "\"LOG\"");
        let q: HistoryQuery = serde_json::from_str(r#"{"poll_source":"Cache"}"#).unwrap();
        assert_eq!(q.poll_source, Some(PollSource::Cache));
        let page: HistoryPage =
            serde_json::from_str(r#"{"messages":[],"epoch":"e","head":0,"first_available":1}"#)
                .unwrap();
        assert!(page.sources.is_empty(), "older servers send no sources");
    }
}
