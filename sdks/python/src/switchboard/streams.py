"""Streams of large payloads (spec/protocol.md, "Streams"), on a channel's stream requests.

:func:`send` (and :func:`resume`) read a payload and send it as pipelined chunks of 256 KiB,
8 in flight, hashing it as they go, and close it with its SHA-256 and size. :class:`Incoming`
receives one: it writes each ``stream_data`` to a binary file in order (skipping bytes it has
already), acknowledges every MiB (the recipient's checkpoint, and the server's flow-control
window), and verifies the checksum end to end before the final acknowledgement. :func:`receive`
drives an :class:`Incoming` from the channel's events for that stream, accepting the stream
again after a reconnect. Mirrors the Rust SDK (``crates/client/src/stream.rs``).

The channel methods (:meth:`Channel.send_stream`, :meth:`Channel.receive_stream`, …) are the
way in; this module holds their machinery.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from .errors import (
    ClosedError,
    DisconnectedError,
    ErrorCode,
    InvalidRequestError,
    NotFoundError,
    ProtocolError,
    RequestTimeoutError,
    SwitchboardError,
)
from .types import (
    Received,
    Sent,
    StreamCancelled,
    StreamCheckpoint,
    StreamComplete,
    StreamData,
    StreamEnd,
    StreamError,
    StreamOffer,
    StreamPosition,
    StreamProgress,
)

if TYPE_CHECKING:
    from .channel import Channel

CHUNK_BYTES = 256 * 1024
"""The size of the chunks the SDK sends (the server accepts up to its frame limit)."""
IN_FLIGHT = 8
"""Chunks in flight at once while sending."""
ACK_EVERY = 1024 * 1024
"""The recipient acknowledges at least this often (the server sends 4 MiB ahead of its acks)."""

StreamSource = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO, AsyncIterable[bytes]]
"""What a stream is sent from: bytes, a path, a binary file object (read from its current
position) or an async iterator of bytes."""
StreamSink = Union[str, "os.PathLike[str]", BinaryIO]
"""Where a stream is received to: a path, or a binary file object."""
ProgressCallback = Callable[[int], object]
"""Called with a byte count: the bytes the server holds (sending), or received (receiving)."""

_Hash = Any  # hashlib's sha256 object (its type is private)


def _io_error(e: OSError | ValueError) -> InvalidRequestError:
    return InvalidRequestError(f"reading or writing the payload: {e}", ErrorCode.INVALID_PAYLOAD)


# ----------------------------------------------------------------------------------------------
# Sources


class _Source:
    """A payload to send, read in chunks."""

    size: int | None = None

    async def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end); ``b""`` at the end."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _BytesSource(_Source):
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self._pos = 0
        self.size = len(self._view)

    async def read(self, n: int) -> bytes:
        chunk = bytes(self._view[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


class _FileSource(_Source):
    def __init__(self, file: BinaryIO, owned: bool) -> None:
        self._file = file
        self._owned = owned
        try:
            if file.seekable():
                here = file.tell()
                self.size = file.seek(0, os.SEEK_END) - here
                file.seek(here)
        except (OSError, ValueError):
            self.size = None

    async def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        want = n
        try:
            while want > 0:
                part = self._file.read(want)
                if not part:
                    break
                parts.append(part)
                want -= len(part)
        except (OSError, ValueError) as e:
            raise _io_error(e) from None
        return b"".join(parts)

    def close(self) -> None:
        if self._owned:
            self._file.close()


class _AsyncSource(_Source):
    def __init__(self, iterable: AsyncIterable[bytes]) -> None:
        self._iterator: AsyncIterator[bytes] = iterable.__aiter__()
        self._buffer = bytearray()
        self._done = False

    async def read(self, n: int) -> bytes:
        while len(self._buffer) < n and not self._done:
            try:
                part = await self._iterator.__anext__()
            except StopAsyncIteration:
                self._done = True
                break
            if not isinstance(part, (bytes, bytearray, memoryview)):
                raise InvalidRequestError(
                    f"the async iterator yielded {type(part).__name__}, not bytes", ErrorCode.INVALID_PAYLOAD
                )
            self._buffer += part
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk


def _open_source(source: StreamSource) -> _Source:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _BytesSource(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return _FileSource(open(source, "rb"), owned=True)
        except OSError as e:
            raise _io_error(e) from None
    if isinstance(source, AsyncIterable):
        return _AsyncSource(source)
    if hasattr(source, "read"):
        return _FileSource(source, owned=False)
    raise InvalidRequestError(
        f"cannot stream a {type(source).__name__}: give bytes, a path, a binary file or an async iterator of bytes",
        ErrorCode.INVALID_PAYLOAD,
    )


# ----------------------------------------------------------------------------------------------
# Sending


async def send(
    channel: Channel,
    to: str,
    source: StreamSource,
    *,
    name: str | None = None,
    size: int | None = None,
    content_type: str | None = None,
    meta: Mapping[str, Any] | None = None,
    on_progress: ProgressCallback | None = None,
) -> Sent:
    """Opens a stream to ``to`` and sends ``source`` through it; see
    :meth:`Channel.send_stream`."""
    reader = _open_source(source)
    try:
        if size is None:
            size = reader.size
        position = await channel.stream_open(to, name=name, size=size, content_type=content_type, meta=meta)
        return await _pump(channel, position, reader, hashlib.sha256(), on_progress)
    finally:
        reader.close()


async def resume(
    channel: Channel, stream_id: str, source: StreamSource, *, on_progress: ProgressCallback | None = None
) -> Sent:
    """Continues stream ``stream_id`` from where the server holds it; see
    :meth:`Channel.resume_stream`."""
    reader = _open_source(source)
    try:
        position = await channel.stream_position(stream_id)
        hasher = hashlib.sha256()
        left = position.offset
        while left > 0:
            part = await reader.read(min(left, CHUNK_BYTES))
            if not part:
                raise InvalidRequestError(
                    f"the payload is shorter than the {position.offset} bytes the server holds of the stream",
                    ErrorCode.INVALID_PAYLOAD,
                )
            hasher.update(part)
            left -= len(part)
        return await _pump(channel, position, reader, hasher, on_progress)
    finally:
        reader.close()


async def _pump(
    channel: Channel, position: StreamPosition, reader: _Source, hasher: _Hash, on_progress: ProgressCallback | None
) -> Sent:
    """Sends the rest of ``reader`` from ``position``, ``IN_FLIGHT`` chunks at a time, then
    closes the stream."""
    stream_id, seq, total = position.stream_id, position.next_seq, position.offset
    reported = position.offset
    in_flight: deque[asyncio.Future[Any]] = deque()
    eof = False
    try:
        while True:
            while not eof and len(in_flight) < IN_FLIGHT:
                _raise_if_ended(channel, stream_id)
                chunk = await reader.read(CHUNK_BYTES)
                if not chunk:
                    eof = True
                    break
                hasher.update(chunk)
                total += len(chunk)
                in_flight.append(channel.start_chunk(stream_id, seq, chunk))
                seq += 1
            if not in_flight:
                break
            acked = StreamPosition.from_wire(await channel.client.reply(in_flight.popleft(), "stream_chunk"))
            # A chunk the server had already is acknowledged with the current position.
            if on_progress is not None and acked.offset > reported:
                reported = acked.offset
                on_progress(acked.offset)
        checksum: str = hasher.hexdigest()
        try:
            await channel.stream_close(stream_id, checksum, total)
        except NotFoundError:
            # A close re-sent after a reconnect, when the first one took effect and the
            # recipient has completed the stream since.
            if not isinstance(channel.stream_outcome(stream_id), StreamComplete):
                raise
    except SwitchboardError as e:
        outcome = channel.stream_outcome(stream_id)
        if isinstance(outcome, (StreamCancelled, StreamError)):
            raise outcome.error() from e
        raise
    finally:
        for pending in in_flight:
            if pending.done() and not pending.cancelled():
                pending.exception()  # retrieved: nobody waits for it any more
            pending.cancel()
    return Sent(stream_id, total, checksum)


def _raise_if_ended(channel: Channel, stream_id: str) -> None:
    outcome = channel.stream_outcome(stream_id)
    if isinstance(outcome, (StreamCancelled, StreamError)):
        raise outcome.error()


# ----------------------------------------------------------------------------------------------
# Receiving


class Incoming:
    """A stream being received into a binary file object (the machinery of
    :meth:`Channel.receive_stream`, for applications that read the stream events themselves).

    Create it with :meth:`accept` or :meth:`resume`; hand it each :class:`StreamData` of its
    stream with :meth:`data` and the :class:`StreamEnd` with :meth:`finish`.
    """

    def __init__(
        self,
        channel: Channel,
        stream_id: str,
        writer: BinaryIO,
        *,
        received: int = 0,
        hasher: _Hash | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.channel = channel
        self.stream_id = stream_id
        self.writer = writer
        self.received = received
        """Bytes received so far (from the start of the stream)."""
        self.resumed_from = received
        self._acked = received
        self._hasher = hasher if hasher is not None else hashlib.sha256()
        self._on_progress = on_progress

    @staticmethod
    async def accept(
        channel: Channel, offer: StreamOffer, writer: BinaryIO, on_progress: ProgressCallback | None = None
    ) -> Incoming:
        """Accepts ``offer`` from its first byte, writing into ``writer``."""
        incoming = Incoming(channel, offer.stream_id, writer, on_progress=on_progress)
        await incoming.accept_again()
        return incoming

    @staticmethod
    async def resume(
        channel: Channel,
        offer: StreamOffer,
        writer: BinaryIO,
        prefix: BinaryIO,
        on_progress: ProgressCallback | None = None,
    ) -> Incoming:
        """Accepts ``offer`` after the bytes ``prefix`` yields (what an earlier attempt
        received); ``writer`` continues after them."""
        hasher = hashlib.sha256()
        received = _hash_all(prefix, hasher)
        incoming = Incoming(channel, offer.stream_id, writer, received=received, hasher=hasher, on_progress=on_progress)
        await incoming.accept_again()
        return incoming

    async def accept_again(self) -> None:
        """Accepts the stream from the bytes received so far (after a reconnect, when the
        stream is offered again). An accept cut by a dropped connection is not an error: the
        rejoin offers the stream again."""
        try:
            await self.channel.stream_accept(self.stream_id, self.received)
        except DisconnectedError:
            return
        # The server counts an accept as an acknowledgement of its offset.
        self._acked = max(self._acked, self.received)

    async def data(self, offset: int, data: bytes) -> None:
        """Takes bytes of the stream at ``offset``. Bytes it has already (sent again after an
        accept) are skipped; a gap is a :class:`~switchboard.ProtocolError`."""
        end = offset + len(data)
        if end <= self.received:
            return
        if offset > self.received:
            raise ProtocolError(f"stream {self.stream_id} skipped from {self.received} to {offset}")
        fresh = memoryview(data)[self.received - offset :]
        try:
            self.writer.write(fresh)
        except (OSError, ValueError) as e:
            raise _io_error(e) from None
        self._hasher.update(fresh)
        self.received = end
        if self.received - self._acked >= ACK_EVERY:
            await self._checkpoint()
        if self._on_progress is not None:
            self._on_progress(self.received)

    async def _checkpoint(self) -> None:
        try:
            self.writer.flush()
        except (OSError, ValueError) as e:
            raise _io_error(e) from None
        offset = self.received
        try:
            await self.channel.stream_ack(self.stream_id, offset)
        except RequestTimeoutError:
            # The connection is down for long: the accept after the rejoin moves the window.
            return
        self._acked = max(self._acked, offset)

    async def finish(self, end: StreamEnd) -> Received:
        """Takes the :class:`StreamEnd`: verifies the size and SHA-256 of what was written, then
        acknowledges the last byte (the sender is told the stream is complete). On a mismatch
        the stream is cancelled and this raises ``checksum_mismatch``."""
        try:
            self.writer.flush()
        except (OSError, ValueError) as e:
            raise _io_error(e) from None
        checksum: str = self._hasher.hexdigest()
        if end.total_size != self.received or checksum != end.checksum.lower():
            why = (
                f"received {self.received} bytes with SHA-256 {checksum}; "
                f"the stream has {end.total_size} bytes and {end.checksum}"
            )
            try:
                await self.channel.stream_cancel(self.stream_id, why[:1000])
            except SwitchboardError:
                pass
            raise InvalidRequestError(why, ErrorCode.CHECKSUM_MISMATCH)
        try:
            await self.channel.stream_ack(self.stream_id, self.received, done=True)
        except NotFoundError:
            # An acknowledgement re-sent after a reconnect, when the first one completed the
            # stream already: every byte is here and verified either way.
            pass
        # Late events of the stream (an offer repeated after a reconnect) are stale now.
        self.channel._stream_ended(StreamComplete(self.stream_id, self.received))
        return Received(self.stream_id, self.received, checksum, self.resumed_from)


def _hash_all(source: BinaryIO, hasher: _Hash) -> int:
    """Feeds everything ``source`` yields to ``hasher``; returns how many bytes it was."""
    count = 0
    try:
        while part := source.read(CHUNK_BYTES):
            hasher.update(part)
            count += len(part)
    except (OSError, ValueError) as e:
        raise _io_error(e) from None
    return count


def _open_sink(sink: StreamSink, resume: bool) -> tuple[BinaryIO, bool, int, _Hash]:
    """The file to write, whether this module opened it, and (to resume) the bytes it holds
    and their hash; the file is positioned after them."""
    hasher = hashlib.sha256()
    try:
        if isinstance(sink, (str, os.PathLike)):
            if resume and os.path.exists(sink):
                file: BinaryIO = open(sink, "r+b")
                try:
                    return file, True, _hash_all(file, hasher), hasher
                except BaseException:
                    file.close()
                    raise
            return open(sink, "wb"), True, 0, hasher
        if not hasattr(sink, "write"):
            raise InvalidRequestError(
                f"cannot receive into a {type(sink).__name__}: give a path or a binary file", ErrorCode.INVALID_PAYLOAD
            )
        if not resume:
            return sink, False, 0, hasher
        sink.seek(0)
        return sink, False, _hash_all(sink, hasher), hasher
    except (OSError, ValueError) as e:
        raise _io_error(e) from None


async def receive(
    channel: Channel,
    offer: StreamOffer,
    sink: StreamSink,
    *,
    on_progress: ProgressCallback | None = None,
    resume: bool = False,
) -> Received:
    """Receives the stream of ``offer`` into ``sink``; see :meth:`Channel.receive_stream`."""
    ended = channel.stream_outcome(offer.stream_id)
    if isinstance(ended, (StreamCancelled, StreamError)):
        raise ended.error()
    route = channel._route_stream(offer.stream_id)
    try:
        writer, owned, have, hasher = _open_sink(sink, resume)
        try:
            incoming = Incoming(
                channel, offer.stream_id, writer, received=have, hasher=hasher, on_progress=on_progress
            )
            await incoming.accept_again()
            while True:
                event = await route.get()
                if isinstance(event, StreamData):
                    await incoming.data(event.offset, event.data)
                elif isinstance(event, StreamEnd):
                    return await incoming.finish(event)
                elif isinstance(event, StreamOffer):
                    # Offered again on the rejoin after a reconnect: continue from what is here.
                    await incoming.accept_again()
                elif isinstance(event, (StreamCancelled, StreamError)):
                    raise event.error()
                elif isinstance(event, (StreamProgress, StreamCheckpoint, StreamComplete)):
                    continue  # a sender's events: not for a recipient
                else:
                    # The channel ended (left, closed, or the agent was removed).
                    raise event.error or ClosedError(event.reason)
        finally:
            if owned:
                writer.close()
    finally:
        channel._unroute_stream(offer.stream_id, route)


__all__ = [
    "ACK_EVERY",
    "CHUNK_BYTES",
    "IN_FLIGHT",
    "Incoming",
    "ProgressCallback",
    "StreamSink",
    "StreamSource",
    "receive",
    "resume",
    "send",
]
