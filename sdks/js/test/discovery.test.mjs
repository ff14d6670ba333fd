// Discovery against the real server: announce and discover (capability, equality, numeric range
// and dotted-path filters, online status, limit), updateMetadata, a watcher on sys.discovery that
// sees every change (watchAgents), the HttpClient's directory calls, and the failure paths.
//
// The directory is the tenant's, shared by every test of this file: each test names its agents
// and its capability with a fresh suffix and looks only for those.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection, HttpClient, SwitchboardError, watchAgents, DISCOVERY_CHANNEL, AGENT_MESSAGE_TYPE } from "../dist/index.js";
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

/** A connected agent, disconnected when the test ends. */
async function agent(t, options) {
  const a = new AgentConnection();
  t.after(() => a.disconnect());
  await a.connect(connectOptions(options));
  return a;
}

async function rejection(promise) {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (e) => e,
  );
}

const http = () => new HttpClient({ url: server.httpUrl, apiKey: server.apiKey });
const names = (cards) => cards.map((c) => c.name);

/** Records a watcher's directory updates; `until(pred)` waits for a state. */
function record(watcher) {
  const got = { updates: [], messages: [] };
  const waiters = new Set();
  const changed = () => {
    for (const w of waiters) w();
  };
  watcher.onAgentUpdate((u) => (got.updates.push(u), changed()));
  watcher.onMessage((m) => (got.messages.push(m), changed()));
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

test("announce returns the card; discover finds agents by capability, equality, range and dotted-path filters, online status and limit", async (t) => {
  const cap = unique("translate");
  const [alice, bob, carol] = [unique("alice"), unique("bob"), unique("carol")];
  const channelName = unique("work");
  const a = await agent(t, { channelName, agentName: alice });
  const b = await agent(t, { channelName, agentName: bob });

  const before = Date.now();
  const card = await a.announce([cap, "summarize"], { status: "idle", price: 5, stats: { reputation: 4.8 }, tags: ["fast"] });
  assert.deepEqual(
    { name: card.name, capabilities: card.capabilities, metadata: card.metadata, online: card.online },
    { name: alice, capabilities: [cap, "summarize"], metadata: { status: "idle", price: 5, stats: { reputation: 4.8 }, tags: ["fast"] }, online: true },
  );
  assert.ok(card.updatedAt >= before - 1000 && card.updatedAt <= Date.now() + 1000, "updatedAt is server time in ms");
  assert.equal("updated_at" in card, false, "cards are camelCase");
  await b.announce([cap], { status: "busy", price: 12, stats: { reputation: 3.1 } });
  // A backend announces an agent that is not connected.
  const offline = await http().announceAgent(carol, [cap, "draw"], { status: "idle", price: 1 });
  assert.equal(offline.online, false);
  // Announced without metadata: an empty object.
  const plain = await http().announceAgent(unique("dave"), ["elsewhere"]);
  assert.deepEqual(plain.metadata, {});

  const find = (query) => a.discover({ capability: cap, ...query }).then(names);
  assert.deepEqual(await find({}), [alice, bob, carol], "by name");
  assert.deepEqual(names(await a.discover({ capability: "draw" })).filter((n) => n === carol), [carol]);
  assert.deepEqual(await a.discover({ capability: unique("nobody-can") }), []);
  assert.deepEqual(await find({ filters: { status: "idle" } }), [alice, carol], "equality");
  assert.deepEqual(await find({ filters: { status: "idle", price: 5 } }), [alice], "every filter must hold");
  assert.deepEqual(await find({ filters: { tags: ["fast"] } }), [alice], "equality of JSON values");
  assert.deepEqual(await find({ filters: { price: { max: 10 } } }), [alice, carol], "a range with max");
  assert.deepEqual(await find({ filters: { price: { min: 5, max: 12 } } }), [alice, bob], "inclusive bounds");
  assert.deepEqual(await find({ filters: { price: { min: 13 } } }), []);
  assert.deepEqual(await find({ filters: { "stats.reputation": { min: 4.5 } } }), [alice], "a dotted path");
  assert.deepEqual(await find({ filters: { "stats.reputation": 3.1 } }), [bob], "a dotted path, equality");
  assert.deepEqual(await find({ filters: { status: { min: 1 } } }), [], "a range never holds on a string");
  assert.deepEqual(await find({ filters: { missing: 1 } }), [], "a missing field never matches");
  assert.deepEqual(await find({ online: true }), [alice, bob]);
  assert.deepEqual(await find({ online: false }), [carol]);
  assert.deepEqual(await find({ limit: 2 }), [alice, bob]);

  const cards = await b.discover({ capability: cap, filters: { status: "idle" }, online: false });
  assert.deepEqual(cards, [{ name: carol, capabilities: [cap, "draw"], metadata: { status: "idle", price: 1 }, online: false, updatedAt: offline.updatedAt }]);
  // HttpClient.discover reads the same directory.
  const trusted = { capability: cap, filters: { "stats.reputation": { min: 3 } } };
  assert.deepEqual(await http().discover(trusted), await a.discover(trusted));
  assert.deepEqual(names(await http().discover(trusted)), [alice, bob]);
  assert.deepEqual(names(await http().discover({ capability: cap, online: true })), [alice, bob]);
});

test("updateMetadata replaces the metadata and keeps the capabilities; an agent that never announced gets not_found", async (t) => {
  const cap = unique("summarize");
  const name = unique("scribe");
  const a = await agent(t, { channelName: unique("work"), agentName: name });
  const missing = await rejection(a.updateMetadata({ status: "idle" }));
  assert.ok(missing instanceof SwitchboardError);
  assert.equal(missing.code, "not_found");
  assert.equal(missing.fromServer, true);

  const first = await a.announce([cap], { status: "idle", price: 3 });
  const updated = await a.updateMetadata({ status: "busy" });
  assert.deepEqual(
    { name: updated.name, capabilities: updated.capabilities, metadata: updated.metadata, online: updated.online },
    { name, capabilities: [cap], metadata: { status: "busy" }, online: true },
    "the metadata is replaced, not merged",
  );
  assert.ok(updated.updatedAt >= first.updatedAt);
  assert.deepEqual(names(await a.discover({ capability: cap, filters: { status: "busy" } })), [name]);
  assert.deepEqual(await a.discover({ capability: cap, filters: { price: 3 } }), []);
  assert.deepEqual((await http().agent(name)).metadata, { status: "busy" });

  // Announcing again replaces the whole card.
  const again = await a.announce(["other"], { v: 2 });
  assert.deepEqual([again.capabilities, again.metadata], [["other"], { v: 2 }]);
  assert.deepEqual(await a.discover({ capability: cap }), []);
});

test("a watcher on sys.discovery sees announced, updated, offline, online and removed; it is not online itself", async (t) => {
  const name = unique("alice");
  const watcherName = unique("watcher");
  const handled = [];
  const watcher = await watchAgents(connectOptions({ agentName: watcherName }), (u) => handled.push(u));
  t.after(() => watcher.disconnect());
  const log = record(watcher);
  assert.equal(watcher.joinReply.channel, DISCOVERY_CHANNEL);
  assert.equal(watcher.joinReply.agentName, watcherName);
  const iterator = watcher.agentUpdates();
  const mine = (change) => (g) => g.updates.some((u) => u.agent.name === name && u.change === change);

  const a1 = new AgentConnection();
  await a1.connect(connectOptions({ channelName: unique("work"), agentName: name }));
  const card = await a1.announce(["translate"], { status: "idle" });
  await log.until(mine("announced"), "the announced update");
  await a1.updateMetadata({ status: "busy" });
  await log.until(mine("updated"), "the updated update");
  await a1.disconnect();
  await log.until(mine("offline"), "the offline update");
  await agent(t, { channelName: unique("lobby"), agentName: name });
  await log.until(mine("online"), "the online update");
  await http().removeAgent(name);
  await log.until(mine("removed"), "the removed update");

  const updates = log.updates.filter((u) => u.agent.name === name);
  assert.deepEqual(
    updates.map((u) => [u.change, u.agent.online, u.agent.metadata.status]),
    [["announced", true, "idle"], ["updated", true, "busy"], ["offline", false, "busy"], ["online", true, "busy"], ["removed", true, "busy"]],
  );
  assert.deepEqual(updates[0].agent, card, "the update carries the card, camelCase");
  assert.deepEqual(handled.filter((u) => u.agent.name === name), updates, "watchAgents' handler got them too");

  // The same changes are ephemeral `agent` messages from `switchboard`.
  const messages = log.messages.filter((m) => m.data?.agent?.name === name);
  assert.equal(messages.length, 5);
  for (const m of messages) {
    assert.deepEqual([m.type, m.from, m.channel, m.ephemeral, m.offset], [AGENT_MESSAGE_TYPE, "switchboard", DISCOVERY_CHANNEL, true, undefined]);
  }
  assert.deepEqual(messages.map((m) => m.data.change), ["announced", "updated", "offline", "online", "removed"]);

  // agentUpdates() yields the same updates, in order.
  const iterated = [];
  while (iterated.length < 5) {
    const { value } = await withTimeout(iterator.next(), "the agentUpdates() iterator");
    if (value.agent.name === name) iterated.push(value.change);
  }
  assert.deepEqual(iterated, ["announced", "updated", "offline", "online", "removed"]);
  await iterator.return();

  // A watcher does not count as online: a card under its name reads offline.
  const watcherCard = await http().announceAgent(watcherName, ["watching"]);
  assert.equal(watcherCard.online, false);
  await http().removeAgent(watcherName);
});

test("an AgentConnection joined to sys.discovery by hand gets agent events too; other channels never do", async (t) => {
  const name = unique("bob");
  const watcher = await agent(t, { channelName: DISCOVERY_CHANNEL, agentName: unique("w"), presence: false });
  const channelName = unique("work");
  const bystander = await agent(t, { channelName, agentName: unique("c") });
  let strayUpdates = 0;
  bystander.onAgentUpdate(() => (strayUpdates += 1));
  const seen = nextEvent(watcher, "agent", (u) => u.agent.name === name && u.change === "announced", "the announced event");
  const b = await agent(t, { channelName, agentName: name });
  await b.announce(["x"]);
  const update = await seen;
  assert.deepEqual([update.agent.capabilities, update.agent.online], [["x"], true]);
  // A message of type `agent` in an ordinary channel is just a message.
  const fake = nextEvent(bystander, "message", (m) => m.type === "agent", "the ordinary agent message");
  await b.send({ type: "agent", data: { change: "removed", agent: update.agent } });
  await fake;
  assert.equal(strayUpdates, 0);
  await http().removeAgent(name);
});

test("HttpClient: announceAgent, agent, discover and removeAgent (watchers see removed); not_found afterwards", async (t) => {
  const client = http();
  const cap = unique("index");
  const name = unique("backend");
  const card = await client.announceAgent(name, [cap], { region: "eu", load: { cpu: 0.2 } });
  assert.deepEqual(
    { name: card.name, capabilities: card.capabilities, metadata: card.metadata, online: card.online },
    { name, capabilities: [cap], metadata: { region: "eu", load: { cpu: 0.2 } }, online: false },
  );
  assert.deepEqual(await client.agent(name), card);
  assert.deepEqual(names(await client.discover({ capability: cap, filters: { "load.cpu": { max: 0.5 } } })), [name]);

  // The card turns online while an agent of that name is in a channel.
  const a = await agent(t, { channelName: unique("work"), agentName: name });
  assert.equal((await client.agent(name)).online, true);
  await a.disconnect();

  const watcher = await watchAgents(connectOptions({}));
  t.after(() => watcher.disconnect());
  const removed = nextEvent(watcher, "agent", (u) => u.agent.name === name && u.change === "removed", "the removed update");
  assert.equal(await client.removeAgent(name), undefined);
  await removed;
  for (const call of [() => client.agent(name), () => client.removeAgent(name)]) {
    const e = await rejection(call());
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, "not_found");
  }
  assert.deepEqual(await client.discover({ capability: cap }), []);
});

test("HttpClient.updateAgentMetadata replaces an announced agent's metadata; not_found for one that never announced", async () => {
  const client = http();
  const name = unique("backend");
  assert.equal((await rejection(client.updateAgentMetadata(name, { region: "us" }))).code, "not_found");
  await client.announceAgent(name, ["index"], { region: "eu" });
  const updated = await client.updateAgentMetadata(name, { region: "us" });
  assert.deepEqual([updated.name, updated.capabilities, updated.metadata], [name, ["index"], { region: "us" }]);
  assert.deepEqual((await client.agent(name)).metadata, { region: "us" });
  await client.removeAgent(name);
});

test("errors: invalid_payload, not_found, invalid_agent_name, forbidden in sys.discovery, invalid_argument before sending", async (t) => {
  const a = await agent(t, { channelName: unique("work"), agentName: unique("alice") });
  const client = http();
  const invalid = async (promise, what) => {
    const e = await rejection(promise);
    assert.ok(e instanceof SwitchboardError, what);
    assert.equal(e.code, "invalid_payload", what);
    assert.equal(e.fromServer, true, what);
  };
  await invalid(a.announce(Array.from({ length: 33 }, (_, i) => `c${i}`)), "more than 32 capabilities");
  await invalid(a.announce([""]), "an empty capability");
  await invalid(a.announce(["x".repeat(65)]), "a capability over 64 bytes");
  await invalid(a.announce(["ok"], { blob: "x".repeat(5000) }), "metadata over 4 KiB");
  await invalid(a.discover({ limit: 1001 }), "limit over 1000");
  await invalid(
    a.discover({ filters: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`f${i}`, i])) }),
    "more than 16 filters",
  );
  await invalid(client.announceAgent(unique("x"), ["ok"], { blob: "x".repeat(5000) }), "metadata over 4 KiB over HTTP");
  await invalid(client.discover({ limit: 1001 }), "limit over 1000 over HTTP");

  assert.equal((await rejection(a.updateMetadata({}))).code, "not_found", "never announced");
  for (const call of [() => client.agent("not a name"), () => client.announceAgent("bad/name", []), () => client.removeAgent("bad name!")]) {
    assert.equal((await rejection(call())).code, "invalid_agent_name");
  }

  // Only the server writes in sys. channels.
  const watcher = await watchAgents(connectOptions({}));
  t.after(() => watcher.disconnect());
  for (const send of [
    () => watcher.send({ type: "agent", data: { change: "removed" } }),
    () => watcher.send({ type: "chat", data: "hi", ephemeral: true }),
  ]) {
    const e = await rejection(send());
    assert.ok(e instanceof SwitchboardError);
    assert.equal(e.code, "forbidden");
  }
  assert.equal(watcher.connected, true, "a refused publish leaves the connection up");

  // Checked before anything is sent.
  for (const call of [
    () => a.announce("translate"),
    () => a.announce([1]),
    () => a.announce(["ok"], ["not", "an", "object"]),
    () => a.updateMetadata(null),
    () => a.discover({ limit: 0 }),
    () => a.discover({ online: "yes" }),
    () => a.discover({ filters: [] }),
    () => a.discover({ capability: 7 }),
    () => client.agent(""),
    () => client.announceAgent("x", "translate"),
    () => client.updateAgentMetadata("x", "meta"),
  ]) {
    const e = await rejection(call());
    assert.equal(e.code, "invalid_argument");
    assert.equal(e.fromServer, false);
  }
});

test("temporary keys: discover needs presence on sys.discovery", async (t) => {
  const mint = async (grant) => {
    const response = await fetch(`${server.httpUrl}/v1/keys/temporary`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ ttl_secs: 60, ...grant }),
    });
    assert.equal(response.status, 201);
    return (await response.json()).key;
  };
  const channelName = unique("work");
  const narrow = await agent(t, { channelName, agentName: unique("a"), apiKey: await mint({ capabilities: ["subscribe", "publish", "presence"], channels: [channelName] }) });
  assert.equal((await rejection(narrow.discover())).code, "forbidden");
  const wide = await agent(t, {
    channelName,
    agentName: unique("b"),
    apiKey: await mint({ capabilities: ["subscribe", "publish", "presence"], channels: [channelName, DISCOVERY_CHANNEL] }),
  });
  assert.ok(Array.isArray(await wide.discover({ limit: 1 })));
});
