"""Pure pieces: the frame codec, envelopes (attachments and streams), a stream's receiving
logic, backoff, the offset tracker, URLs, and the error codes kept in step with the protocol
crate and the spec."""

from __future__ import annotations

import hashlib
import io
import re
import struct
from typing import cast

import pytest

import switchboard
from switchboard import frames
from switchboard.backoff import Backoff
from switchboard.client import http_base_url, socket_url, valid_name
from switchboard.errors import CloseCode, ErrorCode, error_for, error_from_reply
from switchboard.tracker import OffsetTracker
from switchboard.streams import Incoming
from switchboard.types import (
    DeadLetter,
    DeadLetterPage,
    Gap,
    InboxMessage,
    JoinReply,
    Message,
    Receipt,
    StreamCancelled,
    StreamData,
    StreamEnd,
    StreamError,
    StreamOffer,
)

from harness import REPO


def test_text_frames() -> None:
    text = frames.encode_text("1", "2", "channel:room", "publish", {"type": "chat"})
    assert text == '["1","2","channel:room","publish",{"type":"chat"}]'
    frame = frames.decode_text('[null,"7","phoenix","phx_reply",{"status":"ok","response":{}}]')
    assert (frame.join_ref, frame.ref, frame.topic, frame.event) == (None, "7", "phoenix", "phx_reply")
    for bad in ["{}", "[1,2,3]", "not json", '[null,null,1,"e",{}]']:
        with pytest.raises(frames.FrameError):
            frames.decode_text(bad)


def test_binary_push_layout() -> None:
    data = frames.encode_binary_push("1", "22", "channel:r", "publish", b"\x00\xff")
    assert data == bytes([0, 1, 2, 9, 7]) + b"1" + b"22" + b"channel:r" + b"publish" + b"\x00\xff"
    # A null ref is an empty field: a fire-and-forget push.
    assert frames.encode_binary_push(None, None, "t", "e", b"")[:5] == bytes([0, 0, 0, 1, 1])
    with pytest.raises(frames.FrameError):
        frames.encode_binary_push("1", "1", "t" * 256, "e", b"")


def test_binary_server_frames() -> None:
    push = frames.decode_binary(bytes([0, 1, 6, 7]) + b"5" + b"topic1" + b"message" + b"PAY")
    assert (push.join_ref, push.ref, push.topic, push.event, push.payload) == ("5", None, "topic1", "message", b"PAY")
    reply = frames.decode_binary(bytes([1, 0, 2, 1, 2]) + b"12" + b"t" + b"ok" + b'{"a":1}')
    assert (reply.join_ref, reply.ref, reply.event, reply.status, reply.payload) == (None, "12", "phx_reply", "ok", b'{"a":1}')
    broadcast = frames.decode_binary(bytes([2, 1, 1]) + b"t" + b"e" + b"x")
    assert (broadcast.topic, broadcast.event, broadcast.payload) == ("t", "e", b"x")
    for bad in [b"", bytes([9, 0, 0, 0]), bytes([2, 5, 5]) + b"abc"]:
        with pytest.raises(frames.FrameError):
            frames.decode_binary(bad)


def test_envelope_round_trip() -> None:
    header = {"type": "file", "data": {"n": 1}, "id": "x"}
    data = frames.encode_envelope(header, [b"\x00\x01", b"", b"abc"])
    (length,) = struct.unpack(">I", data[:4])
    assert data[4 + length :] == b"\x00\x01abc"
    decoded, attachments = frames.decode_envelope(data)
    assert decoded == header
    assert attachments == [b"\x00\x01", b"", b"abc"]
    for bad in [b"\x00\x00", data + b"extra", data[:-1], struct.pack(">I", 2) + b"[]"]:
        with pytest.raises(frames.FrameError):
            frames.decode_envelope(bad)


def test_messages_from_json_and_envelope() -> None:
    wire = {"id": "m", "offset": 4, "channel": "room", "from": "a", "to": "b", "type": "chat", "data": [1], "ts": 5,
            "attachments": ["AAE="]}
    m = Message.from_wire(wire)
    assert (m.sender, m.to, m.offset, m.attachments, m.ephemeral) == ("a", "b", 4, [b"\x00\x01"], False)
    header, attachments = frames.decode_envelope(frames.encode_envelope({k: v for k, v in wire.items() if k != "attachments"}, [b"z"]))
    assert Message.from_wire(header, attachments).attachments == [b"z"]
    with pytest.raises(switchboard.ProtocolError):
        Message.from_wire({"id": "m"})
    with pytest.raises(switchboard.ProtocolError):
        Message.from_wire({**wire, "offset": True})


def test_backoff_bounds_and_jitter() -> None:
    b = Backoff()
    assert [b.bound(n) for n in (0, 1, 3)] == [0.1, 0.2, 0.8]
    assert b.bound(7) == 10.0 and b.bound(10**9) == 10.0
    assert b.delay(2, 0.0) == 0.0 and b.delay(2, 0.5) == 0.2 and b.delay(2, 7.0) == 0.4
    assert all(0 <= b.delay(n) <= b.bound(n) for n in range(40))
    assert len({b.delay(10) for _ in range(64)}) > 1, "jitter is random"
    assert Backoff(multiplier=0.5).bound(5) == 0.1
    assert Backoff(multiplier=float("inf")).bound(1) == 10.0


def reply(head: int, epoch: str, gap: Gap | None = None, persistent: bool = True) -> JoinReply:
    return JoinReply("room", "private", "a", "s1", epoch, head, persistent, gap)


def test_tracker_fresh_join_starts_after_head() -> None:
    t = OffsetTracker()
    t.on_join(reply(10, "e1"))
    assert not t.accept(10)
    assert t.accept(11)
    assert not t.accept(11), "duplicate"
    assert t.accept(None), "ephemeral always passes"
    assert t.accept(13), "a filtered-out offset is not a gap"
    assert t.last == 13


def test_tracker_resume_replays_after_last_delivered() -> None:
    t = OffsetTracker(since=4)
    t.on_join(reply(10, "e1"))
    assert not t.accept(4)
    assert t.accept(5) and t.accept(6)
    params = t.resume_params({"agent_name": "a"}, "s1")
    assert params == {"agent_name": "a", "since": 6, "epoch": "e1", "session_id": "s1"}
    t.on_join(reply(12, "e1"))
    assert not t.accept(5) and not t.accept(6)
    assert t.accept(7)


def test_tracker_gaps_move_the_mark() -> None:
    t = OffsetTracker()
    t.on_join(reply(100, "e1"))
    assert t.accept(101)
    t.on_join(reply(3, "e2", Gap("epoch_changed", 1)))
    assert t.accept(1)
    assert t.resume_params({}, None) == {"since": 1, "epoch": "e2"}
    t.on_join(reply(60, "e2", Gap("retention", 50)))
    assert not t.accept(49)
    assert t.accept(50)


def test_tracker_since_beyond_head_and_ephemeral_channels() -> None:
    t = OffsetTracker(since=500)
    t.on_join(reply(20, "e9"))
    assert t.accept(21)
    e = OffsetTracker()
    e.on_join(reply(0, "e1", persistent=False))
    assert e.accept(None)
    assert e.resume_params({"agent_name": "a"}, "s") == {"agent_name": "a", "session_id": "s"}


def test_urls() -> None:
    assert socket_url("ws://127.0.0.1:7400", "sk_a b") == "ws://127.0.0.1:7400/socket/websocket?vsn=2.0.0&api_key=sk_a+b"
    assert socket_url("https://example.com/sb/", "k") == "wss://example.com/sb/socket/websocket?vsn=2.0.0&api_key=k"
    assert socket_url("ws://h/socket/websocket?vsn=1&x=y&api_key=old", "new") == "ws://h/socket/websocket?x=y&vsn=2.0.0&api_key=new"
    assert socket_url("ws://h:1", None) == "ws://h:1/socket/websocket?vsn=2.0.0"
    assert http_base_url("ws://127.0.0.1:7400") == "http://127.0.0.1:7400"
    assert http_base_url("wss://example.com/socket/websocket?vsn=2.0.0") == "https://example.com"
    for bad in ["", "127.0.0.1:7400", "ftp://h", "ws://"]:
        with pytest.raises(switchboard.InvalidRequestError):
            socket_url(bad, "k")


def test_names() -> None:
    assert valid_name("a") and valid_name("x" * 128) and valid_name("A-z_0.9:@")
    assert not valid_name("") and not valid_name("x" * 129) and not valid_name("a b") and not valid_name("é")


def rust_codes() -> list[str]:
    source = (REPO / "crates" / "protocol" / "src" / "codes.rs").read_text()
    return re.findall(r'^\s*\w+ = "(\w+)",$', source, re.M)


def test_error_codes_match_the_protocol_crate_and_the_spec() -> None:
    codes = rust_codes()
    assert len(codes) >= 30
    assert [c.value for c in ErrorCode] == codes
    spec = (REPO / "spec" / "protocol.md").read_text()
    spec = spec[spec.index("## Error codes") : spec.index("## Limits")]
    documented = re.findall(r"^\| `(\w+)` \| (?:\d{3}|–) \|", spec, re.M)
    assert sorted(documented) == sorted(codes)


def test_close_codes_match_the_protocol_crate() -> None:
    source = (REPO / "crates" / "protocol" / "src" / "codes.rs").read_text()
    rust = {int(n) for n in re.findall(r"^\s*\w+ = (\d{4}),$", source, re.M)}
    assert {c.value for c in CloseCode} == rust
    assert CloseCode.should_reconnect(4000) and CloseCode.should_reconnect(1001)
    assert not CloseCode.should_reconnect(4500)
    assert CloseCode.INVALID_KEY.error_code() is ErrorCode.INVALID_KEY


def test_every_code_has_its_exception_class() -> None:
    for code in ErrorCode:
        error = error_for(code, "m")
        assert type(error) is not switchboard.SwitchboardError, code
        assert error.code is code
    e = error_from_reply({"code": "bad_password", "message": "wrong", "retry_after_ms": 5})
    assert isinstance(e, switchboard.PermissionDeniedError)
    assert (e.code, e.message, e.retry_after_ms, str(e)) == (ErrorCode.BAD_PASSWORD, "wrong", 5, "bad_password: wrong")
    unknown = error_from_reply({"code": "from_the_future", "message": "?"})
    assert type(unknown) is switchboard.SwitchboardError and unknown.code == "from_the_future"
    assert isinstance(error_from_reply("nonsense"), switchboard.ProtocolError)
    assert isinstance(switchboard.RequestTimeoutError("t"), TimeoutError)


def test_inbox_wire_shapes() -> None:
    message = {"id": "m1", "offset": 3, "channel": "work", "from": "alice", "to": "bob", "type": "task", "data": 1, "ts": 9}
    item = InboxMessage.from_wire({"delivery_count": 2, "message": message})
    assert (item.delivery_count, item.id, item.message.to) == (2, "m1", "bob")
    with pytest.raises(switchboard.ProtocolError):
        InboxMessage.from_wire({"delivery_count": 1})
    receipt = Receipt.from_wire({"id": "m1", "to": "bob", "status": "dead_lettered", "delivery_count": 3, "reason": "max_deliveries"})
    assert receipt == Receipt("m1", "bob", "dead_lettered", 3, "max_deliveries")
    assert Receipt.from_wire({"id": "m1", "to": "bob", "status": "delivered", "delivery_count": 1}).reason is None
    with pytest.raises(switchboard.ProtocolError):
        Receipt.from_wire({"id": "m1", "to": "bob", "status": "lost", "delivery_count": 1})
    page = DeadLetterPage.from_wire(
        {
            "entries": [
                {"message": message, "recipient": "bob", "delivery_count": 1, "rejections": 1, "reason": "rejected", "dead_at": 7}
            ],
            "next": "c1",
        }
    )
    assert page.next == "c1" and page.entries[0] == DeadLetter(Message.from_wire(message), "bob", 1, 1, "rejected", 7)
    assert error_for(ErrorCode.INBOX_FULL, "full").__class__ is switchboard.RateLimitedError


def test_stream_envelopes_and_events() -> None:
    chunk = frames.encode_stream_envelope({"stream_id": "st_1", "seq": 3}, b"\x00abc")
    (length,) = struct.unpack(">I", chunk[:4])
    assert chunk[4 : 4 + length] == b'{"stream_id":"st_1","seq":3}' and chunk[4 + length :] == b"\x00abc"
    header, data = frames.decode_stream_envelope(chunk)
    assert (header, data) == ({"stream_id": "st_1", "seq": 3}, b"\x00abc")
    for bad in [b"\x00\x00", b"\x00\x00\x00\x09{}", b"\x00\x00\x00\x02[]"]:
        with pytest.raises(frames.FrameError):
            frames.decode_stream_envelope(bad)
    # A server `stream_data` push: kind 0, join_ref, topic, event, then the envelope.
    push = bytes([0, 1, 13, 11]) + b"4" + b"channel:files" + b"stream_data"
    push += frames.encode_stream_envelope({"stream_id": "st_1", "offset": 10}, b"xyz")
    frame = frames.decode_binary(push)
    assert (frame.join_ref, frame.topic, frame.event) == ("4", "channel:files", "stream_data")
    assert StreamData.from_wire(*frames.decode_stream_envelope(frame.payload)) == StreamData("st_1", 10, b"xyz")

    offer = StreamOffer.from_wire({"stream_id": "st_1", "from": "alice", "acked": 5, "meta": {"k": 1}})
    assert offer == StreamOffer("st_1", "alice", None, None, None, {"k": 1}, 5)
    failed = StreamError.from_wire({"stream_id": "st_1", "code": "checksum_mismatch", "message": "no"})
    assert failed.code == ErrorCode.CHECKSUM_MISMATCH
    assert isinstance(failed.error(), switchboard.InvalidRequestError)
    cancelled = StreamCancelled.from_wire({"stream_id": "st_1", "by": "bob"})
    assert isinstance(cancelled.error(), switchboard.StreamCancelledError) and cancelled.error().code is None
    with pytest.raises(switchboard.ProtocolError):
        StreamOffer.from_wire({"stream_id": "st_1"})


class _FakeStreamChannel:
    """Records the stream requests an Incoming makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    async def stream_accept(self, stream_id: str, offset: int = 0) -> None:
        self.calls.append(("accept", offset))

    async def stream_ack(self, stream_id: str, offset: int, done: bool = False) -> None:
        self.calls.append(("ack", offset, done))

    async def stream_cancel(self, stream_id: str, reason: str | None = None) -> None:
        self.calls.append(("cancel",))

    def _stream_ended(self, outcome: object) -> None:
        self.calls.append(("ended",))


async def test_incoming_skips_what_it_has_acks_every_mib_and_verifies() -> None:
    fake = _FakeStreamChannel()
    channel = cast(switchboard.Channel, fake)
    data = bytes(range(256)) * 9000  # 2.2 MiB
    offer = StreamOffer("st_1", "alice")
    sink = io.BytesIO()
    incoming = await Incoming.resume(channel, offer, sink, io.BytesIO(data[:1000]))
    assert (incoming.received, fake.calls) == (1000, [("accept", 1000)])
    # Bytes sent again from an earlier offset are skipped; a gap is an error.
    await incoming.data(0, data[:1500])
    await incoming.data(1500, data[1500:2000])
    with pytest.raises(switchboard.ProtocolError):
        await incoming.data(3000, data[3000:4000])
    step = 256 * 1024
    for at in range(2000, len(data), step):
        await incoming.data(at, data[at : at + step])
    assert [c for c in fake.calls if c[0] == "ack"] == [("ack", 2000 + 4 * step, False), ("ack", 2000 + 8 * step, False)]
    received = await incoming.finish(StreamEnd("st_1", hashlib.sha256(data).hexdigest().upper(), len(data)))
    assert (received.total_size, received.resumed_from) == (len(data), 1000)
    assert fake.calls[-2:] == [("ack", len(data), True), ("ended",)]
    assert data[:1000] + sink.getvalue() == data

    # The recipient checks the checksum itself: a mismatch cancels the stream.
    incoming = await Incoming.accept(channel, offer, io.BytesIO())
    await incoming.data(0, b"abc")
    with pytest.raises(switchboard.InvalidRequestError) as mismatch:
        await incoming.finish(StreamEnd("st_1", hashlib.sha256(b"abd").hexdigest(), 3))
    assert mismatch.value.code == ErrorCode.CHECKSUM_MISMATCH and fake.calls[-1] == ("cancel",)


def test_stream_events_match_the_protocol_crate() -> None:
    source = (REPO / "crates" / "protocol" / "src" / "lib.rs").read_text()
    rust = dict(re.findall(r'pub const (STREAM_\w+): &str = "(\w+)";', source))
    assert len(rust) == 14
    assert {name: getattr(frames, name) for name in rust} == rust


def test_poll_sources() -> None:
    from switchboard import PollSource, Tier
    from switchboard.channel import history_query

    # Any case, enum or string; normalized to the upper-case wire name.
    assert PollSource("kafka") is PollSource.KAFKA and PollSource("Database") is PollSource.DATABASE
    assert PollSource.parse("cache") is PollSource.CACHE and PollSource.parse(PollSource.LOG) is PollSource.LOG
    assert PollSource.CACHE == "CACHE" and Tier.LOG == "LOG"
    for given, wire in [("cache", "CACHE"), ("Log", "LOG"), ("kafka", "KAFKA"), (PollSource.AUTO, "AUTO")]:
        query = history_query(None, None, None, None, None, None, 10, "forward", given)
        assert query == {"limit": 10, "direction": "forward", "poll_source": wire}
        assert type(query["poll_source"]) is str
    assert "poll_source" not in history_query(None, None, None, None, None, None, None, "forward")
    for bad in ["tape", "db", "", " cache", 3]:
        with pytest.raises(switchboard.InvalidRequestError) as e:
            PollSource.parse(bad)  # type: ignore[arg-type]
        assert e.value.code == ErrorCode.INVALID_PAYLOAD


def test_history_page_sources() -> None:
    from switchboard import HistoryPage, Tier, TierRange

    wire = {
        "messages": [],
        "epoch": "e1",
        "head": 8,
        "first_available": 1,
        "sources": [{"tier": "LOG", "from": 1, "to": 3}, {"tier": "CACHE", "from": 4, "to": 8}],
    }
    page = HistoryPage.from_wire(wire)
    assert page.sources == [TierRange(Tier.LOG, 1, 3), TierRange(Tier.CACHE, 4, 8)]
    assert page.sources[1].tier is Tier.CACHE and page.sources[1].tier == "CACHE"
    # Servers without storage tiers send no sources.
    assert HistoryPage.from_wire({k: v for k, v in wire.items() if k != "sources"}).sources == []
    for bad in [{"tier": "TAPE", "from": 1, "to": 2}, {"tier": "LOG", "from": "1", "to": 2}, {"tier": "LOG", "to": 2}]:
        with pytest.raises(switchboard.ProtocolError):
            HistoryPage.from_wire({**wire, "sources": [bad]})


def test_tiers_match_the_protocol_crate() -> None:
    from switchboard import PollSource, Tier

    source = (REPO / "crates" / "protocol" / "src" / "history.rs").read_text()

    def variants(enum: str) -> set[str]:
        body = re.search(r"pub enum " + enum + r" \{(.*?)\n\}", source, re.S)
        assert body is not None, enum
        return {v.upper() for v in re.findall(r"^    (\w+),", body.group(1), re.M)}

    assert variants("Tier") == {t.value for t in Tier}
    # KAFKA is the server's alias of LOG.
    assert variants("PollSource") | {"KAFKA"} == {s.value for s in PollSource}
    assert re.search(r'"log" \| "kafka"', source)
