"""Agents that collaborate: a person broadcasts a task, workers that have the capability answer
with progress and a result, addressed to the asker.

Workers announce their capabilities in their presence metadata, so the asker sees who can help
before asking. This example uses broadcasts, direct messages, ephemeral progress, presence
metadata and history; worker_agent.py shows one worker fed through its durable inbox (tasks that
wait while it is away, ack/reject, receipts). Streams for large results and discovery are coming
with the server features.

    python task_board.py worker --name upper-1 --capability uppercase
    python task_board.py ask --capability uppercase "hello agents"
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
from typing import Any

import switchboard

CHANNEL = "tasks"


async def worker(url: str, api_key: str, name: str, capability: str, tasks: int | None = None) -> None:
    """Takes tasks needing `capability`; answers `tasks` of them (forever when `None`)."""
    async with await switchboard.connect(
        url, api_key, CHANNEL, name, meta={"capabilities": [capability]}, event_types=["task"], presence=False
    ) as agent:
        done = 0
        async for msg in agent.messages():
            task: dict[str, Any] = msg.data
            if task.get("capability") != capability:
                continue
            text = str(task.get("input", ""))
            await agent.send("progress", {"task": task["id"], "percent": 50}, to=msg.sender, ephemeral=True)
            result = text.upper() if capability == "uppercase" else text[::-1]
            await agent.send("result", {"task": task["id"], "output": result}, to=msg.sender)
            done += 1
            if tasks is not None and done >= tasks:
                return


async def ask(url: str, api_key: str, capability: str, text: str, name: str | None = None) -> Any:
    """Waits for a worker with `capability`, broadcasts the task and returns the result."""
    me = name or f"person-{secrets.token_hex(3)}"
    async with await switchboard.connect(url, api_key, CHANNEL, me, event_types=["progress", "result"]) as agent:
        # Presence metadata says who can do what; wait until someone can.
        async for event in agent.events():
            if isinstance(event, (switchboard.PresenceState, switchboard.PresenceDiff)):
                present = await agent.presence()
                capable = [n for n, metas in present.agents.items() if capability in metas[0].meta.get("capabilities", [])]
                if capable:
                    print(f"capable agents: {', '.join(sorted(capable))}")
                    break
        task_id = secrets.token_hex(4)
        await agent.send("task", {"id": task_id, "capability": capability, "input": text})
        async for msg in agent.messages():
            if msg.data.get("task") != task_id:
                continue
            if msg.type == "progress":
                print(f"{msg.sender}: {msg.data['percent']}%")
            elif msg.type == "result":
                print(f"{msg.sender} answered (offset {msg.offset}): {msg.data['output']}")
                return msg.data["output"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "ws://127.0.0.1:7400"))
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--name", required=True)
    w.add_argument("--capability", required=True, choices=["uppercase", "reverse"])
    a = sub.add_parser("ask")
    a.add_argument("--capability", required=True)
    a.add_argument("text")
    args = parser.parse_args()
    key = os.environ["SWITCHBOARD_API_KEY"]
    if args.command == "worker":
        asyncio.run(worker(args.url, key, args.name, args.capability))
    else:
        asyncio.run(ask(args.url, key, args.capability, args.text))


if __name__ == "__main__":
    main()
