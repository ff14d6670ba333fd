// The pure pieces: frame codec, binary envelope, backoff, offset tracker, presence, URLs, errors,
// SHA-256 and the stream envelope and source reader.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { decodeBinary, decodeText, encodeBinaryPush, encodeText, encodeEnvelope, decodeEnvelope, encodeStreamEnvelope, decodeStreamEnvelope } from "../dist/frame.js";
import { Sha256, createSha256 } from "../dist/sha256.js";
import { ByteReader, CHUNK_BYTES } from "../dist/stream.js";
import { OffsetTracker } from "../dist/tracker.js";
import { PresenceTracker } from "../dist/presence.js";
import { backoffBound, backoffDelay, socketUrl, httpBaseUrl, HttpClient, SwitchboardError, shouldReconnect, CloseCodes, ErrorCodes, ClientErrorCodes, AgentConnection, WebRtcHelper } from "../dist/index.js";

const bytes = (s) => new TextEncoder().encode(s);

test("text frames round-trip; refs may be null", () => {
  const frame = { joinRef: "1", ref: "2", topic: "channel:room", event: "publish", payload: { type: "chat", data: [1] } };
  assert.equal(encodeText(frame), '["1","2","channel:room","publish",{"type":"chat","data":[1]}]');
  assert.deepEqual(decodeText(encodeText(frame)), frame);
  assert.deepEqual(decodeText('[null,null,"phoenix","error",{"code":"x"}]').joinRef, null);
  assert.throws(() => decodeText('["1","2","t"]'), /5 elements/);
  assert.throws(() => decodeText('[null,null,1,"e",{}]'), /strings/);
});

test("binary push layout (client → server)", () => {
  const out = encodeBinaryPush("1", "22", "channel:r", "publish", Uint8Array.of(9, 8));
  const expected = [0, 1, 2, 9, 7, ...bytes("1"), ...bytes("22"), ...bytes("channel:r"), ...bytes("publish"), 9, 8];
  assert.deepEqual([...out], expected);
  assert.throws(() => encodeBinaryPush(null, null, "t".repeat(256), "e", new Uint8Array()), /topic/);
});

test("binary server frames: push, reply and broadcast", () => {
  const push = Uint8Array.from([0, 1, 3, 7, ...bytes("5"), ...bytes("a:b"), ...bytes("message"), 1, 2, 3]);
  assert.deepEqual(decodeBinary(push), { joinRef: "5", ref: null, topic: "a:b", event: "message", payload: { binary: Uint8Array.of(1, 2, 3) } });
  const body = bytes('{"offset":4}');
  const reply = Uint8Array.from([1, 1, 2, 3, 2, ...bytes("5"), ...bytes("12"), ...bytes("a:b"), ...bytes("ok"), ...body]);
  assert.deepEqual(decodeBinary(reply), { joinRef: "5", ref: "12", topic: "a:b", event: "phx_reply", payload: { status: "ok", response: { offset: 4 } } });
  const broadcast = Uint8Array.from([2, 3, 7, ...bytes("a:b"), ...bytes("message"), 7]);
  assert.deepEqual(decodeBinary(broadcast), { joinRef: null, ref: null, topic: "a:b", event: "message", payload: { binary: Uint8Array.of(7) } });
  assert.throws(() => decodeBinary(Uint8Array.of(2, 9, 9, 1)), /shorter/);
  assert.throws(() => decodeBinary(Uint8Array.of(7)), /kind 7/);
});

test("the binary envelope round-trips and rejects bad lengths", () => {
  const attachments = [Uint8Array.from({ length: 256 }, (_, i) => i), new Uint8Array(0), Uint8Array.of(1)];
  const env = encodeEnvelope({ type: "file", data: { n: 1 } }, attachments);
  const header = JSON.parse(new TextDecoder().decode(env.subarray(4, 4 + new DataView(env.buffer).getUint32(0))));
  assert.deepEqual(header, { type: "file", data: { n: 1 }, attachment_sizes: [256, 0, 1] });
  assert.deepEqual(decodeEnvelope(env), { header: { type: "file", data: { n: 1 } }, attachments });
  assert.throws(() => decodeEnvelope(env.subarray(0, env.length - 1)), /past the frame/);
  assert.throws(() => decodeEnvelope(Uint8Array.of(...env, 0)), /after the last/);
  assert.throws(() => decodeEnvelope(Uint8Array.of(0, 0, 0, 99, 1)), /runs past/);
});

test("SHA-256: the FIPS 180-4 / NIST vectors, incrementally and in one piece", () => {
  const vectors = [
    ["", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    ["abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"],
    ["abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"],
    [
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1",
    ],
    ["a".repeat(1_000_000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"],
  ];
  for (const [text, digest] of vectors) {
    for (const make of [() => new Sha256(), createSha256]) {
      const whole = make();
      whole.update(bytes(text));
      assert.equal(whole.hex(), digest, `${text.slice(0, 10)}… in one piece`);
      const piecewise = make();
      const input = bytes(text);
      for (let i = 0; i < input.length; i += 7) piecewise.update(input.subarray(i, i + 7));
      assert.equal(piecewise.hex(), digest, `${text.slice(0, 10)}… 7 bytes at a time`);
    }
  }
  assert.ok(!(createSha256() instanceof Sha256), "Node hashes with node:crypto");
  // The one-million-a vector as 1000 updates of 1000 bytes (block boundaries fall mid-update).
  const h = new Sha256();
  const thousand = bytes("a".repeat(1000));
  for (let i = 0; i < 1000; i++) h.update(thousand);
  assert.equal(h.hex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  assert.throws(() => h.hex(), /already/);
  assert.throws(() => h.update(thousand), /already/);
});

test("SHA-256: every length around the padding boundaries, split anywhere, matches node:crypto", () => {
  const data = Uint8Array.from({ length: 300 }, (_, i) => (i * 131 + 7) & 0xff);
  for (let length = 0; length <= 300; length++) {
    const input = data.subarray(0, length);
    const expected = createHash("sha256").update(input).digest("hex");
    const split = (length * 37) % (length + 1);
    const h = new Sha256();
    h.update(input.subarray(0, split));
    h.update(new Uint8Array(0));
    h.update(input.subarray(split));
    assert.equal(h.hex(), expected, `length ${length} split at ${split}`);
  }
  const big = new Uint8Array(3 * CHUNK_BYTES + 12345);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  const h = new Sha256();
  for (let i = 0; i < big.length; i += 100_003) h.update(big.subarray(i, i + 100_003));
  assert.equal(h.hex(), createHash("sha256").update(big).digest("hex"));
});

test("the stream envelope: u32 header length, header JSON, bytes", () => {
  const env = encodeStreamEnvelope({ stream_id: "st_1", seq: 3 }, Uint8Array.of(1, 2, 3));
  const json = bytes('{"stream_id":"st_1","seq":3}');
  assert.deepEqual([...env], [0, 0, 0, json.length, ...json, 1, 2, 3]);
  const { header, bytes: body } = decodeStreamEnvelope(env);
  assert.deepEqual(header, { stream_id: "st_1", seq: 3 });
  assert.deepEqual([...body], [1, 2, 3]);
  assert.deepEqual([...decodeStreamEnvelope(encodeStreamEnvelope({ offset: 0 }, new Uint8Array(0))).bytes], []);
  assert.throws(() => decodeStreamEnvelope(Uint8Array.of(0, 0)), /length prefix/);
  assert.throws(() => decodeStreamEnvelope(Uint8Array.of(0, 0, 0, 9, 123)), /past the frame/);
  assert.throws(() => decodeStreamEnvelope(Uint8Array.of(0, 0, 0, 2, ...bytes("[]"))), /not an object/);
});

test("stream sources are read in pieces of the asked size, whatever their own pieces", async () => {
  const data = Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff);
  const readAll = async (source, size) => {
    const reader = ByteReader.of(source);
    const pieces = [];
    for (;;) {
      const piece = await reader.read(size);
      if (piece.length === 0) return pieces;
      pieces.push([...piece]);
    }
  };
  async function* generator() {
    yield data.subarray(0, 1);
    yield new Uint8Array(0);
    yield data.subarray(1, 700);
    yield data.subarray(700);
  }
  const stream = () =>
    new ReadableStream({
      start(controller) {
        for (let i = 0; i < data.length; i += 333) controller.enqueue(data.slice(i, i + 333));
        controller.close();
      },
    });
  for (const [what, source] of [
    ["Uint8Array", () => data],
    ["ArrayBuffer", () => data.slice().buffer],
    ["Blob", () => new Blob([data.subarray(0, 10), data.subarray(10)])],
    ["ReadableStream", stream],
    ["async generator", generator],
  ]) {
    const pieces = await readAll(source(), 256);
    assert.deepEqual(pieces.map((p) => p.length), [256, 256, 256, 232], what);
    assert.deepEqual(pieces.flat(), [...data], what);
  }
  assert.deepEqual(await readAll(new Uint8Array(0), 256), []);
  assert.throws(() => ByteReader.of("text"), (e) => e instanceof SwitchboardError && e.code === "invalid_argument");
  await assert.rejects(
    readAll((async function* () { yield "text"; })(), 10),
    (e) => e instanceof SwitchboardError && e.code === "invalid_argument" && /not bytes/.test(e.message),
  );
});

test("backoff bounds grow and cap; jitter stays within them", () => {
  const b = {};
  assert.deepEqual([0, 1, 3, 7, 1000].map((n) => backoffBound(b, n)), [100, 200, 800, 10000, 10000]);
  assert.equal(backoffDelay(b, 2, 0), 0);
  assert.equal(backoffDelay(b, 2, 0.5), 200);
  assert.equal(backoffDelay(b, 2, 7), 400);
  for (let n = 0; n < 40; n++) assert.ok(backoffDelay(b, n) <= backoffBound(b, n));
  const samples = Array.from({ length: 64 }, () => backoffDelay(b, 10));
  assert.ok(samples.some((d) => d !== samples[0]), "jitter is random");
  assert.equal(backoffBound({ multiplier: 0.5 }, 5), 100);
  assert.equal(backoffBound({ multiplier: Infinity }, 1), 10000);
});

const reply = (head, epoch = "e1", gap) => ({ head, epoch, persistent: true, gap });

test("tracker: a fresh join starts after head; duplicates and old offsets are dropped", () => {
  const t = new OffsetTracker();
  t.onJoin(reply(10));
  assert.equal(t.accept(10), false);
  assert.equal(t.accept(11), true);
  assert.equal(t.accept(11), false, "duplicate");
  assert.equal(t.accept(undefined), true, "ephemeral always passes");
  assert.equal(t.accept(13), true, "a filtered-out offset is not a gap");
  assert.equal(t.last, 13);
});

test("tracker: resume replays after the last delivered offset", () => {
  const t = new OffsetTracker(4);
  t.onJoin(reply(10));
  assert.equal(t.accept(4), false);
  assert.equal(t.accept(5), true);
  assert.equal(t.accept(6), true);
  assert.deepEqual(t.resume(), { since: 6, epoch: "e1" });
  t.onJoin(reply(12));
  assert.equal(t.accept(5), false);
  assert.equal(t.accept(6), false);
  assert.equal(t.accept(7), true);
});

test("tracker: gaps move the mark; since beyond head is clamped; ephemeral channels have no position", () => {
  const t = new OffsetTracker();
  t.onJoin(reply(100));
  assert.equal(t.accept(101), true);
  t.onJoin(reply(3, "e2", { reason: "epoch_changed", first_available: 1 }));
  assert.equal(t.accept(1), true);
  assert.deepEqual(t.resume(), { since: 1, epoch: "e2" });
  t.onJoin(reply(60, "e2", { reason: "retention", first_available: 50 }));
  assert.equal(t.accept(49), false);
  assert.equal(t.accept(50), true);

  const beyond = new OffsetTracker(500);
  beyond.onJoin(reply(20, "e9"));
  assert.equal(beyond.accept(21), true);

  const ephemeral = new OffsetTracker();
  ephemeral.onJoin({ head: 0, epoch: "e1", persistent: false });
  assert.equal(ephemeral.accept(undefined), true);
  assert.equal(ephemeral.resume(), undefined);
});

const meta = (name, ref, joined_at = 1, extra) => ({ metas: [{ phx_ref: ref, agent_name: name, joined_at, ...(extra && { meta: extra }) }] });

test("presence merges by phx_ref and reports who came and went", () => {
  const p = new PresenceTracker();
  assert.deepEqual(p.syncState({ alice: meta("alice", "a1", 5, { role: "host" }) }), { joined: ["alice"], left: [] });
  // The joiner's own join arrives again in a diff: merged, not doubled.
  assert.deepEqual(p.syncDiff({ joins: { alice: meta("alice", "a1", 5), bob: meta("bob", "b1", 7) }, leaves: {} }), { joined: ["bob"], left: [] });
  assert.deepEqual(p.list(), [
    { agentName: "alice", joinedAt: 5, meta: { role: "host" }, sessions: 1 },
    { agentName: "bob", joinedAt: 7, meta: {}, sessions: 1 },
  ]);
  // A takeover: bob's new session joins, then the old one leaves; bob never disappears.
  assert.deepEqual(p.syncDiff({ joins: { bob: meta("bob", "b2", 9) } }), { joined: [], left: [] });
  assert.equal(p.list()[1].sessions, 2);
  assert.deepEqual(p.syncDiff({ leaves: { bob: meta("bob", "b1") } }), { joined: [], left: [] });
  assert.deepEqual(p.list()[1], { agentName: "bob", joinedAt: 9, meta: {}, sessions: 1 });
  assert.deepEqual(p.syncDiff({ leaves: { bob: meta("bob", "b2"), carol: meta("carol", "c1") } }), { joined: [], left: ["bob"] });
  // A new state after a rejoin replaces everything.
  assert.deepEqual(p.syncState({ carol: meta("carol", "c2") }), { joined: ["carol"], left: ["alice"] });
});

test("socket URLs from http, ws and /socket forms", () => {
  const expected = "ws://127.0.0.1:7400/socket/websocket?vsn=2.0.0";
  for (const url of ["http://127.0.0.1:7400", "ws://127.0.0.1:7400/", "http://127.0.0.1:7400/socket", "ws://127.0.0.1:7400/socket/websocket?x=1#h"]) {
    assert.equal(socketUrl(url), expected, url);
  }
  assert.equal(socketUrl("https://example.test/base/"), "wss://example.test/base/socket/websocket?vsn=2.0.0");
  assert.throws(() => socketUrl("ftp://x"), (e) => e instanceof SwitchboardError && e.code === "invalid_argument");
  assert.throws(() => socketUrl("not a url"), (e) => e.code === "invalid_argument");
});

test("HTTP base URLs from http, ws and /socket forms; HttpClient checks its options", () => {
  for (const url of ["http://127.0.0.1:7400", "ws://127.0.0.1:7400/", "http://127.0.0.1:7400/socket", "ws://127.0.0.1:7400/socket/websocket?x=1#h"]) {
    assert.equal(httpBaseUrl(url), "http://127.0.0.1:7400", url);
  }
  assert.equal(httpBaseUrl("wss://example.test/base/socket"), "https://example.test/base");
  assert.throws(() => httpBaseUrl("ftp://x"), (e) => e instanceof SwitchboardError && e.code === "invalid_argument");
  assert.equal(new HttpClient({ url: "ws://h:1/socket/websocket", apiKey: "k" }).baseUrl, "http://h:1");
  for (const options of [{ url: "http://h" }, { url: "http://h", apiKey: "k", apiKeyScope: "everyone" }, { apiKey: "k" }]) {
    assert.throws(() => new HttpClient(options), (e) => e.code === "invalid_argument", JSON.stringify(options));
  }
});

test("HttpClient requests: paths, public scope, channel password, bodies; error bodies become SwitchboardErrors", async () => {
  const requests = [];
  const responses = [
    new Response(JSON.stringify({ messages: [{ delivery_count: 2, message: { id: "m", channel: "c/d", from: "a", type: "t", data: null, ts: 1, attachments: ["AQI="] } }] })),
    new Response(null, { status: 204 }),
    new Response(JSON.stringify({ entries: [], next: "cursor" })),
    new Response(JSON.stringify({ code: "rate_limited", message: "slow down", retry_after_ms: 5 }), { status: 429 }),
    new Response("<html>bad gateway</html>", { status: 502 }),
  ];
  const fetch = async (url, init) => {
    requests.push({ url, method: init.method, headers: init.headers, body: init.body });
    return responses.shift();
  };
  const client = new HttpClient({ url: "http://h:1", apiKey: "k", apiKeyScope: "public", channelPassword: "pw", fetch });
  const [delivery] = await client.inboxReceive("c/d", "bot", { max: 5, visibilityTimeoutMs: 1000 });
  assert.equal(delivery.deliveryCount, 2);
  assert.deepEqual([...delivery.message.attachments[0]], [1, 2]);
  await client.inboxReject("c/d", "bot", "m", { requeue: false });
  assert.deepEqual(await client.deadLetters("c/d", { recipient: "bot", limit: 2 }), { entries: [], next: "cursor" });
  const limited = await client.inboxAck("c/d", "bot", "m").catch((e) => e);
  assert.deepEqual([limited.code, limited.retryAfterMs, limited.fromServer], ["rate_limited", 5, true]);
  const proxy = await client.deleteDeadLetter("c/d", "m").catch((e) => e);
  assert.equal(proxy.code, "internal");
  assert.match(proxy.message, /HTTP 502: <html>bad gateway/);
  assert.deepEqual(
    requests.map((r) => [r.method, r.url, r.body]),
    [
      ["POST", "http://h:1/v1/channels/c%2Fd/inbox/bot/receive?scope=public", '{"max":5,"visibility_timeout_ms":1000}'],
      ["POST", "http://h:1/v1/channels/c%2Fd/inbox/bot/reject?scope=public", '{"id":"m","requeue":false}'],
      ["GET", "http://h:1/v1/channels/c%2Fd/dead_letters?recipient=bot&limit=2&scope=public", undefined],
      ["POST", "http://h:1/v1/channels/c%2Fd/inbox/bot/ack?scope=public", '{"id":"m"}'],
      ["DELETE", "http://h:1/v1/channels/c%2Fd/dead_letters/m?scope=public", undefined],
    ],
  );
  assert.deepEqual(requests[0].headers, { authorization: "Bearer k", "content-type": "application/json", "x-channel-password": "pw" });
  assert.deepEqual(requests[2].headers, { authorization: "Bearer k", "x-channel-password": "pw" });

  const hanging = new HttpClient({ url: "http://h:1", apiKey: "k", requestTimeoutMs: 20, fetch: (_url, init) => new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(new Error("aborted")))) });
  assert.equal((await hanging.inboxAck("c", "bot", "m").catch((e) => e)).code, "timeout");
});

test("HttpClient directory requests: /v1/agents paths (never scoped), bodies, camelCase cards", async () => {
  const requests = [];
  const wire = { name: "a:b@c", capabilities: ["x"], metadata: { n: 1 }, online: false, updated_at: 7 };
  const card = { name: "a:b@c", capabilities: ["x"], metadata: { n: 1 }, online: false, updatedAt: 7 };
  const responses = [
    new Response(JSON.stringify(wire)),
    new Response(JSON.stringify(wire)),
    new Response(JSON.stringify(wire)),
    new Response(null, { status: 204 }),
    new Response(JSON.stringify({ agents: [wire] })),
    new Response(JSON.stringify({ agents: "nope" })),
  ];
  const fetch = async (url, init) => {
    requests.push([init.method, url, init.body]);
    return responses.shift();
  };
  const client = new HttpClient({ url: "http://h:1", apiKey: "k", apiKeyScope: "public", fetch });
  assert.deepEqual(await client.announceAgent("a:b@c", ["x"], { n: 1 }), card);
  assert.deepEqual(await client.updateAgentMetadata("a:b@c", { n: 1 }), card);
  assert.deepEqual(await client.agent("a:b@c"), card);
  assert.equal(await client.removeAgent("a:b@c"), undefined);
  const query = { capability: "x", filters: { "stats.n": { min: 1 }, tier: "gold" }, online: true, limit: 5 };
  assert.deepEqual(await client.discover(query), [card]);
  assert.equal((await client.discover().catch((e) => e)).code, "internal", "an unreadable reply");
  assert.deepEqual(requests, [
    ["PUT", "http://h:1/v1/agents/a%3Ab%40c", '{"capabilities":["x"],"metadata":{"n":1}}'],
    ["PATCH", "http://h:1/v1/agents/a%3Ab%40c", '{"metadata":{"n":1}}'],
    ["GET", "http://h:1/v1/agents/a%3Ab%40c", undefined],
    ["DELETE", "http://h:1/v1/agents/a%3Ab%40c", undefined],
    ["POST", "http://h:1/v1/agents/discover", JSON.stringify(query)],
    ["POST", "http://h:1/v1/agents/discover", "{}"],
  ]);
});

test("HttpClient channel and history requests: poll_source in upper case, scope in the body of a create, camelCase channel info", async () => {
  const requests = [];
  const wireInfo = {
    name: "c/d", scope: "public", epoch: "e1", head: 0, first_available: 1, storage: "log",
    retention: { max_messages: 0, max_age_secs: 0, cache: { max_messages: 3, ttl_secs: 9 }, log: { max_age_secs: 60 } },
    has_password: true, created_at: 7, agents: 2,
  };
  const info = {
    name: "c/d", scope: "public", epoch: "e1", head: 0, firstAvailable: 1, storage: "log",
    retention: { maxMessages: 0, maxAgeSecs: 0, cache: { maxMessages: 3, ttlSecs: 9 }, log: { maxAgeSecs: 60 } },
    hasPassword: true, createdAt: 7, agents: 2,
  };
  const wirePage = {
    messages: [{ id: "m", offset: 4, channel: "c/d", from: "a", type: "t", data: 1, ts: 1 }],
    epoch: "e1", head: 4, first_available: 1, next: 5,
    sources: [{ tier: "LOG", from: 3, to: 3 }, { tier: "CACHE", from: 4, to: 4 }],
  };
  const responses = [
    new Response(JSON.stringify(wireInfo), { status: 201 }),
    new Response(JSON.stringify(wireInfo)),
    new Response(null, { status: 204 }),
    new Response(JSON.stringify(wirePage)),
    new Response(JSON.stringify({ messages: [], epoch: "e1", head: 0, first_available: 1 })),
    new Response(JSON.stringify({ messages: [], epoch: "e1", head: 0, first_available: 1, sources: [{ tier: "TAPE", from: 1, to: 1 }] })),
  ];
  const fetch = async (url, init) => {
    requests.push([init.method, url, init.body]);
    return responses.shift();
  };
  const client = new HttpClient({ url: "http://h:1", apiKey: "k", apiKeyScope: "public", fetch });
  const retention = { maxMessages: 10, cache: { maxMessages: 3, maxBytes: 4096, ttlSecs: 9 }, log: { maxAgeSecs: 60 } };
  assert.deepEqual(await client.createChannel("c/d", { password: "pw", storage: "log", retention }), info);
  assert.deepEqual(await client.channel("c/d"), info);
  assert.equal(await client.deleteChannel("c/d"), undefined);
  const page = await client.history("c/d", { from_offset: 3, limit: 2, direction: "forward", pollSource: "cache", sender: undefined });
  assert.deepEqual(page.sources, wirePage.sources);
  assert.equal(page.messages[0].offset, 4);
  assert.deepEqual([page.next, page.head, page.first_available], [5, 4, 1]);
  assert.deepEqual((await client.history("c/d", { pollSource: "Kafka" })).sources, [], "an older server's page without sources");
  assert.equal((await client.history("c/d").catch((e) => e)).code, "internal", "an unreadable tier");
  assert.deepEqual(requests, [
    ["POST", "http://h:1/v1/channels", JSON.stringify({
      name: "c/d", scope: "public", password: "pw", storage: "log",
      retention: { max_messages: 10, cache: { max_messages: 3, max_bytes: 4096, ttl_secs: 9 }, log: { max_age_secs: 60 } },
    })],
    ["GET", "http://h:1/v1/channels/c%2Fd?scope=public", undefined],
    ["DELETE", "http://h:1/v1/channels/c%2Fd?scope=public", undefined],
    ["GET", "http://h:1/v1/channels/c%2Fd/messages?from_offset=3&limit=2&direction=forward&poll_source=CACHE&scope=public", undefined],
    ["GET", "http://h:1/v1/channels/c%2Fd/messages?poll_source=KAFKA&scope=public", undefined],
    ["GET", "http://h:1/v1/channels/c%2Fd/messages?scope=public", undefined],
  ]);

  // Refused before a request: sources, policies and retention fields that do not exist.
  for (const call of [
    () => client.history("c", { pollSource: "db" }),
    () => client.history("c", { pollSource: 1 }),
    () => client.history("c", { from_offset: { n: 1 } }),
    () => client.history("", {}),
    () => client.createChannel("c", { storage: "PERSISTENT" }),
    () => client.createChannel("c", { retention: { maxMessages: 1.5 } }),
    () => client.createChannel("c", { retention: { cache: { max_messages: 3 } } }),
    () => client.createChannel("c", { retention: { log: { maxMessages: 3 } } }),
    () => client.createChannel("c", { expiresAt: 1 }),
  ]) {
    assert.equal((await call().catch((e) => e)).code, "invalid_argument", call.toString());
  }
  assert.equal(requests.length, 6, "nothing was sent");
});

test("errors carry stable codes; close-code ranges", () => {
  const e = SwitchboardError.fromReply({ code: "rate_limited", message: "slow down", retry_after_ms: 250 }, 4000);
  assert.ok(e instanceof Error);
  assert.equal(e.name, "SwitchboardError");
  assert.equal(e.message, "rate_limited: slow down");
  assert.deepEqual([e.code, e.retryAfterMs, e.closeCode, e.fromServer], ["rate_limited", 250, 4000, true]);
  assert.equal(new SwitchboardError("timeout", "late").fromServer, false);
  assert.equal(ClientErrorCodes.filter((c) => ErrorCodes.includes(c)).length, 0, "client codes never collide with protocol codes");
  // The SDK knows exactly the codes the protocol crate defines.
  const codesRs = readFileSync(new URL("../../../crates/protocol/src/codes.rs", import.meta.url), "utf8");
  const defined = [...codesRs.matchAll(/^\s+[A-Z]\w+ = "([a-z_]+)",$/gm)].map((m) => m[1]);
  assert.ok(defined.length > 30, "codes.rs parsed");
  assert.deepEqual([...ErrorCodes].sort(), defined.sort());
  assert.deepEqual([1001, 4000, 4001, 4499].map(shouldReconnect), [true, true, true, true]);
  assert.deepEqual([4500, 4501, 4502, 4503, 4999].map(shouldReconnect), [false, false, false, false, false]);
  assert.equal(CloseCodes[4500], "invalid_key");
  assert.equal(CloseCodes[4503], "key_revoked");
  // The SDK knows every close code the protocol crate defines.
  const closeCodes = [...codesRs.matchAll(/^\s+[A-Z]\w+ = (\d{4}),$/gm)].map((m) => Number(m[1]));
  assert.ok(closeCodes.includes(4503), "codes.rs close codes parsed");
  assert.deepEqual(Object.keys(CloseCodes).map(Number).sort(), closeCodes.sort());
});

test("WebRtcHelper fails clearly where there is no RTCPeerConnection (Node)", () => {
  assert.equal(globalThis.RTCPeerConnection, undefined, "this test runs where RTCPeerConnection is absent");
  assert.throws(
    () => new WebRtcHelper(new AgentConnection()),
    (e) => e instanceof SwitchboardError && e.code === "unsupported" && /RTCPeerConnection/.test(e.message) && !e.fromServer,
  );
  // An implementation given as an option is used instead of the global one.
  class FakePeerConnection {}
  const rtc = new WebRtcHelper(new AgentConnection(), { RTCPeerConnection: FakePeerConnection });
  assert.deepEqual(rtc.calls, []);
});
