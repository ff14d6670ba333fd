"""One exception hierarchy for everything the SDK can fail with.

Errors the server sends keep their stable code (``err.code``, an :class:`ErrorCode` when this
version knows it), so applications branch on codes, never on message text. The class tells what
kind of problem it is; the code tells exactly which one.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(str, enum.Enum):
    """The stable error codes of the protocol (``crates/protocol/src/codes.rs``)."""

    INVALID_KEY = "invalid_key"
    UNAUTHENTICATED = "unauthenticated"
    AUTH_TIMEOUT = "auth_timeout"
    FORBIDDEN = "forbidden"
    KEY_REVOKED = "key_revoked"
    KEY_EXPIRED = "key_expired"
    TENANT_EXISTS = "tenant_exists"
    BAD_PASSWORD = "bad_password"
    AGENT_NAME_TAKEN = "agent_name_taken"
    INVALID_AGENT_NAME = "invalid_agent_name"
    INVALID_CHANNEL_NAME = "invalid_channel_name"
    INVALID_TOPIC = "invalid_topic"
    UNKNOWN_EVENT = "unknown_event"
    MALFORMED_FRAME = "malformed_frame"
    INVALID_PAYLOAD = "invalid_payload"
    FRAME_TOO_LARGE = "frame_too_large"
    MESSAGE_TOO_LARGE = "message_too_large"
    TOO_MANY_CHANNELS = "too_many_channels"
    TOO_MANY_CONNECTIONS = "too_many_connections"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    CHANNEL_NOT_FOUND = "channel_not_found"
    CHANNEL_EXISTS = "channel_exists"
    CHANNEL_DELETED = "channel_deleted"
    CHANNEL_COMPLETED = "channel_completed"
    NOT_A_MEMBER = "not_a_member"
    AGENT_NOT_PRESENT = "agent_not_present"
    RELAY_DISABLED = "relay_disabled"
    VERSION_CONFLICT = "version_conflict"
    TOO_MANY_KEYS = "too_many_keys"
    INBOX_FULL = "inbox_full"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    NO_HISTORY = "no_history"
    SLOW_CONSUMER = "slow_consumer"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    SESSION_TAKEN_OVER = "session_taken_over"
    SERVER_SHUTDOWN = "server_shutdown"
    RATE_LIMITED = "rate_limited"
    STORAGE_UNAVAILABLE = "storage_unavailable"
    INTERNAL = "internal"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"

    def __str__(self) -> str:
        return self.value


class CloseCode(enum.IntEnum):
    """WebSocket close codes the server sends.

    4000–4499: reconnect with backoff and resume. 4500–4999: do not reconnect until the cause
    is fixed.
    """

    GOING_AWAY = 1001
    SLOW_CONSUMER = 4000
    HEARTBEAT_TIMEOUT = 4001
    INVALID_KEY = 4500
    AUTH_TIMEOUT = 4501
    FRAME_TOO_LARGE = 4502
    KEY_REVOKED = 4503
    KEY_EXPIRED = 4504

    @staticmethod
    def should_reconnect(code: int) -> bool:
        """Whether a client should reconnect after a close with this code."""
        return code < 4500

    def error_code(self) -> ErrorCode:
        """The error code this close stands for."""
        return _CLOSE_ERRORS[self]


_CLOSE_ERRORS = {
    CloseCode.GOING_AWAY: ErrorCode.SERVER_SHUTDOWN,
    CloseCode.SLOW_CONSUMER: ErrorCode.SLOW_CONSUMER,
    CloseCode.HEARTBEAT_TIMEOUT: ErrorCode.HEARTBEAT_TIMEOUT,
    CloseCode.INVALID_KEY: ErrorCode.INVALID_KEY,
    CloseCode.AUTH_TIMEOUT: ErrorCode.AUTH_TIMEOUT,
    CloseCode.FRAME_TOO_LARGE: ErrorCode.FRAME_TOO_LARGE,
    CloseCode.KEY_REVOKED: ErrorCode.KEY_REVOKED,
    CloseCode.KEY_EXPIRED: ErrorCode.KEY_EXPIRED,
}


def parse_code(text: str) -> ErrorCode | str:
    """The :class:`ErrorCode` for a wire code, or the text itself for codes this version lacks."""
    try:
        return ErrorCode(text)
    except ValueError:
        return text


class SwitchboardError(Exception):
    """Base of every SDK error.

    ``code`` is the protocol's stable code when there is one (the server refused the request, or
    the SDK refused it locally for the same reason), else ``None``.
    """

    def __init__(
        self,
        message: str,
        code: ErrorCode | str | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if code is not None else message)
        self.message = message
        self.code = code
        self.retry_after_ms = retry_after_ms


class AuthenticationError(SwitchboardError):
    """The key is missing, unknown, malformed, revoked (also while in use), or came too late."""


class PermissionDeniedError(SwitchboardError):
    """The key lacks a capability, or the channel password is wrong."""


class ConflictError(SwitchboardError):
    """The name or channel is taken, or this connection joined the channel already."""


class InvalidRequestError(SwitchboardError):
    """The request breaks a rule of the protocol: a name, a payload shape, a size limit."""


class NotFoundError(SwitchboardError):
    """The channel, agent or resource does not exist, or the channel is not joined."""


class RemovedError(SwitchboardError):
    """The server removed this agent from the channel (session taken over, channel deleted)."""


class RateLimitedError(SwitchboardError):
    """Too many requests or connections; retry after ``retry_after_ms`` when set."""


class UnavailableError(SwitchboardError):
    """The server cannot serve the request now (storage, shutdown, an internal error)."""


class ConnectionFailedError(SwitchboardError):
    """The socket or HTTP connection could not be opened, or broke."""


class DisconnectedError(SwitchboardError):
    """The connection dropped while a request that cannot be re-sent safely (an ephemeral
    publish) was in flight: it may or may not have taken effect."""


class StreamCancelledError(SwitchboardError):
    """A stream was cancelled (by its sender or its recipient) while this side was sending or
    receiving it."""

    def __init__(self, stream_id: str, by: str, reason: str | None = None) -> None:
        why = f": {reason}" if reason else ""
        super().__init__(f"stream {stream_id} was cancelled by {by}{why}")
        self.stream_id = stream_id
        self.by = by
        """The agent that cancelled it."""
        self.reason = reason


class ClosedError(SwitchboardError):
    """The client (or the channel) is closed."""


class RequestTimeoutError(SwitchboardError, TimeoutError):
    """No reply arrived within the request timeout."""


class ProtocolError(SwitchboardError):
    """The server answered something this SDK cannot read."""


_CLASSES: dict[ErrorCode, type[SwitchboardError]] = {
    ErrorCode.INVALID_KEY: AuthenticationError,
    ErrorCode.UNAUTHENTICATED: AuthenticationError,
    ErrorCode.AUTH_TIMEOUT: AuthenticationError,
    ErrorCode.KEY_REVOKED: AuthenticationError,
    ErrorCode.KEY_EXPIRED: AuthenticationError,
    ErrorCode.FORBIDDEN: PermissionDeniedError,
    ErrorCode.BAD_PASSWORD: PermissionDeniedError,
    ErrorCode.AGENT_NAME_TAKEN: ConflictError,
    ErrorCode.ALREADY_JOINED: ConflictError,
    ErrorCode.CHANNEL_EXISTS: ConflictError,
    ErrorCode.TENANT_EXISTS: ConflictError,
    ErrorCode.NO_HISTORY: ConflictError,
    ErrorCode.RELAY_DISABLED: PermissionDeniedError,
    ErrorCode.VERSION_CONFLICT: ConflictError,
    ErrorCode.TOO_MANY_KEYS: RateLimitedError,
    ErrorCode.INBOX_FULL: RateLimitedError,
    ErrorCode.CHECKSUM_MISMATCH: InvalidRequestError,
    ErrorCode.INVALID_AGENT_NAME: InvalidRequestError,
    ErrorCode.INVALID_CHANNEL_NAME: InvalidRequestError,
    ErrorCode.INVALID_TOPIC: InvalidRequestError,
    ErrorCode.UNKNOWN_EVENT: InvalidRequestError,
    ErrorCode.MALFORMED_FRAME: InvalidRequestError,
    ErrorCode.INVALID_PAYLOAD: InvalidRequestError,
    ErrorCode.FRAME_TOO_LARGE: InvalidRequestError,
    ErrorCode.MESSAGE_TOO_LARGE: InvalidRequestError,
    ErrorCode.TOO_MANY_CHANNELS: InvalidRequestError,
    ErrorCode.METHOD_NOT_ALLOWED: InvalidRequestError,
    ErrorCode.NOT_JOINED: NotFoundError,
    ErrorCode.CHANNEL_NOT_FOUND: NotFoundError,
    ErrorCode.AGENT_NOT_PRESENT: NotFoundError,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.CHANNEL_DELETED: RemovedError,
    ErrorCode.CHANNEL_COMPLETED: RemovedError,
    ErrorCode.NOT_A_MEMBER: PermissionDeniedError,
    ErrorCode.SESSION_TAKEN_OVER: RemovedError,
    ErrorCode.RATE_LIMITED: RateLimitedError,
    ErrorCode.TOO_MANY_CONNECTIONS: RateLimitedError,
    ErrorCode.SLOW_CONSUMER: UnavailableError,
    ErrorCode.HEARTBEAT_TIMEOUT: UnavailableError,
    ErrorCode.SERVER_SHUTDOWN: UnavailableError,
    ErrorCode.STORAGE_UNAVAILABLE: UnavailableError,
    ErrorCode.INTERNAL: UnavailableError,
}


def error_for(code: ErrorCode | str, message: str, retry_after_ms: int | None = None) -> SwitchboardError:
    """The exception for an error code: the class of its kind, carrying the code."""
    cls = _CLASSES.get(code, SwitchboardError) if isinstance(code, ErrorCode) else SwitchboardError
    return cls(message, code, retry_after_ms)


def error_from_reply(reply: Any) -> SwitchboardError:
    """The exception for an error reply ``{code, message, retry_after_ms?}``."""
    if not isinstance(reply, dict) or not isinstance(reply.get("code"), str):
        return ProtocolError(f"unreadable error reply: {reply!r}")
    message = reply.get("message")
    retry = reply.get("retry_after_ms")
    return error_for(
        parse_code(reply["code"]),
        message if isinstance(message, str) else "",
        retry if isinstance(retry, int) else None,
    )
