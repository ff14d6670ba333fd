//! Measurement primitives: subscriber workers, the open-loop publisher, one measured window.

use crate::payload;
use crate::proto::Target;
use crate::servers::{LOAD_CPU, cpu_seconds};
use crate::worker::Report;
use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Connections per worker process (open files are capped at 20,000 per process).
const PER_WORKER: u64 = 6000;

/// Source addresses for load connections: ephemeral ports run out on one address.
pub fn local_addrs() -> Vec<IpAddr> {
    (2..=8).map(|i| IpAddr::from([127, 0, 0, i])).collect()
}

/// Subscriber worker processes for one target, all on the load core.
pub struct Workers {
    procs: Vec<(Child, ChildStdin, Lines<BufReader<ChildStdout>>)>,
    /// Connections held in all.
    pub connections: u64,
}

impl Workers {
    /// Spawns enough workers to hold `connections` subscribers of `channel`, and waits until
    /// every one is subscribed.
    pub async fn spawn(
        bench: &PathBuf,
        target: &Target,
        channel: &str,
        connections: u64,
        first_id: u64,
        pairs: bool,
    ) -> anyhow::Result<Workers> {
        let locals = local_addrs()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let target_json = serde_json::to_string(target)?;
        let mut procs = Vec::new();
        let mut remaining = connections;
        let mut id = first_id;
        while remaining > 0 {
            let n = remaining.min(PER_WORKER);
            let mut child = Command::new("taskset")
                .args(["-c", LOAD_CPU])
                .arg(bench)
                .args(["worker", "--target", &target_json, "--channel", channel])
                .args([
                    "--connections",
                    &n.to_string(),
                    "--first-id",
                    &id.to_string(),
                    "--locals",
                    &locals,
                ])
                .args(if pairs { &["--pairs"][..] } else { &[] })
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker")?;
            let stdin = child.stdin.take().expect("piped");
            let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
            procs.push((child, stdin, lines));
            remaining -= n;
            id += n;
        }
        for (_, _, lines) in &mut procs {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("a worker took too long to connect")??
                .context("a worker exited while connecting (see its stderr)")?;
            if !line.contains("ready") {
                bail!("unexpected worker output {line:?}");
            }
        }
        Ok(Workers { procs, connections })
    }

    /// Counts, from now on, only messages scheduled within `[from_ns, to_ns]`.
    pub async fn window(&mut self, from_ns: u64, to_ns: u64) -> anyhow::Result<()> {
        self.command(&serde_json::json!({ "window": [from_ns, to_ns] }))
            .await
    }

    /// Sends one command line to every worker.
    pub async fn command(&mut self, command: &serde_json::Value) -> anyhow::Result<()> {
        let line = format!("{command}\n");
        for (_, stdin, _) in &mut self.procs {
            stdin.write_all(line.as_bytes()).await?;
        }
        Ok(())
    }

    /// The merged report of every worker for the current window.
    pub async fn report(&mut self) -> anyhow::Result<(u64, Histogram<u64>, u64, u64)> {
        let line = format!("{}\n", serde_json::json!("report"));
        let mut received = 0;
        let mut lost = 0;
        let mut published = 0;
        let mut histogram = new_histogram();
        for (_, stdin, lines) in &mut self.procs {
            stdin.write_all(line.as_bytes()).await?;
            let reply = lines.next_line().await?.context("a worker exited")?;
            let report: Report = serde_json::from_str(&reply)?;
            received += report.received;
            lost += report.lost;
            published += report.published;
            for (value, count) in report.latency_us {
                histogram.record_n(value.max(1), count)?;
            }
        }
        Ok((received, histogram, lost, published))
    }
}

/// A latency histogram in microseconds (1 µs to 120 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds")
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
}

impl Percentiles {
    /// Percentiles of `h` (zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50_us: h.value_at_quantile(0.5),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
        }
    }
}

/// How one open-loop publish run went.
pub struct Published {
    /// Messages sent.
    pub sent: u64,
    /// Messages scheduled inside the measurement window.
    pub in_window: u64,
    /// Acknowledgements received (durable runs).
    pub acks: u64,
    /// Publishes the server refused (durable runs).
    pub refusals: u64,
    /// Ack latency from the scheduled send time (durable runs).
    pub ack_latency: Histogram<u64>,
}

/// Publishes `size`-byte payloads at `rate` per second for `duration`, open loop: message i is
/// scheduled at `start + i / rate` and stamped with that time, and a late sender catches up
/// in a burst, so a stall shows up as latency rather than hiding it. The sender is an OS
/// thread sleeping with nanosecond timers (tokio's timer ticks in milliseconds, which would
/// add its own latency); a second thread counts acks (durable runs), matched to publishes in
/// order, as every protocol here acknowledges a connection's publishes in order.
#[allow(clippy::too_many_arguments)]
pub async fn publish_open_loop(
    target: &Target,
    channel: &str,
    rate: f64,
    size: usize,
    start_ns: u64,
    duration: Duration,
    window: (u64, u64),
    durable: bool,
) -> anyhow::Result<Published> {
    let ws = target.publisher(None, channel, 1_000_000_000).await?;
    let name = target.name.clone();
    let target = target.clone();
    let channel = channel.to_owned();
    tokio::task::spawn_blocking(move || {
        publish_blocking(
            target, ws, &channel, rate, size, start_ns, duration, window, durable,
        )
    })
    .await?
    .with_context(|| format!("publishing to {name}"))
}

#[allow(clippy::too_many_arguments)]
fn publish_blocking(
    target: Target,
    mut ws: crate::ws::Ws,
    channel: &str,
    rate: f64,
    size: usize,
    start_ns: u64,
    duration: Duration,
    window: (u64, u64),
    durable: bool,
) -> anyhow::Result<Published> {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let mut out = ws.std_clone()?;
    let mut input = out.try_clone()?;
    let pending: Arc<Mutex<VecDeque<u64>>> = Arc::default();
    // Reader: drains everything the server sends and matches acks to publishes.
    let reader = {
        let pending = pending.clone();
        let target = target.clone();
        std::thread::spawn(move || {
            let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
            let mut chunk = vec![0u8; 64 * 1024];
            let (mut acks, mut refusals, mut latency) = (0u64, 0u64, new_histogram());
            loop {
                let n = match input.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(frame)) = crate::ws::parse_frame(&mut buf) {
                    let (accepted, refused) = target.acks(&frame);
                    if accepted + refused == 0 {
                        continue;
                    }
                    let now = payload::now_ns();
                    let mut pending = pending.lock().expect("not poisoned");
                    for _ in 0..accepted {
                        if let Some(scheduled) = pending.pop_front() {
                            acks += 1;
                            let _ = latency.record((now.saturating_sub(scheduled) / 1000).max(1));
                        }
                    }
                    for _ in 0..refused {
                        pending.pop_front();
                        refusals += 1;
                    }
                }
            }
            (acks, refusals, latency)
        })
    };
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let interval_ns = 1e9 / rate;
    let (mut sent, mut in_window) = (0u64, 0u64);
    let mut batch = Vec::new();
    while sent < total {
        let next = start_ns + (sent as f64 * interval_ns) as u64;
        let now = payload::now_ns();
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
        let now = payload::now_ns();
        batch.clear();
        while sent < total {
            let scheduled = start_ns + (sent as f64 * interval_ns) as u64;
            if scheduled > now {
                break;
            }
            let body = payload::make(size, scheduled);
            batch.extend_from_slice(&target.publish(&mut ws, channel, &body, sent + 2, durable));
            if scheduled >= window.0 && scheduled <= window.1 {
                in_window += 1;
            }
            if durable {
                pending.lock().expect("not poisoned").push_back(scheduled);
            }
            sent += 1;
        }
        out.write_all(&batch)?;
    }
    if durable {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !pending.lock().expect("not poisoned").is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let _ = out.shutdown(std::net::Shutdown::Both);
    let (acks, refusals, ack_latency) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the ack reader panicked"))?;
    Ok(Published {
        sent,
        in_window,
        acks,
        refusals,
        ack_latency,
    })
}

/// One measured step of a fan-out: what was offered and what arrived.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Step {
    /// Messages per second published.
    pub rate: f64,
    /// Deliveries per second offered (rate × subscribers).
    pub offered: f64,
    /// Deliveries per second that arrived.
    pub delivered: f64,
    /// Share of offered deliveries that arrived, in percent.
    pub delivered_pct: f64,
    /// Latency of the deliveries.
    pub latency: Percentiles,
    /// Server CPU seconds used during the window.
    pub cpu_seconds: f64,
    /// Deliveries per server CPU-second.
    pub per_cpu_second: f64,
    /// Subscriber connections that dropped.
    pub lost: u64,
}

/// Timing of one measured step.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Publishing before the window opens.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
    /// Waiting after the window for late deliveries.
    pub drain: Duration,
}

/// Publishes at `rate` to `channel` and measures deliveries to `workers`' subscribers.
pub async fn fan_out_step(
    target: &Target,
    pid: u32,
    workers: &mut Workers,
    channel: &str,
    rate: f64,
    size: usize,
    timing: Timing,
) -> anyhow::Result<Step> {
    let start = payload::now_ns() + 50_000_000;
    let win_from = start + timing.warmup.as_nanos() as u64;
    let win_to = win_from + timing.window.as_nanos() as u64;
    workers.window(win_from, win_to).await?;
    let pids = [pid];
    let cpu_probe = cpu_between(&pids, win_from, win_to);
    let publish = publish_open_loop(
        target,
        channel,
        rate,
        size,
        start,
        timing.warmup + timing.window,
        (win_from, win_to),
        false,
    );
    let (published, cpu) = tokio::join!(publish, cpu_probe);
    let (published, cpu) = (published?, cpu?);
    tokio::time::sleep(timing.drain).await;
    let (received, histogram, lost, _) = workers.report().await?;
    let expected = published.in_window * workers.connections;
    Ok(Step::measured(
        rate,
        workers.connections,
        received,
        expected,
        &histogram,
        cpu,
        timing.window,
        lost,
    ))
}

impl Step {
    /// A step in which `received` of `expected` deliveries arrived within `window`.
    #[allow(clippy::too_many_arguments)]
    pub fn measured(
        rate: f64,
        subscribers: u64,
        received: u64,
        expected: u64,
        histogram: &Histogram<u64>,
        cpu_seconds: f64,
        window: Duration,
        lost: u64,
    ) -> Step {
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        Step {
            rate,
            offered: rate * subscribers as f64,
            delivered: received as f64 / window.as_secs_f64(),
            delivered_pct: 100.0 * ratio(received as f64, expected as f64),
            latency: Percentiles::of(histogram),
            cpu_seconds,
            per_cpu_second: ratio(received as f64, cpu_seconds),
            lost,
        }
    }
}

/// Server CPU seconds used between two wall-clock instants (ns since the Unix epoch), summed
/// over `pids`.
async fn cpu_between(pids: &[u32], from_ns: u64, to_ns: u64) -> anyhow::Result<f64> {
    let total = || -> anyhow::Result<f64> { pids.iter().map(|&p| cpu_seconds(p)).sum() };
    sleep_until_ns(from_ns).await;
    let before = total()?;
    sleep_until_ns(to_ns).await;
    Ok(total()? - before)
}

/// Sleeps until the wall clock reads `ns`.
pub async fn sleep_until_ns(ns: u64) {
    let now = payload::now_ns();
    if ns > now {
        tokio::time::sleep(Duration::from_nanos(ns - now)).await;
    }
}

/// The median of `values` (and its min and max).
pub fn median(values: &mut [f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    let mid = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (mid, values[0], values[n - 1])
}

/// S2 step: every pair publishes `rate` messages per second on its own channel.
pub async fn pairs_step(
    pid: u32,
    workers: &mut Workers,
    rate: f64,
    size: usize,
    timing: Timing,
) -> anyhow::Result<Step> {
    let start = payload::now_ns() + 50_000_000;
    let win_from = start + timing.warmup.as_nanos() as u64;
    let win_to = win_from + timing.window.as_nanos() as u64;
    workers.window(win_from, win_to).await?;
    workers
        .command(&serde_json::json!({ "publish": [rate, size as f64] }))
        .await?;
    let cpu = cpu_between(&[pid], win_from, win_to).await?;
    workers.command(&serde_json::json!("quiet")).await?;
    tokio::time::sleep(timing.drain).await;
    let (received, histogram, lost, published) = workers.report().await?;
    Ok(Step::measured(
        rate,
        workers.connections,
        received,
        published,
        &histogram,
        cpu,
        timing.window,
        lost,
    ))
}

/// What each group of subscribers got in one step of [`groups_step`].
pub struct GroupReport {
    /// Subscribers in the group.
    pub connections: u64,
    /// Deliveries of messages scheduled in the window.
    pub received: u64,
    /// Their latency from the scheduled time.
    pub histogram: Histogram<u64>,
    /// Subscriber connections that dropped.
    pub lost: u64,
}

/// One step of [`groups_step`]: every group's deliveries and the publisher's side.
pub struct GroupsStep {
    /// Per group, in the order given.
    pub groups: Vec<GroupReport>,
    /// Messages scheduled in the window (each subscriber should receive every one).
    pub in_window: u64,
    /// CPU seconds of every process in `pids` during the window.
    pub cpu_seconds: f64,
    /// Ack latency from the scheduled time, over the whole run (durable publishes).
    pub ack_latency: Histogram<u64>,
    /// Publishes the server refused.
    pub refused: u64,
}

impl GroupsStep {
    /// The step as seen by the groups `which` together (all of them for the whole step).
    pub fn step(
        &self,
        which: impl Iterator<Item = usize>,
        rate: f64,
        cpu_seconds: f64,
        window: Duration,
    ) -> anyhow::Result<Step> {
        let (mut connections, mut received, mut lost) = (0, 0, 0);
        let mut histogram = new_histogram();
        for g in which.map(|i| &self.groups[i]) {
            connections += g.connections;
            received += g.received;
            lost += g.lost;
            histogram.add(&g.histogram)?;
        }
        Ok(Step::measured(
            rate,
            connections,
            received,
            self.in_window * connections,
            &histogram,
            cpu_seconds,
            window,
            lost,
        ))
    }
}

/// Publishes `size`-byte payloads at `rate` to `channel` on `target` (persisted and
/// acknowledged when `durable`) and measures deliveries to each group of subscribers
/// separately, e.g. one group per node of a cluster. CPU time is summed over `pids`.
#[allow(clippy::too_many_arguments)]
pub async fn groups_step(
    target: &Target,
    pids: &[u32],
    groups: &mut [Workers],
    channel: &str,
    rate: f64,
    size: usize,
    timing: Timing,
    durable: bool,
) -> anyhow::Result<GroupsStep> {
    let start = payload::now_ns() + 50_000_000;
    let win_from = start + timing.warmup.as_nanos() as u64;
    let win_to = win_from + timing.window.as_nanos() as u64;
    for workers in groups.iter_mut() {
        workers.window(win_from, win_to).await?;
    }
    let publish = publish_open_loop(
        target,
        channel,
        rate,
        size,
        start,
        timing.warmup + timing.window,
        (win_from, win_to),
        durable,
    );
    let (published, cpu) = tokio::join!(publish, cpu_between(pids, win_from, win_to));
    let (published, cpu_seconds) = (published?, cpu?);
    tokio::time::sleep(timing.drain).await;
    let mut reports = Vec::new();
    for workers in groups.iter_mut() {
        let (received, histogram, lost, _) = workers.report().await?;
        reports.push(GroupReport {
            connections: workers.connections,
            received,
            histogram,
            lost,
        });
    }
    Ok(GroupsStep {
        groups: reports,
        in_window: published.in_window,
        cpu_seconds,
        ack_latency: published.ack_latency,
        refused: published.refusals,
    })
}
