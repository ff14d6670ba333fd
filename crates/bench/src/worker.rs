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
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Command {
    Window([u64; 2]),
    Report,
}

struct Stats {
    window: (u64, u64),
    received: u64,
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
) -> anyhow::Result<()> {
    let stats = Rc::new(RefCell::new(Stats {
        window: (u64::MAX, 0),
        received: 0,
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
                    let channel = channel.clone();
                    let ip = (!locals.is_empty()).then(|| locals[id as usize % locals.len()]);
                    pending.push(tokio::task::spawn_local(async move {
                        target.subscribe(ip, &channel, id).await
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
                    Command::Window([from, to]) => {
                        let mut s = stats.borrow_mut();
                        s.window = (from, to);
                        s.received = 0;
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
                        };
                        println!("{}", serde_json::to_string(&report)?);
                    }
                }
            }
            anyhow::Ok(())
        })
        .await
}
