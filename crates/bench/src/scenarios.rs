//! The scenarios (S1–S6 of the benchmark plan), each returning plain results for the report.

use crate::payload;
use crate::peers::{self, Peer};
use crate::proto::Target;
use crate::run::{
    Percentiles, Step, Timing, Workers, fan_out_step, median, new_histogram, publish_open_loop,
};
use crate::servers::{self, Binaries, Kind, Running, rss_kib};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A server the suite can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Server {
    /// Switchboard.
    Switchboard,
    /// The bare tokio broadcast baseline.
    Baseline,
    /// Mosquitto (MQTT over WebSocket, QoS 0).
    Mosquitto,
    /// nats-server (core NATS over WebSocket).
    Nats,
    /// Socket.IO 4 on Node.
    SocketIo,
    /// A plain `ws` broadcast server on Node.
    NodeWs,
}

impl Server {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Server::Switchboard => "switchboard",
            Server::Baseline => "baseline",
            Server::Mosquitto => Peer::Mosquitto.name(),
            Server::Nats => Peer::Nats.name(),
            Server::SocketIo => Peer::SocketIo.name(),
            Server::NodeWs => Peer::NodeWs.name(),
        }
    }

    fn start(self, bins: &Binaries) -> anyhow::Result<Running> {
        match self {
            Server::Switchboard => servers::start(Kind::Switchboard, bins),
            Server::Baseline => servers::start(Kind::Baseline, bins),
            Server::Mosquitto => peers::start(Peer::Mosquitto, &bins.peers),
            Server::Nats => peers::start(Peer::Nats, &bins.peers),
            Server::SocketIo => peers::start(Peer::SocketIo, &bins.peers),
            Server::NodeWs => peers::start(Peer::NodeWs, &bins.peers),
        }
    }
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Fewer steps and shorter windows (a smoke run).
    pub quick: bool,
    /// Repetitions of each measurement, alternating servers (A B A B …).
    pub repeats: usize,
    /// Fan-out step timing.
    pub timing: Timing,
}

/// A fan-out step summarised over its repetitions (medians, with min–max of efficiency).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepSummary {
    /// Messages per second published.
    pub rate: f64,
    /// Deliveries per second offered.
    pub offered: f64,
    /// Deliveries per second that arrived (median).
    pub delivered: f64,
    /// Share delivered, in percent (median).
    pub delivered_pct: f64,
    /// Latency (medians of each percentile).
    pub latency: Percentiles,
    /// Deliveries per server CPU-second: median, min, max.
    pub per_cpu_second: (f64, f64, f64),
    /// Whether this step met the bar: p99 < 50 ms and ≥ 99.9 % delivered.
    pub passed: bool,
    /// Every repetition.
    pub runs: Vec<Step>,
    /// Why the step could not be completed, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StepSummary {
    /// A step the server could not complete (it closed a connection).
    fn failed(rate: f64, offered: f64, why: String) -> StepSummary {
        StepSummary {
            rate,
            offered,
            delivered: 0.0,
            delivered_pct: 0.0,
            latency: Percentiles::default(),
            per_cpu_second: (0.0, 0.0, 0.0),
            passed: false,
            runs: Vec::new(),
            error: Some(why),
        }
    }
}

fn summarise(runs: Vec<Step>) -> StepSummary {
    let med = |f: &dyn Fn(&Step) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>()).0;
    let latency = Percentiles {
        p50_us: med(&|s| s.latency.p50_us as f64) as u64,
        p99_us: med(&|s| s.latency.p99_us as f64) as u64,
        p999_us: med(&|s| s.latency.p999_us as f64) as u64,
    };
    let delivered_pct = med(&|s| s.delivered_pct);
    StepSummary {
        rate: runs[0].rate,
        offered: runs[0].offered,
        delivered: med(&|s| s.delivered),
        delivered_pct,
        latency,
        per_cpu_second: median(&mut runs.iter().map(|s| s.per_cpu_second).collect::<Vec<_>>()),
        passed: latency.p99_us < 50_000 && delivered_pct >= 99.9,
        runs,
        error: None,
    }
}

/// S1 for one server, payload size and subscriber count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanOut {
    /// Server name.
    pub server: String,
    /// Payload bytes.
    pub payload: usize,
    /// Subscribers.
    pub subscribers: u64,
    /// Steps, in increasing rate, up to the first that failed the bar.
    pub steps: Vec<StepSummary>,
    /// Deliveries per second of the highest step that met the bar (0 if none).
    pub capacity: f64,
    /// Deliveries per server CPU-second: the median over the steps that met the bar.
    pub efficiency: f64,
}

impl FanOut {
    /// Capacity (the delivered rate of the highest step that met the bar: p99 < 50 ms and
    /// ≥ 99.9 % delivered) and efficiency (median deliveries per server CPU-second over the
    /// steps that delivered ≥ 99.9 %, whatever their latency: latency with thousands of
    /// subscribers is bounded by one load core reading every socket, so it must not decide
    /// what the server's CPU cost is).
    pub fn figures(steps: &[StepSummary]) -> (f64, f64) {
        let capacity = steps
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.delivered)
            .fold(0.0, f64::max);
        let mut complete: Vec<f64> = steps
            .iter()
            .filter(|s| s.delivered_pct >= 99.9)
            .map(|s| s.per_cpu_second.0)
            .collect();
        (capacity, median(&mut complete).0)
    }
}

/// A server taking part in a stepped scenario, with its subscribers and the steps so far.
struct Contender {
    server: Server,
    running: Running,
    workers: Workers,
    steps: Vec<StepSummary>,
    /// False once it missed the bar or dropped a connection: it sits out the higher steps.
    alive: bool,
}

impl Contender {
    fn new(server: Server, running: Running, workers: Workers) -> Self {
        Contender {
            server,
            running,
            workers,
            steps: Vec::new(),
            alive: true,
        }
    }
}

/// Measures one step on every live contender, `repeats` times in rotating order (A B C, then
/// B C A, …), and records each one's summary. A contender whose measurement fails (it closed
/// a connection) records a failed step and is out. Returns true when nobody is left.
async fn step_all(
    contenders: &mut [Contender],
    repeats: usize,
    label: &str,
    rate: f64,
    offered: f64,
    mut measure: impl AsyncFnMut(&mut Contender) -> anyhow::Result<Step>,
) -> bool {
    let n = contenders.len();
    let mut runs: Vec<Vec<Step>> = vec![Vec::new(); n];
    for rep in 0..repeats {
        for k in 0..n {
            let c = &mut contenders[(k + rep) % n];
            if !c.alive {
                continue;
            }
            match measure(c).await {
                Ok(step) => runs[(k + rep) % n].push(step),
                Err(e) => {
                    eprintln!(
                        "{label} {:>11} failed at {rate:.0} msg/s: {e:#}",
                        c.server.name()
                    );
                    c.steps
                        .push(StepSummary::failed(rate, offered, format!("{e:#}")));
                    c.alive = false;
                }
            }
        }
    }
    for (c, runs) in contenders.iter_mut().zip(runs) {
        if runs.is_empty() || !c.alive {
            continue;
        }
        let summary = summarise(runs);
        eprintln!(
            "{label} {:>11} offered {:>9.0}/s delivered {:>6.2}% p99 {:>7} us {:>10.0} deliveries/cpu-s",
            c.server.name(),
            summary.offered,
            summary.delivered_pct,
            summary.latency.p99_us,
            summary.per_cpu_second.0
        );
        c.alive = summary.passed;
        c.steps.push(summary);
    }
    contenders.iter().all(|c| !c.alive)
}

/// S1: one publisher → N subscribers on one channel, rate stepped up until a server misses
/// the bar. All servers run at once (idle ones cost nothing), and each step alternates them.
pub async fn fan_out(
    bins: &Binaries,
    servers: &[Server],
    plan: &Plan,
) -> anyhow::Result<Vec<FanOut>> {
    let sizes: &[usize] = if plan.quick { &[100] } else { &[100, 4096] };
    let subscriber_counts: &[u64] = if plan.quick {
        &[100, 1000]
    } else {
        &[100, 1000, 5000]
    };
    let targets: &[f64] = if plan.quick {
        &[50_000.0, 200_000.0, 800_000.0]
    } else {
        &[
            50_000.0,
            100_000.0,
            200_000.0,
            400_000.0,
            800_000.0,
            1_600_000.0,
        ]
    };
    let mut results = Vec::new();
    for &size in sizes {
        for &n in subscriber_counts {
            let mut contenders = Vec::new();
            for &server in servers {
                let running = server.start(bins)?;
                let workers =
                    Workers::spawn(&bins.bench, &running.target, "fanout", n, 0, false).await?;
                contenders.push(Contender::new(server, running, workers));
            }
            let label = format!("s1 {size:>5} B n={n:<5}");
            for &deliveries in targets {
                let rate = deliveries / n as f64;
                let all_out = step_all(
                    &mut contenders,
                    plan.repeats,
                    &label,
                    rate,
                    rate * n as f64,
                    async |c| {
                        fan_out_step(
                            &c.running.target,
                            c.running.pid,
                            &mut c.workers,
                            "fanout",
                            rate,
                            size,
                            plan.timing,
                        )
                        .await
                    },
                )
                .await;
                if all_out {
                    break;
                }
            }
            for c in contenders {
                let (capacity, efficiency) = FanOut::figures(&c.steps);
                results.push(FanOut {
                    server: c.server.name().to_owned(),
                    payload: size,
                    subscribers: n,
                    steps: c.steps,
                    capacity,
                    efficiency,
                });
            }
        }
    }
    Ok(results)
}

/// S2 for one server: many channels, each with one sender and one receiver.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pairs {
    /// Server name.
    pub server: String,
    /// Channels (= sender/receiver pairs).
    pub channels: u64,
    /// Steps, in increasing rate, up to the first that failed the bar.
    pub steps: Vec<StepSummary>,
    /// Deliveries per second of the highest step that met the bar.
    pub capacity: f64,
    /// Deliveries per server CPU-second over the delivery-complete steps.
    pub efficiency: f64,
}

/// S2: 1,000 channels, each with one sender and one receiver, the per-channel rate stepped
/// up. The Node `ws` peer has no rooms and sits this one out.
pub async fn pairs(bins: &Binaries, servers: &[Server], plan: &Plan) -> anyhow::Result<Vec<Pairs>> {
    use crate::run::pairs_step;
    let channels: u64 = if plan.quick { 200 } else { 1000 };
    let rates: &[f64] = if plan.quick {
        &[20.0, 100.0]
    } else {
        &[25.0, 50.0, 100.0, 200.0, 400.0]
    };
    let mut contenders = Vec::new();
    for &server in servers.iter().filter(|s| **s != Server::NodeWs) {
        let running = server.start(bins)?;
        let workers =
            Workers::spawn(&bins.bench, &running.target, "pair", channels, 0, true).await?;
        contenders.push(Contender::new(server, running, workers));
    }
    let label = format!("s2 {channels} pairs");
    for &rate in rates {
        let all_out = step_all(
            &mut contenders,
            plan.repeats,
            &label,
            rate,
            rate * channels as f64,
            async |c| pairs_step(c.running.pid, &mut c.workers, rate, 100, plan.timing).await,
        )
        .await;
        if all_out {
            break;
        }
    }
    Ok(contenders
        .into_iter()
        .map(|c| {
            let (capacity, efficiency) = FanOut::figures(&c.steps);
            Pairs {
                server: c.server.name().to_owned(),
                channels,
                steps: c.steps,
                capacity,
                efficiency,
            }
        })
        .collect())
}

/// S3: latency at a fixed load of 10,000 deliveries/s (100 subscribers × 100 msg/s).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Server name.
    pub server: String,
    /// Medians over the repetitions.
    pub latency: Percentiles,
    /// Lowest and highest p99 over the repetitions, in µs.
    pub p99_range_us: (u64, u64),
    /// Share delivered, in percent (median).
    pub delivered_pct: f64,
}

/// Runs S3.
pub async fn latency(
    bins: &Binaries,
    servers: &[Server],
    plan: &Plan,
) -> anyhow::Result<Vec<Latency>> {
    let window = if plan.quick {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(10)
    };
    let timing = Timing {
        warmup: Duration::from_secs(1),
        window,
        drain: Duration::from_secs(1),
    };
    let mut running = Vec::new();
    for &server in servers {
        let r = server.start(bins)?;
        let workers = Workers::spawn(&bins.bench, &r.target, "latency", 100, 0, false).await?;
        running.push((server, r, workers, Vec::<Step>::new()));
    }
    for rep in 0..plan.repeats.max(3) {
        for k in 0..running.len() {
            let i = (k + rep) % running.len();
            let (server, r, workers, steps) = &mut running[i];
            let step =
                fan_out_step(&r.target, r.pid, workers, "latency", 100.0, 100, timing).await?;
            eprintln!(
                "s3 {:>11} p50 {} us p99 {} us p99.9 {} us",
                server.name(),
                step.latency.p50_us,
                step.latency.p99_us,
                step.latency.p999_us
            );
            steps.push(step);
        }
    }
    Ok(running
        .into_iter()
        .map(|(server, _, _, steps)| {
            let s = summarise(steps);
            let p99s: Vec<u64> = s.runs.iter().map(|r| r.latency.p99_us).collect();
            Latency {
                server: server.name().to_owned(),
                latency: s.latency,
                p99_range_us: (
                    *p99s.iter().min().unwrap_or(&0),
                    *p99s.iter().max().unwrap_or(&0),
                ),
                delivered_pct: s.delivered_pct,
            }
        })
        .collect())
}

/// S4: resident memory per idle (subscribed) connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Memory {
    /// Server name.
    pub server: String,
    /// Idle connections held.
    pub connections: u64,
    /// Server RSS with no connection, KiB.
    pub base_kib: u64,
    /// Server RSS with the connections, KiB.
    pub rss_kib: u64,
    /// (rss − base) / connections, KiB.
    pub per_connection_kib: f64,
}

/// Runs S4 (one server at a time: RSS must be its own).
pub async fn memory(
    bins: &Binaries,
    servers: &[Server],
    plan: &Plan,
) -> anyhow::Result<Vec<Memory>> {
    let counts: &[u64] = if plan.quick {
        &[1000, 5000]
    } else {
        &[1000, 5000, 15000]
    };
    let mut out = Vec::new();
    for &server in servers {
        let r = server.start(bins)?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let base = rss_kib(r.pid)?;
        let mut held = Vec::new();
        let mut have = 0;
        for &n in counts {
            held.push(Workers::spawn(&bins.bench, &r.target, "idle", n - have, have, false).await?);
            have = n;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss = rss_kib(r.pid)?;
            let per = (rss.saturating_sub(base)) as f64 / n as f64;
            eprintln!(
                "s4 {:>11} {n:>6} connections: {rss} KiB RSS, {per:.1} KiB each",
                server.name()
            );
            out.push(Memory {
                server: server.name().to_owned(),
                connections: n,
                base_kib: base,
                rss_kib: rss,
                per_connection_kib: per,
            });
        }
    }
    Ok(out)
}

/// S5: acknowledged durable publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Durable {
    /// What was measured (`switchboard`, or `fdatasync floor`).
    pub server: String,
    /// Highest acknowledged publishes per second that kept up with the offered rate.
    pub peak_per_s: f64,
    /// Ack latency at half the peak rate.
    pub ack_at_half_peak: Percentiles,
    /// Mean publishes per fsync at the peak.
    pub mean_batch: f64,
    /// How durability was provided.
    pub durability: String,
    /// Every step: (offered/s, acked/s, ack p99 µs).
    pub steps: Vec<(f64, f64, u64)>,
}

/// Steps the durable publish rate up on `target` until acks stop keeping up; returns the
/// peak, the mean fsync batch at the peak (Switchboard only), every step, and the ack latency
/// at half the peak.
async fn durable_curve(
    target: &Target,
    rates: &[f64],
    duration: Duration,
) -> anyhow::Result<(f64, f64, Vec<(f64, f64, u64)>, Percentiles)> {
    const SIZE: usize = 200;
    let mut steps = Vec::new();
    let (mut peak, mut peak_batch) = (0.0f64, 0.0);
    for (i, &rate) in rates.iter().enumerate() {
        let channel = format!("durable{i}");
        let before = fsync_batches(target).await.unwrap_or_default();
        let start = payload::now_ns() + 20_000_000;
        let end = start + duration.as_nanos() as u64;
        let published = match publish_open_loop(
            target,
            &channel,
            rate,
            SIZE,
            start,
            duration,
            (start, end),
            true,
        )
        .await
        {
            Ok(published) => published,
            // Overload may end the connection (a publisher that cannot read its acks fast
            // enough is a slow consumer): the step failed, the curve ends here.
            Err(e) => {
                eprintln!("s5 {:>14} offered {rate:>8.0}/s failed: {e:#}", target.name);
                steps.push((rate, 0.0, 0));
                break;
            }
        };
        let after = fsync_batches(target).await.unwrap_or_default();
        let acked_per_s = published.acks as f64 / duration.as_secs_f64();
        let p = Percentiles::of(&published.ack_latency);
        eprintln!(
            "s5 {:>14} offered {rate:>8.0}/s acked {acked_per_s:>8.0}/s ack p99 {} us (refused {})",
            target.name, p.p99_us, published.refusals
        );
        steps.push((rate, acked_per_s, p.p99_us));
        let kept_up = published.acks as f64 >= 0.99 * published.sent as f64 && p.p99_us < 1_000_000;
        if !kept_up {
            break;
        }
        peak = acked_per_s;
        let (count, sum) = (after.0 - before.0, after.1 - before.1);
        peak_batch = if count > 0.0 { sum / count } else { 0.0 };
    }
    let half = (peak / 2.0).max(100.0);
    let start = payload::now_ns() + 20_000_000;
    let end = start + duration.as_nanos() as u64;
    let at_half = publish_open_loop(
        target,
        "durable-half",
        half,
        SIZE,
        start,
        duration,
        (start, end),
        true,
    )
    .await?;
    let ack_at_half = Percentiles::of(&at_half.ack_latency);
    eprintln!(
        "s5 {:>14} at half peak ({half:.0}/s): ack p50 {} us p99 {} us",
        target.name, ack_at_half.p50_us, ack_at_half.p99_us
    );
    Ok((peak, peak_batch, steps, ack_at_half))
}

/// Runs S5: Switchboard, the fdatasync floor batched the same way, and NATS JetStream.
pub async fn durable(bins: &Binaries, plan: &Plan) -> anyhow::Result<Vec<Durable>> {
    let rates: &[f64] = if plan.quick {
        &[2_000.0, 10_000.0, 40_000.0]
    } else {
        &[
            2_000.0, 5_000.0, 10_000.0, 20_000.0, 40_000.0, 80_000.0, 160_000.0,
        ]
    };
    let duration = if plan.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(4)
    };
    let mut out = Vec::new();
    let r = servers::start_switchboard(bins, true)?;
    let (peak, batch, steps, ack_at_half_peak) = durable_curve(&r.target, rates, duration).await?;
    drop(r);
    out.push(Durable {
        server: "switchboard".into(),
        peak_per_s: peak,
        ack_at_half_peak,
        mean_batch: batch,
        durability: "fsync before ack, group commit (embedded log: one pwrite + fdatasync per batch; the database written behind it)".into(),
        steps,
    });
    let floor_batch = batch.max(1.0).round() as u64;
    let floor = fsync_floor(bins, 200, floor_batch, duration).await?;
    eprintln!("s5 fdatasync floor (batch {floor_batch}): {floor:.0} records/s");
    out.push(Durable {
        server: "fdatasync floor".into(),
        peak_per_s: floor,
        ack_at_half_peak: Percentiles::default(),
        mean_batch: floor_batch as f64,
        durability: "append + fdatasync per batch, same disk, Switchboard's mean batch".into(),
        steps: Vec::new(),
    });
    match peers::start_nats(&bins.peers, true) {
        Ok(r) => {
            let (peak, _, steps, ack_at_half_peak) =
                durable_curve(&r.target, rates, duration).await?;
            out.push(Durable {
                server: "nats-jetstream".into(),
                peak_per_s: peak,
                ack_at_half_peak,
                mean_batch: 0.0,
                durability: "JetStream file store; nats-server 2.9 acks after the OS write and fsyncs on a timer (weaker than fsync before ack)".into(),
                steps,
            });
        }
        Err(e) => eprintln!("s5 nats-jetstream skipped: {e:#}"),
    }
    Ok(out)
}

/// (count, sum) of Switchboard's fsync batch-size histogram, from /metrics.
async fn fsync_batches(target: &Target) -> anyhow::Result<(f64, f64)> {
    let body = http_get(target.addr, "/metrics").await?;
    let read = |name: &str| {
        body.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        read("switchboard_fsync_batch_size_count"),
        read("switchboard_fsync_batch_size_sum"),
    ))
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<String> {
    http_get_with(addr, path, None).await
}

/// A GET with an optional bearer key; returns the whole response.
async fn http_get_with(
    addr: std::net::SocketAddr,
    path: &str,
    key: Option<&str>,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

/// Runs the fdatasync floor in its own process on the server core.
async fn fsync_floor(
    bins: &Binaries,
    size: usize,
    batch: u64,
    duration: Duration,
) -> anyhow::Result<f64> {
    let dir = servers::TempDir::new("fsync-floor")?;
    let output = tokio::process::Command::new("taskset")
        .args(["-c", servers::SERVER_CPU])
        .arg(&bins.bench)
        .args([
            "fsync-floor",
            "--record-bytes",
            &size.to_string(),
            "--batch",
            &batch.to_string(),
        ])
        .args(["--seconds", &duration.as_secs_f64().to_string(), "--dir"])
        .arg(&dir.0)
        .output()
        .await?;
    let text = String::from_utf8(output.stdout)?;
    Ok(text.trim().parse()?)
}

/// The floor itself: append `record_bytes` records to a file, fdatasync every `batch`.
pub fn fsync_floor_loop(
    dir: &std::path::Path,
    record_bytes: usize,
    batch: u64,
    seconds: f64,
) -> anyhow::Result<f64> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("floor.log"))?;
    let record = vec![b'r'; record_bytes];
    let mut buf = Vec::with_capacity(record_bytes * batch as usize);
    let started = Instant::now();
    let mut records = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        buf.clear();
        for _ in 0..batch {
            buf.extend_from_slice(&record);
        }
        file.write_all(&buf)?;
        file.sync_data()?;
        records += batch;
    }
    Ok(records as f64 / started.elapsed().as_secs_f64())
}

/// S6: reading pages of 100 from many stored messages, from each storage tier.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryRead {
    /// Server name.
    pub server: String,
    /// The read: its `poll_source` and which messages (`newest`: the last 100; `older`: 100
    /// from a random place well before the cache).
    #[serde(default)]
    pub read: String,
    /// Messages stored before reading.
    pub stored: u64,
    /// Sequential reads per second on one connection.
    pub reads_per_s: f64,
    /// Read latency.
    pub latency: Percentiles,
}

/// Runs S6 on Switchboard.
pub async fn history(bins: &Binaries, plan: &Plan) -> anyhow::Result<Vec<HistoryRead>> {
    use crate::ws::Opcode;
    let stored: u64 = if plan.quick { 100_000 } else { 1_000_000 };
    // Durability does not change reads; without fsync the preload takes seconds, not minutes.
    let r = servers::start_switchboard(bins, false)?;
    preload(&r.target, "history", stored, 100).await?;
    eprintln!("s6 preloaded {stored} messages");
    // Let the database writer finish, so the database tier holds everything too.
    wait_for_database(&r.target, "history", stored).await?;
    let mut ws = r.target.publisher(None, "history", 7).await?;
    let seconds = if plan.quick { 1.0 } else { 4.0 };
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (source, older) in [
        ("CACHE", false),
        ("LOG", false),
        ("DATABASE", false),
        ("AUTO", false),
        ("LOG", true),
        ("DATABASE", true),
        ("AUTO", true),
    ] {
        let mut h = new_histogram();
        let started = Instant::now();
        let mut reads = 0u64;
        while started.elapsed().as_secs_f64() < seconds {
            let range = if older {
                // xorshift: a different old page each time, below the cache's 1,024.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                format!(r#""from_offset":{},"#, 1 + seed % (stored - 2_000))
            } else {
                r#""direction":"backward","#.to_owned()
            };
            let t0 = Instant::now();
            let request = format!(
                r#"["1","h{reads}","channel:history","history",{{{range}"limit":100,"poll_source":"{source}"}}]"#
            );
            ws.send(Opcode::Text, request.as_bytes()).await?;
            let expect = format!(r#""h{reads}""#);
            loop {
                let frame = ws.next().await?;
                if frame
                    .payload
                    .windows(expect.len())
                    .any(|w| w == expect.as_bytes())
                {
                    anyhow::ensure!(
                        frame.payload.windows(11).any(|w| w == br#""status":"o"#),
                        "history from {source} failed: {}",
                        String::from_utf8_lossy(&frame.payload)
                    );
                    break;
                }
            }
            let _ = h.record((t0.elapsed().as_micros() as u64).max(1));
            reads += 1;
        }
        let reads_per_s = reads as f64 / started.elapsed().as_secs_f64();
        let latency = Percentiles::of(&h);
        let read = format!("{source} {}", if older { "older" } else { "newest" });
        eprintln!(
            "s6 {read}: {reads_per_s:.0} reads/s p50 {} us p99 {} us",
            latency.p50_us, latency.p99_us
        );
        out.push(HistoryRead {
            server: "switchboard".into(),
            read,
            stored,
            reads_per_s,
            latency,
        });
    }
    Ok(out)
}

/// Waits until the database tier holds offset `head` of `channel` (it trails the log).
async fn wait_for_database(target: &Target, channel: &str, head: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let path = format!("/v1/channels/{channel}/messages?poll_source=DATABASE&from_offset={head}");
    loop {
        let body = http_get_with(target.addr, &path, target.key.as_deref()).await?;
        if body.contains(&format!(r#""offset":{head}"#)) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the database did not catch up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Publishes `count` persisted messages as fast as the server acknowledges them, keeping a
/// window of publishes in flight.
async fn preload(target: &Target, channel: &str, count: u64, size: usize) -> anyhow::Result<()> {
    let mut ws = target.publisher(None, channel, 9).await?;
    let mut sent = 0u64;
    let mut acked = 0u64;
    const WINDOW: u64 = 800;
    while acked < count {
        if sent < count && sent - acked < WINDOW / 2 {
            let mut batch = Vec::new();
            while sent < count && sent - acked < WINDOW {
                let body = payload::make(size, payload::now_ns());
                batch.extend_from_slice(&target.publish(&mut ws, channel, &body, sent + 2, true));
                sent += 1;
            }
            ws.write_raw(&batch).await?;
        }
        let frame = ws.next().await?;
        let (ok, refused) = target.acks(&frame);
        anyhow::ensure!(refused == 0, "the server refused a preload publish");
        acked += ok;
    }
    Ok(())
}
