"""Storage tiers against the real server: ``poll_source`` (CACHE, LOG/KAFKA, DATABASE, AUTO) on
socket, HTTP and blocking reads, ``page.sources``, the join's default source (kept across a
reconnect), the database catching up with the log, the storage policies ``cache`` and ``log``
with their ``no_history`` refusals, per-channel cache and log retention, and unknown sources.

The server runs with ``SWITCHBOARD_STORAGE_CACHE_MESSAGES=5``: its cache holds the newest 5
messages of each channel, so after 8 publishes the cache has 4–8 and the log 1–8."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import switchboard
from switchboard import ErrorCode, HistoryPage, PollSource, Tier, TierRange

from harness import FAST, Proxy, ServerProcess, until_reconnected

CACHE_MESSAGES = 5
PUBLISHED = 8
# The database trails the log: how long a test waits for it to catch up.
DATABASE_WAIT = 5.0


@pytest.fixture
def tiered(tmp_path: Path) -> Iterator[ServerProcess]:
    s = ServerProcess(tmp_path, {"SWITCHBOARD_STORAGE_CACHE_MESSAGES": str(CACHE_MESSAGES)}).start()
    yield s
    s.kill()


def offsets(page: HistoryPage) -> list[int | None]:
    return [m.offset for m in page.messages]


def ranges(page: HistoryPage) -> list[tuple[str, int, int]]:
    return [(r.tier.value, r.from_offset, r.to_offset) for r in page.sources]


async def publish(agent: switchboard.Agent, n: int = PUBLISHED) -> None:
    for i in range(1, n + 1):
        assert (await agent.send("t", i)).offset == i


async def test_each_source_serves_its_tier(tiered: ServerProcess) -> None:
    async with await switchboard.connect(tiered.url, tiered.key, "tiers", "alice", options=FAST) as alice:
        await publish(alice)
        everything = list(range(1, PUBLISHED + 1))

        # AUTO, the default: the log's older part, then the cache, stitched without a gap.
        default = await alice.receive()
        assert offsets(default) == everything
        assert ranges(default) == [("LOG", 1, 3), ("CACHE", 4, 8)]
        assert default.sources == [TierRange(Tier.LOG, 1, 3), TierRange(Tier.CACHE, 4, 8)]
        assert all(isinstance(r.tier, Tier) for r in default.sources)
        for auto in ("auto", "AUTO", PollSource.AUTO):
            page = await alice.receive(poll_source=auto)
            assert (offsets(page), ranges(page)) == (everything, [("LOG", 1, 3), ("CACHE", 4, 8)]), auto

        # The cache alone: the newest five.
        for cache in ("cache", "Cache", PollSource.CACHE):
            page = await alice.receive(poll_source=cache)
            assert (offsets(page), ranges(page)) == ([4, 5, 6, 7, 8], [("CACHE", 4, 8)]), cache

        # The log alone, under either name: all of them, and the reply names the tier LOG.
        for log in ("log", PollSource.LOG, "kafka", "KAFKA", PollSource.KAFKA):
            page = await alice.receive(poll_source=log)
            assert (offsets(page), ranges(page)) == (everything, [("LOG", 1, 8)]), log

        # Bounds and limits work within a tier; sources stay ascending whatever the direction.
        page = await alice.receive(from_offset=2, limit=3, poll_source="log")
        assert (offsets(page), ranges(page), page.next) == ([2, 3, 4], [("LOG", 2, 4)], 5)
        page = await alice.channel.history(direction="backward", limit=3, poll_source="cache")
        assert (offsets(page), ranges(page), page.next) == ([8, 7, 6], [("CACHE", 6, 8)], 5)

        # Backward AUTO pages that cross the log/cache boundary: no gap, no duplicate.
        seen: list[int | None] = []
        spans: list[tuple[str, int, int]] = []
        to: int | None = None
        while True:
            page = await alice.channel.history(direction="backward", limit=3, to_offset=to, poll_source="auto")
            seen += offsets(page)
            spans += ranges(page)
            if page.next is None:
                break
            to = page.next
        assert seen == list(reversed(everything))
        assert ("LOG", 1, 2) in spans and ("CACHE", 6, 8) in spans
        assert {tier for tier, _, _ in spans} == {"LOG", "CACHE"}


async def test_http_history_takes_poll_source(tiered: ServerProcess) -> None:
    async with await switchboard.connect(tiered.url, tiered.key, "tiers", "alice", options=FAST) as alice:
        await publish(alice)
    http = switchboard.HttpClient(tiered.http_url, tiered.key)
    page = await http.history("tiers", poll_source="cache")
    assert (offsets(page), ranges(page)) == ([4, 5, 6, 7, 8], [("CACHE", 4, 8)])
    page = await http.history("tiers", poll_source=PollSource.KAFKA, limit=2)
    assert (offsets(page), ranges(page), page.next) == ([1, 2], [("LOG", 1, 2)], 3)
    page = await http.history("tiers")
    assert ranges(page) == [("LOG", 1, 3), ("CACHE", 4, 8)]


async def test_join_sets_the_default_source_and_a_request_wins(tiered: ServerProcess) -> None:
    proxy = await Proxy.start(tiered.port)
    writer = await switchboard.connect(tiered.url, tiered.key, "tiers", "writer", presence=False, options=FAST)
    reader = await switchboard.connect(
        proxy.url, tiered.key, "tiers", "reader", presence=False, poll_source="kafka", options=FAST
    )
    await publish(writer)

    assert ranges(await reader.receive()) == [("LOG", 1, 8)]
    page = await reader.receive(poll_source="cache")
    assert (offsets(page), ranges(page)) == ([4, 5, 6, 7, 8], [("CACHE", 4, 8)])
    assert ranges(await reader.receive(poll_source="auto")) == [("LOG", 1, 3), ("CACHE", 4, 8)]
    # The writer joined without one: AUTO.
    assert ranges(await writer.receive()) == [("LOG", 1, 3), ("CACHE", 4, 8)]

    # The default is a join parameter, so the rejoin after a dropped connection keeps it.
    proxy.cut()
    await until_reconnected(reader.channel)
    assert reader.client.connections == 2
    assert ranges(await reader.receive()) == [("LOG", 1, 8)]

    # On a client joining several channels, the default is per channel.
    client = await switchboard.Client.connect(tiered.url, tiered.key, FAST)
    cached = await client.join("tiers", "cached", presence=False, poll_source=PollSource.CACHE)
    other = await client.join("other", "cached", presence=False)
    await other.publish("t", 1)
    assert ranges(await cached.history()) == [("CACHE", 4, 8)]
    assert ranges(await other.history()) == [("CACHE", 1, 1)]
    await client.close()
    await reader.close()
    await writer.close()
    await proxy.close()


async def test_database_catches_up_with_the_log(tiered: ServerProcess) -> None:
    async with await switchboard.connect(tiered.url, tiered.key, "tiers", "alice", options=FAST) as alice:
        await publish(alice)
        deadline = time.monotonic() + DATABASE_WAIT
        while True:
            page = await alice.receive(poll_source="database")
            # Whatever it has is a gapless prefix of the log, from the database alone.
            have = len(page.messages)
            assert offsets(page) == list(range(1, have + 1))
            assert all(r.tier == Tier.DATABASE for r in page.sources)
            if have:
                assert ranges(page) == [("DATABASE", 1, have)]
            if have == PUBLISHED:
                break
            assert time.monotonic() < deadline, f"the database still has {have} of {PUBLISHED} messages"
            await asyncio.sleep(0.02)
        assert ranges(page) == [("DATABASE", 1, PUBLISHED)]
        http = switchboard.HttpClient(tiered.http_url, tiered.key)
        page = await http.history("tiers", poll_source="DATABASE", direction="backward", limit=2)
        assert (offsets(page), ranges(page)) == ([8, 7], [("DATABASE", 7, 8)])


async def test_storage_policies_pick_the_tiers(tiered: ServerProcess) -> None:
    http = switchboard.HttpClient(tiered.http_url, tiered.key)
    mem = await http.create_channel("mem", storage="cache", cache={"max_messages": 3})
    assert (mem.storage, mem.retention.get("cache")) == ("cache", {"max_messages": 3})
    logged = await http.create_channel(
        "logged", storage="log", max_messages=100, cache={"max_messages": 2, "ttl_secs": 600}
    )
    assert logged.storage == "log"
    assert logged.retention["max_messages"] == 100
    assert logged.retention.get("cache") == {"max_messages": 2, "ttl_secs": 600}
    assert (await http.get_channel("logged")).retention == logged.retention
    # The log's own retention is for channels with a database behind it.
    with pytest.raises(switchboard.InvalidRequestError) as misfit:
        await http.create_channel("misfit", storage="log", log={"max_age_secs": 3600})
    assert misfit.value.code == ErrorCode.INVALID_PAYLOAD
    kept = await http.create_channel("kept", log={"max_age_secs": 3600})
    assert kept.storage == "persistent" and "cache" not in kept.retention
    assert kept.retention.get("log") == {"max_age_secs": 3600}

    client = await switchboard.Client.connect(tiered.url, tiered.key, FAST)
    in_mem = await client.join("mem", "alice", presence=False)
    in_log = await client.join("logged", "alice", presence=False)
    for channel in (in_mem, in_log):
        for i in range(1, 6):
            assert (await channel.publish("t", i)).offset == i

    # Cache only: the newest 3 are all there is, and there is no log to read.
    page = await in_mem.history()
    assert (offsets(page), ranges(page), page.first_available) == ([3, 4, 5], [("CACHE", 3, 5)], 3)
    for source in ("log", "kafka", "database"):
        with pytest.raises(switchboard.ConflictError) as no_log:
            await in_mem.history(poll_source=source)
        assert no_log.value.code == ErrorCode.NO_HISTORY, source

    # Cache and log: no database.
    with pytest.raises(switchboard.ConflictError) as no_database:
        await in_log.history(poll_source="database")
    assert no_database.value.code == ErrorCode.NO_HISTORY
    with pytest.raises(switchboard.ConflictError) as no_database_http:
        await http.history("logged", poll_source=PollSource.DATABASE)
    assert no_database_http.value.code == ErrorCode.NO_HISTORY
    page = await in_log.history(poll_source="log")
    assert (offsets(page), ranges(page)) == ([1, 2, 3, 4, 5], [("LOG", 1, 5)])
    page = await in_log.history(poll_source="cache")
    assert (offsets(page), ranges(page)) == ([4, 5], [("CACHE", 4, 5)])
    page = await in_log.history()
    assert (offsets(page), ranges(page)) == ([1, 2, 3, 4, 5], [("LOG", 1, 3), ("CACHE", 4, 5)])
    await client.close()


def _raw_http_history(server: ServerProcess, query: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{server.http_url}/v1/channels/tiers/messages?{query}", headers={"authorization": f"Bearer {server.key}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def test_unknown_sources_are_refused(tiered: ServerProcess) -> None:
    async with await switchboard.connect(tiered.url, tiered.key, "tiers", "alice", options=FAST) as alice:
        await alice.send("t", 1)
        # The SDK refuses an unknown name before sending anything, with the server's code.
        for bad in ("tape", "db", "", "cache "):
            with pytest.raises(switchboard.InvalidRequestError) as local:
                await alice.receive(poll_source=bad)
            assert local.value.code == ErrorCode.INVALID_PAYLOAD, bad
        http = switchboard.HttpClient(tiered.http_url, tiered.key)
        with pytest.raises(switchboard.InvalidRequestError) as over_http:
            await http.history("tiers", poll_source="nowhere")
        assert over_http.value.code == ErrorCode.INVALID_PAYLOAD
        with pytest.raises(switchboard.InvalidRequestError) as at_join:
            await alice.client.join("tiers", "bob", poll_source="tape")
        assert at_join.value.code == ErrorCode.INVALID_PAYLOAD
        with pytest.raises(switchboard.InvalidRequestError):
            await switchboard.connect(tiered.url, tiered.key, "tiers", "carol", poll_source="floppy")

        # The server refuses them too (sent past the SDK's check), over the socket and HTTP.
        state = alice.channel._state
        with pytest.raises(switchboard.InvalidRequestError) as on_socket:
            await alice.client.request(state, "history", {"poll_source": "tape"}, retry=False)
        assert on_socket.value.code == ErrorCode.INVALID_PAYLOAD
        status, body = await asyncio.to_thread(_raw_http_history, tiered, "poll_source=tape")
        assert (status, body["code"]) == (400, "invalid_payload")
        # Lower case is the server's too: the SDK's upper-casing is not what makes it work.
        status, body = await asyncio.to_thread(_raw_http_history, tiered, "poll_source=cache")
        assert status == 200 and body["sources"] == [{"tier": "CACHE", "from": 1, "to": 1}]


def test_sync_wrapper_reads_by_source(tiered: ServerProcess) -> None:
    with switchboard.sync.connect(tiered.url, tiered.key, "tiers", "bot", poll_source="cache", options=FAST) as bot:
        for i in range(1, PUBLISHED + 1):
            bot.send("t", i)
        page = bot.receive()
        assert (offsets(page), ranges(page)) == ([4, 5, 6, 7, 8], [("CACHE", 4, 8)])
        page = bot.receive(poll_source="LOG", limit=100)
        assert (offsets(page), ranges(page)) == (list(range(1, PUBLISHED + 1)), [("LOG", 1, 8)])
        with pytest.raises(switchboard.InvalidRequestError):
            bot.receive(poll_source="tape")
