"""One WebSocket connection, owned by a background task: heartbeats, ref → reply routing,
reconnect and resume.

Handles (:class:`Client`, :class:`~switchboard.channel.Channel`) register requests with the task
and await futures; the task alone reads the socket. When the socket drops, the task reconnects
with jittered exponential backoff (asking the key source for a fresh key each time), rejoins every
channel from the last offset it delivered, and re-sends the publishes that had no reply yet under
their original ids (the server deduplicates them), so the application sees neither a gap nor a
duplicate. Stream chunks in flight are re-sent the same way (the server keeps each ``seq`` once),
and the stream events of a stream being received go to its receiver
(:meth:`Channel.receive_stream`) rather than to the channel's event queue. This mirrors the Rust SDK (``crates/client/src/connection.rs``).

With a callable key source, a temporary key (``tk_…``) is kept alive in place: when the server
warns with ``key_expiring``, the task asks the key source for a fresh key and presents it with an
``auth`` event on the live socket, without reconnecting.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from . import frames
from .backoff import Backoff
from .channel import Channel, ChannelState, End, Push
from .discovery import AgentWatcher
from .errors import (
    ClosedError,
    CloseCode,
    ConflictError,
    ConnectionFailedError,
    DisconnectedError,
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    SwitchboardError,
    error_for,
    error_from_reply,
    parse_code,
)
from .tracker import OffsetTracker
from .types import (
    AGENT_MESSAGE_TYPE,
    DISCOVERY_CHANNEL,
    InboxMessage,
    JoinReply,
    Kicked,
    Message,
    PollSource,
    PresenceDiff,
    PresenceState,
    Receipt,
    Reconnected,
    Scope,
    StorageChange,
    StreamCancelled,
    StreamCheckpoint,
    StreamComplete,
    StreamData,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamOffer,
    StreamProgress,
    poll_source_value,
)

log = logging.getLogger("switchboard")

KeySource = Union[str, Callable[[], Union[str, Awaitable[str]]]]
"""An API key, or a callable returning a fresh one (sync or async) each time the SDK needs it."""

SOCKET_PATH = "socket/websocket"
VSN = "2.0.0"
MAX_NAME_LEN = 128
MAX_EVENT_TYPES = 64
# Bytes a frame adds around its payload and topic (refs, event name, JSON array).
FRAME_OVERHEAD = 64
# Incoming history pages can be large; the server bounds what it sends.
MAX_INCOMING_BYTES = 64 << 20
_NAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def valid_name(name: str) -> bool:
    """Whether ``name`` is a valid channel or agent name: 1–128 bytes of ``[A-Za-z0-9_.:@-]``."""
    return bool(_NAME.match(name)) and name.isascii()


@dataclass(frozen=True)
class ClientOptions:
    """How to behave on a flaky network. Times are in seconds."""

    heartbeat_interval: float = 20.0
    """How often to send a heartbeat; a connection silent for two intervals is dropped."""
    request_timeout: float = 10.0
    """How long connect, join, publish, history and presence wait for their reply."""
    backoff: Backoff = field(default_factory=Backoff)
    """Delays between reconnect attempts."""
    reconnect: bool = True
    """Reconnect and resume after the connection drops."""
    max_frame_bytes: int = 1 << 20
    """Largest frame this client sends; a bigger publish fails locally with
    ``frame_too_large`` instead of making the server close the connection."""
    auth: Literal["url", "event"] = "url"
    """Where the key goes: ``url`` (``?api_key=``) or ``event`` (an ``auth`` event after the
    upgrade, so the key never appears in a URL or an access log)."""


def _scheme(url: str, websocket: bool) -> tuple[str, Any]:
    parts = urlsplit(url)
    if not parts.hostname:
        raise InvalidRequestError(f"invalid url `{url}`: no host")
    schemes = {"ws": ("ws", "http"), "http": ("ws", "http"), "wss": ("wss", "https"), "https": ("wss", "https")}
    if parts.scheme not in schemes:
        raise InvalidRequestError(f"invalid url `{url}`: scheme `{parts.scheme}` is not ws, wss, http or https")
    return schemes[parts.scheme][0 if websocket else 1], parts


def _base_path(path: str) -> str:
    path = path.rstrip("/")
    if path.endswith(SOCKET_PATH):
        path = path[: -len(SOCKET_PATH)]
    return path.rstrip("/")


def socket_url(url: str, api_key: str | None) -> str:
    """The WebSocket URL: ``{url}/socket/websocket?vsn=2.0.0&api_key=…``."""
    scheme, parts = _scheme(url, websocket=True)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("vsn", "api_key")]
    query.append(("vsn", VSN))
    if api_key:
        query.append(("api_key", api_key))
    path = f"{_base_path(parts.path)}/{SOCKET_PATH}"
    return str(urlunsplit((scheme, parts.netloc, path, urlencode(query), "")))


def http_base_url(url: str) -> str:
    """The HTTP API base URL (no trailing slash): ``ws`` → ``http``, ``wss`` → ``https``."""
    scheme, parts = _scheme(url, websocket=False)
    return str(urlunsplit((scheme, parts.netloc, _base_path(parts.path), "", "")))


async def resolve_key(source: KeySource) -> str:
    """The key of a key source: the string itself, or what the callable returns now."""
    if isinstance(source, str):
        return source
    key = source()
    if inspect.isawaitable(key):
        key = await key
    if not isinstance(key, str):
        raise TypeError(f"the api_key callable returned {type(key).__name__}, not str")
    return key


@dataclass
class _Pending:
    """A reply the task is waiting for, by ref."""

    kind: Literal["heartbeat", "auth", "join", "leave", "push"]
    topic: str = ""
    push: Push | None = None
    future: asyncio.Future[Any] | None = None


class Client:
    """A connection to a Switchboard server, shared by every channel joined through it.

    Create it with :meth:`Client.connect`; join channels with :meth:`join`; close it with
    :meth:`close` (or ``async with``).
    """

    def __init__(self, url: str, api_key: KeySource, options: ClientOptions | None = None) -> None:
        socket_url(url, None)  # validates the URL early
        self.url = url
        self.options = options or ClientOptions()
        self._key_source = api_key
        self._key: str | None = None
        self._next_ref = 0
        self._next_seq = 0
        self._pending: dict[int, _Pending] = {}
        self._channels: dict[str, ChannelState] = {}
        self._outbox: asyncio.Queue[str | bytes] | None = None
        self._connected = False
        self._heard = False
        self._healthy = False
        self._heartbeat_ref: int | None = None
        self._socket_error: SwitchboardError | None = None
        self._end: End | None = None
        self._closed: SwitchboardError | None = None
        self._closing = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.connections = 0
        """How many sockets this client opened (1 + reconnects)."""

    @classmethod
    async def connect(cls, url: str, api_key: KeySource, options: ClientOptions | None = None) -> Client:
        """Connects and authenticates; fails if the first connection cannot be opened or the key
        is refused (``invalid_key``). Later drops are repaired in the background."""
        client = cls(url, api_key, options)
        ws = await client._open()
        client._task = asyncio.create_task(client._run(ws), name="switchboard-connection")
        try:
            await asyncio.wait_for(asyncio.shield(client._ready), client.options.request_timeout)
        except asyncio.TimeoutError:
            await client.close()
            raise RequestTimeoutError(f"no reply from the server within {client.options.request_timeout} s") from None
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_connected(self) -> bool:
        """Whether a socket is up right now (false while reconnecting and after close)."""
        return self._connected

    @property
    def closed(self) -> bool:
        """Whether the client has ended (closed, or refused for good)."""
        return self._closed is not None

    async def close(self) -> None:
        """Closes the connection: pending requests fail with :class:`ClosedError` and every
        channel's event stream ends."""
        self._closing.set()
        if self._task is not None and not self._task.done():
            await asyncio.gather(self._task, return_exceptions=True)
        if self._closed is None:
            self._shutdown(ClosedError("the client is closed"))

    async def wait_closed(self) -> SwitchboardError:
        """Waits until the client ends; returns why (e.g. an ``invalid_key`` refusal)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        assert self._closed is not None
        return self._closed

    async def join(
        self,
        channel: str,
        agent_name: str,
        *,
        password: str | None = None,
        scope: Scope = "private",
        since: int | None = None,
        epoch: str | None = None,
        event_types: list[str] | None = None,
        echo: bool = True,
        presence: bool = True,
        meta: dict[str, Any] | None = None,
        session_id: str | None = None,
        storage_events: bool = False,
        inbox: bool = False,
        poll_source: PollSource | str | None = None,
    ) -> Channel:
        """Joins ``channel`` as ``agent_name`` and waits for the server's reply.

        ``since`` replays every persisted message after that offset before live ones;
        ``event_types`` delivers only those message types; ``echo=False`` skips this agent's own
        messages; ``presence=False`` receives no presence events (the agent stays visible);
        ``meta`` is custom presence metadata; ``session_id`` takes over an earlier session of
        this agent name; ``storage_events=True`` delivers a :class:`StorageChange` event for
        every write to the channel's storage; ``inbox=True`` consumes this agent's durable inbox:
        persisted direct messages to it (those that waited while it was away first) arrive as
        :class:`InboxMessage` events, to settle with :meth:`Channel.ack` or
        :meth:`Channel.reject`, instead of as :class:`Message` (temporary keys need the
        ``inbox`` capability); ``poll_source`` is the storage tier this connection's history
        reads on the channel use when they name none (see :meth:`Channel.history`; default
        ``AUTO``). A reply with a gap is reported as the first event, a :class:`Gap`.
        """
        self._check_open()
        if not valid_name(channel):
            raise InvalidRequestError(
                f"`{channel}` is not a channel name: use 1–128 bytes of [A-Za-z0-9_.:@-]",
                ErrorCode.INVALID_CHANNEL_NAME,
            )
        if not valid_name(agent_name):
            raise InvalidRequestError(
                f"`{agent_name}` is not an agent name: use 1–128 bytes of [A-Za-z0-9_.:@-]",
                ErrorCode.INVALID_AGENT_NAME,
            )
        if event_types is not None and len(event_types) > MAX_EVENT_TYPES:
            raise InvalidRequestError(f"at most {MAX_EVENT_TYPES} event types per join", ErrorCode.INVALID_PAYLOAD)
        source = None if poll_source is None else poll_source_value(poll_source)
        topic = frames.CHANNEL_PREFIX + channel
        if topic in self._channels:
            raise ConflictError("this client already joined the channel; leave it first", ErrorCode.ALREADY_JOINED)
        params: dict[str, Any] = {"agent_name": agent_name, "scope": scope, "echo": echo, "presence": presence}
        optional = {
            "password": password,
            "since": since,
            "epoch": epoch,
            "event_types": event_types,
            "meta": meta,
            "session_id": session_id,
            "poll_source": source,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        if storage_events:
            params["kv_events"] = True
        if inbox:
            params["inbox"] = True
        first_join: asyncio.Future[JoinReply] = asyncio.get_running_loop().create_future()
        state = ChannelState(
            name=channel,
            topic=topic,
            params=params,
            tracker=OffsetTracker(since, epoch),
            first_join=first_join,
        )
        self._channels[topic] = state
        if self._connected:
            self._send_join(topic)
        try:
            await asyncio.wait_for(asyncio.shield(first_join), self.options.request_timeout)
        except asyncio.TimeoutError:
            self._leave(topic, state)
            raise RequestTimeoutError(f"no join reply within {self.options.request_timeout} s") from None
        return Channel(self, state)

    async def watch_agents(self, agent_name: str | None = None) -> AgentWatcher:
        """Joins the tenant's directory channel ``sys.discovery`` and returns the
        :class:`AgentWatcher` that reads its changes (``announced``, ``updated``, ``online``,
        ``offline``, ``removed``) as :class:`AgentUpdate` values: ``async for update in
        watcher``. ``agent_name`` is the name to join as (default: a random ``watcher-…``); a
        watcher is not counted online. Temporary keys need ``subscribe`` on ``sys.discovery``.
        """
        name = agent_name if agent_name is not None else f"watcher-{secrets.token_hex(4)}"
        channel = await self.join(DISCOVERY_CHANNEL, name, presence=False, event_types=[AGENT_MESSAGE_TYPE])
        return AgentWatcher(channel)

    async def reauthenticate(self) -> None:
        """Asks the key source for a fresh key and presents it on the live socket with an
        ``auth`` event (for short-lived keys). Reconnects use the latest key either way."""
        self._check_open()
        self._key = await resolve_key(self._key_source)
        if not self._connected:
            return
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        ref = self._ref()
        self._pending[ref] = _Pending("auth", future=future)
        self._write(frames.encode_text(None, str(ref), frames.PHOENIX_TOPIC, frames.AUTH, {"api_key": self._key}))
        try:
            await asyncio.wait_for(future, self.options.request_timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no auth reply within {self.options.request_timeout} s") from None

    # ------------------------------------------------------------------------------------------
    # Requests from channel handles

    async def request(self, state: ChannelState, event: str, payload: Any, retry: bool) -> Any:
        """Pushes ``event`` on a joined channel and waits for the reply's ``response``.

        ``payload`` is JSON-able, or ``bytes`` for a binary push. ``retry``: safe to send again
        after a reconnect (reads, and publishes with an id).
        """
        return await self.reply(self.start_request(state, event, payload, retry), event)

    def start_request(self, state: ChannelState, event: str, payload: Any, retry: bool) -> asyncio.Future[Any]:
        """Sends (or queues, while disconnected) a push now, in the order of the calls, and
        returns the future of its reply's ``response``; await it with :meth:`reply`. Lets a
        caller keep several requests in flight (stream chunks)."""
        self._check_open()
        size = (len(payload) if isinstance(payload, bytes) else len(json.dumps(payload, separators=(",", ":"))))
        size += len(state.topic) + FRAME_OVERHEAD
        if size > self.options.max_frame_bytes:
            raise InvalidRequestError(
                f"frame of {size} bytes exceeds the {self.options.max_frame_bytes}-byte frame limit; "
                "send smaller messages",
                ErrorCode.FRAME_TOO_LARGE,
            )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._next_seq += 1
        self._send_or_queue(Push(self._next_seq, state.topic, event, payload, retry, future))
        return future

    async def reply(self, future: asyncio.Future[Any], event: str) -> Any:
        """Waits for the reply of a :meth:`start_request` (at most the request timeout)."""
        try:
            return await asyncio.wait_for(future, self.options.request_timeout)
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no {event} reply within {self.options.request_timeout} s") from None

    async def leave(self, state: ChannelState) -> None:
        """Leaves a channel; its event stream ends."""
        self._leave(state.topic, state)

    def _leave(self, topic: str, state: ChannelState) -> None:
        if self._channels.get(topic) is not state:
            return
        del self._channels[topic]
        if state.join_ref is not None and self._connected:
            ref = self._ref()
            self._pending[ref] = _Pending("leave", topic)
            self._write(frames.encode_text(str(state.join_ref), str(ref), topic, frames.LEAVE, {}))
        state.end(ClosedError("the channel was left"))

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed
        if self._closing.is_set():
            raise ClosedError("the client is closed")

    # ------------------------------------------------------------------------------------------
    # The connection task

    async def _open(self) -> ClientConnection:
        """Opens one socket (one attempt, bounded by the request timeout)."""
        self._key = await resolve_key(self._key_source)
        url = socket_url(self.url, self._key if self.options.auth == "url" else None)
        try:
            ws = await ws_connect(
                url,
                compression=None,
                ping_interval=None,
                max_size=MAX_INCOMING_BYTES,
                open_timeout=self.options.request_timeout,
                close_timeout=1,
                user_agent_header="switchboard-python",
            )
        except InvalidStatus as e:
            try:
                body = json.loads(e.response.body or b"")
            except ValueError:
                body = None
            if isinstance(body, dict) and "code" in body:
                raise error_from_reply(body) from None
            raise ConnectionFailedError(f"the server refused the upgrade: HTTP {e.response.status_code}") from None
        except (OSError, InvalidHandshake) as e:
            raise ConnectionFailedError(f"cannot connect to {self.url}: {e}") from None
        except asyncio.TimeoutError:
            raise RequestTimeoutError(f"no WebSocket handshake within {self.options.request_timeout} s") from None
        self.connections += 1
        return ws

    async def _run(self, first: ClientConnection) -> None:
        ws: ClientConnection | None = first
        attempt = 0
        key_retried = False
        try:
            while True:
                if ws is not None:
                    end = await self._drive(ws)
                    if self._healthy:
                        attempt, key_retried = 0, False
                    if end.kind == "closed":
                        self._shutdown(ClosedError("the client is closed"))
                        return
                    if not self._ready.done():
                        # The first connection must work; its failure is the caller's error.
                        self._shutdown(end.error or ConnectionFailedError(end.reason))
                        return
                    if end.kind == "fatal":
                        assert end.error is not None
                        # A refused, revoked or expired key gets one more try when the key source
                        # can mint a new one.
                        refreshable = not isinstance(self._key_source, str) and not key_retried
                        if end.error.code not in _KEY_REFUSED or not refreshable:
                            log.warning("switchboard connection refused: %s", end.error)
                            self._shutdown(end.error)
                            return
                        key_retried = True
                    log.debug("switchboard connection lost: %s", end.reason)
                    self._on_disconnected()
                    if not self.options.reconnect:
                        self._shutdown(ConnectionFailedError(f"connection lost: {end.reason}"))
                        return
                delay = self.options.backoff.delay(attempt)
                attempt += 1
                try:
                    await asyncio.wait_for(self._closing.wait(), delay)
                    self._shutdown(ClosedError("the client is closed"))
                    return
                except asyncio.TimeoutError:
                    pass
                opening = asyncio.create_task(self._open())
                closing = asyncio.create_task(self._closing.wait())
                await asyncio.wait({opening, closing}, return_when=asyncio.FIRST_COMPLETED)
                closing.cancel()
                if not opening.done():
                    opening.cancel()
                    await asyncio.gather(opening, return_exceptions=True)
                    self._shutdown(ClosedError("the client is closed"))
                    return
                try:
                    ws = opening.result()
                except Exception as e:  # noqa: BLE001 - any failure means: try again later
                    log.debug("switchboard reconnect failed (attempt %d): %s", attempt, e)
                    ws = None
        finally:
            if self._closed is None:
                self._shutdown(ClosedError("the connection task ended"))

    async def _drive(self, ws: ClientConnection) -> End:
        """Runs one socket until it ends."""
        self._outbox = asyncio.Queue()
        self._connected = True
        self._heard = True
        self._healthy = False
        self._socket_error = None
        self._end = None
        self._heartbeat_ref = None
        ref = self._ref()
        if self.options.auth == "event":
            self._pending[ref] = _Pending("auth")
            self._write(frames.encode_text(None, str(ref), frames.PHOENIX_TOPIC, frames.AUTH, {"api_key": self._key}))
        else:
            # The first reply proves the key in the URL was accepted.
            self._pending[ref] = _Pending("heartbeat")
            self._write(frames.encode_text(None, str(ref), frames.PHOENIX_TOPIC, frames.HEARTBEAT, {}))
        for topic in list(self._channels):
            self._send_join(topic)
        reader = asyncio.create_task(self._read_loop(ws))
        writer = asyncio.create_task(self._write_loop(ws, self._outbox))
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        closing = asyncio.create_task(self._closing.wait())
        tasks = {reader, writer, heartbeat, closing}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                end = End("closed", "closed by the application")
            elif reader in done:
                end = reader.result()
            elif heartbeat in done:
                end = heartbeat.result()
            else:
                # A failed write: the reader reports the close code, if one arrives soon.
                try:
                    end = await asyncio.wait_for(asyncio.shield(reader), 1.0)
                except asyncio.TimeoutError:
                    end = End("lost", f"write failed: {writer.result()}")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._connected = False
            self._outbox = None
        try:
            await asyncio.wait_for(ws.close(), 1.0)
        except (asyncio.TimeoutError, OSError):
            pass
        return end

    async def _read_loop(self, ws: ClientConnection) -> End:
        while True:
            try:
                data = await ws.recv()
            except ConnectionClosed as e:
                return self._close_end(e)
            self._heard = True
            try:
                frame = frames.decode_text(data) if isinstance(data, str) else frames.decode_binary(data)
            except frames.FrameError as e:
                log.warning("ignoring an undecodable frame: %s", e)
                continue
            self._handle_frame(frame)
            if self._end is not None:
                return self._end

    def _close_end(self, e: ConnectionClosed) -> End:
        code = e.rcvd.code if e.rcvd is not None else 1006
        reason = e.rcvd.reason if e.rcvd is not None else ""
        text = f"closed by the server ({code} {reason})".rstrip()
        if CloseCode.should_reconnect(code):
            return End("lost", text)
        error = self._socket_error
        if error is None:
            error_code: ErrorCode | str
            try:
                error_code = CloseCode(code).error_code()
            except ValueError:
                error_code = parse_code(reason or "internal")
            error = error_for(error_code, f"the server closed the connection with code {code} {reason}".rstrip())
        return End("fatal", text, error)

    async def _write_loop(self, ws: ClientConnection, outbox: asyncio.Queue[str | bytes]) -> str:
        while True:
            item = await outbox.get()
            try:
                await ws.send(item)
            except ConnectionClosed as e:
                return str(e)

    async def _heartbeat_loop(self) -> End:
        period = max(self.options.heartbeat_interval, 0.01)
        while True:
            await asyncio.sleep(period)
            if not self._heard and self._heartbeat_ref is not None:
                return End("lost", "no heartbeat reply in time")
            self._heard = False
            self._purge_abandoned()
            ref = self._ref()
            self._heartbeat_ref = ref
            self._pending[ref] = _Pending("heartbeat")
            self._write(frames.encode_text(None, str(ref), frames.PHOENIX_TOPIC, frames.HEARTBEAT, {}))

    def _ref(self) -> int:
        self._next_ref += 1
        return self._next_ref

    def _write(self, item: str | bytes) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(item)

    def _send_join(self, topic: str) -> None:
        state = self._channels.get(topic)
        if state is None:
            return
        ref = self._ref()
        params = state.params if state.first_join is not None else state.tracker.resume_params(state.params, state.session_id)
        state.join_ref = ref
        state.joined = False
        self._pending[ref] = _Pending("join", topic)
        self._write(frames.encode_text(str(ref), str(ref), topic, frames.JOIN, params))

    def _send_or_queue(self, push: Push) -> None:
        state = self._channels.get(push.topic)
        if state is None:
            push.fail(NotFoundError("the channel is not joined on this client; join it first", ErrorCode.NOT_JOINED))
            return
        if not (self._connected and state.joined and state.join_ref is not None):
            state.queue.append(push)
            return
        ref = self._ref()
        join_ref = str(state.join_ref)
        if isinstance(push.payload, bytes):
            self._write(frames.encode_binary_push(join_ref, str(ref), push.topic, push.event, push.payload))
        else:
            self._write(frames.encode_text(join_ref, str(ref), push.topic, push.event, push.payload))
        self._pending[ref] = _Pending("push", push.topic, push=push)

    # ------------------------------------------------------------------------------------------
    # Incoming frames

    def _handle_frame(self, frame: frames.Frame) -> None:
        if frame.event == frames.REPLY:
            self._handle_reply(frame)
            return
        if frame.topic == frames.PHOENIX_TOPIC:
            if frame.event == frames.SOCKET_ERROR:
                error = error_from_reply(frame.payload)
                log.warning("switchboard socket error: %s", error)
                self._socket_error = error
            elif frame.event == frames.KEY_EXPIRING:
                self._on_key_expiring()
            return
        state = self._channels.get(frame.topic)
        if state is None:
            return
        # A frame of an earlier join of this topic (e.g. the close after a leave) is not ours.
        if frame.join_ref is not None and frame.join_ref != str(state.join_ref):
            return
        try:
            if frame.event == frames.MESSAGE:
                if isinstance(frame.payload, bytes):
                    header, attachments = frames.decode_envelope(frame.payload)
                    message = Message.from_wire(header, attachments)
                else:
                    message = Message.from_wire(frame.payload)
                if state.tracker.accept(message.offset):
                    state.events.put_nowait(message)
            elif frame.event == frames.PRESENCE_STATE:
                state.events.put_nowait(PresenceState.from_wire(frame.payload))
            elif frame.event == frames.PRESENCE_DIFF:
                state.events.put_nowait(PresenceDiff.from_wire(frame.payload))
            elif frame.event == frames.KV_CHANGE:
                state.events.put_nowait(StorageChange.from_wire(frame.payload))
            elif frame.event == frames.NEW_MESSAGE:
                # Not offset-tracked: a redelivery repeats the offset, and `since` never replays
                # inbox messages (they wait in the inbox instead).
                state.events.put_nowait(InboxMessage.from_wire(frame.payload))
            elif frame.event == frames.RECEIPT:
                state.events.put_nowait(Receipt.from_wire(frame.payload))
            elif frame.event == frames.STREAM_DATA:
                if not isinstance(frame.payload, bytes):
                    raise ProtocolError("stream_data is not a binary push")
                header, data = frames.decode_stream_envelope(frame.payload)
                state.deliver_stream(StreamData.from_wire(header, data))
            elif frame.event in _STREAM_EVENTS:
                state.deliver_stream(_STREAM_EVENTS[frame.event](frame.payload))
            elif frame.event == frames.KICKED:
                error = error_from_reply(frame.payload)
                state.kicked = error
                state.events.put_nowait(Kicked(error))
            elif frame.event == frames.CLOSE:
                del self._channels[frame.topic]
                reason = state.kicked or NotFoundError("the server closed the channel", ErrorCode.NOT_JOINED)
                state.end(reason)
            elif frame.event == frames.ERROR:
                # The channel crashed on the server: join again, resuming from the last offset.
                log.debug("channel error on %s; rejoining", frame.topic)
                self._send_join(frame.topic)
            else:
                log.debug("ignoring event %s on %s", frame.event, frame.topic)
        except (SwitchboardError, frames.FrameError) as e:
            log.warning("ignoring an unreadable %s on %s: %s", frame.event, frame.topic, e)

    def _on_key_expiring(self) -> None:
        """The temporary key expires soon: refresh it in place, if the key source can."""
        if isinstance(self._key_source, str):
            log.debug("the key expires soon and the key source is a fixed string")
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = asyncio.create_task(self._refresh_in_place(), name="switchboard-key-refresh")

    async def _refresh_in_place(self) -> None:
        try:
            await self.reauthenticate()
            log.debug("switchboard key refreshed in place")
        except Exception as e:  # noqa: BLE001 - the close that follows at expiry retries once
            log.warning("switchboard key refresh failed: %s", e)

    def _handle_reply(self, frame: frames.Frame) -> None:
        if frame.ref is None or not frame.ref.isdigit():
            return
        pending = self._pending.pop(int(frame.ref), None)
        if pending is None:
            return
        ok, response = _parse_reply(frame)
        if ok:
            self._healthy = True
            if not self._ready.done():
                self._ready.set_result(None)
        if pending.kind == "heartbeat":
            if self._heartbeat_ref == int(frame.ref):
                self._heartbeat_ref = None
        elif pending.kind == "auth":
            if not ok:
                # The server closes the socket with 4500 next; this is the reason.
                self._socket_error = response
            if pending.future is not None and not pending.future.done():
                if ok:
                    pending.future.set_result(response)
                else:
                    pending.future.set_exception(response)
        elif pending.kind == "push":
            assert pending.push is not None
            if ok:
                pending.push.succeed(response)
            else:
                pending.push.fail(response)
        elif pending.kind == "join":
            self._handle_join_reply(pending.topic, int(frame.ref), ok, response)

    def _handle_join_reply(self, topic: str, ref: int, ok: bool, response: Any) -> None:
        state = self._channels.get(topic)
        if state is None or state.join_ref != ref:
            return
        if ok:
            try:
                reply = JoinReply.from_wire(response)
            except ProtocolError as e:
                ok, response = False, e
        if not ok:
            error: SwitchboardError = response
            del self._channels[topic]
            if state.first_join is None:
                log.warning("rejoin of %s refused: %s", topic, error)
                state.events.put_nowait(Kicked(error))
            state.end(error)
            return
        state.joined = True
        state.tracker.on_join(reply)
        state.session_id = reply.session_id
        first = state.first_join
        state.first_join = None
        state.reply = reply
        if first is not None:
            if first.done():
                # The caller gave up (timeout) and left already.
                return
            first.set_result(reply)
        else:
            state.events.put_nowait(Reconnected(reply))
        if reply.gap is not None:
            state.events.put_nowait(reply.gap)
        waiting = sorted(state.queue, key=lambda p: p.seq)
        state.queue.clear()
        for push in waiting:
            if not push.future.done():
                self._send_or_queue(push)

    # ------------------------------------------------------------------------------------------
    # Disconnect and shutdown

    def _on_disconnected(self) -> None:
        """Moves requests in flight back to their channel's queue (or fails them), and marks
        every channel as needing a join on the next socket."""
        self._heartbeat_ref = None
        pending = list(self._pending.values())
        self._pending.clear()
        for p in pending:
            if p.future is not None and not p.future.done():
                p.future.set_exception(DisconnectedError("disconnected before the reply"))
            if p.push is None:
                continue
            state = self._channels.get(p.push.topic)
            if state is not None and p.push.retry:
                state.queue.append(p.push)
            else:
                p.push.fail(DisconnectedError("disconnected before the reply; the request may or may not have taken effect"))
        for state in self._channels.values():
            state.join_ref = None
            state.joined = False
            state.queue.sort(key=lambda p: p.seq)

    def _purge_abandoned(self) -> None:
        """Forgets requests whose callers stopped waiting (timed out or cancelled)."""
        for ref in [r for r, p in self._pending.items() if p.push is not None and p.push.future.done()]:
            del self._pending[ref]
        for state in self._channels.values():
            state.queue = [p for p in state.queue if not p.future.done()]

    def _shutdown(self, error: SwitchboardError) -> None:
        """Fails everything and ends every channel; later requests get ``error`` too."""
        if self._closed is not None:
            return
        self._closed = error
        self._connected = False
        if self._refreshing is not None:
            self._refreshing.cancel()
        if not self._ready.done():
            self._ready.set_exception(error)
            # Retrieved by `connect` when it is waiting; do not warn when nobody is.
            self._ready.exception()
        for p in self._pending.values():
            if p.push is not None:
                p.push.fail(error)
            elif p.future is not None and not p.future.done():
                p.future.set_exception(error)
        self._pending.clear()
        channels = list(self._channels.values())
        self._channels.clear()
        for state in channels:
            if not isinstance(error, ClosedError) and state.first_join is None:
                state.events.put_nowait(Kicked(error))
            state.end(error)


_STREAM_EVENTS: dict[str, Callable[[Any], StreamEvent]] = {
    frames.STREAM_OFFER: StreamOffer.from_wire,
    frames.STREAM_END: StreamEnd.from_wire,
    frames.STREAM_PROGRESS: StreamProgress.from_wire,
    frames.STREAM_CHECKPOINT: StreamCheckpoint.from_wire,
    frames.STREAM_COMPLETE: StreamComplete.from_wire,
    frames.STREAM_CANCELLED: StreamCancelled.from_wire,
    frames.STREAM_ERROR: StreamError.from_wire,
}

_KEY_REFUSED = frozenset({ErrorCode.INVALID_KEY, ErrorCode.KEY_REVOKED, ErrorCode.KEY_EXPIRED})


def _parse_reply(frame: frames.Frame) -> tuple[bool, Any]:
    """Reads a ``phx_reply``: ``(True, response)`` or ``(False, SwitchboardError)``."""
    status: Any
    if frame.status is not None:
        status = frame.status
        try:
            response = json.loads(frame.payload) if frame.payload else {}
        except ValueError:
            return False, ProtocolError("unreadable binary reply")
    else:
        if not isinstance(frame.payload, dict):
            return False, ProtocolError(f"unreadable reply: {frame.payload!r}")
        status = frame.payload.get("status")
        response = frame.payload.get("response", {})
    if status == "ok":
        return True, response
    if status == "error":
        return False, error_from_reply(response)
    return False, ProtocolError(f"unknown reply status {status!r}")


__all__ = ["Client", "ClientOptions", "KeySource", "http_base_url", "resolve_key", "socket_url", "valid_name"]
