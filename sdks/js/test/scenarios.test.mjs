// Runs the language-neutral scenarios of spec/scenarios/ (format: spec/scenarios/README.md) with
// this SDK against the real server, one fresh server per scenario.
//
// Mapping. A scenario `client` is one connection that may join several channels; this SDK's
// unit is one `AgentConnection` per channel, each with its own socket. So a client here is the
// set of its AgentConnections, all reaching the server through the client's own TCP proxy (for
// `drop_connection`), and a second join of the same channel by one client is refused locally
// with `already_joined`, as the Rust SDK refuses it. Steps about several channels on one socket
// cannot apply to this SDK and are listed in NOT_APPLICABLE with the reason.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, existsSync } from "node:fs";
import net from "node:net";
import WebSocket from "ws";
import { AgentConnection, SwitchboardError } from "../dist/index.js";
import { startServer, withTimeout } from "./harness.mjs";

const DIR = new URL("../../../spec/scenarios/", import.meta.url);

/** Steps this SDK cannot take part in, by scenario name and step index, with the reason. */
const NOT_APPLICABLE = {
  "errors-publish": {
    7: "max_channels_per_connection counts channels on one socket; an AgentConnection holds one channel per socket",
  },
};

const files = existsSync(DIR) ? readdirSync(DIR).filter((f) => f.endsWith(".json")).sort() : [];

test("the scenario suite is there", () => {
  assert.ok(files.length > 0, `no scenarios in ${DIR.pathname}`);
});

for (const file of files) {
  const scenario = JSON.parse(readFileSync(new URL(file, DIR), "utf8"));
  test(`scenario ${scenario.name}`, async (t) => {
    const run = new Run(scenario);
    t.after(() => run.close());
    await run.start();
    const skips = NOT_APPLICABLE[scenario.name] ?? {};
    for (const [index, step] of scenario.steps.entries()) {
      if (skips[index]) {
        t.diagnostic(`step ${index} (${step.op}) not applicable: ${skips[index]}`);
        continue;
      }
      try {
        await run.step(step);
      } catch (e) {
        e.message = `step ${index} ${JSON.stringify(step).slice(0, 300)}: ${e.message}`;
        throw e;
      }
    }
  });
}

/** `SWITCHBOARD_<SECTION>_<KEY>` variables from a scenario's `server` overrides. */
function serverEnv(overrides = {}) {
  const env = {};
  for (const [section, values] of Object.entries(overrides)) {
    for (const [key, value] of Object.entries(values)) env[`SWITCHBOARD_${section}_${key}`.toUpperCase()] = String(value);
  }
  return env;
}

/** A TCP proxy in front of the server that can cut its connections and refuse new ones. */
class Proxy {
  constructor(target) {
    this.target = target;
    this.refusing = false;
    this.sockets = new Set();
    this.server = net.createServer((client) => {
      if (this.refusing) return client.destroy();
      const upstream = net.connect(this.target.port, "127.0.0.1");
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
  async listen() {
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }
  drop() {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }
  restore() {
    this.refusing = false;
  }
  close() {
    this.drop();
    return new Promise((r) => this.server.close(r));
  }
}

/** One agent: an AgentConnection with what it received set aside for the steps. */
class Agent {
  constructor() {
    this.connection = new AgentConnection();
    this.inbox = [];
    this.reconnects = 0;
    this.seenReconnects = 0;
    this.ended = undefined;
    this.wake = () => {};
    this.connection.onMessage((m) => {
      this.inbox.push(m);
      this.wake();
    });
    this.connection.onConnect(({ reconnected }) => {
      if (reconnected) this.reconnects += 1;
      this.wake();
    });
    this.connection.onPresence(() => this.wake());
    this.connection.onDisconnect((info) => {
      if (!info.willReconnect) this.ended = info;
      this.wake();
    });
  }
  /** Resolves once `pred()` holds, re-checking after every event. */
  until(pred, what) {
    return withTimeout(
      new Promise((resolve) => {
        const check = () => {
          const value = pred();
          if (value !== undefined && value !== false) {
            this.wake = () => {};
            resolve(value);
          }
        };
        this.wake = check;
        check();
      }),
      what,
    );
  }
}

class Run {
  constructor(scenario) {
    this.scenario = scenario;
    this.clients = new Map(); // name → {apiKey, proxy, agents: Map(channel → Agent), refused?}
  }

  async start() {
    this.server = await startServer({ env: serverEnv(this.scenario.server) });
  }

  async close() {
    for (const client of this.clients.values()) {
      for (const agent of client.agents.values()) await agent.connection.disconnect();
      await client.proxy.close();
    }
    await this.server?.close();
  }

  client(name) {
    const client = this.clients.get(name);
    assert.ok(client, `client ${name} was not connected`);
    return client;
  }

  agent(step) {
    const agent = this.client(step.client).agents.get(step.channel);
    assert.ok(agent, `client ${step.client} never joined ${step.channel}`);
    return agent;
  }

  async step(step) {
    const handler = this[`op_${step.op}`];
    assert.ok(handler, `unknown op ${step.op}`);
    let result;
    try {
      result = await handler.call(this, step);
    } catch (e) {
      if (step.error !== undefined && e instanceof SwitchboardError) {
        assert.equal(e.code, step.error, e.message);
        return;
      }
      throw e;
    }
    assert.equal(step.error, undefined, `expected error ${step.error}, got ${JSON.stringify(result)}`);
    if (step.expect !== undefined && !["presence"].includes(step.op)) assertMatch(result, step.expect);
  }

  async op_connect(step) {
    const proxy = new Proxy(this.server);
    await proxy.listen();
    const client = { apiKey: step.api_key ?? this.server.apiKey, proxy, agents: new Map() };
    this.clients.set(step.client, client);
    if (step.error !== undefined) {
      // The key is checked when an AgentConnection connects: show the refusal with a probe join.
      await this.op_join({ client: step.client, channel: "probe", params: { agent_name: "probe" } });
    }
  }

  async op_join(step) {
    const client = this.client(step.client);
    if (client.agents.has(step.channel)) {
      throw new SwitchboardError("already_joined", "this client already joined the channel");
    }
    const p = step.params;
    const options = {
      url: client.proxy.url,
      apiKey: client.apiKey,
      WebSocket,
      channelName: step.channel,
      agentName: p.agent_name,
      backoff: { initialMs: 20, maxMs: 500 },
    };
    const fields = { password: "channelPassword", scope: "apiKeyScope", since: "since", epoch: "epoch", event_types: "eventTypes", echo: "echo", presence: "presence", meta: "meta", session_id: "sessionId", kv_events: "storageEvents", poll_source: "pollSource" };
    for (const [wire, option] of Object.entries(fields)) if (p[wire] !== undefined) options[option] = p[wire];
    const agent = new Agent();
    const reply = await agent.connection.connect(options);
    client.agents.set(step.channel, agent);
    return {
      channel: reply.channel,
      scope: reply.scope,
      agent_name: reply.agentName,
      session_id: reply.sessionId,
      epoch: reply.epoch,
      head: reply.head,
      persistent: reply.persistent,
      ...(reply.gap && { gap: reply.gap }),
    };
  }

  async op_leave(step) {
    // The handle stays, so later steps show not_joined.
    await this.agent(step).connection.disconnect();
  }

  async op_publish(step) {
    const m = step.message;
    const send = { type: m.type };
    for (const key of ["data", "to", "ephemeral", "id"]) if (m[key] !== undefined) send[key] = m[key];
    if (m.attachments) send.attachments = m.attachments.map((a) => Buffer.from(a, "base64"));
    return this.agent(step).connection.send(send);
  }

  async op_expect_message(step) {
    const agent = this.agent(step);
    const message = await agent.until(() => agent.inbox.length > 0 && agent.inbox.shift(), `a message for ${step.client} on ${step.channel}`);
    assertMatch(wireMessage(message), step.message);
  }

  async op_history(step) {
    const page = await this.agent(step).connection.history(step.query);
    return { ...page, messages: page.messages.map(wireMessage) };
  }

  async op_kv_put(step) {
    const { key, value, version, ttl_secs: ttlSecs } = step.params;
    const options = {};
    if (version !== undefined) options.version = version;
    if (ttlSecs !== undefined) options.ttlSecs = ttlSecs;
    return wireEntry(await this.agent(step).connection.storage.put(key, value ?? null, options));
  }

  async op_kv_get(step) {
    return wireEntry(await this.agent(step).connection.storage.get(step.params.key));
  }

  async op_kv_delete(step) {
    const { key, version } = step.params;
    await this.agent(step).connection.storage.delete(key, version === undefined ? {} : { version });
  }

  async op_kv_list(step) {
    const page = await this.agent(step).connection.storage.list(step.query ?? {});
    return { entries: page.entries.map(wireEntry), ...(page.next !== undefined && { next: page.next }) };
  }

  async op_presence(step) {
    const agents = await this.agent(step).connection.presence();
    assert.deepEqual(agents.map((a) => a.agentName), step.expect.agents);
    for (const [name, meta] of Object.entries(step.expect.meta ?? {})) {
      assertMatch(agents.find((a) => a.agentName === name)?.meta, meta);
    }
  }

  async op_await_presence(step) {
    const agent = this.agent(step);
    const want = JSON.stringify(step.agents);
    await agent.until(() => JSON.stringify(agent.connection.presentAgents.map((a) => a.agentName)) === want, `presence ${want}`);
  }

  async op_drop_connection(step) {
    this.client(step.client).proxy.drop();
  }

  async op_restore_connection(step) {
    this.client(step.client).proxy.restore();
  }

  async op_expect_reconnected(step) {
    const agent = this.agent(step);
    const want = agent.seenReconnects + 1;
    await agent.until(() => agent.reconnects >= want, `${step.client} rejoins ${step.channel}`);
    agent.seenReconnects = want;
  }

  async op_restart_server() {
    await this.server.restart("SIGTERM");
  }

  async op_expect_kicked(step) {
    const agent = this.agent(step);
    const ended = await agent.until(() => agent.ended, `${step.client} is removed from ${step.channel}`);
    assert.equal(ended.error?.code, step.code);
    await assert.rejects(agent.connection.messages().next(), (e) => e.code === step.code, "the message stream has ended");
  }

  async op_close(step) {
    for (const agent of this.client(step.client).agents.values()) await agent.connection.disconnect();
  }

  async op_create_channel(step) {
    return this.http("POST", "/v1/channels", step.body);
  }

  async op_delete_channel(step) {
    return this.http("DELETE", `/v1/channels/${step.channel}`);
  }

  async op_http_publish(step) {
    return this.http("POST", `/v1/channels/${step.channel}/messages`, step.message);
  }

  async op_http_history(step) {
    const query = new URLSearchParams(Object.entries(step.query).map(([k, v]) => [k, String(v)]));
    return this.http("GET", `/v1/channels/${step.channel}/messages?${query}`);
  }

  async http(method, path, body) {
    const headers = { authorization: `Bearer ${this.server.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const res = await fetch(`${this.server.httpUrl}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (!res.ok) throw SwitchboardError.fromReply(json);
    return json;
  }
}

/** A message as the wire shows it: attachments as base64. */
function wireMessage(message) {
  const { attachments, ...rest } = message;
  return attachments ? { ...rest, attachments: attachments.map((a) => Buffer.from(a).toString("base64")) } : rest;
}

/** The README's matching rules: objects by the keys given, null for absent, arrays in order. */
function assertMatch(actual, expected, path = "$") {
  if (expected === null) {
    assert.ok(actual === null || actual === undefined, `${path}: expected absent or null, got ${JSON.stringify(actual)}`);
  } else if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path}: expected an array, got ${JSON.stringify(actual)}`);
    assert.equal(actual.length, expected.length, `${path}: array length`);
    expected.forEach((e, i) => assertMatch(actual[i], e, `${path}[${i}]`));
  } else if (typeof expected === "object") {
    assert.ok(actual !== null && typeof actual === "object", `${path}: expected an object, got ${JSON.stringify(actual)}`);
    for (const [key, value] of Object.entries(expected)) assertMatch(actual[key], value, `${path}.${key}`);
  } else {
    assert.equal(actual, expected, path);
  }
}

/** A storage entry in its wire shape. */
function wireEntry(entry) {
  const wire = { key: entry.key, value: entry.value, version: entry.version, updated_at: entry.updatedAt, updated_by: entry.updatedBy };
  if (entry.expiresAt !== undefined) wire.expires_at = entry.expiresAt;
  return wire;
}
