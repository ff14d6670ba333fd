"""Watching the tenant's agent directory (spec/protocol.md, "Discovery").

Every change of the directory (an agent announced itself, updated its metadata, came online,
went offline, was removed) goes out as an ephemeral ``agent`` message from ``switchboard`` on
the tenant's private channel ``sys.discovery``. :class:`AgentWatcher` is that channel, joined,
read as :class:`~switchboard.AgentUpdate` values:

    async with await client.watch_agents() as watcher:
        async for update in watcher:
            print(update.change, update.agent.name, update.agent.online)

The changes are ephemeral: those made while the connection was down are not replayed after the
reconnect. An application that keeps a view of the directory reads it again with ``discover``
when :attr:`AgentWatcher.reconnects` grows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from .channel import Channel
from .errors import ProtocolError
from .types import AgentUpdate, ChannelEvent, Kicked, Message, Reconnected

log = logging.getLogger("switchboard")


class AgentWatcher:
    """The tenant's ``sys.discovery`` channel, joined: its directory changes as
    :class:`~switchboard.AgentUpdate` values, in the order the server sent them. Create it with
    :meth:`Client.watch_agents` (or :meth:`Agent.watch_agents`); close it with :meth:`close` or
    ``async with``. Iterating ends when the watcher is closed, and raises the error when the
    server removed the watching agent."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        """The joined discovery channel (the watcher is not counted online there). Read its
        updates through the watcher, not through the channel's own event methods: both take
        from the same queue."""
        self.reconnects = 0
        """How many times the channel was joined again after the connection dropped: the
        changes made meanwhile were missed (they are ephemeral)."""

    async def __aenter__(self) -> AgentWatcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[AgentUpdate]:
        return self.updates()

    async def next_update(self) -> AgentUpdate:
        """The next directory change. Raises :class:`~switchboard.ClosedError` once the watcher
        is closed, or why the server removed it."""
        while True:
            update = self._update_of(await self.channel.next_event())
            if update is not None:
                return update

    async def updates(self) -> AsyncIterator[AgentUpdate]:
        """Every directory change; ends when the watcher is closed (or its client), raises the
        error when the server removed it."""
        async for event in self.channel.events():
            update = self._update_of(event)
            if update is not None:
                yield update

    def _update_of(self, event: ChannelEvent) -> AgentUpdate | None:
        if isinstance(event, Message):
            try:
                return AgentUpdate.from_message(event)
            except ProtocolError as e:
                log.warning("ignoring an unreadable directory change: %s", e)
        elif isinstance(event, Reconnected):
            self.reconnects += 1
        elif isinstance(event, Kicked):
            raise event.error
        return None

    async def close(self) -> None:
        """Leaves the discovery channel (the connection stays open)."""
        await self.channel.leave()
