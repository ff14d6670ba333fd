"""Discovery against the real server: announce and update_metadata, discover by capability,
metadata (equality, numeric ranges, dotted paths) and online status, the directory changes on
``sys.discovery``, the HTTP routes, the synchronous wrapper, and the refusals."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import switchboard
from switchboard import AgentCard, AgentUpdate, ErrorCode
from switchboard.channel import discover_query

from harness import FAST, WAIT, Proxy, ServerProcess


def names(cards: list[AgentCard]) -> list[str]:
    return [c.name for c in cards]


async def next_update(watcher: switchboard.AgentWatcher) -> AgentUpdate:
    """The next directory change, failing the test after `WAIT`."""
    return await asyncio.wait_for(watcher.next_update(), WAIT)


async def until(watcher: switchboard.AgentWatcher, change: str, name: str) -> AgentUpdate:
    """Waits for the change `change` of agent `name`, skipping the others."""

    async def wait() -> AgentUpdate:
        async for update in watcher:
            if (update.change, update.agent.name) == (change, name):
                return update
        raise AssertionError("the watcher ended")

    return await asyncio.wait_for(wait(), WAIT)


async def join(server: ServerProcess, name: str, channel: str = "work") -> switchboard.Agent:
    return await switchboard.connect(server.url, server.key, channel, name, presence=False, options=FAST)


async def test_agents_are_discovered_by_capability_metadata_and_online_status(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    watching = await switchboard.Client.connect(server.url, server.key, FAST)
    watcher = await watching.watch_agents()
    alice, bob = await join(server, "alice"), await join(server, "bob")

    metadata: dict[str, Any] = {"status": "idle", "price": 5, "stats": {"reputation": 4.8}}
    card = await alice.announce(["translate", "summarize"], metadata)
    assert card == AgentCard("alice", ["translate", "summarize"], metadata, True, card.updated_at)
    assert card.updated_at > 0
    await bob.announce(["translate"], {"status": "busy", "price": 12})
    # A backend announces an agent that is not connected.
    carol = await http.announce_agent("carol", ["draw"], {"price": 1})
    assert (carol.name, carol.capabilities, carol.online) == ("carol", ["draw"], False)

    assert names(await alice.discover()) == ["alice", "bob", "carol"]
    assert names(await alice.discover("translate")) == ["alice", "bob"]
    assert names(await alice.discover("draw")) == ["carol"]
    assert await alice.discover("fly") == []
    # Equality, numeric ranges (either bound, inclusive), dotted paths, several conditions.
    assert names(await bob.discover(filters={"status": "busy"})) == ["bob"]
    assert names(await bob.discover("translate", filters={"price": {"max": 10}})) == ["alice"]
    assert names(await bob.discover(filters={"price": {"min": 5}})) == ["alice", "bob"]
    assert names(await bob.discover(filters={"price": {"min": 2, "max": 5}})) == ["alice"]
    assert names(await bob.discover(filters={"stats.reputation": {"min": 4.5}})) == ["alice"]
    assert names(await bob.discover(filters={"stats.reputation": 4.8})) == ["alice"]
    assert names(await bob.discover("translate", filters={"status": "idle", "price": {"max": 5}})) == ["alice"]
    assert await bob.discover(filters={"missing": 1}) == []
    assert await bob.discover(filters={"status": {"min": 1}}) == [], "a string never satisfies a range"
    # Online status and limit.
    assert names(await alice.discover(online=True)) == ["alice", "bob"]
    assert names(await alice.discover(online=False)) == ["carol"]
    assert names(await alice.discover(limit=2)) == ["alice", "bob"]
    assert (await alice.discover("translate", online=True, limit=1))[0] == card

    updated = await bob.update_metadata({"status": "idle", "price": 8})
    assert (updated.capabilities, updated.metadata, updated.online) == (["translate"], {"status": "idle", "price": 8}, True)
    assert names(await alice.discover("translate", filters={"price": {"max": 10}})) == ["alice", "bob"]

    # Leaving its last channel makes an agent offline; its card stays.
    await bob.close()
    offline = await until(watcher, "offline", "bob")
    assert offline.agent == AgentCard("bob", ["translate"], {"status": "idle", "price": 8}, False, updated.updated_at)
    assert names(await alice.discover(online=True)) == ["alice"]
    assert names(await alice.discover(online=False)) == ["bob", "carol"]
    assert await http.agent("bob") == offline.agent

    await alice.close()
    await watching.close()


async def test_the_discovery_channel_carries_every_change(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    watching = await switchboard.Client.connect(server.url, server.key, FAST)
    watcher = await watching.watch_agents("observer")
    assert (watcher.channel.name, watcher.channel.agent_name) == (switchboard.DISCOVERY_CHANNEL, "observer")
    # Joining without a card makes no change.
    alice = await join(server, "alice")

    card = await alice.announce(["translate"], {"status": "idle"})
    assert await next_update(watcher) == AgentUpdate("announced", card)

    busy = await alice.update_metadata({"status": "busy"})
    update = await next_update(watcher)
    assert update == AgentUpdate("updated", busy) and update.agent.metadata == {"status": "busy"}

    await alice.channel.leave()
    update = await next_update(watcher)
    assert (update.change, update.agent.name, update.agent.online) == ("offline", "alice", False)

    lobby = await alice.client.join("lobby", "alice", presence=False)
    update = await next_update(watcher)
    assert (update.change, update.agent.name, update.agent.online) == ("online", "alice", True)

    # Agents in sys. channels are watchers: announced, the observer is not online.
    observer = await http.announce_agent("observer", ["watch"])
    assert not observer.online
    assert await next_update(watcher) == AgentUpdate("announced", observer)

    await http.remove_agent("alice")
    update = await next_update(watcher)
    assert (update.change, update.agent.name, update.agent.metadata) == ("removed", "alice", {"status": "busy"})

    # The raw messages: ephemeral, of type `agent`, from `switchboard`.
    message = switchboard.Message("x", None, "sys.discovery", "switchboard", None, "agent", {"change": "removed", "agent": {
        "name": "a", "capabilities": [], "metadata": {}, "online": False, "updated_at": 1}}, 1, True)
    assert AgentUpdate.from_message(message) == AgentUpdate("removed", AgentCard("a", [], {}, False, 1))
    assert watcher.reconnects == 0

    # Only the server publishes in sys. channels.
    with pytest.raises(switchboard.PermissionDeniedError) as denied:
        await watcher.channel.publish("agent", {})
    assert denied.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(switchboard.PermissionDeniedError) as over_http:
        await http.publish(switchboard.DISCOVERY_CHANNEL, "agent", {}, sender="switchboard")
    assert over_http.value.code == ErrorCode.FORBIDDEN

    # Closing the watcher ends its iteration; the connection stays.
    await watcher.close()
    assert [u async for u in watcher] == []
    with pytest.raises(switchboard.ClosedError):
        await watcher.next_update()
    again = await watching.watch_agents("observer")
    await http.remove_agent("observer")
    assert (await next_update(again)).change == "removed"

    await lobby.leave()
    await alice.client.close()
    await watching.close()


async def test_a_watcher_rejoins_after_a_reconnect(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    proxy = await Proxy.start(server.port)
    try:
        watching = await switchboard.Client.connect(proxy.url, server.key, FAST)
        watcher = await watching.watch_agents()
        await http.announce_agent("before", ["x"])
        assert (await next_update(watcher)).agent.name == "before"
        proxy.cut()
        # A join through the same client completes after the reconnect, which rejoins the
        # discovery channel first.
        probe = await watching.join("probe", "prober", presence=False)
        await http.announce_agent("after", ["x"])
        update = await next_update(watcher)
        assert (update.change, update.agent.name) == ("announced", "after")
        assert watcher.reconnects == 1
        await probe.leave()
        await watching.close()
    finally:
        await proxy.close()


async def test_agents_over_http(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    card = await http.announce_agent("scribe", ["summarize", "translate"], {"lang": "en", "cost": {"per_page": 2}})
    assert card == AgentCard("scribe", ["summarize", "translate"], {"lang": "en", "cost": {"per_page": 2}}, False, card.updated_at)
    assert await http.agent("scribe") == card
    assert names(await http.discover("summarize")) == ["scribe"]
    assert names(await http.discover(filters={"cost.per_page": {"max": 2}}, online=False)) == ["scribe"]
    assert await http.discover(filters={"lang": "fr"}) == []

    # Announcing again replaces the card: capabilities and metadata.
    again = await http.announce_agent("scribe", ["summarize"])
    assert (again.capabilities, again.metadata) == (["summarize"], {})
    assert await http.discover("translate") == []

    # Cards are persisted.
    server.restart()
    http = switchboard.HttpClient(server.url, server.key)
    assert await http.agent("scribe") == again

    # The card is online while an agent of that name is in one of the tenant's channels.
    scribe = await join(server, "scribe", "desk")
    assert (await http.agent("scribe")).online
    assert names(await http.discover(online=True)) == ["scribe"]
    await scribe.close()

    await http.remove_agent("scribe")
    for missing in (http.agent("scribe"), http.remove_agent("scribe")):
        with pytest.raises(switchboard.NotFoundError) as not_found:
            await missing
        assert not_found.value.code == ErrorCode.NOT_FOUND
    assert await http.discover() == []

    with pytest.raises(switchboard.InvalidRequestError) as bad_name:
        await http.agent("not a name")
    assert bad_name.value.code == ErrorCode.INVALID_AGENT_NAME
    with pytest.raises(switchboard.InvalidRequestError) as bad_announce:
        await http.announce_agent("scribe", ["x"] * 33)
    assert bad_announce.value.code == ErrorCode.INVALID_PAYLOAD
    with pytest.raises(switchboard.InvalidRequestError) as bad_query:
        await http.discover(limit=0)
    assert bad_query.value.code == ErrorCode.INVALID_PAYLOAD


async def test_update_agent_metadata_over_http(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    card = await http.announce_agent("scribe", ["summarize"], {"lang": "en"})
    updated = await http.update_agent_metadata("scribe", {"lang": "fr"})
    assert (updated.name, updated.capabilities, updated.metadata) == ("scribe", ["summarize"], {"lang": "fr"})
    assert updated.updated_at >= card.updated_at
    assert names(await http.discover(filters={"lang": "fr"})) == ["scribe"]
    with pytest.raises(switchboard.NotFoundError) as never:
        await http.update_agent_metadata("nobody", {})
    assert never.value.code == ErrorCode.NOT_FOUND


async def test_refusals_have_stable_codes(server: ServerProcess) -> None:
    alice = await join(server, "alice")
    with pytest.raises(switchboard.NotFoundError) as never:
        await alice.update_metadata({"status": "idle"})
    assert never.value.code == ErrorCode.NOT_FOUND

    refused = [
        alice.announce([f"c{i}" for i in range(33)]),  # at most 32 capabilities
        alice.announce([""]),  # 1-64 bytes each
        alice.announce(["x" * 65]),
        alice.announce(["tab\there"]),  # no control characters
        alice.announce(["ok"], {"blob": "x" * 5000}),  # metadata at most 4 KiB
        alice.discover(limit=0),  # limit 1-1000
        alice.discover(limit=1001),
        alice.discover(filters={f"f{i}": i for i in range(17)}),  # at most 16 filters
    ]
    for call in refused:
        with pytest.raises(switchboard.InvalidRequestError) as invalid:
            await call
        assert invalid.value.code == ErrorCode.INVALID_PAYLOAD, invalid.value
    # Refused before sending: a lone string is not a list of capabilities.
    with pytest.raises(switchboard.InvalidRequestError) as lone:
        await alice.announce("translate")
    assert lone.value.code == ErrorCode.INVALID_PAYLOAD
    # After a refused announce the agent still has no card.
    with pytest.raises(switchboard.NotFoundError):
        await alice.update_metadata({"status": "idle"})

    # Publishing in the discovery channel is the server's alone.
    sys_channel = await alice.client.join(switchboard.DISCOVERY_CHANNEL, "alice", presence=False)
    with pytest.raises(switchboard.PermissionDeniedError) as forbidden:
        await sys_channel.publish("agent", {"change": "announced"}, ephemeral=True)
    assert forbidden.value.code == ErrorCode.FORBIDDEN

    # The connection survives every refusal.
    card = await alice.announce(["x" * 64] * 32, {"blob": "x" * 3000})
    assert len(card.capabilities) == 32 and card.online
    assert names(await alice.discover(limit=1000)) == ["alice"]
    await alice.close()


async def test_temporary_keys_need_presence_on_the_discovery_channel(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    await http.announce_agent("scribe", ["summarize"])
    narrow = await http.mint_temporary_key(60, ["subscribe", "presence"], channels=["work"])
    agent = await switchboard.connect(server.url, narrow.key, "work", "alice", presence=False, options=FAST)
    with pytest.raises(switchboard.PermissionDeniedError) as denied:
        await agent.discover()
    assert denied.value.code == ErrorCode.FORBIDDEN
    await agent.close()

    wide = await http.mint_temporary_key(60, ["subscribe", "presence"], channels=["work", "sys.discovery"])
    agent = await switchboard.connect(server.url, wide.key, "work", "alice", presence=False, options=FAST)
    assert names(await agent.discover("summarize")) == ["scribe"]
    assert names(await switchboard.HttpClient(server.url, wide.key).discover()) == ["scribe"]
    watcher = await agent.watch_agents()
    await http.remove_agent("scribe")
    assert (await next_update(watcher)).change == "removed"
    await agent.close()


def test_sync_discovery(server: ServerProcess) -> None:
    with switchboard.sync.connect(server.url, server.key, "work", "alice", presence=False, options=FAST) as alice:
        with alice.watch_agents() as watcher:
            card = alice.announce(["translate"], {"price": 3})
            assert card.online and card.metadata == {"price": 3}
            update = watcher.next_update(timeout=WAIT)
            assert update == AgentUpdate("announced", card)
            assert alice.update_metadata({"price": 4}).metadata == {"price": 4}
            update = next(iter(watcher))
            assert (update.change, update.agent.metadata) == ("updated", {"price": 4})
            assert names(alice.discover("translate", filters={"price": {"min": 4}}, online=True)) == ["alice"]
            assert alice.discover(limit=1, online=False) == []
        assert list(watcher) == [], "a closed watcher yields nothing"


def test_wire_shapes() -> None:
    card = {"name": "a", "capabilities": ["x"], "metadata": {"k": 1}, "online": True, "updated_at": 5}
    assert AgentUpdate.from_wire({"change": "online", "agent": card}) == AgentUpdate("online", AgentCard("a", ["x"], {"k": 1}, True, 5))
    for bad in (
        {"change": "moved", "agent": card},
        {"change": "online"},
        {"change": "online", "agent": {**card, "capabilities": [1]}},
        {"change": "online", "agent": {**card, "online": "yes"}},
    ):
        with pytest.raises(switchboard.ProtocolError):
            AgentUpdate.from_wire(bad)
    chat = switchboard.Message("x", None, "sys.discovery", "mallory", None, "agent", {}, 1, True)
    assert AgentUpdate.from_message(chat) is None
    assert discover_query(None, None, None, None) == {}
    assert discover_query("x", {"a.b": {"min": 1}}, False, 5) == {
        "capability": "x",
        "filters": {"a.b": {"min": 1}},
        "online": False,
        "limit": 5,
    }
