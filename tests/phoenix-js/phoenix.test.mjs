// The unmodified `phoenix` npm client against a real Switchboard server.
//
// Starts `switchboard serve` on port 0 with a fresh data directory, reads the bootstrap key
// it writes, and checks that Phoenix's Socket, Channel and Presence work on the wire protocol
// of spec/protocol.md as they are. Binary: $SWITCHBOARD_BIN or ../../target/debug/switchboard.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join as joinPath, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { Socket, Presence } from "phoenix";
import WebSocket from "ws";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.SWITCHBOARD_BIN || resolve(here, "../../target/debug/switchboard");
const STEP_MS = 5000; // longest wait for any one thing to happen
const TEST_MS = 20000; // longest a test may take

let server; // { child, dataDir, httpUrl, wsUrl, apiKey, stderr }

// ---------------------------------------------------------------------------------------------
// Server lifecycle

function startServer() {
  const dataDir = mkdtempSync(joinPath(tmpdir(), "switchboard-phoenix-"));
  const child = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  });
  const state = { child, dataDir, stderr: "" };
  child.stderr.on("data", (chunk) => {
    state.stderr += chunk;
  });
  // Never leave a server behind, even if the test process dies on an exception.
  process.on("exit", () => child.kill("SIGKILL"));
  return new Promise((resolvePromise, rejectPromise) => {
    let settled = false;
    const reject = (e) => {
      if (settled) return;
      settled = true;
      child.kill("SIGKILL");
      rmSync(dataDir, { recursive: true, force: true });
      rejectPromise(e);
    };
    const timer = setTimeout(() => {
      reject(new Error(`server did not report its address within 20 s; stderr:\n${state.stderr}`));
    }, 20000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${BIN}: ${e.message} (build it: cargo build -p switchboard)`));
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (${code ?? signal}); stderr:\n${state.stderr}`));
    });
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const m = line.match(/Switchboard listening on (http:\/\/\S+)/);
      if (!m || settled) return;
      settled = true;
      clearTimeout(timer);
      state.httpUrl = m[1];
      state.wsUrl = m[1].replace(/^http/, "ws");
      state.apiKey = readFileSync(joinPath(dataDir, "default.key"), "utf8").trim();
      resolvePromise(state);
    });
  });
}

async function stopServer(s) {
  if (!s) return;
  const { child } = s;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(s.dataDir, { recursive: true, force: true });
}

before(async () => {
  server = await startServer();
});

after(async () => {
  await stopServer(server);
});

// ---------------------------------------------------------------------------------------------
// Promise helpers around phoenix's callbacks, each with a timeout

function withTimeout(promise, what, ms = STEP_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A phoenix Socket on the server, tracked so the test disconnects it at the end. */
function newSocket(t, params) {
  const socket = new Socket(`${server.wsUrl}/socket`, {
    transport: WebSocket,
    params,
    timeout: STEP_MS,
    reconnectAfterMs: () => 60000, // a test that loses its socket should fail, not retry
    rejoinAfterMs: () => 60000,
  });
  t.after(() => socket.disconnect());
  return socket;
}

/** Connects and resolves once the socket is open. */
function connect(t, params = { api_key: server.apiKey }) {
  const socket = newSocket(t, params);
  const opened = new Promise((r) => socket.onOpen(() => r(socket)));
  socket.connect();
  return withTimeout(opened, "socket open");
}

/** Resolves with the response of an "ok" reply; rejects with the response of an "error". */
function reply(push, what) {
  return withTimeout(
    new Promise((resolvePromise, reject) => {
      push
        .receive("ok", resolvePromise)
        .receive("error", (response) => {
          const e = new Error(`${what}: error reply ${JSON.stringify(response)}`);
          e.response = response;
          reject(e);
        })
        .receive("timeout", () => reject(new Error(`${what}: push timed out`)));
    }),
    what,
  );
}

function join(channel) {
  return reply(channel.join(), `join ${channel.topic}`);
}

function publish(channel, payload) {
  return reply(channel.push("publish", payload), `publish on ${channel.topic}`);
}

/** Resolves with the payload of the next `event` on `channel` that satisfies `pred`. */
function nextEvent(channel, event, pred = () => true) {
  let ref;
  const got = new Promise((r) => {
    ref = channel.on(event, (payload) => {
      if (pred(payload)) r(payload);
    });
  });
  return withTimeout(got, `${event} on ${channel.topic}`).finally(() => channel.off(event, ref));
}

/** A Presence over `channel` (create it before joining) and a way to wait for a state. */
function trackPresence(channel) {
  const presence = new Presence(channel);
  const waiters = new Set();
  const names = () => presence.list((name) => name).sort();
  presence.onSync(() => {
    for (const w of waiters) w();
  });
  const until = (pred, what) => {
    let waiter;
    const done = new Promise((r) => {
      waiter = () => {
        if (pred(names())) r(names());
      };
      waiters.add(waiter);
      waiter();
    });
    return withTimeout(done, `presence: ${what}`).finally(() => waiters.delete(waiter));
  };
  return { presence, names, until };
}

const unique = (prefix) => `${prefix}-${randomBytes(4).toString("hex")}`;

/** The binary envelope: u32 BE header length, header JSON, attachment bytes. */
function encodeEnvelope(header, attachments) {
  const json = Buffer.from(
    JSON.stringify({ ...header, attachment_sizes: attachments.map((a) => a.length) }),
  );
  const out = new Uint8Array(4 + json.length + attachments.reduce((n, a) => n + a.length, 0));
  new DataView(out.buffer).setUint32(0, json.length, false);
  out.set(json, 4);
  let pos = 4 + json.length;
  for (const a of attachments) {
    out.set(a, pos);
    pos += a.length;
  }
  return out.buffer;
}

function decodeEnvelope(buffer) {
  assert.ok(buffer instanceof ArrayBuffer, "a binary payload arrives as an ArrayBuffer");
  const view = new DataView(buffer);
  const headerLength = view.getUint32(0, false);
  const header = JSON.parse(Buffer.from(buffer, 4, headerLength).toString("utf8"));
  let pos = 4 + headerLength;
  const attachments = header.attachment_sizes.map((size) => {
    const bytes = new Uint8Array(buffer.slice(pos, pos + size));
    pos += size;
    return bytes;
  });
  assert.equal(pos, buffer.byteLength, "no bytes after the attachments");
  return { header, attachments };
}

// ---------------------------------------------------------------------------------------------
// Cases

test("(a) join with agent_name, publish, get {offset, id}", { timeout: TEST_MS }, async (t) => {
  const socket = await connect(t);
  const name = unique("room");
  const channel = socket.channel(`channel:${name}`, { agent_name: "alice" });

  const joined = await join(channel);
  assert.equal(joined.channel, name);
  assert.equal(joined.agent_name, "alice");
  assert.equal(joined.scope, "private");
  assert.equal(joined.head, 0);
  assert.equal(joined.persistent, true);
  assert.equal(typeof joined.session_id, "string");
  assert.equal(typeof joined.epoch, "string");
  assert.equal(joined.gap, undefined);

  const ack = await publish(channel, { type: "chat", data: { text: "hello" } });
  assert.equal(ack.offset, 1);
  assert.equal(typeof ack.id, "string");
  assert.ok(ack.id.length > 0);
  assert.equal(ack.duplicate, undefined);

  const second = await publish(channel, { type: "chat", data: { text: "again" } });
  assert.equal(second.offset, 2);
  assert.notEqual(second.id, ack.id);
});

test("(b) another agent receives the broadcast as a message event", { timeout: TEST_MS }, async (t) => {
  const name = unique("room");
  const alice = (await connect(t)).channel(`channel:${name}`, { agent_name: "alice" });
  const bob = (await connect(t)).channel(`channel:${name}`, { agent_name: "bob" });
  await join(alice);
  await join(bob);

  const received = nextEvent(bob, "message", (m) => m.type === "chat");
  const echoed = nextEvent(alice, "message", (m) => m.type === "chat");
  const data = { text: "hi bob", n: 7, nested: { ok: true, list: [1, "two", null] } };
  const ack = await publish(alice, { type: "chat", data });
  const message = await received;

  assert.deepEqual(Object.keys(message).sort(), ["channel", "data", "from", "id", "offset", "ts", "type"]);
  assert.equal(message.id, ack.id);
  assert.equal(message.offset, ack.offset);
  assert.equal(message.channel, name);
  assert.equal(message.from, "alice");
  assert.equal(message.type, "chat");
  assert.deepEqual(message.data, data);
  assert.ok(Number.isInteger(message.ts) && Math.abs(Date.now() - message.ts) < 60000, "ts is ms now");
  assert.equal(message.to, undefined, "a broadcast has no `to`");
  assert.equal(message.ephemeral, undefined, "a persisted message is not marked ephemeral");

  // echo defaults to true: the sender gets its own message back.
  assert.deepEqual(await echoed, message);
});

test("(c) Presence lists both agents; one leaves and disappears", { timeout: TEST_MS }, async (t) => {
  const name = unique("room");
  const alice = (await connect(t)).channel(`channel:${name}`, { agent_name: "alice" });
  const bob = (await connect(t)).channel(`channel:${name}`, { agent_name: "bob", meta: { role: "bot" } });
  const seenByAlice = trackPresence(alice);
  const seenByBob = trackPresence(bob);

  await join(alice);
  assert.deepEqual(await seenByAlice.until((n) => n.length === 1, "alice sees herself"), ["alice"]);
  await join(bob);
  const both = ["alice", "bob"];
  assert.deepEqual(await seenByAlice.until((n) => n.length === 2, "alice sees bob join"), both);
  assert.deepEqual(await seenByBob.until((n) => n.length === 2, "bob sees both"), both);

  // The metas carry the documented fields.
  const [bobEntry] = seenByAlice.presence.list((key, { metas }) => (key === "bob" ? metas : null)).filter(Boolean);
  assert.equal(bobEntry.length, 1);
  assert.equal(bobEntry[0].agent_name, "bob");
  assert.equal(typeof bobEntry[0].phx_ref, "string");
  assert.ok(Number.isInteger(bobEntry[0].joined_at));
  assert.deepEqual(bobEntry[0].meta, { role: "bot" });

  await reply(bob.leave(), "bob leaves");
  assert.deepEqual(await seenByAlice.until((n) => n.length === 1, "bob disappears"), ["alice"]);
});

test("(d) binary publish: envelope in, binary message out", { timeout: TEST_MS }, async (t) => {
  const name = unique("files");
  const alice = (await connect(t)).channel(`channel:${name}`, { agent_name: "alice" });
  const bob = (await connect(t)).channel(`channel:${name}`, { agent_name: "bob" });
  await join(alice);
  await join(bob);

  const every = Uint8Array.from({ length: 256 }, (_, i) => i); // every byte value
  const random = new Uint8Array(randomBytes(1000));
  const empty = new Uint8Array(0);
  const attachments = [every, empty, random];
  const data = { name: "blob.bin", size: 1256 };

  const received = nextEvent(bob, "message");
  const ack = await publish(alice, encodeEnvelope({ type: "file", data }, attachments));
  assert.equal(ack.offset, 1);
  assert.equal(typeof ack.id, "string");

  const { header, attachments: got } = decodeEnvelope(await received);
  assert.equal(header.id, ack.id);
  assert.equal(header.offset, ack.offset);
  assert.equal(header.channel, name);
  assert.equal(header.from, "alice");
  assert.equal(header.type, "file");
  assert.deepEqual(header.data, data);
  assert.ok(Number.isInteger(header.ts));
  assert.deepEqual(header.attachment_sizes, [256, 0, 1000]);
  assert.equal(header.attachments, undefined, "the header carries sizes, not the bytes");
  assert.equal(got.length, 3);
  got.forEach((bytes, i) => assert.deepEqual(bytes, attachments[i], `attachment ${i}`));

  // The same message over HTTP history carries the attachments as base64.
  const res = await fetch(`${server.httpUrl}/v1/channels/${name}/messages`, {
    headers: { authorization: `Bearer ${server.apiKey}` },
  });
  assert.equal(res.status, 200);
  const page = await res.json();
  assert.equal(page.messages.length, 1);
  assert.deepEqual(
    page.messages[0].attachments,
    attachments.map((a) => Buffer.from(a).toString("base64")),
  );
});

test("(e) a wrong api_key gets the phoenix error event, then close 4500", { timeout: TEST_MS }, async (t) => {
  const socket = newSocket(t, { api_key: "sk_000000000000_" + "0".repeat(64) });
  const errorEvent = withTimeout(
    new Promise((r) =>
      socket.onMessage((msg) => {
        if (msg.topic === "phoenix" && msg.event === "error") r(msg);
      }),
    ),
    "phoenix error event",
  );
  const closed = withTimeout(
    new Promise((r) =>
      socket.onClose((event) => {
        socket.disconnect(); // phoenix would reconnect; 4500 means do not
        r(event);
      }),
    ),
    "socket close",
  );
  socket.connect();

  const msg = await errorEvent;
  assert.equal(msg.join_ref, null);
  assert.equal(msg.ref, null);
  assert.equal(msg.payload.code, "invalid_key");
  assert.equal(typeof msg.payload.message, "string");
  const close = await closed;
  assert.equal(close.code, 4500);
});

test("(f) a wrong channel password gets a join error bad_password", { timeout: TEST_MS }, async (t) => {
  const name = unique("secret");
  const owner = (await connect(t)).channel(`channel:${name}`, { agent_name: "alice", password: "right horse" });
  await join(owner); // creates the channel with this password

  const socket = await connect(t);
  for (const [agent_name, password] of [["bob", "wrong"], ["carol", undefined]]) {
    const params = password === undefined ? { agent_name } : { agent_name, password };
    const intruder = socket.channel(`channel:${name}`, params);
    const error = await join(intruder).then(
      (ok) => assert.fail(`join succeeded: ${JSON.stringify(ok)}`),
      (e) => e.response,
    );
    intruder.leave(); // stop phoenix's automatic rejoin
    assert.ok(error, "an error reply, not a timeout");
    assert.equal(error.code, "bad_password");
    assert.equal(typeof error.message, "string");
  }

  // The right password still works.
  const friend = socket.channel(`channel:${name}`, { agent_name: "dave", password: "right horse" });
  const joined = await join(friend);
  assert.equal(joined.agent_name, "dave");
});
