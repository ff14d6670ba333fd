// Storage tiers against the real server (its cache holds the newest 5 messages of a channel):
// `pollSource` on history reads over the socket and HTTP (CACHE, LOG, KAFKA, DATABASE, AUTO, any
// case) with the `sources` that served them, the join's default source and a read's own source
// winning over it, the database trailing the log, storage policies (`no_history` for a tier a
// channel does not keep), channel creation with tier retention, and refused sources.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection, HttpClient, SwitchboardError } from "../dist/index.js";
import { startServer, unique } from "./harness.mjs";

const CACHE_MESSAGES = 5;

let server;
let http;

before(async () => {
  server = await startServer({ env: { SWITCHBOARD_STORAGE_CACHE_MESSAGES: String(CACHE_MESSAGES) } });
  http = new HttpClient({ url: server.httpUrl, apiKey: server.apiKey });
});

after(async () => {
  await server?.close();
});

async function agent(t, options) {
  const a = new AgentConnection();
  t.after(() => a.disconnect());
  await a.connect({ url: server.httpUrl, apiKey: server.apiKey, WebSocket, ...options });
  return a;
}

async function rejection(promise) {
  return promise.then(
    (value) => assert.fail(`expected a rejection, got ${JSON.stringify(value)}`),
    (e) => e,
  );
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const offsets = (page) => page.messages.map((m) => m.offset);
/** A page as `[offsets, sources]`, for one assertion per read. */
const shape = (page) => [offsets(page), page.sources];

/** Publishes `n` messages; returns their offsets. */
async function publish(agent, n) {
  const out = [];
  for (let i = 1; i <= n; i++) out.push((await agent.send({ type: "t", data: i })).offset);
  return out;
}

const STITCHED_8 = [range(1, 8), [{ tier: "LOG", from: 1, to: 3 }, { tier: "CACHE", from: 4, to: 8 }]];
const CACHE_8 = [range(4, 8), [{ tier: "CACHE", from: 4, to: 8 }]];
const LOG_8 = [range(1, 8), [{ tier: "LOG", from: 1, to: 8 }]];

test("CACHE, LOG, KAFKA and AUTO reads return what each tier holds, and say which tier served which offsets", async (t) => {
  const channelName = unique("tiers");
  const alice = await agent(t, { channelName, agentName: "alice" });
  assert.deepEqual(await publish(alice, 8), range(1, 8));

  // AUTO (the default): the log for what left the cache, the cache for the newest 5.
  const auto = await alice.history();
  assert.deepEqual(shape(auto), STITCHED_8);
  assert.deepEqual([auto.head, auto.first_available, auto.next], [8, 1, undefined]);
  assert.deepEqual(auto.messages.map((m) => m.data), range(1, 8), "the messages themselves, read from both tiers");
  for (const pollSource of ["AUTO", "auto", "Auto"]) assert.deepEqual(shape(await alice.history({ pollSource })), STITCHED_8, pollSource);

  for (const pollSource of ["CACHE", "cache", "Cache"]) assert.deepEqual(shape(await alice.history({ pollSource })), CACHE_8, pollSource);
  for (const pollSource of ["LOG", "log", "KAFKA", "kafka", "Kafka"]) assert.deepEqual(shape(await alice.history({ pollSource })), LOG_8, pollSource);

  // Bounds apply within the tiers; the ranges follow them.
  assert.deepEqual(shape(await alice.history({ from_offset: 2, to_offset: 6 })), [
    range(2, 6),
    [{ tier: "LOG", from: 2, to: 3 }, { tier: "CACHE", from: 4, to: 6 }],
  ]);
  const backward = await alice.history({ pollSource: "cache", direction: "backward", limit: 3 });
  assert.deepEqual(offsets(backward), [8, 7, 6]);
  assert.equal(backward.next, 5);
  assert.deepEqual(backward.sources.map((s) => s.tier), ["CACHE"]);

  // receive() takes it too: oldest first, the latest `limit` of that tier.
  assert.deepEqual((await alice.receive({ pollSource: "cache" })).map((m) => m.offset), range(4, 8));
  assert.deepEqual((await alice.receive({ pollSource: "LOG", limit: 2 })).map((m) => m.offset), [7, 8]);
  assert.deepEqual((await alice.receive({ pollSource: "CACHE", after: 6 })).map((m) => m.offset), [7, 8]);

  // The same over HTTP.
  assert.deepEqual(shape(await http.history(channelName)), STITCHED_8);
  assert.deepEqual(shape(await http.history(channelName, { pollSource: "cache" })), CACHE_8);
  assert.deepEqual(shape(await http.history(channelName, { pollSource: "Kafka" })), LOG_8);
  const page = await http.history(channelName, { pollSource: "LOG", from_offset: 3, limit: 2 });
  assert.deepEqual([offsets(page), page.next, page.head], [[3, 4], 5, 8]);
});

test("a join's pollSource is the connection's default source; a read's own source wins", async (t) => {
  const channelName = unique("tiers");
  const alice = await agent(t, { channelName, agentName: "alice", pollSource: "cache" });
  await publish(alice, 8);
  assert.deepEqual(shape(await alice.history()), CACHE_8, "history() reads the join's source");
  assert.deepEqual((await alice.receive()).map((m) => m.offset), range(4, 8), "receive() too");
  assert.deepEqual(shape(await alice.history({ pollSource: "LOG" })), LOG_8, "a read's own source wins");
  assert.deepEqual(shape(await alice.history({ pollSource: "AUTO" })), STITCHED_8, "also AUTO");
  assert.deepEqual((await alice.receive({ pollSource: "kafka" })).map((m) => m.offset), range(1, 8));

  // The default belongs to the connection: another one in the same channel reads AUTO, or its own.
  const bob = await agent(t, { channelName, agentName: "bob" });
  assert.deepEqual(shape(await bob.history()), STITCHED_8);
  const carol = await agent(t, { channelName, agentName: "carol", pollSource: "KAFKA" });
  assert.deepEqual(shape(await carol.history()), LOG_8);
  assert.deepEqual(shape(await carol.history({ pollSource: "Cache" })), CACHE_8);
});

test("DATABASE reads trail the log, and soon return every message", async (t) => {
  const channelName = unique("tiers");
  const alice = await agent(t, { channelName, agentName: "alice" });
  await publish(alice, 8);
  // The database is written from the log asynchronously: a read may miss the newest messages
  // for a moment, but what it has is the oldest ones, without a gap.
  const deadline = Date.now() + 5000;
  let page;
  for (;;) {
    page = await alice.history({ pollSource: "database" });
    const got = offsets(page);
    assert.deepEqual(got, range(1, got.length), "the database holds a prefix of the log");
    if (got.length === 8 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(shape(page), [range(1, 8), [{ tier: "DATABASE", from: 1, to: 8 }]]);
  assert.deepEqual(shape(await http.history(channelName, { pollSource: "DATABASE" })), [range(1, 8), [{ tier: "DATABASE", from: 1, to: 8 }]]);
  const dbAgent = await agent(t, { channelName, agentName: "bob", pollSource: "Database" });
  assert.deepEqual((await dbAgent.receive({ limit: 3 })).map((m) => m.offset), [6, 7, 8], "a join may default to the database");
});

test("storage policies: a channel is created with its tiers and retention; reading a tier it does not keep is no_history", async (t) => {
  // log: cache and log, no database.
  const logged = unique("logged");
  const info = await http.createChannel(logged, { storage: "log", retention: { cache: { maxMessages: 3 } } });
  assert.equal(info.name, logged);
  assert.equal(info.storage, "log");
  assert.deepEqual(info.retention.cache, { maxMessages: 3 });
  // The log's own retention is for persistent channels (a database keeps what the log drops).
  const misfit = await rejection(http.createChannel(unique("misfit"), { storage: "log", retention: { log: { maxAgeSecs: 3600 } } }));
  assert.equal(misfit.code, "invalid_payload");
  const withLog = await http.createChannel(unique("kept"), { retention: { log: { maxAgeSecs: 3600 } } });
  assert.deepEqual([withLog.storage, withLog.retention.log], ["persistent", { maxAgeSecs: 3600 }]);
  assert.deepEqual([info.head, info.firstAvailable, info.hasPassword, info.agents], [0, 1, false, 0]);
  assert.equal(typeof info.createdAt, "number");
  assert.equal("first_available" in info, false, "channel info is camelCase");
  assert.equal((await rejection(http.createChannel(logged))).code, "channel_exists");

  const alice = await agent(t, { channelName: logged, agentName: "alice" });
  await publish(alice, 5);
  assert.deepEqual(shape(await alice.history({ pollSource: "CACHE" })), [[3, 4, 5], [{ tier: "CACHE", from: 3, to: 5 }]], "the channel's own cache bound");
  assert.deepEqual(shape(await alice.history({ pollSource: "LOG" })), [range(1, 5), [{ tier: "LOG", from: 1, to: 5 }]]);
  assert.deepEqual(offsets(await alice.history()), range(1, 5));
  const noDatabase = await rejection(alice.history({ pollSource: "DATABASE" }));
  assert.ok(noDatabase instanceof SwitchboardError);
  assert.deepEqual([noDatabase.code, noDatabase.fromServer], ["no_history", true]);
  assert.equal((await rejection(alice.receive({ pollSource: "database" }))).code, "no_history");
  assert.equal((await rejection(http.history(logged, { pollSource: "database" }))).code, "no_history");
  // A join may name a tier the channel lacks; its reads then fail, and a read's own source helps.
  const dbReader = await agent(t, { channelName: logged, agentName: "bob", pollSource: "DATABASE" });
  assert.equal((await rejection(dbReader.history())).code, "no_history");
  assert.deepEqual(offsets(await dbReader.history({ pollSource: "LOG" })), range(1, 5));
  assert.equal((await http.channel(logged)).head, 5);

  // cache: memory only.
  const cached = unique("cached");
  assert.equal((await http.createChannel(cached, { storage: "cache", retention: { cache: { maxMessages: 3 } } })).storage, "cache");
  const carol = await agent(t, { channelName: cached, agentName: "carol" });
  await publish(carol, 5);
  const auto = await carol.history();
  assert.deepEqual(shape(auto), [[3, 4, 5], [{ tier: "CACHE", from: 3, to: 5 }]], "all there is");
  assert.equal(auto.first_available, 3);
  for (const pollSource of ["LOG", "KAFKA", "DATABASE"]) {
    assert.equal((await rejection(carol.history({ pollSource }))).code, "no_history", pollSource);
    assert.equal((await rejection(http.history(cached, { pollSource }))).code, "no_history", `HTTP ${pollSource}`);
  }

  // ephemeral: no tier at all. persistent (the default): all three.
  const ephemeral = unique("ephemeral");
  assert.equal((await http.createChannel(ephemeral, { storage: "ephemeral" })).storage, "ephemeral");
  assert.equal((await rejection(http.history(ephemeral, { pollSource: "CACHE" }))).code, "no_history");
  const kept = unique("kept");
  const keptInfo = await http.createChannel(kept, { retention: { maxMessages: 100, maxAgeSecs: 86_400 } });
  assert.equal(keptInfo.storage, "persistent");
  assert.deepEqual([keptInfo.retention.maxMessages, keptInfo.retention.maxAgeSecs], [100, 86_400]);
  assert.deepEqual((await http.channel(kept)).retention, keptInfo.retention);
  assert.deepEqual(shape(await http.history(kept, { pollSource: "DATABASE" })), [[], []], "an empty channel: nothing read");

  await http.deleteChannel(kept);
  assert.equal((await rejection(http.channel(kept))).code, "channel_not_found");
});

test("an unknown pollSource, storage policy or retention field is refused before anything is sent (the server says invalid_payload)", async (t) => {
  const channelName = unique("tiers");
  const base = { url: server.httpUrl, apiKey: server.apiKey, WebSocket, channelName, agentName: "alice" };
  for (const pollSource of ["tape", "db", "", 5, null]) {
    const e = await rejection(new AgentConnection().connect({ ...base, pollSource }));
    assert.ok(e instanceof SwitchboardError);
    assert.deepEqual([e.code, e.fromServer], ["invalid_argument", false], JSON.stringify(pollSource));
    assert.match(e.message, /pollSource is one of "AUTO", "CACHE", "LOG", "KAFKA", "DATABASE"/);
  }
  const alice = await agent(t, base);
  await alice.send({ type: "t" });
  for (const call of [
    () => alice.history({ pollSource: "tape" }),
    () => alice.receive({ pollSource: "memory" }),
    () => http.history(channelName, { pollSource: "db" }),
  ]) {
    assert.equal((await rejection(call())).code, "invalid_argument");
  }
  assert.equal(alice.connected, true, "a refused read leaves the connection alone");
  assert.equal((await alice.history({ pollSource: "cache" })).messages.length, 1);

  // The server refuses the same, as invalid_payload: the SDK's check only says it sooner.
  const response = await fetch(`${server.httpUrl}/v1/channels/${channelName}/messages?poll_source=tape`, {
    headers: { authorization: `Bearer ${server.apiKey}` },
  });
  assert.equal(response.status, 400);
  assert.equal((await response.json()).code, "invalid_payload");

  for (const options of [
    { storage: "disk" },
    { storage: "all" },
    { retention: { maxMessage: 3 } },
    { retention: { cache: { maxMessages: -1 } } },
    { retention: { log: { ttlSecs: 5 } } },
    { members: ["a"] },
  ]) {
    assert.equal((await rejection(http.createChannel(unique("bad"), options))).code, "invalid_argument", JSON.stringify(options));
  }
});
