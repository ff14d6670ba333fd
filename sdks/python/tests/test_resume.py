"""Reconnect and resume: a crash of the server, a cut network path, publishes in flight, and
fresh keys from a key callback; never a gap, never a duplicate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, Proxy, ServerProcess, next_event, next_message, until_reconnected


async def test_server_crash_resumes_without_gap_or_duplicate(server: ServerProcess) -> None:
    reader = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "reader")
    writer = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "writer")
    for i in range(1, 4):
        await writer.publish("n", i)
    assert [(await next_message(reader)).offset for _ in range(3)] == [1, 2, 3]
    server.kill()
    server.start()
    # The writer's publishes wait for its rejoin; the reader resumes from offset 3.
    for i in range(4, 7):
        assert (await writer.publish("n", i)).offset == i
    assert await until_reconnected(reader) == []
    assert [(await next_message(reader)).data for _ in range(3)] == [4, 5, 6]
    await writer.publish("n", 7)
    assert (await next_message(reader)).offset == 7, "no duplicate before 7"
    assert reader.client.connections == 2
    await reader.client.close()
    await writer.client.close()


async def test_publishes_in_flight_during_a_crash_are_stored_once(server: ServerProcess) -> None:
    reader = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "reader")
    writer = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "writer", echo=False)
    first = asyncio.Event()

    async def publish(i: int) -> switchboard.PublishAck:
        ack = await writer.publish("n", i, id=f"msg-{i}")
        first.set()
        return ack

    tasks = [asyncio.create_task(publish(i)) for i in range(200)]
    await first.wait()
    server.kill()
    server.start()
    acks = await asyncio.gather(*tasks)
    # Every publish is stored exactly once: the offsets are 1..200 without a hole.
    assert sorted(a.offset for a in acks if a.offset is not None) == list(range(1, 201))
    ids: list[str] = []
    while len(ids) < 200:
        m = await next_message(reader)
        assert m.offset == len(ids) + 1
        ids.append(m.id)
    assert sorted(ids) == sorted(f"msg-{i}" for i in range(200))
    await reader.client.close()
    await writer.client.close()


async def test_network_cut_keeps_the_agent_name(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    reader = await (await switchboard.Client.connect(proxy.url, server.key, FAST)).join("feed", "reader")
    session = reader.join_reply.session_id
    writer = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "writer")
    await writer.publish("n", 1)
    assert (await next_message(reader)).offset == 1
    proxy.block()
    await writer.publish("n", 2)
    await writer.publish("n", 3)
    proxy.unblock()
    assert await until_reconnected(reader) == []
    assert reader.join_reply.session_id != session
    assert [(await next_message(reader)).offset for _ in range(2)] == [2, 3]
    # The rejoin took the stale session over: the reader is present once.
    present = await writer.presence()
    assert present.names() == ["reader", "writer"] and len(present.agents["reader"]) == 1
    assert reader.last_offset == 3
    await reader.client.close()
    await writer.client.close()
    await proxy.close()


async def test_graceful_restart_and_no_reconnect_option(server: ServerProcess) -> None:
    keep = await switchboard.connect(server.url, server.key, "room", "keep", options=FAST)
    once = await switchboard.connect(
        server.url, server.key, "room", "once", options=switchboard.ClientOptions(reconnect=False)
    )
    await asyncio.to_thread(server.restart, True)
    reason = await once.client.wait_closed()
    assert isinstance(reason, switchboard.ConnectionFailedError)
    with pytest.raises(switchboard.ConnectionFailedError):
        async for _ in once.messages():
            pass
    assert (await keep.send("chat", "after restart")).offset == 1
    await keep.close()


async def test_key_callback_gives_each_connection_a_fresh_key(server: ServerProcess) -> None:
    calls: list[str] = []

    async def fresh_key() -> str:
        calls.append(server.key)
        return server.key

    agent = await switchboard.connect(server.url, fresh_key, "room", "alice", options=FAST)
    assert len(calls) == 1
    server.kill()
    server.start()
    assert (await agent.send("chat", 1)).offset == 1
    assert len(calls) == 2
    await agent.client.reauthenticate()
    assert len(calls) == 3
    await agent.close()


async def test_refused_key_is_refreshed_once_from_the_callback(server: ServerProcess) -> None:
    keys = iter([server.key, "sk_expired", server.key])

    def next_key() -> str:
        return next(keys)

    agent = await switchboard.connect(server.url, next_key, "room", "alice", options=FAST)
    await agent.send("chat", 1)
    # The auth event with an expired key is refused (and the socket closed with 4500)...
    with pytest.raises(switchboard.AuthenticationError) as e:
        await agent.client.reauthenticate()
    assert e.value.code == ErrorCode.INVALID_KEY
    # ...so the client asks the callback again and resumes with the fresh key.
    assert isinstance(await until_reconnected(agent.channel), list)
    assert (await agent.send("chat", 2)).offset == 2
    await agent.close()


async def test_a_refused_key_without_a_callback_ends_the_client(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        agent = await switchboard.connect(server.url, server.key, "room", "alice", options=FAST)
        # Restarting with a fresh data directory forgets the key, like a revocation.
        server.kill()
        server.data_dir = tmp_path / "other"
        server.start()
        reason = await agent.client.wait_closed()
        assert reason.code == ErrorCode.INVALID_KEY
        with pytest.raises(switchboard.AuthenticationError):
            async for _ in agent.messages():
                pass
        with pytest.raises(switchboard.AuthenticationError):
            await agent.send("chat", "refused")
    finally:
        server.kill()


async def test_ephemeral_publish_in_flight_is_not_resent(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    agent = await switchboard.connect(proxy.url, server.key, "room", "alice", options=FAST)
    ephemeral = asyncio.create_task(agent.send("cpu", 1, ephemeral=True))
    persisted = asyncio.create_task(agent.send("chat", "kept"))
    # Cut before the proxy forwards either frame (its links are cancelled before they run).
    proxy.block()
    proxy.unblock()
    with pytest.raises(switchboard.DisconnectedError):
        await ephemeral
    assert (await persisted).offset == 1
    page = await agent.receive()
    assert [(m.offset, m.data) for m in page.messages] == [(1, "kept")]
    await agent.close()
    await proxy.close()


async def test_resume_behind_retention_reports_a_gap(tmp_path: Path) -> None:
    env = {"SWITCHBOARD_STORAGE_RETENTION_MAX_MESSAGES": "2", "SWITCHBOARD_STORAGE_RETENTION_INTERVAL_MS": "20"}
    server = ServerProcess(tmp_path, env).start()
    try:
        writer = await switchboard.connect(server.url, server.key, "feed", "writer", options=FAST)
        for i in range(1, 6):
            await writer.send("n", i)
        # Retention runs on a timer, not on an event the test could await: poll it, bounded.
        http = switchboard.HttpClient(server.url, server.key)
        for _ in range(500):
            if (await http.get_channel("feed")).first_available == 4:
                break
            await asyncio.sleep(0.01)
        reader = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("feed", "reader", since=1)
        assert reader.join_reply.gap == switchboard.Gap("retention", 4)
        assert await next_event(reader) == switchboard.Gap("retention", 4)
        assert [(await next_message(reader)).offset for _ in range(2)] == [4, 5]
        await reader.client.close()
        await writer.close()
    finally:
        server.kill()
