//! Servers under test: started as processes pinned to core 0, measured through /proc.

use crate::proto::{Proto, Target};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The kinds of server the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Switchboard itself.
    Switchboard,
    /// The bare tokio broadcast server in this crate.
    Baseline,
}

/// The core servers are pinned to; the load generator uses the other one.
pub const SERVER_CPU: &str = "0";
/// The core of the load generator.
pub const LOAD_CPU: &str = "1";

/// A running server.
pub struct Running {
    /// How to reach it.
    pub target: Target,
    /// Its process id (CPU time and RSS are read from here).
    pub pid: u32,
    child: Child,
    _dir: Option<TempDir>,
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TempDir {
    /// A fresh directory under the system temp dir.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            crate::payload::now_ns()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Running {
    /// A running server from its process and, if any, the directory to remove after it.
    pub fn new(target: Target, child: Child, dir: Option<TempDir>) -> Running {
        Running {
            target,
            pid: child.id(),
            child,
            _dir: dir,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Paths of the binaries the suite starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `switchboard` (release build).
    pub switchboard: PathBuf,
    /// This benchmark binary.
    pub bench: PathBuf,
    /// The peers' programs.
    pub peers: crate::peers::PeerPaths,
}

/// Starts a server of `kind` on a free loopback port, pinned to [`SERVER_CPU`].
pub fn start(kind: Kind, bins: &Binaries) -> anyhow::Result<Running> {
    match kind {
        Kind::Switchboard => start_switchboard(bins, true),
        Kind::Baseline => {
            let mut cmd = pinned(&bins.bench);
            cmd.args(["baseline-server", "--listen", "127.0.0.1:0"]);
            let (child, addr) = spawn_and_read(cmd, "listening ")?;
            let pid = child.id();
            Ok(Running {
                target: Target {
                    name: "baseline".into(),
                    proto: Proto::Raw,
                    addr,
                    key: None,
                },
                pid,
                child,
                _dir: None,
            })
        }
    }
}

/// Starts Switchboard with the suite's settings; `fsync` picks the durability.
pub fn start_switchboard(bins: &Binaries, fsync: bool) -> anyhow::Result<Running> {
    let dir = TempDir::new("switchboard-bench")?;
    let cmd = switchboard_command(bins, &dir.0, fsync);
    let (child, addr) = spawn_and_read(cmd, SWITCHBOARD_LISTENING)?;
    let key = std::fs::read_to_string(dir.0.join("default.key"))?
        .trim()
        .to_owned();
    let pid = child.id();
    Ok(Running {
        target: Target {
            name: "switchboard".into(),
            proto: Proto::Switchboard,
            addr,
            key: Some(key),
        },
        pid,
        child,
        _dir: Some(dir),
    })
}

/// What `switchboard serve` prints once it listens, before its address.
pub const SWITCHBOARD_LISTENING: &str = "Switchboard listening on http://";

/// `switchboard serve` on a free loopback port with `data_dir`, pinned to [`SERVER_CPU`], with
/// the suite's settings (the limits a benchmark needs; `fsync` picks the durability).
pub fn switchboard_command(bins: &Binaries, data_dir: &Path, fsync: bool) -> Command {
    let mut cmd = pinned(&bins.switchboard);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("SWITCHBOARD_LIMITS_MAX_CONNECTIONS", "30000")
        .env("SWITCHBOARD_LIMITS_MAX_CONNECTIONS_PER_TENANT", "30000")
        // Rate limits are the operator's policy, not the server's capacity: set far above any
        // load here, so their cost is measured but they never refuse.
        .env(
            "SWITCHBOARD_LIMITS_CONNECTION_MESSAGES_PER_SEC",
            "100000000",
        )
        .env("SWITCHBOARD_LIMITS_KEY_MESSAGES_PER_SEC", "100000000")
        .env("SWITCHBOARD_LIMITS_TENANT_MESSAGES_PER_SEC", "100000000")
        .env(
            "SWITCHBOARD_LIMITS_CONNECTION_BYTES_PER_SEC",
            "1000000000000",
        )
        .env("SWITCHBOARD_LIMITS_KEY_BYTES_PER_SEC", "1000000000000")
        .env("SWITCHBOARD_LIMITS_TENANT_BYTES_PER_SEC", "1000000000000")
        .env("SWITCHBOARD_LIMITS_HEARTBEAT_TIMEOUT_MS", "600000")
        .env("SWITCHBOARD_LIMITS_OUTBOUND_QUEUE", "4096")
        // S5 keeps up to rate x ack latency publishes in flight on one connection (80,000/s x
        // 14 ms is past the default 1,024); a deployment publishing that fast raises it too,
        // below the outbound queue, which one group commit's acks must fit in.
        .env("SWITCHBOARD_LIMITS_MAX_INFLIGHT_PUBLISHES", "3072")
        .env(
            "SWITCHBOARD_STORAGE_DURABILITY",
            if fsync { "fsync" } else { "none" },
        );
    cmd
}

/// A command pinned to the server core with `taskset`.
pub fn pinned(program: &Path) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", SERVER_CPU]).arg(program);
    cmd
}

/// Spawns `cmd` and reads stdout until a line starting with `prefix`, whose next word is the
/// address the server bound.
pub fn spawn_and_read(mut cmd: Command, prefix: &str) -> anyhow::Result<(Child, SocketAddr)> {
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{cmd:?} did not print {prefix:?} in time");
        }
        let Some(line) = lines.next() else {
            bail!("{cmd:?} exited before printing {prefix:?}");
        };
        let line = line?;
        if let Some(rest) = line.strip_prefix(prefix) {
            let word = rest.split_whitespace().next().unwrap_or_default();
            let addr: SocketAddr = word
                .parse()
                .with_context(|| format!("parsing the address in {line:?}"))?;
            std::thread::spawn(move || for _ in lines {});
            return Ok((child, addr));
        }
    }
}

/// User plus system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    // CLK_TCK is 100 on every Linux this suite targets; `getconf` confirms when available.
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?)
}
