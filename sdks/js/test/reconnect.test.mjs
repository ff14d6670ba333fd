// Reconnect and resume against the real server: a graceful restart and a crash, with messages
// published while the agent is away, publishes queued during the outage, and the key refresh
// callback. The application must see every offset once, in order.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection } from "../dist/index.js";
import { startServer, withTimeout, nextEvent, collect, unique } from "./harness.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.close();
});

const fast = { initialMs: 50, maxMs: 500 };

/** Publishes over the HTTP API (a backend that is not in the channel). */
async function httpPublish(channelName, data) {
  const res = await fetch(`${server.httpUrl}/v1/channels/${channelName}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ type: "http", data }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

/** A gate the test opens: reconnects wait in refreshApiKey until then. */
function gate() {
  let open;
  const opened = new Promise((r) => (open = r));
  let calls = 0;
  return {
    refreshApiKey: async () => {
      calls += 1;
      await opened;
      return server.apiKey;
    },
    open: () => open(),
    get calls() {
      return calls;
    },
  };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

for (const signal of ["SIGTERM", "SIGKILL"]) {
  test(`after a server restart (${signal}) the agent resumes from its last offset: no gap, no duplicate`, async (t) => {
    const channelName = unique("resume");
    const door = gate();
    const alice = new AgentConnection();
    t.after(() => alice.disconnect());
    const got = collect(alice);
    const iterated = [];
    const iterating = (async () => {
      for await (const m of alice.messages()) iterated.push(m.offset);
    })();
    await alice.connect({
      url: server.wsUrl,
      apiKey: server.apiKey,
      WebSocket,
      channelName,
      agentName: "alice",
      backoff: fast,
      refreshApiKey: door.refreshApiKey,
    });
    for (let i = 1; i <= 3; i++) await alice.send({ type: "chat", data: i });
    await got.until((ms) => ms.length === 3, "alice's own three messages");

    const down = nextEvent(alice, "disconnect", () => true, "alice notices the restart");
    await server.stop(signal);
    const info = await down;
    assert.equal(info.willReconnect, true);
    if (signal === "SIGTERM") {
      assert.equal(info.code, 1001);
      assert.equal(info.error.code, "server_shutdown");
    }
    assert.equal(alice.connected, false);

    // While alice is held in refreshApiKey, the restarted server takes messages she must get.
    await server.start();
    const queued = alice.send({ type: "chat", data: "queued during the outage" });
    for (let i = 4; i <= 6; i++) await httpPublish(channelName, i);
    const back = nextEvent(alice, "connect", (c) => c.reconnected, "alice reconnects");
    door.open();
    const reconnect = await back;
    assert.equal(reconnect.reply.head, 6, "the rejoin sees the messages published while away");
    assert.equal((await withTimeout(queued, "the queued send")).offset, 7);
    await alice.send({ type: "chat", data: 8 });
    await got.until((ms) => ms.length >= 8, "everything after the restart");

    assert.deepEqual(got.messages.map((m) => m.offset), range(1, 8));
    assert.deepEqual(got.messages.slice(3, 6).map((m) => m.data), [4, 5, 6]);
    assert.ok(door.calls >= 1, "the key was refreshed before reconnecting");
    await alice.disconnect();
    await withTimeout(iterating, "the iterator ends");
    assert.deepEqual(iterated, range(1, 8));
  });
}

test("publishes from several agents across a crash land once each, in one order", async (t) => {
  const channelName = unique("crash");
  const options = (agentName) => ({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName, agentName, backoff: fast });
  const alice = new AgentConnection();
  const bob = new AgentConnection();
  t.after(() => alice.disconnect());
  t.after(() => bob.disconnect());
  const aliceGot = collect(alice);
  const bobGot = collect(bob);
  await alice.connect(options("alice"));
  await bob.connect(options("bob"));

  const before = [];
  for (let i = 0; i < 5; i++) before.push(await bob.send({ type: "n", data: `before-${i}` }));
  const aliceBack = nextEvent(alice, "connect", (c) => c.reconnected, "alice reconnects");
  const bobBack = nextEvent(bob, "connect", (c) => c.reconnected, "bob reconnects");
  await server.stop("SIGKILL");
  // Sent while the server is down: they wait for the rejoin and are sent then.
  const during = [0, 1, 2].map((i) => bob.send({ type: "n", data: `during-${i}` }));
  await server.start();
  await Promise.all([aliceBack, bobBack]);
  const acks = await withTimeout(Promise.all(during), "the publishes queued during the crash");
  assert.deepEqual(acks.map((a) => a.offset), [6, 7, 8], "queued publishes keep their order");

  await aliceGot.until((ms) => ms.length === 8, "alice has all eight");
  await bobGot.until((ms) => ms.length === 8, "bob has all eight (echo)");
  for (const got of [aliceGot, bobGot]) {
    assert.deepEqual(got.messages.map((m) => m.offset), range(1, 8));
    assert.deepEqual(
      got.messages.map((m) => m.data),
      [0, 1, 2, 3, 4].map((i) => `before-${i}`).concat([0, 1, 2].map((i) => `during-${i}`)),
    );
  }
  assert.deepEqual((await alice.receive()).map((m) => m.offset), range(1, 8), "history agrees");
  assert.deepEqual(before.map((a) => a.offset), range(1, 5));
});

test("presence is rebuilt after a restart", async (t) => {
  const channelName = unique("presence");
  const options = (agentName) => ({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName, agentName, backoff: fast });
  const alice = new AgentConnection();
  const bob = new AgentConnection();
  t.after(() => alice.disconnect());
  t.after(() => bob.disconnect());
  await alice.connect(options("alice"));
  const both = nextEvent(alice, "presence", (p) => p.agents.length === 2, "alice sees bob");
  await bob.connect(options("bob"));
  await both;

  const lost = nextEvent(alice, "disconnect", () => true, "alice loses the server");
  const rebuilt = nextEvent(
    alice,
    "presence",
    (p) => p.agents.map((a) => a.agentName).join() === "alice,bob",
    "alice sees both again",
  );
  await server.stop("SIGTERM");
  await lost;
  await server.start();
  await rebuilt;
  assert.deepEqual((await bob.presence()).map((a) => a.agentName), ["alice", "bob"]);
});
