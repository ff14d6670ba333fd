"""A joined channel: its events in, publishes, history and presence out."""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ClosedError, ConflictError, ErrorCode, InvalidRequestError, SwitchboardError
from . import frames, streams
from .storage import ChannelStorage
from .streams import ProgressCallback, StreamSink, StreamSource
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
    PollSource,
    PresenceState,
    PublishAck,
    Received,
    Sent,
    StreamCancelled,
    StreamComplete,
    StreamData,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamOffer,
    StreamOutcome,
    StreamPosition,
    agent_cards,
    poll_source_value,
)

if TYPE_CHECKING:
    from .client import Client

MAX_STREAM_OUTCOMES = 1024
"""How many ended streams a channel remembers for :meth:`Channel.wait_stream`."""


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
    stream_routes: dict[str, asyncio.Queue[StreamEvent | End]] = field(default_factory=dict)
    """Streams being received by :meth:`Channel.receive_stream`: their events go there instead
    of to ``events``."""
    stream_outcomes: OrderedDict[str, StreamOutcome] = field(default_factory=OrderedDict)
    """How the latest streams of this agent ended (complete, cancelled, failed), for
    :meth:`Channel.wait_stream`; at most ``MAX_STREAM_OUTCOMES``."""
    stream_waiters: dict[str, list[asyncio.Future[StreamOutcome]]] = field(default_factory=dict)

    def stream_ended(self, outcome: StreamOutcome) -> None:
        """Records how a stream ended and wakes those waiting for it."""
        self.stream_outcomes[outcome.stream_id] = outcome
        self.stream_outcomes.move_to_end(outcome.stream_id)
        while len(self.stream_outcomes) > MAX_STREAM_OUTCOMES:
            self.stream_outcomes.popitem(last=False)
        for waiter in self.stream_waiters.pop(outcome.stream_id, []):
            if not waiter.done():
                waiter.set_result(outcome)

    def is_stale(self, event: object) -> bool:
        """An offer or bytes of a stream that has ended (e.g. an offer repeated on a rejoin
        while the stream was being received): nothing to do with it any more."""
        return isinstance(event, (StreamOffer, StreamData, StreamEnd)) and event.stream_id in self.stream_outcomes

    def deliver_stream(self, event: StreamEvent) -> None:
        """Hands a stream event to the receiver of its stream, or to the event stream; records
        how the stream ended, and drops stale ones."""
        if isinstance(event, (StreamComplete, StreamCancelled, StreamError)):
            self.stream_ended(event)
        elif self.is_stale(event):
            return
        route = self.stream_routes.get(event.stream_id)
        if route is not None:
            route.put_nowait(event)
        else:
            self.events.put_nowait(event)

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
            for route in self.stream_routes.values():
                route.put_nowait(self.ended)
            for waiters in self.stream_waiters.values():
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(error)
            self.stream_waiters.clear()


def random_id() -> str:
    """A random 128-bit id, hex-encoded."""
    return secrets.token_hex(16)


class Channel:
    """A joined channel. Read its events with :meth:`events`, :meth:`messages` or (joined with
    ``inbox=True``) :meth:`inbox`; publish, read history, ``ack`` and ``reject`` inbox messages,
    ``announce`` this agent in the tenant's directory and ``discover`` others, send and receive
    streams (:meth:`send_stream`, :meth:`receive_stream`) with the methods below; :meth:`leave`
    when done.

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
        poll_source: PollSource | str | None = None,
    ) -> HistoryPage:
        """Reads the channel's history as this agent sees it (direct messages only when it sent
        or receives them). Every bound is inclusive; ``backward`` returns the newest first.

        ``poll_source`` picks the storage tier (a :class:`~switchboard.PollSource` or its name
        in any case): ``cache`` (the newest messages, in memory), ``log`` or ``kafka`` (the
        durable log), ``database`` (everything kept, though the newest messages may not be
        there yet) or ``auto`` (all three stitched by offset). Absent: the ``poll_source`` the
        channel was joined with, else ``AUTO``. ``page.sources`` says which tier served which
        offsets. A tier the channel's storage policy does not keep raises
        :class:`~switchboard.ConflictError` (``no_history``); an unknown name raises
        :class:`~switchboard.InvalidRequestError` (``invalid_payload``) before anything is
        sent."""
        query = history_query(from_offset, to_offset, from_ts, to_ts, sender, type, limit, direction, poll_source)
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

    # ------------------------------------------------------------------------------------------
    # Streams

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
        """Sends a large payload to agent ``to`` in this channel as a stream, and returns once
        the server holds all of it and has checked its SHA-256 and size (:class:`Sent`); the
        recipient gets a :class:`StreamOffer` at once, or when it next joins.

        ``source`` is ``bytes``, a path (``str`` or ``os.PathLike``), a binary file object
        (read from its current position) or an async iterator of ``bytes``. ``size`` defaults
        to the length of bytes, of the file at a path, or of what remains of a seekable file
        object; ``name``, ``content_type`` and
        ``meta`` (a JSON object of at most 4 KiB) describe the payload to the recipient.
        ``on_progress(offset)`` is called with the bytes the server holds after each chunk.

        Chunks of 256 KiB go out 8 at a time, hashed as they are read. A dropped connection is
        survived: the chunks in flight are sent again after the reconnect and the server keeps
        each once. After a failure (the process died, the server restarted, a request timed
        out), :meth:`resume_stream` continues from what the server holds. Raises
        :class:`~switchboard.StreamCancelledError` when the recipient cancels,
        ``checksum_mismatch`` when the bytes the server received differ from what was read.
        """
        return await streams.send(
            self, to, source, name=name, size=size, content_type=content_type, meta=meta, on_progress=on_progress
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
        """Sends the file at ``path`` as a stream (see :meth:`send_stream`), named after the
        file (unless ``name`` is given), with its size and its media type guessed from the name
        (unless ``content_type`` is given)."""
        path = os.fspath(path)
        if name is None:
            name = os.path.basename(path)
        if content_type is None:
            content_type = mimetypes.guess_type(name)[0]
        return await self.send_stream(
            to, path, name=name, content_type=content_type, meta=meta, on_progress=on_progress
        )

    async def resume_stream(
        self, stream_id: str, source: StreamSource, *, on_progress: ProgressCallback | None = None
    ) -> Sent:
        """Continues sending stream ``stream_id``, which this agent opened, from where the server
        holds it (after a failure, a restart of this process or of the server). ``source`` must
        yield the same payload from its start: the part the server holds is read again only to
        rebuild the checksum. ``not_found`` when the stream is gone (completed, cancelled,
        failed, or idle too long)."""
        return await streams.resume(self, stream_id, source, on_progress=on_progress)

    async def receive_stream(
        self,
        offer: StreamOffer,
        sink: StreamSink,
        *,
        on_progress: ProgressCallback | None = None,
        resume: bool = False,
    ) -> Received:
        """Receives the stream of ``offer`` into ``sink`` (a path, or a binary file object
        written from its current position) and returns once every byte arrived, the SHA-256
        and size were verified, and the stream was acknowledged (the sender gets
        :class:`StreamComplete`).

        While it runs, this stream's events (:class:`StreamData`, :class:`StreamEnd`, a new
        offer after a reconnect) are consumed here rather than delivered by :meth:`events`;
        other events keep flowing there. It acknowledges every MiB (the recipient's
        checkpoint, and the server's flow-control window) and calls ``on_progress(received)``
        with the bytes received so far. A dropped connection is survived: after the rejoin it
        accepts the stream again from the bytes it has.

        ``resume=True`` continues into a sink that holds the first bytes already, from an
        earlier attempt (this process or another): the file at the path, or the file object
        read from its start, is hashed and the stream is accepted from its length; the rest is
        appended. Without it, a path is truncated first.

        Raises ``checksum_mismatch`` (:class:`InvalidRequestError`; the stream is cancelled)
        when the bytes do not match, :class:`~switchboard.StreamCancelledError` when either side
        cancels, the error of a :class:`StreamError`, and whatever ``on_progress`` raises (the
        stream stays on the server: resume it later).
        """
        return await streams.receive(self, offer, sink, on_progress=on_progress, resume=resume)

    async def wait_stream(self, stream_id: str) -> StreamComplete:
        """Waits until the recipient of stream ``stream_id`` (sent by this agent) has all of it
        and verified it: returns the :class:`StreamComplete` (at once if it came already; the
        channel remembers how its latest 1024 streams ended). Raises
        :class:`~switchboard.StreamCancelledError` when it was cancelled, the error of its
        :class:`StreamError` when it failed. The server reports completion to the sender while
        it is in the channel: one that completes while the connection is down is missed, so
        bound the wait with ``asyncio.wait_for``. The events are still delivered by
        :meth:`events`."""
        state = self._state
        outcome = state.stream_outcomes.get(stream_id)
        if outcome is None:
            if state.ended is not None:
                raise state.ended.error or ClosedError(state.ended.reason)
            waiter: asyncio.Future[StreamOutcome] = asyncio.get_running_loop().create_future()
            state.stream_waiters.setdefault(stream_id, []).append(waiter)
            try:
                outcome = await waiter
            finally:
                waiters = state.stream_waiters.get(stream_id)
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                    if not waiters:
                        del state.stream_waiters[stream_id]
        if isinstance(outcome, StreamComplete):
            return outcome
        raise outcome.error()

    def stream_outcome(self, stream_id: str) -> StreamComplete | StreamCancelled | StreamError | None:
        """How stream ``stream_id`` ended, if this channel saw it end (it remembers the latest
        1024); ``None`` otherwise."""
        return self._state.stream_outcomes.get(stream_id)

    async def stream_open(
        self,
        to: str,
        *,
        name: str | None = None,
        size: int | None = None,
        content_type: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> StreamPosition:
        """(Low level, sender) ``stream_open``: opens a stream to ``to``; the recipient gets a
        :class:`StreamOffer`. Not sent again after a reconnect (a second open would open a
        second stream): one in flight then fails with :class:`~switchboard.DisconnectedError`.
        Refusals: ``invalid_agent_name``, ``invalid_payload`` (to itself, name or content type
        over 256 bytes, meta over 4 KiB), ``message_too_large`` (``size`` over the server's
        ``max_bytes``), ``rate_limited`` (too many open streams in the channel)."""
        payload: dict[str, Any] = {"to": to}
        optional = {"name": name, "size": size, "content_type": content_type}
        payload.update({k: v for k, v in optional.items() if v is not None})
        if meta:
            payload["meta"] = metadata_object(meta)
        return StreamPosition.from_wire(await self.client.request(self._state, frames.STREAM_OPEN, payload, retry=False))

    async def stream_position(self, stream_id: str) -> StreamPosition:
        """(Low level, sender) ``stream_open`` with a ``stream_id``: where a stream this agent
        opened stands on the server (``next_seq``, ``offset``), to continue it. ``not_found``
        when it is gone or not this agent's."""
        payload = {"to": "", "stream_id": stream_id}
        return StreamPosition.from_wire(await self.client.request(self._state, frames.STREAM_OPEN, payload, retry=True))

    async def stream_chunk(self, stream_id: str, seq: int, data: bytes | bytearray | memoryview) -> StreamPosition:
        """(Low level, sender) ``stream_chunk``: sends chunk ``seq`` (0, 1, 2… in order; at most
        the frame limit, the SDK sends 256 KiB) and returns the position once it is written.
        Sent again after a reconnect: the server acknowledges a chunk it has without writing it
        twice. ``invalid_payload`` for a gap in the ``seq`` or a closed stream,
        ``message_too_large`` beyond the server's ``max_bytes``, ``forbidden`` from the
        recipient, ``not_found`` for an unknown stream."""
        return StreamPosition.from_wire(await self.client.reply(self.start_chunk(stream_id, seq, data), frames.STREAM_CHUNK))

    def start_chunk(self, stream_id: str, seq: int, data: bytes | bytearray | memoryview) -> asyncio.Future[Any]:
        """Sends chunk ``seq`` now without waiting: the future of its reply (the wire
        position), to await with ``client.reply``; lets a sender keep several in flight."""
        payload = frames.encode_stream_envelope({"stream_id": stream_id, "seq": seq}, data)
        return self.client.start_request(self._state, frames.STREAM_CHUNK, payload, retry=True)

    async def stream_close(self, stream_id: str, checksum: str, total_size: int) -> None:
        """(Low level, sender) ``stream_close``: no more chunks; the server checks the hex
        SHA-256 and the size of what it received. On a mismatch the stream fails for both
        sides (:class:`StreamError`) and this raises ``checksum_mismatch``. Sent again after a
        reconnect."""
        payload = {"stream_id": stream_id, "checksum": checksum, "total_size": total_size}
        await self.client.request(self._state, frames.STREAM_CLOSE, payload, retry=True)

    async def stream_cancel(self, stream_id: str, reason: str | None = None) -> None:
        """Cancels a stream (its sender or its recipient): both get :class:`StreamCancelled`
        and the server deletes it. ``not_found`` for a stream that is gone."""
        payload: dict[str, Any] = {"stream_id": stream_id}
        if reason is not None:
            payload["reason"] = reason
        await self.client.request(self._state, frames.STREAM_CANCEL, payload, retry=False)

    async def stream_accept(self, stream_id: str, offset: int = 0) -> StreamOffer:
        """(Low level, recipient) ``stream_accept``: the server pushes the stream's bytes from
        ``offset`` (to resume: the bytes this agent has) as :class:`StreamData` events, at most
        4 MiB beyond the last :meth:`stream_ack`, then :class:`StreamEnd`. Returns the offer.
        Not sent again after a reconnect (the stream is offered again on the rejoin: accept
        it again then)."""
        payload = {"stream_id": stream_id, "offset": offset}
        return StreamOffer.from_wire(await self.client.request(self._state, frames.STREAM_ACCEPT, payload, retry=False))

    async def stream_ack(self, stream_id: str, offset: int, done: bool = False) -> None:
        """(Low level, recipient) ``stream_ack``: every byte before ``offset`` is safely
        received (the recipient's checkpoint; the sender gets :class:`StreamProgress`, and the
        window moves). ``done=True``, after :class:`StreamEnd` with ``offset`` its total size
        and the checksum verified, completes the stream. Sent again after a reconnect."""
        payload: dict[str, Any] = {"stream_id": stream_id, "offset": offset}
        if done:
            payload["done"] = True
        await self.client.request(self._state, frames.STREAM_ACK, payload, retry=True)

    def _route_stream(self, stream_id: str) -> asyncio.Queue[StreamEvent | End]:
        """Takes the events of ``stream_id`` away from :meth:`events`, into the queue returned
        (until :meth:`_unroute_stream`)."""
        state = self._state
        if stream_id in state.stream_routes:
            raise ConflictError(f"stream {stream_id} is being received already on this channel")
        if state.ended is not None:
            raise state.ended.error or ClosedError(state.ended.reason)
        route: asyncio.Queue[StreamEvent | End] = asyncio.Queue()
        state.stream_routes[stream_id] = route
        return route

    def _unroute_stream(self, stream_id: str, route: asyncio.Queue[StreamEvent | End]) -> None:
        if self._state.stream_routes.get(stream_id) is route:
            del self._state.stream_routes[stream_id]

    def _stream_ended(self, outcome: StreamOutcome) -> None:
        """Records how a stream ended as seen from here (the recipient completing it)."""
        self._state.stream_ended(outcome)

    async def next_event(self) -> ChannelEvent:
        """The next event; raises :class:`~switchboard.ClosedError` (or why the channel ended)
        once the stream has ended."""
        while True:
            item = await self._state.events.get()
            if isinstance(item, End):
                # Put it back so every later reader ends too.
                self._state.events.put_nowait(item)
                raise item.error or ClosedError(item.reason)
            if not self._state.is_stale(item):
                return item

    async def events(self) -> AsyncIterator[ChannelEvent]:
        """Every event in the order the server sent it: messages (replayed or live, never a
        duplicate), inbox messages (joined with ``inbox=True``), receipts (for publishes with
        ``receipt=True``), presence state and diffs, storage changes (joined with
        ``storage_events=True``), stream events (:class:`StreamOffer` for the recipient;
        :class:`StreamProgress`, :class:`StreamCheckpoint`, :class:`StreamComplete` for the
        sender; :class:`StreamCancelled` and :class:`StreamError` for both; :class:`StreamData`
        and :class:`StreamEnd` of streams accepted with the low-level :meth:`stream_accept`,
        while those of a :meth:`receive_stream` go to it), gaps, reconnect notices, and a final
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
    poll_source: PollSource | str | None = None,
) -> dict[str, Any]:
    """The wire ``HistoryQuery``: only the bounds that are set; ``poll_source`` checked and
    upper-cased."""
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
    if poll_source is not None:
        query["poll_source"] = poll_source_value(poll_source)
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
