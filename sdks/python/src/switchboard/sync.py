"""A small synchronous wrapper for scripts: the asyncio SDK on a private event loop thread.

    with switchboard.sync.connect(url, key, "ops", "deploy-bot") as agent:
        agent.send("deploy", {"version": "1.2"})
        msg = agent.next_message(timeout=5)

Every call blocks until its reply; reconnects and resume happen in the background as with the
asyncio API.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from .agent import Agent
from .agent import connect as connect_async
from .channel import Channel
from .client import ClientOptions, KeySource
from .errors import ClosedError
from .storage import ChannelStorage
from .types import Direction, HistoryPage, Kicked, Message, PresenceState, PublishAck, Scope, StorageEntry, StoragePage

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="switchboard-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def _next_message(channel: Channel, timeout: float | None) -> Message | None:
    async def wait() -> Message:
        while True:
            event = await channel.next_event()
            if isinstance(event, Message):
                return event
            if isinstance(event, Kicked):
                raise event.error

    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        return None


class SyncStorage:
    """The blocking twin of :class:`~switchboard.ChannelStorage`."""

    def __init__(self, runner: _LoopThread, storage: ChannelStorage) -> None:
        self._runner = runner
        self._storage = storage

    def put(self, key: str, value: Any, *, version: int | None = None, ttl_secs: int | None = None) -> StorageEntry:
        """Writes an entry; see :meth:`ChannelStorage.put`."""
        return self._runner.run(self._storage.put(key, value, version=version, ttl_secs=ttl_secs))

    def get(self, key: str) -> StorageEntry:
        """Reads an entry; see :meth:`ChannelStorage.get`."""
        return self._runner.run(self._storage.get(key))

    def delete(self, key: str, *, version: int | None = None) -> None:
        """Deletes an entry; see :meth:`ChannelStorage.delete`."""
        self._runner.run(self._storage.delete(key, version=version))

    def list(self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None) -> StoragePage:
        """One page of entries; see :meth:`ChannelStorage.list`."""
        return self._runner.run(self._storage.list(prefix=prefix, after=after, limit=limit))

    def items(self, *, prefix: str | None = None, page_size: int | None = None) -> Iterator[StorageEntry]:
        """Every entry in key order, a page at a time."""
        after: str | None = None
        while True:
            page = self.list(prefix=prefix, after=after, limit=page_size)
            yield from page.entries
            if page.next is None:
                return
            after = page.next


class SyncAgent:
    """The blocking twin of :class:`~switchboard.Agent`."""

    def __init__(self, runner: _LoopThread, agent: Agent) -> None:
        self._runner = runner
        self.agent = agent
        """The asyncio agent underneath."""
        self.storage = SyncStorage(runner, agent.storage)
        """The channel's key-value store, blocking."""

    def __enter__(self) -> SyncAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def name(self) -> str:
        """This agent's name."""
        return self.agent.name

    def send(
        self,
        type: str,
        data: Any = None,
        *,
        to: str | None = None,
        ephemeral: bool = False,
        attachments: list[bytes] | None = None,
        id: str | None = None,
    ) -> PublishAck:
        """Sends a message; see :meth:`Agent.send`."""
        return self._runner.run(self.agent.send(type, data, to=to, ephemeral=ephemeral, attachments=attachments, id=id))

    def receive(
        self,
        from_offset: int | None = None,
        limit: int = 100,
        *,
        to_offset: int | None = None,
        sender: str | None = None,
        type: str | None = None,
        direction: Direction = "forward",
    ) -> HistoryPage:
        """Reads history; see :meth:`Agent.receive`."""
        return self._runner.run(
            self.agent.receive(from_offset, limit, to_offset=to_offset, sender=sender, type=type, direction=direction)
        )

    def presence(self) -> PresenceState:
        """The agents present now."""
        return self._runner.run(self.agent.presence())

    def next_message(self, timeout: float | None = None) -> Message | None:
        """The next message, or ``None`` when none arrives within ``timeout`` seconds. Raises
        :class:`~switchboard.ClosedError` once the channel has ended."""
        return self._runner.run(_next_message(self.agent.channel, timeout))

    def messages(self) -> Iterator[Message]:
        """Blocks for each message; ends when the channel ends."""
        while True:
            try:
                message = self.next_message()
            except ClosedError:
                return
            if message is not None:
                yield message

    def close(self) -> None:
        """Leaves, closes the connection and stops the loop thread."""
        if self._runner.thread.is_alive():
            try:
                self._runner.run(self.agent.close())
            finally:
                self._runner.stop()


def connect(
    url: str,
    api_key: KeySource,
    channel_name: str,
    agent_name: str,
    *,
    channel_password: str | None = None,
    scope: Scope = "private",
    event_types: list[str] | None = None,
    since: int | None = None,
    echo: bool = True,
    presence: bool = True,
    meta: dict[str, Any] | None = None,
    session_id: str | None = None,
    options: ClientOptions | None = None,
) -> SyncAgent:
    """Connects and joins, blocking; see :func:`switchboard.connect`. A callable ``api_key``
    runs on the SDK's loop thread."""
    runner = _LoopThread()
    try:
        agent = runner.run(
            connect_async(
                url,
                api_key,
                channel_name,
                agent_name,
                channel_password=channel_password,
                scope=scope,
                event_types=event_types,
                since=since,
                echo=echo,
                presence=presence,
                meta=meta,
                session_id=session_id,
                options=options,
            )
        )
    except BaseException:
        runner.stop()
        raise
    return SyncAgent(runner, agent)
