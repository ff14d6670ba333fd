// Streams against the real server: multi-MiB payloads with progress and completion, sources of
// every kind, sockets dropped mid-stream (chunks re-sent, the recipient re-accepting), a
// recipient resuming on a new connection, checksum mismatches seen by both sides, cancels, and
// the protocol's refusals.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { createHash, randomBytes } from "node:crypto";
import WebSocket from "ws";
import { AgentConnection, SwitchboardError } from "../dist/index.js";
import { decodeText, encodeBinaryPush, encodeStreamEnvelope } from "../dist/frame.js";
import { startServer, withTimeout, nextEvent, unique } from "./harness.mjs";

const MiB = 1024 * 1024;
const fast = { initialMs: 20, maxMs: 200 };

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.close();
});

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/** A connected agent, disconnected when the test ends. `url` defaults to the server. */
async function agent(t, channelName, agentName, options = {}, setup = () => {}) {
  const a = new AgentConnection();
  t.after(() => a.disconnect());
  setup(a);
  await a.connect({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName, agentName, backoff: fast, ...options });
  return a;
}

/** Everything `a` dispatches as `type` events, in order. */
function record(a, type) {
  const seen = [];
  a.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}

/** A promise and the function that resolves it. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** A source that yields `bytes` in pieces of `piece` bytes, then (unless `hang` is false) waits
 * forever: a sender that has not finished reading its payload. */
async function* pieces(bytes, piece, hang = false) {
  for (let i = 0; i < bytes.length; i += piece) yield bytes.subarray(i, i + piece);
  if (hang) await new Promise(() => {});
}

const isCode = (code) => (e) => e instanceof SwitchboardError && e.code === code;

const concat = (parts) => Buffer.concat(parts);

/** A TCP proxy in front of the server whose connections can be cut (then let through again). */
class Proxy {
  constructor() {
    this.sockets = new Set();
    this.server = net.createServer((client) => {
      const upstream = net.connect(server.port, "127.0.0.1");
      for (const [a, b] of [[client, upstream], [upstream, client]]) {
        this.sockets.add(a);
        a.on("close", () => {
          this.sockets.delete(a);
          b.destroy();
        });
        a.on("error", () => b.destroy());
        a.pipe(b);
      }
    });
  }
  async listen(t) {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    t.after(() => {
      this.cut();
      return new Promise((r) => this.server.close(r));
    });
    return `http://127.0.0.1:${this.server.address().port}`;
  }
  cut() {
    for (const s of this.sockets) s.destroy();
  }
}

test("a multi-MiB payload arrives intact, with progress on both sides and streamComplete for the sender", async (t) => {
  const channel = unique("streams");
  const data = randomBytes(9 * MiB + 12345);
  const offered = deferred();
  const bob = await agent(t, channel, "bob", {}, (b) => b.onStreamOffer(offered.resolve));
  const alice = await agent(t, channel, "alice");
  const progress = record(alice, "streamProgress");
  const checkpoints = record(alice, "streamCheckpoint");
  const completed = nextEvent(alice, "streamComplete", () => true, "alice hears the stream completed");

  const sentProgress = [];
  let opened;
  const sending = alice.sendStream("bob", data, {
    name: "model.bin",
    contentType: "application/octet-stream",
    meta: { epoch: 3 },
    onOpen: (id) => (opened = id),
    onProgress: (p) => sentProgress.push(p),
  });
  const offer = await withTimeout(offered.promise, "bob is offered the stream");
  assert.deepEqual(offer, {
    streamId: offer.streamId,
    from: "alice",
    name: "model.bin",
    size: data.length,
    contentType: "application/octet-stream",
    meta: { epoch: 3 },
    acked: 0,
  });
  assert.match(offer.streamId, /^st_/);

  const got = [];
  const receivedProgress = [];
  const received = await withTimeout(
    bob.receiveStream(offer, { sink: (chunk) => void got.push(Buffer.from(chunk)), onProgress: (p) => receivedProgress.push(p.offset) }),
    "bob receives the stream",
  );
  const sent = await withTimeout(sending, "alice's sendStream resolves");
  const checksum = sha256(data);
  assert.deepEqual(sent, { streamId: offer.streamId, totalSize: data.length, checksum });
  assert.deepEqual(received, { streamId: offer.streamId, totalSize: data.length, checksum });
  assert.ok(concat(got).equals(data), "the sink got every byte once, in order");
  assert.equal(opened, offer.streamId, "onOpen told the id");
  assert.deepEqual(await completed, { streamId: offer.streamId, totalSize: data.length });

  // The sender's progress: the bytes the server holds, chunk by chunk, up to everything.
  assert.equal(sentProgress.length, Math.ceil(data.length / (256 * 1024)));
  assert.ok(sentProgress.every((p, i) => p.streamId === offer.streamId && (i === 0 || p.offset > sentProgress[i - 1].offset)));
  assert.equal(sentProgress.at(-1).offset, data.length);
  // The recipient's progress: bytes received, rising to the total.
  assert.ok(receivedProgress.every((o, i) => i === 0 || o > receivedProgress[i - 1]));
  assert.equal(receivedProgress.at(-1), data.length);
  // What the recipient acknowledged (about every MiB, then everything), as the sender hears it.
  assert.ok(progress.length >= 5, `${progress.length} streamProgress events`);
  assert.ok(progress.every((p, i) => p.streamId === offer.streamId && (i === 0 || p.offset > progress[i - 1].offset)));
  assert.equal(progress.at(-1).offset, data.length);
  // The server checkpoints every 4 MiB (and at the close).
  assert.ok(checkpoints.length >= 2, `${checkpoints.length} checkpoints`);
  assert.deepEqual(checkpoints.at(-1), { streamId: offer.streamId, nextSeq: sentProgress.length, offset: data.length });
});

test("Blob, File, ReadableStream and async-iterable sources; WritableStream and in-memory sinks", async (t) => {
  const channel = unique("sources");
  const offers = [];
  const waiting = [];
  const bob = await agent(t, channel, "bob", {}, (b) =>
    b.onStreamOffer((offer) => (waiting.length > 0 ? waiting.shift()(offer) : offers.push(offer))),
  );
  const nextOffer = () => withTimeout(offers.length > 0 ? Promise.resolve(offers.shift()) : new Promise((r) => waiting.push(r)), "an offer");
  const alice = await agent(t, channel, "alice");

  const cases = [
    ["a File", (d) => new File([d.subarray(0, 1000), d.subarray(1000)], "report.pdf", { type: "application/pdf" })],
    ["a Blob", (d) => new Blob([d])],
    ["a ReadableStream of uneven pieces", (d) => ReadableStream.from(pieces(d, 100_000))],
    ["an async generator of tiny and large pieces", (d) => (async function* () {
      yield d.subarray(0, 1);
      yield d.subarray(1, 3 * MiB);
      yield d.subarray(3 * MiB);
    })()],
  ];
  for (const [what, make] of cases) {
    const data = randomBytes(3 * MiB + 777);
    const sending = alice.sendStream("bob", make(data));
    const offer = await nextOffer();
    if (what === "a File") {
      assert.deepEqual([offer.name, offer.size, offer.contentType], ["report.pdf", data.length, "application/pdf"], "described by the File");
    }
    if (what === "a Blob") assert.equal(offer.size, data.length);
    if (what.startsWith("an async")) assert.equal(offer.size, undefined, "a size nobody knew is not announced");
    // Alternate the sinks: a WritableStream, and none (the bytes come back).
    let result;
    let written = [];
    if (what.includes("Blob") || what.includes("File")) {
      let closed = false;
      const sink = new WritableStream({ write: (chunk) => void written.push(Buffer.from(chunk)), close: () => void (closed = true) });
      result = await withTimeout(bob.receiveStream(offer, { sink }), `bob receives ${what}`);
      assert.equal(closed, true, "the WritableStream was closed at the end");
      assert.equal(result.bytes, undefined);
    } else {
      result = await withTimeout(bob.receiveStream(offer.streamId), `bob receives ${what}`);
      written = [result.bytes];
    }
    assert.ok(concat(written).equals(data), what);
    assert.equal(result.checksum, sha256(data), what);
    assert.deepEqual(await withTimeout(sending, "sent"), { streamId: offer.streamId, totalSize: data.length, checksum: sha256(data) });
  }
});

test("sockets dropped mid-stream: chunks in flight are re-sent, the recipient re-accepts where it got to", async (t) => {
  const channel = unique("drops");
  const data = randomBytes(8 * MiB + 5);
  const [toAlice, toBob] = [new Proxy(), new Proxy()];
  const [aliceUrl, bobUrl] = [await toAlice.listen(t), await toBob.listen(t)];
  const offers = [];
  const offered = deferred();
  const bob = await agent(t, channel, "bob", { url: bobUrl }, (b) =>
    b.onStreamOffer((offer) => {
      offers.push(offer);
      offered.resolve(offer);
    }),
  );
  // Alice's socket is cut right after it hands over her 10th chunk: that chunk's reply cannot
  // arrive, so it (and whatever else was in flight) is sent again after the rejoin.
  let chunksSent = 0;
  class Tapped extends WebSocket {
    send(data, ...rest) {
      super.send(data, ...rest);
      if (typeof data !== "string" && ++chunksSent === 10) toAlice.cut();
    }
  }
  const alice = await agent(t, channel, "alice", { url: aliceUrl, WebSocket: Tapped });
  const aliceBack = nextEvent(alice, "connect", (c) => c.reconnected, "alice reconnects");
  const bobBack = nextEvent(bob, "connect", (c) => c.reconnected, "bob reconnects");

  const sending = alice.sendStream("bob", data);
  const offer = await withTimeout(offered.promise, "bob is offered the stream");
  const got = [];
  let bobCut = false;
  const receiving = bob.receiveStream(offer, {
    sink: (chunk) => void got.push(Buffer.from(chunk)),
    onProgress: ({ offset }) => {
      if (offset >= 3 * MiB && !bobCut) {
        bobCut = true;
        toBob.cut();
      }
    },
  });
  await aliceBack;
  await bobBack;
  const [sent, received] = await withTimeout(Promise.all([sending, receiving]), "the stream completes across the drops", 30_000);
  assert.equal(sent.checksum, sha256(data));
  assert.ok(chunksSent > Math.ceil(data.length / (256 * 1024)), `${chunksSent} chunk frames: those in flight at the cut were sent again`);
  assert.deepEqual(received, { streamId: offer.streamId, totalSize: data.length, checksum: sha256(data) });
  assert.ok(concat(got).equals(data), "no byte lost or written twice");
  assert.equal(offers.length, 1, "the offer repeated at bob's rejoin was taken up by the SDK, not shown again");
});

test("a recipient that disconnects mid-way resumes on a new connection from the bytes it kept", async (t) => {
  const channel = unique("resume-recv");
  const data = randomBytes(6 * MiB + 99);
  const offered = deferred();
  const bob1 = new AgentConnection();
  bob1.onStreamOffer(offered.resolve);
  await bob1.connect({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName: channel, agentName: "bob" });
  const alice = await agent(t, channel, "alice");
  const completed = nextEvent(alice, "streamComplete", () => true, "alice hears the stream completed");
  const sending = alice.sendStream("bob", data, { name: "big.tar" });
  const offer = await withTimeout(offered.promise, "bob is offered the stream");

  // Bob keeps what he received (a partial file) and goes away after 2 MiB.
  const kept = [];
  const left = deferred();
  const first = bob1.receiveStream(offer, {
    sink: (chunk) => void kept.push(Buffer.from(chunk)),
    onProgress: ({ offset }) => {
      if (offset >= 2 * MiB) left.resolve(bob1.disconnect());
    },
  });
  await assert.rejects(withTimeout(first, "bob's first receive ends"), isCode("not_joined"));
  await left.promise;
  const prefix = concat(kept);
  assert.ok(prefix.length >= 2 * MiB && prefix.length < data.length);
  assert.ok(prefix.equals(data.subarray(0, prefix.length)));
  assert.equal(sha256(data), (await withTimeout(sending, "alice's send finishes without bob")).checksum);

  // A new connection is offered the stream again, with bob's checkpoint.
  const again = deferred();
  const bob2 = await agent(t, channel, "bob", {}, (b) => b.onStreamOffer(again.resolve));
  const reoffer = await withTimeout(again.promise, "the new connection is offered the stream");
  assert.equal(reoffer.streamId, offer.streamId);
  assert.equal(reoffer.name, "big.tar");
  assert.ok(reoffer.acked >= MiB && reoffer.acked <= prefix.length, `acked ${reoffer.acked}`);
  const rest = [];
  const received = await withTimeout(
    bob2.receiveStream(reoffer, { resumeFrom: new Blob([prefix]), sink: (chunk) => void rest.push(Buffer.from(chunk)) }),
    "bob resumes",
  );
  assert.deepEqual(received, { streamId: offer.streamId, totalSize: data.length, checksum: sha256(data) });
  assert.ok(concat([prefix, ...rest]).equals(data), "only the missing bytes were sent");
  assert.deepEqual(await completed, { streamId: offer.streamId, totalSize: data.length });

  // Without a sink, the bytes returned are the whole payload, the resumed prefix included.
  const small = randomBytes(MiB + 3);
  const another = nextEvent(bob2, "streamOffer", () => true, "a second offer");
  const sendingSmall = alice.sendStream("bob", small);
  const smallOffer = await another;
  await sendingSmall; // a resume cannot start past what the server holds (invalid_payload)
  const whole = await withTimeout(bob2.receiveStream(smallOffer, { resumeFrom: small.subarray(0, 1000) }), "resume into memory");
  assert.ok(Buffer.from(whole.bytes).equals(small));
});

test("a resumed sender whose payload differs from what the server holds: checksum_mismatch on both sides", async (t) => {
  const channel = unique("mismatch");
  const original = randomBytes(2 * MiB);
  const altered = Buffer.from(original);
  altered[12345] ^= 0xff; // in the part the server already holds
  const offered = deferred();
  const bob = await agent(t, channel, "bob", {}, (b) => b.onStreamOffer(offered.resolve));
  const bobErrors = record(bob, "streamError");
  const alice1 = new AgentConnection();
  await alice1.connect({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName: channel, agentName: "alice" });

  // Alice sends the first MiB and stalls reading her source; then her connection goes away.
  const held = deferred();
  let streamId;
  const first = alice1.sendStream("bob", pieces(original.subarray(0, MiB), 64 * 1024, true), {
    onOpen: (id) => (streamId = id),
    onProgress: ({ offset }) => offset === MiB && held.resolve(),
  });
  const offer = await withTimeout(offered.promise, "bob is offered the stream");
  const receiving = assert.rejects(withTimeout(bob.receiveStream(offer), "bob's receive ends"), isCode("checksum_mismatch"));
  await withTimeout(held.promise, "the server holds the first MiB");
  const firstEnds = assert.rejects(withTimeout(first, "the first send ends"), isCode("not_joined"));
  await alice1.disconnect();
  await firstEnds;

  // She resumes from a new connection with a payload that differs in the part already sent.
  const alice2 = await agent(t, channel, "alice");
  const aliceError = nextEvent(alice2, "streamError", () => true, "alice's streamError");
  const resumed = [];
  await assert.rejects(
    withTimeout(alice2.resumeStream(streamId, altered, { onProgress: (p) => resumed.push(p.offset) }), "the resume ends"),
    (e) => isCode("checksum_mismatch")(e) && e.fromServer,
  );
  assert.deepEqual(resumed, [MiB + 256 * 1024, MiB + 512 * 1024, MiB + 768 * 1024, 2 * MiB], "only the second MiB was sent");
  const failure = await aliceError;
  assert.equal(failure.streamId, streamId);
  assert.equal(failure.code, "checksum_mismatch");
  await receiving;
  assert.deepEqual(bobErrors.map((f) => [f.streamId, f.code]), [[streamId, "checksum_mismatch"]]);
  // The stream is gone.
  await assert.rejects(alice2.resumeStream(streamId, original), isCode("not_found"));
});

test("a recipient whose resumed bytes differ finds the mismatch itself and cancels: the sender is told", async (t) => {
  const channel = unique("recv-mismatch");
  const data = randomBytes(2 * MiB + 1);
  const alice = await agent(t, channel, "alice");
  const aliceCancelled = nextEvent(alice, "streamCancelled", () => true, "alice's streamCancelled");
  // Bob is away: the server holds the whole stream for him.
  const sent = await withTimeout(alice.sendStream("bob", data), "alice sends to an absent bob");
  const offered = deferred();
  const bob = await agent(t, channel, "bob", {}, (b) => b.onStreamOffer(offered.resolve));
  const offer = await withTimeout(offered.promise, "bob is offered the waiting stream on join");
  assert.equal(offer.streamId, sent.streamId);
  const wrongPrefix = Buffer.from(data.subarray(0, MiB));
  wrongPrefix[0] ^= 1;
  await assert.rejects(
    withTimeout(bob.receiveStream(offer, { resumeFrom: wrongPrefix, sink: () => {} }), "bob's receive ends"),
    (e) => isCode("checksum_mismatch")(e) && e.message.includes(sent.checksum),
  );
  const cancelled = await aliceCancelled;
  assert.equal(cancelled.streamId, sent.streamId);
  assert.equal(cancelled.by, "bob");
  assert.match(cancelled.reason, /^checksum_mismatch: /);
});

test("the recipient cancels: both sides are told, and the transfers in progress reject with cancelled", async (t) => {
  const channel = unique("cancel");
  const offered = deferred();
  const bob = await agent(t, channel, "bob", {}, (b) => b.onStreamOffer(offered.resolve));
  const alice = await agent(t, channel, "alice");
  const told = [nextEvent(alice, "streamCancelled", () => true, "alice is told"), nextEvent(bob, "streamCancelled", () => true, "bob is told")];
  // Alice's source stalls after 1 MiB: her sendStream is still reading when the cancel comes.
  const sending = alice.sendStream("bob", pieces(randomBytes(MiB), 256 * 1024, true));
  const offer = await withTimeout(offered.promise, "bob is offered the stream");
  const halfway = deferred();
  const receiving = bob.receiveStream(offer, { sink: () => {}, onProgress: ({ offset }) => offset >= 512 * 1024 && halfway.resolve() });
  await withTimeout(halfway.promise, "bob gets half a MiB");
  const ends = [
    assert.rejects(withTimeout(sending, "alice's send ends"), (e) => isCode("cancelled")(e) && /cancelled by bob: no room left/.test(e.message) && !e.fromServer),
    assert.rejects(withTimeout(receiving, "bob's receive ends"), isCode("cancelled")),
  ];
  await bob.cancelStream(offer.streamId, "no room left");
  for (const event of await Promise.all(told)) {
    assert.deepEqual(event, { streamId: offer.streamId, by: "bob", reason: "no room left" });
  }
  await Promise.all(ends);
  await assert.rejects(bob.cancelStream(offer.streamId), isCode("not_found"));
});

/** A bare protocol client: `push(event, payload)` and `pushBinary(event, bytes)` resolve with
 * the reply `{status, response}`. */
async function rawClient(t, channelName, agentName) {
  const ws = new WebSocket(`${server.wsUrl}/socket/websocket?vsn=2.0.0`);
  t.after(() => ws.close());
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let ref = 0;
  const waiting = new Map();
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    const frame = decodeText(data.toString());
    if (frame.event === "phx_reply") waiting.get(frame.ref)?.(frame.payload);
  });
  const topic = `channel:${channelName}`;
  const send = (frame, binary) => {
    ref += 1;
    const r = String(ref);
    const reply = withTimeout(new Promise((resolve) => waiting.set(r, resolve)), `reply to ${frame[3]}`);
    ws.send(binary ? encodeBinaryPush(frame[0], r, frame[2], frame[3], binary) : JSON.stringify([frame[0], r, frame[2], frame[3], frame[4]]));
    return reply;
  };
  assert.equal((await send([null, null, "phoenix", "auth", { api_key: server.apiKey }])).status, "ok");
  assert.equal((await send(["j1", null, topic, "phx_join", { agent_name: agentName }])).status, "ok");
  return {
    push: (event, payload) => send(["j1", null, topic, event, payload]),
    pushBinary: (event, bytes) => send(["j1", null, topic, event], bytes),
  };
}

test("errors: chunks out of order, unknown streams, other agents' streams, bad arguments", async (t) => {
  const channel = unique("errors");
  const raw = await rawClient(t, channel, "carol");
  const opened = await raw.push("stream_open", { to: "bob", name: "x" });
  assert.equal(opened.status, "ok");
  const { stream_id } = opened.response;
  assert.deepEqual(opened.response, { stream_id, next_seq: 0, offset: 0 });
  const chunk = (seq, bytes) => raw.pushBinary("stream_chunk", encodeStreamEnvelope({ stream_id, seq }, bytes));
  const gap = await chunk(1, new Uint8Array(10));
  assert.equal(gap.status, "error");
  assert.equal(gap.response.code, "invalid_payload");
  assert.deepEqual((await chunk(0, new Uint8Array(10))).response, { stream_id, next_seq: 1, offset: 10 });
  assert.deepEqual((await chunk(0, new Uint8Array(10))).response, { stream_id, next_seq: 1, offset: 10 }, "a chunk seen before is acknowledged again, not written twice");

  const alice = await agent(t, channel, "alice");
  await assert.rejects(alice.resumeStream("st_nope", new Uint8Array(1)), isCode("not_found"));
  await assert.rejects(alice.receiveStream("st_nope"), isCode("not_found"));
  await assert.rejects(alice.cancelStream("st_nope"), isCode("not_found"));
  // Carol's stream to bob is neither alice's to resume nor hers to receive.
  await assert.rejects(alice.resumeStream(stream_id, new Uint8Array(10)), isCode("not_found"));
  await assert.rejects(alice.receiveStream(stream_id), isCode("not_found"));
  await assert.rejects(alice.sendStream("not a name!", new Uint8Array(1)), isCode("invalid_agent_name"));
  await assert.rejects(alice.sendStream("alice", new Uint8Array(1)), isCode("invalid_payload"));
  await assert.rejects(alice.sendStream("bob", new Uint8Array(1), { name: "n".repeat(300) }), isCode("invalid_payload"));
  for (const call of [
    () => alice.sendStream("", new Uint8Array(1)),
    () => alice.sendStream("bob", "some text"),
    () => alice.sendStream("bob", new Uint8Array(1), null),
    () => alice.receiveStream(""),
    () => alice.receiveStream({}),
    () => alice.receiveStream(stream_id, { sink: 42 }),
    () => alice.cancelStream(stream_id, 7),
  ]) {
    await assert.rejects(call(), (e) => isCode("invalid_argument")(e) && !e.fromServer);
  }
  // A resume whose source is shorter than what the server holds.
  const bob = await agent(t, channel, "bob");
  const held = deferred();
  let id;
  const stalled = alice.sendStream("bob", pieces(randomBytes(512 * 1024), 256 * 1024, true), {
    onOpen: (s) => (id = s),
    onProgress: ({ offset }) => offset === 512 * 1024 && held.resolve(),
  });
  const stalledEnds = assert.rejects(withTimeout(stalled, "the stalled send ends"), (e) => isCode("cancelled")(e) && /by alice/.test(e.message));
  await withTimeout(held.promise, "the server holds 512 KiB");
  await assert.rejects(alice.resumeStream(id, new Uint8Array(1000)), (e) => isCode("invalid_argument")(e) && /shorter/.test(e.message));
  await alice.cancelStream(id);
  await stalledEnds;
  void bob;
});
