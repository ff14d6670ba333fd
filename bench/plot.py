#!/usr/bin/env python3
"""Plots bench/results/latest.json: S1 efficiency vs subscribers, S3 latency percentiles,
S4 memory per connection, S7 cluster vs single-node latency per step. Usage: plot.py latest.json OUT_DIR"""
import json
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)

fan = results.get("fan_out", [])
if fan:
    sizes = sorted({f["payload"] for f in fan})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for server in dict.fromkeys(f["server"] for f in fan):
            rows = sorted((f["subscribers"], f["efficiency"]) for f in fan if f["server"] == server and f["payload"] == size)
            ax.plot([r[0] for r in rows], [r[1] / 1e6 for r in rows], marker="o", label=server)
        ax.set_xscale("log")
        ax.set_xlabel("subscribers")
        ax.set_ylabel("million deliveries per server CPU-second")
        ax.set_title(f"S1 fan-out efficiency, {size}-byte payload")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "s1-efficiency.png", dpi=110)

lat = results.get("latency", [])
if lat:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [l["server"] for l in lat]
    width = 0.25
    for i, (key, label) in enumerate([("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")]):
        ax.bar([x + i * width for x in range(len(names))], [l["latency"][key] / 1000 for l in lat], width, label=label)
    ax.set_xticks([x + width for x in range(len(names))], names)
    ax.set_ylabel("ms")
    ax.set_title("S3 latency at 10,000 deliveries/s (100 subscribers x 100 msg/s)")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "s3-latency.png", dpi=110)

mem = results.get("memory", [])
if mem:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for server in dict.fromkeys(m["server"] for m in mem):
        rows = sorted((m["connections"], m["per_connection_kib"]) for m in mem if m["server"] == server)
        ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=server)
    ax.axhline(8, color="grey", linestyle="--", label="target 8 KiB")
    ax.set_xlabel("idle subscribed connections")
    ax.set_ylabel("KiB RSS per connection")
    ax.set_title("S4 memory per idle connection")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "s4-memory.png", dpi=110)
cross = results.get("cross_node", {}).get("results", [])
if cross:
    counts = sorted({c["subscribers"] for c in cross})
    fig, axes = plt.subplots(1, len(counts), figsize=(6 * len(counts), 4.5), squeeze=False)
    for ax, n in zip(axes[0], counts):
        ticks = set()
        for color, c in enumerate(c for c in cross if c["subscribers"] == n):
            steps = [s for s in c["steps"] if not s["all"].get("error")]
            x = [s["all"]["offered"] / 1000 for s in steps]
            ticks.update(x)
            for key, style in [("p50_us", "--"), ("p99_us", "-")]:
                y = [s["all"]["latency"][key] / 1000 for s in steps]
                ax.plot(x, y, style, color=f"C{color}", marker="o", label=f'{c["deployment"]} {key[:3]}')
        ax.axhline(50, color="grey", linestyle=":", label="bar: p99 50 ms")
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_yscale("log")
        ax.set_xlabel("offered deliveries/s (thousands)")
        ax.set_ylabel("latency from scheduled time (ms)")
        ax.set_title(f"S7 persisted fan-out, {n} subscribers")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "s7-cross-node.png", dpi=110)
print(f"plots written to {out}")
