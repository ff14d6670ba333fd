// The SDK's API surface against the real server: connect, send, receive, presence, events,
// the async iterator, direct and ephemeral messages, attachments, and the error codes.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection, SwitchboardError } from "../dist/index.js";
import { startServer, withTimeout, nextEvent, collect, unique } from "./harness.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.close();
});

/** A connected agent, disconnected when the test ends. */
async function agent(t, options) {
  const a = new AgentConnection();
  t.after(() => a.disconnect());
  await a.connect(connectOptions(options));
  return a;
}

function connectOptions(options) {
  return { url: server.httpUrl, apiKey: server.apiKey, WebSocket, ...options };
}

/** The error a promise rejects with; fails the test if it resolves. */
async function rejection(promise) {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (e) => e,
  );
}

test("connect resolves with the join reply; send resolves with {offset, id}", async (t) => {
  const channelName = unique("room");
  const alice = await agent(t, { channelName, agentName: "alice" });
  assert.equal(alice.connected, true);
  const reply = alice.joinReply;
  assert.equal(reply.channel, channelName);
  assert.equal(reply.agentName, "alice");
  assert.equal(reply.scope, "private");
  assert.equal(reply.head, 0);
  assert.equal(reply.persistent, true);
  assert.equal(typeof reply.sessionId, "string");
  assert.equal(typeof reply.epoch, "string");

  const first = await alice.send({ type: "chat", data: { text: "hello" } });
  assert.equal(first.offset, 1);
  assert.match(first.id, /^[0-9a-f]{32}$/);
  const second = await alice.send({ type: "chat", data: { text: "again" } });
  assert.equal(second.offset, 2);
  assert.notEqual(second.id, first.id);
});

test("a broadcast reaches onMessage, message events and messages(), echo included", async (t) => {
  const channelName = unique("room");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const bob = new AgentConnection();
  t.after(() => bob.disconnect());
  const viaHandler = collect(bob);
  const viaEvent = nextEvent(bob, "message", (m) => m.type === "chat", "bob's message event");
  const iterator = bob.messages();
  await bob.connect(connectOptions({ channelName, agentName: "bob" }));
  const echoed = nextEvent(alice, "message", (m) => m.type === "chat", "alice's echo");

  const data = { text: "hi bob", nested: { list: [1, "two", null], ok: true } };
  const ack = await alice.send({ type: "chat", data });

  const [message] = await viaHandler.until((ms) => ms.length >= 1, "bob's onMessage");
  assert.deepEqual(
    { id: message.id, offset: message.offset, channel: message.channel, from: message.from, type: message.type, data: message.data },
    { id: ack.id, offset: ack.offset, channel: channelName, from: "alice", type: "chat", data },
  );
  assert.equal(message.to, undefined);
  assert.equal(message.ephemeral, undefined);
  assert.ok(Number.isInteger(message.ts));
  assert.deepEqual(await viaEvent, message);
  const next = await withTimeout(iterator.next(), "messages() iterator");
  assert.deepEqual(next, { value: message, done: false });
  assert.deepEqual(await echoed, message);

  // for await ends when the connection is closed by disconnect().
  const seen = [];
  const loop = (async () => {
    for await (const m of bob.messages()) seen.push(m.data.n);
  })();
  await alice.send({ type: "count", data: { n: 1 } });
  await alice.send({ type: "count", data: { n: 2 } });
  await viaHandler.until((ms) => ms.length >= 3, "two more messages");
  await bob.disconnect();
  await withTimeout(loop, "for await ends after disconnect");
  assert.deepEqual(seen, [1, 2]);
  assert.equal((await rejection(bob.send({ type: "late" }))).code, "not_joined", "after disconnect()");
  // The first iterator kept what arrived after its first read, then ends.
  assert.deepEqual((await iterator.next()).value.data, { n: 1 });
  assert.deepEqual((await iterator.next()).value.data, { n: 2 });
  assert.deepEqual(await iterator.next(), { value: undefined, done: true });
});

test("direct messages reach only their recipient, live and in history", async (t) => {
  const channelName = unique("dm");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const bob = await agent(t, { channelName, agentName: "bob" });
  const carol = await agent(t, { channelName, agentName: "carol" });
  const bobGot = collect(bob);
  const carolGot = collect(carol);

  const dm = await alice.send({ to: "bob", type: "dm", data: "psst" });
  const all = await alice.send({ type: "chat", data: "everyone" });
  await bobGot.until((ms) => ms.length === 2, "bob gets the dm and the broadcast");
  await carolGot.until((ms) => ms.some((m) => m.offset === all.offset), "carol gets the broadcast");
  assert.deepEqual(bobGot.messages.map((m) => [m.offset, m.to]), [[dm.offset, "bob"], [all.offset, undefined]]);
  assert.deepEqual(carolGot.messages.map((m) => m.offset), [all.offset], "carol never sees the dm");

  assert.deepEqual((await bob.receive()).map((m) => m.offset), [dm.offset, all.offset]);
  assert.deepEqual((await carol.receive()).map((m) => m.offset), [all.offset]);
});

test("receive: the latest N oldest first, by sender, after an offset", async (t) => {
  const channelName = unique("history");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const bob = await agent(t, { channelName, agentName: "bob" });
  for (let i = 1; i <= 6; i++) await (i % 2 ? alice : bob).send({ type: i === 6 ? "last" : "n", data: i });

  assert.deepEqual((await alice.receive({ limit: 3 })).map((m) => m.data), [4, 5, 6]);
  assert.deepEqual((await alice.receive({ from: "bob" })).map((m) => m.data), [2, 4, 6]);
  assert.deepEqual((await alice.receive({ after: 4 })).map((m) => m.offset), [5, 6]);
  assert.deepEqual((await alice.receive({ before: 3 })).map((m) => m.offset), [1, 2]);
  assert.deepEqual((await alice.receive({ type: "last" })).map((m) => m.offset), [6]);
  const page = await alice.history({ from_offset: 2, limit: 2 });
  assert.deepEqual(page.messages.map((m) => m.offset), [2, 3]);
  assert.equal(page.next, 4);
  assert.equal(page.head, 6);
});

test("presence() lists the agents; presence events follow joins and leaves", async (t) => {
  const channelName = unique("presence");
  const alice = await agent(t, { channelName, agentName: "alice", meta: { role: "host" } });
  const bobJoins = nextEvent(alice, "presence", (p) => p.joined.includes("bob"), "alice sees bob join");
  const bob = new AgentConnection();
  await bob.connect(connectOptions({ channelName, agentName: "bob", meta: { role: "guest" } }));
  const seen = await bobJoins;
  assert.deepEqual(seen.agents.map((a) => a.agentName), ["alice", "bob"]);
  assert.deepEqual(alice.presentAgents.map((a) => a.agentName), ["alice", "bob"]);

  const listed = await bob.presence();
  assert.deepEqual(listed.map((a) => [a.agentName, a.meta, a.sessions]), [
    ["alice", { role: "host" }, 1],
    ["bob", { role: "guest" }, 1],
  ]);
  assert.ok(listed.every((a) => Number.isInteger(a.joinedAt)));

  const bobLeaves = nextEvent(alice, "presence", (p) => p.left.includes("bob"), "alice sees bob leave");
  await bob.disconnect();
  assert.deepEqual((await bobLeaves).agents.map((a) => a.agentName), ["alice"]);
  assert.deepEqual((await alice.presence()).map((a) => a.agentName), ["alice"]);
});

test("attachments travel as bytes, live and in history", async (t) => {
  const channelName = unique("files");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const bob = await agent(t, { channelName, agentName: "bob" });
  const got = nextEvent(bob, "message", () => true, "bob gets the file");
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  const ack = await alice.send({
    type: "file",
    data: { name: "blob.bin" },
    attachments: [every, new Uint8Array(0), new Uint16Array([1, 2]).buffer],
  });
  const message = await got;
  assert.equal(message.offset, ack.offset);
  assert.deepEqual(message.data, { name: "blob.bin" });
  assert.deepEqual(message.attachments, [every, new Uint8Array(0), new Uint8Array(new Uint16Array([1, 2]).buffer)]);
  const [stored] = await bob.receive();
  assert.deepEqual(stored.attachments, message.attachments);
});

test("ephemeral messages: no offset, not in history; noReply for high rates", async (t) => {
  const channelName = unique("live");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const bob = await agent(t, { channelName, agentName: "bob" });
  const bobGot = collect(bob);
  const ack = await alice.send({ type: "cursor", data: { x: 1 }, ephemeral: true });
  assert.equal(ack.offset, undefined);
  assert.equal(typeof ack.id, "string");
  const quick = await alice.send({ type: "cursor", data: { x: 2 }, ephemeral: true, noReply: true });
  assert.equal(typeof quick.id, "string");
  await bobGot.until((ms) => ms.length === 2, "both ephemeral messages");
  assert.deepEqual(bobGot.messages.map((m) => [m.data.x, m.ephemeral, m.offset]), [[1, true, undefined], [2, true, undefined]]);
  assert.equal(bobGot.messages[1].id, quick.id);
  assert.deepEqual(await bob.receive(), []);

  const absent = await rejection(alice.send({ to: "nobody", type: "cursor", ephemeral: true }));
  assert.ok(absent instanceof SwitchboardError);
  assert.equal(absent.code, "agent_not_present");
  assert.equal(absent.fromServer, true);
  // A failed noReply publish surfaces as an error event.
  const errorEvent = nextEvent(alice, "error", (e) => e.code === "agent_not_present", "noReply failure event");
  await alice.send({ to: "nobody", type: "cursor", ephemeral: true, noReply: true });
  assert.equal((await errorEvent).code, "agent_not_present");
});

test("a publish with its own id is stored once", async (t) => {
  const alice = await agent(t, { channelName: unique("dedup"), agentName: "alice" });
  const first = await alice.send({ id: "order-42", type: "order", data: 1 });
  const again = await alice.send({ id: "order-42", type: "order", data: 1 });
  assert.deepEqual(first, { id: "order-42", offset: 1 });
  assert.deepEqual(again, { id: "order-42", offset: 1, duplicate: true });
  assert.equal((await alice.receive()).length, 1);
});

test("autoReceive: false delivers nothing live; receive() reads", async (t) => {
  const channelName = unique("pull");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const reader = await agent(t, { channelName, agentName: "reader", autoReceive: false });
  const watcher = await agent(t, { channelName, agentName: "watcher" });
  const readerGot = collect(reader);
  const watcherGot = collect(watcher);
  await alice.send({ type: "chat", data: 1 });
  await alice.send({ type: "chat", data: 2 });
  // The watcher joined after the reader, so once it has both, the reader would have had them too.
  await watcherGot.until((ms) => ms.length === 2, "watcher gets both");
  assert.equal(readerGot.messages.length, 0);
  assert.deepEqual((await reader.receive()).map((m) => m.data), [1, 2]);
});

test("customEventType delivers only the named types", async (t) => {
  const channelName = unique("types");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const moves = await agent(t, { channelName, agentName: "moves", customEventType: "move" });
  const got = collect(moves);
  await alice.send({ type: "chat", data: 1 });
  await alice.send({ type: "move", data: 2 });
  await got.until((ms) => ms.length === 1, "the move");
  await alice.send({ type: "move", data: 3 });
  await got.until((ms) => ms.length === 2, "the second move");
  assert.deepEqual(got.messages.map((m) => m.data), [2, 3]);
});

test("error codes: invalid_key, bad_password, agent_name_taken, invalid names, message_too_large", async (t) => {
  const channelName = unique("errors");
  const badKey = await rejection(
    new AgentConnection().connect(connectOptions({ channelName, agentName: "a", apiKey: `sk_000000000000_${"0".repeat(64)}` })),
  );
  assert.ok(badKey instanceof SwitchboardError);
  assert.equal(badKey.code, "invalid_key");

  await agent(t, { channelName, agentName: "alice", channelPassword: "right horse" });
  const badPassword = await rejection(new AgentConnection().connect(connectOptions({ channelName, agentName: "bob", channelPassword: "wrong" })));
  assert.equal(badPassword.code, "bad_password");
  const taken = await rejection(new AgentConnection().connect(connectOptions({ channelName, agentName: "alice", channelPassword: "right horse" })));
  assert.equal(taken.code, "agent_name_taken");
  const badChannel = await rejection(new AgentConnection().connect(connectOptions({ channelName: "no spaces", agentName: "a" })));
  assert.equal(badChannel.code, "invalid_channel_name");
  const badAgent = await rejection(new AgentConnection().connect(connectOptions({ channelName, agentName: "a/b" })));
  assert.equal(badAgent.code, "invalid_agent_name");

  const sender = await agent(t, { channelName: unique("big"), agentName: "alice" });
  const tooLarge = await rejection(sender.send({ type: "blob", data: "x".repeat(600 * 1024) }));
  assert.equal(tooLarge.code, "message_too_large");
  assert.equal(tooLarge.fromServer, true);
  // The connection is still usable.
  assert.equal((await sender.send({ type: "small", data: 1 })).offset, 1);
});

test("client-side errors: unsupported options, calls before connect, unreachable server", async () => {
  const base = connectOptions({ channelName: unique("opts"), agentName: "a" });
  for (const [extra, pattern] of [
    [{ useWebsocket: false }, /long-polling/],
    [{ channelId: "c-1" }, /channelName/],
  ]) {
    const e = await rejection(new AgentConnection().connect({ ...base, ...extra }));
    assert.equal(e.code, "unsupported", JSON.stringify(extra));
    assert.match(e.message, pattern);
    assert.equal(e.fromServer, false);
  }
  assert.equal((await rejection(new AgentConnection().connect({ ...base, agentName: undefined }))).code, "invalid_argument");
  assert.equal((await rejection(new AgentConnection().connect({ ...base, pollSource: "tape" }))).code, "invalid_argument");
  assert.equal((await rejection(new AgentConnection().send({ type: "x" }))).code, "not_joined");

  // A port nobody listens on: the server is down.
  const probe = await startServer();
  const deadUrl = probe.httpUrl;
  await probe.close();
  const down = await rejection(new AgentConnection().connect({ ...base, url: deadUrl }));
  assert.equal(down.code, "connection_failed");
});

test("receive rejects what the server cannot do yet", async (t) => {
  const alice = await agent(t, { channelName: unique("recv"), agentName: "alice" });
  assert.equal((await rejection(alice.receive({ to: "bob" }))).code, "unsupported");
  assert.deepEqual(await alice.receive({ pollSource: "AUTO" }), []);
});

test("a session id takes the agent name over; the old connection ends with session_taken_over", async (t) => {
  const channelName = unique("takeover");
  const first = new AgentConnection();
  const firstReply = await first.connect(connectOptions({ channelName, agentName: "alice" }));
  const ended = nextEvent(first, "disconnect", (d) => !d.willReconnect, "the first session ends");
  const errored = nextEvent(first, "error", () => true, "the first session's error");
  const iterating = rejection(first.messages().next());

  const second = await agent(t, { channelName, agentName: "alice", sessionId: firstReply.sessionId });
  assert.equal(second.joinReply.agentName, "alice");
  const info = await ended;
  assert.equal(info.error.code, "session_taken_over");
  assert.equal((await errored).code, "session_taken_over");
  assert.equal((await iterating).code, "session_taken_over");
  assert.equal(first.connected, false);
  assert.equal((await rejection(first.send({ type: "x" }))).code, "session_taken_over");
  assert.equal((await second.send({ type: "x" })).offset, 1);
});

test("refreshKey re-authenticates the live socket with the auth event", async (t) => {
  let calls = 0;
  const alice = await agent(t, {
    channelName: unique("auth"),
    agentName: "alice",
    refreshApiKey: () => {
      calls += 1;
      return server.apiKey;
    },
  });
  await alice.refreshKey();
  assert.equal(calls, 1);
  assert.equal((await alice.send({ type: "after-refresh" })).offset, 1);

  // A refused key: the call rejects, the server closes with 4500, and the SDK reconnects with
  // a fresh key from refreshApiKey.
  const dropped = nextEvent(alice, "disconnect", () => true, "the refused key drops the socket");
  const back = nextEvent(alice, "connect", (c) => c.reconnected, "reconnected with a fresh key");
  const refused = await rejection(alice.refreshKey(`sk_000000000000_${"1".repeat(64)}`));
  assert.equal(refused.code, "invalid_key");
  const info = await dropped;
  assert.equal(info.willReconnect, true);
  assert.equal(info.code, 4500);
  assert.equal(info.error.code, "invalid_key");
  await back;
  assert.equal(calls, 2);
  assert.equal((await alice.send({ type: "after-reconnect" })).offset, 2);
});

test("without refreshApiKey a refused key ends the connection", async (t) => {
  const alice = await agent(t, { channelName: unique("auth"), agentName: "alice" });
  const ended = nextEvent(alice, "disconnect", () => true, "the connection ends");
  const refused = await rejection(alice.refreshKey(`sk_000000000000_${"1".repeat(64)}`));
  assert.equal(refused.code, "invalid_key");
  const info = await ended;
  assert.equal(info.willReconnect, false);
  assert.equal(info.error.code, "invalid_key");
  assert.equal(info.error.closeCode, 4500);
  assert.equal(alice.connected, false);
  assert.equal((await rejection(alice.send({ type: "x" }))).code, "invalid_key");
});

/** Mints a temporary key with the original key, as a backend would. */
async function mintTemporaryKey(grant) {
  const response = await fetch(`${server.httpUrl}/v1/keys/temporary`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(grant),
  });
  assert.equal(response.status, 201);
  return (await response.json()).key;
}

test("a temporary key about to expire is refreshed over the live socket", async (t) => {
  const grant = { ttl_secs: 2, capabilities: ["subscribe", "publish"] };
  let minted = 0;
  const alice = await agent(t, {
    channelName: unique("temp"),
    agentName: "alice",
    apiKey: await mintTemporaryKey(grant),
    refreshApiKey: async () => {
      minted += 1;
      return mintTemporaryKey({ ...grant, ttl_secs: 600 });
    },
  });
  let dropped = false;
  alice.addEventListener("disconnect", () => {
    dropped = true;
  });
  // The first key lives 2 s; the server warns 1 s before, the SDK swaps keys in place. A send
  // after the first key's expiry proves the socket kept going with the new one.
  await withTimeout(
    new Promise((resolve) => {
      const started = Date.now();
      const poll = setInterval(() => {
        if (minted > 0 && Date.now() - started > 2500) {
          clearInterval(poll);
          resolve();
        }
      }, 50);
    }),
    "the key refresh and the first key's expiry",
  );
  assert.equal((await alice.send({ type: "after-expiry" })).offset, 1);
  assert.equal(minted, 1);
  assert.equal(dropped, false);
});

test("a temporary key outside its grant gets forbidden", async (t) => {
  const key = await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe"], channels: ["allowed-*"] });
  const reader = await agent(t, { channelName: unique("allowed"), agentName: "reader", apiKey: key });
  assert.equal((await rejection(reader.send({ type: "chat" }))).code, "forbidden");
  const elsewhere = new AgentConnection();
  t.after(() => elsewhere.disconnect());
  const refused = await rejection(elsewhere.connect(connectOptions({ channelName: unique("other"), agentName: "x", apiKey: key })));
  assert.equal(refused.code, "forbidden");
});

test("signal() relays a WebRTC signal to one agent: signal events and onSignal, nobody else, nothing stored", async (t) => {
  const channelName = unique("call");
  const alice = await agent(t, { channelName, agentName: "alice", enableWebrtcRelay: true });
  const bob = await agent(t, { channelName, agentName: "bob", enableWebrtcRelay: true });
  const carol = await agent(t, { channelName, agentName: "carol", enableWebrtcRelay: true });
  const carolGot = [];
  carol.onSignal((s) => carolGot.push(s));
  const viaHandler = [];
  const off = bob.onSignal((s) => viaHandler.push(s));
  const viaEvent = nextEvent(bob, "signal", (s) => s.kind === "offer", "bob's signal event");

  const offer = { type: "offer", sdp: "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n", nested: [1, null, true] };
  assert.equal(await alice.signal({ to: "bob", kind: "offer", data: offer }), undefined);
  assert.deepEqual(await viaEvent, { from: "alice", kind: "offer", data: offer });
  assert.deepEqual(viaHandler, [{ from: "alice", kind: "offer", data: offer }]);
  off();

  const answer = nextEvent(alice, "signal", (s) => s.kind === "answer", "alice's answer");
  await bob.signal({ to: "alice", kind: "answer", data: { sdp: "answer" } });
  assert.deepEqual(await answer, { from: "bob", kind: "answer", data: { sdp: "answer" } });
  // `data` defaults to null; bye and ice are kinds too.
  const bye = nextEvent(bob, "signal", (s) => s.kind === "bye", "bob's bye");
  await alice.signal({ to: "bob", kind: "ice", data: { candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host" } });
  await alice.signal({ to: "bob", kind: "bye" });
  assert.deepEqual(await bye, { from: "alice", kind: "bye", data: null });
  assert.equal(viaHandler.length, 1, "an unregistered handler gets nothing more");

  // Round trip through carol so her socket has seen everything sent before: she got nothing.
  const ping = nextEvent(carol, "signal", (s) => s.kind === "ice", "carol's own signal");
  await bob.signal({ to: "carol", kind: "ice", data: "ping" });
  await ping;
  assert.deepEqual(carolGot, [{ from: "bob", kind: "ice", data: "ping" }]);
  assert.deepEqual(await alice.receive(), [], "signals are never stored");
});

test("signal() errors: relay_disabled, agent_not_present, message_too_large, invalid_argument", async (t) => {
  const channelName = unique("call");
  const on = await agent(t, { channelName, agentName: "on", enableWebrtcRelay: true });
  const off = await agent(t, { channelName, agentName: "off" });

  const toOff = await rejection(on.signal({ to: "off", kind: "offer", data: {} }));
  assert.ok(toOff instanceof SwitchboardError);
  assert.equal(toOff.code, "relay_disabled");
  assert.equal(toOff.fromServer, true);
  assert.equal((await rejection(off.signal({ to: "on", kind: "offer", data: {} }))).code, "relay_disabled");
  assert.equal((await rejection(on.signal({ to: "nobody", kind: "offer", data: {} }))).code, "agent_not_present");
  assert.equal((await rejection(on.signal({ to: "off", kind: "ice", data: "x".repeat(65 * 1024) }))).code, "message_too_large");

  for (const bad of [{ to: "", kind: "offer" }, { to: "off", kind: "hello" }, { kind: "offer" }]) {
    const e = await rejection(on.signal(bad));
    assert.equal(e.code, "invalid_argument", JSON.stringify(bad));
    assert.equal(e.fromServer, false);
  }
  // The connection is still usable.
  const got = nextEvent(on, "signal", () => true, "the signal after the errors");
  const other = await agent(t, { channelName, agentName: "other", enableWebrtcRelay: true });
  await other.signal({ to: "on", kind: "offer", data: 1 });
  assert.deepEqual(await got, { from: "other", kind: "offer", data: 1 });
});

test("signal() with a temporary key needs the signal capability (forbidden without it)", async (t) => {
  const channelName = unique("call");
  const callee = await agent(t, { channelName, agentName: "callee", enableWebrtcRelay: true });
  const without = await agent(t, {
    channelName,
    agentName: "without",
    enableWebrtcRelay: true,
    apiKey: await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe", "presence"] }),
  });
  const refused = await rejection(without.signal({ to: "callee", kind: "offer", data: {} }));
  assert.equal(refused.code, "forbidden");
  assert.equal(refused.fromServer, true);

  const granted = await agent(t, {
    channelName,
    agentName: "with",
    enableWebrtcRelay: true,
    apiKey: await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe", "presence", "signal"] }),
  });
  const got = nextEvent(callee, "signal", () => true, "the granted key's signal");
  await granted.signal({ to: "callee", kind: "offer", data: { sdp: "o" } });
  assert.deepEqual(await got, { from: "with", kind: "offer", data: { sdp: "o" } });
});
