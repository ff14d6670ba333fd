"""The values the SDK hands to applications, read from the wire shapes of spec/protocol.md."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, TypedDict, Union, cast

from .errors import (
    ErrorCode,
    InvalidRequestError,
    ProtocolError,
    StreamCancelledError,
    SwitchboardError,
    error_for,
    parse_code,
)

Scope = Literal["private", "public"]
Direction = Literal["forward", "backward"]


def _get(obj: Any, key: str, kind: type | tuple[type, ...], what: str, optional: bool = False) -> Any:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected an object, got {obj!r}")
    value = obj.get(key)
    if value is None and optional:
        return None
    # bool is an int in Python; offsets and sizes must not accept it.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{what}: field `{key}` is missing or has the wrong type: {value!r}")
    return value


@dataclass(frozen=True)
class Message:
    """A message delivered to an agent or read from history."""

    id: str
    """Client-chosen or server-generated id."""
    offset: int | None
    """Position in the channel's total order; ``None`` for ephemeral messages."""
    channel: str
    sender: str
    """The agent that sent it (``from`` on the wire; ``http`` for HTTP publishes)."""
    to: str | None
    """The addressed agent; ``None`` for broadcasts."""
    type: str
    data: Any
    ts: int
    """Server receive time, milliseconds since the Unix epoch."""
    ephemeral: bool = False
    attachments: list[bytes] = field(default_factory=list)

    @staticmethod
    def from_wire(obj: Any, attachments: list[bytes] | None = None) -> Message:
        """Reads a message object; attachments come separately from a binary envelope, or as
        base64 strings inside ``obj``."""
        what = "message"
        if attachments is None:
            encoded = obj.get("attachments", []) if isinstance(obj, dict) else []
            try:
                attachments = [base64.b64decode(a, validate=True) for a in encoded]
            except (TypeError, ValueError):
                raise ProtocolError("message: attachments are not base64 strings") from None
        return Message(
            id=_get(obj, "id", str, what),
            offset=_get(obj, "offset", int, what, optional=True),
            channel=_get(obj, "channel", str, what),
            sender=_get(obj, "from", str, what),
            to=_get(obj, "to", str, what, optional=True),
            type=_get(obj, "type", str, what),
            data=obj.get("data"),
            ts=_get(obj, "ts", int, what),
            ephemeral=bool(obj.get("ephemeral", False)),
            attachments=attachments,
        )


@dataclass(frozen=True)
class PublishAck:
    """The reply to a publish: for persisted messages, sent once the message is durable."""

    id: str
    offset: int | None
    """``None`` for ephemeral messages."""
    duplicate: bool = False
    """True when the id was seen before: ``offset`` is the original message's."""

    @staticmethod
    def from_wire(obj: Any) -> PublishAck:
        return PublishAck(
            id=_get(obj, "id", str, "publish ack"),
            offset=_get(obj, "offset", int, "publish ack", optional=True),
            duplicate=bool(obj.get("duplicate", False)),
        )


@dataclass(frozen=True)
class Gap:
    """Messages between the resume point and ``first_available`` are gone."""

    reason: str
    """``retention`` or ``epoch_changed``."""
    first_available: int

    @staticmethod
    def from_wire(obj: Any) -> Gap:
        return Gap(_get(obj, "reason", str, "gap"), _get(obj, "first_available", int, "gap"))


@dataclass(frozen=True)
class JoinReply:
    """The server's reply to a (re)join."""

    channel: str
    scope: str
    agent_name: str
    session_id: str
    """Present it in a later join (``session_id=``) to take the agent name over."""
    epoch: str
    head: int
    """The last persisted offset at join time (0 when empty)."""
    persistent: bool
    gap: Gap | None = None

    @staticmethod
    def from_wire(obj: Any) -> JoinReply:
        what = "join reply"
        gap = obj.get("gap") if isinstance(obj, dict) else None
        return JoinReply(
            channel=_get(obj, "channel", str, what),
            scope=_get(obj, "scope", str, what),
            agent_name=_get(obj, "agent_name", str, what),
            session_id=_get(obj, "session_id", str, what),
            epoch=_get(obj, "epoch", str, what),
            head=_get(obj, "head", int, what),
            persistent=_get(obj, "persistent", bool, what),
            gap=Gap.from_wire(gap) if gap is not None else None,
        )


class PollSource(str, Enum):
    """The storage tier a history read is served from (``poll_source`` on the wire).

    A channel keeps its messages in up to three tiers that share one offset space: the
    **cache** (an in-memory ring of the newest messages), the **log** (durable, the point of
    acknowledgement, retention-limited) and the **database** (permanent, written from the log
    asynchronously, so its newest messages may trail the log by a moment). Wherever the SDK
    takes a source it also takes its name as a string in any case (``"cache"``, ``"Log"``…);
    ``PollSource("kafka")`` works too.
    """

    CACHE = "CACHE"
    """The in-memory ring of recent messages only."""
    LOG = "LOG"
    """The durable log only."""
    KAFKA = "KAFKA"
    """The log's other name (the server reads the log; replies name the tier ``LOG``)."""
    DATABASE = "DATABASE"
    """The database only: every message the channel keeps, but possibly not the newest yet."""
    AUTO = "AUTO"
    """Cache, then log, then database, stitched by offset without gaps or duplicates (the
    server's default)."""

    @classmethod
    def _missing_(cls, value: object) -> PollSource | None:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.upper():
                    return member
        return None

    @classmethod
    def parse(cls, value: PollSource | str) -> PollSource:
        """The source a name stands for, in any case; ``invalid_payload``
        (:class:`~switchboard.InvalidRequestError`) for anything else."""
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                pass
        names = ", ".join(m.value.lower() for m in cls)
        raise InvalidRequestError(f"unknown poll_source {value!r}: use one of {names}", ErrorCode.INVALID_PAYLOAD)


def poll_source_value(value: PollSource | str) -> str:
    """The wire name of a source (upper case), checked: see :meth:`PollSource.parse`."""
    return PollSource.parse(value).value


class Tier(str, Enum):
    """A storage tier, as a history page names the one that served a range
    (:attr:`TierRange.tier`). Compares equal to its wire name: ``Tier.CACHE == "CACHE"``."""

    CACHE = "CACHE"
    LOG = "LOG"
    DATABASE = "DATABASE"


@dataclass(frozen=True)
class TierRange:
    """One tier's part of a history page: it served the offsets ``from_offset`` to
    ``to_offset`` (both inclusive; ``from``/``to`` on the wire). A range covers what the tier
    examined, so it may hold fewer messages than offsets when filters (``sender``, ``type``…)
    left some out."""

    tier: Tier
    from_offset: int
    to_offset: int

    @staticmethod
    def from_wire(obj: Any) -> TierRange:
        what = "tier range"
        tier = _get(obj, "tier", str, what)
        try:
            parsed = Tier(tier)
        except ValueError:
            raise ProtocolError(f"{what}: unknown tier {tier!r}") from None
        return TierRange(parsed, _get(obj, "from", int, what), _get(obj, "to", int, what))


@dataclass(frozen=True)
class HistoryPage:
    """One page of history."""

    messages: list[Message]
    epoch: str
    head: int
    first_available: int
    next: int | None = None
    """Set when ``limit`` cut the page short: the next bound to read from."""
    sources: list[TierRange] = field(default_factory=list)
    """Which storage tier served which offsets, in ascending offset order whatever the
    direction (e.g. ``[LOG 1–3, CACHE 4–8]`` for an ``AUTO`` read); empty from servers without
    storage tiers."""

    @staticmethod
    def from_wire(obj: Any) -> HistoryPage:
        what = "history page"
        sources = _get(obj, "sources", list, what, optional=True) or []
        return HistoryPage(
            messages=[Message.from_wire(m) for m in _get(obj, "messages", list, what)],
            epoch=_get(obj, "epoch", str, what),
            head=_get(obj, "head", int, what),
            first_available=_get(obj, "first_available", int, what),
            next=_get(obj, "next", int, what, optional=True),
            sources=[TierRange.from_wire(r) for r in sources],
        )


StoragePolicy = Literal["persistent", "log", "cache", "ephemeral"]
"""Which tiers a channel keeps its messages in: ``persistent`` (cache, log and database; the
default), ``log`` (cache and log: durable for the log's retention, no database), ``cache``
(memory only: offsets and history, but a restart starts a new epoch) or ``ephemeral`` (nothing
stored, no offsets)."""


class CacheRetention(TypedDict, total=False):
    """A channel's cache bounds (``retention.cache``); absent or 0: the server's default."""

    max_messages: int
    """Most messages held in memory."""
    max_bytes: int
    """Most bytes (encoded frames) held in memory."""
    ttl_secs: int
    """Messages older than this leave the cache."""


class LogRetention(TypedDict, total=False):
    """A channel's log retention (``retention.log``); absent or 0: the server-wide one only."""

    max_age_secs: int
    """Messages older than this are no longer read from the log (but still from the database,
    for a persistent channel)."""


class Retention(TypedDict, total=False):
    """How long a channel keeps its messages (0 = unlimited), as :class:`ChannelInfo` reports
    it."""

    max_messages: int
    """Most messages kept (every tier)."""
    max_age_secs: int
    """Oldest message age, in seconds (every tier)."""
    cache: CacheRetention
    log: LogRetention


@dataclass(frozen=True)
class PresenceMeta:
    """One session of an agent in a channel."""

    phx_ref: str
    agent_name: str
    joined_at: int
    meta: dict[str, Any] = field(default_factory=dict)


def _presence_map(obj: Any, what: str) -> dict[str, list[PresenceMeta]]:
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what}: expected an object")
    out: dict[str, list[PresenceMeta]] = {}
    for name, entry in obj.items():
        metas = _get(entry, "metas", list, what)
        out[name] = [
            PresenceMeta(
                phx_ref=_get(m, "phx_ref", str, what),
                agent_name=_get(m, "agent_name", str, what),
                joined_at=_get(m, "joined_at", int, what),
                meta=m.get("meta") or {},
            )
            for m in metas
        ]
    return out


@dataclass(frozen=True)
class PresenceState:
    """Who is in a channel: agent name → its sessions (the Phoenix ``presence_state`` shape)."""

    agents: dict[str, list[PresenceMeta]]

    def names(self) -> list[str]:
        """The names of the agents present, sorted."""
        return sorted(self.agents)

    @staticmethod
    def from_wire(obj: Any) -> PresenceState:
        return PresenceState(_presence_map(obj, "presence state"))


@dataclass(frozen=True)
class PresenceDiff:
    """Agents that joined or left since the last state or diff."""

    joins: dict[str, list[PresenceMeta]]
    leaves: dict[str, list[PresenceMeta]]

    @staticmethod
    def from_wire(obj: Any) -> PresenceDiff:
        joins = obj.get("joins", {}) if isinstance(obj, dict) else None
        leaves = obj.get("leaves", {}) if isinstance(obj, dict) else None
        return PresenceDiff(_presence_map(joins, "presence diff"), _presence_map(leaves, "presence diff"))


@dataclass(frozen=True)
class Reconnected:
    """The connection dropped and the channel was joined again; replayed messages follow."""

    reply: JoinReply


@dataclass(frozen=True)
class Kicked:
    """The agent was removed from the channel (or its rejoin was refused); the stream ends next."""

    error: SwitchboardError


@dataclass(frozen=True)
class StorageEntry:
    """One entry of the channel's storage."""

    key: str
    value: Any
    """Any JSON value."""
    version: int
    """Starts at 1 and grows by one per write; pass it as ``version=`` to write only if unchanged."""
    updated_at: int
    """Server time of the last write, milliseconds since the Unix epoch."""
    updated_by: str
    """The agent that wrote it last (``http`` for the HTTP API)."""
    expires_at: int | None = None
    """When an entry written with ``ttl_secs`` expires, milliseconds since the Unix epoch."""

    @staticmethod
    def from_wire(obj: Any) -> StorageEntry:
        what = "storage entry"
        return StorageEntry(
            key=_get(obj, "key", str, what),
            value=obj.get("value"),
            version=_get(obj, "version", int, what),
            updated_at=_get(obj, "updated_at", int, what),
            updated_by=_get(obj, "updated_by", str, what),
            expires_at=_get(obj, "expires_at", int, what, optional=True),
        )


@dataclass(frozen=True)
class StoragePage:
    """One page of ``storage.list``, in key order."""

    entries: list[StorageEntry]
    next: str | None = None
    """Set when ``limit`` cut the page short: pass it as ``after=`` for the next page."""

    @staticmethod
    def from_wire(obj: Any) -> StoragePage:
        what = "storage page"
        return StoragePage(
            entries=[StorageEntry.from_wire(e) for e in _get(obj, "entries", list, what)],
            next=_get(obj, "next", str, what, optional=True),
        )


StorageOp = Literal["put", "delete"]


@dataclass(frozen=True)
class StorageChange:
    """The channel's storage changed (delivered to agents joined with ``storage_events=True``)."""

    key: str
    op: StorageOp
    version: int
    """The version the write produced (for a delete: the version deleted)."""
    value: Any
    """The new value; ``None`` for a delete."""
    updated_by: str
    """The agent that wrote (``http`` for the HTTP API)."""

    @staticmethod
    def from_wire(obj: Any) -> StorageChange:
        what = "kv_change"
        op = _get(obj, "op", str, what)
        if op not in ("put", "delete"):
            raise ProtocolError(f"{what}: unknown op {op!r}")
        return StorageChange(
            key=_get(obj, "key", str, what),
            op="put" if op == "put" else "delete",
            version=_get(obj, "version", int, what),
            value=obj.get("value"),
            updated_by=_get(obj, "updated_by", str, what),
        )


@dataclass(frozen=True)
class InboxMessage:
    """A message from this agent's durable inbox (joined with ``inbox=True``, or leased with
    :meth:`HttpClient.inbox_receive`).

    Settle it with ``ack(message.id)`` once handled, or ``reject(message.id, reason)``; one left
    unsettled comes back after the server's visibility timeout (30 s by default) with
    ``delivery_count + 1``, and at once when this consumer leaves or its connection drops.
    Delivery is at-least-once: make handling idempotent, or dedupe by ``message.id``.
    """

    delivery_count: int
    """How many times it was delivered, this delivery included (1 the first time)."""
    message: Message

    @property
    def id(self) -> str:
        """The message id, to ``ack`` or ``reject`` it by."""
        return self.message.id

    @staticmethod
    def from_wire(obj: Any) -> InboxMessage:
        what = "inbox message"
        return InboxMessage(
            delivery_count=_get(obj, "delivery_count", int, what),
            message=Message.from_wire(_get(obj, "message", dict, what)),
        )


ReceiptStatus = Literal["delivered", "acknowledged", "rejected", "dead_lettered"]
_RECEIPT_STATUSES: tuple[ReceiptStatus, ...] = ("delivered", "acknowledged", "rejected", "dead_lettered")


@dataclass(frozen=True)
class Receipt:
    """What became of a direct message this agent published with ``receipt=True``.

    Sent while this agent is in the channel (receipts are not stored): ``delivered`` (first
    delivery to the recipient), ``acknowledged``, ``rejected`` (with the recipient's reason; it
    comes back to the recipient) and ``dead_lettered`` (``reason``: the recipient's,
    ``max_rejections``, ``rejected``, ``max_deliveries`` or ``expired``).
    """

    id: str
    """The message id (``PublishAck.id`` of the publish)."""
    to: str
    """The recipient."""
    status: ReceiptStatus
    delivery_count: int
    """Deliveries so far."""
    reason: str | None = None
    """The rejection or dead-letter reason."""

    @staticmethod
    def from_wire(obj: Any) -> Receipt:
        what = "receipt"
        status = _get(obj, "status", str, what)
        if status not in _RECEIPT_STATUSES:
            raise ProtocolError(f"{what}: unknown status {status!r}")
        return Receipt(
            id=_get(obj, "id", str, what),
            to=_get(obj, "to", str, what),
            status=cast(ReceiptStatus, status),
            delivery_count=_get(obj, "delivery_count", int, what),
            reason=_get(obj, "reason", str, what, optional=True),
        )


@dataclass(frozen=True)
class DeadLetter:
    """A direct message that left its recipient's inbox without being acknowledged."""

    message: Message
    recipient: str
    """The agent it was addressed to."""
    delivery_count: int
    """How often it was delivered."""
    rejections: int
    """How often it was rejected."""
    reason: str
    """``max_deliveries``, ``max_rejections``, ``rejected``, ``expired``, or the recipient's
    reason."""
    dead_at: int
    """When it became a dead letter, milliseconds since the Unix epoch."""

    @staticmethod
    def from_wire(obj: Any) -> DeadLetter:
        what = "dead letter"
        return DeadLetter(
            message=Message.from_wire(_get(obj, "message", dict, what)),
            recipient=_get(obj, "recipient", str, what),
            delivery_count=_get(obj, "delivery_count", int, what),
            rejections=_get(obj, "rejections", int, what),
            reason=_get(obj, "reason", str, what),
            dead_at=_get(obj, "dead_at", int, what),
        )


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of a channel's dead letters, oldest first."""

    entries: list[DeadLetter]
    next: str | None = None
    """Set when ``limit`` cut the page short: pass it as ``after=`` for the next page."""

    @staticmethod
    def from_wire(obj: Any) -> DeadLetterPage:
        what = "dead letter page"
        return DeadLetterPage(
            entries=[DeadLetter.from_wire(e) for e in _get(obj, "entries", list, what)],
            next=_get(obj, "next", str, what, optional=True),
        )


DISCOVERY_CHANNEL = "sys.discovery"
"""The tenant's private channel where the server announces every change of its agent directory,
as ephemeral messages of type :data:`AGENT_MESSAGE_TYPE` from ``switchboard``. Agents may join
it (they are not counted online there); only the server publishes in it."""
AGENT_MESSAGE_TYPE = "agent"
"""The message type of directory changes on :data:`DISCOVERY_CHANNEL`."""
DISCOVERY_SENDER = "switchboard"
"""The sender of directory changes."""

AgentChange = Literal["announced", "updated", "online", "offline", "removed"]
_AGENT_CHANGES: tuple[AgentChange, ...] = ("announced", "updated", "online", "offline", "removed")


@dataclass(frozen=True)
class AgentCard:
    """An agent of the tenant's directory: what it announced, and whether it is online now."""

    name: str
    """Its agent name."""
    capabilities: list[str]
    """What it can do, e.g. ``["translate", "summarize"]``."""
    metadata: dict[str, Any]
    """Anything else it announced (status, price, reputation…): a JSON object."""
    online: bool
    """Whether it is present in one of the tenant's channels now (``sys.`` channels excepted)."""
    updated_at: int
    """When it last announced or updated its metadata, milliseconds since the Unix epoch."""

    @staticmethod
    def from_wire(obj: Any) -> AgentCard:
        what = "agent card"
        capabilities = _get(obj, "capabilities", list, what)
        if not all(isinstance(c, str) for c in capabilities):
            raise ProtocolError(f"{what}: capabilities are not strings: {capabilities!r}")
        return AgentCard(
            name=_get(obj, "name", str, what),
            capabilities=list(capabilities),
            metadata=dict(_get(obj, "metadata", dict, what)),
            online=_get(obj, "online", bool, what),
            updated_at=_get(obj, "updated_at", int, what),
        )


def agent_cards(obj: Any) -> list[AgentCard]:
    """The cards of a ``discover`` reply ``{agents: [card…]}``."""
    return [AgentCard.from_wire(a) for a in _get(obj, "agents", list, "discover reply")]


@dataclass(frozen=True)
class AgentUpdate:
    """A change of the tenant's agent directory, as announced on :data:`DISCOVERY_CHANNEL`.

    ``change`` is ``announced`` (it announced itself, again or for the first time), ``updated``
    (its metadata changed), ``online`` (it joined a first channel), ``offline`` (it left its
    last one) or ``removed`` (its card was deleted); ``agent`` is its card as it is now (for
    ``removed``: as it was).
    """

    change: AgentChange
    agent: AgentCard

    @staticmethod
    def from_wire(obj: Any) -> AgentUpdate:
        what = "agent update"
        change = _get(obj, "change", str, what)
        if change not in _AGENT_CHANGES:
            raise ProtocolError(f"{what}: unknown change {change!r}")
        return AgentUpdate(change=cast(AgentChange, change), agent=AgentCard.from_wire(_get(obj, "agent", dict, what)))

    @staticmethod
    def from_message(message: Message) -> AgentUpdate | None:
        """The update a message of the discovery channel carries; ``None`` for a message that
        is not a directory change."""
        if message.type != AGENT_MESSAGE_TYPE or message.sender != DISCOVERY_SENDER:
            return None
        return AgentUpdate.from_wire(message.data)


def _meta(obj: Any, what: str) -> dict[str, Any]:
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ProtocolError(f"{what}: meta is not an object: {meta!r}")
    return dict(meta)


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream stands on the server: the reply to ``stream_open`` and ``stream_chunk``."""

    stream_id: str
    next_seq: int
    """The ``seq`` of the next chunk to send."""
    offset: int
    """Bytes the server holds (the next chunk's first byte)."""

    @staticmethod
    def from_wire(obj: Any) -> StreamPosition:
        what = "stream position"
        return StreamPosition(
            stream_id=_get(obj, "stream_id", str, what),
            next_seq=_get(obj, "next_seq", int, what),
            offset=_get(obj, "offset", int, what),
        )


@dataclass(frozen=True)
class StreamOffer:
    """A stream for this agent (the recipient): receive it with :meth:`Channel.receive_stream`,
    or refuse it with :meth:`Channel.stream_cancel`.

    Sent when the stream opens, and again on every join of the recipient while the stream
    exists (after a reconnect too), with ``acked``: how far the recipient got.
    """

    stream_id: str
    sender: str
    """The sending agent (``from`` on the wire)."""
    name: str | None = None
    """The payload's name, e.g. a file name."""
    size: int | None = None
    """The size the sender announced, when it did."""
    content_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """The sender's metadata (a JSON object)."""
    acked: int = 0
    """Bytes the recipient acknowledged already: a resume starts at most here."""

    @staticmethod
    def from_wire(obj: Any) -> StreamOffer:
        what = "stream offer"
        return StreamOffer(
            stream_id=_get(obj, "stream_id", str, what),
            sender=_get(obj, "from", str, what),
            name=_get(obj, "name", str, what, optional=True),
            size=_get(obj, "size", int, what, optional=True),
            content_type=_get(obj, "content_type", str, what, optional=True),
            meta=_meta(obj, what),
            acked=_get(obj, "acked", int, what, optional=True) or 0,
        )


@dataclass(frozen=True)
class StreamData:
    """Bytes of a stream this agent accepted, starting at ``offset`` (for applications that
    receive with the low-level methods; :meth:`Channel.receive_stream` consumes them itself)."""

    stream_id: str
    offset: int
    data: bytes

    @staticmethod
    def from_wire(header: Any, data: bytes) -> StreamData:
        what = "stream data"
        return StreamData(
            stream_id=_get(header, "stream_id", str, what), offset=_get(header, "offset", int, what), data=data
        )


@dataclass(frozen=True)
class StreamEnd:
    """Every byte of an accepted stream was sent (the recipient verifies, then acknowledges with
    ``done``)."""

    stream_id: str
    checksum: str
    """Hex SHA-256 of the whole payload."""
    total_size: int

    @staticmethod
    def from_wire(obj: Any) -> StreamEnd:
        what = "stream end"
        return StreamEnd(
            stream_id=_get(obj, "stream_id", str, what),
            checksum=_get(obj, "checksum", str, what),
            total_size=_get(obj, "total_size", int, what),
        )


@dataclass(frozen=True)
class StreamProgress:
    """(Sender) the recipient acknowledged ``offset`` bytes: its checkpoint."""

    stream_id: str
    offset: int

    @staticmethod
    def from_wire(obj: Any) -> StreamProgress:
        what = "stream progress"
        return StreamProgress(stream_id=_get(obj, "stream_id", str, what), offset=_get(obj, "offset", int, what))


@dataclass(frozen=True)
class StreamCheckpoint:
    """(Sender) the server made the bytes up to ``offset`` (chunks before ``next_seq``) durable:
    after a server restart, :meth:`Channel.resume_stream` continues from here."""

    stream_id: str
    next_seq: int
    offset: int

    @staticmethod
    def from_wire(obj: Any) -> StreamCheckpoint:
        what = "stream checkpoint"
        return StreamCheckpoint(
            stream_id=_get(obj, "stream_id", str, what),
            next_seq=_get(obj, "next_seq", int, what),
            offset=_get(obj, "offset", int, what),
        )


@dataclass(frozen=True)
class StreamComplete:
    """(Sender) the recipient has every byte and verified the checksum; the server forgot the
    stream."""

    stream_id: str
    total_size: int

    @staticmethod
    def from_wire(obj: Any) -> StreamComplete:
        what = "stream complete"
        return StreamComplete(
            stream_id=_get(obj, "stream_id", str, what), total_size=_get(obj, "total_size", int, what)
        )


@dataclass(frozen=True)
class StreamCancelled:
    """(Both sides) the stream was cancelled by agent ``by``; it is gone."""

    stream_id: str
    by: str
    reason: str | None = None

    @staticmethod
    def from_wire(obj: Any) -> StreamCancelled:
        what = "stream cancelled"
        return StreamCancelled(
            stream_id=_get(obj, "stream_id", str, what),
            by=_get(obj, "by", str, what),
            reason=_get(obj, "reason", str, what, optional=True),
        )

    def error(self) -> SwitchboardError:
        """The exception that stands for it: :class:`~switchboard.StreamCancelledError`."""
        return StreamCancelledError(self.stream_id, self.by, self.reason)


@dataclass(frozen=True)
class StreamError:
    """(Both sides) the stream failed and is gone: ``code`` ``checksum_mismatch`` (the bytes do
    not match what the sender closed it with), ``not_found`` (idle too long)…

    An event, not an exception: :meth:`error` is the exception."""

    stream_id: str
    code: Any
    """An :class:`~switchboard.ErrorCode` (or the code's text, for codes this version lacks)."""
    message: str

    @staticmethod
    def from_wire(obj: Any) -> StreamError:
        what = "stream error"
        return StreamError(
            stream_id=_get(obj, "stream_id", str, what),
            code=parse_code(_get(obj, "code", str, what)),
            message=_get(obj, "message", str, what, optional=True) or "",
        )

    def error(self) -> SwitchboardError:
        """The exception of its code (``checksum_mismatch``: :class:`InvalidRequestError`)."""
        return error_for(self.code, f"stream {self.stream_id} failed: {self.message}")


StreamOutcome = Union[StreamComplete, StreamCancelled, StreamError]
"""How a stream ended."""

StreamEvent = Union[
    StreamOffer, StreamData, StreamEnd, StreamProgress, StreamCheckpoint, StreamComplete, StreamCancelled, StreamError
]
"""An event of one stream."""


@dataclass(frozen=True)
class Sent:
    """A stream that was sent and closed: the server holds every byte and checked them against
    ``checksum`` and ``total_size``. The recipient may not have them yet (see
    :meth:`Channel.wait_stream`)."""

    stream_id: str
    total_size: int
    checksum: str
    """Hex SHA-256 of the payload."""


@dataclass(frozen=True)
class Received:
    """A stream that was received whole, verified against its SHA-256 and size, and
    acknowledged (its sender got :class:`StreamComplete`)."""

    stream_id: str
    total_size: int
    checksum: str
    """Hex SHA-256 of the payload."""
    resumed_from: int = 0
    """Bytes the sink held already when it started (a resume), 0 otherwise."""


ChannelEvent = Union[
    Message,
    PresenceState,
    PresenceDiff,
    Gap,
    Reconnected,
    Kicked,
    StorageChange,
    InboxMessage,
    Receipt,
    StreamOffer,
    StreamData,
    StreamEnd,
    StreamProgress,
    StreamCheckpoint,
    StreamComplete,
    StreamCancelled,
    StreamError,
]
"""Something that happened in a joined channel, in the order the server sent it."""
