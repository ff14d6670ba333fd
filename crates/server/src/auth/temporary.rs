//! Temporary keys: short-lived Biscuit tokens minted from an original key, safe to hand to a
//! browser or a device, and attenuable offline by whoever holds them.
//!
//! A temporary key reads `tk_<base64url token>`. Its first block, signed with the server's root
//! key, states what it grants in the vocabulary of spec/protocol.md ("Temporary keys"); a block
//! a holder appends can only add checks, so it can narrow the grant but never widen it (the
//! policies below trust facts from the first block only). Each request is authorized by one
//! Datalog run against the token; connections cache the decisions (see [`super::Grant`]).

use crate::error::{Error, Result, err};
use biscuit_auth::builder::{Fact, Term, boolean, date, fact, int, string};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits, Biscuit, KeyPair, PrivateKey, PublicKey};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_protocol::{Capability, Millis, Scope};

/// Prefix of every temporary key.
pub const PREFIX: &str = "tk_";

/// What one request asks for, in the terms the token's rules speak.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Request {
    /// The operation (a capability).
    pub operation: Capability,
    /// The channel and its scope.
    pub channel: Option<(String, Scope)>,
    /// The agent name acting.
    pub agent: Option<String>,
    /// The message type, for publishes.
    pub event_type: Option<String>,
    /// Whether it changes anything (a `read_only` key allows no writes).
    pub write: bool,
}

/// What a new temporary key grants.
#[derive(Debug, Clone)]
pub struct Mint {
    /// The tenant.
    pub tenant: String,
    /// The original key minting it.
    pub parent: String,
    /// The new key's id.
    pub id: String,
    /// Expiry, ms since the epoch.
    pub expires_at: Millis,
    /// Granted operations.
    pub capabilities: Vec<Capability>,
    /// Allowed agent names (`None`: any).
    pub agent_names: Option<Vec<String>>,
    /// Allowed channels: exact names, or prefixes written `prefix*` (`None`: any).
    pub channels: Option<Vec<String>>,
    /// Allowed message types for publishes (`None`: any).
    pub event_types: Option<Vec<String>>,
    /// Allowed scope (`None`: both).
    pub scope: Option<Scope>,
    /// No writes at all (publish included), whatever the capabilities say.
    pub read_only: bool,
}

/// A verified temporary key: whose it is and until when.
#[derive(Debug, Clone)]
pub struct Token {
    biscuit: Biscuit,
    /// The tenant.
    pub tenant: String,
    /// This key's id (shared by every key attenuated from it).
    pub id: String,
    /// The original key it was minted from.
    pub parent: String,
    /// The earliest expiry any block states, ms since the epoch.
    pub expires_at: Millis,
}

/// The server's signing key for temporary keys.
pub struct Authority {
    root: KeyPair,
}

/// Datalog runs a token may cost: a holder writes the checks of its own blocks, and a
/// pathological one must not cost the server more than this per decision.
fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: Duration::from_millis(10),
    }
}

/// The rules every request is judged by. `*_ok` facts come from the first block only (the
/// default trust scope), so an appended block cannot grant itself anything.
static POLICIES: LazyLock<AuthorizerBuilder> = LazyLock::new(|| {
    AuthorizerBuilder::new()
        .code(
            r#"
            channel_ok(true) <- any_channel(true);
            channel_ok(true) <- req_channel($c), channel_name($c);
            channel_ok(true) <- req_channel($c), channel_prefix($p), $c.starts_with($p);
            scope_ok(true) <- any_scope(true);
            scope_ok(true) <- req_scope($s), channel_scope($s);
            agent_ok(true) <- any_agent(true);
            agent_ok(true) <- req_agent($a), agent_name($a);
            type_ok(true) <- no_event_type(true);
            type_ok(true) <- any_event_type(true);
            type_ok(true) <- req_event_type($t), event_type($t);
            allow if operation("connect");
            deny if read_only(true), write(true);
            allow if operation($op), right($op), channel_ok(true), scope_ok(true), agent_ok(true), type_ok(true);
            "#,
        )
        .expect("the policies parse")
        .set_limits(limits())
});

fn ms(time: SystemTime) -> Millis {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

fn at(millis: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64)
}

/// The wire name of a capability (the `right` and `operation` facts).
pub fn capability_name(c: Capability) -> &'static str {
    c.as_str()
}

fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Private => "private",
        Scope::Public => "public",
    }
}

fn invalid(why: impl std::fmt::Display) -> Error {
    err!(InvalidKey, "the temporary key is not valid: {why}")
}

impl Authority {
    /// Loads the root key from its stored form, `ed25519-private/<hex>`.
    pub fn from_stored(stored: &str) -> Result<Authority> {
        let private: PrivateKey = stored.parse().map_err(Error::internal)?;
        Ok(Authority {
            root: KeyPair::from(&private),
        })
    }

    /// A new root key and its stored form.
    pub fn generate() -> (Authority, String) {
        let root = KeyPair::new();
        let stored = root.private().to_prefixed_string();
        (Authority { root }, stored)
    }

    /// The public key that verifies temporary keys, `ed25519/<hex>`.
    pub fn public_key(&self) -> PublicKey {
        self.root.public()
    }

    /// Signs a new temporary key.
    pub fn mint(&self, m: &Mint) -> Result<String> {
        let mut builder = Biscuit::builder()
            .code_with_params(
                r#"
                tenant({tenant});
                key_id({id});
                parent({parent});
                expires_at({expires_ms});
                check if time($t), $t <= {expires};
                "#,
                HashMap::from([
                    ("tenant".to_owned(), Term::from(m.tenant.as_str())),
                    ("id".to_owned(), Term::from(m.id.as_str())),
                    ("parent".to_owned(), Term::from(m.parent.as_str())),
                    ("expires_ms".to_owned(), int(m.expires_at)),
                    ("expires".to_owned(), date(&at(m.expires_at))),
                ]),
                HashMap::new(),
            )
            .map_err(Error::internal)?;
        let mut add = |name: &str, value: Term| -> Result<()> {
            builder = std::mem::take(&mut builder)
                .fact(fact(name, &[value]))
                .map_err(Error::internal)?;
            Ok(())
        };
        for c in &m.capabilities {
            add("right", string(capability_name(*c)))?;
        }
        match &m.agent_names {
            None => add("any_agent", boolean(true))?,
            Some(names) => {
                for n in names {
                    add("agent_name", string(n))?;
                }
            }
        }
        match &m.channels {
            None => add("any_channel", boolean(true))?,
            Some(patterns) => {
                for p in patterns {
                    match p.strip_suffix('*') {
                        Some(prefix) => add("channel_prefix", string(prefix))?,
                        None => add("channel_name", string(p))?,
                    }
                }
            }
        }
        match &m.event_types {
            None => add("any_event_type", boolean(true))?,
            Some(types) => {
                for t in types {
                    add("event_type", string(t))?;
                }
            }
        }
        match m.scope {
            None => add("any_scope", boolean(true))?,
            Some(s) => add("channel_scope", string(scope_name(s)))?,
        }
        if m.read_only {
            add("read_only", boolean(true))?;
        }
        let token = builder.build(&self.root).map_err(Error::internal)?;
        Ok(format!(
            "{PREFIX}{}",
            token.to_base64().map_err(Error::internal)?
        ))
    }

    /// Checks a temporary key's signature and reads who it belongs to and until when. Whether
    /// it is revoked or expired is the caller's question.
    pub fn verify(&self, key: &str) -> Result<Token> {
        let encoded = key
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("no tk_ prefix"))?;
        let biscuit = Biscuit::from_base64(encoded, self.root.public()).map_err(invalid)?;
        let mut authorizer = AuthorizerBuilder::new()
            .set_limits(limits())
            .build(&biscuit)
            .map_err(invalid)?;
        let one = |authorizer: &mut biscuit_auth::Authorizer, what: &str| -> Result<String> {
            let found: Vec<(String,)> = authorizer
                .query(format!("data($v) <- {what}($v)").as_str())
                .map_err(invalid)?;
            match found.as_slice() {
                [(v,)] => Ok(v.clone()),
                _ => Err(invalid(format!("the first block must state one {what}"))),
            }
        };
        let tenant = one(&mut authorizer, "tenant")?;
        let id = one(&mut authorizer, "key_id")?;
        let parent = one(&mut authorizer, "parent")?;
        // Appended blocks state their own, earlier expiry the same way; the earliest wins (a
        // later one cannot extend the first block's check, which every request runs).
        let expiries: Vec<(i64,)> = authorizer
            .query_all("data($t) <- expires_at($t)")
            .map_err(invalid)?;
        let expires_at = expiries
            .iter()
            .map(|(t,)| *t)
            .min()
            .ok_or_else(|| invalid("no expiry"))?;
        Ok(Token {
            biscuit,
            tenant,
            id,
            parent,
            expires_at,
        })
    }
}

impl Token {
    /// Whether the token allows `request` now: `forbidden` (or `key_expired`) when not.
    pub fn authorize(&self, request: &Request) -> Result<()> {
        let mut facts = vec![fact(
            "operation",
            &[string(capability_name(request.operation))],
        )];
        if request.write {
            facts.push(fact("write", &[boolean(true)]));
        }
        if let Some((channel, scope)) = &request.channel {
            facts.push(fact("req_channel", &[string(channel)]));
            facts.push(fact("req_scope", &[string(scope_name(*scope))]));
        }
        if let Some(agent) = &request.agent {
            facts.push(fact("req_agent", &[string(agent)]));
        }
        match &request.event_type {
            Some(t) => facts.push(fact("req_event_type", &[string(t)])),
            None => facts.push(fact("no_event_type", &[boolean(true)])),
        }
        self.run(facts).map_err(|e| match e.code {
            switchboard_protocol::ErrorCode::Forbidden => err!(
                Forbidden,
                "the temporary key does not allow {} here",
                capability_name(request.operation)
            ),
            _ => e,
        })
    }

    /// Whether the key still lets a connection in: unexpired, and every holder's check passes.
    pub fn connect(&self) -> Result<()> {
        self.run(vec![fact("operation", &[string("connect")])])
            .map_err(|e| match e.code {
                switchboard_protocol::ErrorCode::Forbidden => {
                    invalid("a check of the key fails on connect")
                }
                _ => e,
            })
    }

    fn run(&self, facts: Vec<Fact>) -> Result<()> {
        let now = SystemTime::now();
        if ms(now) > self.expires_at {
            return Err(err!(KeyExpired, "the temporary key expired"));
        }
        let mut builder = POLICIES
            .clone()
            .fact(fact("time", &[date(&now)]))
            .map_err(Error::internal)?;
        for f in facts {
            builder = builder.fact(f).map_err(Error::internal)?;
        }
        let mut authorizer = builder.build(&self.biscuit).map_err(invalid)?;
        authorizer
            .authorize()
            .map(drop)
            .map_err(|e| err!(Forbidden, "{e}"))
    }
}
