// Channel storage (agent.storage) against the real server: versions and compare-and-set, create-only
// writes, list pagination and the async iterator, delete, change events, not_found, expiry, the
// kv capability of temporary keys, and a read re-sent across a server restart.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { AgentConnection, ChannelStorage, SwitchboardError } from "../dist/index.js";
import { startServer, withTimeout, nextEvent, unique, STEP_MS } from "./harness.mjs";

let server;

before(async () => {
  server = await startServer();
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

async function mintTemporaryKey(grant) {
  const response = await fetch(`${server.httpUrl}/v1/keys/temporary`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(grant),
  });
  assert.equal(response.status, 201);
  return (await response.json()).key;
}

test("put returns the entry; compare-and-set wins with the right version and conflicts with a stale one", async (t) => {
  const alice = await agent(t, { channelName: unique("kv"), agentName: "alice" });
  assert.ok(alice.storage instanceof ChannelStorage);
  const before = Date.now();
  const first = await alice.storage.put("score/ada", { points: 3 });
  assert.deepEqual(
    { key: first.key, value: first.value, version: first.version, updatedBy: first.updatedBy },
    { key: "score/ada", value: { points: 3 }, version: 1, updatedBy: "alice" },
  );
  assert.ok(first.updatedAt >= before - 1000 && first.updatedAt <= Date.now() + 1000, "updatedAt is server time in ms");
  assert.equal(first.expiresAt, undefined);
  assert.equal("updated_at" in first, false, "entries are camelCase");

  const second = await alice.storage.put("score/ada", { points: 5 }, { version: 1 });
  assert.equal(second.version, 2);
  const stale = await rejection(alice.storage.put("score/ada", { points: 9 }, { version: 1 }));
  assert.ok(stale instanceof SwitchboardError);
  assert.equal(stale.code, "version_conflict");
  assert.equal(stale.fromServer, true);
  assert.deepEqual((await alice.storage.get("score/ada")).value, { points: 5 }, "the stale write changed nothing");

  // Version 0: create only.
  assert.equal((await rejection(alice.storage.put("score/ada", 0, { version: 0 }))).code, "version_conflict");
  const created = await alice.storage.put("score/bob", null, { version: 0 });
  assert.deepEqual([created.version, created.value], [1, null]);
});

test("get of a missing key rejects with not_found; delete, also compare-and-delete", async (t) => {
  const alice = await agent(t, { channelName: unique("kv"), agentName: "alice" });
  assert.equal((await rejection(alice.storage.get("nothing"))).code, "not_found");
  assert.equal((await rejection(alice.storage.delete("nothing"))).code, "not_found");
  await alice.storage.put("k", "v");
  await alice.storage.put("k", "w");
  assert.equal((await rejection(alice.storage.delete("k", { version: 1 }))).code, "version_conflict");
  assert.equal(await alice.storage.delete("k", { version: 2 }), undefined);
  assert.equal((await rejection(alice.storage.get("k"))).code, "not_found");
  await alice.storage.put("k", "again");
  await alice.storage.delete("k");
  assert.equal((await rejection(alice.storage.get("k"))).code, "not_found");
});

test("list pages through keys in order by prefix; entries() iterates every page", async (t) => {
  const channelName = unique("kv");
  const alice = await agent(t, { channelName, agentName: "alice" });
  const keys = ["item/03", "item/01", "item/05", "item/02", "item/04", "other"];
  for (const key of keys) await alice.storage.put(key, { key });
  const bob = await agent(t, { channelName, agentName: "bob" });

  const first = await bob.storage.list({ prefix: "item/", limit: 2 });
  assert.deepEqual(first.entries.map((e) => e.key), ["item/01", "item/02"]);
  assert.equal(first.next, "item/02");
  assert.deepEqual(first.entries[0].value, { key: "item/01" });
  assert.equal(first.entries[0].updatedBy, "alice");
  const second = await bob.storage.list({ prefix: "item/", limit: 2, after: first.next });
  assert.deepEqual(second.entries.map((e) => e.key), ["item/03", "item/04"]);
  const last = await bob.storage.list({ prefix: "item/", limit: 2, after: second.next });
  assert.deepEqual(last.entries.map((e) => e.key), ["item/05"]);
  assert.equal(last.next, undefined);
  assert.deepEqual((await bob.storage.list()).entries.map((e) => e.key), [...keys].sort());

  const seen = [];
  for await (const entry of bob.storage.entries({ prefix: "item/", limit: 2 })) seen.push(entry.key);
  assert.deepEqual(seen, ["item/01", "item/02", "item/03", "item/04", "item/05"]);
  const all = [];
  for await (const entry of bob.storage.entries()) all.push(entry.key);
  assert.equal(all.length, keys.length);
  assert.equal((await rejection(bob.storage.list({ limit: 0 }))).code, "invalid_argument");
});

test("storageEvents: storage events and onStorageChange for puts and deletes; nothing without it", async (t) => {
  const channelName = unique("kv");
  const writer = await agent(t, { channelName, agentName: "writer" });
  const watcher = await agent(t, { channelName, agentName: "watcher", storageEvents: true });
  const quiet = await agent(t, { channelName, agentName: "quiet" });
  const quietGot = [];
  quiet.onStorageChange((c) => quietGot.push(c));
  const viaHandler = [];
  watcher.onStorageChange((c) => viaHandler.push(c));

  const put = nextEvent(watcher, "storage", (c) => c.op === "put", "the put's change");
  await writer.storage.put("config/theme", { dark: true });
  assert.deepEqual(await put, { key: "config/theme", op: "put", version: 1, value: { dark: true }, updatedBy: "writer" });
  const deleted = nextEvent(watcher, "storage", (c) => c.op === "delete", "the delete's change");
  await writer.storage.delete("config/theme");
  const change = await deleted;
  assert.deepEqual(change, { key: "config/theme", op: "delete", version: 1, updatedBy: "writer" });
  assert.equal("value" in change, false);
  assert.deepEqual(viaHandler.map((c) => c.op), ["put", "delete"]);

  // Round trip through quiet's socket after the writes: it got no change.
  await quiet.storage.list();
  assert.deepEqual(quietGot, []);
});

test("an entry with ttlSecs carries expiresAt and reads as absent after it", async (t) => {
  const alice = await agent(t, { channelName: unique("kv"), agentName: "alice" });
  const entry = await alice.storage.put("short", "lived", { ttlSecs: 1 });
  assert.equal(typeof entry.expiresAt, "number");
  assert.ok(entry.expiresAt > entry.updatedAt && entry.expiresAt <= entry.updatedAt + 1500);
  assert.equal((await alice.storage.get("short")).value, "lived");
  const deadline = Date.now() + STEP_MS;
  for (;;) {
    const e = await alice.storage.get("short").then(
      () => undefined,
      (err) => err,
    );
    if (e) {
      assert.equal(e.code, "not_found");
      break;
    }
    assert.ok(Date.now() < deadline, "the entry expires after its ttl");
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal((await rejection(alice.storage.put("x", 1, { ttlSecs: 0 }))).code, "invalid_argument");
});

test("server refusals: message_too_large, invalid_payload; client checks: invalid_argument", async (t) => {
  const alice = await agent(t, { channelName: unique("kv"), agentName: "alice" });
  assert.equal((await rejection(alice.storage.put("big", "x".repeat(70 * 1024)))).code, "message_too_large");
  assert.equal((await rejection(alice.storage.put("bell\u0007", 1))).code, "invalid_payload");
  for (const call of [
    () => alice.storage.put("", 1),
    () => alice.storage.put("k", undefined),
    () => alice.storage.put("k", 1, { version: -1 }),
    () => alice.storage.put("k", 1, { version: 1.5 }),
    () => alice.storage.get(7),
    () => alice.storage.delete(""),
  ]) {
    const e = await rejection(call());
    assert.equal(e.code, "invalid_argument");
    assert.equal(e.fromServer, false);
  }
  const idle = new AgentConnection();
  assert.equal((await rejection(idle.storage.get("k"))).code, "not_joined");
});

test("temporary keys: without the kv capability forbidden; read_only may read, not write", async (t) => {
  const channelName = unique("kv");
  const owner = await agent(t, { channelName, agentName: "owner" });
  await owner.storage.put("config", { v: 1 });

  const reader = await agent(t, {
    channelName,
    agentName: "reader",
    apiKey: await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe", "kv"], read_only: true }),
  });
  assert.deepEqual((await reader.storage.get("config")).value, { v: 1 });
  assert.equal((await reader.storage.list()).entries.length, 1);
  for (const write of [() => reader.storage.put("x", 1), () => reader.storage.delete("config")]) {
    const e = await rejection(write());
    assert.equal(e.code, "forbidden");
    assert.equal(e.fromServer, true);
  }

  const without = await agent(t, {
    channelName,
    agentName: "without",
    apiKey: await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe"] }),
  });
  assert.equal((await rejection(without.storage.get("config"))).code, "forbidden");

  const writer = await agent(t, {
    channelName,
    agentName: "writer",
    apiKey: await mintTemporaryKey({ ttl_secs: 60, capabilities: ["subscribe", "kv"] }),
  });
  assert.equal((await writer.storage.put("config", { v: 2 }, { version: 1 })).updatedBy, "writer");
});

test("storage survives a server restart; a read made while reconnecting waits for the rejoin, and storageEvents is joined again", async (t) => {
  const channelName = unique("kv");
  const alice = await agent(t, { channelName, agentName: "alice", storageEvents: true, backoff: { initialMs: 50, maxMs: 500 } });
  await alice.storage.put("durable", { n: 1 });
  const down = nextEvent(alice, "disconnect", () => true, "the drop");
  const back = nextEvent(alice, "connect", (c) => c.reconnected, "the rejoin");
  await server.restart("SIGTERM");
  await down;
  const read = alice.storage.get("durable");
  await back;
  assert.deepEqual((await withTimeout(read, "the read after the rejoin")).value, { n: 1 });
  const change = nextEvent(alice, "storage", (c) => c.key === "durable", "the change after the rejoin");
  await alice.storage.put("durable", { n: 2 }, { version: 1 });
  assert.equal((await change).version, 2);
});
