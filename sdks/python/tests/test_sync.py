"""The synchronous wrapper, from plain (non-async) test functions."""

from __future__ import annotations

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, ServerProcess


def test_sync_agent(server: ServerProcess) -> None:
    with switchboard.sync.connect(server.url, server.key, "ops", "bot", options=FAST) as bot, \
            switchboard.sync.connect(server.url, server.key, "ops", "ear", options=FAST) as ear:
        assert bot.name == "bot"
        ack = bot.send("deploy", {"version": "1.2"}, attachments=[b"log"])
        assert ack.offset == 1
        m = ear.next_message(timeout=10)
        assert m is not None and (m.offset, m.data, m.attachments) == (1, {"version": "1.2"}, [b"log"])
        assert ear.next_message(timeout=0) is None, "nothing else was sent"
        assert [x.offset for x in bot.receive(from_offset=1).messages] == [1]
        assert bot.presence().names() == ["bot", "ear"]
        bot.send("done", 2)
        assert next(iter(ear.messages())).offset == 2


def test_sync_errors(server: ServerProcess) -> None:
    with pytest.raises(switchboard.AuthenticationError) as e:
        switchboard.sync.connect(server.url, "sk_wrong", "ops", "bot")
    assert e.value.code == ErrorCode.INVALID_KEY
    agent = switchboard.sync.connect(server.url, server.key, "ops", "bot")
    with pytest.raises(switchboard.InvalidRequestError):
        agent.send("", None)
    agent.close()
    agent.close()  # closing twice is harmless


def test_sync_storage(server: ServerProcess) -> None:
    with switchboard.sync.connect(server.url, server.key, "ops", "bot", options=FAST) as bot:
        entry = bot.storage.put("deploy/last", {"version": "1.2"})
        assert entry.version == 1
        assert bot.storage.put("deploy/last", {"version": "1.3"}, version=1).version == 2
        with pytest.raises(switchboard.ConflictError):
            bot.storage.put("deploy/last", {"version": "x"}, version=1)
        assert bot.storage.get("deploy/last").value == {"version": "1.3"}
        bot.storage.put("deploy/first", 1)
        assert bot.storage.list(prefix="deploy/", limit=1).next == "deploy/first"
        assert [e.key for e in bot.storage.items(prefix="deploy/", page_size=1)] == ["deploy/first", "deploy/last"]
        bot.storage.delete("deploy/first")
        with pytest.raises(switchboard.NotFoundError):
            bot.storage.get("deploy/first")


def test_sync_inbox(server: ServerProcess) -> None:
    with switchboard.sync.connect(server.url, server.key, "jobs", "asker", presence=False, echo=False, options=FAST) as asker:
        first = asker.send("task", {"n": 1}, to="worker", receipt=True)
        asker.send("task", {"n": 2}, to="worker")
        with switchboard.sync.connect(
            server.url, server.key, "jobs", "worker", inbox=True, presence=False, options=FAST
        ) as worker:
            item = worker.next_inbox_message(timeout=10)
            assert item is not None and (item.id, item.delivery_count, item.message.data) == (first.id, 1, {"n": 1})
            worker.ack(item.id)
            second = next(iter(worker.inbox()))
            worker.reject(second.id, "bad input", requeue=False)
            with pytest.raises(switchboard.NotFoundError):
                worker.ack(second.id)
            assert worker.next_inbox_message(timeout=0) is None, "nothing else is waiting"
        receipts = [asker.next_event(timeout=10) for _ in range(2)]
        assert receipts == [
            switchboard.Receipt(first.id, "worker", "delivered", 1),
            switchboard.Receipt(first.id, "worker", "acknowledged", 1),
        ]
