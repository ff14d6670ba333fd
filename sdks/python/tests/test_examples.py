"""The examples work against the real server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import switchboard  # noqa: E402

import machine_monitor  # noqa: E402
import notify  # noqa: E402
import task_board  # noqa: E402

from harness import ServerProcess  # noqa: E402


async def test_machine_monitor(server: ServerProcess) -> None:
    await machine_monitor.monitor(server.url, server.key, "machines", "box-1", interval=0, count=3)
    status = await machine_monitor.latest_status(server.url, server.key, "machines", "box-1")
    assert status is not None and status["machine"] == "box-1" and status["status"] in ("ok", "degraded")
    assert set(status["metrics"]) == {"load1", "load5", "cpus", "memory_used_pct", "disk_used_pct"}
    # The status lives in channel storage, next to the persisted status message.
    async with await switchboard.connect(server.url, server.key, "machines", "check", presence=False) as agent:
        entry = await agent.storage.get("status/box-1")
        page = await agent.receive(type="status", sender="box-1", direction="backward", limit=1)
        assert entry.value == page.messages[0].data and entry.updated_by == "box-1"
    assert await machine_monitor.all_statuses(server.url, server.key, "machines") == {"box-1": status["status"]}
    assert await machine_monitor.latest_status(server.url, server.key, "machines", "box-2") is None


async def test_task_board(server: ServerProcess) -> None:
    worker = asyncio.create_task(task_board.worker(server.url, server.key, "upper-1", "uppercase", tasks=1))
    result = await asyncio.wait_for(task_board.ask(server.url, server.key, "uppercase", "hello agents", "ann"), 20)
    assert result == "HELLO AGENTS"
    await asyncio.wait_for(worker, 20)


def test_notify(server: ServerProcess) -> None:
    notify.notify(server.url, server.key, "ops", "deployed 1.0")
    messages = notify.notify(server.url, server.key, "ops", "deployed 1.1")
    assert [m.data["text"] for m in reversed(messages)] == ["deployed 1.0", "deployed 1.1"]
