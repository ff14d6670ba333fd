//! The agent directory: what each tenant's agents announced (capabilities and metadata,
//! persisted) and whether they are online (present in one of the tenant's channels, counted
//! in memory). Changes go out as ephemeral `agent` messages on the tenant's
//! `sys.discovery` channel.

use crate::error::{Result, err};
use crate::storage::{AgentRow, Database};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use switchboard_protocol::discovery::{
    AgentCard, AgentChange, AgentUpdate, Announce, Discover, Discovered, MAX_AGENT_METADATA_BYTES,
    MAX_CAPABILITIES, MAX_CAPABILITY_LEN, MAX_DISCOVER_LIMIT, MAX_FILTERS, matches,
};
use tokio::sync::mpsc;

/// An announced agent's card as the directory keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Card {
    /// What it can do.
    pub capabilities: Vec<String>,
    /// What it says about itself.
    pub metadata: Map<String, Value>,
    /// When it last changed, ms.
    pub updated_at: i64,
}

#[derive(Default)]
struct TenantDirectory {
    cards: HashMap<String, Card>,
    /// Live sessions per agent name in the tenant's channels.
    sessions: HashMap<String, u32>,
}

impl TenantDirectory {
    fn card(&self, name: &str) -> Option<AgentCard> {
        self.cards.get(name).map(|c| AgentCard {
            name: name.to_owned(),
            capabilities: c.capabilities.clone(),
            metadata: c.metadata.clone(),
            online: self.sessions.contains_key(name),
            updated_at: c.updated_at,
        })
    }
}

/// A directory change for the tenant's discovery channel.
pub type Change = (Arc<str>, AgentUpdate);

/// Every tenant's agents.
pub struct Directory {
    store: Arc<dyn Database>,
    tenants: DashMap<Arc<str>, Arc<Mutex<TenantDirectory>>>,
    max_per_tenant: usize,
    changes: mpsc::UnboundedSender<Change>,
    /// Cluster: the bus, to tell the other nodes of cards changed here.
    bus: std::sync::OnceLock<Arc<crate::cluster::Bus>>,
}

impl Directory {
    /// Cluster: tells the other nodes of every card changed here from now on.
    pub fn set_bus(&self, bus: Arc<crate::cluster::Bus>) {
        let _ = self.bus.set(bus);
    }

    fn tell(&self, tenant: &str, name: &str, card: Option<Card>) {
        if let Some(bus) = self.bus.get() {
            bus.send(crate::cluster::Event::Card {
                tenant: tenant.to_owned(),
                name: name.to_owned(),
                card,
            });
        }
    }

    /// A card another node changed (`None`: removed); its own discovery message reaches
    /// the tenant's `sys.discovery` channel from that node.
    pub fn changed_elsewhere(&self, tenant: &str, name: &str, card: Option<Card>) {
        let dir = self.tenant(tenant);
        let mut dir = dir.lock();
        match card {
            Some(card) => {
                dir.cards.insert(name.to_owned(), card);
            }
            None => {
                dir.cards.remove(name);
            }
        }
    }
    /// Loads the announced agents; changes will go to `changes`.
    pub async fn load(
        store: Arc<dyn Database>,
        max_per_tenant: usize,
        changes: mpsc::UnboundedSender<Change>,
    ) -> Result<Directory> {
        let rows = store.load_agents().await?;
        let directory = Directory {
            store,
            tenants: DashMap::new(),
            max_per_tenant,
            changes,
            bus: std::sync::OnceLock::new(),
        };
        for row in rows {
            let (Ok(capabilities), Ok(metadata)) = (
                serde_json::from_str(&row.capabilities),
                serde_json::from_str(&row.metadata),
            ) else {
                tracing::warn!(
                    tenant = row.tenant_id,
                    agent = row.name,
                    "skipping an unreadable agent card"
                );
                continue;
            };
            directory.tenant(&row.tenant_id).lock().cards.insert(
                row.name,
                Card {
                    capabilities,
                    metadata,
                    updated_at: row.updated_at,
                },
            );
        }
        Ok(directory)
    }

    fn tenant(&self, tenant: &str) -> Arc<Mutex<TenantDirectory>> {
        if let Some(t) = self.tenants.get(tenant) {
            return t.clone();
        }
        self.tenants.entry(tenant.into()).or_default().clone()
    }

    fn emit(&self, tenant: &str, change: AgentChange, agent: AgentCard) {
        let _ = self
            .changes
            .send((tenant.into(), AgentUpdate { change, agent }));
    }

    /// Replaces `name`'s card with `announce`.
    pub async fn announce(
        &self,
        tenant: &str,
        name: &str,
        announce: Announce,
    ) -> Result<AgentCard> {
        check_capabilities(&announce.capabilities)?;
        check_metadata(&announce.metadata)?;
        let dir = self.tenant(tenant);
        {
            let d = dir.lock();
            if !d.cards.contains_key(name) && d.cards.len() >= self.max_per_tenant {
                return Err(err!(
                    RateLimited,
                    "this tenant announced {} agents already; remove some first",
                    self.max_per_tenant
                ));
            }
        }
        let card = Card {
            capabilities: announce.capabilities,
            metadata: announce.metadata,
            updated_at: crate::now_ms(),
        };
        self.save(tenant, name, card, &dir).await?;
        let card = dir
            .lock()
            .card(name)
            .ok_or_else(|| err!(NotFound, "{name:?} was removed meanwhile"))?;
        self.emit(tenant, AgentChange::Announced, card.clone());
        Ok(card)
    }

    /// Replaces the metadata of `name`'s card (`not_found` if it never announced).
    pub async fn update_metadata(
        &self,
        tenant: &str,
        name: &str,
        metadata: Map<String, Value>,
    ) -> Result<AgentCard> {
        check_metadata(&metadata)?;
        let dir = self.tenant(tenant);
        let Some(mut card) = dir.lock().cards.get(name).cloned() else {
            return Err(err!(
                NotFound,
                "{name:?} has not announced itself; announce first"
            ));
        };
        card.metadata = metadata;
        card.updated_at = crate::now_ms();
        self.save(tenant, name, card, &dir).await?;
        let card = dir
            .lock()
            .card(name)
            .ok_or_else(|| err!(NotFound, "{name:?} was removed meanwhile"))?;
        self.emit(tenant, AgentChange::Updated, card.clone());
        Ok(card)
    }

    /// Writes a card, then (on the writer thread, so concurrent writes keep their order)
    /// updates the memory copy.
    async fn save(
        &self,
        tenant: &str,
        name: &str,
        card: Card,
        dir: &Arc<Mutex<TenantDirectory>>,
    ) -> Result<()> {
        let row = AgentRow {
            tenant_id: tenant.to_owned(),
            name: name.to_owned(),
            capabilities: serde_json::to_string(&card.capabilities).expect("strings serialize"),
            metadata: serde_json::to_string(&card.metadata).expect("JSON serializes"),
            updated_at: card.updated_at,
        };
        self.store.put_agent(row).await?;
        dir.lock().cards.insert(name.to_owned(), card.clone());
        self.tell(tenant, name, Some(card));
        Ok(())
    }

    /// Deletes `name`'s card.
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<()> {
        let dir = self.tenant(tenant);
        let Some(card) = dir.lock().card(name) else {
            return Err(err!(NotFound, "{name:?} has not announced itself"));
        };
        self.store.delete_agent(tenant, name).await?;
        dir.lock().cards.remove(name);
        self.tell(tenant, name, None);
        self.emit(tenant, AgentChange::Removed, card);
        Ok(())
    }

    /// `name`'s card.
    pub fn get(&self, tenant: &str, name: &str) -> Result<AgentCard> {
        self.tenants
            .get(tenant)
            .and_then(|d| d.lock().card(name))
            .ok_or_else(|| err!(NotFound, "{name:?} has not announced itself"))
    }

    /// The tenant's agents that match `query`, by name.
    pub fn discover(&self, tenant: &str, query: &Discover) -> Result<Discovered> {
        let limit = query.limit.unwrap_or(100);
        if !(1..=MAX_DISCOVER_LIMIT).contains(&limit) {
            return Err(err!(InvalidPayload, "limit is 1-{MAX_DISCOVER_LIMIT}"));
        }
        if query.filters.len() > MAX_FILTERS {
            return Err(err!(InvalidPayload, "at most {MAX_FILTERS} filters"));
        }
        let Some(dir) = self.tenants.get(tenant).map(|d| d.clone()) else {
            return Ok(Discovered { agents: Vec::new() });
        };
        let d = dir.lock();
        let mut agents: Vec<AgentCard> = d
            .cards
            .keys()
            .filter_map(|name| d.card(name))
            .filter(|card| matches(query, card))
            .collect();
        drop(d);
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents.truncate(limit as usize);
        Ok(Discovered { agents })
    }

    /// Counts a session of `name` in one of `tenant`'s channels until the guard drops.
    pub fn track(self: &Arc<Self>, tenant: &str, name: &str) -> Online {
        let dir = self.tenant(tenant);
        let came_online = {
            let mut d = dir.lock();
            let n = d.sessions.entry(name.to_owned()).or_insert(0);
            *n += 1;
            (*n == 1).then(|| d.card(name)).flatten()
        };
        if let Some(card) = came_online {
            self.emit(tenant, AgentChange::Online, card);
        }
        Online {
            directory: self.clone(),
            dir,
            tenant: tenant.into(),
            name: name.into(),
        }
    }
}

/// An agent's session, counted for its online status.
pub struct Online {
    directory: Arc<Directory>,
    dir: Arc<Mutex<TenantDirectory>>,
    tenant: Arc<str>,
    name: Arc<str>,
}

impl Drop for Online {
    fn drop(&mut self) {
        let went_offline = {
            let mut d = self.dir.lock();
            match d.sessions.get_mut(&*self.name) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    None
                }
                Some(_) => {
                    d.sessions.remove(&*self.name);
                    d.card(&self.name)
                }
                None => None,
            }
        };
        if let Some(card) = went_offline {
            self.directory
                .emit(&self.tenant, AgentChange::Offline, card);
        }
    }
}

fn check_capabilities(capabilities: &[String]) -> Result<()> {
    if capabilities.len() > MAX_CAPABILITIES {
        return Err(err!(
            InvalidPayload,
            "at most {MAX_CAPABILITIES} capabilities"
        ));
    }
    if let Some(bad) = capabilities
        .iter()
        .find(|c| c.is_empty() || c.len() > MAX_CAPABILITY_LEN || c.chars().any(char::is_control))
    {
        return Err(err!(
            InvalidPayload,
            "capability {bad:?}: 1-{MAX_CAPABILITY_LEN} bytes without control characters"
        ));
    }
    Ok(())
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<()> {
    let size = serde_json::to_string(metadata).map_or(usize::MAX, |s| s.len());
    if size > MAX_AGENT_METADATA_BYTES {
        return Err(err!(
            InvalidPayload,
            "metadata is at most {MAX_AGENT_METADATA_BYTES} bytes of JSON"
        ));
    }
    Ok(())
}
