"""Connect, join with every option, publish (JSON, binary, ephemeral, direct), history and
presence, against the real server."""

from __future__ import annotations

from pathlib import Path

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, ServerProcess, next_event, next_message


async def test_agent_send_receive_history_presence(server: ServerProcess) -> None:
    async with await switchboard.connect(
        url=server.url, api_key=server.key, channel_name="lobby", agent_name="alice", options=FAST
    ) as alice, await switchboard.connect(server.url, server.key, "lobby", "bob", options=FAST) as bob:
        assert alice.name == "alice" and alice.join_reply.head == 0 and alice.join_reply.persistent
        ack = await alice.send("chat", {"text": "hi"})
        assert ack.offset == 1 and len(ack.id) == 32 and not ack.duplicate
        messages = bob.messages()
        m = await messages.__anext__()
        assert (m.offset, m.sender, m.type, m.data, m.channel, m.to, m.id) == (1, "alice", "chat", {"text": "hi"}, "lobby", None, ack.id)
        page = await bob.receive(from_offset=1, limit=10)
        assert [x.offset for x in page.messages] == [1] and page.head == 1 and page.next is None
        present = await bob.presence()
        assert present.names() == ["alice", "bob"]
        assert present.agents["alice"][0].agent_name == "alice"


async def test_attachments_travel_in_the_binary_envelope(server: ServerProcess) -> None:
    client = await switchboard.Client.connect(server.url, server.key, FAST)
    a = await client.join("files", "alice")
    reader = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("files", "bob")
    blob = bytes(range(256)) * 40
    ack = await a.publish("file", {"name": "blob"}, attachments=[blob, b""])
    m = await next_message(reader)
    assert m.offset == ack.offset and m.attachments == [blob, b""] and m.data == {"name": "blob"}
    page = await reader.history()
    assert page.messages[0].attachments == [blob, b""]
    await client.close()
    await reader.client.close()


async def test_ephemeral_and_direct_messages(server: ServerProcess) -> None:
    c = await switchboard.Client.connect(server.url, server.key, FAST)
    alice = await c.join("room", "alice")
    bob = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "bob")
    carol = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "carol")
    ack = await alice.publish("cpu", 0.5, ephemeral=True)
    assert ack.offset is None
    m = await next_message(bob)
    assert m.ephemeral and m.offset is None and m.data == 0.5
    assert (await next_message(carol)).type == "cpu"
    dm = await alice.publish("dm", "psst", to="bob")
    m = await next_message(bob)
    assert (m.to, m.offset) == ("bob", dm.offset)
    after = await alice.publish("chat", "all")
    # Carol's next message is the broadcast: the direct message was not hers.
    assert (await next_message(carol)).offset == after.offset
    with pytest.raises(switchboard.NotFoundError) as e:
        await alice.publish("dm", "x", to="nobody", ephemeral=True)
    assert e.value.code == ErrorCode.AGENT_NOT_PRESENT
    assert [m.offset for m in (await carol.history()).messages] == [after.offset]
    for ch in (alice, bob, carol):
        await ch.client.close()


async def test_join_options(server: ServerProcess) -> None:
    writer = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "writer", echo=False)
    for i, kind in enumerate(["chat", "alert", "chat"], start=1):
        assert (await writer.publish(kind, i)).offset == i
    client = await switchboard.Client.connect(server.url, server.key, FAST)
    replay = await client.join("room", "replay", since=1, presence=False, meta={"role": "auditor"})
    assert replay.join_reply.head == 3
    # presence=False: the replayed messages come first and no presence event ever arrives.
    replayed = [await next_event(replay), await next_event(replay)]
    assert [e.offset for e in replayed if isinstance(e, switchboard.Message)] == [2, 3]
    alerts = await (await switchboard.Client.connect(server.url, server.key, FAST)).join(
        "room", "alerts", since=0, event_types=["alert"]
    )
    assert (await next_message(alerts)).offset == 2
    await writer.publish("chat", 4)
    await writer.publish("alert", 5)
    assert (await next_message(alerts)).offset == 5
    assert isinstance(await next_event(replay), switchboard.Message)
    present = await writer.presence()
    assert present.agents["replay"][0].meta == {"role": "auditor"}
    # echo=False: the writer's own messages do not come back; another agent's do.
    await replay.publish("chat", "from replay")
    m = await next_message(writer)
    assert m.sender == "replay"
    for ch in (writer, replay, alerts):
        await ch.client.close()


async def test_session_takeover_kicks_the_old_session(server: ServerProcess) -> None:
    old = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "worker")
    new = await (await switchboard.Client.connect(server.url, server.key, FAST)).join(
        "room", "worker", session_id=old.join_reply.session_id
    )
    assert new.join_reply.agent_name == "worker"
    with pytest.raises(switchboard.RemovedError) as e:
        async for _ in old.messages():
            pass
    assert e.value.code == ErrorCode.SESSION_TAKEN_OVER
    with pytest.raises(switchboard.NotFoundError) as nj:
        await old.publish("chat", "late")
    assert nj.value.code == ErrorCode.NOT_JOINED
    await old.client.close()
    await new.client.close()


async def test_presence_events(server: ServerProcess) -> None:
    alice = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "alice")
    state = await next_event(alice)
    assert isinstance(state, switchboard.PresenceState) and state.names() == ["alice"]
    bob = await (await switchboard.Client.connect(server.url, server.key, FAST)).join("room", "bob", meta={"x": 1})
    seen: set[str] = set()
    while "bob" not in seen:
        diff = await next_event(alice)
        assert isinstance(diff, switchboard.PresenceDiff)
        seen |= set(diff.joins)
    await bob.leave()
    while True:
        diff = await next_event(alice)
        assert isinstance(diff, switchboard.PresenceDiff)
        if "bob" in diff.leaves:
            assert diff.leaves["bob"][0].meta == {"x": 1}
            break
    await alice.client.close()
    await bob.client.close()


async def test_auth_event_instead_of_the_url(server: ServerProcess) -> None:
    options = switchboard.ClientOptions(auth="event")
    async with await switchboard.connect(server.url, server.key, "room", "alice", options=options) as agent:
        assert (await agent.send("chat", 1)).offset == 1
    with pytest.raises(switchboard.AuthenticationError) as e:
        await switchboard.Client.connect(server.url, "sk_wrong", options)
    assert e.value.code == ErrorCode.INVALID_KEY


async def test_errors_carry_stable_codes(server: ServerProcess) -> None:
    with pytest.raises(switchboard.AuthenticationError) as auth:
        await switchboard.connect(server.url, "sk_wrong", "room", "alice")
    assert auth.value.code == ErrorCode.INVALID_KEY

    client = await switchboard.Client.connect(server.url, server.key, FAST)
    room = await client.join("vault", "alice", password="pw")
    cases: list[tuple[type[switchboard.SwitchboardError], ErrorCode, object]] = [
        (switchboard.ConflictError, ErrorCode.ALREADY_JOINED, client.join("vault", "again", password="pw")),
        (switchboard.InvalidRequestError, ErrorCode.INVALID_CHANNEL_NAME, client.join("no spaces", "a")),
        (switchboard.InvalidRequestError, ErrorCode.INVALID_AGENT_NAME, client.join("ok", "no spaces")),
        (switchboard.InvalidRequestError, ErrorCode.INVALID_PAYLOAD, client.join("ok", "a", event_types=["t"] * 65)),
        (switchboard.InvalidRequestError, ErrorCode.MESSAGE_TOO_LARGE, room.publish("big", "x" * (600 << 10))),
        (switchboard.InvalidRequestError, ErrorCode.INVALID_PAYLOAD, room.publish("", 1)),
    ]
    other = await switchboard.Client.connect(server.url, server.key, FAST)
    cases += [
        (switchboard.PermissionDeniedError, ErrorCode.BAD_PASSWORD, other.join("vault", "bob", password="nope")),
        (switchboard.ConflictError, ErrorCode.AGENT_NAME_TAKEN, other.join("vault", "alice", password="pw")),
    ]
    for cls, code, call in cases:
        with pytest.raises(cls) as e:
            await call  # type: ignore[misc]
        assert e.value.code == code
    # The connection survives every refusal above.
    assert (await room.publish("chat", "still here")).offset == 1
    await room.leave()
    with pytest.raises(switchboard.NotFoundError) as nj:
        await room.publish("chat", "gone")
    assert nj.value.code == ErrorCode.NOT_JOINED
    await client.close()
    with pytest.raises(switchboard.ClosedError):
        await client.join("room", "alice")
    await other.close()


async def test_a_frame_over_the_local_limit_is_refused_before_sending(server: ServerProcess) -> None:
    options = switchboard.ClientOptions(max_frame_bytes=2048)
    async with await switchboard.connect(server.url, server.key, "room", "alice", options=options) as agent:
        with pytest.raises(switchboard.InvalidRequestError) as e:
            await agent.send("big", "x" * 4096)
        assert e.value.code == ErrorCode.FRAME_TOO_LARGE
        assert (await agent.send("small", "ok")).offset == 1


async def test_a_frame_over_the_server_limit_closes_for_good(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"SWITCHBOARD_LIMITS_MAX_FRAME_BYTES": "4096"}).start()
    try:
        agent = await switchboard.connect(server.url, server.key, "room", "alice", options=FAST)
        with pytest.raises(switchboard.InvalidRequestError) as e:
            await agent.send("big", "x" * 8000)
        assert e.value.code == ErrorCode.FRAME_TOO_LARGE
        reason = await agent.client.wait_closed()
        assert reason.code == ErrorCode.FRAME_TOO_LARGE
        with pytest.raises(switchboard.InvalidRequestError):
            async for _ in agent.messages():
                pass
    finally:
        server.kill()
