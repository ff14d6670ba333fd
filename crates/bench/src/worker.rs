//! A subscriber worker process: holds many subscribed connections and measures deliveries.
//!
//! The orchestrator spawns several of these on the load core (per-process open files are
//! capped at 20,000) and drives them over stdin/stdout, one JSON line each way:
//! - after connecting everything it prints `{"ready": N}`;
//! - `{"window": [from_ns, to_ns]}` counts, from now on, the messages scheduled in that window;
//! - `"report"` prints `{"received": n, "latency_us": [[value, count], …]}` for the
//!   window so far and keeps running;
//! - end of stdin exits.

use crate::payload;
use crate::proto::Target;
use crate::ws::Opcode;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;
use tokio::io::{AsyncBufReadExt, BufReader};

/// What the worker reports.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// Messages received that were scheduled in the window.
    pub received: u64,
    /// Latency histogram: (microseconds, count) pairs.
    pub latency_us: Vec<(u64, u64)>,
    /// Connections that failed or closed.
    pub lost: u64,
    /// Pairs mode: messages published that were scheduled in the window.
    pub published: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Window([u64; 2]),
    Report,
    /// Pairs mode: every publisher starts publishing `[rate per channel, payload bytes]`.
    Publish([f64; 2]),
    /// Pairs mode: every publisher stops.
    Quiet,
}

struct Stats {
    window: (u64, u64),
    received: u64,
    published: u64,
    lost: u64,
    histogram: Histogram<u64>,
}

/// Runs the worker (on a current-thread runtime: one process, one core).
pub async fn run(
    target: Target,
    channel: String,
    connections: u64,
    first_id: u64,
    locals: Vec<IpAddr>,
    pairs: bool,
) -> anyhow::Result<()> {
    let (control, _) = tokio::sync::watch::channel(None::<(f64, usize)>);
    let stats = Rc::new(RefCell::new(Stats {
        window: (u64::MAX, 0),
        received: 0,
        published: 0,
        lost: 0,
        histogram: Histogram::new_with_bounds(1, 120_000_000, 3)?,
    }));
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            // Connect with bounded concurrency.
            let mut connected = Vec::new();
            let ids: Vec<u64> = (first_id..first_id + connections).collect();
            for chunk in ids.chunks(128) {
                let mut pending = Vec::new();
                for &id in chunk {
                    let target = target.clone();
                    // Pairs mode: each id has its own channel, with a publisher beside it.
                    let channel = if pairs {
                        format!("{channel}-{id}")
                    } else {
                        channel.clone()
                    };
                    let ip = (!locals.is_empty()).then(|| locals[id as usize % locals.len()]);
                    let stats = stats.clone();
                    let control = control.subscribe();
                    pending.push(tokio::task::spawn_local(async move {
                        let ws = target.subscribe(ip, &channel, id).await?;
                        if pairs {
                            let publisher = target.publisher(ip, &channel, id).await?;
                            let offset = id % 1000;
                            tokio::task::spawn_local(publish_loop(
                                target, publisher, channel, control, stats, offset,
                            ));
                        }
                        std::io::Result::Ok(ws)
                    }));
                }
                for p in pending {
                    connected.push(p.await??);
                }
            }
            for mut ws in connected {
                let target = target.clone();
                let stats = stats.clone();
                tokio::task::spawn_local(async move {
                    loop {
                        let frame = match ws.next().await {
                            Ok(f) => f,
                            Err(_) => break,
                        };
                        if frame.opcode == Opcode::Close {
                            break;
                        }
                        // A frame may carry a protocol ping and messages (NATS): answer, then scan.
                        if let Some(reply) = target.answer(&mut ws, &frame)
                            && ws.write_raw(&reply).await.is_err()
                        {
                            break;
                        }
                        let now = payload::now_ns();
                        let mut s = stats.borrow_mut();
                        let (from, to) = s.window;
                        payload::scan(&frame.payload, |ts| {
                            if ts >= from && ts <= to {
                                s.received += 1;
                                let us = now.saturating_sub(ts) / 1000;
                                let _ = s.histogram.record(us.max(1));
                            }
                        });
                    }
                    stats.borrow_mut().lost += 1;
                });
            }
            println!("{}", serde_json::json!({ "ready": connections }));
            let mut stdin = BufReader::new(tokio::io::stdin()).lines();
            while let Some(line) = stdin.next_line().await? {
                match serde_json::from_str::<Command>(&line)? {
                    Command::Publish([rate, size]) => {
                        control.send_replace(Some((rate, size as usize)));
                    }
                    Command::Quiet => {
                        control.send_replace(None);
                    }
                    Command::Window([from, to]) => {
                        let mut s = stats.borrow_mut();
                        s.window = (from, to);
                        s.received = 0;
                        s.published = 0;
                        s.histogram.reset();
                    }
                    Command::Report => {
                        let s = stats.borrow();
                        let report = Report {
                            received: s.received,
                            latency_us: s
                                .histogram
                                .iter_recorded()
                                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                                .collect(),
                            lost: s.lost,
                            published: s.published,
                        };
                        println!("{}", serde_json::to_string(&report)?);
                    }
                }
            }
            anyhow::Ok(())
        })
        .await
}

/// Pairs mode: publishes on one channel at the commanded rate (tokio intervals: millisecond
/// scheduling is fine for this throughput scenario, and latency still counts from the
/// scheduled time), and drains what the server sends the publisher.
async fn publish_loop(
    target: Target,
    mut ws: crate::ws::Ws,
    channel: String,
    mut control: tokio::sync::watch::Receiver<Option<(f64, usize)>>,
    stats: Rc<RefCell<Stats>>,
    offset: u64,
) {
    let mut seq = 0u64;
    loop {
        let setting = *control.borrow_and_update();
        let Some((rate, size)) = setting else {
            tokio::select! {
                changed = control.changed() => if changed.is_err() { return },
                frame = ws.next() => match frame {
                    Ok(f) => if let Some(reply) = target.answer(&mut ws, &f) { let _ = ws.write_raw(&reply).await; },
                    Err(_) => return,
                },
            }
            continue;
        };
        let period = std::time::Duration::from_secs_f64(1.0 / rate);
        // Spread the channels' ticks over one period so they do not all fire at once.
        let start = tokio::time::Instant::now() + period.mul_f64(offset as f64 / 1000.0);
        let (start_ns, start_at) = (
            payload::now_ns() + (start - tokio::time::Instant::now()).as_nanos() as u64,
            start,
        );
        let mut ticks = tokio::time::interval_at(start, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        loop {
            tokio::select! {
                at = ticks.tick() => {
                    let scheduled = start_ns + (at - start_at).as_nanos() as u64;
                    let body = payload::make(size, scheduled);
                    seq += 1;
                    let bytes = target.publish(&mut ws, &channel, &body, seq + 1, false);
                    if ws.write_raw(&bytes).await.is_err() {
                        return;
                    }
                    let mut s = stats.borrow_mut();
                    if scheduled >= s.window.0 && scheduled <= s.window.1 {
                        s.published += 1;
                    }
                }
                changed = control.changed() => {
                    if changed.is_err() { return }
                    break;
                }
                frame = ws.next() => match frame {
                    Ok(f) => if let Some(reply) = target.answer(&mut ws, &f) { let _ = ws.write_raw(&reply).await; },
                    Err(_) => return,
                },
            }
        }
    }
}
