//! Narrowing a temporary key offline, for handing a subset of one's rights to someone else.
//!
//! A temporary key (`tk_…`) is a Biscuit token. Anyone holding one may append a block of
//! checks to it without the server's keys; the server then holds every request to those checks
//! as well as to the grant it signed, so the new key can do less, never more. The checks use
//! the facts the server describes each request with (spec/protocol.md, "Temporary keys"), and
//! each starts with `operation("connect") or …` so that the narrower key still connects.

use crate::error::{Error, Result};
use biscuit_auth::UnverifiedBiscuit;
use biscuit_auth::builder::{BlockBuilder, Term, date, int, set, string};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_protocol::{Capability, ErrorCode, Millis, Scope, valid_name};

/// Prefix of every temporary key.
const PREFIX: &str = "tk_";

/// What an attenuated key keeps of the key it narrows. Every field left at its default keeps
/// that part of the grant as it is; whatever is set can only take rights away.
///
/// ```
/// use switchboard_client::{Capability, Restriction};
/// use std::time::Duration;
///
/// let helper = Restriction::new()
///     .with_lifetime(Duration::from_secs(300))
///     .with_capabilities([Capability::Subscribe, Capability::Publish])
///     .with_channels(["tasks-42", "scratch-*"])
///     .with_agent_names(["helper-1"])
///     .with_event_types(["result"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restriction {
    /// An earlier expiry, ms since the epoch (the server enforces the earliest one any block
    /// states, on live connections too).
    pub expires_at: Option<Millis>,
    /// The only operations kept.
    pub capabilities: Option<Vec<Capability>>,
    /// The only channels kept: exact names, or prefixes written `prefix*`.
    pub channels: Option<Vec<String>>,
    /// The only agent names the holder may act as.
    pub agent_names: Option<Vec<String>>,
    /// The only message types the holder may publish.
    pub event_types: Option<Vec<String>>,
    /// The only scope kept.
    pub scope: Option<Scope>,
    /// No writes at all (publishes included).
    pub read_only: bool,
}

impl Restriction {
    /// A restriction that keeps everything; narrow it with the `with_*` methods.
    pub fn new() -> Self {
        Restriction::default()
    }

    /// Expires at `expires_at` (ms since the epoch), if that is earlier than the key's expiry.
    pub fn with_expires_at(mut self, expires_at: Millis) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Expires `lifetime` from now, if that is earlier than the key's expiry.
    pub fn with_lifetime(self, lifetime: Duration) -> Self {
        let at = SystemTime::now() + lifetime;
        let ms = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        self.with_expires_at(ms)
    }

    /// Keeps only these operations.
    pub fn with_capabilities(mut self, capabilities: impl IntoIterator<Item = Capability>) -> Self {
        self.capabilities = Some(capabilities.into_iter().collect());
        self
    }

    /// Keeps only these channels: exact names, or prefixes written `prefix*`.
    pub fn with_channels<S: Into<String>>(mut self, channels: impl IntoIterator<Item = S>) -> Self {
        self.channels = Some(channels.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps only these agent names.
    pub fn with_agent_names<S: Into<String>>(
        mut self,
        agent_names: impl IntoIterator<Item = S>,
    ) -> Self {
        self.agent_names = Some(agent_names.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps only these message types for publishes.
    pub fn with_event_types<S: Into<String>>(
        mut self,
        event_types: impl IntoIterator<Item = S>,
    ) -> Self {
        self.event_types = Some(event_types.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps only this scope.
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = Some(scope);
        self
    }

    /// Allows no writes.
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
}

/// Narrows the temporary key `key` (`tk_…`) to `restriction`, offline: the result is another
/// temporary key that can do only what both allow. It needs neither the server nor its keys;
/// the server checks the whole chain when the new key is used. Revoking the original temporary
/// key (by its id) revokes every key attenuated from it.
///
/// Fails with `invalid_key` when `key` is not a temporary key, and with `invalid_payload`,
/// `invalid_channel_name` or `invalid_agent_name` when the restriction is malformed.
pub fn attenuate(key: &str, restriction: &Restriction) -> Result<String> {
    let encoded = key.strip_prefix(PREFIX).ok_or_else(|| {
        let what = if key.starts_with("sk_") || key.starts_with("ak_") {
            "an original or admin key is a secret and cannot be attenuated; mint a temporary key from it first"
        } else {
            "it does not start with tk_"
        };
        Error::local(
            ErrorCode::InvalidKey,
            format!("not a temporary key: {what}"),
        )
    })?;
    let token = UnverifiedBiscuit::from_base64(encoded).map_err(|e| {
        Error::local(
            ErrorCode::InvalidKey,
            format!("not a temporary key: the token cannot be read ({e})"),
        )
    })?;
    let block = block(restriction)?;
    let narrowed = token.append(block).map_err(|e| {
        Error::local(
            ErrorCode::InvalidKey,
            format!("cannot attenuate the key: {e}"),
        )
    })?;
    let encoded = narrowed.to_base64().map_err(|e| {
        Error::local(
            ErrorCode::InvalidKey,
            format!("cannot encode the attenuated key: {e}"),
        )
    })?;
    Ok(format!("{PREFIX}{encoded}"))
}

/// The Datalog block that enforces `r`.
fn block(r: &Restriction) -> Result<BlockBuilder> {
    let mut code = String::new();
    let mut params: HashMap<String, Term> = HashMap::new();
    let mut param = |value: Term| -> String {
        let name = format!("p{}", params.len());
        params.insert(name.clone(), value);
        format!("{{{name}}}")
    };

    if let Some(ms) = r.expires_at {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        if ms <= now {
            return Err(invalid_payload("the restriction's expiry is in the past"));
        }
        let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
        code.push_str(&format!("expires_at({});\n", param(int(ms))));
        code.push_str(&format!("check if time($t), $t <= {};\n", param(date(&at))));
    }
    if let Some(capabilities) = &r.capabilities {
        non_empty(capabilities, "capabilities")?;
        let mut ops: BTreeSet<Term> = capabilities.iter().map(|c| string(c.as_str())).collect();
        ops.insert(string("connect"));
        code.push_str(&format!(
            "check if operation($op), {}.contains($op);\n",
            param(set(ops))
        ));
    }
    if let Some(channels) = &r.channels {
        non_empty(channels, "channels")?;
        let mut exact = BTreeSet::new();
        let mut alternatives = vec![r#"operation("connect")"#.to_owned()];
        for pattern in channels {
            let (name, prefix) = match pattern.strip_suffix('*') {
                Some(prefix) => (prefix, true),
                None => (pattern.as_str(), false),
            };
            if !valid_name(name) {
                return Err(Error::local(
                    ErrorCode::InvalidChannelName,
                    format!(
                        "`{pattern}` is not a channel name or `prefix*` pattern: use 1–128 bytes of [A-Za-z0-9_.:@-]"
                    ),
                ));
            }
            if prefix {
                alternatives.push(format!(
                    "req_channel($c), $c.starts_with({})",
                    param(string(name))
                ));
            } else {
                exact.insert(string(name));
            }
        }
        if !exact.is_empty() {
            alternatives.push(format!(
                "req_channel($c), {}.contains($c)",
                param(set(exact))
            ));
        }
        code.push_str(&format!("check if {};\n", alternatives.join(" or ")));
    }
    if let Some(agents) = &r.agent_names {
        non_empty(agents, "agent_names")?;
        if let Some(bad) = agents.iter().find(|a| !valid_name(a)) {
            return Err(Error::local(
                ErrorCode::InvalidAgentName,
                format!("`{bad}` is not an agent name: use 1–128 bytes of [A-Za-z0-9_.:@-]"),
            ));
        }
        let names: BTreeSet<Term> = agents.iter().map(|a| string(a)).collect();
        code.push_str(&format!(
            "check if operation(\"connect\") or req_agent($a), {}.contains($a);\n",
            param(set(names))
        ));
    }
    if let Some(types) = &r.event_types {
        non_empty(types, "event_types")?;
        if types
            .iter()
            .any(|t| t.is_empty() || t.len() > switchboard_protocol::limits::MAX_TYPE_LEN)
        {
            return Err(invalid_payload("event types are 1–128 bytes"));
        }
        let types: BTreeSet<Term> = types.iter().map(|t| string(t)).collect();
        code.push_str(&format!(
            "check if operation(\"connect\") or no_event_type(true) or req_event_type($t), {}.contains($t);\n",
            param(set(types))
        ));
    }
    if let Some(scope) = r.scope {
        let name = match scope {
            Scope::Private => "private",
            Scope::Public => "public",
        };
        code.push_str(&format!(
            "check if operation(\"connect\") or req_scope({});\n",
            param(string(name))
        ));
    }
    if r.read_only {
        code.push_str("reject if write(true);\n");
    }
    if code.is_empty() {
        return Err(invalid_payload(
            "the restriction narrows nothing; set at least one of its fields",
        ));
    }
    BlockBuilder::new()
        .code_with_params(&code, params, HashMap::new())
        .map_err(|e| invalid_payload(format!("cannot build the restriction: {e}")))
}

fn non_empty<T>(list: &[T], field: &str) -> Result<()> {
    if list.is_empty() {
        return Err(invalid_payload(format!(
            "`{field}` is empty, which would allow nothing; leave it unset to keep the key's own"
        )));
    }
    Ok(())
}

fn invalid_payload(message: impl Into<String>) -> Error {
    Error::local(ErrorCode::InvalidPayload, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_speak_the_protocol_vocabulary() {
        let r = Restriction::new()
            .with_capabilities([Capability::Publish])
            .with_channels(["lobby", "room-*"])
            .with_agent_names(["bot"])
            .with_event_types(["chat"])
            .with_scope(Scope::Private)
            .read_only();
        let text = block(&r).unwrap().to_string();
        for needle in [
            r#"check if operation($op), {"connect", "publish"}.contains($op)"#,
            r#"check if operation("connect") or req_channel($c), $c.starts_with("room-") or req_channel($c), {"lobby"}.contains($c)"#,
            r#"check if operation("connect") or req_agent($a), {"bot"}.contains($a)"#,
            r#"no_event_type(true) or req_event_type($t), {"chat"}.contains($t)"#,
            r#"check if operation("connect") or req_scope("private")"#,
            "reject if write(true)",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        let later = Restriction::new().with_lifetime(Duration::from_secs(60));
        let text = block(&later).unwrap().to_string();
        assert!(text.contains("expires_at("), "{text}");
        assert!(text.contains("check if time($t), $t <= "), "{text}");
    }

    #[test]
    fn bad_input_is_refused() {
        let r = Restriction::new().with_agent_names(["bot"]);
        let code = |key: &str| attenuate(key, &r).unwrap_err().code();
        assert_eq!(code("sk_abc_def"), Some(ErrorCode::InvalidKey));
        assert_eq!(code("tk_not-a-token"), Some(ErrorCode::InvalidKey));
        assert_eq!(code(""), Some(ErrorCode::InvalidKey));
        let bad = |r: Restriction| block(&r).unwrap_err().code();
        assert_eq!(bad(Restriction::new()), Some(ErrorCode::InvalidPayload));
        assert_eq!(
            bad(Restriction::new().with_channels(["*"])),
            Some(ErrorCode::InvalidChannelName)
        );
        assert_eq!(
            bad(Restriction::new().with_agent_names(["a b"])),
            Some(ErrorCode::InvalidAgentName)
        );
        assert_eq!(
            bad(Restriction::new().with_capabilities([])),
            Some(ErrorCode::InvalidPayload)
        );
        assert_eq!(
            bad(Restriction::new().with_expires_at(1)),
            Some(ErrorCode::InvalidPayload)
        );
    }
}
