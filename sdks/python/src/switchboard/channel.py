"""A joined channel: its events in, publishes, history and presence out."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ClosedError, ErrorCode, InvalidRequestError, SwitchboardError
from .storage import ChannelStorage
from .tracker import OffsetTracker
from .types import (
    AgentCard,
    ChannelEvent,
    Direction,
    HistoryPage,
    InboxMessage,
    JoinReply,
    Kicked,
    Message,
    PresenceState,
    PublishAck,
    agent_cards,
)
from . import frames

if TYPE_CHECKING:
    from .client import Client


@dataclass
class End:
    """Why a socket (``kind``) or a channel's event stream ended."""

    kind: Literal["lost", "fatal", "closed"]
    reason: str
    error: SwitchboardError | None = None


@dataclass
class Push:
    """A push that waits for its reply, and may be re-sent after a reconnect."""

    seq: int
    """Its place in the order of requests, so re-sends keep that order."""
    topic: str
    event: str
    payload: Any
    """JSON-able, or ``bytes`` for a binary push."""
    retry: bool
    future: asyncio.Future[Any]

    def succeed(self, response: Any) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class ChannelState:
    """Per-channel state, owned by the client's connection task."""

    name: str
    topic: str
    params: dict[str, Any]
    """The join parameters the application gave (wire ``JoinParams``)."""
    tracker: OffsetTracker
    first_join: asyncio.Future[JoinReply] | None
    """The caller of the first join, until its reply."""
    join_ref: int | None = None
    """The ref of the join sent on the current socket."""
    joined: bool = False
    session_id: str | None = None
    reply: JoinReply | None = None
    kicked: SwitchboardError | None = None
    """Why the server removed the agent, between ``kicked`` and ``phx_close``."""
    queue: list[Push] = field(default_factory=list)
    """Pushes waiting for the (re)join."""
    events: asyncio.Queue[ChannelEvent | End] = field(default_factory=asyncio.Queue)
    ended: End | None = None

    def end(self, error: SwitchboardError) -> None:
        """Fails the channel's waiting requests and ends its event stream."""
        if self.first_join is not None and not self.first_join.done():
            self.first_join.set_exception(error)
            self.first_join.exception()  # retrieved: the joiner may have given up already
        for push in self.queue:
            push.fail(error)
        self.queue.clear()
        if self.ended is None:
            self.ended = End("closed", str(error), error)
            self.events.put_nowait(self.ended)


def random_id() -> str:
    """A random 128-bit id, hex-encoded."""
    return secrets.token_hex(16)


class Channel:
    """A joined channel. Read its events with :meth:`events`, :meth:`messages` or (joined with
    ``inbox=True``) :meth:`inbox`; publish, read history, ``ack`` and ``reject`` inbox messages,
    ``announce`` this agent in the tenant's directory and ``discover`` others with the methods
    below; :meth:`leave` when done.

    Events queue without bound until read: read them, or leave the channel.
    """

    def __init__(self, client: Client, state: ChannelState) -> None:
        self.client = client
        self._state = state
        self.storage = ChannelStorage(client, state)
        """The channel's durable key-value store: ``put``, ``get``, ``delete``, ``list``,
        ``items``."""

    @property
    def name(self) -> str:
        """The channel name."""
        return self._state.name

    @property
    def agent_name(self) -> str:
        """The agent name this channel was joined as."""
        return str(self._state.params["agent_name"])

    @property
    def join_reply(self) -> JoinReply:
        """The reply of the latest (re)join: session id, epoch, head."""
        assert self._state.reply is not None
        return self._state.reply

    @property
    def last_offset(self) -> int | None:
        """The last offset delivered to the application (the resume position)."""
        return self._state.tracker.last

    async def publish(
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
        """Publishes and waits for the acknowledgement (for persisted messages, sent once the
        message is durable).

        A persisted message ``to`` an agent that is absent, or that consumes its inbox, waits in
        that agent's durable inbox until it acknowledges it. ``receipt=True`` (persisted direct
        messages only) makes the server report what becomes of it as :class:`~switchboard.Receipt`
        events on this channel, while this agent is in it.

        A persisted publish without an ``id`` gets a random one, so the SDK can re-send it after
        a reconnect and the server acknowledges the original instead of storing it twice.
        Ephemeral publishes are never re-sent: one in flight when the connection drops fails with
        :class:`~switchboard.DisconnectedError`. Publishes with attachments go as binary frames.
        """
        check_receipt(receipt, to, ephemeral)
        if not ephemeral and id is None:
            id = random_id()
        header: dict[str, Any] = {"type": type, "data": data}
        if to is not None:
            header["to"] = to
        if ephemeral:
            header["ephemeral"] = True
        if id is not None:
            header["id"] = id
        if receipt:
            header["receipt"] = True
        payload: Any = frames.encode_envelope(header, list(attachments)) if attachments else header
        response = await self.client.request(self._state, frames.PUBLISH, payload, retry=not ephemeral)
        return PublishAck.from_wire(response)

    async def history(
        self,
        *,
        from_offset: int | None = None,
        to_offset: int | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        sender: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        direction: Direction = "forward",
    ) -> HistoryPage:
        """Reads the channel's history as this agent sees it (direct messages only when it sent
        or receives them). Every bound is inclusive; ``backward`` returns the newest first."""
        query = history_query(from_offset, to_offset, from_ts, to_ts, sender, type, limit, direction)
        response = await self.client.request(self._state, frames.HISTORY, query, retry=True)
        return HistoryPage.from_wire(response)

    async def presence(self) -> PresenceState:
        """The agents present now."""
        response = await self.client.request(self._state, frames.PRESENCE, {}, retry=True)
        return PresenceState.from_wire(response)

    async def ack(self, id: str) -> None:
        """Acknowledges an inbox message (joined with ``inbox=True``): it leaves the inbox, for
        good, once this returns. Raises :class:`~switchboard.NotFoundError` (``not_found``)
        when the id is not pending in this agent's inbox (already acknowledged, dead-lettered,
        or never sent to it).

        An ack in flight when the connection drops is sent again after the rejoin; if the first
        one took effect, the second fails with ``not_found``.
        """
        await self.client.request(self._state, frames.ACK, {"id": id}, retry=True)

    async def reject(self, id: str, reason: str | None = None, *, requeue: bool = True) -> None:
        """Rejects an inbox message with an optional ``reason`` (≤ 1 KiB, else
        ``invalid_payload``; kept with the dead letter and sent in receipts).

        With ``requeue=True`` it is delivered again at once, until it was rejected the server's
        ``max_rejections`` times (3 by default) and becomes a dead letter; with
        ``requeue=False`` it becomes a dead letter now. ``not_found`` as for :meth:`ack`. A
        reject in flight when the connection drops fails with
        :class:`~switchboard.DisconnectedError` (the message comes back to the rejoined
        consumer either way).
        """
        payload: dict[str, Any] = {"id": id, "requeue": requeue}
        if reason is not None:
            payload["reason"] = reason
        await self.client.request(self._state, frames.REJECT, payload, retry=False)

    async def announce(self, capabilities: Sequence[str], metadata: Mapping[str, Any] | None = None) -> AgentCard:
        """Announces this agent in the tenant's directory: what it can do (``capabilities``, at
        most 32 of 1–64 bytes each) and anything else about it (``metadata``, a JSON object of at
        most 4 KiB), replacing what it announced before. Returns its card; the card is persisted
        until removed (:meth:`HttpClient.remove_agent`), and its ``online`` status follows the
        agent's presence in the tenant's channels.

        Refusals: ``invalid_payload`` (:class:`~switchboard.InvalidRequestError`) for too many or
        bad capabilities or too large metadata, ``rate_limited`` when the tenant has announced
        the server's maximum of agents. Sent again after a reconnect (announcing twice is
        harmless).
        """
        payload = announce_payload(capabilities, metadata)
        return AgentCard.from_wire(await self.client.request(self._state, frames.ANNOUNCE, payload, retry=True))

    async def update_metadata(self, metadata: Mapping[str, Any]) -> AgentCard:
        """Replaces this announced agent's metadata (its capabilities stay) and returns its card;
        :class:`~switchboard.NotFoundError` (``not_found``) when it never announced."""
        payload = {"metadata": metadata_object(metadata)}
        return AgentCard.from_wire(await self.client.request(self._state, frames.UPDATE_METADATA, payload, retry=True))

    async def discover(
        self,
        capability: str | None = None,
        filters: Mapping[str, Any] | None = None,
        online: bool | None = None,
        limit: int | None = None,
    ) -> list[AgentCard]:
        """The tenant's announced agents that match, sorted by name: those with ``capability``,
        those ``online`` (``True``) or offline (``False``), and whose metadata satisfies every
        filter. A filter is ``"field": value`` (equal) or ``"field": {"min": n, "max": n}``
        (a number within the inclusive bounds, either bound optional); ``field`` may be a
        dotted path into nested objects (``"stats.reputation"``). At most 16 filters; ``limit``
        1–1000 (default 100), else ``invalid_payload``. Temporary keys need the ``presence``
        capability on the channel ``sys.discovery``."""
        query = discover_query(capability, filters, online, limit)
        return agent_cards(await self.client.request(self._state, frames.DISCOVER, query, retry=True))

    async def next_event(self) -> ChannelEvent:
        """The next event; raises :class:`~switchboard.ClosedError` (or why the channel ended)
        once the stream has ended."""
        item = await self._state.events.get()
        if isinstance(item, End):
            # Put it back so every later reader ends too.
            self._state.events.put_nowait(item)
            raise item.error or ClosedError(item.reason)
        return item

    async def events(self) -> AsyncIterator[ChannelEvent]:
        """Every event in the order the server sent it: messages (replayed or live, never a
        duplicate), inbox messages (joined with ``inbox=True``), receipts (for publishes with
        ``receipt=True``), presence state and diffs, storage changes (joined with
        ``storage_events=True``), gaps, reconnect notices, and a final
        :class:`~switchboard.Kicked` when the server removed the agent. Ends when the channel
        ends."""
        while True:
            try:
                event = await self.next_event()
            except SwitchboardError:
                return
            yield event

    async def messages(self) -> AsyncIterator[Message]:
        """The messages only. Ends when the channel is left or the client closed; raises the
        error when the server removed the agent (``session_taken_over``, ``channel_deleted``)
        or refused the connection for good (``invalid_key``)."""
        async for event in self.events():
            if isinstance(event, Message):
                yield event
            elif isinstance(event, Kicked):
                raise event.error

    async def inbox(self) -> AsyncIterator[InboxMessage]:
        """The inbox messages only (joined with ``inbox=True``), oldest first; ``ack`` or
        ``reject`` each. Ends and raises like :meth:`messages`."""
        async for event in self.events():
            if isinstance(event, InboxMessage):
                yield event
            elif isinstance(event, Kicked):
                raise event.error

    async def leave(self) -> None:
        """Leaves the channel; the event stream ends."""
        await self.client.leave(self._state)


def history_query(
    from_offset: int | None,
    to_offset: int | None,
    from_ts: int | None,
    to_ts: int | None,
    sender: str | None,
    type: str | None,
    limit: int | None,
    direction: Direction,
) -> dict[str, Any]:
    """The wire ``HistoryQuery``: only the bounds that are set."""
    fields = {
        "from_offset": from_offset,
        "to_offset": to_offset,
        "from_ts": from_ts,
        "to_ts": to_ts,
        "sender": sender,
        "type": type,
        "limit": limit,
    }
    query: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    query["direction"] = direction
    return query


def announce_payload(capabilities: Sequence[str], metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The wire ``announce`` (and ``PUT /v1/agents/{name}``) body."""
    # A lone string is a sequence of characters: refuse it rather than announce its letters.
    if isinstance(capabilities, (str, bytes)) or not all(isinstance(c, str) for c in capabilities):
        raise InvalidRequestError("capabilities must be a list of strings", ErrorCode.INVALID_PAYLOAD)
    payload: dict[str, Any] = {"capabilities": list(capabilities)}
    if metadata is not None:
        payload["metadata"] = metadata_object(metadata)
    return payload


def metadata_object(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Agent metadata is a JSON object."""
    if not isinstance(metadata, Mapping):
        raise InvalidRequestError("metadata must be a JSON object (a dict)", ErrorCode.INVALID_PAYLOAD)
    return dict(metadata)


def discover_query(
    capability: str | None, filters: Mapping[str, Any] | None, online: bool | None, limit: int | None
) -> dict[str, Any]:
    """The wire ``discover`` (and ``POST /v1/agents/discover``) body: only what is set."""
    query: dict[str, Any] = {}
    if capability is not None:
        query["capability"] = capability
    if filters:
        query["filters"] = metadata_object(filters)
    if online is not None:
        query["online"] = online
    if limit is not None:
        query["limit"] = limit
    return query


def check_receipt(receipt: bool, to: str | None, ephemeral: bool) -> None:
    """Receipts report on a recipient's inbox: only persisted direct messages go there."""
    if receipt and (to is None or ephemeral):
        raise InvalidRequestError(
            "receipt=True needs a persisted direct message: give `to`, and not ephemeral=True",
            ErrorCode.INVALID_PAYLOAD,
        )


def encode_attachments(attachments: list[bytes]) -> list[str]:
    """Attachments as JSON carries them: base64 strings."""
    return [base64.b64encode(a).decode() for a in attachments]
