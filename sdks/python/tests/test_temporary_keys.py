"""Temporary keys: minted over HTTP, refreshed in place on ``key_expiring`` when the key source is
a callable, and refreshed once on reconnect after the server closed for an expired key."""

from __future__ import annotations

import asyncio
import time

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, ServerProcess, next_event, next_message, until_reconnected

CHAT: list[switchboard.Capability] = ["subscribe", "publish"]


async def outlive(expires_at: int) -> None:
    """Waits until the wall clock is past ``expires_at`` (ms), plus a margin: the key's expiry
    is the event under test, and nothing announces that it passed."""
    await asyncio.sleep(max(0.0, expires_at / 1000 - time.time()) + 0.3)


async def test_a_minted_key_is_held_to_its_grant_and_revocable(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    minted = await http.mint_temporary_key(600, CHAT, channels=["lobby"], agent_names=["web-1"])
    assert minted.key.startswith("tk_")
    assert minted.expires_at > time.time() * 1000 + 590_000
    client = await switchboard.Client.connect(server.url, minted.key, FAST)
    lobby = await client.join("lobby", "web-1")
    ack = await lobby.publish("chat", "hi")
    assert (await next_message(lobby)).offset == ack.offset
    with pytest.raises(switchboard.PermissionDeniedError) as e:
        await client.join("kitchen", "web-1")
    assert e.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(switchboard.PermissionDeniedError):
        await switchboard.HttpClient(server.url, minted.key).mint_temporary_key(60, CHAT)

    await http.revoke_key(minted.id)
    while True:
        event = await next_event(lobby)
        if isinstance(event, switchboard.Kicked):
            assert event.error.code == ErrorCode.KEY_REVOKED
            break
    await client.close()


async def test_a_temporary_key_is_refreshed_in_place(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    first = await http.mint_temporary_key(2, CHAT)
    calls = 0

    async def key() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first.key
        return (await http.mint_temporary_key(600, CHAT)).key

    client = await switchboard.Client.connect(server.url, key, FAST)
    clock = await client.join("clock", "a")
    await clock.publish("chat", "before")
    await outlive(first.expires_at)
    assert (await clock.publish("chat", "after")).offset == 2
    assert calls == 2, "the first key, then one refresh on key_expiring"
    assert client.connections == 1, "the socket was never replaced"
    assert client.is_connected
    # Only the two messages and presence came: no reconnect notice, no kick.
    seen = 0
    while seen < 2:
        event = await next_event(clock)
        if isinstance(event, switchboard.Message):
            seen += 1
        else:
            assert isinstance(event, (switchboard.PresenceState, switchboard.PresenceDiff)), event
    await client.close()


async def test_an_expired_key_is_refreshed_once_on_reconnect(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    first = await http.mint_temporary_key(2, CHAT)
    calls = 0

    async def key() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first.key
        if calls == 2:
            raise RuntimeError("the backend is down")  # the refresh on key_expiring fails
        return (await http.mint_temporary_key(600, CHAT)).key

    client = await switchboard.Client.connect(server.url, key, FAST)
    clock = await client.join("clock", "a")
    await clock.publish("chat", 1)
    # The key expires (4504); the client asks once more and resumes.
    assert [m.data for m in await until_reconnected(clock)] == [1]
    assert (calls, client.connections) == (3, 2)
    assert (await clock.publish("chat", 2)).offset == 2
    await client.close()


async def test_a_fixed_temporary_key_lapses(server: ServerProcess) -> None:
    short = await switchboard.HttpClient(server.url, server.key).mint_temporary_key(1, CHAT)
    client = await switchboard.Client.connect(server.url, short.key, FAST)
    clock = await client.join("clock", "a")
    while True:
        event = await next_event(clock)
        if isinstance(event, switchboard.Kicked):
            assert event.error.code == ErrorCode.KEY_EXPIRED
            break
    assert client.closed
