"""The examples work against the real server."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))

import switchboard  # noqa: E402

import machine_monitor  # noqa: E402
import notify  # noqa: E402
import task_board  # noqa: E402
import worker_agent  # noqa: E402

import pytest  # noqa: E402

from harness import WAIT, ServerProcess  # noqa: E402


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


async def test_worker_agent(server: ServerProcess) -> None:
    # Tasks sent while the worker is away wait in its inbox; the sender asks for receipts.
    async with await switchboard.connect(
        server.url, server.key, worker_agent.CHANNEL, "ann", presence=False, echo=False
    ) as ann:
        good = await ann.send("task", {"op": "reverse", "text": "inbox"}, to="worker-1", receipt=True)
        bad = await ann.send("task", {"op": "reverse", "text": 42}, to="worker-1", receipt=True)
        completed = await asyncio.wait_for(worker_agent.worker(server.url, server.key, "worker-1", tasks=2), WAIT)
        assert completed == 1
        # The worker is gone: its progress came live, its result waits on the server as a stream.
        receipts: dict[str, list[switchboard.Receipt]] = {good.id: [], bad.id: []}
        progress: list[Any] = []
        results: dict[str, tuple[switchboard.StreamOffer, bytes]] = {}
        while len(results) < 1 or len(receipts[good.id]) < 2 or len(receipts[bad.id]) < 2 or len(progress) < 2:
            event = await asyncio.wait_for(ann.channel.next_event(), WAIT)
            if isinstance(event, switchboard.Receipt):
                receipts[event.id].append(event)
            elif isinstance(event, switchboard.Message):
                assert (event.type, event.sender, event.ephemeral) == ("progress", "worker-1", True)
                progress.append(event.data)
            elif isinstance(event, switchboard.StreamOffer):
                sink = io.BytesIO()
                await asyncio.wait_for(ann.receive_stream(event, sink), WAIT)
                results[event.stream_id] = (event, sink.getvalue())
        assert [r.status for r in receipts[good.id]] == ["delivered", "acknowledged"]
        assert [(r.status, r.reason) for r in receipts[bad.id]] == [
            ("delivered", None),
            ("dead_lettered", "malformed task: `text` is not a string"),
        ]
        [(offer, output)] = results.values()
        assert (offer.sender, offer.name, offer.content_type, offer.meta, offer.size) == (
            "worker-1", "reverse.txt", "text/plain; charset=utf-8", {"task": good.id, "op": "reverse"}, 5
        )
        assert output == b"xobni"
        assert progress == [
            {"task": good.id, "stage": "working"},
            {"task": good.id, "stage": "sent", "stream_id": offer.stream_id, "size": 5},
        ]
    letters = await worker_agent.dead_letters(server.url, server.key)
    assert [(d.message.id, d.recipient) for d in letters] == [(bad.id, "worker-1")]

    # The worker announced its capabilities; its card stays after it left.
    card = await switchboard.HttpClient(server.url, server.key).agent("worker-1")
    assert (card.capabilities, card.metadata) == (["uppercase", "reverse"], {"channel": worker_agent.CHANNEL})
    assert [c.name for c in await worker_agent.workers(server.url, server.key, "reverse")] == ["worker-1"]

    # The asker's side: it discovers the worker by capability (whether the worker is up yet or
    # not: its task waits in the inbox), gets a result; a task the worker rejects.
    worker = asyncio.create_task(worker_agent.worker(server.url, server.key, "worker-1", tasks=2))
    ask = worker_agent.ask(server.url, server.key, "uppercase", "hello agents", name="bob")
    assert await asyncio.wait_for(ask, WAIT) == "HELLO AGENTS"
    with pytest.raises(worker_agent.NoWorker):
        await asyncio.wait_for(worker_agent.ask(server.url, server.key, "shout", "hi", name="cy"), WAIT)
    shout = worker_agent.ask(server.url, server.key, "shout", "hi", worker="worker-1", name="cy")
    with pytest.raises(worker_agent.TaskFailed) as failed:
        await asyncio.wait_for(shout, WAIT)
    assert failed.value.reason.startswith("unknown op 'shout'")
    assert await asyncio.wait_for(worker, WAIT) == 1
