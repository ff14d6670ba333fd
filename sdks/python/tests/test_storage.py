"""Channel storage (``agent.storage``) against the real server: versions and compare-and-set,
create-only writes, list pagination and ``items()``, delete, change events, ``not_found``, expiry,
the ``kv`` capability of temporary keys, and the in-flight rule across a dropped connection."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import switchboard
from switchboard import ErrorCode, StorageChange, StorageEntry

from harness import FAST, WAIT, Proxy, ServerProcess, next_event


async def next_change(channel: switchboard.Channel) -> StorageChange:
    """The next storage change, skipping presence events and reconnect notices."""
    while True:
        event = await next_event(channel)
        if isinstance(event, StorageChange):
            return event
        assert isinstance(event, (switchboard.PresenceState, switchboard.PresenceDiff, switchboard.Reconnected)), event


async def test_put_and_compare_and_set(server: ServerProcess) -> None:
    async with await switchboard.connect(server.url, server.key, "board", "alice", options=FAST) as alice:
        before = int(time.time() * 1000)
        first = await alice.storage.put("score/ada", {"points": 3})
        assert isinstance(first, StorageEntry)
        assert (first.key, first.value, first.version, first.updated_by, first.expires_at) == (
            "score/ada",
            {"points": 3},
            1,
            "alice",
            None,
        )
        assert before - 1000 <= first.updated_at <= time.time() * 1000 + 1000

        assert (await alice.storage.put("score/ada", {"points": 5}, version=1)).version == 2
        with pytest.raises(switchboard.ConflictError) as stale:
            await alice.storage.put("score/ada", {"points": 9}, version=1)
        assert stale.value.code == ErrorCode.VERSION_CONFLICT
        assert (await alice.storage.get("score/ada")).value == {"points": 5}

        # Version 0: create only.
        with pytest.raises(switchboard.ConflictError) as exists:
            await alice.storage.put("score/ada", 0, version=0)
        assert exists.value.code == ErrorCode.VERSION_CONFLICT
        created = await alice.storage.put("score/bob", None, version=0)
        assert (created.version, created.value) == (1, None)


async def test_get_and_delete(server: ServerProcess) -> None:
    async with await switchboard.connect(server.url, server.key, "board", "alice", options=FAST) as alice:
        for missing in (alice.storage.get("nothing"), alice.storage.delete("nothing")):
            with pytest.raises(switchboard.NotFoundError) as e:
                await missing
            assert e.value.code == ErrorCode.NOT_FOUND
        await alice.storage.put("k", "v")
        await alice.storage.put("k", "w")
        with pytest.raises(switchboard.ConflictError):
            await alice.storage.delete("k", version=1)
        await alice.storage.delete("k", version=2)
        with pytest.raises(switchboard.NotFoundError):
            await alice.storage.get("k")


async def test_list_pages_and_items(server: ServerProcess) -> None:
    writer = await switchboard.connect(server.url, server.key, "board", "writer", options=FAST)
    reader = await switchboard.connect(server.url, server.key, "board", "reader", options=FAST)
    keys = ["item/03", "item/01", "item/05", "item/02", "item/04", "other"]
    for key in keys:
        await writer.storage.put(key, {"key": key})

    first = await reader.storage.list(prefix="item/", limit=2)
    assert [e.key for e in first.entries] == ["item/01", "item/02"]
    assert first.next == "item/02"
    assert first.entries[0].value == {"key": "item/01"} and first.entries[0].updated_by == "writer"
    second = await reader.storage.list(prefix="item/", limit=2, after=first.next)
    assert [e.key for e in second.entries] == ["item/03", "item/04"]
    last = await reader.storage.list(prefix="item/", limit=2, after=second.next)
    assert [e.key for e in last.entries] == ["item/05"] and last.next is None
    assert [e.key for e in (await reader.storage.list()).entries] == sorted(keys)

    assert [e.key async for e in reader.storage.items(prefix="item/", page_size=2)] == [
        "item/01",
        "item/02",
        "item/03",
        "item/04",
        "item/05",
    ]
    assert len([e async for e in reader.storage.items()]) == len(keys)
    with pytest.raises(switchboard.InvalidRequestError):
        await reader.storage.list(limit=0)
    await writer.close()
    await reader.close()


async def test_change_events_with_storage_events_only(server: ServerProcess) -> None:
    writer = await switchboard.connect(server.url, server.key, "board", "writer", presence=False, options=FAST)
    watcher = await switchboard.connect(
        server.url, server.key, "board", "watcher", presence=False, storage_events=True, options=FAST
    )
    quiet = await switchboard.connect(server.url, server.key, "board", "quiet", presence=False, options=FAST)

    await writer.storage.put("config/theme", {"dark": True})
    assert await next_change(watcher.channel) == StorageChange("config/theme", "put", 1, {"dark": True}, "writer")
    await writer.storage.delete("config/theme")
    assert await next_change(watcher.channel) == StorageChange("config/theme", "delete", 1, None, "writer")

    # A round trip through quiet's socket after the writes: it got no change.
    await quiet.send("marker", "after the writes")
    event = await next_event(quiet.channel)
    assert isinstance(event, switchboard.Message) and event.type == "marker", event
    for agent in (writer, watcher, quiet):
        await agent.close()


async def test_ttl_expiry(server: ServerProcess) -> None:
    async with await switchboard.connect(server.url, server.key, "board", "alice", options=FAST) as alice:
        entry = await alice.storage.put("short", "lived", ttl_secs=1)
        assert entry.expires_at is not None and entry.updated_at < entry.expires_at <= entry.updated_at + 1500
        assert (await alice.storage.get("short")).value == "lived"
        deadline = time.monotonic() + WAIT
        while True:
            try:
                await alice.storage.get("short")
            except switchboard.NotFoundError as e:
                assert e.code == ErrorCode.NOT_FOUND
                break
            assert time.monotonic() < deadline, "the entry expires after its ttl"
            await asyncio.sleep(0.05)
        with pytest.raises(switchboard.InvalidRequestError):
            await alice.storage.put("x", 1, ttl_secs=0)


async def test_refusals(server: ServerProcess) -> None:
    async with await switchboard.connect(server.url, server.key, "board", "alice", options=FAST) as alice:
        with pytest.raises(switchboard.InvalidRequestError) as big:
            await alice.storage.put("big", "x" * (70 * 1024))
        assert big.value.code == ErrorCode.MESSAGE_TOO_LARGE
        with pytest.raises(switchboard.InvalidRequestError) as bad:
            await alice.storage.put("bell\x07", 1)
        assert bad.value.code == ErrorCode.INVALID_PAYLOAD
        with pytest.raises(switchboard.InvalidRequestError):
            await alice.storage.put("", 1)
        with pytest.raises(switchboard.InvalidRequestError):
            await alice.storage.put("k", 1, version=-1)


async def test_too_many_keys(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"SWITCHBOARD_LIMITS_MAX_KV_KEYS_PER_CHANNEL": "1"}).start()
    try:
        async with await switchboard.connect(server.url, server.key, "board", "alice", options=FAST) as alice:
            await alice.storage.put("one", 1)
            with pytest.raises(switchboard.RateLimitedError) as full:
                await alice.storage.put("two", 2)
            assert full.value.code == ErrorCode.TOO_MANY_KEYS
    finally:
        server.kill()


async def test_temporary_keys_need_kv_and_read_only_may_only_read(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    owner = await switchboard.connect(server.url, server.key, "board", "owner", options=FAST)
    await owner.storage.put("config", {"v": 1})

    read_only = await http.mint_temporary_key(60, ["subscribe", "kv"], read_only=True)
    reader = await switchboard.connect(server.url, read_only.key, "board", "reader", options=FAST)
    assert (await reader.storage.get("config")).value == {"v": 1}
    assert len((await reader.storage.list()).entries) == 1
    for write in (reader.storage.put("x", 1), reader.storage.delete("config")):
        with pytest.raises(switchboard.PermissionDeniedError) as e:
            await write
        assert e.value.code == ErrorCode.FORBIDDEN

    without = await http.mint_temporary_key(60, ["subscribe"])
    stranger = await switchboard.connect(server.url, without.key, "board", "stranger", options=FAST)
    with pytest.raises(switchboard.PermissionDeniedError):
        await stranger.storage.get("config")

    granted = await http.mint_temporary_key(60, ["subscribe", "kv"])
    writer = await switchboard.connect(server.url, granted.key, "board", "writer", options=FAST)
    assert (await writer.storage.put("config", {"v": 2}, version=1)).updated_by == "writer"
    for agent in (owner, reader, stranger, writer):
        await agent.close()


async def test_a_write_in_flight_is_not_resent_and_a_read_is(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    agent = await switchboard.connect(proxy.url, server.key, "board", "alice", storage_events=True, options=FAST)
    await agent.storage.put("k", 1)
    write = asyncio.create_task(agent.storage.put("k", 2, version=1))
    read = asyncio.create_task(agent.storage.get("k"))
    # Cut before the proxy forwards either frame (its links are cancelled before they run).
    proxy.block()
    proxy.unblock()
    with pytest.raises(switchboard.DisconnectedError):
        await write
    got = await read
    assert (got.key, got.value, got.version) == ("k", 1, 1), "the write was not re-sent"
    # The rejoin asked for storage events again.
    await agent.storage.put("k", 3, version=1)
    assert (await next_change(agent.channel)).value == 1  # the first put, before the cut
    assert (await next_change(agent.channel)).value == 3
    await agent.close()
    await proxy.close()
