"""A machine-monitoring agent: publishes its metrics ephemerally every few seconds, and a
persisted `status` message whenever its status changes.

Metrics are ephemeral: dashboards connected now see them, nothing is stored. A status change is
persisted, so anyone can read the latest status later with a backward history read (shown by
`--show-status`). Keeping the latest status in channel storage (kv) comes with storage support
on the server.

    export SWITCHBOARD_API_KEY=$(cat switchboard-data/default.key)
    python machine_monitor.py --channel machines --interval 5
    python machine_monitor.py --channel machines --show-status
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
from typing import Any

import switchboard


def metrics() -> dict[str, Any]:
    """Load average, memory and disk use of this machine (Linux)."""
    load1, load5, _ = os.getloadavg()
    memory: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, value = line.split(":", 1)
            memory[name] = int(value.split()[0])
    disk = shutil.disk_usage("/")
    return {
        "load1": round(load1, 2),
        "load5": round(load5, 2),
        "cpus": os.cpu_count() or 1,
        "memory_used_pct": round(100 * (1 - memory["MemAvailable"] / memory["MemTotal"]), 1),
        "disk_used_pct": round(100 * disk.used / disk.total, 1),
    }


def status_of(m: dict[str, Any]) -> str:
    """`ok`, or `degraded` when the machine is overloaded or nearly full."""
    busy = m["load1"] > 2 * m["cpus"] or m["memory_used_pct"] > 90 or m["disk_used_pct"] > 90
    return "degraded" if busy else "ok"


async def monitor(url: str, api_key: str, channel: str, name: str, interval: float, count: int | None) -> None:
    """Publishes `count` rounds of metrics (forever when `None`)."""
    async with await switchboard.connect(url, api_key, channel, name, presence=False, echo=False) as agent:
        last_status = None
        sent = 0
        while count is None or sent < count:
            m = metrics()
            await agent.send("metrics", m, ephemeral=True)
            status = status_of(m)
            if status != last_status:
                ack = await agent.send("status", {"machine": name, "status": status, "metrics": m})
                print(f"status {status} stored at offset {ack.offset}")
                last_status = status
            sent += 1
            if count is None or sent < count:
                await asyncio.sleep(interval)


async def latest_status(url: str, api_key: str, channel: str, machine: str) -> dict[str, Any] | None:
    """The latest persisted status of `machine`, from history."""
    async with await switchboard.connect(url, api_key, channel, f"reader-{os.getpid()}", presence=False) as agent:
        page = await agent.receive(type="status", sender=machine, direction="backward", limit=1)
        return page.messages[0].data if page.messages else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:7400"))
    parser.add_argument("--channel", default="machines")
    parser.add_argument("--name", default=socket.gethostname())
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--show-status", action="store_true", help="print the latest status and exit")
    args = parser.parse_args()
    key = os.environ["SWITCHBOARD_API_KEY"]
    if args.show_status:
        print(asyncio.run(latest_status(args.url, key, args.channel, args.name)))
    else:
        asyncio.run(monitor(args.url, key, args.channel, args.name, args.interval, args.count))


if __name__ == "__main__":
    main()
