"""A small synchronous wrapper for scripts: the asyncio SDK on a private event loop thread.

    with switchboard.sync.connect(url, key, "ops", "deploy-bot") as agent:
        agent.send("deploy", {"version": "1.2"})
        msg = agent.next_message(timeout=5)

    with switchboard.sync.connect(url, key, "jobs", "worker", inbox=True) as worker:
        for item in worker.inbox():
            ...
            worker.ack(item.id)

    with switchboard.sync.connect(url, key, "jobs", "asker") as asker:
        workers = asker.discover("translate", filters={"price": {"max": 10}}, online=True)

    with switchboard.sync.connect(url, key, "files", "uploader") as up:
        sent = up.send_file("archiver", "backup.tar", on_progress=print)

    with switchboard.sync.connect(url, key, "files", "archiver") as down:
        offer = down.next_stream_offer(timeout=60)
        if offer is not None:
            down.receive_stream(offer, f"incoming/{offer.stream_id}")

Every call blocks until its reply; reconnects and resume happen in the background as with the
asyncio API.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar, Union

from .agent import Agent
from .agent import connect as connect_async
from .channel import Channel
from .client import ClientOptions, KeySource
from .discovery import AgentWatcher
from .errors import ClosedError, RequestTimeoutError
from .storage import ChannelStorage
from .streams import ProgressCallback, StreamSink, StreamSource
from .types import (
    AgentCard,
    AgentUpdate,
    ChannelEvent,
    Direction,
    HistoryPage,
    InboxMessage,
    Kicked,
    Message,
    PollSource,
    PresenceState,
    PublishAck,
    Received,
    Scope,
    Sent,
    StorageEntry,
    StoragePage,
    StreamComplete,
    StreamOffer,
)

T = TypeVar("T")
M = TypeVar("M", bound=Union[Message, InboxMessage, StreamOffer])


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


async def _next_of(channel: Channel, kind: type[M], timeout: float | None) -> M | None:
    """The next event of ``kind`` (skipping others), or ``None`` after ``timeout``."""

    async def wait() -> M:
        while True:
            event = await channel.next_event()
            if isinstance(event, kind):
                return event
            if isinstance(event, Kicked):
                raise event.error

    try:
        return await asyncio.wait_for(wait(), timeout)
    except asyncio.TimeoutError:
        return None


async def _next_event(channel: Channel, timeout: float | None) -> ChannelEvent | None:
    try:
        return await asyncio.wait_for(channel.next_event(), timeout)
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


class SyncAgentWatcher:
    """The blocking twin of :class:`~switchboard.AgentWatcher`: the tenant's directory changes.
    Closing it leaves the discovery channel; closing the agent ends it too."""

    def __init__(self, runner: _LoopThread, watcher: AgentWatcher) -> None:
        self._runner = runner
        self.watcher = watcher
        """The asyncio watcher underneath."""

    def __enter__(self) -> SyncAgentWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def reconnects(self) -> int:
        """How many rejoins after a dropped connection (the changes meanwhile were missed)."""
        return self.watcher.reconnects

    def next_update(self, timeout: float | None = None) -> AgentUpdate | None:
        """The next directory change, or ``None`` when none arrives within ``timeout`` seconds.
        Raises :class:`~switchboard.ClosedError` once the watcher is closed, or why the server
        removed it."""

        async def wait() -> AgentUpdate | None:
            try:
                return await asyncio.wait_for(self.watcher.next_update(), timeout)
            except asyncio.TimeoutError:
                return None

        return self._runner.run(wait())

    def __iter__(self) -> Iterator[AgentUpdate]:
        """Blocks for each change; ends when the watcher is closed."""
        while True:
            try:
                update = self.next_update()
            except ClosedError:
                return
            if update is not None:
                yield update

    def close(self) -> None:
        """Leaves the discovery channel."""
        if self._runner.thread.is_alive():
            self._runner.run(self.watcher.close())


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
        receipt: bool = False,
    ) -> PublishAck:
        """Sends a message; see :meth:`Agent.send`."""
        return self._runner.run(
            self.agent.send(type, data, to=to, ephemeral=ephemeral, attachments=attachments, id=id, receipt=receipt)
        )

    def receive(
        self,
        from_offset: int | None = None,
        limit: int = 100,
        *,
        to_offset: int | None = None,
        sender: str | None = None,
        type: str | None = None,
        direction: Direction = "forward",
        poll_source: PollSource | str | None = None,
    ) -> HistoryPage:
        """Reads history, from the storage tier ``poll_source`` when given; see
        :meth:`Agent.receive`."""
        return self._runner.run(
            self.agent.receive(
                from_offset,
                limit,
                to_offset=to_offset,
                sender=sender,
                type=type,
                direction=direction,
                poll_source=poll_source,
            )
        )

    def presence(self) -> PresenceState:
        """The agents present now."""
        return self._runner.run(self.agent.presence())

    def next_event(self, timeout: float | None = None) -> ChannelEvent | None:
        """The next event of any kind (messages, inbox messages, receipts, presence…), or
        ``None`` when none arrives within ``timeout`` seconds. Raises
        :class:`~switchboard.ClosedError` once the channel has ended."""
        return self._runner.run(_next_event(self.agent.channel, timeout))

    def next_message(self, timeout: float | None = None) -> Message | None:
        """The next message (other events are skipped), or ``None`` when none arrives within
        ``timeout`` seconds. Raises :class:`~switchboard.ClosedError` once the channel has
        ended."""
        return self._runner.run(_next_of(self.agent.channel, Message, timeout))

    def next_inbox_message(self, timeout: float | None = None) -> InboxMessage | None:
        """The next inbox message (connected with ``inbox=True``; other events are skipped), or
        ``None`` when none arrives within ``timeout`` seconds. Raises
        :class:`~switchboard.ClosedError` once the channel has ended."""
        return self._runner.run(_next_of(self.agent.channel, InboxMessage, timeout))

    def inbox(self) -> Iterator[InboxMessage]:
        """Blocks for each inbox message; ends when the channel ends."""
        while True:
            try:
                item = self.next_inbox_message()
            except ClosedError:
                return
            if item is not None:
                yield item

    def ack(self, id: str) -> None:
        """Acknowledges an inbox message; see :meth:`Channel.ack`."""
        self._runner.run(self.agent.ack(id))

    def reject(self, id: str, reason: str | None = None, *, requeue: bool = True) -> None:
        """Rejects an inbox message; see :meth:`Channel.reject`."""
        self._runner.run(self.agent.reject(id, reason, requeue=requeue))

    def announce(self, capabilities: Sequence[str], metadata: Mapping[str, Any] | None = None) -> AgentCard:
        """Announces this agent in the tenant's directory; see :meth:`Channel.announce`."""
        return self._runner.run(self.agent.announce(capabilities, metadata))

    def update_metadata(self, metadata: Mapping[str, Any]) -> AgentCard:
        """Replaces this announced agent's metadata; see :meth:`Channel.update_metadata`."""
        return self._runner.run(self.agent.update_metadata(metadata))

    def discover(
        self,
        capability: str | None = None,
        filters: Mapping[str, Any] | None = None,
        online: bool | None = None,
        limit: int | None = None,
    ) -> list[AgentCard]:
        """The tenant's announced agents that match, by name; see :meth:`Channel.discover`."""
        return self._runner.run(self.agent.discover(capability, filters, online, limit))

    def send_stream(
        self,
        to: str,
        source: StreamSource,
        *,
        name: str | None = None,
        size: int | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Sent:
        """Sends a large payload to ``to`` as a stream; see :meth:`Channel.send_stream`.
        ``on_progress`` runs on the SDK's loop thread; an async iterator ``source`` is iterated
        there too."""
        return self._runner.run(
            self.agent.send_stream(
                to, source, name=name, size=size, content_type=content_type, meta=meta, on_progress=on_progress
            )
        )

    def send_file(
        self,
        to: str,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Sent:
        """Sends a file as a stream; see :meth:`Channel.send_file`."""
        return self._runner.run(
            self.agent.send_file(to, path, name=name, content_type=content_type, meta=meta, on_progress=on_progress)
        )

    def resume_stream(self, stream_id: str, source: StreamSource, *, on_progress: ProgressCallback | None = None) -> Sent:
        """Continues sending a stream this agent opened; see :meth:`Channel.resume_stream`."""
        return self._runner.run(self.agent.resume_stream(stream_id, source, on_progress=on_progress))

    def next_stream_offer(self, timeout: float | None = None) -> StreamOffer | None:
        """The next stream offered to this agent (other events are skipped), or ``None`` when
        none arrives within ``timeout`` seconds. Raises :class:`~switchboard.ClosedError` once
        the channel has ended."""
        return self._runner.run(_next_of(self.agent.channel, StreamOffer, timeout))

    def receive_stream(
        self,
        offer: StreamOffer,
        sink: StreamSink,
        *,
        on_progress: ProgressCallback | None = None,
        resume: bool = False,
    ) -> Received:
        """Receives an offered stream into a path or a binary file; see
        :meth:`Channel.receive_stream`. ``on_progress`` runs on the SDK's loop thread."""
        return self._runner.run(self.agent.receive_stream(offer, sink, on_progress=on_progress, resume=resume))

    def wait_stream(self, stream_id: str, timeout: float | None = None) -> StreamComplete:
        """Waits until the recipient of a stream this agent sent has verified it; see
        :meth:`Channel.wait_stream`. Raises :class:`~switchboard.RequestTimeoutError` after
        ``timeout`` seconds."""

        async def wait() -> StreamComplete:
            try:
                return await asyncio.wait_for(self.agent.wait_stream(stream_id), timeout)
            except asyncio.TimeoutError:
                raise RequestTimeoutError(f"stream {stream_id} did not complete within {timeout} s") from None

        return self._runner.run(wait())

    def cancel_stream(self, stream_id: str, reason: str | None = None) -> None:
        """Cancels a stream (as its sender or its recipient); see :meth:`Agent.cancel_stream`."""
        self._runner.run(self.agent.cancel_stream(stream_id, reason))

    def watch_agents(self, agent_name: str | None = None) -> SyncAgentWatcher:
        """Joins ``sys.discovery`` on this agent's connection; see :meth:`Client.watch_agents`."""
        return SyncAgentWatcher(self._runner, self._runner.run(self.agent.watch_agents(agent_name)))

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
    inbox: bool = False,
    poll_source: PollSource | str | None = None,
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
                inbox=inbox,
                poll_source=poll_source,
                options=options,
            )
        )
    except BaseException:
        runner.stop()
        raise
    return SyncAgent(runner, agent)
