"""Streams against the real server: a multi-MiB payload arrives intact, in order and verified,
with progress on both sides and completion for the sender; a recipient resumes from what it has
(on a new connection, and across a cut one); a sender survives a cut connection and resumes
after it died; a wrong checksum and a cancel reach both sides; and the protocol's refusals."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

import switchboard
from switchboard import ErrorCode

from harness import FAST, WAIT, Proxy, ServerProcess

MiB = 1024 * 1024
E = TypeVar("E")


def payload(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def join(url: str, key: str, name: str) -> switchboard.Channel:
    client = await switchboard.Client.connect(url, key, FAST)
    return await client.join("files", name, presence=False)


async def next_of(channel: switchboard.Channel, kind: type[E]) -> E:
    """The next event of ``kind``, skipping others; fails the test after ``WAIT``."""

    async def wait() -> E:
        while True:
            event = await channel.next_event()
            if isinstance(event, kind):
                return event

    return await asyncio.wait_for(wait(), WAIT)


class Stop(Exception):
    """Raised from a progress callback to stop receiving part-way."""


async def test_a_large_stream_arrives_intact_with_progress_and_completes(server: ServerProcess) -> None:
    alice = await join(server.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    data = payload(6 * MiB + 123)
    uploaded: list[int] = []
    sending = asyncio.create_task(
        alice.send_stream(
            "bob", data, name="data.bin", content_type="application/octet-stream", meta={"job": 7},
            on_progress=uploaded.append,
        )
    )
    offer = await next_of(bob, switchboard.StreamOffer)
    assert (offer.sender, offer.name, offer.size, offer.content_type, offer.meta, offer.acked) == (
        "alice", "data.bin", len(data), "application/octet-stream", {"job": 7}, 0
    )
    sink = io.BytesIO()
    downloaded: list[int] = []
    received = await asyncio.wait_for(bob.receive_stream(offer, sink, on_progress=downloaded.append), WAIT)
    assert sink.getvalue() == data, "the bytes arrived intact and in order"
    checksum = hashlib.sha256(data).hexdigest()
    assert received == switchboard.Received(offer.stream_id, len(data), checksum, 0)
    assert downloaded == sorted(set(downloaded)) and downloaded[-1] == len(data)

    sent = await asyncio.wait_for(sending, WAIT)
    assert sent == switchboard.Sent(offer.stream_id, len(data), checksum)
    assert uploaded == sorted(set(uploaded)) and uploaded[-1] == len(data)

    # The sender hears how far the recipient got (its acks, every MiB), then that it is done.
    progress: list[int] = []
    while True:
        event = await asyncio.wait_for(alice.next_event(), WAIT)
        if isinstance(event, switchboard.StreamProgress):
            assert event.stream_id == sent.stream_id
            progress.append(event.offset)
        elif isinstance(event, switchboard.StreamComplete):
            assert event == switchboard.StreamComplete(sent.stream_id, len(data))
            break
    assert progress and progress == sorted(progress) and progress[-1] == len(data)
    # Completion is remembered: waiting for it afterwards returns at once.
    assert await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT) == event
    # The recipient's channel delivered no stray stream data.
    assert bob._state.events.empty()
    await alice.client.close()
    await bob.client.close()


async def test_files_and_async_iterators(server: ServerProcess, tmp_path: Path) -> None:
    alice = await join(server.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    source = tmp_path / "report.json"
    source.write_bytes(payload(MiB + 5))
    sending = asyncio.create_task(alice.send_file("bob", source))
    offer = await next_of(bob, switchboard.StreamOffer)
    assert (offer.name, offer.size, offer.content_type) == ("report.json", MiB + 5, "application/json")
    target = tmp_path / "out" / "report.json"
    target.parent.mkdir()
    target.write_bytes(b"stale bytes are truncated")
    await asyncio.wait_for(bob.receive_stream(offer, target), WAIT)
    assert target.read_bytes() == source.read_bytes()
    sent = await sending
    await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)

    # An async iterator of pieces of any size, of unknown total size.
    pieces = [payload(n, seed=n) for n in (1, 300_000, 0, 700_000, 17)]

    async def produce() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    sending = asyncio.create_task(alice.send_stream("bob", produce(), name="generated"))
    offer = await next_of(bob, switchboard.StreamOffer)
    assert (offer.name, offer.size) == ("generated", None)
    sink = io.BytesIO()
    received = await asyncio.wait_for(bob.receive_stream(offer, sink), WAIT)
    assert sink.getvalue() == b"".join(pieces) and received.total_size == sum(map(len, pieces))
    assert (await sending).checksum == received.checksum

    # An empty payload is a stream too.
    sending = asyncio.create_task(alice.send_stream("bob", b""))
    offer = await next_of(bob, switchboard.StreamOffer)
    sink = io.BytesIO()
    assert (await asyncio.wait_for(bob.receive_stream(offer, sink), WAIT)).total_size == 0
    assert (await sending).checksum == hashlib.sha256(b"").hexdigest()
    await alice.client.close()
    await bob.client.close()


async def test_a_recipient_that_went_away_resumes_on_a_new_connection(server: ServerProcess, tmp_path: Path) -> None:
    alice = await join(server.url, server.key, "alice")
    data = payload(6 * MiB)
    sending = asyncio.create_task(alice.send_stream("bob", data))
    target = tmp_path / "data.bin"

    def stop_at_2_mib(received: int) -> None:
        if received >= 2 * MiB:
            raise Stop

    bob = await join(server.url, server.key, "bob")
    offer = await next_of(bob, switchboard.StreamOffer)
    with pytest.raises(Stop):
        await asyncio.wait_for(bob.receive_stream(offer, target, on_progress=stop_at_2_mib), WAIT)
    await bob.client.close()
    have = target.stat().st_size
    assert 2 * MiB <= have < len(data)

    # A new session of bob is offered the stream again, with its checkpoint, and continues
    # from the bytes in the file.
    bob = await join(server.url, server.key, "bob")
    offer = await next_of(bob, switchboard.StreamOffer)
    assert MiB <= offer.acked <= have
    downloaded: list[int] = []
    received = await asyncio.wait_for(
        bob.receive_stream(offer, target, resume=True, on_progress=downloaded.append), WAIT
    )
    assert received.resumed_from == have and received.total_size == len(data)
    assert downloaded[0] > have and downloaded[-1] == len(data)
    assert target.read_bytes() == data
    sent = await asyncio.wait_for(sending, WAIT)
    assert (await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)).total_size == len(data)
    await alice.client.close()
    await bob.client.close()


async def test_a_recipient_whose_connection_is_cut_carries_on(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    alice = await join(server.url, server.key, "alice")
    bob = await join(proxy.url, server.key, "bob")
    data = payload(8 * MiB)
    sending = asyncio.create_task(alice.send_stream("bob", data))
    offer = await next_of(bob, switchboard.StreamOffer)
    cuts: list[int] = []

    def cut_once(received: int) -> None:
        if not cuts and received >= 2 * MiB:
            cuts.append(received)
            proxy.cut()

    sink = io.BytesIO()
    received = await asyncio.wait_for(bob.receive_stream(offer, sink, on_progress=cut_once), WAIT)
    assert sink.getvalue() == data and received.total_size == len(data)
    assert cuts and bob.client.connections == 2, "the recipient reconnected and accepted again"
    sent = await asyncio.wait_for(sending, WAIT)
    await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)
    await alice.client.close()
    await bob.client.close()
    await proxy.close()


async def test_an_offer_repeated_after_a_reconnect_is_not_delivered_once_received(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    alice = await join(server.url, server.key, "alice")
    bob = await join(proxy.url, server.key, "bob")
    data = payload(3 * MiB)
    sent = await alice.send_stream("bob", data)
    offer = await next_of(bob, switchboard.StreamOffer)
    proxy.cut()
    await next_of(bob, switchboard.Reconnected)
    # The rejoin offered the stream again (with what bob acknowledged: nothing yet).
    sink = io.BytesIO()
    assert (await asyncio.wait_for(bob.receive_stream(offer, sink), WAIT)).total_size == len(data)
    assert sink.getvalue() == data
    await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)
    # The repeated offer, queued behind the reconnect, is stale: the next event is the message.
    await alice.publish("note", "after")
    event = await asyncio.wait_for(bob.next_event(), WAIT)
    assert isinstance(event, switchboard.Message) and event.data == "after"
    await alice.client.close()
    await bob.client.close()
    await proxy.close()


async def test_a_sender_whose_connection_is_cut_finishes_without_corruption(server: ServerProcess) -> None:
    proxy = await Proxy.start(server.port)
    alice = await join(proxy.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    data = payload(8 * MiB)
    cuts: list[int] = []

    def cut_once(held: int) -> None:
        if not cuts and held >= 2 * MiB:
            cuts.append(held)
            proxy.cut()

    sending = asyncio.create_task(alice.send_stream("bob", data, on_progress=cut_once))
    offer = await next_of(bob, switchboard.StreamOffer)
    sink = io.BytesIO()
    received = await asyncio.wait_for(bob.receive_stream(offer, sink), WAIT)
    assert sink.getvalue() == data, "every chunk once, in order"
    sent = await asyncio.wait_for(sending, WAIT)
    assert (sent.total_size, sent.checksum) == (received.total_size, received.checksum)
    assert cuts and alice.client.connections == 2, "the sender reconnected and re-sent its chunks"
    await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)
    await alice.client.close()
    await bob.client.close()
    await proxy.close()


async def test_a_sender_resumes_a_stream_after_it_died(server: ServerProcess) -> None:
    data = payload(3 * MiB + 1000)
    alice = await join(server.url, server.key, "alice")
    opened = await alice.stream_open("bob", size=len(data))
    assert (opened.next_seq, opened.offset) == (0, 0)
    chunk = 256 * 1024
    for seq in range(5):
        await alice.stream_chunk(opened.stream_id, seq, data[seq * chunk : (seq + 1) * chunk])
    await alice.client.close()

    # A new process of alice continues from where the server holds the stream.
    alice = await join(server.url, server.key, "alice")
    position = await alice.stream_position(opened.stream_id)
    assert (position.next_seq, position.offset) == (5, 5 * chunk)
    uploaded: list[int] = []
    sent = await alice.resume_stream(opened.stream_id, io.BytesIO(data), on_progress=uploaded.append)
    assert sent == switchboard.Sent(opened.stream_id, len(data), hashlib.sha256(data).hexdigest())
    assert uploaded[0] > 5 * chunk and uploaded[-1] == len(data)

    bob = await join(server.url, server.key, "bob")
    offer = await next_of(bob, switchboard.StreamOffer)
    assert offer.stream_id == opened.stream_id
    sink = io.BytesIO()
    await asyncio.wait_for(bob.receive_stream(offer, sink), WAIT)
    assert sink.getvalue() == data
    await asyncio.wait_for(alice.wait_stream(sent.stream_id), WAIT)

    # A payload shorter than what the server holds cannot continue the stream.
    again = await alice.stream_open("bob")
    await alice.stream_chunk(again.stream_id, 0, b"0123456789")
    with pytest.raises(switchboard.InvalidRequestError) as short:
        await alice.resume_stream(again.stream_id, b"0123")
    assert short.value.code == ErrorCode.INVALID_PAYLOAD
    await alice.client.close()
    await bob.client.close()


async def test_a_wrong_checksum_fails_the_stream_for_both_sides(server: ServerProcess) -> None:
    alice = await join(server.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    opened = await alice.stream_open("bob", name="bad.bin")
    offer = await next_of(bob, switchboard.StreamOffer)
    arrived = asyncio.Event()
    receiving = asyncio.create_task(bob.receive_stream(offer, io.BytesIO(), on_progress=lambda n: arrived.set()))
    data = payload(300_000)
    await alice.stream_chunk(opened.stream_id, 0, data[: 256 * 1024])
    await alice.stream_chunk(opened.stream_id, 1, data[256 * 1024 :])
    await asyncio.wait_for(arrived.wait(), WAIT)  # the recipient accepted the stream
    with pytest.raises(switchboard.InvalidRequestError) as closing:
        await alice.stream_close(opened.stream_id, "0" * 64, len(data))
    assert closing.value.code == ErrorCode.CHECKSUM_MISMATCH

    failed = await next_of(alice, switchboard.StreamError)
    assert (failed.stream_id, failed.code) == (opened.stream_id, ErrorCode.CHECKSUM_MISMATCH)
    with pytest.raises(switchboard.InvalidRequestError) as waited:
        await asyncio.wait_for(alice.wait_stream(opened.stream_id), WAIT)
    assert waited.value.code == ErrorCode.CHECKSUM_MISMATCH
    # The recipient's receive_stream took the stream's events: it fails with the code.
    with pytest.raises(switchboard.InvalidRequestError) as receiving_failed:
        await asyncio.wait_for(receiving, WAIT)
    assert receiving_failed.value.code == ErrorCode.CHECKSUM_MISMATCH
    # The stream is gone.
    with pytest.raises(switchboard.NotFoundError):
        await alice.stream_chunk(opened.stream_id, 2, b"x")

    # A size that does not match fails the same way; the recipient sees the event itself.
    opened = await alice.stream_open("bob")
    await alice.stream_chunk(opened.stream_id, 0, b"abc")
    with pytest.raises(switchboard.InvalidRequestError) as closing:
        await alice.stream_close(opened.stream_id, hashlib.sha256(b"abc").hexdigest(), 4)
    assert closing.value.code == ErrorCode.CHECKSUM_MISMATCH
    failed = await next_of(bob, switchboard.StreamError)
    assert (failed.stream_id, failed.code) == (opened.stream_id, ErrorCode.CHECKSUM_MISMATCH)
    await alice.client.close()
    await bob.client.close()


async def test_a_cancel_reaches_both_sides(server: ServerProcess) -> None:
    alice = await join(server.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    more = asyncio.Event()

    async def produce() -> AsyncIterator[bytes]:
        yield payload(MiB)
        await more.wait()  # the rest only once the recipient has cancelled
        yield payload(MiB, seed=2)

    sending = asyncio.create_task(alice.send_stream("bob", produce(), name="big"))
    offer = await next_of(bob, switchboard.StreamOffer)
    await bob.stream_cancel(offer.stream_id, "no room")
    for channel in (alice, bob):
        cancelled = await next_of(channel, switchboard.StreamCancelled)
        assert cancelled == switchboard.StreamCancelled(offer.stream_id, "bob", "no room")
    more.set()
    with pytest.raises(switchboard.StreamCancelledError) as stopped:
        await asyncio.wait_for(sending, WAIT)
    assert (stopped.value.stream_id, stopped.value.by, stopped.value.reason) == (offer.stream_id, "bob", "no room")
    with pytest.raises(switchboard.StreamCancelledError):
        await asyncio.wait_for(alice.wait_stream(offer.stream_id), WAIT)

    # The sender cancels a stream the recipient is receiving: its receive_stream stops.
    opened = await alice.stream_open("bob")
    offer = await next_of(bob, switchboard.StreamOffer)
    arrived = asyncio.Event()
    receiving = asyncio.create_task(bob.receive_stream(offer, io.BytesIO(), on_progress=lambda n: arrived.set()))
    await alice.stream_chunk(opened.stream_id, 0, b"partial")
    await asyncio.wait_for(arrived.wait(), WAIT)  # the recipient accepted the stream
    await alice.stream_cancel(opened.stream_id)
    with pytest.raises(switchboard.StreamCancelledError) as stopped:
        await asyncio.wait_for(receiving, WAIT)
    assert (stopped.value.by, stopped.value.reason) == ("alice", None)
    assert (await next_of(alice, switchboard.StreamCancelled)).by == "alice"
    with pytest.raises(switchboard.NotFoundError):
        await alice.stream_cancel(opened.stream_id)
    await alice.client.close()
    await bob.client.close()


async def test_refusals(server: ServerProcess) -> None:
    alice = await join(server.url, server.key, "alice")
    bob = await join(server.url, server.key, "bob")
    opened = await alice.stream_open("bob")
    # Chunks go in order: a gap is refused.
    with pytest.raises(switchboard.InvalidRequestError) as gap:
        await alice.stream_chunk(opened.stream_id, 1, b"x")
    assert gap.value.code == ErrorCode.INVALID_PAYLOAD
    first = await alice.stream_chunk(opened.stream_id, 0, b"hello")
    # A chunk seen before is acknowledged again, not written twice.
    assert await alice.stream_chunk(opened.stream_id, 0, b"hello") == first
    assert (first.next_seq, first.offset) == (1, 5)
    # Only the sender writes; the recipient cannot accept past what arrived.
    with pytest.raises(switchboard.PermissionDeniedError) as forbidden:
        await bob.stream_chunk(opened.stream_id, 1, b"x")
    assert forbidden.value.code == ErrorCode.FORBIDDEN
    with pytest.raises(switchboard.InvalidRequestError) as past:
        await bob.stream_accept(opened.stream_id, 6)
    assert past.value.code == ErrorCode.INVALID_PAYLOAD
    # A stream goes to another agent, with a valid name.
    with pytest.raises(switchboard.InvalidRequestError) as to_self:
        await alice.stream_open("alice")
    assert to_self.value.code == ErrorCode.INVALID_PAYLOAD
    with pytest.raises(switchboard.InvalidRequestError) as bad_name:
        await alice.stream_open("no name")
    assert bad_name.value.code == ErrorCode.INVALID_AGENT_NAME
    # Unknown streams (and those of other agents) are not found.
    for attempt in (
        alice.stream_chunk("st_nope", 0, b"x"),
        alice.stream_position("st_nope"),
        alice.resume_stream("st_nope", b"x"),
        alice.stream_close("st_nope", "0" * 64, 1),
        alice.stream_cancel("st_nope"),
        bob.stream_accept("st_nope"),
        bob.stream_ack("st_nope", 0),
        bob.stream_position(opened.stream_id),
        alice.stream_accept(opened.stream_id),
    ):
        with pytest.raises(switchboard.NotFoundError) as unknown:
            await attempt
        assert unknown.value.code == ErrorCode.NOT_FOUND
    # Sources and sinks the SDK cannot use are refused before anything is sent.
    with pytest.raises(switchboard.InvalidRequestError):
        await alice.send_stream("bob", 42)  # type: ignore[arg-type]
    offer = await next_of(bob, switchboard.StreamOffer)
    with pytest.raises(switchboard.InvalidRequestError):
        await bob.receive_stream(offer, 42)  # type: ignore[arg-type]
    await alice.client.close()
    await bob.client.close()


def test_sync_streams(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(payload(2 * MiB + 3))
    with switchboard.sync.connect(server.url, server.key, "files", "up", presence=False, options=FAST) as up, \
            switchboard.sync.connect(server.url, server.key, "files", "down", presence=False, options=FAST) as down:
        sent = up.send_file("down", source)
        offer = down.next_stream_offer(timeout=WAIT)
        assert offer is not None and (offer.stream_id, offer.name, offer.content_type) == (
            sent.stream_id, "notes.txt", "text/plain"
        )
        progress: list[int] = []
        received = down.receive_stream(offer, tmp_path / "copy.txt", on_progress=progress.append)
        assert (received.total_size, received.checksum) == (sent.total_size, sent.checksum)
        assert (tmp_path / "copy.txt").read_bytes() == source.read_bytes() and progress[-1] == sent.total_size
        assert up.wait_stream(sent.stream_id, timeout=WAIT).total_size == sent.total_size
        assert down.next_stream_offer(timeout=0) is None
