// The SDK against a scripted server that speaks the wire protocol and misbehaves on cue, for the
// cases a real server cannot be made to produce on demand: a connection that drops between a
// publish and its reply, a replay that overlaps what was delivered, silent heartbeats, close codes.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket, { WebSocketServer } from "ws";
import { AgentConnection, SwitchboardError } from "../dist/index.js";
import { withTimeout, nextEvent, collect } from "./harness.mjs";

const KEY = "sk_test_key";

/**
 * A scripted server: `onFrame(conn, frame)` sees every client frame as
 * `{joinRef, ref, topic, event, payload}` with `conn = {index, send(frame), reply(frame, status,
 * response), close(code, reason), terminate()}`. Answers heartbeats and auth by itself unless
 * `onFrame` returns true.
 */
async function scripted(t, onFrame) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const frames = [];
  let connections = 0;
  wss.on("connection", (socket) => {
    const conn = {
      index: connections++,
      send: (f) => socket.send(JSON.stringify(f)),
      reply: (f, status, response) => socket.send(JSON.stringify([f.joinRef, f.ref, f.topic, "phx_reply", { status, response }])),
      close: (code, reason = "") => socket.close(code, reason),
      terminate: () => socket.terminate(),
    };
    socket.on("message", (data, isBinary) => {
      assert.equal(isBinary, false, "these scripts use JSON publishes only");
      const [joinRef, ref, topic, event, payload] = JSON.parse(data.toString());
      const frame = { conn: conn.index, joinRef, ref, topic, event, payload };
      frames.push(frame);
      if (onFrame(conn, frame)) return;
      if (event === "heartbeat") conn.reply(frame, "ok", {});
      else if (event === "auth") conn.reply(frame, "ok", { tenant: "t" });
    });
  });
  t.after(
    () =>
      new Promise((r) => {
        for (const client of wss.clients) client.terminate();
        wss.close(r);
      }),
  );
  return { url: `ws://127.0.0.1:${wss.address().port}`, frames, connections: () => connections };
}

const joinReply = (head, extra = {}) => ({
  channel: "room",
  scope: "private",
  agent_name: "alice",
  session_id: "session-1",
  epoch: "epoch-1",
  head,
  persistent: true,
  ...extra,
});

const message = (offset, extra = {}) => [null, null, "channel:room", "message", {
  id: `m${offset}`, offset, channel: "room", from: "bob", type: "chat", data: offset, ts: 1, ...extra,
}];

function connectOptions(url, extra = {}) {
  return { url, apiKey: KEY, WebSocket, channelName: "room", agentName: "alice", backoff: { initialMs: 1, maxMs: 20 }, ...extra };
}

test("a publish in flight when the socket drops is re-sent under the same id; the replay's overlap is dropped", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join" && conn.index === 0) {
      conn.reply(f, "ok", joinReply(2));
      conn.send(message(3));
      return true;
    }
    if (f.event === "phx_join" && conn.index === 1) {
      conn.reply(f, "ok", joinReply(5));
      // The replay overlaps what was delivered before the drop (3), then continues.
      for (const offset of [3, 4, 5]) conn.send(message(offset, { id: `m${offset}` }));
      return true;
    }
    if (f.event === "publish" && conn.index === 0) {
      conn.terminate(); // the publish may or may not be stored: no reply
      return true;
    }
    if (f.event === "publish" && conn.index === 1) {
      conn.reply(f, "ok", { id: f.payload.id, offset: 4, duplicate: true });
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const got = collect(alice);
  await alice.connect(connectOptions(server.url, { since: 2 }));
  await got.until((ms) => ms.length === 1, "message 3");
  const ack = await withTimeout(alice.send({ type: "chat", data: "x" }), "the re-sent publish");
  assert.deepEqual(ack, { id: ack.id, offset: 4, duplicate: true });
  await got.until((ms) => ms.length === 3, "messages 4 and 5");
  assert.deepEqual(got.messages.map((m) => m.offset), [3, 4, 5]);

  const publishes = server.frames.filter((f) => f.event === "publish");
  assert.equal(publishes.length, 2);
  assert.equal(publishes[0].payload.id, publishes[1].payload.id, "the same id both times");
  const joins = server.frames.filter((f) => f.event === "phx_join");
  assert.equal(joins[0].payload.since, 2);
  assert.equal(joins[0].payload.session_id, undefined);
  assert.deepEqual(
    [joins[1].payload.since, joins[1].payload.epoch, joins[1].payload.session_id],
    [3, "epoch-1", "session-1"],
    "the rejoin resumes after the last delivered offset and takes the session back",
  );
  // Authentication goes in the auth event, never in the URL.
  assert.deepEqual(server.frames.filter((f) => f.event === "auth").map((f) => f.payload), [{ api_key: KEY }, { api_key: KEY }]);
});

test("an ephemeral publish in flight when the socket drops fails with `disconnected`", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    if (f.event === "publish") {
      conn.terminate();
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  await alice.connect(connectOptions(server.url));
  const e = await alice.send({ type: "cursor", ephemeral: true }).then(
    () => assert.fail("resolved"),
    (err) => err,
  );
  assert.ok(e instanceof SwitchboardError);
  assert.equal(e.code, "disconnected");
  await nextEvent(alice, "connect", (c) => c.reconnected, "reconnects anyway");
  assert.equal(server.frames.filter((f) => f.event === "publish").length, 1, "never re-sent");
});

test("a server that stops answering heartbeats is left, and the agent reconnects", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    return f.event === "heartbeat" && conn.index === 0; // the first server goes silent
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const down = nextEvent(alice, "disconnect", () => true, "the silent socket is given up");
  const back = nextEvent(alice, "connect", (c) => c.reconnected, "a new socket");
  await alice.connect(connectOptions(server.url, { heartbeatIntervalMs: 20 }));
  const info = await down;
  assert.equal(info.willReconnect, true);
  assert.match(info.reason, /heartbeat/);
  await back;
  assert.equal(server.connections(), 2);
});

test("close codes: 4000 reconnects, 4502 does not", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      if (conn.index === 0) setImmediate(() => conn.close(4000, "slow_consumer"));
      return true;
    }
    if (f.event === "publish") {
      conn.send([null, null, "phoenix", "error", { code: "frame_too_large", message: "frame exceeds max_frame_bytes" }]);
      conn.close(4502, "frame_too_large");
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const slow = nextEvent(alice, "disconnect", () => true, "closed with 4000");
  const back = nextEvent(alice, "connect", (c) => c.reconnected, "reconnected after 4000");
  await alice.connect(connectOptions(server.url));
  const first = await slow;
  assert.deepEqual([first.code, first.willReconnect, first.error.code], [4000, true, "slow_consumer"]);
  await back;

  const fatal = nextEvent(alice, "disconnect", () => true, "closed with 4502");
  const failed = alice.send({ type: "big", data: "…" });
  const info = await fatal;
  assert.deepEqual([info.code, info.willReconnect, info.error.code], [4502, false, "frame_too_large"]);
  assert.equal((await failed.then(() => null, (e) => e)).code, "frame_too_large");
  assert.equal(server.connections(), 2, "no reconnect after 4502");
});

test("a rejoin that reports a gap moves the resume point and tells the application", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event !== "phx_join") return false;
    if (conn.index === 0) {
      conn.reply(f, "ok", joinReply(10));
      conn.send(message(11));
      setImmediate(() => conn.terminate());
    } else {
      // The history was reset while the agent was away: a new epoch, offsets from 1.
      conn.reply(f, "ok", joinReply(2, { epoch: "epoch-2", gap: { reason: "epoch_changed", first_available: 1 } }));
      conn.send(message(1));
      conn.send(message(2));
    }
    return true;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const got = collect(alice);
  const gap = nextEvent(alice, "gap", () => true, "the gap event");
  await alice.connect(connectOptions(server.url));
  assert.deepEqual(await gap, { reason: "epoch_changed", first_available: 1 });
  await got.until((ms) => ms.length === 3, "11, then 1 and 2 of the new epoch");
  assert.deepEqual(got.messages.map((m) => m.offset), [11, 1, 2]);
  assert.equal(alice.joinReply.epoch, "epoch-2");
  assert.equal(alice.lastOffset, 2);
});

test("a refused rejoin ends the connection with the server's code", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event !== "phx_join") return false;
    if (conn.index === 0) {
      conn.reply(f, "ok", joinReply(0));
      setImmediate(() => conn.terminate());
    } else {
      conn.reply(f, "error", { code: "bad_password", message: "the password changed" });
    }
    return true;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const errors = [];
  alice.onError((e) => errors.push(e.code));
  const ended = nextEvent(alice, "disconnect", (d) => !d.willReconnect, "the connection ends");
  await alice.connect(connectOptions(server.url));
  assert.equal((await ended).error.code, "bad_password");
  assert.deepEqual(errors, ["bad_password"]);
});

test("keyRefreshIntervalMs re-authenticates the live socket with fresh keys", async (t) => {
  let sawSecondKey;
  const secondKey = new Promise((r) => (sawSecondKey = r));
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    if (f.event === "auth" && f.payload.api_key === "key-2") sawSecondKey(conn.index);
    return false;
  });
  let calls = 0;
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  await alice.connect(connectOptions(server.url, {
    keyRefreshIntervalMs: 10,
    refreshApiKey: () => `key-${++calls}`,
  }));
  assert.equal(await withTimeout(secondKey, "the second refreshed key"), 0, "on the same socket");
  assert.equal(server.connections(), 1);
  const keys = server.frames.filter((f) => f.event === "auth").map((f) => f.payload.api_key);
  assert.deepEqual(keys.slice(0, 3), [KEY, "key-1", "key-2"]);
});

test("a signal in flight when the socket drops fails with `disconnected` and is not re-sent; the rejoin keeps the relay", async (t) => {
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    if (f.event === "signal" && conn.index === 0) {
      conn.terminate();
      return true;
    }
    if (f.event === "signal") {
      conn.reply(f, "ok", {});
      conn.send([f.joinRef, null, "channel:room", "signal", { from: "bob", kind: "answer", data: { sdp: "a" } }]);
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  await alice.connect(connectOptions(server.url, { enableWebrtcRelay: true }));
  const dropped = await alice.signal({ to: "bob", kind: "offer", data: { sdp: "o" } }).catch((e) => e);
  assert.ok(dropped instanceof SwitchboardError);
  assert.equal(dropped.code, "disconnected");

  await nextEvent(alice, "connect", (c) => c.reconnected, "the rejoin");
  const answer = nextEvent(alice, "signal", () => true, "bob's answer");
  await withTimeout(alice.signal({ to: "bob", kind: "offer", data: { sdp: "o2" } }), "the second signal");
  assert.deepEqual(await answer, { from: "bob", kind: "answer", data: { sdp: "a" } });

  const signals = server.frames.filter((f) => f.event === "signal");
  assert.deepEqual(signals.map((f) => [f.conn, f.payload.data.sdp]), [[0, "o"], [1, "o2"]], "the dropped signal was not re-sent");
  const joins = server.frames.filter((f) => f.event === "phx_join");
  assert.deepEqual(joins.map((f) => f.payload.enable_webrtc_relay), [true, true]);
});

test("storage: a write in flight when the socket drops fails with `disconnected` and is not re-sent; a read is re-sent; kv_events rejoins", async (t) => {
  const entry = (key, version) => ({ key, value: version, version, updated_at: 1, updated_by: "alice" });
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    if (f.event === "kv_put" && conn.index === 0) {
      // Both requests are in flight when the socket dies: the put may have been applied.
      setTimeout(() => conn.terminate(), 20);
      return true;
    }
    if (f.event === "kv_get" && conn.index === 0) return true; // no reply before the drop
    if (f.event === "kv_get") {
      conn.reply(f, "ok", entry(f.payload.key, 1));
      return true;
    }
    if (f.event === "kv_put") {
      conn.reply(f, "ok", entry(f.payload.key, 2));
      conn.send([f.joinRef, null, "channel:room", "kv_change", { key: f.payload.key, version: 2, value: 2, updated_by: "alice", op: "put" }]);
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  await alice.connect(connectOptions(server.url, { storageEvents: true }));
  const write = alice.storage.put("k", 1, { version: 1 }).catch((e) => e);
  const read = alice.storage.get("k");
  const dropped = await withTimeout(write, "the write's failure");
  assert.ok(dropped instanceof SwitchboardError);
  assert.equal(dropped.code, "disconnected");
  const got = await withTimeout(read, "the re-sent read");
  assert.deepEqual(got, { key: "k", value: 1, version: 1, updatedAt: 1, updatedBy: "alice" });

  const change = nextEvent(alice, "storage", () => true, "the change");
  assert.equal((await alice.storage.put("k", 2, { version: 1 })).version, 2);
  assert.deepEqual(await change, { key: "k", op: "put", version: 2, value: 2, updatedBy: "alice" });

  const puts = server.frames.filter((f) => f.event === "kv_put");
  assert.deepEqual(puts.map((f) => [f.conn, f.payload.value]), [[0, 1], [1, 2]], "the dropped write was not re-sent");
  const gets = server.frames.filter((f) => f.event === "kv_get");
  assert.deepEqual(gets.map((f) => f.conn), [0, 1], "the read was sent again");
  const joins = server.frames.filter((f) => f.event === "phx_join");
  assert.deepEqual(joins.map((f) => f.payload.kv_events), [true, true]);
});

test("inbox: redeliveries of one offset all arrive; an ack in flight when the socket drops is re-sent, a reject fails with `disconnected`; inbox rejoins", async (t) => {
  const delivery = (joinRef, deliveryCount) => [joinRef, null, "channel:room", "new_message", {
    delivery_count: deliveryCount,
    message: { id: "m1", offset: 1, channel: "room", from: "bob", to: "alice", type: "task", data: "x", ts: 1 },
  }];
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join" && conn.index === 0) {
      conn.reply(f, "ok", joinReply(1));
      // The first delivery and a redelivery after the visibility timeout: the same offset.
      conn.send(delivery(f.joinRef, 1));
      conn.send(delivery(f.joinRef, 2));
      return true;
    }
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(1));
      conn.send([f.joinRef, null, "channel:room", "new_message", { message: { id: "m2" } }]); // unreadable
      conn.send(delivery(f.joinRef, 3));
      return true;
    }
    if (f.event === "reject" && conn.index === 0) return true; // no reply before the drop
    if (f.event === "ack" && conn.index === 0) {
      conn.terminate(); // the reject and the ack are both in flight
      return true;
    }
    if (f.event === "ack") {
      conn.reply(f, "ok", {});
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  const deliveries = [];
  alice.onInboxMessage((d) => deliveries.push(d));
  const third = nextEvent(alice, "inbox", (d) => d.deliveryCount === 3, "the delivery after the rejoin");
  const unreadable = nextEvent(alice, "error", (e) => e.code === "malformed_frame", "the unreadable new_message");
  await alice.connect(connectOptions(server.url, { inbox: true }));

  const rejected = alice.reject("m1", { reason: "busy" }).catch((e) => e);
  const acked = alice.ack("m1");
  const dropped = await withTimeout(rejected, "the reject's failure");
  assert.ok(dropped instanceof SwitchboardError);
  assert.equal(dropped.code, "disconnected");
  assert.equal(await withTimeout(acked, "the re-sent ack"), undefined);
  await third;
  await unreadable;
  assert.deepEqual(deliveries.map((d) => [d.message.id, d.deliveryCount]), [["m1", 1], ["m1", 2], ["m1", 3]]);

  assert.deepEqual(server.frames.filter((f) => f.event === "ack").map((f) => [f.conn, f.payload]), [[0, { id: "m1" }], [1, { id: "m1" }]]);
  assert.deepEqual(server.frames.filter((f) => f.event === "reject").map((f) => [f.conn, f.payload]), [[0, { id: "m1", reason: "busy" }]]);
  assert.deepEqual(server.frames.filter((f) => f.event === "phx_join").map((f) => f.payload.inbox), [true, true]);
});

test("streams: a new stream's open in flight when the socket drops fails with `disconnected` and is not re-sent; a resume's open is re-sent", async (t) => {
  let resumes = 0;
  const server = await scripted(t, (conn, f) => {
    if (f.event === "phx_join") {
      conn.reply(f, "ok", joinReply(0));
      return true;
    }
    if (f.event === "stream_open" && f.payload.stream_id === undefined) {
      conn.terminate(); // it may or may not have opened a stream
      return true;
    }
    if (f.event === "stream_open") {
      resumes += 1;
      if (resumes === 1) conn.terminate();
      else conn.reply(f, "error", { code: "not_found", message: "no stream \"st_1\" of yours in this channel" });
      return true;
    }
    return false;
  });
  const alice = new AgentConnection();
  t.after(() => alice.disconnect());
  await alice.connect(connectOptions(server.url));
  await assert.rejects(withTimeout(alice.sendStream("bob", new Uint8Array(10)), "the open fails"), (e) => e instanceof SwitchboardError && e.code === "disconnected");
  await assert.rejects(withTimeout(alice.resumeStream("st_1", new Uint8Array(10)), "the re-sent resume is answered"), (e) => e instanceof SwitchboardError && e.code === "not_found");
  assert.deepEqual(
    server.frames.filter((f) => f.event === "stream_open").map((f) => [f.conn, f.payload]),
    [[0, { to: "bob", size: 10 }], [1, { to: "", stream_id: "st_1" }], [2, { to: "", stream_id: "st_1" }]],
  );
});
