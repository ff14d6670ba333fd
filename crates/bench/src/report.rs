//! Results: `latest.json` (every figure, machine-readable) and `latest.md` (tables, ratios to
//! the baseline and to each peer, the targets and where each stands).

use crate::scenarios::{
    CrossNodeRun, Durable, FanOut, HistoryRead, Latency, Memory, Pairs, StepSummary,
};
use serde::Serialize;
use std::fmt::Write;

/// Everything one run measured.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Results {
    /// When the run started (UTC, RFC 3339).
    pub started: String,
    /// The machine and the versions of everything measured.
    pub machine: Vec<(String, String)>,
    /// The command line.
    pub command: String,
    /// S1.
    pub fan_out: Vec<FanOut>,
    /// S2.
    #[serde(default)]
    pub pairs: Vec<Pairs>,
    /// S3.
    pub latency: Vec<Latency>,
    /// S4.
    pub memory: Vec<Memory>,
    /// S5.
    pub durable: Vec<Durable>,
    /// S6.
    pub history: Vec<HistoryRead>,
    /// S7.
    #[serde(default)]
    pub cross_node: CrossNodeRun,
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "not met" }
}

impl Results {
    /// Re-derives every figure computed from recorded steps (after a change of definition).
    pub fn recompute(&mut self) {
        for f in &mut self.fan_out {
            (f.capacity, f.efficiency) = crate::scenarios::FanOut::figures(&f.steps);
        }
        for p in &mut self.pairs {
            (p.capacity, p.efficiency) = crate::scenarios::FanOut::figures(&p.steps);
        }
        let steps = self.cross_node.offered.len();
        for c in &mut self.cross_node.results {
            c.capacity = c
                .steps
                .iter()
                .filter(|s| s.all.passed)
                .map(|s| s.all.delivered)
                .fold(0.0, f64::max);
            c.capacity_is_lower_bound =
                c.steps.len() == steps && c.steps.last().is_some_and(|s| s.all.passed);
        }
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Benchmark results\n");
        let _ = writeln!(md, "Run {} with `{}`.\n", self.started, self.command);
        let _ = writeln!(
            md,
            "Servers run pinned to core 0, the load generator to core 1 (`taskset`); server CPU time is read from `/proc/<pid>/stat`. Fan-out and latency steps alternate the servers (A B A B …) and report medians.\n"
        );
        let _ = writeln!(md, "## Machine\n\n| | |\n|---|---|");
        for (k, v) in &self.machine {
            let _ = writeln!(md, "| {k} | {v} |");
        }
        let mut targets = Vec::new();

        if !self.fan_out.is_empty() {
            let _ = writeln!(md, "\n## S1 fan-out: one publisher → N subscribers\n");
            let _ = writeln!(
                md,
                "Efficiency is deliveries per server CPU-second: the median over the steps that delivered ≥ 99.9 %. Capacity is the delivered rate of the highest step that met the bar: p99 < 50 ms and ≥ 99.9 % delivered (0 when none did: with 5,000 subscribers one load core reading every socket puts p99 above 50 ms for every server, the bare baseline included).\n"
            );
            let _ = writeln!(
                md,
                "| payload | N | server | efficiency (deliveries/CPU-s) | vs baseline | vs switchboard | capacity (deliveries/s) | p99 at capacity (ms) |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
            for f in &self.fan_out {
                let base = self.fan_out.iter().find(|b| {
                    b.server == "baseline"
                        && b.payload == f.payload
                        && b.subscribers == f.subscribers
                });
                let sb = self.fan_out.iter().find(|b| {
                    b.server == "switchboard"
                        && b.payload == f.payload
                        && b.subscribers == f.subscribers
                });
                let p99 = f
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.passed)
                    .map(|s| ms(s.latency.p99_us))
                    .unwrap_or("–".into());
                let _ = writeln!(
                    md,
                    "| {} B | {} | {} | {:.0} | {} | {} | {:.0} | {} |",
                    f.payload,
                    f.subscribers,
                    f.server,
                    f.efficiency,
                    base.map(|b| ratio(f.efficiency, b.efficiency))
                        .unwrap_or("–".into()),
                    sb.map(|b| ratio(f.efficiency, b.efficiency))
                        .unwrap_or("–".into()),
                    f.capacity,
                    p99
                );
            }
            let _ = writeln!(md, "\n<details><summary>Every step</summary>\n");
            let _ = writeln!(
                md,
                "| payload | N | server | msg/s | offered/s | delivered % | p50 ms | p99 ms | p99.9 ms | deliveries/CPU-s (min–max) | met |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
            for f in &self.fan_out {
                for s in &f.steps {
                    let _ = writeln!(
                        md,
                        "| {} B | {} | {} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {:.0} ({:.0}–{:.0}) | {} |",
                        f.payload,
                        f.subscribers,
                        f.server,
                        s.rate,
                        s.offered,
                        s.delivered_pct,
                        ms(s.latency.p50_us),
                        ms(s.latency.p99_us),
                        ms(s.latency.p999_us),
                        s.per_cpu_second.0,
                        s.per_cpu_second.1,
                        s.per_cpu_second.2,
                        if s.passed { "yes" } else { "no" }
                    );
                }
            }
            let _ = writeln!(md, "\n</details>");
            for sb in self.fan_out.iter().filter(|f| f.server == "switchboard") {
                let same = |f: &&FanOut| {
                    f.payload == sb.payload
                        && f.subscribers == sb.subscribers
                        && f.server != "switchboard"
                };
                for other in self.fan_out.iter().filter(same) {
                    let (want, name) = if other.server == "baseline" {
                        (0.8, "≥ 0.8 × baseline")
                    } else {
                        (2.0, "≥ 2 × peer")
                    };
                    let r = if other.efficiency > 0.0 {
                        sb.efficiency / other.efficiency
                    } else {
                        f64::INFINITY
                    };
                    targets.push((
                        format!(
                            "S1 {} B, N={}: {} ({})",
                            sb.payload, sb.subscribers, name, other.server
                        ),
                        format!("{r:.2}×"),
                        verdict(r >= want),
                    ));
                }
            }
        }

        if !self.pairs.is_empty() {
            let _ = writeln!(
                md,
                "\n## S2 many pairs: channels with one sender and one receiver each\n"
            );
            let _ = writeln!(
                md,
                "The same bar and definitions as S1. The Node `ws` peer has no rooms and is not run.\n"
            );
            let _ = writeln!(
                md,
                "| channels | server | efficiency (deliveries/CPU-s) | vs baseline | capacity (deliveries/s) | p99 at capacity (ms) |\n|---|---|---|---|---|---|"
            );
            let base = self.pairs.iter().find(|p| p.server == "baseline");
            for p in &self.pairs {
                let p99 = p
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.passed)
                    .map(|s| ms(s.latency.p99_us))
                    .unwrap_or("–".into());
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {:.0} | {} |",
                    p.channels,
                    p.server,
                    p.efficiency,
                    base.map(|b| ratio(p.efficiency, b.efficiency))
                        .unwrap_or("–".into()),
                    p.capacity,
                    p99
                );
            }
        }

        if !self.latency.is_empty() {
            let _ = writeln!(
                md,
                "\n## S3 latency at 10,000 deliveries/s (100 subscribers × 100 msg/s)\n"
            );
            let _ = writeln!(
                md,
                "| server | p50 ms | p99 ms (min–max) | p99.9 ms | delivered % |\n|---|---|---|---|---|"
            );
            for l in &self.latency {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} ({}–{}) | {} | {:.2} |",
                    l.server,
                    ms(l.latency.p50_us),
                    ms(l.latency.p99_us),
                    ms(l.p99_range_us.0),
                    ms(l.p99_range_us.1),
                    ms(l.latency.p999_us),
                    l.delivered_pct
                );
                if l.server == "switchboard" {
                    targets.push((
                        "S3 p99 ≤ 1 ms".into(),
                        format!("{} ms", ms(l.latency.p99_us)),
                        verdict(l.latency.p99_us <= 1000),
                    ));
                    targets.push((
                        "S3 p99.9 ≤ 5 ms".into(),
                        format!("{} ms", ms(l.latency.p999_us)),
                        verdict(l.latency.p999_us <= 5000),
                    ));
                }
            }
        }

        if !self.memory.is_empty() {
            let _ = writeln!(md, "\n## S4 memory per idle subscribed connection\n");
            let _ = writeln!(
                md,
                "| server | connections | RSS MiB | KiB per connection |\n|---|---|---|---|"
            );
            for m in &self.memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.1} |",
                    m.server,
                    m.connections,
                    m.rss_kib as f64 / 1024.0,
                    m.per_connection_kib
                );
            }
            if let Some(m) = self
                .memory
                .iter()
                .filter(|m| m.server == "switchboard")
                .max_by_key(|m| m.connections)
            {
                targets.push((
                    format!(
                        "S4 ≤ 8 KiB per idle connection ({} connections)",
                        m.connections
                    ),
                    format!("{:.1} KiB", m.per_connection_kib),
                    verdict(m.per_connection_kib <= 8.0),
                ));
            }
        }

        if !self.durable.is_empty() {
            let _ = writeln!(md, "\n## S5 durable publish (200-byte messages)\n");
            let _ = writeln!(
                md,
                "| what | durability | peak acked/s | mean batch | ack p50 / p99 at half peak (ms) |\n|---|---|---|---|---|"
            );
            for d in &self.durable {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {:.1} | {} / {} |",
                    d.server,
                    d.durability,
                    d.peak_per_s,
                    d.mean_batch,
                    ms(d.ack_at_half_peak.p50_us),
                    ms(d.ack_at_half_peak.p99_us)
                );
            }
            if let (Some(sb), Some(floor)) = (
                self.durable.iter().find(|d| d.server == "switchboard"),
                self.durable.iter().find(|d| d.server == "fdatasync floor"),
            ) {
                let r = sb.peak_per_s / floor.peak_per_s.max(1.0);
                targets.push((
                    "S5 ≥ 0.5 × fdatasync floor".into(),
                    format!("{r:.2}×"),
                    verdict(r >= 0.5),
                ));
                targets.push((
                    "S5 ack p99 ≤ 5 ms at half peak".into(),
                    format!("{} ms", ms(sb.ack_at_half_peak.p99_us)),
                    verdict(sb.ack_at_half_peak.p99_us <= 5000),
                ));
            }
        }

        if !self.history.is_empty() {
            let _ = writeln!(
                md,
                "\n## S6 history: pages of 100 from each storage tier\n\n`newest`: the last 100 \
                 messages (every tier holds them); `older`: 100 from a random place below the cache.\n"
            );
            let _ = writeln!(
                md,
                "| server | read (poll_source) | stored | reads/s (one connection) | p50 ms | p99 ms | p50 vs CACHE newest |\n|---|---|---|---|---|---|---|"
            );
            let cache_p50 = self
                .history
                .iter()
                .find(|h| h.read == "CACHE newest")
                .map(|h| h.latency.p50_us);
            for h in &self.history {
                let ratio = match cache_p50 {
                    Some(c) if c > 0 => format!("{:.1}×", h.latency.p50_us as f64 / c as f64),
                    _ => "–".into(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0} | {} | {} | {} |",
                    h.server,
                    if h.read.is_empty() {
                        "AUTO newest"
                    } else {
                        &h.read
                    },
                    h.stored,
                    h.reads_per_s,
                    ms(h.latency.p50_us),
                    ms(h.latency.p99_us),
                    ratio
                );
                if h.read.is_empty() || h.read == "AUTO newest" {
                    targets.push((
                        "S6 p99 ≤ 2 ms (AUTO, newest)".into(),
                        format!("{} ms", ms(h.latency.p99_us)),
                        verdict(h.latency.p99_us <= 2000),
                    ));
                }
            }
        }

        if !self.cross_node.results.is_empty() {
            cross_node_section(&mut md, &self.cross_node);
        }

        if !targets.is_empty() {
            let _ = writeln!(md, "\n## Targets\n\n| target | measured | |\n|---|---|---|");
            for (t, m, v) in targets {
                let _ = writeln!(md, "| {t} | {m} | {v} |");
            }
        }
        md
    }
}

/// `p50 / p99` of a step part, in ms.
fn p50_p99(s: &StepSummary) -> String {
    format!("{} / {}", ms(s.latency.p50_us), ms(s.latency.p99_us))
}

/// `delivered % · p50 / p99` of an optional step part.
fn part(s: Option<&StepSummary>) -> String {
    s.map(|s| format!("{:.2} % · {}", s.delivered_pct, p50_p99(s)))
        .unwrap_or("–".into())
}

/// The S7 section: capacity, latency side by side at common rates, every step.
fn cross_node_section(md: &mut String, run: &CrossNodeRun) {
    let _ = writeln!(
        md,
        "\n## S7 cross-node fan-out: persisted messages on a three-node cluster\n"
    );
    let _ = writeln!(
        md,
        "One publisher on node 1 publishes persisted 100-byte messages (a `publish` with a ref: stored, then acknowledged) to one channel. In the cluster the subscribers are spread evenly over the three nodes: a third are on the publisher's node, two thirds receive each message through their node's tail of the shared JetStream stream. The single node (the default embedded log and SQLite) holds all its subscribers and runs in the same run as the reference; each step alternates the two. Latency is from the scheduled send time; the bar is S1's (p99 < 50 ms and ≥ 99.9 % delivered). The cluster's CPU time is its three nodes' plus nats-server's (PostgreSQL's is not counted).\n"
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    for (k, v) in &run.setup {
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let find = |deployment: &str, n: u64| {
        run.results
            .iter()
            .find(|c| c.deployment == deployment && c.subscribers == n)
    };
    let mut counts: Vec<u64> = run.results.iter().map(|c| c.subscribers).collect();
    counts.dedup();

    let _ = writeln!(
        md,
        "\n| N | deployment | capacity (deliveries/s) | messages/s | vs single | p99 at capacity (ms) | ack p50 / p99 at capacity (ms) |\n|---|---|---|---|---|---|---|"
    );
    for c in &run.results {
        let at = c.steps.iter().rev().find(|s| s.all.passed);
        let single = find("single", c.subscribers);
        let bound = if c.capacity_is_lower_bound {
            "≥ "
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "| {} | {} | {bound}{:.0} | {bound}{:.0} | {} | {} | {} |",
            c.subscribers,
            c.deployment,
            c.capacity,
            at.map(|s| s.all.rate).unwrap_or(0.0),
            single
                .map(|s| ratio(c.capacity, s.capacity))
                .unwrap_or("–".into()),
            at.map(|s| ms(s.all.latency.p99_us)).unwrap_or("–".into()),
            at.map(|s| format!("{} / {}", ms(s.ack.p50_us), ms(s.ack.p99_us)))
                .unwrap_or("–".into()),
        );
    }

    if !run.append_ceiling.is_empty() {
        let _ = writeln!(
            md,
            "\nThe append path alone: persisted 200-byte publishes from one connection to channels nobody subscribes to, rate stepped until acks fall behind (as S5), on fresh deployments before the subscribers connect.\n"
        );
        let _ = writeln!(
            md,
            "| deployment | peak acked/s | vs single | ack p50 / p99 at half peak (ms) | steps (offered → acked/s, ack p99 ms, server core busy: % of one core, by process) |\n|---|---|---|---|---|"
        );
        let single = run.append_ceiling.iter().find(|a| a.deployment == "single");
        for a in &run.append_ceiling {
            let bound = if a.peak_is_lower_bound { "≥ " } else { "" };
            let steps: Vec<String> = a
                .steps
                .iter()
                .enumerate()
                .map(|(i, &(offered, acked, p99))| {
                    let cpu = a
                        .cpu_share
                        .get(i)
                        .map(|shares| {
                            let total: f64 = shares.iter().sum();
                            let each: Vec<String> = if shares.len() > 1 {
                                a.processes
                                    .iter()
                                    .zip(shares)
                                    .map(|(name, c)| format!("{name} {:.0}", 100.0 * c))
                                    .collect()
                            } else {
                                Vec::new()
                            };
                            if each.is_empty() {
                                format!(", core {:.0} %", 100.0 * total)
                            } else {
                                format!(", core {:.0} %: {}", 100.0 * total, each.join(" + "))
                            }
                        })
                        .unwrap_or_default();
                    format!("{offered:.0} → {acked:.0} ({} ms{cpu})", ms(p99))
                })
                .collect();
            let _ = writeln!(
                md,
                "| {} | {bound}{:.0} | {} | {} / {} | {} |",
                a.deployment,
                a.peak_per_s,
                single
                    .map(|s| ratio(a.peak_per_s, s.peak_per_s))
                    .unwrap_or("–".into()),
                ms(a.ack_at_half_peak.p50_us),
                ms(a.ack_at_half_peak.p99_us),
                steps.join("; "),
            );
        }
    }

    let _ = writeln!(
        md,
        "\nLatency side by side at the lowest rate and at the highest rate both deployments met the bar (ratios: cluster / single).\n"
    );
    let _ = writeln!(
        md,
        "| N | msg/s | deliveries/s | p50 cluster / single (ms) | p50 ratio | p99 cluster / single (ms) | p99 ratio | cluster, publisher's node: delivered · p50 / p99 | cluster, other nodes: delivered · p50 / p99 |\n|---|---|---|---|---|---|---|---|---|"
    );
    for &n in &counts {
        let (Some(cl), Some(si)) = (find("cluster", n), find("single", n)) else {
            continue;
        };
        // Steps are the same offered rates in the same order for both deployments.
        let both: Vec<usize> = (0..cl.steps.len().min(si.steps.len()))
            .filter(|&i| cl.steps[i].all.passed && si.steps[i].all.passed)
            .collect();
        let rows = match (both.first(), both.last()) {
            (Some(&a), Some(&b)) if a != b => vec![a, b],
            (Some(&a), _) => vec![a],
            _ => Vec::new(),
        };
        for i in rows {
            let (c, s) = (&cl.steps[i], &si.steps[i]);
            let r = |a: u64, b: u64| ratio(a as f64, b as f64);
            let _ = writeln!(
                md,
                "| {n} | {:.0} | {:.0} | {} / {} | {} | {} / {} | {} | {} | {} |",
                c.all.rate,
                c.all.offered,
                ms(c.all.latency.p50_us),
                ms(s.all.latency.p50_us),
                r(c.all.latency.p50_us, s.all.latency.p50_us),
                ms(c.all.latency.p99_us),
                ms(s.all.latency.p99_us),
                r(c.all.latency.p99_us, s.all.latency.p99_us),
                part(c.same_node.as_ref()),
                part(c.other_nodes.as_ref()),
            );
        }
    }

    let _ = writeln!(md, "\n<details><summary>Every step</summary>\n");
    let _ = writeln!(
        md,
        "| N | deployment | msg/s | offered/s | delivered/s | delivered % | p50 / p99 (ms) | publisher's node | other nodes | ack p50 / p99 (ms) | refused | deliveries/CPU-s (min–max) | met |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for c in &run.results {
        for s in &c.steps {
            let met = match &s.all.error {
                Some(e) => format!("no ({e})"),
                None if s.all.passed => "yes".into(),
                None => "no".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} | {} | {} / {} | {} | {:.0} ({:.0}–{:.0}) | {met} |",
                c.subscribers,
                c.deployment,
                s.all.rate,
                s.all.offered,
                s.all.delivered,
                s.all.delivered_pct,
                p50_p99(&s.all),
                part(s.same_node.as_ref()),
                part(s.other_nodes.as_ref()),
                ms(s.ack.p50_us),
                ms(s.ack.p99_us),
                s.refused,
                s.all.per_cpu_second.0,
                s.all.per_cpu_second.1,
                s.all.per_cpu_second.2,
            );
        }
    }
    let _ = writeln!(md, "\n</details>");
}

/// Facts about this machine and the software measured.
pub fn machine(
    switchboard: &std::path::Path,
    peers: &[(&'static str, String)],
) -> Vec<(String, String)> {
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0);
    let mut facts = vec![
        ("cpu".into(), format!("{model} × {}", run("nproc", &[]))),
        ("memory".into(), format!("{:.1} GiB", mem / 1024.0 / 1024.0)),
        ("kernel".into(), run("uname", &["-sr"])),
        ("rustc".into(), run("rustc", &["--version"])),
        (
            "switchboard".into(),
            format!(
                "{} ({})",
                run(&switchboard.to_string_lossy(), &["--version"]),
                run("git", &["rev-parse", "--short", "HEAD"])
            ),
        ),
    ];
    facts.extend(
        peers
            .iter()
            .map(|(name, version)| (name.to_string(), version.clone())),
    );
    facts
}
