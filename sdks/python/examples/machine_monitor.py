"""A machine-monitoring agent: publishes its metrics ephemerally every few seconds, and on every
status change a persisted `status` message and the channel-storage entry `status/<machine>`.

Metrics are ephemeral: dashboards connected now see them, nothing is stored. A status change is
persisted twice: as a message, so the history tells every change, and in channel storage, so
anyone reads the latest status with one `get` (shown by `--show-status`), however long ago it
changed; dashboards that join with `storage_events=True` see each change live.

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
                report = {"machine": name, "status": status, "metrics": m}
                ack = await agent.send("status", report)
                entry = await agent.storage.put(f"status/{name}", report)
                print(f"status {status} stored at offset {ack.offset} and as status/{name} v{entry.version}")
                last_status = status
            sent += 1
            if count is None or sent < count:
                await asyncio.sleep(interval)


async def latest_status(url: str, api_key: str, channel: str, machine: str) -> dict[str, Any] | None:
    """The latest status of `machine`, from channel storage (`None` before its first report)."""
    async with await switchboard.connect(url, api_key, channel, f"reader-{os.getpid()}", presence=False) as agent:
        try:
            entry = await agent.storage.get(f"status/{machine}")
        except switchboard.NotFoundError:
            return None
        report: dict[str, Any] = entry.value
        return report


async def all_statuses(url: str, api_key: str, channel: str) -> dict[str, str]:
    """Every machine's latest status, from channel storage."""
    async with await switchboard.connect(url, api_key, channel, f"reader-{os.getpid()}", presence=False) as agent:
        return {e.value["machine"]: e.value["status"] async for e in agent.storage.items(prefix="status/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:7400"))
    parser.add_argument("--channel", default="machines")
    parser.add_argument("--name", default=socket.gethostname())
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--show-status", action="store_true", help="print the latest status and exit")
    parser.add_argument("--all", action="store_true", help="print every machine's latest status and exit")
    args = parser.parse_args()
    key = os.environ["SWITCHBOARD_API_KEY"]
    if args.all:
        print(asyncio.run(all_statuses(args.url, key, args.channel)))
    elif args.show_status:
        print(asyncio.run(latest_status(args.url, key, args.channel, args.name)))
    else:
        asyncio.run(monitor(args.url, key, args.channel, args.name, args.interval, args.count))


if __name__ == "__main__":
    main()
