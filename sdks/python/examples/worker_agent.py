"""A worker agent that announces a capability, takes tasks from its inbox, streams progress
and a result back, and acks.

Tasks sent to the worker wait in its durable inbox while it is away (or busy, or restarting),
and each one leaves the inbox only when the worker acknowledges it. On start the worker
announces its capabilities (the operations it performs) in the tenant's agent directory. The
asker discovers a worker by capability, online ones first; an announced worker that is offline
still gets the task, which waits in its inbox.

For every task the worker does the work (`uppercase` or `reverse` a text), tells the task's
sender how it is going with ephemeral `progress` messages (best effort: dropped while the asker
is away), sends the result back as a **stream** (`text/plain`, the task's id in the stream's
metadata), and only then acknowledges the task. When `send_stream` returns the result is on
the server, verified by its SHA-256 and durable, so it survives the worker going away: the
server offers it to the asker, on every join until it is received, and an asker cut off
half-way resumes from the bytes it has. The asker reads the progress, receives the stream and
verifies it.

A malformed task is rejected with a reason and without requeue, so it goes to the channel's
dead letters instead of coming back; the sender, who asked for receipts, hears `dead_lettered`
with that reason. A task the worker took but did not settle (it crashed, or its connection
dropped) comes back with `delivery_count + 1` and may be answered twice: the asker takes the
stream of the task it waits for and cancels result streams it does not wait for.

    export SWITCHBOARD_API_KEY=$(cat switchboard-data/default.key)
    python worker_agent.py worker --name worker-1
    python worker_agent.py ask --op uppercase "hello agents"      # discovers worker-1
    python worker_agent.py ask --worker worker-1 --op reverse "hello agents"
    python worker_agent.py workers
    python worker_agent.py dead-letters
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import secrets
from collections.abc import Callable
from typing import Any

import switchboard

CHANNEL = "jobs"
OPERATIONS: dict[str, Callable[[str], str]] = {"uppercase": str.upper, "reverse": lambda text: text[::-1]}


class NoWorker(Exception):
    """No agent announced the capability."""

    def __init__(self, op: str) -> None:
        super().__init__(f"no worker announced the capability {op!r}")
        self.op = op


class TaskFailed(Exception):
    """The worker rejected the task: it became a dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def perform(task: switchboard.Message) -> tuple[str, str]:
    """The work itself: the operation and its output. Raises ValueError, with the reason, for a
    malformed task."""
    if task.type != "task":
        raise ValueError(f"not a task: type `{task.type}`")
    if not isinstance(task.data, dict):
        raise ValueError("malformed task: expected {op, text}")
    op, text = task.data.get("op"), task.data.get("text")
    if op not in OPERATIONS:
        raise ValueError(f"unknown op {op!r}: use one of {', '.join(OPERATIONS)}")
    if not isinstance(text, str):
        raise ValueError("malformed task: `text` is not a string")
    return op, OPERATIONS[op](text)


async def report(agent: switchboard.Agent, task: switchboard.Message, stage: str, **more: Any) -> None:
    """Tells the task's sender how its task is going: an ephemeral `progress` message, dropped
    when the sender is not in the channel (the result stream waits for it anyway)."""
    try:
        await agent.send("progress", {"task": task.id, "stage": stage, **more}, to=task.sender, ephemeral=True)
    except switchboard.NotFoundError:
        pass  # agent_not_present


async def worker(url: str, api_key: str, name: str, tasks: int | None = None) -> int:
    """Consumes `name`'s inbox; settles `tasks` tasks (forever when `None`) and returns how
    many it completed."""
    completed = settled = 0
    async with await switchboard.connect(url, api_key, CHANNEL, name, inbox=True, presence=False, echo=False) as agent:
        # The card stays in the directory after the worker leaves (shown offline): askers still
        # find it, and their tasks wait in its inbox.
        await agent.announce(list(OPERATIONS), {"channel": CHANNEL})
        async for delivery in agent.inbox():
            task = delivery.message
            again = f" (delivery {delivery.delivery_count})" if delivery.delivery_count > 1 else ""
            try:
                op, output = perform(task)
            except ValueError as e:
                # Retrying cannot fix a malformed task: dead-letter it now, with the reason.
                await agent.reject(task.id, str(e), requeue=False)
                print(f"rejected {task.id} from {task.sender}{again}: {e}")
            else:
                await report(agent, task, "working")
                result = output.encode()
                # The result goes back as a stream: any size, checked by SHA-256, and kept on the
                # server (durably, once this returns) until the asker has received it.
                sent = await agent.send_stream(
                    task.sender,
                    result,
                    name=f"{op}.txt",
                    content_type="text/plain; charset=utf-8",
                    meta={"task": task.id, "op": op},
                    on_progress=lambda held: print(f"  result of {task.id}: {held}/{len(result)} bytes up"),
                )
                await report(agent, task, "sent", stream_id=sent.stream_id, size=sent.total_size)
                # Only now: a crash before this line means the task comes back, not that it is lost.
                await agent.ack(task.id)
                completed += 1
                print(f"done {task.id} for {task.sender}{again}: stream {sent.stream_id}")
            settled += 1
            if tasks is not None and settled >= tasks:
                break
    return completed


async def find_worker(agent: switchboard.Agent, op: str) -> str:
    """A worker that announced the capability `op`: an online one if there is one, else an
    offline one (the task waits in its inbox). Raises NoWorker when nobody announced it."""
    found = await agent.discover(op, online=True, limit=1) or await agent.discover(op, limit=1)
    if not found:
        raise NoWorker(op)
    return found[0].name


async def ask(
    url: str, api_key: str, op: str, text: str, *, worker: str | None = None, name: str | None = None
) -> str:
    """Sends a task to `worker`, or to a worker discovered by the capability `op` (it waits in
    the worker's inbox if the worker is away), and returns the result the worker streams back;
    raises NoWorker when no worker announced `op`, TaskFailed when the worker rejects the task.
    One `ask` at a time per asker name: result streams for other tasks are cancelled."""
    me = name or f"asker-{secrets.token_hex(3)}"
    async with await switchboard.connect(url, api_key, CHANNEL, me, presence=False, echo=False) as agent:
        target = worker or await find_worker(agent, op)
        sent = await agent.send("task", {"op": op, "text": text}, to=target, receipt=True)
        async for event in agent.events():
            if isinstance(event, switchboard.Receipt) and event.id == sent.id:
                print(f"task {sent.id} to {target}: {event.status}" + (f" ({event.reason})" if event.reason else ""))
                if event.status == "dead_lettered":
                    raise TaskFailed(event.reason or "dead-lettered")
            elif isinstance(event, switchboard.Message) and event.type == "progress":
                progress: Any = event.data
                if isinstance(progress, dict) and progress.get("task") == sent.id:
                    print(f"task {sent.id}: {progress.get('stage')}")
            elif isinstance(event, switchboard.StreamOffer):
                if event.meta.get("task") != sent.id:
                    # A result this asker no longer waits for (a duplicate after a redelivery,
                    # or one of an earlier run): refuse it, so the server forgets it.
                    await agent.cancel_stream(event.stream_id, "not waiting for this result")
                    continue
                result = io.BytesIO()
                await agent.receive_stream(event, result, on_progress=lambda n: print(f"result: {n} bytes"))
                return result.getvalue().decode()
            elif isinstance(event, switchboard.Kicked):
                raise event.error
    raise switchboard.ClosedError("the channel ended before the result arrived")


async def workers(url: str, api_key: str, op: str | None = None) -> list[switchboard.AgentCard]:
    """The announced agents (with the capability `op` when given), by name."""
    return await switchboard.HttpClient(url, api_key).discover(op)


async def dead_letters(url: str, api_key: str) -> list[switchboard.DeadLetter]:
    """Every dead letter of the channel sent by this tenant's agents, oldest first."""
    http = switchboard.HttpClient(url, api_key)
    letters: list[switchboard.DeadLetter] = []
    after: str | None = None
    while True:
        page = await http.dead_letters(CHANNEL, after=after)
        letters += page.entries
        if page.next is None:
            return letters
        after = page.next


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:7400"))
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--name", required=True)
    a = sub.add_parser("ask")
    a.add_argument("--worker", help="the worker's agent name (default: discovered by the op)")
    a.add_argument("--op", required=True, help=f"one of {', '.join(OPERATIONS)}")
    a.add_argument("--name", help="the asker's agent name (its result streams wait for it on the server)")
    a.add_argument("text")
    ws = sub.add_parser("workers")
    ws.add_argument("--op", help="only the workers that announced this operation")
    sub.add_parser("dead-letters")
    args = parser.parse_args()
    key = os.environ["SWITCHBOARD_API_KEY"]
    if args.command == "worker":
        asyncio.run(worker(args.url, key, args.name))
    elif args.command == "ask":
        try:
            print(asyncio.run(ask(args.url, key, args.op, args.text, worker=args.worker, name=args.name)))
        except TaskFailed as e:
            raise SystemExit(f"the worker rejected the task: {e.reason}") from None
        except NoWorker as e:
            raise SystemExit(str(e)) from None
    elif args.command == "workers":
        for card in asyncio.run(workers(args.url, key, args.op)):
            state = "online" if card.online else "offline"
            print(f"{card.name} ({state}): {', '.join(card.capabilities)} {card.metadata}")
    else:
        for d in asyncio.run(dead_letters(args.url, key)):
            print(f"{d.message.id} {d.message.sender} → {d.recipient}: {d.reason} ({d.delivery_count} deliveries)")


if __name__ == "__main__":
    main()
