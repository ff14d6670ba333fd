"""Durable inboxes against the real server: delivery while the recipient is away, ack and
reject, receipts, redelivery after a disconnect and a reconnect, dead letters, ``inbox_full``,
and the HTTP consumer."""

from __future__ import annotations

from pathlib import Path

import pytest

import switchboard
from switchboard import ErrorCode, InboxMessage, Receipt

from harness import FAST, Proxy, ServerProcess, next_event, next_message


async def next_inbox(channel: switchboard.Channel) -> InboxMessage:
    """The next inbox message; a plain message instead fails the test."""
    while True:
        event = await next_event(channel)
        if isinstance(event, InboxMessage):
            return event
        assert not isinstance(event, (switchboard.Message, switchboard.Kicked)), event


async def next_receipt(channel: switchboard.Channel) -> Receipt:
    """The next receipt, skipping every other event."""
    while True:
        event = await next_event(channel)
        if isinstance(event, Receipt):
            return event
        assert not isinstance(event, switchboard.Kicked), event


async def consumer(server: ServerProcess, name: str, url: str | None = None) -> switchboard.Agent:
    return await switchboard.connect(url or server.url, server.key, "work", name, inbox=True, presence=False, options=FAST)


async def sender(server: ServerProcess) -> switchboard.Agent:
    return await switchboard.connect(server.url, server.key, "work", "alice", presence=False, echo=False, options=FAST)


async def test_a_message_to_an_absent_agent_waits_in_its_inbox(server: ServerProcess) -> None:
    alice = await sender(server)
    first = await alice.send("task", {"n": 1}, to="bob", receipt=True)
    second = await alice.send("task", {"n": 2}, to="bob")

    bob = await consumer(server, "bob")
    m1, m2 = await next_inbox(bob.channel), await next_inbox(bob.channel)
    assert (m1.delivery_count, m1.id, m1.message.data, m1.message.to, m1.message.sender) == (
        1,
        first.id,
        {"n": 1},
        "bob",
        "alice",
    )
    assert (m1.message.offset, m2.message.offset) == (first.offset, second.offset)
    assert (m2.delivery_count, m2.message.data) == (1, {"n": 2})

    assert await next_receipt(alice.channel) == Receipt(first.id, "bob", "delivered", 1)
    await bob.ack(m1.id)
    await bob.ack(m2.id)
    # Only the publish that asked for receipts gets them.
    assert await next_receipt(alice.channel) == Receipt(first.id, "bob", "acknowledged", 1)

    # Live direct messages to a consumer come through the inbox too; broadcasts as messages.
    live = await alice.send("task", {"n": 3}, to="bob")
    m3 = await next_inbox(bob.channel)
    assert (m3.id, m3.delivery_count) == (live.id, 1)
    await bob.ack(m3.id)
    await alice.send("note", "to everyone")
    assert (await next_message(bob.channel)).type == "note"

    # Acknowledged messages never come back; acknowledging again finds nothing.
    with pytest.raises(switchboard.NotFoundError) as again:
        await bob.ack(m1.id)
    assert again.value.code == ErrorCode.NOT_FOUND
    await bob.close()
    await alice.close()


async def test_inbox_iterator_and_a_present_agent_without_inbox(server: ServerProcess) -> None:
    alice = await sender(server)
    plain = await switchboard.connect(server.url, server.key, "work", "carol", presence=False, options=FAST)
    # Present without consuming its inbox: the direct message arrives live, as a message.
    sent = await alice.send("task", "live", to="carol")
    m = await next_message(plain.channel)
    assert (m.id, m.to) == (sent.id, "carol")
    await plain.close()

    for n in range(3):
        await alice.send("task", n, to="dave")
    dave = await consumer(server, "dave")
    seen = []
    async for item in dave.inbox():
        seen.append(item.message.data)
        await dave.ack(item.id)
        if len(seen) == 3:
            break
    assert seen == [0, 1, 2]
    await dave.close()
    await alice.close()


async def test_reject_without_requeue_makes_a_dead_letter(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    alice = await sender(server)
    bob = await consumer(server, "bob")
    sent = await alice.send("task", {"text": 42}, to="bob", receipt=True)
    m = await next_inbox(bob.channel)
    await bob.reject(m.id, "malformed: text is not a string", requeue=False)

    assert await next_receipt(alice.channel) == Receipt(sent.id, "bob", "delivered", 1)
    dead = await next_receipt(alice.channel)
    assert (dead.status, dead.reason) == ("dead_lettered", "malformed: text is not a string")

    page = await http.dead_letters("work")
    assert len(page.entries) == 1 and page.next is None
    letter = page.entries[0]
    assert (letter.message.id, letter.message.data, letter.recipient, letter.delivery_count, letter.reason) == (
        sent.id,
        {"text": 42},
        "bob",
        1,
        "malformed: text is not a string",
    )
    assert letter.dead_at > 0
    # A dead letter is no longer pending.
    with pytest.raises(switchboard.NotFoundError):
        await bob.ack(m.id)

    await http.delete_dead_letter("work", sent.id)
    assert (await http.dead_letters("work")).entries == []
    with pytest.raises(switchboard.NotFoundError) as missing:
        await http.delete_dead_letter("work", sent.id)
    assert missing.value.code == ErrorCode.NOT_FOUND
    await bob.close()
    await alice.close()


async def test_a_requeued_rejection_comes_back(server: ServerProcess) -> None:
    alice = await sender(server)
    bob = await consumer(server, "bob")
    sent = await alice.send("task", {"n": 1}, to="bob", receipt=True)
    m = await next_inbox(bob.channel)
    await bob.reject(m.id, "busy")
    again = await next_inbox(bob.channel)
    assert (again.id, again.delivery_count, again.message.data) == (sent.id, 2, {"n": 1})
    await bob.ack(again.id)

    statuses = [await next_receipt(alice.channel) for _ in range(3)]
    assert statuses == [
        Receipt(sent.id, "bob", "delivered", 1),
        Receipt(sent.id, "bob", "rejected", 1, "busy"),
        Receipt(sent.id, "bob", "acknowledged", 2),
    ]
    await bob.close()
    await alice.close()


async def test_refusals_have_stable_codes(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, {"SWITCHBOARD_INBOX_MAX_MESSAGES_PER_AGENT": "1"}).start()
    try:
        alice = await sender(server)
        bob = await consumer(server, "bob")
        for call in (bob.ack("no-such-id"), bob.reject("no-such-id", "why")):
            with pytest.raises(switchboard.NotFoundError) as unknown:
                await call
            assert unknown.value.code == ErrorCode.NOT_FOUND
        with pytest.raises(switchboard.InvalidRequestError) as long:
            await bob.reject("any", "x" * 1025)
        assert long.value.code == ErrorCode.INVALID_PAYLOAD
        # Receipts are for persisted direct messages (refused before sending).
        for refused in (
            alice.send("task", 1, receipt=True),
            alice.send("task", 1, to="bob", ephemeral=True, receipt=True),
            switchboard.HttpClient(server.url, server.key).publish("work", "task", 1, receipt=True),
        ):
            with pytest.raises(switchboard.InvalidRequestError) as no_receipt:
                await refused
            assert no_receipt.value.code == ErrorCode.INVALID_PAYLOAD

        # The inbox of an absent agent holds at most max_messages_per_agent unsettled messages.
        await alice.send("task", 1, to="erin")
        with pytest.raises(switchboard.RateLimitedError) as full:
            await alice.send("task", 2, to="erin")
        assert full.value.code == ErrorCode.INBOX_FULL
        await alice.send("task", 1, to="frank")  # other inboxes are not affected
        # The connection survives every refusal.
        await alice.send("task", 3, to="bob")
        assert (await next_inbox(bob.channel)).message.data == 3
        await bob.close()
        await alice.close()
    finally:
        server.kill()


async def test_a_consumer_that_disconnects_releases_its_messages(server: ServerProcess) -> None:
    alice = await sender(server)
    sent = await alice.send("task", {"n": 1}, to="bob")
    bob = await consumer(server, "bob")
    m = await next_inbox(bob.channel)
    assert m.delivery_count == 1
    await bob.close()  # without acknowledging
    # The visibility timeout is 30 s: the message comes back sooner only because it was released.
    bob = await consumer(server, "bob")
    again = await next_inbox(bob.channel)
    assert (again.id, again.delivery_count) == (sent.id, 2)
    await bob.ack(again.id)
    await bob.close()
    await alice.close()


async def test_a_reconnect_rejoins_the_inbox(tmp_path: Path) -> None:
    # A short visibility timeout: whether the server notices the cut before the rejoin or not,
    # the message comes back to the rejoined consumer within the test's wait.
    server = ServerProcess(tmp_path, {"SWITCHBOARD_INBOX_VISIBILITY_TIMEOUT_MS": "2000"}).start()
    proxy = await Proxy.start(server.port)
    try:
        alice = await sender(server)
        bob = await consumer(server, "bob", proxy.url)
        sent = await alice.send("task", {"n": 1}, to="bob")
        assert (await next_inbox(bob.channel)).delivery_count == 1
        proxy.cut()
        while not isinstance(event := await next_event(bob.channel), switchboard.Reconnected):
            assert not isinstance(event, InboxMessage), "no redelivery before the rejoin"
        again = await next_inbox(bob.channel)
        assert (again.id, again.delivery_count) == (sent.id, 2)
        await bob.ack(again.id)
        # Still consuming: a new direct message arrives through the inbox.
        await alice.send("task", {"n": 2}, to="bob")
        assert (await next_inbox(bob.channel)).message.data == {"n": 2}
        await bob.close()
        await alice.close()
    finally:
        await proxy.close()
        server.kill()


async def test_backends_consume_an_inbox_over_http(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    alice = await sender(server)
    one = await alice.send("task", 1, to="backend", receipt=True)
    two = await alice.send("task", 2, to="backend")
    three = await alice.send("task", 3, to="backend")

    got = await http.inbox_receive("work", "backend", max=2, visibility_timeout_ms=60_000)
    assert [(m.id, m.delivery_count, m.message.data) for m in got] == [(one.id, 1, 1), (two.id, 1, 2)]
    rest = await http.inbox_receive("work", "backend")
    assert [m.id for m in rest] == [three.id], "leased messages are invisible"
    assert await http.inbox_receive("work", "backend") == []

    await http.inbox_ack("work", "backend", one.id)
    assert await next_receipt(alice.channel) == Receipt(one.id, "backend", "delivered", 1)
    assert await next_receipt(alice.channel) == Receipt(one.id, "backend", "acknowledged", 1)
    with pytest.raises(switchboard.NotFoundError) as acked:
        await http.inbox_ack("work", "backend", one.id)
    assert acked.value.code == ErrorCode.NOT_FOUND

    await http.inbox_reject("work", "backend", two.id, "try later")
    again = await http.inbox_receive("work", "backend")
    assert [(m.id, m.delivery_count) for m in again] == [(two.id, 2)]
    await http.inbox_ack("work", "backend", two.id)
    await http.inbox_reject("work", "backend", three.id, "unsupported", requeue=False)

    await alice.send("task", 4, to="other")
    other = await http.inbox_receive("work", "other")
    await http.inbox_reject("work", "other", other[0].id, requeue=False)
    page = await http.dead_letters("work", limit=1)
    assert [(d.message.id, d.recipient, d.reason) for d in page.entries] == [(three.id, "backend", "unsupported")]
    assert page.next is not None
    last = await http.dead_letters("work", limit=1, after=page.next)
    assert [(d.recipient, d.reason) for d in last.entries] == [("other", "rejected")] and last.next is None
    only = await http.dead_letters("work", recipient="other")
    assert [d.message.id for d in only.entries] == [other[0].id]

    with pytest.raises(switchboard.InvalidRequestError) as too_many:
        await http.inbox_receive("work", "backend", max=1000)
    assert too_many.value.code == ErrorCode.INVALID_PAYLOAD
    with pytest.raises(switchboard.InvalidRequestError) as bad_name:
        await http.inbox_receive("work", "not a name")
    assert bad_name.value.code == ErrorCode.INVALID_AGENT_NAME

    # An HTTP publish with receipts reports to the agent it names as the sender.
    sent = await http.publish("work", "task", 5, to="bob", sender="alice", receipt=True)
    bob = await consumer(server, "bob")
    await bob.ack((await next_inbox(bob.channel)).id)
    assert await next_receipt(alice.channel) == Receipt(sent.id, "bob", "delivered", 1)
    assert await next_receipt(alice.channel) == Receipt(sent.id, "bob", "acknowledged", 1)
    await bob.close()
    await alice.close()


async def test_temporary_keys_need_the_inbox_capability(server: ServerProcess) -> None:
    http = switchboard.HttpClient(server.url, server.key)
    alice = await sender(server)
    await alice.send("task", 1, to="bob")
    without = await http.mint_temporary_key(60, ["subscribe"])
    with pytest.raises(switchboard.PermissionDeniedError) as denied:
        await switchboard.connect(server.url, without.key, "work", "bob", inbox=True, options=FAST)
    assert denied.value.code == ErrorCode.FORBIDDEN
    granted = await http.mint_temporary_key(60, ["subscribe", "inbox"])
    bob = await switchboard.connect(server.url, granted.key, "work", "bob", inbox=True, presence=False, options=FAST)
    item = await next_inbox(bob.channel)
    await bob.ack(item.id)
    assert item.message.data == 1
    await bob.close()
    await alice.close()
