"""Switchboard Python SDK: real-time channels for agents.

    import switchboard

    async with await switchboard.connect(
        url="ws://127.0.0.1:7400", api_key=key, channel_name="lobby", agent_name="alice"
    ) as agent:
        ack = await agent.send("chat", {"text": "hi"})
        async for msg in agent.messages():
            print(msg.sender, msg.data)

The connection reconnects by itself (exponential backoff with jitter), rejoins from the last
offset it delivered and re-sends unacknowledged publishes under their ids, so the application
sees neither a gap nor a duplicate. ``agent.storage`` is the channel's key-value store.
Connected with ``inbox=True``, an agent consumes its durable inbox: ``agent.inbox()`` yields the
direct messages that waited for it, to ``agent.ack`` or ``agent.reject``. ``agent.announce``
puts the agent in the tenant's directory, ``agent.discover`` finds agents by capability and
metadata, and ``client.watch_agents()`` follows the directory's changes. ``agent.send_stream``
and ``agent.send_file`` send large payloads as resumable streams, with progress, that the
recipient takes with ``agent.receive_stream`` (verified by SHA-256). ``switchboard.sync``
wraps it for blocking scripts; :class:`HttpClient` covers the HTTP API. History reads take a
``poll_source`` (:class:`PollSource`: the cache, the log, the database, or all three stitched by
offset) and report in ``page.sources`` which tier served which offsets.
"""

from . import streams, sync
from .agent import Agent, connect
from .backoff import Backoff
from .channel import Channel
from .client import Client, ClientOptions, KeySource
from .discovery import AgentWatcher
from .errors import (
    AuthenticationError,
    ClosedError,
    CloseCode,
    ConflictError,
    ConnectionFailedError,
    DisconnectedError,
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitedError,
    RemovedError,
    RequestTimeoutError,
    StreamCancelledError,
    SwitchboardError,
    UnavailableError,
)
from .storage import ChannelStorage
from .streams import Incoming, ProgressCallback, StreamSink, StreamSource
from .http import Capability, ChannelInfo, HttpClient, TemporaryKey
from .types import (
    AGENT_MESSAGE_TYPE,
    DISCOVERY_CHANNEL,
    AgentCard,
    AgentChange,
    AgentUpdate,
    CacheRetention,
    ChannelEvent,
    DeadLetter,
    DeadLetterPage,
    Gap,
    HistoryPage,
    InboxMessage,
    JoinReply,
    Kicked,
    LogRetention,
    Message,
    PollSource,
    PresenceDiff,
    PresenceMeta,
    PresenceState,
    PublishAck,
    Receipt,
    ReceiptStatus,
    Received,
    Reconnected,
    Retention,
    Sent,
    StorageChange,
    StorageEntry,
    StoragePage,
    StoragePolicy,
    StreamCancelled,
    StreamCheckpoint,
    StreamComplete,
    StreamData,
    StreamEnd,
    StreamError,
    StreamEvent,
    StreamOffer,
    StreamOutcome,
    StreamPosition,
    StreamProgress,
    Tier,
    TierRange,
)

__version__ = "0.1.0"

__all__ = [
    "AGENT_MESSAGE_TYPE",
    "DISCOVERY_CHANNEL",
    "Agent",
    "AgentCard",
    "AgentChange",
    "AgentUpdate",
    "AgentWatcher",
    "AuthenticationError",
    "Backoff",
    "CacheRetention",
    "Capability",
    "Channel",
    "ChannelEvent",
    "ChannelInfo",
    "ChannelStorage",
    "Client",
    "ClientOptions",
    "CloseCode",
    "ClosedError",
    "ConflictError",
    "ConnectionFailedError",
    "DeadLetter",
    "DeadLetterPage",
    "DisconnectedError",
    "ErrorCode",
    "Gap",
    "HistoryPage",
    "HttpClient",
    "InboxMessage",
    "Incoming",
    "InvalidRequestError",
    "JoinReply",
    "KeySource",
    "Kicked",
    "LogRetention",
    "Message",
    "NotFoundError",
    "PermissionDeniedError",
    "PollSource",
    "PresenceDiff",
    "PresenceMeta",
    "PresenceState",
    "ProgressCallback",
    "ProtocolError",
    "PublishAck",
    "RateLimitedError",
    "Receipt",
    "ReceiptStatus",
    "Received",
    "Reconnected",
    "RemovedError",
    "RequestTimeoutError",
    "Retention",
    "Sent",
    "StorageChange",
    "StorageEntry",
    "StoragePage",
    "StoragePolicy",
    "StreamCancelled",
    "StreamCancelledError",
    "StreamCheckpoint",
    "StreamComplete",
    "StreamData",
    "StreamEnd",
    "StreamError",
    "StreamEvent",
    "StreamOffer",
    "StreamOutcome",
    "StreamPosition",
    "StreamProgress",
    "StreamSink",
    "StreamSource",
    "SwitchboardError",
    "TemporaryKey",
    "Tier",
    "TierRange",
    "UnavailableError",
    "connect",
    "streams",
    "sync",
]
