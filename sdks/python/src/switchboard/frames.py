"""The Phoenix Channels V2 serializer and the binary envelope of attachments (spec/protocol.md).

Text frames are JSON arrays ``[join_ref, ref, topic, event, payload]``. Binary frames start with
a kind byte and one length byte per string field. Messages with attachments travel as the
*binary envelope*: ``u32 big-endian header length | header JSON | attachment bytes…``; stream
chunks (``stream_chunk``) and stream bytes (``stream_data``) use the same layout with one run of
bytes after the header.
Pure functions, no I/O.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

PHOENIX_TOPIC = "phoenix"
CHANNEL_PREFIX = "channel:"

JOIN = "phx_join"
LEAVE = "phx_leave"
REPLY = "phx_reply"
CLOSE = "phx_close"
ERROR = "phx_error"
HEARTBEAT = "heartbeat"
AUTH = "auth"
PUBLISH = "publish"
HISTORY = "history"
PRESENCE = "presence"
MESSAGE = "message"
KICKED = "kicked"
SOCKET_ERROR = "error"
KEY_EXPIRING = "key_expiring"
PRESENCE_STATE = "presence_state"
PRESENCE_DIFF = "presence_diff"
KV_PUT = "kv_put"
KV_GET = "kv_get"
KV_DELETE = "kv_delete"
KV_LIST = "kv_list"
KV_CHANGE = "kv_change"
ACK = "ack"
REJECT = "reject"
NEW_MESSAGE = "new_message"
RECEIPT = "receipt"
ANNOUNCE = "announce"
UPDATE_METADATA = "update_metadata"
DISCOVER = "discover"
STREAM_OPEN = "stream_open"
STREAM_CHUNK = "stream_chunk"
STREAM_CLOSE = "stream_close"
STREAM_CANCEL = "stream_cancel"
STREAM_ACCEPT = "stream_accept"
STREAM_ACK = "stream_ack"
STREAM_OFFER = "stream_offer"
STREAM_DATA = "stream_data"
STREAM_END = "stream_end"
STREAM_PROGRESS = "stream_progress"
STREAM_CHECKPOINT = "stream_checkpoint"
STREAM_COMPLETE = "stream_complete"
STREAM_CANCELLED = "stream_cancelled"
STREAM_ERROR = "stream_error"

KIND_PUSH = 0
KIND_REPLY = 1
KIND_BROADCAST = 2


class FrameError(ValueError):
    """A frame that does not follow the serializer."""


@dataclass(frozen=True)
class Frame:
    """A decoded server frame.

    ``payload`` is the decoded JSON of a text frame, or raw bytes for a binary push or
    broadcast. A binary reply has event ``phx_reply`` and ``status`` set; its ``payload`` is
    the raw response bytes.
    """

    join_ref: str | None
    ref: str | None
    topic: str
    event: str
    payload: Any
    status: str | None = None


def encode_text(join_ref: str | None, ref: str | None, topic: str, event: str, payload: Any) -> str:
    """A text frame."""
    return json.dumps([join_ref, ref, topic, event, payload], separators=(",", ":"))


def encode_binary_push(join_ref: str | None, ref: str | None, topic: str, event: str, payload: bytes) -> bytes:
    """A client binary push: ``0, len(join_ref), len(ref), len(topic), len(event), …, payload``."""
    fields = [(join_ref or "").encode(), (ref or "").encode(), topic.encode(), event.encode()]
    for name, field in zip(("join_ref", "ref", "topic", "event"), fields):
        if len(field) > 255:
            raise FrameError(f"{name} is longer than 255 bytes")
    return bytes([KIND_PUSH, *(len(f) for f in fields)]) + b"".join(fields) + payload


def _ref(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return str(value)
    raise FrameError(f"a ref must be a string or null, not {value!r}")


def decode_text(text: str) -> Frame:
    """Decodes a text frame."""
    try:
        parts = json.loads(text)
    except ValueError as e:
        raise FrameError(f"not JSON: {e}") from None
    if not isinstance(parts, list) or len(parts) != 5:
        raise FrameError("a frame is [join_ref, ref, topic, event, payload]")
    join_ref, ref, topic, event, payload = parts
    if not isinstance(topic, str) or not isinstance(event, str):
        raise FrameError("topic and event must be strings")
    return Frame(_ref(join_ref), _ref(ref), topic, event, payload)


def decode_binary(data: bytes) -> Frame:
    """Decodes a binary frame sent by the server (push, reply or broadcast)."""
    if not data:
        raise FrameError("empty binary frame")
    kind = data[0]
    counts = {KIND_PUSH: 3, KIND_REPLY: 4, KIND_BROADCAST: 2}
    if kind not in counts:
        raise FrameError(f"unknown binary frame kind {kind}")
    n = counts[kind]
    if len(data) < 1 + n:
        raise FrameError("binary frame truncated")
    sizes = data[1 : 1 + n]
    pos = 1 + n
    fields: list[str] = []
    for size in sizes:
        if pos + size > len(data):
            raise FrameError("binary frame truncated")
        try:
            fields.append(data[pos : pos + size].decode())
        except UnicodeDecodeError:
            raise FrameError("binary frame field is not UTF-8") from None
        pos += size
    rest = bytes(data[pos:])
    if kind == KIND_PUSH:
        return Frame(fields[0] or None, None, fields[1], fields[2], rest)
    if kind == KIND_REPLY:
        return Frame(fields[0] or None, fields[1] or None, fields[2], REPLY, rest, status=fields[3])
    return Frame(None, None, fields[0], fields[1], rest)


def encode_envelope(header: dict[str, Any], attachments: list[bytes]) -> bytes:
    """The binary envelope: the header gets ``attachment_sizes``; the bytes follow it."""
    head = dict(header)
    head["attachment_sizes"] = [len(a) for a in attachments]
    text = json.dumps(head, separators=(",", ":")).encode()
    return struct.pack(">I", len(text)) + text + b"".join(attachments)


def decode_envelope(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """Splits a binary envelope into its header (without ``attachment_sizes``) and attachments."""
    if len(data) < 4:
        raise FrameError("binary envelope shorter than its 4-byte header length")
    (length,) = struct.unpack(">I", data[:4])
    if 4 + length > len(data):
        raise FrameError("binary envelope header truncated")
    try:
        header = json.loads(data[4 : 4 + length])
    except ValueError as e:
        raise FrameError(f"binary envelope header: {e}") from None
    if not isinstance(header, dict):
        raise FrameError("binary envelope header is not an object")
    sizes = header.pop("attachment_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise FrameError("attachment_sizes must be a list of sizes")
    pos = 4 + length
    attachments = []
    for size in sizes:
        if pos + size > len(data):
            raise FrameError("attachment_sizes exceed the frame")
        attachments.append(bytes(data[pos : pos + size]))
        pos += size
    if pos != len(data):
        raise FrameError("bytes left over after the attachments")
    return header, attachments


def encode_stream_envelope(header: dict[str, Any], data: bytes | bytearray | memoryview) -> bytes:
    """A stream envelope (``stream_chunk``): ``u32 big-endian header length | header JSON |
    bytes``."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join((struct.pack(">I", len(text)), text, data))


def decode_stream_envelope(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Splits a stream envelope (``stream_data``) into its header and its bytes."""
    if len(data) < 4:
        raise FrameError("stream envelope shorter than its 4-byte header length")
    (length,) = struct.unpack(">I", data[:4])
    if 4 + length > len(data):
        raise FrameError("stream envelope header truncated")
    try:
        header = json.loads(data[4 : 4 + length])
    except ValueError as e:
        raise FrameError(f"stream envelope header: {e}") from None
    if not isinstance(header, dict):
        raise FrameError("stream envelope header is not an object")
    return header, bytes(data[4 + length :])
