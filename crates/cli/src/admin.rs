//! `switchboard tenants …` and `switchboard keys …`: manage tenants and keys, against a running
//! server over the HTTP API (with an admin key, or a tenant key for its own keys) or offline,
//! directly on a stopped server's data directory.

use crate::client::print_json_line;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_client::{CreateKey, CreatedKey, CreatedTenant, HttpClient, KeyInfo, TenantInfo};
use switchboard_server::auth::{Keys, NewKey};
use switchboard_server::storage::Database;

/// Where the tenants and keys live.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// Work on this data directory directly instead of a running server (the server must be
    /// stopped: the directory admits one process at a time).
    #[arg(long, global = true, value_name = "DIR", conflicts_with = "key")]
    data_dir: Option<PathBuf>,
    /// Server URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:7400")]
    url: String,
    /// An admin key (`admin.key` in the data directory), or a tenant key for its own keys.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_ADMIN_KEY",
        hide_env_values = true
    )]
    key: Option<String>,
}

/// `switchboard tenants …`
#[derive(Debug, Args)]
pub struct TenantsArgs {
    #[command(subcommand)]
    command: TenantsCommand,
    #[command(flatten)]
    target: AdminTarget,
}

#[derive(Debug, Subcommand)]
enum TenantsCommand {
    /// Create a tenant and its first key (printed once).
    Create {
        /// Tenant id: 1-128 of [A-Za-z0-9_.:@-].
        id: String,
    },
    /// List tenants, one JSON line each.
    List,
    /// Revoke a tenant: every key of it is refused and its connections are closed.
    Revoke {
        /// Tenant id.
        id: String,
    },
}

/// `switchboard keys …`
#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[command(flatten)]
    target: AdminTarget,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key (printed once): for `--tenant`, an admin key with `--admin`, or with a
    /// tenant key, another key of the same tenant.
    Create {
        /// The tenant (admin key or offline).
        #[arg(long, conflicts_with = "admin")]
        tenant: Option<String>,
        /// Create an admin key.
        #[arg(long)]
        admin: bool,
    },
    /// List keys, one JSON line each (never their secrets).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key by id: connections using it are closed at once.
    Revoke {
        /// Key id (the part after `sk_` or `ak_`).
        id: String,
    },
}

/// The two ways to reach the registry.
enum Backend {
    Online(HttpClient),
    Offline {
        keys: Box<Keys>,
        store: Arc<dyn Database>,
    },
}

fn created(key: NewKey) -> CreatedKey {
    CreatedKey {
        key: key.key,
        info: key.info,
    }
}

impl Backend {
    async fn open(target: &AdminTarget) -> anyhow::Result<Backend> {
        if let Some(dir) = &target.data_dir {
            let storage = switchboard_server::Config::default().storage;
            let store = switchboard_server::storage::open_database(dir, &storage)
                .await
                .with_context(|| format!("cannot open {}", dir.display()))?;
            let keys = Box::new(Keys::load(store.clone()).await?);
            return Ok(Backend::Offline { keys, store });
        }
        let key = target.key.clone().context(
            "give --key (or SWITCHBOARD_ADMIN_KEY) to use a running server, or --data-dir DIR",
        )?;
        Ok(Backend::Online(HttpClient::new(&target.url, key)?))
    }

    async fn close(self) {
        if let Backend::Offline { store, .. } = self {
            store.close().await;
        }
    }

    async fn create_tenant(&self, id: &str) -> anyhow::Result<CreatedTenant> {
        Ok(match self {
            Backend::Online(http) => http.create_tenant(id).await?,
            Backend::Offline { keys, .. } => {
                keys.create_tenant(id).await?;
                let key = created(keys.create_key(id).await?);
                let tenant = keys
                    .tenant_info(id)
                    .context("the tenant was just created")?;
                CreatedTenant { tenant, key }
            }
        })
    }

    async fn tenants(&self) -> anyhow::Result<Vec<TenantInfo>> {
        Ok(match self {
            Backend::Online(http) => http.tenants().await?,
            Backend::Offline { keys, .. } => keys.tenants(),
        })
    }

    async fn revoke_tenant(&self, id: &str) -> anyhow::Result<TenantInfo> {
        Ok(match self {
            Backend::Online(http) => http.revoke_tenant(id).await?,
            Backend::Offline { keys, .. } => keys.revoke_tenant(id).await?,
        })
    }

    async fn create_key(&self, request: CreateKey) -> anyhow::Result<CreatedKey> {
        Ok(match self {
            Backend::Online(http) => http.create_key(&request).await?,
            Backend::Offline { keys, .. } => match request {
                CreateKey { admin: true, .. } => created(keys.create_admin_key().await?),
                CreateKey {
                    tenant: Some(tenant),
                    ..
                } => created(keys.create_key(&tenant).await?),
                CreateKey { tenant: None, .. } => {
                    anyhow::bail!("offline, say which key: --tenant ID or --admin")
                }
            },
        })
    }

    async fn keys(&self, tenant: Option<&str>) -> anyhow::Result<Vec<KeyInfo>> {
        Ok(match self {
            Backend::Online(http) => http.keys(tenant).await?,
            Backend::Offline { keys, .. } => keys.keys(tenant),
        })
    }

    async fn revoke_key(&self, id: &str) -> anyhow::Result<KeyInfo> {
        Ok(match self {
            Backend::Online(http) => http.revoke_key(id).await?,
            Backend::Offline { keys, .. } => keys.revoke_key(id).await?,
        })
    }
}

/// Runs `switchboard tenants …`.
pub async fn tenants(args: TenantsArgs) -> anyhow::Result<()> {
    let backend = Backend::open(&args.target).await?;
    let result = async {
        match &args.command {
            TenantsCommand::Create { id } => print_json_line(&backend.create_tenant(id).await?),
            TenantsCommand::List => backend
                .tenants()
                .await?
                .iter()
                .try_for_each(print_json_line),
            TenantsCommand::Revoke { id } => print_json_line(&backend.revoke_tenant(id).await?),
        }
    }
    .await;
    backend.close().await;
    result
}

/// Runs `switchboard keys …`.
pub async fn keys(args: KeysArgs) -> anyhow::Result<()> {
    let backend = Backend::open(&args.target).await?;
    let result = async {
        match &args.command {
            KeysCommand::Create { tenant, admin } => {
                let request = CreateKey {
                    tenant: tenant.clone(),
                    admin: *admin,
                };
                print_json_line(&backend.create_key(request).await?)
            }
            KeysCommand::List { tenant } => backend
                .keys(tenant.as_deref())
                .await?
                .iter()
                .try_for_each(print_json_line),
            KeysCommand::Revoke { id } => print_json_line(&backend.revoke_key(id).await?),
        }
    }
    .await;
    backend.close().await;
    result
}
