"""Runs the language-neutral scenarios of spec/scenarios (format: spec/scenarios/README.md)
with this SDK against a real server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import switchboard
from switchboard.channel import Channel

from harness import FAST, REPO, WAIT, Proxy, ServerProcess

SCENARIOS = REPO / "spec" / "scenarios"


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.json"))


def matches(expected: Any, actual: Any) -> bool:
    """The scenario matching rule: objects by the keys they give, `null` = absent or null,
    arrays by length and element, scalars by equality."""
    if expected is None:
        return actual is None
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(matches(v, actual.get(k)) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(matches, expected, actual))
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return bool(expected == actual)


def wire_message(m: switchboard.Message) -> dict[str, Any]:
    """A message in its wire JSON shape (absent fields left out, as the server does)."""
    out: dict[str, Any] = {"id": m.id, "channel": m.channel, "from": m.sender, "type": m.type, "data": m.data, "ts": m.ts}
    if m.offset is not None:
        out["offset"] = m.offset
    if m.to is not None:
        out["to"] = m.to
    if m.ephemeral:
        out["ephemeral"] = True
    if m.attachments:
        out["attachments"] = [base64.b64encode(a).decode() for a in m.attachments]
    return out


def wire_page(page: switchboard.HistoryPage) -> dict[str, Any]:
    return {
        "messages": [wire_message(m) for m in page.messages],
        "epoch": page.epoch,
        "head": page.head,
        "first_available": page.first_available,
        "next": page.next,
        "sources": [{"tier": r.tier.value, "from": r.from_offset, "to": r.to_offset} for r in page.sources],
    }


def wire_reply(reply: switchboard.JoinReply) -> dict[str, Any]:
    gap = {"reason": reply.gap.reason, "first_available": reply.gap.first_available} if reply.gap else None
    return {
        "channel": reply.channel,
        "scope": reply.scope,
        "agent_name": reply.agent_name,
        "session_id": reply.session_id,
        "epoch": reply.epoch,
        "head": reply.head,
        "persistent": reply.persistent,
        "gap": gap,
    }


def wire_entry(entry: switchboard.StorageEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "value": entry.value,
        "version": entry.version,
        "updated_at": entry.updated_at,
        "updated_by": entry.updated_by,
        "expires_at": entry.expires_at,
    }


def wire_ack(ack: switchboard.PublishAck) -> dict[str, Any]:
    return {"id": ack.id, "offset": ack.offset, "duplicate": ack.duplicate or None}


def publish_args(message: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `Channel.publish` / `HttpClient.publish` from a wire `Publish`."""
    args: dict[str, Any] = {
        "type": message["type"],
        "data": message.get("data"),
        "to": message.get("to"),
        "ephemeral": bool(message.get("ephemeral", False)),
        "id": message.get("id"),
    }
    if "attachments" in message:
        args["attachments"] = [base64.b64decode(a) for a in message["attachments"]]
    if message.get("receipt"):
        args["receipt"] = True
    return args


@dataclass
class ChannelSlot:
    """A joined channel and what the runner has read from it so far."""

    channel: Channel
    messages: deque[switchboard.Message] = field(default_factory=deque)
    presence: dict[str, set[str]] = field(default_factory=dict)
    reconnects: int = 0
    reconnects_seen: int = 0
    kicked: switchboard.SwitchboardError | None = None
    ended: bool = False
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    pump: asyncio.Task[None] | None = None

    async def run_pump(self) -> None:
        async for event in self.channel.events():
            if isinstance(event, switchboard.Message):
                self.messages.append(event)
            elif isinstance(event, switchboard.PresenceState):
                self.presence = {name: {m.phx_ref for m in metas} for name, metas in event.agents.items()}
            elif isinstance(event, switchboard.PresenceDiff):
                for name, metas in event.joins.items():
                    self.presence.setdefault(name, set()).update(m.phx_ref for m in metas)
                for name, metas in event.leaves.items():
                    refs = self.presence.get(name, set()) - {m.phx_ref for m in metas}
                    if refs:
                        self.presence[name] = refs
                    else:
                        self.presence.pop(name, None)
            elif isinstance(event, switchboard.Reconnected):
                self.reconnects += 1
            elif isinstance(event, switchboard.Kicked):
                self.kicked = event.error
            async with self.changed:
                self.changed.notify_all()
        self.ended = True
        async with self.changed:
            self.changed.notify_all()

    async def wait(self, what: str, ready: Callable[[], bool]) -> None:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(ready), WAIT)
            except asyncio.TimeoutError:
                raise AssertionError(f"timed out waiting for {what}") from None


@dataclass
class ClientSlot:
    proxy: Proxy
    client: switchboard.Client | None = None
    channels: dict[str, ChannelSlot] = field(default_factory=dict)


class ScenarioRunner:
    def __init__(self, scenario: dict[str, Any], workdir: Path) -> None:
        self.scenario = scenario
        env = {
            f"SWITCHBOARD_{section.upper()}_{key.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
            for section, values in scenario.get("server", {}).items()
            for key, value in values.items()
        }
        self.server = ServerProcess(workdir, env)
        self.clients: dict[str, ClientSlot] = {}
        self.http: switchboard.HttpClient | None = None

    async def run(self) -> None:
        self.server.start()
        self.http = switchboard.HttpClient(self.server.url, self.server.key)
        try:
            for index, step in enumerate(self.scenario["steps"]):
                try:
                    await self.step(step)
                except AssertionError as e:
                    raise AssertionError(f"step {index} {json.dumps(step)}: {e}") from None
        finally:
            for slot in self.clients.values():
                if slot.client is not None:
                    await slot.client.close()
                await slot.proxy.close()
            self.server.kill()

    async def step(self, step: dict[str, Any]) -> None:
        op = step["op"]
        action = getattr(self, "op_" + op, None)
        if action is None:
            raise AssertionError(f"unknown op `{op}`")
        if "error" not in step:
            await action(step)
            return
        try:
            await action(step)
        except switchboard.SwitchboardError as e:
            assert e.code == step["error"], f"expected error {step['error']}, got {e.code}: {e}"
            return
        raise AssertionError(f"expected error {step['error']}, but the step succeeded")

    def expect(self, step: dict[str, Any], actual: Any) -> None:
        if "expect" in step:
            assert matches(step["expect"], actual), f"expected {json.dumps(step['expect'])}, got {json.dumps(actual)}"

    def slot(self, step: dict[str, Any]) -> ChannelSlot:
        return self.clients[step["client"]].channels[step["channel"]]

    async def op_connect(self, step: dict[str, Any]) -> None:
        proxy = await Proxy.start(self.server.port)
        slot = ClientSlot(proxy)
        self.clients[step["client"]] = slot
        slot.client = await switchboard.Client.connect(proxy.url, step.get("api_key", self.server.key), FAST)

    async def op_join(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]]
        assert client.client is not None
        params = dict(step["params"])
        agent = params.pop("agent_name")
        if "kv_events" in params:
            params["storage_events"] = params.pop("kv_events")
        channel = await client.client.join(step["channel"], agent, **params)
        slot = ChannelSlot(channel)
        slot.pump = asyncio.create_task(slot.run_pump())
        client.channels[step["channel"]] = slot
        self.expect(step, wire_reply(channel.join_reply))

    async def op_leave(self, step: dict[str, Any]) -> None:
        await self.slot(step).channel.leave()

    async def op_publish(self, step: dict[str, Any]) -> None:
        ack = await self.slot(step).channel.publish(**publish_args(step["message"]))
        self.expect(step, wire_ack(ack))

    async def op_expect_message(self, step: dict[str, Any]) -> None:
        slot = self.slot(step)
        await slot.wait("a message", lambda: bool(slot.messages) or slot.ended)
        assert slot.messages, "the channel ended before a message arrived"
        actual = wire_message(slot.messages.popleft())
        assert matches(step["message"], actual), f"expected message {json.dumps(step['message'])}, got {json.dumps(actual)}"

    async def op_history(self, step: dict[str, Any]) -> None:
        page = await self.slot(step).channel.history(**step["query"])
        self.expect(step, wire_page(page))

    async def op_kv_put(self, step: dict[str, Any]) -> None:
        p = step["params"]
        storage = self.slot(step).channel.storage
        entry = await storage.put(p["key"], p.get("value"), version=p.get("version"), ttl_secs=p.get("ttl_secs"))
        self.expect(step, wire_entry(entry))

    async def op_kv_get(self, step: dict[str, Any]) -> None:
        entry = await self.slot(step).channel.storage.get(step["params"]["key"])
        self.expect(step, wire_entry(entry))

    async def op_kv_delete(self, step: dict[str, Any]) -> None:
        p = step["params"]
        await self.slot(step).channel.storage.delete(p["key"], version=p.get("version"))

    async def op_kv_list(self, step: dict[str, Any]) -> None:
        page = await self.slot(step).channel.storage.list(**step["query"])
        self.expect(step, {"entries": [wire_entry(e) for e in page.entries], "next": page.next})

    async def op_presence(self, step: dict[str, Any]) -> None:
        state = await self.slot(step).channel.presence()
        expect = step["expect"]
        if "agents" in expect:
            assert state.names() == expect["agents"], f"expected agents {expect['agents']}, got {state.names()}"
        for name, meta in expect.get("meta", {}).items():
            assert name in state.agents, f"{name} is not present"
            actual = state.agents[name][0].meta
            assert matches(meta, actual), f"meta of {name}: expected {meta}, got {actual}"

    async def op_await_presence(self, step: dict[str, Any]) -> None:
        slot = self.slot(step)
        want = step["agents"]
        await slot.wait(f"presence {want} (seen {sorted(slot.presence)})", lambda: sorted(slot.presence) == want)

    async def op_drop_connection(self, step: dict[str, Any]) -> None:
        self.clients[step["client"]].proxy.block()

    async def op_restore_connection(self, step: dict[str, Any]) -> None:
        self.clients[step["client"]].proxy.unblock()

    async def op_expect_reconnected(self, step: dict[str, Any]) -> None:
        slot = self.slot(step)
        await slot.wait("a reconnect", lambda: slot.reconnects > slot.reconnects_seen)
        slot.reconnects_seen += 1

    async def op_restart_server(self, step: dict[str, Any]) -> None:
        # In a thread: the clients must answer the server's close frames meanwhile.
        await asyncio.to_thread(self.server.restart, graceful=True)

    async def op_expect_kicked(self, step: dict[str, Any]) -> None:
        slot = self.slot(step)
        await slot.wait("a kick", lambda: slot.ended)
        assert slot.kicked is not None and slot.kicked.code == step["code"], f"expected kick {step['code']}, got {slot.kicked}"

    async def op_close(self, step: dict[str, Any]) -> None:
        client = self.clients[step["client"]].client
        assert client is not None
        await client.close()

    async def op_create_channel(self, step: dict[str, Any]) -> None:
        assert self.http is not None
        body = dict(step["body"])
        retention = body.pop("retention", {})
        info = await self.http.create_channel(body.pop("name"), **body, **retention)
        self.expect(step, {k: getattr(info, k) for k in info.__dataclass_fields__})

    async def op_delete_channel(self, step: dict[str, Any]) -> None:
        assert self.http is not None
        await self.http.delete_channel(step["channel"])

    async def op_http_publish(self, step: dict[str, Any]) -> None:
        assert self.http is not None
        message = step["message"]
        ack = await self.http.publish(step["channel"], **publish_args(message), sender=message.get("from"))
        self.expect(step, wire_ack(ack))

    async def op_http_history(self, step: dict[str, Any]) -> None:
        assert self.http is not None
        page = await self.http.history(step["channel"], **step["query"])
        self.expect(step, wire_page(page))
