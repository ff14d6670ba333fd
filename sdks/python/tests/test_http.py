"""The HTTP API client against the real server."""

from __future__ import annotations

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, ServerProcess, next_message


async def test_publish_history_presence_over_http(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    assert await http.health() == {"status": "ok"}
    agent = await switchboard.connect(server.url, server.key, "ops", "bob", options=FAST)
    ack = await http.publish("ops", "deploy", {"version": "1.2"}, sender="ci", attachments=[b"\x01\x02"])
    assert ack.offset == 1
    m = await next_message(agent.channel)
    assert (m.sender, m.type, m.data, m.attachments) == ("ci", "deploy", {"version": "1.2"}, [b"\x01\x02"])
    await http.publish("ops", "note", "to bob", to="bob")
    page = await http.history("ops", direction="backward", limit=1)
    assert [x.offset for x in page.messages] == [2] and page.next == 1
    assert (await http.presence("ops")).names() == ["bob"]
    again = await http.publish("ops", "deploy", 1, id="fixed")
    assert (await http.publish("ops", "deploy", 1, id="fixed")).duplicate
    assert again.offset == 3
    await agent.close()


async def test_channel_management(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.http_url, lambda: server.key)
    info = await http.create_channel("scratch", storage="ephemeral", password="pw", max_messages=10)
    assert (info.name, info.storage, info.has_password, info.head) == ("scratch", "ephemeral", True, 0)
    with pytest.raises(switchboard.ConflictError) as exists:
        await http.create_channel("scratch")
    assert exists.value.code == ErrorCode.CHANNEL_EXISTS
    assert (await http.get_channel("scratch")).agents == 0
    agent = await switchboard.connect(server.url, server.key, "scratch", "alice", channel_password="pw", options=FAST)
    assert not agent.join_reply.persistent
    with pytest.raises(switchboard.ConflictError) as no_history:
        await agent.receive()
    assert no_history.value.code == ErrorCode.NO_HISTORY
    await http.delete_channel("scratch")
    with pytest.raises(switchboard.RemovedError) as kicked:
        async for _ in agent.messages():
            pass
    assert kicked.value.code == ErrorCode.CHANNEL_DELETED
    with pytest.raises(switchboard.NotFoundError) as missing:
        await http.get_channel("scratch")
    assert missing.value.code == ErrorCode.CHANNEL_NOT_FOUND
    await agent.client.close()


async def test_http_errors(server: ServerProcess) -> None:
    with pytest.raises(switchboard.AuthenticationError) as bad:
        await switchboard.HttpClient(server.url, "sk_wrong").history("room")
    assert bad.value.code == ErrorCode.INVALID_KEY
    http = switchboard.HttpClient(server.url, server.key)
    with pytest.raises(switchboard.InvalidRequestError) as invalid:
        await http.publish("bad name", "t")
    assert invalid.value.code == ErrorCode.INVALID_CHANNEL_NAME
    server.kill()
    with pytest.raises(switchboard.ConnectionFailedError):
        await http.health()
