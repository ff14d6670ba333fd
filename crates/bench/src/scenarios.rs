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

/// A durable publish curve (see [`durable_curve`]).
struct Curve {
    /// Highest acked/s that kept up.
    peak: f64,
    /// Mean publishes per fsync at the peak (Switchboard's embedded log only).
    peak_batch: f64,
    /// Every step: (offered/s, acked/s, ack p99 µs).
    steps: Vec<(f64, f64, u64)>,
    /// Per step, per process given: CPU seconds per second, from the first publish until the
    /// last ack (or the ack wait's end).
    cpu_share: Vec<Vec<f64>>,
    /// Ack latency at half the peak.
    ack_at_half: Percentiles,
}

/// Steps the durable publish rate up on `target` until acks stop keeping up; measures the
/// CPU time of `pids` over each step.
async fn durable_curve(
    label: &str,
    target: &Target,
    pids: &[u32],
    rates: &[f64],
    duration: Duration,
) -> anyhow::Result<Curve> {
    const SIZE: usize = 200;
    let mut steps = Vec::new();
    let mut cpu_share = Vec::new();
    let cpu =
        || -> anyhow::Result<Vec<f64>> { pids.iter().map(|&p| servers::cpu_seconds(p)).collect() };
    let (mut peak, mut peak_batch) = (0.0f64, 0.0);
    for (i, &rate) in rates.iter().enumerate() {
        let channel = format!("durable{i}");
        let before = fsync_batches(target).await.unwrap_or_default();
        let cpu_before = (cpu()?, Instant::now());
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
                eprintln!(
                    "{label} {:>14} offered {rate:>8.0}/s failed: {e:#}",
                    target.name
                );
                steps.push((rate, 0.0, 0));
                break;
            }
        };
        let seconds = cpu_before.1.elapsed().as_secs_f64();
        let shares = cpu()?
            .iter()
            .zip(&cpu_before.0)
            .map(|(after, before)| (after - before) / seconds)
            .collect();
        cpu_share.push(shares);
        let after = fsync_batches(target).await.unwrap_or_default();
        let acked_per_s = published.acks as f64 / duration.as_secs_f64();
        let p = Percentiles::of(&published.ack_latency);
        eprintln!(
            "{label} {:>14} offered {rate:>8.0}/s acked {acked_per_s:>8.0}/s ack p99 {} us (refused {})",
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
        "{label} {:>14} at half peak ({half:.0}/s): ack p50 {} us p99 {} us",
        target.name, ack_at_half.p50_us, ack_at_half.p99_us
    );
    Ok(Curve {
        peak,
        peak_batch,
        steps,
        cpu_share,
        ack_at_half,
    })
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
    let curve = durable_curve("s5", &r.target, &[], rates, duration).await?;
    drop(r);
    out.push(Durable {
        server: "switchboard".into(),
        peak_per_s: curve.peak,
        ack_at_half_peak: curve.ack_at_half,
        mean_batch: curve.peak_batch,
        durability: "fsync before ack, group commit (embedded log: one pwrite + fdatasync per batch; the database written behind it)".into(),
        steps: curve.steps,
    });
    let floor_batch = curve.peak_batch.max(1.0).round() as u64;
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
            let curve = durable_curve("s5", &r.target, &[], rates, duration).await?;
            out.push(Durable {
                server: "nats-jetstream".into(),
                peak_per_s: curve.peak,
                ack_at_half_peak: curve.ack_at_half,
                mean_batch: 0.0,
                durability: "JetStream file store; nats-server 2.9 acks after the OS write and fsyncs on a timer (weaker than fsync before ack)".into(),
                steps: curve.steps,
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

/// S7, one step of one deployment, summarised over its repetitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossNodeStep {
    /// Every subscriber (the bar is decided here, as in S1).
    pub all: StepSummary,
    /// Cluster only: the subscribers on the publisher's node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_node: Option<StepSummary>,
    /// Cluster only: the subscribers on the other nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_nodes: Option<StepSummary>,
    /// The publisher's ack latency from the scheduled time (medians of each percentile).
    pub ack: Percentiles,
    /// Publishes refused, over every repetition (more than the in-flight limit awaited acks).
    pub refused: u64,
}

/// S7 for one deployment and subscriber count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrossNode {
    /// `cluster` (three nodes) or `single` (one node, the default embedded storage).
    pub deployment: String,
    /// Subscribers in all (spread evenly over the nodes of a cluster).
    pub subscribers: u64,
    /// Payload bytes.
    pub payload: usize,
    /// Steps, in increasing rate, up to the first that failed the bar.
    pub steps: Vec<CrossNodeStep>,
    /// Deliveries per second of the highest step that met the bar (0 if none).
    pub capacity: f64,
    /// Whether the highest step offered met the bar (the capacity is then a lower bound).
    pub capacity_is_lower_bound: bool,
}

/// S7's results: the setup (versions, where things ran) and every deployment's curve.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CrossNodeRun {
    /// What the cluster was made of (name, value).
    pub setup: Vec<(String, String)>,
    /// Offered deliveries per second of every step (the same for both deployments).
    pub offered: Vec<f64>,
    /// One entry per deployment and subscriber count.
    pub results: Vec<CrossNode>,
    /// Persisted publishes to channels nobody subscribes to, rate stepped until acks fall
    /// behind: the append path alone, without the fan-out.
    #[serde(default)]
    pub append_ceiling: Vec<AppendCeiling>,
}

/// S7's append ceiling of one deployment (as S5's curve, 200-byte messages, one publisher).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppendCeiling {
    /// `cluster` (publishing on node 1) or `single`.
    pub deployment: String,
    /// Highest acknowledged publishes per second that kept up with the offered rate.
    pub peak_per_s: f64,
    /// Whether the highest rate offered kept up (the peak is then a lower bound).
    pub peak_is_lower_bound: bool,
    /// Ack latency at half the peak.
    pub ack_at_half_peak: Percentiles,
    /// Every step: (offered/s, acked/s, ack p99 µs).
    pub steps: Vec<(f64, f64, u64)>,
    /// The deployment's processes on the server core (the cluster: its nodes, nats-server).
    #[serde(default)]
    pub processes: Vec<String>,
    /// Per step, per process: CPU seconds per second, from the first publish to the last ack.
    #[serde(default)]
    pub cpu_share: Vec<Vec<f64>>,
}

/// A deployment taking part in S7: its servers, the node the publisher uses, and one group
/// of subscriber workers per node (group 0 on the publisher's node).
struct Deployment {
    name: &'static str,
    publisher: Target,
    pids: Vec<u32>,
    groups: Vec<Workers>,
    steps: Vec<CrossNodeStep>,
    alive: bool,
    // Dropped last: the servers (workers are killed first, as fields drop in order).
    _cluster: Option<crate::cluster::Cluster>,
    _single: Option<Running>,
}

/// One repetition of an S7 step: every subscriber, same node, other nodes; ack latency.
struct CrossNodeRep {
    all: Step,
    same: Option<Step>,
    other: Option<Step>,
    ack: Percentiles,
    refused: u64,
}

impl Deployment {
    async fn measure(
        &mut self,
        channel: &str,
        rate: f64,
        size: usize,
        timing: Timing,
    ) -> anyhow::Result<CrossNodeRep> {
        let m = crate::run::groups_step(
            &self.publisher,
            &self.pids,
            &mut self.groups,
            channel,
            rate,
            size,
            timing,
            true,
        )
        .await?;
        let n = m.groups.len();
        let all = m.step(0..n, rate, m.cpu_seconds, timing.window)?;
        let (same, other) = if n > 1 {
            (
                Some(m.step(0..1, rate, 0.0, timing.window)?),
                Some(m.step(1..n, rate, 0.0, timing.window)?),
            )
        } else {
            (None, None)
        };
        Ok(CrossNodeRep {
            all,
            same,
            other,
            ack: Percentiles::of(&m.ack_latency),
            refused: m.refused,
        })
    }
}

fn summarise_cross_node(reps: Vec<CrossNodeRep>) -> CrossNodeStep {
    let ack = Percentiles {
        p50_us: median(&mut reps.iter().map(|r| r.ack.p50_us as f64).collect::<Vec<_>>()).0 as u64,
        p99_us: median(&mut reps.iter().map(|r| r.ack.p99_us as f64).collect::<Vec<_>>()).0 as u64,
        p999_us: median(
            &mut reps
                .iter()
                .map(|r| r.ack.p999_us as f64)
                .collect::<Vec<_>>(),
        )
        .0 as u64,
    };
    let refused = reps.iter().map(|r| r.refused).sum();
    let (mut all, mut same, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for r in reps {
        all.push(r.all);
        same.extend(r.same);
        other.extend(r.other);
    }
    let part = |steps: Vec<Step>| (!steps.is_empty()).then(|| summarise(steps));
    CrossNodeStep {
        all: summarise(all),
        same_node: part(same),
        other_nodes: part(other),
        ack,
        refused,
    }
}

/// S7: persisted fan-out across a three-node cluster (shared JetStream log and PostgreSQL),
/// beside a single node with the default embedded storage. One publisher on node 1 publishes
/// persisted messages to one channel; the subscribers are spread evenly over the nodes (on
/// the single node, all on it). The rate is stepped up until a deployment misses the bar;
/// each step alternates the two deployments.
pub async fn cross_node(bins: &Binaries, plan: &Plan) -> anyhow::Result<CrossNodeRun> {
    use crate::cluster::{self, Cluster, NODES};
    const SIZE: usize = 100;
    const CHANNEL: &str = "crossnode";
    let subscriber_counts: &[u64] = &[100, 1000];
    let offered: Vec<f64> = if plan.quick {
        vec![25_000.0, 100_000.0, 400_000.0]
    } else {
        vec![
            25_000.0, 50_000.0, 100_000.0, 200_000.0, 400_000.0, 800_000.0,
        ]
    };
    let admin = cluster::postgres_admin_url();
    let postgres = cluster::postgres_version(&admin)?;
    let (nats_server, nats_version) = cluster::nats_server()?;
    let mut run = CrossNodeRun {
        setup: vec![
            (
                "load average when S7 started".into(),
                // Other work on this shared machine shows here (1, 5, 15 minutes).
                std::fs::read_to_string("/proc/loadavg")
                    .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default(),
            ),
            ("switchboard".into(), switchboard_build(&bins.switchboard)),
            ("nodes".into(), format!("{NODES} × switchboard serve (release), log = \"jetstream\", db = \"postgres\", each with its own data dir")),
            ("nats-server".into(), format!("{nats_version} (`-js`, file store in a temp dir, default sync: acks once written, fsync every 2 minutes)")),
            ("postgresql".into(), format!("{postgres} (the machine's service, not pinned; a fresh database per deployment)")),
            ("single node".into(), "switchboard serve (release), default embedded log + SQLite, fsync before ack".into()),
            ("pinning".into(), "core 0: the three nodes, nats-server and the single node; core 1: the publisher and the subscriber workers".into()),
        ],
        offered: offered.clone(),
        results: Vec::new(),
        append_ceiling: Vec::new(),
    };
    let ceiling_rates: &[f64] = if plan.quick {
        &[500.0, 2_000.0, 8_000.0]
    } else {
        &[500.0, 1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0]
    };
    let ceiling_duration = if plan.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(2)
    };
    for &n in subscriber_counts {
        let cluster = Cluster::start(bins, &nats_server, &admin)?;
        let single = servers::start_switchboard(bins, true)?;
        if run.append_ceiling.is_empty() {
            // Once, on fresh deployments, before any subscriber connects.
            for (deployment, target, pids, processes) in [
                (
                    "cluster",
                    &cluster.nodes[0].target,
                    cluster.pids(),
                    cluster.process_names(),
                ),
                (
                    "single",
                    &single.target,
                    vec![single.pid],
                    vec!["switchboard".to_owned()],
                ),
            ] {
                let curve =
                    durable_curve("s7", target, &pids, ceiling_rates, ceiling_duration).await?;
                run.append_ceiling.push(AppendCeiling {
                    deployment: deployment.into(),
                    peak_per_s: curve.peak,
                    // The peak is the acked rate of the last step that kept up.
                    peak_is_lower_bound: curve.peak > 0.0
                        && curve.steps.len() == ceiling_rates.len()
                        && curve
                            .steps
                            .last()
                            .is_some_and(|&(_, acked, _)| acked == curve.peak),
                    ack_at_half_peak: curve.ack_at_half,
                    steps: curve.steps,
                    processes,
                    cpu_share: curve.cpu_share,
                });
            }
        }
        let mut groups = Vec::new();
        let mut first_id = 0;
        for (i, node) in cluster.nodes.iter().enumerate() {
            // n / NODES each, the remainder on the first nodes.
            let here = n / NODES as u64 + u64::from((i as u64) < n % NODES as u64);
            groups.push(
                Workers::spawn(&bins.bench, &node.target, CHANNEL, here, first_id, false).await?,
            );
            first_id += here;
        }
        let single_workers =
            Workers::spawn(&bins.bench, &single.target, CHANNEL, n, 0, false).await?;
        let mut deployments = [
            Deployment {
                name: "cluster",
                publisher: cluster.nodes[0].target.clone(),
                pids: cluster.pids(),
                groups,
                steps: Vec::new(),
                alive: true,
                _cluster: Some(cluster),
                _single: None,
            },
            Deployment {
                name: "single",
                publisher: single.target.clone(),
                pids: vec![single.pid],
                groups: vec![single_workers],
                steps: Vec::new(),
                alive: true,
                _cluster: None,
                _single: Some(single),
            },
        ];
        for &deliveries in &offered {
            let rate = deliveries / n as f64;
            let mut reps: [Vec<CrossNodeRep>; 2] = Default::default();
            for rep in 0..plan.repeats {
                for k in 0..deployments.len() {
                    let i = (k + rep) % deployments.len();
                    let d = &mut deployments[i];
                    if !d.alive {
                        continue;
                    }
                    match d.measure(CHANNEL, rate, SIZE, plan.timing).await {
                        Ok(r) => reps[i].push(r),
                        Err(e) => {
                            eprintln!("s7 n={n:<5} {:>7} failed at {rate:.0} msg/s: {e:#}", d.name);
                            d.steps.push(CrossNodeStep {
                                all: StepSummary::failed(rate, deliveries, format!("{e:#}")),
                                same_node: None,
                                other_nodes: None,
                                ack: Percentiles::default(),
                                refused: 0,
                            });
                            d.alive = false;
                        }
                    }
                }
            }
            for (d, reps) in deployments.iter_mut().zip(reps) {
                if reps.is_empty() || !d.alive {
                    continue;
                }
                let s = summarise_cross_node(reps);
                let part = |p: &Option<StepSummary>| {
                    p.as_ref()
                        .map(|p| format!(" [{:.2}% p99 {} us]", p.delivered_pct, p.latency.p99_us))
                        .unwrap_or_default()
                };
                eprintln!(
                    "s7 n={n:<5} {:>7} {rate:>6.0} msg/s offered {deliveries:>7.0}/s delivered {:>6.2}% p50 {:>6} us p99 {:>7} us same{} other{} ack p99 {} us refused {}",
                    d.name,
                    s.all.delivered_pct,
                    s.all.latency.p50_us,
                    s.all.latency.p99_us,
                    part(&s.same_node),
                    part(&s.other_nodes),
                    s.ack.p99_us,
                    s.refused,
                );
                d.alive = s.all.passed;
                d.steps.push(s);
            }
            if deployments.iter().all(|d| !d.alive) {
                break;
            }
        }
        for d in deployments {
            let capacity = d
                .steps
                .iter()
                .filter(|s| s.all.passed)
                .map(|s| s.all.delivered)
                .fold(0.0, f64::max);
            let capacity_is_lower_bound =
                d.steps.len() == offered.len() && d.steps.last().is_some_and(|s| s.all.passed);
            run.results.push(CrossNode {
                deployment: d.name.to_owned(),
                subscribers: n,
                payload: SIZE,
                steps: d.steps,
                capacity,
                capacity_is_lower_bound,
            });
        }
    }
    Ok(run)
}

/// The measured binary's version, the checkout's commit and when the binary was built (a
/// binary older than the commit was built from an earlier tree: in a shared checkout,
/// `bench/run.sh` rebuilds it first).
fn switchboard_build(binary: &std::path::Path) -> String {
    let run = |program: &std::path::Path, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let git = std::path::Path::new("git");
    let commit = run(git, &["log", "-1", "--format=%h, committed %cI"]);
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| {
            let at = run(
                std::path::Path::new("date"),
                &[
                    "-u",
                    "-d",
                    &format!("@{}", d.as_secs()),
                    "+%Y-%m-%dT%H:%M:%SZ",
                ],
            );
            format!("; binary built {at}")
        })
        .unwrap_or_default();
    let dirty = !run(
        git,
        &[
            "status",
            "--porcelain",
            "--",
            "crates/server",
            "crates/cli",
            "crates/protocol",
        ],
    )
    .is_empty();
    format!(
        "{} (checkout {commit}{}{built})",
        run(binary, &["--version"]),
        if dirty {
            ", with uncommitted changes to the server"
        } else {
            ""
        }
    )
}
