//! `switchboard serve` and `switchboard config`: the server side of the binary.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use switchboard_server::config::{Config, DEFAULT_CONFIG_TOML, LogFormat};

/// Where the configuration comes from (shared by `serve` and `config`).
#[derive(Debug, clap::Args)]
pub struct ConfigSource {
    /// A `switchboard.toml` file; `SWITCHBOARD_<SECTION>_<KEY>` env vars override it.
    #[arg(long, value_name = "FILE", env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides `[server] listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Data directory (overrides `[server] data_dir`).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl ConfigSource {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.server.data_dir = dir.clone();
        }
        Ok(config)
    }
}

/// Arguments of `switchboard serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    source: ConfigSource,
}

/// Runs the server until SIGINT or SIGTERM.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.source.load()?;
    init_logging(&config);
    let server = switchboard_server::Server::start(config.clone())
        .await
        .context("starting the server")?;
    if let Some(key) = &server.bootstrap_key {
        let path = config.server.data_dir.join("default.key");
        println!(
            "Created tenant `default`. Its API key is shown once here and saved to {}:",
            path.display()
        );
        println!();
        println!("    {key}");
        println!();
        println!(
            "Use it with: export SWITCHBOARD_API_KEY=$(cat {})",
            path.display()
        );
    }
    if server.admin_key.is_some() {
        let path = config.server.data_dir.join("admin.key");
        println!(
            "Created an admin key for managing tenants and keys, saved to {} \
             (see `switchboard tenants --help`).",
            path.display()
        );
    }
    println!(
        "Switchboard listening on {} (ws://{}/socket/websocket)",
        server.http_url(),
        server.local_addr
    );
    server.run_until_signal().await;
    Ok(())
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    // Colors only for a terminal: redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Arguments of `switchboard config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    source: ConfigSource,
    /// Print the commented default configuration file instead.
    #[arg(long)]
    default: bool,
}

/// Prints the effective configuration (defaults, file, env vars and flags applied).
pub fn print_config(args: ConfigArgs) -> anyhow::Result<()> {
    if args.default {
        print!("{DEFAULT_CONFIG_TOML}");
    } else {
        print!("{}", args.source.load()?.to_toml());
    }
    Ok(())
}
