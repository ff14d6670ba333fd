//! `switchboard presence`: list the agents present in a channel over HTTP.

use super::{ChannelArgs, ConnectArgs, print_json_line};
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};
use switchboard_client::PresenceState;

/// Arguments of `switchboard presence`.
#[derive(Debug, Args)]
pub struct PresenceArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(flatten)]
    target: ChannelArgs,
}

/// One printed line.
#[derive(Debug, PartialEq, Serialize)]
struct Agent<'a> {
    name: &'a str,
    joined_at: i64,
    meta: &'a Map<String, Value>,
}

/// Runs `switchboard presence`.
pub async fn run(args: PresenceArgs) -> anyhow::Result<()> {
    let http = args.connect.http(args.target.password.clone())?;
    let presence = http
        .presence(&args.target.channel, args.target.scope.into())
        .await?;
    for agent in agents(&presence) {
        print_json_line(&agent)?;
    }
    Ok(())
}

/// One entry per agent, from its oldest presence.
fn agents(presence: &PresenceState) -> Vec<Agent<'_>> {
    presence
        .iter()
        .filter_map(|(name, entry)| {
            let first = entry.metas.iter().min_by_key(|m| m.joined_at)?;
            Some(Agent {
                name,
                joined_at: first.joined_at,
                meta: &first.meta,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_client::{PresenceEntry, PresenceMeta};

    #[test]
    fn one_line_per_agent() {
        let meta = |name: &str, at| PresenceMeta {
            phx_ref: format!("r{at}"),
            agent_name: name.into(),
            joined_at: at,
            meta: Map::new(),
        };
        let mut state = PresenceState::new();
        state.insert(
            "bob".into(),
            PresenceEntry {
                metas: vec![meta("bob", 9), meta("bob", 3)],
            },
        );
        state.insert("amy".into(), PresenceEntry { metas: vec![] });
        let lines = agents(&state);
        assert_eq!(lines.len(), 1);
        assert_eq!(
            serde_json::to_string(&lines[0]).unwrap(),
            r#"{"name":"bob","joined_at":3,"meta":{}}"#
        );
    }
}
