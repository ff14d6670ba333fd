// Durable inboxes against the real server: delivery of what waited while the recipient was away,
// ack and reject with the sender's receipts, dead letters over HTTP, redelivery after a reject
// and after the consumer left, not_found, and the HTTP consumer (HttpClient).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection, HttpClient, SwitchboardError } from "../dist/index.js";
import { startServer, withTimeout, nextEvent, unique } from "./harness.mjs";

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.close();
});

function connectOptions(options) {
  return { url: server.httpUrl, apiKey: server.apiKey, WebSocket, ...options };
}

/** A connected agent, disconnected when the test ends; `setup` registers handlers before the
 * join (what waited in the inbox arrives right after it). */
async function agent(t, options, setup = () => {}) {
  const a = new AgentConnection();
  t.after(() => a.disconnect());
  setup(a);
  await a.connect(connectOptions(options));
  return a;
}

/** Collects an agent's inbox deliveries and receipts; `until(pred)` waits for a state. */
function record(agent) {
  const got = { inbox: [], receipts: [], messages: [] };
  const waiters = new Set();
  const changed = () => {
    for (const w of waiters) w();
  };
  agent.onInboxMessage((d) => (got.inbox.push(d), changed()));
  agent.onReceipt((r) => (got.receipts.push(r), changed()));
  agent.onMessage((m) => (got.messages.push(m), changed()));
  got.until = (pred, what) => {
    let waiter;
    const done = new Promise((r) => {
      waiter = () => {
        if (pred(got)) r(got);
      };
      waiters.add(waiter);
      waiter();
    });
    return withTimeout(done, what).finally(() => waiters.delete(waiter));
  };
  return got;
}

async function rejection(promise) {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (e) => e,
  );
}

const http = () => new HttpClient({ url: server.httpUrl, apiKey: server.apiKey });

test("a direct message sent while the recipient is away arrives on its inbox join as an inbox event, never as a message", async (t) => {
  const channelName = unique("inbox");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const sent = await alice.send({ to: "bob", type: "task", data: { job: 1 }, attachments: [Uint8Array.of(7, 8)] });
  assert.equal(typeof sent.offset, "number", "stored although bob is away");

  let bobLog;
  let iterator;
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => {
    bobLog = record(b);
    iterator = b.inboxMessages();
  });
  await bobLog.until((g) => g.inbox.length === 1, "bob's inbox delivery");
  const [delivery] = bobLog.inbox;
  assert.equal(delivery.deliveryCount, 1);
  assert.equal("delivery_count" in delivery, false, "deliveries are camelCase");
  assert.deepEqual(
    { id: delivery.message.id, offset: delivery.message.offset, from: delivery.message.from, to: delivery.message.to, type: delivery.message.type, data: delivery.message.data },
    { id: sent.id, offset: sent.offset, from: "alice", to: "bob", type: "task", data: { job: 1 } },
  );
  assert.deepEqual(delivery.message.attachments.map((a) => [...a]), [[7, 8]]);
  const viaIterator = await withTimeout(iterator.next(), "the inboxMessages() iterator");
  assert.equal(viaIterator.value.message.id, sent.id);
  assert.equal(viaIterator.value.deliveryCount, 1);

  // A direct message while bob consumes his inbox: an inbox event too, not a message event.
  const live = await alice.send({ to: "bob", type: "task", data: { job: 2 } });
  await bobLog.until((g) => g.inbox.length === 2, "the live delivery");
  assert.equal(bobLog.inbox[1].message.id, live.id);
  // A broadcast is still a message event.
  await alice.send({ type: "chat", data: "hi all" });
  await bobLog.until((g) => g.messages.length === 1, "the broadcast");
  assert.deepEqual(bobLog.messages.map((m) => m.type), ["chat"]);

  await bob.ack(sent.id);
  await bob.ack(live.id);
  await iterator.return();
});

test("ack: the sender gets delivered and acknowledged receipts; a second ack is not_found", async (t) => {
  const channelName = unique("inbox");
  let aliceLog;
  const alice = await agent(t, { channelName, agentName: "alice" }, (a) => (aliceLog = record(a)));
  const sent = await alice.send({ to: "bob", type: "task", data: "do it", receipt: true });

  let bobLog;
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => (bobLog = record(b)));
  await bobLog.until((g) => g.inbox.length === 1, "bob's delivery");
  await aliceLog.until((g) => g.receipts.length === 1, "the delivered receipt");
  assert.deepEqual(aliceLog.receipts[0], { id: sent.id, to: "bob", status: "delivered", deliveryCount: 1 });

  const acknowledged = nextEvent(alice, "receipt", (r) => r.status === "acknowledged", "the acknowledged receipt");
  assert.equal(await bob.ack(sent.id), undefined);
  assert.deepEqual(await acknowledged, { id: sent.id, to: "bob", status: "acknowledged", deliveryCount: 1 });

  const again = await rejection(bob.ack(sent.id));
  assert.ok(again instanceof SwitchboardError);
  assert.equal(again.code, "not_found");
  assert.equal(again.fromServer, true);
});

test("reject with requeue: false dead-letters the message: the sender's receipt, the dead letter over HTTP, deleteDeadLetter", async (t) => {
  const channelName = unique("inbox");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const sent = await alice.send({ to: "bob", type: "task", data: { n: 1 }, receipt: true });
  let bobLog;
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => (bobLog = record(b)));
  await bobLog.until((g) => g.inbox.length === 1, "bob's delivery");

  const dead = nextEvent(alice, "receipt", (r) => r.status === "dead_lettered", "the dead_lettered receipt");
  await bob.reject(sent.id, { reason: "cannot parse", requeue: false });
  assert.deepEqual(await dead, { id: sent.id, to: "bob", status: "dead_lettered", deliveryCount: 1, reason: "cannot parse" });
  assert.equal((await rejection(bob.ack(sent.id))).code, "not_found", "a dead letter is not pending any more");

  const client = http();
  const page = await client.deadLetters(channelName, { recipient: "bob" });
  assert.equal(page.entries.length, 1);
  assert.equal(page.next, undefined);
  const [letter] = page.entries;
  assert.deepEqual(
    { id: letter.message.id, data: letter.message.data, from: letter.message.from, recipient: letter.recipient, deliveryCount: letter.deliveryCount, rejections: letter.rejections, reason: letter.reason },
    { id: sent.id, data: { n: 1 }, from: "alice", recipient: "bob", deliveryCount: 1, rejections: 1, reason: "cannot parse" },
  );
  assert.equal(typeof letter.deadAt, "number");
  assert.deepEqual((await client.deadLetters(channelName, { recipient: "carol" })).entries, []);

  await client.deleteDeadLetter(channelName, sent.id);
  assert.deepEqual((await client.deadLetters(channelName)).entries, []);
  assert.equal((await rejection(client.deleteDeadLetter(channelName, sent.id))).code, "not_found");
});

test("a requeued reject comes back with deliveryCount 2; the sender sees rejected with the reason", async (t) => {
  const channelName = unique("inbox");
  let aliceLog;
  const alice = await agent(t, { channelName, agentName: "alice" }, (a) => (aliceLog = record(a)));
  const sent = await alice.send({ to: "bob", type: "task", data: "retry me", receipt: true });
  let bobLog;
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => (bobLog = record(b)));
  await bobLog.until((g) => g.inbox.length === 1, "the first delivery");

  await bob.reject(sent.id, { reason: "busy" }); // requeue defaults to true
  await bobLog.until((g) => g.inbox.length === 2, "the redelivery");
  assert.deepEqual(bobLog.inbox.map((d) => [d.message.id, d.deliveryCount]), [[sent.id, 1], [sent.id, 2]]);
  assert.equal(bobLog.inbox[1].message.data, "retry me");

  await bob.ack(sent.id);
  await aliceLog.until((g) => g.receipts.some((r) => r.status === "acknowledged"), "the acknowledged receipt");
  assert.deepEqual(
    aliceLog.receipts.map((r) => [r.status, r.deliveryCount, r.reason]),
    [["delivered", 1, undefined], ["rejected", 1, "busy"], ["acknowledged", 2, undefined]],
  );
});

test("ack and reject of an unknown id fail with not_found; bad arguments are refused", async (t) => {
  const channelName = unique("inbox");
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true });
  for (const call of [() => bob.ack("no-such-message"), () => bob.reject("no-such-message"), () => bob.reject("no-such-message", { requeue: false })]) {
    const e = await rejection(call());
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, "not_found");
  }
  assert.equal((await rejection(bob.reject("no-such-message", { reason: "x".repeat(1025) }))).code, "invalid_payload");
  for (const call of [
    () => bob.ack(""),
    () => bob.ack(undefined),
    () => bob.reject("id", { requeue: "no" }),
    () => bob.reject("id", { reason: 7 }),
    () => bob.send({ type: "task", receipt: true }),
    () => bob.send({ to: "alice", type: "task", ephemeral: true, receipt: true }),
  ]) {
    const e = await rejection(call());
    assert.equal(e.code, "invalid_argument");
    assert.equal(e.fromServer, false);
  }
});

test("a consumer that disconnects without acking releases its messages: the next inbox join gets them with deliveryCount 2", async (t) => {
  const channelName = unique("inbox");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const first = await alice.send({ to: "bob", type: "task", data: 1 });
  const second = await alice.send({ to: "bob", type: "task", data: 2 });

  const bob1 = new AgentConnection();
  const bob1Log = record(bob1);
  await bob1.connect(connectOptions({ channelName, agentName: "bob", inbox: true }));
  await bob1Log.until((g) => g.inbox.length === 2, "both deliveries");
  assert.deepEqual(bob1Log.inbox.map((d) => [d.message.id, d.deliveryCount]), [[first.id, 1], [second.id, 1]]);
  await bob1.ack(first.id);
  await bob1.disconnect(); // the second is neither acknowledged nor rejected

  let bob2Log;
  const bob2 = await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => (bob2Log = record(b)));
  await bob2Log.until((g) => g.inbox.length === 1, "the released message");
  assert.deepEqual(bob2Log.inbox.map((d) => [d.message.id, d.deliveryCount, d.message.data]), [[second.id, 2, 2]]);
  await bob2.ack(second.id);
});

test("without inbox: an agent that is present gets direct messages live as message events, and its inbox waits for later", async (t) => {
  const channelName = unique("inbox");
  const alice = await agent(t, { channelName, agentName: "alice" });
  let bobLog;
  const bob = await agent(t, { channelName, agentName: "bob" }, (b) => (bobLog = record(b)));
  const live = await alice.send({ to: "bob", type: "task", data: "live" });
  await bobLog.until((g) => g.messages.length === 1, "the live message");
  assert.equal(bobLog.messages[0].id, live.id);
  await bob.disconnect();

  const queued = await alice.send({ to: "bob", type: "task", data: "queued" });
  let bob2Log;
  await agent(t, { channelName, agentName: "bob", inbox: true }, (b) => (bob2Log = record(b)));
  await bob2Log.until((g) => g.inbox.length === 1, "the queued message");
  assert.equal(bob2Log.inbox[0].message.id, queued.id, "only what was sent while bob was away");
  assert.deepEqual(bob2Log.messages, []);
});

test("HttpClient: inboxReceive leases, inboxAck and inboxReject settle; not_found and the server's limits", async (t) => {
  const channelName = unique("inbox");
  let aliceLog;
  const alice = await agent(t, { channelName, agentName: "alice" }, (a) => (aliceLog = record(a)));
  const one = await alice.send({ to: "worker", type: "job", data: { n: 1 }, receipt: true });
  const two = await alice.send({ to: "worker", type: "job", data: { n: 2 } });
  const client = new HttpClient({ url: server.wsUrl, apiKey: server.apiKey }); // a ws:// URL works too
  assert.equal(client.baseUrl, server.httpUrl.replace(/\/$/, ""));

  const leased = await client.inboxReceive(channelName, "worker", { max: 10, visibilityTimeoutMs: 60_000 });
  assert.deepEqual(
    leased.map((d) => [d.message.id, d.deliveryCount, d.message.data, d.message.from]),
    [[one.id, 1, { n: 1 }, "alice"], [two.id, 1, { n: 2 }, "alice"]],
  );
  assert.deepEqual(await client.inboxReceive(channelName, "worker"), [], "leased messages are not leased twice");
  await aliceLog.until((g) => g.receipts.length === 1, "the delivered receipt");
  assert.deepEqual(aliceLog.receipts[0], { id: one.id, to: "worker", status: "delivered", deliveryCount: 1 });

  const acknowledged = nextEvent(alice, "receipt", (r) => r.status === "acknowledged", "the acknowledged receipt");
  assert.equal(await client.inboxAck(channelName, "worker", one.id), undefined);
  assert.equal((await acknowledged).id, one.id);
  await client.inboxReject(channelName, "worker", two.id, { reason: "later" });
  const again = await client.inboxReceive(channelName, "worker", { max: 1 });
  assert.deepEqual(again.map((d) => [d.message.id, d.deliveryCount]), [[two.id, 2]]);
  await client.inboxAck(channelName, "worker", two.id);
  assert.deepEqual(await client.inboxReceive(channelName, "worker"), []);

  for (const call of [() => client.inboxAck(channelName, "worker", one.id), () => client.inboxReject(channelName, "worker", "nope")]) {
    const e = await rejection(call());
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, "not_found");
  }
  assert.equal((await rejection(client.inboxReceive(channelName, "worker", { max: 101 }))).code, "invalid_payload");
  assert.equal((await rejection(client.inboxReceive(channelName, "bad name!"))).code, "invalid_agent_name");
  assert.equal((await rejection(client.inboxReceive(unique("nowhere"), "worker"))).code, "channel_not_found");
  assert.equal((await rejection(client.inboxReceive(channelName, "worker", { max: 0 }))).code, "invalid_argument");
  const denied = new HttpClient({ url: server.httpUrl, apiKey: "sk_not_a_key" });
  assert.equal((await rejection(denied.inboxReceive(channelName, "worker"))).code, "invalid_key");
  const down = new HttpClient({ url: "http://127.0.0.1:9", apiKey: server.apiKey });
  assert.equal((await rejection(down.deadLetters(channelName))).code, "connection_failed");
});

test("temporary keys: an inbox join needs the inbox capability", async (t) => {
  const channelName = unique("inbox");
  const mint = async (capabilities) => {
    const response = await fetch(`${server.httpUrl}/v1/keys/temporary`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ ttl_secs: 60, capabilities }),
    });
    assert.equal(response.status, 201);
    return (await response.json()).key;
  };
  const alice = await agent(t, { channelName, agentName: "alice" });
  const sent = await alice.send({ to: "bob", type: "task", data: "for bob" });

  const refused = new AgentConnection();
  t.after(() => refused.disconnect());
  const e = await rejection(refused.connect(connectOptions({ channelName, agentName: "bob", inbox: true, apiKey: await mint(["subscribe"]) })));
  assert.equal(e.code, "forbidden");

  let bobLog;
  const bob = await agent(t, { channelName, agentName: "bob", inbox: true, apiKey: await mint(["subscribe", "inbox"]) }, (b) => (bobLog = record(b)));
  await bobLog.until((g) => g.inbox.length === 1, "the delivery with the inbox capability");
  assert.equal(bobLog.inbox[0].message.id, sent.id);
  await bob.ack(sent.id);
});
