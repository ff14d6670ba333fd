"""The agent facade: one connection, one channel, one agent name — the common case in a line.

``async with await switchboard.connect(url=..., api_key=..., channel_name=..., agent_name=...)``
gives an :class:`Agent` that sends, receives and reads history and presence, and (connected
with ``inbox=True``) consumes its durable inbox; it announces itself in the tenant's directory
and discovers other agents by capability and metadata; it sends and receives streams (large
payloads and files, with progress, resumable).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from .channel import Channel
from .client import Client, ClientOptions, KeySource
from .discovery import AgentWatcher
from .storage import ChannelStorage
from .streams import ProgressCallback, StreamSink, StreamSource
from .types import (
    AgentCard,
    ChannelEvent,
    Direction,
    HistoryPage,
    InboxMessage,
    JoinReply,
    Message,
    PollSource,
    PresenceState,
    PublishAck,
    Received,
    Scope,
    Sent,
    StreamComplete,
    StreamOffer,
)


class Agent:
    """An agent in one channel. Close it with :meth:`close` or ``async with``."""

    def __init__(self, client: Client, channel: Channel) -> None:
        self.client = client
        """The connection (join more channels through it with ``client.join``)."""
        self.channel = channel
        """The joined channel."""

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def name(self) -> str:
        """This agent's name."""
        return self.channel.agent_name

    @property
    def storage(self) -> ChannelStorage:
        """The channel's durable key-value store: ``put``, ``get``, ``delete``, ``list``,
        ``items``. Its changes arrive in :meth:`events` as :class:`StorageChange` when connected
        with ``storage_events=True``."""
        return self.channel.storage

    @property
    def join_reply(self) -> JoinReply:
        """The latest join reply: session id, epoch, head."""
        return self.channel.join_reply

    async def send(
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
        """Sends a message to everyone, or to the agent ``to``; returns once it is durable
        (``ack.offset``), or once delivered for ``ephemeral`` ones (``ack.offset`` is ``None``).
        ``attachments`` are raw bytes, sent in a binary frame. A persisted message ``to`` an
        absent agent waits in its inbox; ``receipt=True`` reports what becomes of it as
        :class:`Receipt` events in :meth:`events`."""
        return await self.channel.publish(
            type, data, to=to, ephemeral=ephemeral, attachments=attachments, id=id, receipt=receipt
        )

    def messages(self) -> AsyncIterator[Message]:
        """``async for msg in agent.messages()``: live messages (after a replay when joined with
        ``since``), never a duplicate, across reconnects."""
        return self.channel.messages()

    def events(self) -> AsyncIterator[ChannelEvent]:
        """Messages, inbox messages, receipts, stream events (offers, progress, completion…),
        and presence, storage change, gap and reconnect events, in order."""
        return self.channel.events()

    def inbox(self) -> AsyncIterator[InboxMessage]:
        """``async for item in agent.inbox()`` (connected with ``inbox=True``): the direct
        messages of this agent's durable inbox, those that waited while it was away first.
        ``ack`` each once handled, or ``reject`` it; an unsettled one comes back."""
        return self.channel.inbox()

    async def ack(self, id: str) -> None:
        """Acknowledges an inbox message: it leaves the inbox; see :meth:`Channel.ack`."""
        await self.channel.ack(id)

    async def reject(self, id: str, reason: str | None = None, *, requeue: bool = True) -> None:
        """Rejects an inbox message: delivered again (``requeue``, the default) until the
        server's rejection limit, else dead-lettered; see :meth:`Channel.reject`."""
        await self.channel.reject(id, reason, requeue=requeue)

    async def receive(
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
        """Reads history: up to ``limit`` messages from ``from_offset`` (inclusive), from the
        storage tier ``poll_source`` (``cache``, ``log``/``kafka``, ``database`` or ``auto``;
        default: the one connected with, else ``AUTO``); ``page.sources`` tells which tier
        served which offsets. See :meth:`Channel.history`."""
        return await self.channel.history(
            from_offset=from_offset,
            to_offset=to_offset,
            sender=sender,
            type=type,
            limit=limit,
            direction=direction,
            poll_source=poll_source,
        )

    async def presence(self) -> PresenceState:
        """The agents present in the channel now."""
        return await self.channel.presence()

    async def announce(self, capabilities: Sequence[str], metadata: Mapping[str, Any] | None = None) -> AgentCard:
        """Announces this agent's ``capabilities`` and ``metadata`` in the tenant's directory,
        replacing what it announced before; returns its card. See :meth:`Channel.announce`."""
        return await self.channel.announce(capabilities, metadata)

    async def update_metadata(self, metadata: Mapping[str, Any]) -> AgentCard:
        """Replaces this announced agent's metadata; ``not_found`` when it never announced."""
        return await self.channel.update_metadata(metadata)

    async def discover(
        self,
        capability: str | None = None,
        filters: Mapping[str, Any] | None = None,
        online: bool | None = None,
        limit: int | None = None,
    ) -> list[AgentCard]:
        """The tenant's announced agents that match, by name: ``capability``, metadata
        ``filters`` (``{"field": value}`` or ``{"field": {"min": n, "max": n}}``, dotted paths
        allowed), ``online``; see :meth:`Channel.discover`."""
        return await self.channel.discover(capability, filters, online, limit)

    async def send_stream(
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
        """Sends a large payload (bytes, a path, a binary file, an async iterator of bytes) to
        agent ``to`` as a stream; returns once the server holds and verified all of it. See
        :meth:`Channel.send_stream`."""
        return await self.channel.send_stream(
            to, source, name=name, size=size, content_type=content_type, meta=meta, on_progress=on_progress
        )

    async def send_file(
        self,
        to: str,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Sent:
        """Sends the file at ``path`` as a stream named after it; see :meth:`Channel.send_file`."""
        return await self.channel.send_file(
            to, path, name=name, content_type=content_type, meta=meta, on_progress=on_progress
        )

    async def resume_stream(
        self, stream_id: str, source: StreamSource, *, on_progress: ProgressCallback | None = None
    ) -> Sent:
        """Continues sending a stream this agent opened, from where the server holds it; see
        :meth:`Channel.resume_stream`."""
        return await self.channel.resume_stream(stream_id, source, on_progress=on_progress)

    async def receive_stream(
        self,
        offer: StreamOffer,
        sink: StreamSink,
        *,
        on_progress: ProgressCallback | None = None,
        resume: bool = False,
    ) -> Received:
        """Receives an offered stream into a path or a binary file, verifies it and acknowledges
        it (``resume=True``: after the bytes the sink holds); see
        :meth:`Channel.receive_stream`."""
        return await self.channel.receive_stream(offer, sink, on_progress=on_progress, resume=resume)

    async def wait_stream(self, stream_id: str) -> StreamComplete:
        """Waits until the recipient of a stream this agent sent has verified all of it; see
        :meth:`Channel.wait_stream`."""
        return await self.channel.wait_stream(stream_id)

    async def cancel_stream(self, stream_id: str, reason: str | None = None) -> None:
        """Cancels a stream (as its sender or its recipient): both sides get
        :class:`StreamCancelled`."""
        await self.channel.stream_cancel(stream_id, reason)

    async def watch_agents(self, agent_name: str | None = None) -> AgentWatcher:
        """``async for update in await agent.watch_agents()``: the tenant's directory changes,
        on this agent's connection; see :meth:`Client.watch_agents`."""
        return await self.client.watch_agents(agent_name)

    async def close(self) -> None:
        """Leaves the channel and closes the connection."""
        await self.channel.leave()
        await self.client.close()


async def connect(
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
    storage_events: bool = False,
    inbox: bool = False,
    poll_source: PollSource | str | None = None,
    options: ClientOptions | None = None,
) -> Agent:
    """Connects, joins ``channel_name`` as ``agent_name`` and returns the :class:`Agent`.

    ``api_key`` is a key, or a callable (sync or async) returning a fresh one: it is called for
    every connection, so short-lived keys keep working across reconnects. See
    :meth:`Client.join` for the join options.
    """
    client = await Client.connect(url, api_key, options)
    try:
        channel = await client.join(
            channel_name,
            agent_name,
            password=channel_password,
            scope=scope,
            since=since,
            event_types=event_types,
            echo=echo,
            presence=presence,
            meta=meta,
            session_id=session_id,
            storage_events=storage_events,
            inbox=inbox,
            poll_source=poll_source,
        )
    except BaseException:
        await client.close()
        raise
    return Agent(client, channel)
