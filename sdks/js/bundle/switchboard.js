/* Switchboard JavaScript SDK 0.1.0 (sdks/js): window.Switchboard. Built by scripts/bundle.mjs; do not edit. */
"use strict";
var Switchboard = (() => {
  var __defProp = Object.defineProperty;
  var __getOwnPropDesc = Object.getOwnPropertyDescriptor;
  var __getOwnPropNames = Object.getOwnPropertyNames;
  var __hasOwnProp = Object.prototype.hasOwnProperty;
  var __defNormalProp = (obj, key, value) => key in obj ? __defProp(obj, key, { enumerable: true, configurable: true, writable: true, value }) : obj[key] = value;
  var __export = (target, all) => {
    for (var name in all)
      __defProp(target, name, { get: all[name], enumerable: true });
  };
  var __copyProps = (to, from, except, desc) => {
    if (from && typeof from === "object" || typeof from === "function") {
      for (let key of __getOwnPropNames(from))
        if (!__hasOwnProp.call(to, key) && key !== except)
          __defProp(to, key, { get: () => from[key], enumerable: !(desc = __getOwnPropDesc(from, key)) || desc.enumerable });
    }
    return to;
  };
  var __toCommonJS = (mod) => __copyProps(__defProp({}, "__esModule", { value: true }), mod);
  var __publicField = (obj, key, value) => __defNormalProp(obj, typeof key !== "symbol" ? key + "" : key, value);

  // src/browser.ts
  var browser_exports = {};
  __export(browser_exports, {
    AGENT_MESSAGE_TYPE: () => AGENT_MESSAGE_TYPE,
    AgentConnection: () => AgentConnection,
    Call: () => Call,
    ChannelStorage: () => ChannelStorage,
    ClientErrorCodes: () => ClientErrorCodes,
    CloseCodes: () => CloseCodes,
    DISCOVERY_CHANNEL: () => DISCOVERY_CHANNEL,
    ErrorCodes: () => ErrorCodes,
    HttpClient: () => HttpClient,
    SwitchboardError: () => SwitchboardError,
    WebRtcHelper: () => WebRtcHelper,
    backoffBound: () => backoffBound,
    backoffDelay: () => backoffDelay,
    decodeEnvelope: () => decodeEnvelope,
    encodeEnvelope: () => encodeEnvelope,
    httpBaseUrl: () => httpBaseUrl,
    randomId: () => randomId,
    shouldReconnect: () => shouldReconnect,
    socketUrl: () => socketUrl,
    watchAgents: () => watchAgents
  });

  // src/backoff.ts
  function backoffBound(options, attempt) {
    const initial = options.initialMs ?? 100;
    const max = options.maxMs ?? 1e4;
    const factor = Math.max(options.multiplier ?? 2, 1) ** Math.min(Math.max(attempt, 0), 64);
    const bound = initial * factor;
    return Number.isFinite(bound) && bound < max ? bound : max;
  }
  function backoffDelay(options, attempt, unit = Math.random()) {
    return backoffBound(options, attempt) * Math.min(Math.max(unit, 0), 1);
  }

  // src/errors.ts
  var ErrorCodes = [
    "invalid_key",
    "unauthenticated",
    "auth_timeout",
    "forbidden",
    "key_revoked",
    "key_expired",
    "tenant_exists",
    "bad_password",
    "agent_name_taken",
    "invalid_agent_name",
    "invalid_channel_name",
    "invalid_topic",
    "unknown_event",
    "malformed_frame",
    "invalid_payload",
    "frame_too_large",
    "message_too_large",
    "too_many_channels",
    "too_many_connections",
    "not_joined",
    "already_joined",
    "channel_not_found",
    "channel_exists",
    "channel_deleted",
    "channel_completed",
    "not_a_member",
    "agent_not_present",
    "relay_disabled",
    "version_conflict",
    "too_many_keys",
    "inbox_full",
    "checksum_mismatch",
    "no_history",
    "slow_consumer",
    "heartbeat_timeout",
    "session_taken_over",
    "server_shutdown",
    "rate_limited",
    "storage_unavailable",
    "internal",
    "not_found",
    "method_not_allowed"
  ];
  var ClientErrorCodes = [
    /** The socket could not be opened (server down, refused upgrade, bad URL). */
    "connection_failed",
    /** The connection dropped with this request in flight and it cannot be re-sent safely (an
     * ephemeral publish, a signal, a storage write, an inbox reject): it may or may not have taken
     * effect. */
    "disconnected",
    /** No reply within `requestTimeoutMs`. */
    "timeout",
    /** The option or operation needs a server capability that does not exist yet. */
    "unsupported",
    /** The call's arguments are wrong (checked before anything is sent). */
    "invalid_argument",
    /** A WebRTC call ended (hung up, declined, failed, the peer left) before it connected. */
    "call_ended",
    /** A stream was cancelled (by either side, `cancelStream`) while it was being sent or
     * received. */
    "cancelled"
  ];
  var SwitchboardError = class _SwitchboardError extends Error {
    constructor(code, message, options = {}) {
      super(`${code}: ${message}`, options.cause === void 0 ? void 0 : { cause: options.cause });
      /** The stable code: a protocol code from the server, or a {@link ClientErrorCode}. */
      __publicField(this, "code");
      /** When the server set it (`rate_limited`): retry after this many milliseconds. */
      __publicField(this, "retryAfterMs");
      /** The WebSocket close code, when the error ended the socket. */
      __publicField(this, "closeCode");
      this.name = "SwitchboardError";
      this.code = code;
      this.retryAfterMs = options.retryAfterMs;
      this.closeCode = options.closeCode;
    }
    /** Whether the server sent this error (its code is a protocol code). */
    get fromServer() {
      return !ClientErrorCodes.includes(this.code);
    }
    /** An error from a server error reply. */
    static fromReply(reply, closeCode) {
      const options = {};
      if (typeof reply.retry_after_ms === "number") options.retryAfterMs = reply.retry_after_ms;
      if (closeCode !== void 0) options.closeCode = closeCode;
      return new _SwitchboardError(reply.code, reply.message, options);
    }
  };
  function isErrorReply(value) {
    return typeof value === "object" && value !== null && typeof value.code === "string" && typeof value.message === "string";
  }
  var CloseCodes = {
    1001: "server_shutdown",
    4e3: "slow_consumer",
    4001: "heartbeat_timeout",
    4500: "invalid_key",
    4501: "auth_timeout",
    4502: "frame_too_large",
    4503: "key_revoked",
    4504: "key_expired"
  };
  function shouldReconnect(closeCode) {
    return closeCode < 4500;
  }

  // src/frame.ts
  var encoder = new TextEncoder();
  var decoder = new TextDecoder("utf-8", { fatal: true });
  function encodeText(frame) {
    return JSON.stringify([frame.joinRef, frame.ref, frame.topic, frame.event, frame.payload]);
  }
  function encodeBinaryPush(joinRef, ref, topic, event, payload) {
    const parts = [joinRef ?? "", ref ?? "", topic, event].map((s) => encoder.encode(s));
    for (const [i, part] of parts.entries()) {
      if (part.length > 255) {
        throw new RangeError(`${["join_ref", "ref", "topic", "event"][i]} is over 255 bytes`);
      }
    }
    const header = 5 + parts.reduce((n, p) => n + p.length, 0);
    const out = new Uint8Array(header + payload.length);
    out[0] = 0;
    parts.forEach((p, i) => out[1 + i] = p.length);
    let pos = 5;
    for (const p of parts) {
      out.set(p, pos);
      pos += p.length;
    }
    out.set(payload, pos);
    return out;
  }
  function decodeText(text) {
    const value = JSON.parse(text);
    if (!Array.isArray(value) || value.length !== 5) {
      throw new Error("a frame is a JSON array of 5 elements");
    }
    const [joinRef, ref, topic, event, payload] = value;
    if (typeof topic !== "string" || typeof event !== "string") {
      throw new Error("topic and event must be strings");
    }
    return { joinRef: refOf(joinRef), ref: refOf(ref), topic, event, payload };
  }
  function refOf(value) {
    if (value === null || value === void 0) return null;
    return String(value);
  }
  function decodeBinary(bytes) {
    const text = (start, length) => {
      if (start + length > bytes.length) throw new Error("binary frame shorter than its header");
      return decoder.decode(bytes.subarray(start, start + length));
    };
    switch (bytes[0]) {
      case 0: {
        if (bytes.length < 4) throw new Error("binary push shorter than its header");
        const [jr, tp, ev] = [bytes[1], bytes[2], bytes[3]];
        let pos = 4;
        const joinRef = text(pos, jr);
        const topic = text(pos += jr, tp);
        const event = text(pos += tp, ev);
        pos += ev;
        return { joinRef: joinRef || null, ref: null, topic, event, payload: { binary: bytes.slice(pos) } };
      }
      case 1: {
        if (bytes.length < 5) throw new Error("binary reply shorter than its header");
        const [jr, rf, tp, st] = [bytes[1], bytes[2], bytes[3], bytes[4]];
        let pos = 5;
        const joinRef = text(pos, jr);
        const ref = text(pos += jr, rf);
        const topic = text(pos += rf, tp);
        const status = text(pos += tp, st);
        pos += st;
        const body = bytes.subarray(pos);
        const response = body.length === 0 ? {} : JSON.parse(decoder.decode(body));
        return { joinRef: joinRef || null, ref: ref || null, topic, event: "phx_reply", payload: { status, response } };
      }
      case 2: {
        if (bytes.length < 3) throw new Error("binary broadcast shorter than its header");
        const [tp, ev] = [bytes[1], bytes[2]];
        let pos = 3;
        const topic = text(pos, tp);
        const event = text(pos += tp, ev);
        pos += ev;
        return { joinRef: null, ref: null, topic, event, payload: { binary: bytes.slice(pos) } };
      }
      default:
        throw new Error(`unknown binary frame kind ${bytes[0]}`);
    }
  }
  function isBinaryPayload(payload) {
    return typeof payload === "object" && payload !== null && payload.binary instanceof Uint8Array;
  }
  function encodeEnvelope(header, attachments) {
    const json = encoder.encode(JSON.stringify({ ...header, attachment_sizes: attachments.map((a) => a.length) }));
    const total = 4 + json.length + attachments.reduce((n, a) => n + a.length, 0);
    const out = new Uint8Array(total);
    new DataView(out.buffer).setUint32(0, json.length, false);
    out.set(json, 4);
    let pos = 4 + json.length;
    for (const a of attachments) {
      out.set(a, pos);
      pos += a.length;
    }
    return out;
  }
  function decodeEnvelope(bytes) {
    if (bytes.length < 4) throw new Error("envelope shorter than its length prefix");
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const headerLength = view.getUint32(0, false);
    if (4 + headerLength > bytes.length) throw new Error("envelope header runs past the frame");
    const header = JSON.parse(decoder.decode(bytes.subarray(4, 4 + headerLength)));
    const sizes = header.attachment_sizes;
    if (!Array.isArray(sizes) || !sizes.every((n) => Number.isInteger(n) && n >= 0)) {
      throw new Error("envelope header lacks attachment_sizes");
    }
    let pos = 4 + headerLength;
    const attachments = sizes.map((size) => {
      if (pos + size > bytes.length) throw new Error("attachment runs past the frame");
      const a = bytes.slice(pos, pos + size);
      pos += size;
      return a;
    });
    if (pos !== bytes.length) throw new Error("bytes after the last attachment");
    delete header.attachment_sizes;
    return { header, attachments };
  }
  function fromBase64(text) {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
    return out;
  }
  function readJsonMessage(raw) {
    const m = raw;
    if (typeof m !== "object" || m === null || typeof m.id !== "string" || typeof m.type !== "string") {
      throw new Error("a message needs id and type");
    }
    const { attachments, ...rest } = m;
    const message = { ...rest, data: m.data ?? null };
    if (Array.isArray(attachments)) message.attachments = attachments.map((a) => fromBase64(a));
    return message;
  }
  function readBinaryMessage(bytes) {
    const { header, attachments } = decodeEnvelope(bytes);
    const message = readJsonMessage(header);
    message.attachments = attachments;
    return message;
  }
  function encodeStreamEnvelope(header, bytes) {
    const json = encoder.encode(JSON.stringify(header));
    const out = new Uint8Array(4 + json.length + bytes.length);
    new DataView(out.buffer).setUint32(0, json.length, false);
    out.set(json, 4);
    out.set(bytes, 4 + json.length);
    return out;
  }
  function decodeStreamEnvelope(envelope) {
    if (envelope.length < 4) throw new Error("envelope shorter than its length prefix");
    const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
    const headerLength = view.getUint32(0, false);
    if (4 + headerLength > envelope.length) throw new Error("envelope header runs past the frame");
    const header = JSON.parse(decoder.decode(envelope.subarray(4, 4 + headerLength)));
    if (typeof header !== "object" || header === null || Array.isArray(header)) throw new Error("envelope header is not an object");
    return { header, bytes: envelope.subarray(4 + headerLength) };
  }

  // src/discovery.ts
  var DISCOVERY_CHANNEL = "sys.discovery";
  var AGENT_MESSAGE_TYPE = "agent";
  var DISCOVERY_SENDER = "switchboard";
  var AGENT_CHANGES = ["announced", "updated", "online", "offline", "removed"];
  function readAgentCard(raw) {
    const c = raw;
    if (typeof c?.name !== "string" || !Array.isArray(c.capabilities) || !c.capabilities.every((x) => typeof x === "string") || typeof c.online !== "boolean" || typeof c.updated_at !== "number") {
      throw new Error(`unreadable agent card: ${JSON.stringify(raw)}`);
    }
    return {
      name: c.name,
      capabilities: [...c.capabilities],
      metadata: isObject(c.metadata) ? c.metadata : {},
      online: c.online,
      updatedAt: c.updated_at
    };
  }
  function readAgentCards(raw) {
    const agents = raw?.agents;
    if (!Array.isArray(agents)) throw new Error(`unreadable discover reply: ${JSON.stringify(raw)}`);
    return agents.map(readAgentCard);
  }
  function readAgentUpdate(raw) {
    const u = raw;
    if (!AGENT_CHANGES.includes(u?.change)) {
      throw new Error(`unreadable agent update: ${JSON.stringify(raw)}`);
    }
    return { change: u.change, agent: readAgentCard(u.agent) };
  }
  function announcePayload(capabilities, metadata) {
    if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === "string")) {
      throw new SwitchboardError("invalid_argument", 'capabilities are an array of strings, e.g. ["translate"] (it may be empty)');
    }
    const payload = { capabilities: [...capabilities] };
    if (metadata !== void 0) payload.metadata = checkMetadata(metadata);
    return payload;
  }
  function updateMetadataPayload(metadata) {
    return { metadata: checkMetadata(metadata) };
  }
  function discoverPayload(query) {
    if (typeof query !== "object" || query === null || Array.isArray(query)) {
      throw new SwitchboardError("invalid_argument", "discover() takes a query object {capability?, filters?, online?, limit?}");
    }
    const payload = {};
    if (query.capability !== void 0) {
      if (typeof query.capability !== "string") throw new SwitchboardError("invalid_argument", "capability is a string");
      payload.capability = query.capability;
    }
    if (query.filters !== void 0) {
      if (!isObject(query.filters)) {
        throw new SwitchboardError("invalid_argument", 'filters is an object of conditions: {"field": value} or {"field": {min?, max?}}');
      }
      payload.filters = query.filters;
    }
    if (query.online !== void 0) {
      if (typeof query.online !== "boolean") throw new SwitchboardError("invalid_argument", "online is true or false");
      payload.online = query.online;
    }
    if (query.limit !== void 0) {
      if (typeof query.limit !== "number" || !Number.isSafeInteger(query.limit) || query.limit < 1) {
        throw new SwitchboardError("invalid_argument", `limit is an integer ≥ 1, not ${JSON.stringify(query.limit)}`);
      }
      payload.limit = query.limit;
    }
    return payload;
  }
  function checkMetadata(metadata) {
    if (!isObject(metadata)) {
      throw new SwitchboardError("invalid_argument", 'metadata is a JSON object (at most 4 KiB), e.g. {status: "idle"}');
    }
    return metadata;
  }
  function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }

  // src/inbox.ts
  var RECEIPT_STATUSES = ["delivered", "acknowledged", "rejected", "dead_lettered"];
  function readInboxMessage(raw) {
    const m = raw;
    if (typeof m?.delivery_count !== "number") throw new Error(`unreadable inbox message: ${JSON.stringify(raw)}`);
    return { deliveryCount: m.delivery_count, message: readJsonMessage(m.message) };
  }
  function readReceipt(raw) {
    const r = raw;
    if (typeof r?.id !== "string" || typeof r.to !== "string" || !RECEIPT_STATUSES.includes(r.status) || typeof r.delivery_count !== "number") {
      throw new Error(`unreadable receipt: ${JSON.stringify(raw)}`);
    }
    const receipt = { id: r.id, to: r.to, status: r.status, deliveryCount: r.delivery_count };
    if (typeof r.reason === "string") receipt.reason = r.reason;
    return receipt;
  }
  function readDeadLetter(raw) {
    const d = raw;
    if (typeof d?.recipient !== "string" || typeof d.delivery_count !== "number" || typeof d.dead_at !== "number") {
      throw new Error(`unreadable dead letter: ${JSON.stringify(raw)}`);
    }
    return {
      message: readJsonMessage(d.message),
      recipient: d.recipient,
      deliveryCount: d.delivery_count,
      rejections: typeof d.rejections === "number" ? d.rejections : 0,
      reason: typeof d.reason === "string" ? d.reason : "",
      deadAt: d.dead_at
    };
  }
  function ackPayload(id) {
    return { id: checkId(id) };
  }
  function rejectPayload(id, options) {
    const payload = { id: checkId(id) };
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "reject() takes an options object {reason?, requeue?}");
    }
    if (options.reason !== void 0) {
      if (typeof options.reason !== "string") throw new SwitchboardError("invalid_argument", "reason is a string");
      payload.reason = options.reason;
    }
    if (options.requeue !== void 0) {
      if (typeof options.requeue !== "boolean") throw new SwitchboardError("invalid_argument", "requeue is true or false");
      payload.requeue = options.requeue;
    }
    return payload;
  }
  function checkId(id) {
    if (typeof id !== "string" || id.length === 0) {
      throw new SwitchboardError("invalid_argument", "an inbox message is named by its id, `message.id` (a non-empty string)");
    }
    return id;
  }

  // src/history.ts
  var POLL_SOURCES = ["AUTO", "CACHE", "LOG", "KAFKA", "DATABASE"];
  var TIERS = ["CACHE", "LOG", "DATABASE"];
  function pollSourceWire(source, option = "pollSource") {
    if (source === void 0) return void 0;
    const upper = typeof source === "string" ? source.toUpperCase() : void 0;
    if (upper === void 0 || !POLL_SOURCES.includes(upper)) {
      throw new SwitchboardError(
        "invalid_argument",
        `${option} is one of ${POLL_SOURCES.map((s) => `"${s}"`).join(", ")} (any case), not ${JSON.stringify(source)}`
      );
    }
    return upper;
  }
  function historyPayload(query) {
    if (typeof query !== "object" || query === null || Array.isArray(query)) {
      throw new SwitchboardError("invalid_argument", "a history query is an object {from_offset?, to_offset?, …, pollSource?}");
    }
    const { pollSource, ...rest } = query;
    const payload = {};
    for (const [key, value] of Object.entries(rest)) {
      if (value !== void 0) payload[key] = value;
    }
    const source = pollSourceWire(pollSource);
    if (source !== void 0) payload.poll_source = source;
    return payload;
  }
  function historyParams(query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(historyPayload(query))) {
      if (value === null || typeof value === "object") {
        throw new SwitchboardError("invalid_argument", `history query field ${key} is a number or a string, not ${JSON.stringify(value)}`);
      }
      params.set(key, String(value));
    }
    return params;
  }
  function readHistoryPage(raw) {
    const page = raw;
    if (typeof page !== "object" || page === null || !Array.isArray(page.messages)) {
      throw new Error(`unreadable history page: ${JSON.stringify(raw)}`);
    }
    const sources = page.sources === void 0 ? [] : page.sources;
    if (!Array.isArray(sources)) throw new Error(`unreadable history sources: ${JSON.stringify(sources)}`);
    return {
      ...page,
      messages: page.messages.map((m) => readJsonMessage(m)),
      sources: sources.map(readTierRange)
    };
  }
  function readTierRange(raw) {
    const r = raw;
    if (!TIERS.includes(r?.tier) || typeof r.from !== "number" || typeof r.to !== "number") {
      throw new Error(`unreadable history source: ${JSON.stringify(raw)}`);
    }
    return { tier: r.tier, from: r.from, to: r.to };
  }

  // src/presence.ts
  var PresenceTracker = class {
    constructor() {
      __publicField(this, "state", /* @__PURE__ */ new Map());
    }
    /** Replaces the whole state (the first frame after a join). */
    syncState(next) {
      const before = new Set(this.state.keys());
      this.state = /* @__PURE__ */ new Map();
      for (const [name, entry] of Object.entries(next)) {
        if (entry && Array.isArray(entry.metas) && entry.metas.length > 0) this.state.set(name, [...entry.metas]);
      }
      const after = new Set(this.state.keys());
      return {
        joined: [...after].filter((n) => !before.has(n)).sort(),
        left: [...before].filter((n) => !after.has(n)).sort()
      };
    }
    /** Applies joins, then leaves. */
    syncDiff(diff) {
      const before = new Set(this.state.keys());
      for (const [name, entry] of Object.entries(diff.joins ?? {})) {
        const metas = this.state.get(name) ?? [];
        for (const meta of entry?.metas ?? []) {
          if (!metas.some((m) => m.phx_ref === meta.phx_ref)) metas.push(meta);
        }
        if (metas.length > 0) this.state.set(name, metas);
      }
      for (const [name, entry] of Object.entries(diff.leaves ?? {})) {
        const metas = this.state.get(name);
        if (!metas) continue;
        const gone = new Set((entry?.metas ?? []).map((m) => m.phx_ref));
        const left = metas.filter((m) => !gone.has(m.phx_ref));
        if (left.length > 0) this.state.set(name, left);
        else this.state.delete(name);
      }
      const after = new Set(this.state.keys());
      return {
        joined: [...after].filter((n) => !before.has(n)).sort(),
        left: [...before].filter((n) => !after.has(n)).sort()
      };
    }
    /** Forgets everything (the channel ended). */
    clear() {
      this.state.clear();
    }
    /** The agents present, sorted by name. */
    list() {
      return toAgents(this.state);
    }
  };
  function presenceList(state) {
    const map = /* @__PURE__ */ new Map();
    for (const [name, entry] of Object.entries(state)) {
      if (entry && Array.isArray(entry.metas) && entry.metas.length > 0) map.set(name, entry.metas);
    }
    return toAgents(map);
  }
  function toAgents(map) {
    return [...map.entries()].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0).map(([agentName, metas]) => {
      const first = metas.reduce((a, b) => b.joined_at < a.joined_at ? b : a);
      return { agentName, joinedAt: first.joined_at, meta: first.meta ?? {}, sessions: metas.length };
    });
  }

  // src/storage.ts
  var ChannelStorage = class {
    /** @internal The connection creates it. */
    constructor(send) {
      __publicField(this, "send", send);
    }
    /**
     * Writes `value` under `key`; resolves with the new entry once it is durable. `version` makes
     * it conditional (`0`: only if the key is absent), else `version_conflict`; `ttlSecs` lets it
     * expire. Other refusals: `too_many_keys`, `message_too_large`, `invalid_payload`, `forbidden`.
     */
    async put(key, value, options = {}) {
      checkKey(key);
      if (value === void 0) throw new SwitchboardError("invalid_argument", "storage.put() needs a value (null is one)");
      const payload = { key, value };
      if (options.version !== void 0) payload.version = count("version", options.version, 0);
      if (options.ttlSecs !== void 0) payload.ttl_secs = count("ttlSecs", options.ttlSecs, 1);
      return readEntry(await this.send("kv_put", payload, false));
    }
    /** The entry under `key`; rejects with `not_found` when there is none (or it expired). */
    async get(key) {
      checkKey(key);
      return readEntry(await this.send("kv_get", { key }, true));
    }
    /** Deletes `key` (only at `version`, when given, else `version_conflict`); rejects with
     * `not_found` when there is no such key. */
    async delete(key, options = {}) {
      checkKey(key);
      const payload = { key };
      if (options.version !== void 0) payload.version = count("version", options.version, 0);
      await this.send("kv_delete", payload, false);
    }
    /** One page of entries in key order; pass `next` as `after` for the following page. */
    async list(options = {}) {
      const query = {};
      if (options.prefix !== void 0) query.prefix = options.prefix;
      if (options.after !== void 0) query.after = options.after;
      if (options.limit !== void 0) query.limit = count("limit", options.limit, 1);
      const raw = await this.send("kv_list", query, true);
      const page = { entries: (raw.entries ?? []).map(readEntry) };
      if (typeof raw.next === "string") page.next = raw.next;
      return page;
    }
    /** Every entry (with `prefix`: every such entry) in key order, reading `limit` per page:
     * `for await (const entry of agent.storage.entries({ prefix: "score/" }))`. */
    async *entries(options = {}) {
      let after = options.after;
      for (; ; ) {
        const query = { ...options };
        if (after !== void 0) query.after = after;
        const page = await this.list(query);
        yield* page.entries;
        if (page.next === void 0) return;
        after = page.next;
      }
    }
  };
  function readStorageChange(raw) {
    const c = raw;
    if (typeof c?.key !== "string" || c.op !== "put" && c.op !== "delete" || typeof c.version !== "number" || typeof c.updated_by !== "string") {
      throw new Error(`unreadable kv_change: ${JSON.stringify(raw)}`);
    }
    const change = { key: c.key, op: c.op, version: c.version, updatedBy: c.updated_by };
    if (c.op === "put") change.value = c.value ?? null;
    return change;
  }
  function readEntry(raw) {
    const e = raw;
    const entry = {
      key: e.key,
      value: e.value ?? null,
      version: e.version,
      updatedAt: e.updated_at,
      updatedBy: e.updated_by
    };
    if (typeof e.expires_at === "number") entry.expiresAt = e.expires_at;
    return entry;
  }
  function checkKey(key) {
    if (typeof key !== "string" || key.length === 0) {
      throw new SwitchboardError("invalid_argument", "a storage key is a non-empty string (1–256 bytes, no control characters)");
    }
  }
  function count(name, value, min) {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      throw new SwitchboardError("invalid_argument", `${name} is an integer ≥ ${min}, not ${JSON.stringify(value)}`);
    }
    return value;
  }

  // src/sha256.ts
  var K = Int32Array.from([
    1116352408,
    1899447441,
    3049323471,
    3921009573,
    961987163,
    1508970993,
    2453635748,
    2870763221,
    3624381080,
    310598401,
    607225278,
    1426881987,
    1925078388,
    2162078206,
    2614888103,
    3248222580,
    3835390401,
    4022224774,
    264347078,
    604807628,
    770255983,
    1249150122,
    1555081692,
    1996064986,
    2554220882,
    2821834349,
    2952996808,
    3210313671,
    3336571891,
    3584528711,
    113926993,
    338241895,
    666307205,
    773529912,
    1294757372,
    1396182291,
    1695183700,
    1986661051,
    2177026350,
    2456956037,
    2730485921,
    2820302411,
    3259730800,
    3345764771,
    3516065817,
    3600352804,
    4094571909,
    275423344,
    430227734,
    506948616,
    659060556,
    883997877,
    958139571,
    1322822218,
    1537002063,
    1747873779,
    1955562222,
    2024104815,
    2227730452,
    2361852424,
    2428436474,
    2756734187,
    3204031479,
    3329325298
  ]);
  var Sha256 = class {
    constructor() {
      __publicField(this, "h", Int32Array.from([
        1779033703,
        3144134277,
        1013904242,
        2773480762,
        1359893119,
        2600822924,
        528734635,
        1541459225
      ]));
      __publicField(this, "w", new Int32Array(64));
      __publicField(this, "block", new Uint8Array(64));
      __publicField(this, "buffered", 0);
      /** Bytes hashed so far (exact up to 2^53). */
      __publicField(this, "length", 0);
      __publicField(this, "finished", false);
    }
    update(bytes) {
      if (this.finished) throw new Error("the hash was already read");
      this.length += bytes.length;
      let pos = 0;
      if (this.buffered > 0) {
        const take = Math.min(64 - this.buffered, bytes.length);
        this.block.set(bytes.subarray(0, take), this.buffered);
        this.buffered += take;
        pos = take;
        if (this.buffered < 64) return;
        this.compress(this.block, 0);
        this.buffered = 0;
      }
      for (; pos + 64 <= bytes.length; pos += 64) this.compress(bytes, pos);
      if (pos < bytes.length) {
        this.block.set(bytes.subarray(pos), 0);
        this.buffered = bytes.length - pos;
      }
    }
    hex() {
      if (this.finished) throw new Error("the hash was already read");
      const bits = this.length * 8;
      const pad = new Uint8Array((this.buffered < 56 ? 56 : 120) - this.buffered + 8);
      pad[0] = 128;
      const view = new DataView(pad.buffer);
      view.setUint32(pad.length - 8, Math.floor(bits / 4294967296), false);
      view.setUint32(pad.length - 4, bits >>> 0, false);
      this.update(pad);
      this.finished = true;
      let out = "";
      for (const word of this.h) out += (word >>> 0).toString(16).padStart(8, "0");
      return out;
    }
    compress(bytes, at) {
      const w = this.w;
      for (let i = 0; i < 16; i++) {
        const j = at + i * 4;
        w[i] = bytes[j] << 24 | bytes[j + 1] << 16 | bytes[j + 2] << 8 | bytes[j + 3];
      }
      for (let i = 16; i < 64; i++) {
        const a2 = w[i - 15];
        const b2 = w[i - 2];
        const s0 = (a2 >>> 7 | a2 << 25) ^ (a2 >>> 18 | a2 << 14) ^ a2 >>> 3;
        const s1 = (b2 >>> 17 | b2 << 15) ^ (b2 >>> 19 | b2 << 13) ^ b2 >>> 10;
        w[i] = w[i - 16] + s0 + w[i - 7] + s1 | 0;
      }
      const h = this.h;
      let a = h[0];
      let b = h[1];
      let c = h[2];
      let d = h[3];
      let e = h[4];
      let f = h[5];
      let g = h[6];
      let k = h[7];
      for (let i = 0; i < 64; i++) {
        const s1 = (e >>> 6 | e << 26) ^ (e >>> 11 | e << 21) ^ (e >>> 25 | e << 7);
        const ch = e & f ^ ~e & g;
        const t1 = k + s1 + ch + K[i] + w[i] | 0;
        const s0 = (a >>> 2 | a << 30) ^ (a >>> 13 | a << 19) ^ (a >>> 22 | a << 10);
        const maj = a & b ^ a & c ^ b & c;
        const t2 = s0 + maj | 0;
        k = g;
        g = f;
        f = e;
        e = d + t1 | 0;
        d = c;
        c = b;
        b = a;
        a = t1 + t2 | 0;
      }
      h[0] = h[0] + a | 0;
      h[1] = h[1] + b | 0;
      h[2] = h[2] + c | 0;
      h[3] = h[3] + d | 0;
      h[4] = h[4] + e | 0;
      h[5] = h[5] + f | 0;
      h[6] = h[6] + g | 0;
      h[7] = h[7] + k | 0;
    }
  };
  var nodeCreateHash;
  function nodeHash() {
    if (nodeCreateHash === void 0) {
      nodeCreateHash = null;
      try {
        const proc = globalThis.process;
        const crypto2 = proc?.getBuiltinModule?.("node:crypto");
        if (typeof crypto2?.createHash === "function") nodeCreateHash = crypto2.createHash;
      } catch {
      }
    }
    return nodeCreateHash;
  }
  function createSha256() {
    const createHash = nodeHash();
    if (!createHash) return new Sha256();
    const hash = createHash("sha256");
    return {
      update: (bytes) => void hash.update(bytes),
      hex: () => hash.digest("hex")
    };
  }

  // src/stream.ts
  var CHUNK_BYTES = 256 * 1024;
  var IN_FLIGHT = 8;
  var ACK_EVERY = 1024 * 1024;
  var Abort = class {
    constructor() {
      __publicField(this, "error");
      __publicField(this, "promise");
      __publicField(this, "rejectWith", () => void 0);
      this.promise = new Promise((_, reject) => {
        this.rejectWith = reject;
      });
      this.promise.catch(() => void 0);
    }
    fail(error) {
      if (this.error) return;
      this.error = error;
      this.rejectWith(error);
    }
    /** `promise`, unless the stream fails first. */
    race(promise) {
      return Promise.race([promise, this.promise]);
    }
  };
  function cancelledError(event) {
    const why = event.reason === void 0 ? "" : `: ${event.reason}`;
    return new SwitchboardError("cancelled", `stream ${event.streamId} was cancelled by ${event.by}${why}`);
  }
  var ByteReader = class _ByteReader {
    constructor(pull, stop) {
      __publicField(this, "pull", pull);
      __publicField(this, "stop", stop);
      __publicField(this, "leftover");
      __publicField(this, "ended", false);
    }
    /** A reader of `source`; throws `invalid_argument` for anything else. */
    static of(source) {
      if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
        let bytes = source instanceof Uint8Array ? source : new Uint8Array(source);
        return new _ByteReader(
          async () => {
            const b = bytes;
            bytes = void 0;
            return b;
          },
          async () => void 0
        );
      }
      if (isBlob(source)) {
        let pos = 0;
        return new _ByteReader(
          async () => {
            if (pos >= source.size) return void 0;
            const piece = source.slice(pos, pos + CHUNK_BYTES);
            pos += CHUNK_BYTES;
            return new Uint8Array(await piece.arrayBuffer());
          },
          async () => void 0
        );
      }
      if (isReadableStream(source)) {
        const reader = source.getReader();
        return new _ByteReader(
          async () => {
            const { value, done } = await reader.read();
            return done ? void 0 : chunkBytes(value);
          },
          () => reader.cancel()
        );
      }
      if (typeof source === "object" && source !== null && typeof source[Symbol.asyncIterator] === "function") {
        const iterator = source[Symbol.asyncIterator]();
        return new _ByteReader(
          async () => {
            const { value, done } = await iterator.next();
            return done ? void 0 : chunkBytes(value);
          },
          async () => {
            await iterator.return?.();
          }
        );
      }
      throw new SwitchboardError(
        "invalid_argument",
        "a stream's source is a Uint8Array, an ArrayBuffer, a Blob, a ReadableStream or an async iterable of Uint8Arrays"
      );
    }
    /** The next `max` bytes (fewer only at the end; empty once everything was read). */
    async read(max) {
      const parts = [];
      let filled = 0;
      while (filled < max && !this.ended) {
        let piece = this.leftover ?? await this.pull();
        this.leftover = void 0;
        if (piece === void 0) {
          this.ended = true;
          break;
        }
        if (piece.length > max - filled) {
          this.leftover = piece.subarray(max - filled);
          piece = piece.subarray(0, max - filled);
        }
        if (piece.length === 0) continue;
        parts.push(piece);
        filled += piece.length;
      }
      return concat(parts, filled);
    }
    /** Stops reading (cancels a `ReadableStream`, returns an iterator). Does not wait: a source
     * that hangs must not hold up the failure it is closed for. */
    close() {
      if (this.ended) return;
      this.ended = true;
      void this.stop().catch(() => void 0);
    }
  };
  function isBlob(value) {
    return typeof Blob !== "undefined" && value instanceof Blob;
  }
  function isReadableStream(value) {
    return typeof value === "object" && value !== null && typeof value.getReader === "function";
  }
  function chunkBytes(value) {
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    throw new SwitchboardError("invalid_argument", `a stream's source yielded ${typeof value}, not bytes (Uint8Array)`);
  }
  function concat(parts, length) {
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(length);
    let pos = 0;
    for (const p of parts) {
      out.set(p, pos);
      pos += p.length;
    }
    return out;
  }
  function describeSource(source) {
    if (source instanceof Uint8Array || source instanceof ArrayBuffer) return { size: source.byteLength };
    if (isBlob(source)) {
      const described = { size: source.size };
      const name = source.name;
      if (typeof name === "string" && name.length > 0) described.name = name;
      if (source.type) described.contentType = source.type;
      return described;
    }
    return {};
  }
  async function pump(request, streamId, reader, hasher, position, abort, progress) {
    let { seq, offset: total } = position;
    let held = position.offset;
    const inFlight = [];
    try {
      let eof = false;
      for (; ; ) {
        while (!eof && inFlight.length < IN_FLIGHT) {
          const chunk = await abort.race(reader.read(CHUNK_BYTES));
          if (chunk.length === 0) {
            eof = true;
            break;
          }
          hasher.update(chunk);
          total += chunk.length;
          const sent = request("stream_chunk", encodeStreamEnvelope({ stream_id: streamId, seq }, chunk), true).then((reply) => {
            const { offset } = readPosition(reply);
            if (offset > held) {
              held = offset;
              progress({ streamId, offset });
            }
          }).catch((e) => abort.fail(e));
          inFlight.push(sent);
          seq += 1;
        }
        const next = inFlight.shift();
        if (next === void 0) break;
        await abort.race(next);
        if (abort.error) throw abort.error;
      }
      const checksum = hasher.hex();
      await abort.race(request("stream_close", { stream_id: streamId, checksum, total_size: total }, true));
      return { streamId, totalSize: total, checksum };
    } catch (e) {
      reader.close();
      throw abort.error ?? e;
    }
  }
  async function skipHeld(reader, hasher, offset, abort) {
    let left = offset;
    while (left > 0) {
      const piece = await abort.race(reader.read(Math.min(CHUNK_BYTES, left)));
      if (piece.length === 0) {
        reader.close();
        throw new SwitchboardError(
          "invalid_argument",
          `the source is ${offset - left} bytes long, shorter than the ${offset} bytes the server holds of the stream`
        );
      }
      hasher.update(piece);
      left -= piece.length;
    }
  }
  function openSink(sink, parts) {
    if (sink === void 0) {
      return { write: (chunk) => void parts.push(chunk), close: async () => void 0, abort: () => void 0 };
    }
    if (typeof sink === "function") {
      return { write: (chunk) => sink(chunk), close: async () => void 0, abort: () => void 0 };
    }
    if (typeof sink === "object" && sink !== null && typeof sink.getWriter === "function") {
      const writer = sink.getWriter();
      return {
        write: (chunk) => writer.write(chunk),
        close: () => writer.close(),
        abort: (error) => void writer.abort(error).catch(() => void 0)
      };
    }
    throw new SwitchboardError("invalid_argument", "sink is a function (chunk) => void | Promise<void>, or a WritableStream");
  }
  async function readPrefix(source, hasher, parts) {
    const reader = ByteReader.of(source);
    let length = 0;
    for (; ; ) {
      const piece = await reader.read(CHUNK_BYTES);
      if (piece.length === 0) return length;
      hasher.update(piece);
      parts?.push(piece.slice());
      length += piece.length;
    }
  }
  var Incoming = class {
    constructor(streamId, request, sink, hasher, received, parts, progress) {
      __publicField(this, "streamId", streamId);
      __publicField(this, "request", request);
      __publicField(this, "sink", sink);
      __publicField(this, "hasher", hasher);
      __publicField(this, "parts", parts);
      __publicField(this, "progress", progress);
      /** Bytes received and hashed (the next `stream_data` continues here). */
      __publicField(this, "offset");
      /** Bytes written to the sink: a re-accept after a reconnect starts here. */
      __publicField(this, "written");
      /** Set once `stream_end` arrived: nothing is accepted again. */
      __publicField(this, "ending", false);
      __publicField(this, "abort", new Abort());
      __publicField(this, "done");
      __publicField(this, "acked");
      __publicField(this, "chain", Promise.resolve());
      __publicField(this, "settle");
      this.offset = received;
      this.written = received;
      this.acked = received;
      this.done = new Promise((resolve, reject) => {
        this.settle = { resolve, reject };
      });
      this.done.catch(() => void 0);
      this.abort.promise.catch((error) => this.finish(error));
    }
    /** Whether it is over (received, failed, cancelled). */
    get settled() {
      return this.settle === void 0;
    }
    /** A `stream_data` of this stream: bytes it has are skipped; a gap fails the stream. */
    data(offset, bytes) {
      if (this.settled || this.ending) return;
      const end = offset + bytes.length;
      if (end <= this.offset) return;
      if (offset > this.offset) {
        this.abort.fail(new SwitchboardError("internal", `stream ${this.streamId} skipped from byte ${this.offset} to ${offset}`));
        return;
      }
      const fresh = bytes.subarray(this.offset - offset);
      this.hasher.update(fresh);
      this.offset = end;
      this.step(async () => {
        await this.sink.write(fresh);
        this.written += fresh.length;
        this.progress({ streamId: this.streamId, offset: this.written });
        if (this.written - this.acked >= ACK_EVERY) {
          const at = this.written;
          try {
            await this.request("stream_ack", { stream_id: this.streamId, offset: at }, true);
            this.acked = Math.max(this.acked, at);
          } catch (e) {
            if (!(e instanceof SwitchboardError) || e.code !== "timeout" && e.code !== "disconnected") throw e;
          }
        }
      });
    }
    /** The `stream_end`: verifies size and SHA-256, closes the sink, acknowledges with `done`. A
     * mismatch cancels the stream and fails with `checksum_mismatch`. */
    end(checksum, totalSize) {
      if (this.settled || this.ending) return;
      this.ending = true;
      const size = this.offset;
      const actual = this.hasher.hex();
      this.step(async () => {
        if (size !== totalSize || actual.toLowerCase() !== checksum.toLowerCase()) {
          const why = `received ${size} bytes with SHA-256 ${actual}; the stream has ${totalSize} bytes and ${checksum}`;
          const error = new SwitchboardError("checksum_mismatch", why);
          this.finish(error);
          await this.request("stream_cancel", { stream_id: this.streamId, reason: `checksum_mismatch: ${why}` }, false).catch(
            () => void 0
          );
          return;
        }
        await this.sink.close();
        await this.request("stream_ack", { stream_id: this.streamId, offset: size, done: true }, true);
        const result = { streamId: this.streamId, totalSize: size, checksum: actual };
        if (this.parts) result.bytes = concat(this.parts, size);
        this.finish(void 0, result);
      });
    }
    step(work) {
      this.chain = this.chain.then(async () => {
        if (this.settled) return;
        try {
          await this.abort.race(work());
        } catch (e) {
          this.finish(asStreamError(e));
        }
      });
    }
    finish(error, result) {
      const settle = this.settle;
      if (!settle) return;
      this.settle = void 0;
      if (error) {
        this.sink.abort(error);
        settle.reject(error);
      } else {
        settle.resolve(result);
      }
    }
  };
  function asStreamError(e) {
    if (e instanceof SwitchboardError) return e;
    return new SwitchboardError("internal", `the stream's sink failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  function num(value) {
    return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
  }
  function unreadable(what, raw) {
    return new Error(`unreadable ${what}: ${JSON.stringify(raw)}`);
  }
  function readPosition(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || !num(r.next_seq) || !num(r.offset)) {
      throw new SwitchboardError("internal", `unexpected stream position ${JSON.stringify(raw)}`);
    }
    return { streamId: r.stream_id, nextSeq: r.next_seq, offset: r.offset };
  }
  function readStreamOffer(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || typeof r.from !== "string") throw unreadable("stream_offer", raw);
    const offer = {
      streamId: r.stream_id,
      from: r.from,
      meta: typeof r.meta === "object" && r.meta !== null && !Array.isArray(r.meta) ? r.meta : {},
      acked: num(r.acked) ? r.acked : 0
    };
    if (typeof r.name === "string") offer.name = r.name;
    if (num(r.size)) offer.size = r.size;
    if (typeof r.content_type === "string") offer.contentType = r.content_type;
    return offer;
  }
  function readStreamEnd(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || typeof r.checksum !== "string" || !num(r.total_size)) throw unreadable("stream_end", raw);
    return { streamId: r.stream_id, checksum: r.checksum, totalSize: r.total_size };
  }
  function readDataHeader(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || !num(r.offset)) throw unreadable("stream_data header", raw);
    return { streamId: r.stream_id, offset: r.offset };
  }
  function readStreamProgress(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || !num(r.offset)) throw unreadable("stream_progress", raw);
    return { streamId: r.stream_id, offset: r.offset };
  }
  function readStreamCheckpoint(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || !num(r.next_seq) || !num(r.offset)) throw unreadable("stream_checkpoint", raw);
    return { streamId: r.stream_id, nextSeq: r.next_seq, offset: r.offset };
  }
  function readStreamComplete(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || !num(r.total_size)) throw unreadable("stream_complete", raw);
    return { streamId: r.stream_id, totalSize: r.total_size };
  }
  function readStreamCancelled(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || typeof r.by !== "string") throw unreadable("stream_cancelled", raw);
    const event = { streamId: r.stream_id, by: r.by };
    if (typeof r.reason === "string") event.reason = r.reason;
    return event;
  }
  function readStreamError(raw) {
    const r = raw;
    if (typeof r?.stream_id !== "string" || typeof r.code !== "string" || typeof r.message !== "string") {
      throw unreadable("stream_error", raw);
    }
    return { streamId: r.stream_id, code: r.code, message: r.message };
  }

  // src/tracker.ts
  var OffsetTracker = class {
    constructor(since, epoch) {
      /** The last offset delivered to the application (or known to precede the subscription). */
      __publicField(this, "last");
      /** The epoch `last` belongs to. */
      __publicField(this, "epoch");
      /** Whether the channel has offsets at all. */
      __publicField(this, "persistent", true);
      this.last = since;
      this.epoch = epoch;
    }
    /** Takes a join reply into account: the replay after it starts at `last + 1`. */
    onJoin(reply) {
      this.epoch = reply.epoch;
      this.persistent = reply.persistent;
      if (!reply.persistent) {
        this.last = void 0;
        return;
      }
      if (reply.gap) {
        this.last = Math.max(reply.gap.first_available - 1, 0);
      } else if (this.last === void 0) {
        this.last = reply.head;
      } else {
        this.last = Math.min(this.last, reply.head);
      }
    }
    /** Whether a message with this offset is new; records it when it is. */
    accept(offset) {
      if (offset === void 0) return true;
      if (this.last !== void 0 && offset <= this.last) return false;
      this.last = offset;
      return true;
    }
    /** The `since` and `epoch` of a resume, when there is a position to resume from. */
    resume() {
      if (!this.persistent || this.last === void 0) return void 0;
      return { since: this.last, epoch: this.epoch };
    }
  };

  // src/connection.ts
  var PHOENIX = "phoenix";
  var DEFAULT_TIMEOUT_MS = 1e4;
  var DEFAULT_HEARTBEAT_MS = 25e3;
  var SIGNAL_KINDS = ["offer", "answer", "ice", "bye"];
  var AgentConnection = class extends EventTarget {
    constructor() {
      super(...arguments);
      __publicField(this, "state", "idle");
      __publicField(this, "resolved");
      __publicField(this, "apiKey", "");
      __publicField(this, "ws");
      __publicField(this, "nextRef", 0);
      __publicField(this, "nextSeq", 0);
      __publicField(this, "joinRef");
      __publicField(this, "pending", /* @__PURE__ */ new Map());
      __publicField(this, "queue", []);
      __publicField(this, "tracker", new OffsetTracker());
      __publicField(this, "presenceTracker", new PresenceTracker());
      __publicField(this, "reply");
      __publicField(this, "sessionId");
      __publicField(this, "attempt", 0);
      __publicField(this, "keyRetried", false);
      __publicField(this, "socketError");
      __publicField(this, "kicked");
      __publicField(this, "heartbeatTimer");
      __publicField(this, "heartbeatRef");
      __publicField(this, "heard", false);
      __publicField(this, "reconnectTimer");
      __publicField(this, "keyTimer");
      __publicField(this, "firstJoin");
      __publicField(this, "listeners", /* @__PURE__ */ new Set());
      __publicField(this, "inboxListeners", /* @__PURE__ */ new Set());
      __publicField(this, "agentListeners", /* @__PURE__ */ new Set());
      __publicField(this, "closedWith");
      /** Streams this connection is sending (by id): failed from outside by cancel and error events. */
      __publicField(this, "outgoing", /* @__PURE__ */ new Map());
      /** Streams this connection is receiving (by id). */
      __publicField(this, "incoming", /* @__PURE__ */ new Map());
      /** The channel's durable key-value store: `put`, `get`, `delete`, `list`, `entries`. Reads in
       * flight when the socket drops are re-sent after the rejoin; writes fail with `disconnected`. */
      __publicField(this, "storage", new ChannelStorage((event, payload, retry) => this.request(event, payload, retry)));
    }
    // ---------------------------------------------------------------------------------------------
    // Public surface
    /** Whether the channel is joined on a live socket right now. */
    get connected() {
      return this.state === "joined";
    }
    /** The reply of the latest (re)join: session id, epoch, head. */
    get joinReply() {
      return this.reply;
    }
    /** The last offset delivered to the application (the resume position). */
    get lastOffset() {
      return this.tracker.last;
    }
    /** The agents present, as the presence events last told (empty with `presence: false`). */
    get presentAgents() {
      return this.presenceTracker.list();
    }
    /**
     * Opens the socket, authenticates and joins the channel; resolves with the join reply.
     * Rejects with a {@link SwitchboardError}: the server's code (`invalid_key`, `bad_password`,
     * `agent_name_taken`…), `connection_failed` when the server cannot be reached, `unsupported`
     * for an option the server cannot honour yet. Only later losses are retried.
     */
    async connect(options) {
      if (this.state !== "idle") {
        throw new SwitchboardError("invalid_argument", "this AgentConnection was already connected; create a new one");
      }
      const resolved = await resolveOptions(options);
      this.resolved = resolved;
      this.apiKey = options.apiKey;
      this.tracker = new OffsetTracker(options.since, options.epoch);
      this.sessionId = options.sessionId;
      this.state = "connecting";
      const joined = new Promise((resolve, reject) => {
        this.firstJoin = { resolve, reject };
      });
      this.openSocket();
      const reply = await joined;
      if (options.keyRefreshIntervalMs !== void 0 && options.refreshApiKey) {
        this.keyTimer = setInterval(() => {
          this.refreshKey().catch((e) => this.emitError(asError(e)));
        }, options.keyRefreshIntervalMs);
      }
      return reply;
    }
    /** Calls `handler` for every message; returns a function that unregisters it. */
    onMessage(handler) {
      return this.on("message", handler);
    }
    /** Calls `handler` after every successful (re)join. */
    onConnect(handler) {
      return this.on("connect", handler);
    }
    /** Calls `handler` whenever the socket goes down. */
    onDisconnect(handler) {
      return this.on("disconnect", handler);
    }
    /** Calls `handler` for errors no pending call can report. */
    onError(handler) {
      return this.on("error", handler);
    }
    /** Calls `handler` whenever presence changes. */
    onPresence(handler) {
      return this.on("presence", handler);
    }
    /** Calls `handler` for every WebRTC signal sent to this agent (needs `enableWebrtcRelay`). */
    onSignal(handler) {
      return this.on("signal", handler);
    }
    /** Calls `handler` for every change of the channel's storage (needs `storageEvents`). */
    onStorageChange(handler) {
      return this.on("storage", handler);
    }
    /** Calls `handler` for every delivery from this agent's durable inbox (needs `inbox`):
     * `{deliveryCount, message}`. Settle each with `ack(message.id)` or `reject(message.id)`. */
    onInboxMessage(handler) {
      return this.on("inbox", handler);
    }
    /** Calls `handler` for every receipt of a direct message sent with `receipt: true`. */
    onReceipt(handler) {
      return this.on("receipt", handler);
    }
    /** Calls `handler` for every change of the tenant's agent directory: `{change, agent}`. Only a
     * connection to the `sys.discovery` channel gets them (`watchAgents` makes one). */
    onAgentUpdate(handler) {
      return this.on("agent", handler);
    }
    /** Calls `handler` for every stream offered to this agent: `receiveStream(offer)` it (or
     * `cancelStream(offer.streamId)`). Register it before `connect()`: offers waiting for this
     * agent come right after the join. */
    onStreamOffer(handler) {
      return this.on("streamOffer", handler);
    }
    /** Calls `handler` whenever the recipient of a stream this agent sends acknowledges bytes. */
    onStreamProgress(handler) {
      return this.on("streamProgress", handler);
    }
    /** Calls `handler` whenever the server checkpoints a stream this agent sends. */
    onStreamCheckpoint(handler) {
      return this.on("streamCheckpoint", handler);
    }
    /** Calls `handler` when the recipient of a stream this agent sent has verified all of it. */
    onStreamComplete(handler) {
      return this.on("streamComplete", handler);
    }
    /** Calls `handler` when a stream this agent sends or receives is cancelled. */
    onStreamCancelled(handler) {
      return this.on("streamCancelled", handler);
    }
    /** Calls `handler` when a stream this agent sends or receives fails. */
    onStreamError(handler) {
      return this.on("streamError", handler);
    }
    /**
     * Every message from now on, as an async iterator: `for await (const m of agent.messages())`.
     * Messages queue until read. The iteration ends after `disconnect()` and throws the error that
     * ended the connection otherwise; `signal` ends it early.
     */
    messages(options = {}) {
      return this.iterate(this.listeners, options);
    }
    /**
     * Every inbox delivery from now on (needs `inbox`), as an async iterator:
     * `for await (const { message, deliveryCount } of agent.inboxMessages())`, then `ack` or
     * `reject` each. Deliveries queue until read (the server sends at most its `prefetch`, 100,
     * unsettled ones). Ends like `messages()`.
     */
    inboxMessages(options = {}) {
      return this.iterate(this.inboxListeners, options);
    }
    /**
     * Every change of the tenant's agent directory from now on (on the `sys.discovery` channel), as
     * an async iterator: `for await (const { change, agent } of watcher.agentUpdates())`. Changes
     * are ephemeral: those made while the connection was down are not replayed (call `discover()`
     * after a reconnect to catch up). Ends like `messages()`.
     */
    agentUpdates(options = {}) {
      return this.iterate(this.agentListeners, options);
    }
    /** An async iterator fed by `listeners` (pushed to by the frame handlers, ended by `finish`). */
    iterate(listeners, options) {
      const buffer = [];
      let waiting;
      let done = false;
      let failure;
      const listener = {
        push: (item) => {
          if (waiting) {
            const w = waiting;
            waiting = void 0;
            w.resolve({ value: item, done: false });
          } else {
            buffer.push(item);
          }
        },
        end: (error) => {
          if (done) return;
          done = true;
          failure = error;
          listeners.delete(listener);
          options.signal?.removeEventListener("abort", abort);
          if (waiting) {
            const w = waiting;
            waiting = void 0;
            if (error) w.reject(error);
            else w.resolve({ value: void 0, done: true });
          }
        }
      };
      const abort = () => listener.end();
      if (this.state === "closed") {
        done = true;
        failure = this.closedWith;
      } else if (options.signal?.aborted) {
        done = true;
      } else {
        listeners.add(listener);
        options.signal?.addEventListener("abort", abort, { once: true });
      }
      const iterator = {
        next: () => {
          if (buffer.length > 0) return Promise.resolve({ value: buffer.shift(), done: false });
          if (done) {
            if (failure) {
              const e = failure;
              failure = void 0;
              return Promise.reject(e);
            }
            return Promise.resolve({ value: void 0, done: true });
          }
          return new Promise((resolve, reject) => {
            waiting = { resolve, reject };
          });
        },
        return: () => {
          listener.end();
          buffer.length = 0;
          return Promise.resolve({ value: void 0, done: true });
        },
        [Symbol.asyncIterator]() {
          return iterator;
        }
      };
      return iterator;
    }
    /**
     * Publishes a message; resolves with `{offset, id}` once the server acknowledged it (for a
     * persisted message: once it is durable). A publish that is in flight when the connection
     * drops is re-sent after the reconnect under the same id, so it is stored once; an ephemeral
     * one fails with `disconnected` instead (it may or may not have been delivered). A persisted
     * direct message to an agent that is away (or consumes its inbox) waits in its inbox;
     * `receipt: true` asks for `receipt` events about it.
     */
    async send(message) {
      if (message.noReply && !message.ephemeral) {
        throw new SwitchboardError("invalid_argument", "noReply is for ephemeral messages only; persisted ones need their acknowledgement");
      }
      if (message.receipt && (message.to === void 0 || message.ephemeral)) {
        throw new SwitchboardError("invalid_argument", "receipt is for persisted direct messages (with `to`): only those go to an inbox");
      }
      const id = message.id ?? randomId();
      const header = { type: message.type, id };
      if (message.data !== void 0) header.data = message.data;
      if (message.to !== void 0) header.to = message.to;
      if (message.ephemeral) header.ephemeral = true;
      if (message.receipt) header.receipt = true;
      const attachments = (message.attachments ?? []).map(toBytes);
      const payload = attachments.length > 0 ? encodeEnvelope(header, attachments) : header;
      if (message.noReply) {
        this.fireAndForget("publish", payload);
        return { id };
      }
      const ack = await this.request("publish", payload, !message.ephemeral);
      const result = { id: ack.id ?? id };
      if (typeof ack.offset === "number") result.offset = ack.offset;
      if (ack.duplicate) result.duplicate = true;
      return result;
    }
    /**
     * Reads messages from the channel's history as this agent sees them (direct messages only when
     * it sent or receives them), oldest first: the latest `limit` (default 100), or those after
     * `after`. `from` keeps one sender's messages; `pollSource` reads one storage tier (default:
     * the connection's `pollSource`, else `"AUTO"`).
     */
    async receive(options = {}) {
      if (options.to !== void 0) {
        throw new SwitchboardError(
          "unsupported",
          "receive({to}) is not available: the server's history cannot filter by recipient yet; filter the result by `message.to`"
        );
      }
      const query = {};
      if (options.pollSource !== void 0) query.pollSource = options.pollSource;
      if (options.from !== void 0) query.sender = options.from;
      if (options.type !== void 0) query.type = options.type;
      if (options.limit !== void 0) query.limit = options.limit;
      if (options.before !== void 0) query.to_offset = options.before - 1;
      if (options.after !== void 0) {
        query.from_offset = options.after + 1;
        query.direction = "forward";
        return (await this.history(query)).messages;
      }
      query.direction = "backward";
      return (await this.history(query)).messages.reverse();
    }
    /**
     * Relays a WebRTC signal (`offer`, `answer`, `ice` or `bye`, with any JSON `data` up to 64 KiB)
     * to one agent of the channel; resolves once the server relayed it. Both agents must have
     * joined with `enableWebrtcRelay` (else `relay_disabled`); an absent agent is
     * `agent_not_present`. Signals are live only: one in flight when the connection drops fails with
     * `disconnected` and is not re-sent (one made while reconnecting is sent after the rejoin).
     * `WebRtcHelper` builds calls on it.
     */
    async signal(signal) {
      if (typeof signal !== "object" || signal === null || typeof signal.to !== "string" || signal.to.length === 0) {
        throw new SwitchboardError("invalid_argument", "signal() needs `to`, the agent to signal");
      }
      if (!SIGNAL_KINDS.includes(signal.kind)) {
        throw new SwitchboardError("invalid_argument", `signal kind is one of ${SIGNAL_KINDS.join(", ")}, not ${JSON.stringify(signal.kind)}`);
      }
      await this.request("signal", { to: signal.to, kind: signal.kind, data: signal.data ?? null }, false);
    }
    /**
     * Acknowledges an inbox message by its id (`delivery.message.id`): it leaves the inbox, and a
     * sender that asked for receipts gets `acknowledged`. Resolves once that is durable; rejects
     * with `not_found` when the message is not pending in this agent's inbox (acknowledged
     * already, dead-lettered, or never sent to it). An ack in flight when the connection drops is
     * re-sent after the rejoin (if the first one took effect, the second fails with `not_found`).
     */
    async ack(id) {
      await this.request("ack", ackPayload(id), true);
    }
    /**
     * Rejects an inbox message by its id: it is delivered again at once (`requeue`, the default)
     * until the server's `max_rejections` (3) is reached, then it becomes a dead letter;
     * `requeue: false` dead-letters it now. `reason` (at most 1024 bytes, else `invalid_payload`)
     * is kept with the dead letter and sent in the sender's receipt. Rejects with `not_found` like
     * `ack`. A reject in flight when the connection drops fails with `disconnected` and is not
     * re-sent: the message comes back anyway.
     */
    async reject(id, options = {}) {
      await this.request("reject", rejectPayload(id, options), false);
    }
    /**
     * Announces this agent in the tenant's directory: what it can do (`capabilities`, at most 32
     * strings of 1–64 bytes) and anything else about it (`metadata`, a JSON object of at most
     * 4 KiB). Replaces what it announced before; resolves with its card. The card is persisted
     * (it outlives the connection); the agent is `online` while it is in any of the tenant's
     * channels. Refusals: `invalid_payload`, `rate_limited` (the tenant holds
     * `max_announced_agents_per_tenant` cards), `forbidden`. Re-sent after a reconnect when the
     * reply was lost (it replaces the card with the same one).
     */
    async announce(capabilities, metadata) {
      return readCard(await this.request("announce", announcePayload(capabilities, metadata), true));
    }
    /** Replaces this agent's metadata (its capabilities stay); resolves with its card. Rejects
     * with `not_found` when the agent never announced itself. */
    async updateMetadata(metadata) {
      return readCard(await this.request("update_metadata", updateMetadataPayload(metadata), true));
    }
    /**
     * Finds the tenant's announced agents, by name: those with `capability`, whose metadata meets
     * every one of `filters` (`{"field": value}` equal, `{"field": {min?, max?}}` a number within
     * the bounds; fields may be dotted paths such as `"stats.reputation"`), online or not
     * (`online`), at most `limit` (1–1000, default 100). Temporary keys need the `presence`
     * capability on the channel `sys.discovery`.
     */
    async discover(query = {}) {
      const raw = await this.request("discover", discoverPayload(query), true);
      try {
        return readAgentCards(raw);
      } catch (e) {
        throw new SwitchboardError("internal", asError(e).message);
      }
    }
    /**
     * Sends a large payload to agent `to` (present in the channel or not) as a stream: `source`
     * (bytes, a `Blob`/`File`, a `ReadableStream` or an async iterable of `Uint8Array`s) is read
     * once, in chunks of 256 KiB with 8 in flight, and hashed as it goes; the stream is closed
     * with its SHA-256 and size, which the server verifies. Resolves with `{streamId, totalSize,
     * checksum}` once closed: the server holds every byte (spooled to disk) and pushes them to
     * the recipient as it accepts them; `streamComplete` tells when it verified them all.
     * `onOpen` gets the stream id first, `onProgress` the bytes the server holds after each
     * chunk. Chunks in flight when the socket drops are re-sent after the rejoin (the server
     * knows them by their number); the open itself, when the socket drops before its reply, fails
     * with `disconnected` instead (re-sending it could open a second stream). Rejects with
     * `cancelled` when either side cancels it, with the error of a `streamError`, and with the
     * server's code (`invalid_agent_name`, `message_too_large`, `rate_limited`, `forbidden`…);
     * after a failure, `resumeStream` continues it.
     */
    async sendStream(to, source, options = {}) {
      if (typeof to !== "string" || to.length === 0) {
        throw new SwitchboardError("invalid_argument", "sendStream() needs `to`, the receiving agent");
      }
      if (typeof options !== "object" || options === null) {
        throw new SwitchboardError("invalid_argument", "sendStream() takes an options object {name?, size?, contentType?, meta?, onOpen?, onProgress?}");
      }
      const reader = ByteReader.of(source);
      const described = describeSource(source);
      const open = { to };
      const name = options.name ?? described.name;
      const size = options.size ?? described.size;
      const contentType = options.contentType ?? described.contentType;
      if (name !== void 0) open.name = name;
      if (size !== void 0) open.size = size;
      if (contentType !== void 0) open.content_type = contentType;
      if (options.meta !== void 0) open.meta = options.meta;
      let position;
      try {
        position = readPosition(await this.request("stream_open", open, false));
      } catch (e) {
        reader.close();
        throw e;
      }
      const streamId = position.streamId;
      const abort = this.track(streamId);
      try {
        if (options.onOpen) this.callback(options.onOpen, streamId);
        return await pump(
          this.request.bind(this),
          streamId,
          reader,
          createSha256(),
          { seq: position.nextSeq, offset: position.offset },
          abort,
          (p) => this.callback(options.onProgress, p)
        );
      } finally {
        this.untrack(streamId, abort);
      }
    }
    /**
     * Continues stream `streamId`, which this agent (by name) opened and did not finish: after a
     * failed `sendStream`, on a new connection, after a server restart. `source` must yield the
     * same payload from its first byte: the part the server holds is read again only to rebuild
     * the checksum, the rest is sent. Resolves and rejects like `sendStream` (a source that
     * differs from what the server holds fails with `checksum_mismatch`; a stream that is gone,
     * or not this agent's, with `not_found`).
     */
    async resumeStream(streamId, source, options = {}) {
      checkStreamId(streamId);
      if (typeof options !== "object" || options === null) {
        throw new SwitchboardError("invalid_argument", "resumeStream() takes an options object {onProgress?}");
      }
      const reader = ByteReader.of(source);
      let position;
      try {
        position = readPosition(await this.request("stream_open", { to: "", stream_id: streamId }, true));
      } catch (e) {
        reader.close();
        throw e;
      }
      const abort = this.track(streamId);
      try {
        const hasher = createSha256();
        await skipHeld(reader, hasher, position.offset, abort);
        return await pump(
          this.request.bind(this),
          streamId,
          reader,
          hasher,
          { seq: position.nextSeq, offset: position.offset },
          abort,
          (p) => this.callback(options.onProgress, p)
        );
      } catch (e) {
        reader.close();
        throw e;
      } finally {
        this.untrack(streamId, abort);
      }
    }
    /**
     * Receives a stream offered to this agent (`offer`, or its id): the bytes go to `sink` in
     * order (a function, awaited when it returns a promise, or a `WritableStream`, closed at the
     * end), or without a sink are collected and returned as `bytes`. Acknowledges every MiB (the
     * checkpoint a later attempt resumes from, and the server's flow control); `onProgress` gets
     * the bytes received so far. At the end it verifies the size and SHA-256 itself, then
     * acknowledges the last byte (the sender gets `streamComplete`) and resolves with
     * `{streamId, totalSize, checksum, bytes?}`. After a reconnect it re-accepts from where it got
     * to by itself. To resume on a new connection, pass the bytes received before as
     * `resumeFrom` (a source like `sendStream`'s): the server sends only what follows. A checksum
     * that does not match cancels the stream and rejects with `checksum_mismatch`; a cancel by
     * either side rejects with `cancelled`; an unknown stream with `not_found`.
     */
    async receiveStream(offer, options = {}) {
      const streamId = typeof offer === "string" ? offer : offer?.streamId;
      checkStreamId(streamId);
      if (typeof options !== "object" || options === null) {
        throw new SwitchboardError("invalid_argument", "receiveStream() takes an options object {sink?, resumeFrom?, onProgress?}");
      }
      if (this.incoming.has(streamId)) {
        throw new SwitchboardError("invalid_argument", `stream ${streamId} is being received already`);
      }
      if (this.state === "closed") throw this.closedError();
      const parts = options.sink === void 0 ? [] : void 0;
      const sink = openSink(options.sink, parts ?? []);
      const hasher = createSha256();
      const received = options.resumeFrom === void 0 ? 0 : await readPrefix(options.resumeFrom, hasher, parts);
      if (this.incoming.has(streamId)) {
        throw new SwitchboardError("invalid_argument", `stream ${streamId} is being received already`);
      }
      const incoming = new Incoming(streamId, this.request.bind(this), sink, hasher, received, parts, (p) => this.callback(options.onProgress, p));
      this.incoming.set(streamId, incoming);
      void incoming.done.catch(() => void 0).finally(() => {
        if (this.incoming.get(streamId) === incoming) this.incoming.delete(streamId);
      });
      this.accept(incoming, received);
      return incoming.done;
    }
    /**
     * Cancels a stream this agent sends or receives, with an optional `reason`: both sides get
     * `streamCancelled`, the server deletes it, and a `sendStream` or `receiveStream` of it in
     * progress rejects with `cancelled`. Rejects with `not_found` for a stream that is gone.
     */
    async cancelStream(streamId, reason) {
      checkStreamId(streamId);
      if (reason !== void 0 && typeof reason !== "string") {
        throw new SwitchboardError("invalid_argument", "reason is a string");
      }
      const payload = { stream_id: streamId };
      if (reason !== void 0) payload.reason = reason;
      await this.request("stream_cancel", payload, false);
      this.failStream(streamId, cancelledError({ streamId, by: this.resolved.options.agentName, ...reason === void 0 ? {} : { reason } }));
    }
    /**
     * One page of history with every bound of the protocol's query (spec/protocol.md), from the
     * storage tier `pollSource` names (default: the connection's `pollSource`, else `"AUTO"`:
     * cache, then log, then database, stitched by offset). The page's `sources` tell which tier
     * served which offsets. Rejects with `no_history` for a tier the channel's storage policy does
     * not keep, `invalid_argument` for a source that is none.
     */
    async history(query = {}) {
      const raw = await this.request("history", historyPayload(query), true);
      try {
        return readHistoryPage(raw);
      } catch (e) {
        throw new SwitchboardError("internal", asError(e).message);
      }
    }
    /** The agents present now, asked of the server. */
    async presence() {
      const state = await this.request("presence", {}, true);
      return presenceList(state);
    }
    /**
     * Switches to a new API key without dropping the connection: sends the protocol's `auth` event
     * on the live socket and uses the key for every later reconnect. Without an argument, asks
     * `refreshApiKey`. Rejects with `invalid_key` if the server refuses it (the server then closes
     * the socket).
     */
    async refreshKey(apiKey) {
      let key = apiKey;
      if (key === void 0) {
        const refresh = this.resolved?.options.refreshApiKey;
        if (!refresh) throw new SwitchboardError("invalid_argument", "refreshKey() without a key needs the refreshApiKey option");
        key = await refresh();
      }
      if (typeof key !== "string" || key.length === 0) {
        throw new SwitchboardError("invalid_argument", "the new API key must be a non-empty string");
      }
      if (this.state === "closed") throw this.closedError();
      this.apiKey = key;
      if (this.state !== "joined" || !this.ws) return;
      await new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(ref);
          reject(new SwitchboardError("timeout", `no reply to auth within ${this.timeoutMs} ms`));
        }, this.timeoutMs);
        const ref = this.sendAuth(key, (result) => {
          clearTimeout(timer);
          if (result.ok) resolve();
          else reject(result.error);
        });
      });
    }
    /** Leaves the channel and closes the socket for good; pending and later calls fail with
     * `not_joined`. */
    async disconnect() {
      if (this.state === "closed") return;
      const ws = this.ws;
      this.finish(void 0, { code: 1e3, reason: "disconnect() was called" });
      if (ws && ws.readyState !== 3) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 1e3);
          ws.addEventListener("close", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    }
    addEventListener(type, listener, options) {
      super.addEventListener(type, listener, options);
    }
    removeEventListener(type, listener, options) {
      super.removeEventListener(type, listener, options);
    }
    // ---------------------------------------------------------------------------------------------
    // Events
    on(type, handler) {
      const listener = (event) => handler(event.detail);
      super.addEventListener(type, listener);
      return () => super.removeEventListener(type, listener);
    }
    emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    }
    emitError(error) {
      this.emit("error", error);
    }
    // ---------------------------------------------------------------------------------------------
    // Socket
    get timeoutMs() {
      return this.resolved?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    }
    openSocket() {
      const resolved = this.resolved;
      let ws;
      try {
        ws = new resolved.WebSocket(resolved.url);
      } catch (e) {
        this.lost(1006, `cannot open ${resolved.url}: ${asError(e).message}`);
        return;
      }
      this.ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        if (ws === this.ws) this.onOpen();
      };
      ws.onmessage = (event) => {
        if (ws === this.ws) this.onData(event.data);
      };
      ws.onclose = (event) => {
        if (ws === this.ws) this.lost(event.code, event.reason);
      };
      ws.onerror = () => void 0;
    }
    onOpen() {
      this.socketError = void 0;
      this.heard = true;
      this.heartbeatRef = void 0;
      const period = this.resolved.heartbeatMs;
      this.heartbeatTimer = setInterval(() => this.heartbeat(), period);
      this.sendAuth(this.apiKey, (result) => {
        if (!result.ok) {
          this.socketError = { code: result.error.code, message: messageOf(result.error) };
          if (this.firstJoin) this.fail(result.error);
          return;
        }
        this.sendJoin();
      });
    }
    heartbeat() {
      if (!this.heard && this.heartbeatRef !== void 0) {
        this.lost(4001, "no heartbeat reply in time");
        return;
      }
      this.heard = false;
      const ref = this.takeRef();
      this.heartbeatRef = ref;
      this.pending.set(ref, { kind: "heartbeat" });
      this.write({ joinRef: null, ref, topic: PHOENIX, event: "heartbeat", payload: {} });
    }
    sendAuth(apiKey, onReply) {
      const ref = this.takeRef();
      this.pending.set(ref, { kind: "auth", onReply });
      this.write({ joinRef: null, ref, topic: PHOENIX, event: "auth", payload: { api_key: apiKey } });
      return ref;
    }
    sendJoin() {
      const options = this.resolved.options;
      const ref = this.takeRef();
      this.joinRef = ref;
      this.kicked = void 0;
      const params = {
        agent_name: options.agentName,
        scope: options.apiKeyScope ?? "private",
        echo: options.echo ?? true,
        presence: options.presence ?? true
      };
      if (options.channelPassword !== void 0) params.password = options.channelPassword;
      if (options.meta !== void 0) params.meta = options.meta;
      const types = eventTypes(options);
      if (types !== void 0) params.event_types = types;
      const autoReceive = options.autoReceive ?? true;
      const resume = autoReceive ? this.tracker.resume() : void 0;
      if (resume) {
        params.since = resume.since;
        if (resume.epoch !== void 0) params.epoch = resume.epoch;
      }
      if (this.sessionId !== void 0) params.session_id = this.sessionId;
      if (options.enableWebrtcRelay) params.enable_webrtc_relay = true;
      if (options.storageEvents) params.kv_events = true;
      if (options.inbox) params.inbox = true;
      const source = pollSourceWire(options.pollSource);
      if (source !== void 0) params.poll_source = source;
      this.pending.set(ref, { kind: "join" });
      this.write({ joinRef: ref, ref, topic: this.topic, event: "phx_join", payload: params });
    }
    get topic() {
      return `channel:${this.resolved.options.channelName}`;
    }
    takeRef() {
      this.nextRef += 1;
      return String(this.nextRef);
    }
    write(frame) {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) return;
      if (frame.payload instanceof Uint8Array) {
        ws.send(encodeBinaryPush(frame.joinRef, frame.ref, frame.topic, frame.event, frame.payload));
      } else {
        ws.send(encodeText(frame));
      }
    }
    onData(data) {
      this.heard = true;
      let frame;
      try {
        if (typeof data === "string") frame = decodeText(data);
        else if (data instanceof ArrayBuffer) frame = decodeBinary(new Uint8Array(data));
        else if (ArrayBuffer.isView(data)) frame = decodeBinary(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        else return;
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", `unreadable frame from the server: ${asError(e).message}`));
        return;
      }
      if (frame.event === "phx_reply") {
        this.onReply(frame);
        return;
      }
      if (frame.topic === PHOENIX) {
        if (frame.event === "error" && isErrorReply(frame.payload)) {
          this.socketError = frame.payload;
          if (!this.firstJoin) this.emitError(SwitchboardError.fromReply(frame.payload));
        } else if (frame.event === "key_expiring" && this.resolved?.options.refreshApiKey) {
          this.refreshKey().catch((e) => this.emitError(asError(e)));
        }
        return;
      }
      if (frame.topic !== this.topic) return;
      if (frame.joinRef !== null && frame.joinRef !== this.joinRef) return;
      switch (frame.event) {
        case "message":
          this.onMessageFrame(frame.payload);
          break;
        case "presence_state":
          this.handlePresence(this.presenceTracker.syncState(frame.payload));
          break;
        case "presence_diff":
          this.handlePresence(this.presenceTracker.syncDiff(frame.payload));
          break;
        case "signal":
          this.onSignalFrame(frame.payload);
          break;
        case "kv_change":
          this.onStorageFrame(frame.payload);
          break;
        case "new_message":
          this.onInboxFrame(frame.payload);
          break;
        case "receipt":
          this.onReceiptFrame(frame.payload);
          break;
        case "stream_offer":
        case "stream_data":
        case "stream_end":
        case "stream_progress":
        case "stream_checkpoint":
        case "stream_complete":
        case "stream_cancelled":
        case "stream_error":
          this.onStreamFrame(frame.event, frame.payload);
          break;
        case "kicked":
          this.kicked = isErrorReply(frame.payload) ? frame.payload : { code: "internal", message: `unreadable kick: ${JSON.stringify(frame.payload)}` };
          break;
        case "phx_close": {
          const reply = this.kicked ?? { code: "not_joined", message: "the server closed the channel" };
          const error = SwitchboardError.fromReply(reply);
          this.emitError(error);
          this.finish(error, { code: 1e3, reason: error.message });
          break;
        }
        case "phx_error":
          this.sendJoin();
          break;
        default:
          break;
      }
    }
    onMessageFrame(payload) {
      let message;
      try {
        message = isBinaryPayload(payload) ? readBinaryMessage(payload.binary) : readJsonMessage(payload);
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", `unreadable message: ${asError(e).message}`));
        return;
      }
      if (!this.tracker.accept(message.offset)) return;
      this.emit("message", message);
      for (const listener of this.listeners) listener.push(message);
      if (message.type === AGENT_MESSAGE_TYPE && message.from === DISCOVERY_SENDER && this.watchesDirectory) {
        let update;
        try {
          update = readAgentUpdate(message.data);
        } catch (e) {
          this.emitError(new SwitchboardError("malformed_frame", asError(e).message));
          return;
        }
        this.emit("agent", update);
        for (const listener of this.agentListeners) listener.push(update);
      }
    }
    /** Whether this is the tenant's discovery channel, where the server announces directory
     * changes. */
    get watchesDirectory() {
      const options = this.resolved.options;
      return options.channelName === DISCOVERY_CHANNEL && (options.apiKeyScope ?? "private") === "private";
    }
    onSignalFrame(payload) {
      const signal = payload;
      if (typeof signal?.from !== "string" || !SIGNAL_KINDS.includes(signal.kind)) {
        this.emitError(new SwitchboardError("malformed_frame", `unreadable signal: ${JSON.stringify(payload)}`));
        return;
      }
      this.emit("signal", { from: signal.from, kind: signal.kind, data: signal.data ?? null });
    }
    onStorageFrame(payload) {
      let change;
      try {
        change = readStorageChange(payload);
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", asError(e).message));
        return;
      }
      this.emit("storage", change);
    }
    onInboxFrame(payload) {
      let delivery;
      try {
        delivery = readInboxMessage(payload);
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", `unreadable new_message: ${asError(e).message}`));
        return;
      }
      this.emit("inbox", delivery);
      for (const listener of this.inboxListeners) listener.push(delivery);
    }
    onReceiptFrame(payload) {
      let receipt;
      try {
        receipt = readReceipt(payload);
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", asError(e).message));
        return;
      }
      this.emit("receipt", receipt);
    }
    onStreamFrame(event, payload) {
      try {
        switch (event) {
          case "stream_offer": {
            const offer = readStreamOffer(payload);
            const incoming = this.incoming.get(offer.streamId);
            if (incoming) {
              if (!incoming.ending) this.accept(incoming, incoming.written);
            } else {
              this.emit("streamOffer", offer);
            }
            break;
          }
          case "stream_data": {
            if (!isBinaryPayload(payload)) throw new Error("stream_data is a binary push");
            const { header, bytes } = decodeStreamEnvelope(payload.binary);
            const { streamId, offset } = readDataHeader(header);
            this.incoming.get(streamId)?.data(offset, bytes);
            break;
          }
          case "stream_end": {
            const end = readStreamEnd(payload);
            this.incoming.get(end.streamId)?.end(end.checksum, end.totalSize);
            break;
          }
          case "stream_progress":
            this.emit("streamProgress", readStreamProgress(payload));
            break;
          case "stream_checkpoint":
            this.emit("streamCheckpoint", readStreamCheckpoint(payload));
            break;
          case "stream_complete":
            this.emit("streamComplete", readStreamComplete(payload));
            break;
          case "stream_cancelled": {
            const cancelled = readStreamCancelled(payload);
            this.failStream(cancelled.streamId, cancelledError(cancelled));
            this.emit("streamCancelled", cancelled);
            break;
          }
          case "stream_error": {
            const failure = readStreamError(payload);
            this.failStream(failure.streamId, new SwitchboardError(failure.code, failure.message));
            this.emit("streamError", failure);
            break;
          }
        }
      } catch (e) {
        this.emitError(new SwitchboardError("malformed_frame", `unreadable ${event}: ${asError(e).message}`));
      }
    }
    /** Sends `stream_accept` from `offset` for a stream being received. A reply lost to a dropped
     * socket does not matter: the rejoin offers the stream again, and it is accepted again. */
    accept(incoming, offset) {
      this.request("stream_accept", { stream_id: incoming.streamId, offset }, false).then(
        (reply) => {
          try {
            readStreamOffer(reply);
          } catch (e) {
            incoming.abort.fail(new SwitchboardError("internal", asError(e).message));
          }
        },
        (e) => {
          const error = asError(e);
          if (error.code !== "disconnected") incoming.abort.fail(error);
        }
      );
    }
    /** Registers a stream being sent, so cancel and error events (and the end of the connection)
     * reach it. */
    track(streamId) {
      const abort = new Abort();
      if (this.state === "closed") abort.fail(this.closedError());
      const set = this.outgoing.get(streamId) ?? /* @__PURE__ */ new Set();
      set.add(abort);
      this.outgoing.set(streamId, set);
      return abort;
    }
    untrack(streamId, abort) {
      const set = this.outgoing.get(streamId);
      set?.delete(abort);
      if (set?.size === 0) this.outgoing.delete(streamId);
    }
    /** Fails whatever this connection does with stream `streamId`. */
    failStream(streamId, error) {
      for (const abort of this.outgoing.get(streamId) ?? []) abort.fail(error);
      this.incoming.get(streamId)?.abort.fail(error);
    }
    /** Calls an application callback; what it throws becomes an `error` event. */
    callback(fn, value) {
      if (!fn) return;
      try {
        fn(value);
      } catch (e) {
        this.emitError(new SwitchboardError("internal", `a stream callback threw: ${asError(e).message}`, { cause: e }));
      }
    }
    handlePresence(change) {
      this.emit("presence", { agents: this.presenceTracker.list(), joined: change.joined, left: change.left });
    }
    onReply(frame) {
      const ref = frame.ref;
      if (ref === null) return;
      const pending = this.pending.get(ref);
      if (!pending) return;
      this.pending.delete(ref);
      const body = frame.payload;
      const status = body?.status;
      const response = body?.response ?? {};
      const error = status === "ok" ? void 0 : isErrorReply(response) ? SwitchboardError.fromReply(response) : new SwitchboardError("internal", `unexpected reply ${JSON.stringify(body)}`);
      switch (pending.kind) {
        case "heartbeat":
          if (this.heartbeatRef === ref) this.heartbeatRef = void 0;
          break;
        case "auth":
          pending.onReply(error ? { ok: false, error } : { ok: true });
          break;
        case "join":
          if (ref === this.joinRef) this.onJoinReply(response, error);
          break;
        case "request":
          clearTimeout(pending.request.timer);
          if (error) pending.request.reject(error);
          else pending.request.resolve(response);
          break;
      }
    }
    onJoinReply(response, error) {
      if (error) {
        if (this.firstJoin) {
          this.fail(error);
        } else {
          this.emitError(error);
          this.finish(error, { code: 1e3, reason: error.message });
        }
        return;
      }
      const raw = response;
      const reply = {
        channel: raw.channel,
        scope: raw.scope,
        agentName: raw.agent_name,
        sessionId: raw.session_id,
        epoch: raw.epoch,
        head: raw.head,
        persistent: raw.persistent
      };
      if (raw.gap) reply.gap = raw.gap;
      this.reply = reply;
      this.tracker.onJoin(raw);
      this.sessionId = raw.session_id;
      this.attempt = 0;
      this.keyRetried = false;
      this.state = "joined";
      const first = this.firstJoin;
      this.firstJoin = void 0;
      this.emit("connect", { reply, reconnected: first === void 0 });
      first?.resolve(reply);
      if (raw.gap) this.emit("gap", raw.gap);
      const waiting = this.queue.splice(0).sort((a, b) => a.seq - b.seq);
      for (const request of waiting) this.sendOrQueue(request);
    }
    /** The socket was lost without us closing it. */
    lost(code, reason) {
      if (this.state === "closed") return;
      this.dropSocket();
      const error = this.closeError(code, reason);
      if (this.firstJoin) {
        this.fail(error);
        return;
      }
      const options = this.resolved.options;
      const keyRefused = code === 4500 || code === 4503 || code === 4504;
      const refreshable = keyRefused && options.refreshApiKey !== void 0 && !this.keyRetried;
      if (!shouldReconnect(code) && !refreshable || options.reconnect === false) {
        this.emitError(error);
        this.finish(error, { code, reason: reason || error.message });
        return;
      }
      if (keyRefused) this.keyRetried = true;
      this.state = "reconnecting";
      this.requeue();
      this.emit("disconnect", { code, reason: reason || error.message, willReconnect: true, error });
      this.scheduleReconnect(keyRefused);
    }
    dropSocket() {
      clearInterval(this.heartbeatTimer);
      this.heartbeatTimer = void 0;
      const ws = this.ws;
      this.ws = void 0;
      if (ws) {
        ws.onopen = null;
        ws.onmessage = null;
        ws.onclose = null;
        if (ws.readyState === 0 || ws.readyState === 1) {
          try {
            ws.close(1e3);
          } catch {
          }
        }
      }
      this.joinRef = void 0;
      if (this.state === "joined") this.state = "reconnecting";
    }
    /** Moves requests in flight back to the queue (or fails those that cannot be re-sent). */
    requeue() {
      for (const pending of this.pending.values()) {
        if (pending.kind === "request") {
          if (pending.request.retry) this.queue.push(pending.request);
          else {
            clearTimeout(pending.request.timer);
            pending.request.reject(
              new SwitchboardError("disconnected", "the connection dropped before the reply; the request may or may not have taken effect")
            );
          }
        } else if (pending.kind === "auth") {
          pending.onReply({
            ok: false,
            error: new SwitchboardError("disconnected", "the connection dropped before the auth reply; the key is used for the reconnect")
          });
        }
      }
      this.pending.clear();
      this.queue.sort((a, b) => a.seq - b.seq);
    }
    scheduleReconnect(forceRefresh) {
      const delay = backoffDelay(this.resolved.options.backoff ?? {}, this.attempt);
      this.attempt += 1;
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = void 0;
        void this.reconnect(forceRefresh);
      }, delay);
    }
    async reconnect(forceRefresh) {
      const refresh = this.resolved.options.refreshApiKey;
      if (refresh) {
        try {
          const key = await refresh();
          if (this.state === "closed") return;
          if (forceRefresh && key === this.apiKey) {
            const error = new SwitchboardError("invalid_key", "the server refused the API key and refreshApiKey returned the same one");
            this.emitError(error);
            this.finish(error, { code: 1e3, reason: error.message });
            return;
          }
          if (typeof key === "string" && key.length > 0) this.apiKey = key;
        } catch (e) {
          if (this.state === "closed") return;
          this.emitError(new SwitchboardError("invalid_key", `refreshApiKey failed: ${asError(e).message}`, { cause: e }));
          this.scheduleReconnect(forceRefresh);
          return;
        }
      }
      if (this.state === "closed") return;
      this.openSocket();
    }
    closeError(code, reason) {
      if (this.socketError) return SwitchboardError.fromReply(this.socketError, code);
      const known = CloseCodes[code];
      const text = reason ? `the connection closed (${code}): ${reason}` : `the connection closed (${code})`;
      return new SwitchboardError(known ?? "connection_failed", text, { closeCode: code });
    }
    /** The first connect failed: nothing is retried. */
    fail(error) {
      const first = this.firstJoin;
      this.firstJoin = void 0;
      this.finish(error, void 0);
      first?.reject(error);
    }
    /** Ends the connection for good. */
    finish(error, info) {
      if (this.state === "closed") return;
      const wasUp = this.state !== "idle" && this.state !== "connecting";
      this.state = "closed";
      this.closedWith = error;
      this.dropSocket();
      this.state = "closed";
      clearTimeout(this.reconnectTimer);
      clearInterval(this.keyTimer);
      this.reconnectTimer = void 0;
      this.keyTimer = void 0;
      const reason = error ?? this.closedError();
      for (const pending of this.pending.values()) {
        if (pending.kind === "request") {
          clearTimeout(pending.request.timer);
          pending.request.reject(reason);
        } else if (pending.kind === "auth") {
          pending.onReply({ ok: false, error: reason });
        }
      }
      this.pending.clear();
      for (const request of this.queue.splice(0)) {
        clearTimeout(request.timer);
        request.reject(reason);
      }
      this.presenceTracker.clear();
      for (const listener of [...this.listeners]) listener.end(error);
      for (const listener of [...this.inboxListeners]) listener.end(error);
      for (const listener of [...this.agentListeners]) listener.end(error);
      for (const set of this.outgoing.values()) for (const abort of set) abort.fail(reason);
      for (const incoming of this.incoming.values()) incoming.abort.fail(reason);
      if (wasUp && info) {
        const detail = { code: info.code, reason: info.reason, willReconnect: false };
        if (error) detail.error = error;
        this.emit("disconnect", detail);
      }
    }
    closedError() {
      return this.closedWith ?? new SwitchboardError("not_joined", "disconnect() left the channel; connect a new AgentConnection to join again");
    }
    // ---------------------------------------------------------------------------------------------
    // Requests
    request(event, payload, retry) {
      if (this.state === "closed") return Promise.reject(this.closedError());
      if (this.state === "idle") {
        return Promise.reject(new SwitchboardError("not_joined", "call connect() before sending or reading"));
      }
      return new Promise((resolve, reject) => {
        this.nextSeq += 1;
        const request = { seq: this.nextSeq, event, payload, retry, resolve, reject, timer: void 0 };
        request.timer = setTimeout(() => {
          this.forget(request);
          reject(new SwitchboardError("timeout", `no reply to ${event} within ${this.timeoutMs} ms`));
        }, this.timeoutMs);
        this.sendOrQueue(request);
      });
    }
    sendOrQueue(request) {
      if (this.state !== "joined" || !this.ws) {
        this.queue.push(request);
        return;
      }
      const ref = this.takeRef();
      this.pending.set(ref, { kind: "request", request });
      this.write({ joinRef: this.joinRef ?? null, ref, topic: this.topic, event: request.event, payload: request.payload });
    }
    fireAndForget(event, payload) {
      if (this.state === "closed") throw this.closedError();
      if (this.state !== "joined" || !this.ws) {
        throw new SwitchboardError("disconnected", "not connected right now; a noReply message is not queued");
      }
      this.write({ joinRef: this.joinRef ?? null, ref: null, topic: this.topic, event, payload });
    }
    /** Removes a request that timed out from wherever it waits. */
    forget(request) {
      const i = this.queue.indexOf(request);
      if (i >= 0) this.queue.splice(i, 1);
      for (const [ref, pending] of this.pending) {
        if (pending.kind === "request" && pending.request === request) this.pending.delete(ref);
      }
    }
  };
  async function watchAgents(options, handler) {
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "watchAgents() takes an options object {url?, apiKey, …}");
    }
    const watcher = new AgentConnection();
    if (handler) watcher.onAgentUpdate(handler);
    await watcher.connect({
      presence: false,
      eventTypes: [AGENT_MESSAGE_TYPE],
      ...options,
      agentName: options.agentName ?? `watcher-${randomId().slice(0, 12)}`,
      channelName: DISCOVERY_CHANNEL,
      apiKeyScope: "private"
    });
    return watcher;
  }
  async function resolveOptions(options) {
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "connect() takes an options object");
    }
    for (const field of ["channelName", "agentName", "apiKey"]) {
      if (typeof options[field] !== "string" || options[field].length === 0) {
        throw new SwitchboardError("invalid_argument", `connect() needs ${field}`);
      }
    }
    if (options.useWebsocket === false) {
      throw new SwitchboardError(
        "unsupported",
        "useWebsocket: false is not available: the server has no long-polling transport yet; the HTTP API (/v1/channels/…) serves backends that cannot hold a socket"
      );
    }
    if (options.channelId !== void 0) {
      throw new SwitchboardError("unsupported", "channelId is not available: channels are addressed by channelName");
    }
    if (options.apiKeyScope !== void 0 && options.apiKeyScope !== "private" && options.apiKeyScope !== "public") {
      throw new SwitchboardError("invalid_argument", "apiKeyScope is `private` or `public`");
    }
    pollSourceWire(options.pollSource);
    const base = options.url ?? globalThis.location?.origin;
    if (!base) throw new SwitchboardError("invalid_argument", "connect() needs url outside a browser page");
    return {
      options: { ...options },
      url: socketUrl(base),
      WebSocket: options.WebSocket ?? await defaultWebSocket(),
      timeoutMs: options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
      heartbeatMs: Math.max(options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_MS, 10)
    };
  }
  function eventTypes(options) {
    if (options.autoReceive === false) return [];
    const custom = options.customEventType;
    const types = [...options.eventTypes ?? [], ...custom === void 0 ? [] : Array.isArray(custom) ? custom : [custom]];
    return options.eventTypes === void 0 && custom === void 0 ? void 0 : types;
  }
  function socketUrl(base) {
    let url;
    try {
      url = new URL(base);
    } catch {
      throw new SwitchboardError("invalid_argument", `url ${JSON.stringify(base)} is not a URL`);
    }
    if (url.protocol === "http:") url.protocol = "ws:";
    else if (url.protocol === "https:") url.protocol = "wss:";
    else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
      throw new SwitchboardError("invalid_argument", `url ${JSON.stringify(base)}: use http(s):// or ws(s)://`);
    }
    let path = url.pathname.replace(/\/+$/, "");
    if (path.endsWith("/socket")) path += "/websocket";
    else if (!path.endsWith("/socket/websocket")) path += "/socket/websocket";
    url.pathname = path;
    url.search = "?vsn=2.0.0";
    url.hash = "";
    return url.toString();
  }
  async function defaultWebSocket() {
    const global = globalThis.WebSocket;
    if (global) return global;
    const name = "ws";
    try {
      const mod = await import(
        /* @vite-ignore */
        name
      );
      const ctor = mod.default ?? mod.WebSocket;
      if (ctor) return ctor;
    } catch {
    }
    throw new SwitchboardError(
      "invalid_argument",
      "no WebSocket implementation: use Node 22+, install the `ws` package, or pass the WebSocket option"
    );
  }
  function toBytes(value) {
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    throw new SwitchboardError("invalid_argument", "attachments are Uint8Array, ArrayBuffer or typed arrays");
  }
  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function checkStreamId(streamId) {
    if (typeof streamId !== "string" || streamId.length === 0) {
      throw new SwitchboardError("invalid_argument", "a stream is named by its id (`offer.streamId`, a non-empty string)");
    }
  }
  function readCard(raw) {
    try {
      return readAgentCard(raw);
    } catch (e) {
      throw new SwitchboardError("internal", asError(e).message);
    }
  }
  function asError(e) {
    if (e instanceof SwitchboardError) return e;
    return new SwitchboardError("internal", e instanceof Error ? e.message : String(e), { cause: e });
  }
  function messageOf(error) {
    const prefix = `${error.code}: `;
    return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
  }

  // src/channels.ts
  var STORAGE_POLICIES = ["ephemeral", "cache", "log", "persistent"];
  var RETENTION_FIELDS = { maxMessages: "max_messages", maxAgeSecs: "max_age_secs" };
  var CACHE_FIELDS = { maxMessages: "max_messages", maxBytes: "max_bytes", ttlSecs: "ttl_secs" };
  var LOG_FIELDS = { maxAgeSecs: "max_age_secs" };
  function createChannelPayload(name, scope, options) {
    if (typeof name !== "string" || name.length === 0) {
      throw new SwitchboardError("invalid_argument", "the channel name is a non-empty string");
    }
    if (typeof options !== "object" || options === null || Array.isArray(options)) {
      throw new SwitchboardError("invalid_argument", "createChannel() takes an options object {password?, storage?, retention?}");
    }
    checkKeys("createChannel() options", options, ["password", "storage", "retention"]);
    const body = { name, scope };
    if (options.password !== void 0) {
      if (typeof options.password !== "string") throw new SwitchboardError("invalid_argument", "password is a string");
      body.password = options.password;
    }
    if (options.storage !== void 0) {
      if (!STORAGE_POLICIES.includes(options.storage)) {
        throw new SwitchboardError(
          "invalid_argument",
          `storage is one of ${STORAGE_POLICIES.map((p) => `"${p}"`).join(", ")}, not ${JSON.stringify(options.storage)}`
        );
      }
      body.storage = options.storage;
    }
    if (options.retention !== void 0) body.retention = retentionWire(options.retention);
    return body;
  }
  function retentionWire(retention) {
    const wire = countsWire("retention", retention, RETENTION_FIELDS, ["cache", "log"]);
    if (retention.cache !== void 0) wire.cache = countsWire("retention.cache", retention.cache, CACHE_FIELDS);
    if (retention.log !== void 0) wire.log = countsWire("retention.log", retention.log, LOG_FIELDS);
    return wire;
  }
  function countsWire(what, value, fields, nested = []) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new SwitchboardError("invalid_argument", `${what} is an object`);
    }
    checkKeys(what, value, [...Object.keys(fields), ...nested]);
    const wire = {};
    for (const [name, wireName] of Object.entries(fields)) {
      const count3 = value[name];
      if (count3 === void 0) continue;
      if (typeof count3 !== "number" || !Number.isSafeInteger(count3) || count3 < 0) {
        throw new SwitchboardError("invalid_argument", `${what}.${name} is an integer ≥ 0, not ${JSON.stringify(count3)}`);
      }
      wire[wireName] = count3;
    }
    return wire;
  }
  function checkKeys(what, value, allowed) {
    for (const key of Object.keys(value)) {
      if (value[key] !== void 0 && !allowed.includes(key)) {
        throw new SwitchboardError("invalid_argument", `${what} takes ${allowed.join(", ")}; not ${key}`);
      }
    }
  }
  function readChannelInfo(raw) {
    const c = raw;
    if (typeof c?.name !== "string" || typeof c.epoch !== "string" || typeof c.head !== "number" || typeof c.first_available !== "number" || typeof c.storage !== "string") {
      throw new Error(`unreadable channel info: ${JSON.stringify(raw)}`);
    }
    const info = {
      name: c.name,
      scope: c.scope,
      epoch: c.epoch,
      head: c.head,
      firstAvailable: c.first_available,
      storage: c.storage,
      retention: readRetention(c.retention),
      hasPassword: c.has_password === true,
      createdAt: typeof c.created_at === "number" ? c.created_at : 0,
      agents: typeof c.agents === "number" ? c.agents : 0
    };
    if (Array.isArray(c.members)) info.members = c.members.filter((m) => typeof m === "string");
    if (typeof c.expires_at === "number") info.expiresAt = c.expires_at;
    return info;
  }
  function readRetention(raw) {
    const retention = readCounts(raw, RETENTION_FIELDS);
    const r = raw;
    if (isObject2(r?.cache)) retention.cache = readCounts(r.cache, CACHE_FIELDS);
    if (isObject2(r?.log)) retention.log = readCounts(r.log, LOG_FIELDS);
    return retention;
  }
  function readCounts(raw, fields) {
    const out = {};
    if (!isObject2(raw)) return out;
    for (const [name, wireName] of Object.entries(fields)) {
      const value = raw[wireName];
      if (typeof value === "number") out[name] = value;
    }
    return out;
  }
  function isObject2(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }

  // src/http.ts
  var DEFAULT_TIMEOUT_MS2 = 1e4;
  var MAX_ERROR_BODY = 512;
  var HttpClient = class {
    constructor(options) {
      /** The HTTP base URL every path is appended to. */
      __publicField(this, "baseUrl");
      __publicField(this, "apiKey");
      __publicField(this, "scope");
      __publicField(this, "channelPassword");
      __publicField(this, "timeoutMs");
      __publicField(this, "fetchImpl");
      if (typeof options !== "object" || options === null) {
        throw new SwitchboardError("invalid_argument", "new HttpClient() takes an options object");
      }
      if (typeof options.apiKey !== "string" || options.apiKey.length === 0) {
        throw new SwitchboardError("invalid_argument", "new HttpClient() needs apiKey");
      }
      if (options.apiKeyScope !== void 0 && options.apiKeyScope !== "private" && options.apiKeyScope !== "public") {
        throw new SwitchboardError("invalid_argument", "apiKeyScope is `private` or `public`");
      }
      const base = options.url ?? globalThis.location?.origin;
      if (!base) throw new SwitchboardError("invalid_argument", "new HttpClient() needs url outside a browser page");
      const fetchImpl = options.fetch ?? globalThis.fetch;
      if (typeof fetchImpl !== "function") {
        throw new SwitchboardError("invalid_argument", "no fetch: use Node 18+ or a browser, or pass the fetch option");
      }
      this.baseUrl = httpBaseUrl(base);
      this.apiKey = options.apiKey;
      this.scope = options.apiKeyScope ?? "private";
      this.channelPassword = options.channelPassword;
      this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS2;
      this.fetchImpl = fetchImpl;
    }
    /**
     * Creates channel `channelName` in the client's scope with a storage policy (`"persistent"`,
     * the default, keeps cache, log and database; `"log"` cache and log; `"cache"` memory only;
     * `"ephemeral"` nothing) and retention; resolves with its info. Rejects with `channel_exists`
     * when it exists already.
     */
    async createChannel(channelName, options = {}) {
      const body = createChannelPayload(channelName, this.scope, options);
      return channelInfo(await this.call("POST", "/v1/channels", body, void 0, false));
    }
    /** Describes channel `channelName`: epoch, head, storage policy, retention in force…; rejects
     * with `channel_not_found` when there is none. */
    async channel(channelName) {
      return channelInfo(await this.call("GET", channelPath(channelName)));
    }
    /** Deletes channel `channelName`, its messages and its storage; agents present are kicked
     * with `channel_deleted`. Rejects with `channel_not_found` when there is none. */
    async deleteChannel(channelName) {
      await this.call("DELETE", channelPath(channelName));
    }
    /**
     * One page of the channel's history (every message, direct ones too), with the bounds of
     * `AgentConnection.history` and `pollSource`, the storage tier to read (default `"AUTO"`:
     * cache, then log, then database). The page's `sources` tell which tier served which offsets.
     * Rejects with `no_history` for a tier the channel's storage policy does not keep.
     */
    async history(channelName, query = {}) {
      const raw = await this.call("GET", channelPath(channelName, "messages"), void 0, historyParams(query));
      try {
        return readHistoryPage(raw);
      } catch (e) {
        throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
      }
    }
    /**
     * Leases up to `max` (default 10, at most 100) messages of `agentName`'s inbox in the channel,
     * oldest first (none when nothing waits). Each must be acknowledged or rejected within
     * `visibilityTimeoutMs` (default: the server's, 30 s), else it is delivered again with a
     * higher `deliveryCount`.
     */
    async inboxReceive(channelName, agentName, options = {}) {
      const body = {};
      if (options.max !== void 0) body.max = count2("max", options.max, 1);
      if (options.visibilityTimeoutMs !== void 0) {
        body.visibility_timeout_ms = count2("visibilityTimeoutMs", options.visibilityTimeoutMs, 1);
      }
      const raw = await this.call("POST", inboxPath(channelName, agentName, "receive"), body);
      return (raw.messages ?? []).map(readInboxMessage);
    }
    /** Acknowledges a message of `agentName`'s inbox: it leaves the inbox. Rejects with
     * `not_found` when it is not pending there. */
    async inboxAck(channelName, agentName, id) {
      await this.call("POST", inboxPath(channelName, agentName, "ack"), ackPayload(id));
    }
    /** Rejects a message of `agentName`'s inbox: it comes back (`requeue`, the default) until
     * `max_rejections`, or becomes a dead letter now (`requeue: false`). `not_found` like
     * `inboxAck`. */
    async inboxReject(channelName, agentName, id, options = {}) {
      await this.call("POST", inboxPath(channelName, agentName, "reject"), rejectPayload(id, options));
    }
    /** One page of the channel's dead letters sent by this key's tenant, oldest first; pass
     * `next` as `after` for the following page. */
    async deadLetters(channelName, query = {}) {
      const params = new URLSearchParams();
      if (query.recipient !== void 0) params.set("recipient", query.recipient);
      if (query.after !== void 0) params.set("after", query.after);
      if (query.limit !== void 0) params.set("limit", String(count2("limit", query.limit, 1)));
      const raw = await this.call("GET", channelPath(channelName, "dead_letters"), void 0, params);
      const page = { entries: (raw.entries ?? []).map(readDeadLetter) };
      if (typeof raw.next === "string") page.next = raw.next;
      return page;
    }
    /** Deletes one of this tenant's dead letters by its message id; `not_found` when there is none. */
    async deleteDeadLetter(channelName, id) {
      if (typeof id !== "string" || id.length === 0) {
        throw new SwitchboardError("invalid_argument", "a dead letter is named by its message id (a non-empty string)");
      }
      await this.call("DELETE", channelPath(channelName, "dead_letters", id));
    }
    /**
     * Announces agent `agentName` in the tenant's directory (for backends that act as agents, or
     * register them): its `capabilities` and `metadata` (a JSON object, at most 4 KiB) replace
     * what it announced before. Resolves with its card (`online` while an agent of that name is
     * in one of the tenant's channels). Needs `publish` on `sys.discovery` as that agent.
     */
    async announceAgent(agentName, capabilities, metadata) {
      return card(await this.call("PUT", agentPath(agentName), announcePayload(capabilities, metadata), void 0, false));
    }
    /** Replaces announced agent `agentName`'s metadata; resolves with its card, rejects with
     * `not_found` when it never announced itself. */
    async updateAgentMetadata(agentName, metadata) {
      return card(await this.call("PATCH", agentPath(agentName), updateMetadataPayload(metadata), void 0, false));
    }
    /** Agent `agentName`'s card; rejects with `not_found` when it never announced itself (or was
     * removed). */
    async agent(agentName) {
      return card(await this.call("GET", agentPath(agentName), void 0, void 0, false));
    }
    /** Removes agent `agentName`'s card from the directory (watchers see `removed`); rejects with
     * `not_found` when there is none. */
    async removeAgent(agentName) {
      await this.call("DELETE", agentPath(agentName), void 0, void 0, false);
    }
    /** Finds the tenant's announced agents, by name, as `AgentConnection.discover` does. Needs
     * `presence` on `sys.discovery`. */
    async discover(query = {}) {
      const raw = await this.call("POST", "/v1/agents/discover", discoverPayload(query), void 0, false);
      try {
        return readAgentCards(raw);
      } catch (e) {
        throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
      }
    }
    /** Sends one request; resolves with the JSON body (`{}` for 204), rejects with the server's
     * `{code, message}` as a `SwitchboardError`. `scoped`: the path names a channel, which is in
     * the client's scope (the agent directory is always the tenant's). */
    async call(method, path, body, params = new URLSearchParams(), scoped = true) {
      if (scoped && this.scope === "public") params.set("scope", "public");
      const query = params.toString();
      const url = `${this.baseUrl}${path}${query ? `?${query}` : ""}`;
      const headers = { authorization: `Bearer ${this.apiKey}` };
      if (body !== void 0) headers["content-type"] = "application/json";
      if (this.channelPassword !== void 0) headers["x-channel-password"] = this.channelPassword;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), this.timeoutMs);
      try {
        const init = { method, headers, signal: controller.signal };
        if (body !== void 0) init.body = JSON.stringify(body);
        const response = await this.fetchImpl(url, init);
        const text = await response.text();
        if (!response.ok) throw errorFromBody(response.status, text);
        if (text.length === 0) return {};
        try {
          return JSON.parse(text);
        } catch {
          throw new SwitchboardError("internal", `${method} ${path}: the response is not JSON`);
        }
      } catch (e) {
        if (e instanceof SwitchboardError) throw e;
        if (controller.signal.aborted) {
          throw new SwitchboardError("timeout", `no response to ${method} ${path} within ${this.timeoutMs} ms`);
        }
        throw new SwitchboardError("connection_failed", `${method} ${url} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      } finally {
        clearTimeout(timer);
      }
    }
  };
  function httpBaseUrl(base) {
    let url;
    try {
      url = new URL(base);
    } catch {
      throw new SwitchboardError("invalid_argument", `url ${JSON.stringify(base)} is not a URL`);
    }
    if (url.protocol === "ws:") url.protocol = "http:";
    else if (url.protocol === "wss:") url.protocol = "https:";
    else if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new SwitchboardError("invalid_argument", `url ${JSON.stringify(base)}: use http(s):// or ws(s)://`);
    }
    const path = url.pathname.replace(/\/+$/, "").replace(/\/socket(\/websocket)?$/, "");
    return `${url.origin}${path}`;
  }
  function channelPath(channelName, ...rest) {
    if (typeof channelName !== "string" || channelName.length === 0) {
      throw new SwitchboardError("invalid_argument", "the channel name is a non-empty string");
    }
    return ["", "v1", "channels", channelName, ...rest].map(encodeURIComponent).join("/");
  }
  function inboxPath(channelName, agentName, action) {
    if (typeof agentName !== "string" || agentName.length === 0) {
      throw new SwitchboardError("invalid_argument", "the agent name is a non-empty string");
    }
    return channelPath(channelName, "inbox", agentName, action);
  }
  function agentPath(agentName) {
    if (typeof agentName !== "string" || agentName.length === 0) {
      throw new SwitchboardError("invalid_argument", "the agent name is a non-empty string");
    }
    return ["", "v1", "agents", agentName].map(encodeURIComponent).join("/");
  }
  function channelInfo(raw) {
    try {
      return readChannelInfo(raw);
    } catch (e) {
      throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
    }
  }
  function card(raw) {
    try {
      return readAgentCard(raw);
    } catch (e) {
      throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
    }
  }
  function errorFromBody(status, text) {
    let body;
    try {
      body = JSON.parse(text);
    } catch {
    }
    if (isErrorReply(body)) return SwitchboardError.fromReply(body);
    const shown = text.length > MAX_ERROR_BODY ? `${text.slice(0, MAX_ERROR_BODY)}…` : text;
    return new SwitchboardError("internal", `HTTP ${status}${shown ? `: ${shown}` : ""}`);
  }
  function count2(name, value, min) {
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      throw new SwitchboardError("invalid_argument", `${name} is an integer ≥ ${min}, not ${JSON.stringify(value)}`);
    }
    return value;
  }

  // src/webrtc.ts
  var Call = class extends EventTarget {
    /** @internal Made by `WebRtcHelper`. */
    constructor(init) {
      super();
      /** The other agent. */
      __publicField(this, "peer");
      /** The call's id (in every signal). */
      __publicField(this, "id");
      /** Whether we placed the call or received it. */
      __publicField(this, "direction");
      /** The underlying connection, for anything this class does not wrap. */
      __publicField(this, "peerConnection");
      /** Data channels by label: ours from the start, the other side's as they arrive. */
      __publicField(this, "dataChannels", /* @__PURE__ */ new Map());
      /** The other side's streams. */
      __publicField(this, "remoteStreams", []);
      /** `ringing` (incoming, not answered yet), `connecting`, `connected`, or `ended`. */
      __publicField(this, "state");
      /** How it ended, once it has. */
      __publicField(this, "end");
      /** Resolves when the peer connection is up; rejects with `call_ended` if it ends first. */
      __publicField(this, "connected");
      __publicField(this, "send");
      __publicField(this, "onEnd");
      /** Incoming signals, handled one at a time so candidates wait for the description. */
      __publicField(this, "work", Promise.resolve());
      /** Our candidates found before our description was sent. */
      __publicField(this, "localCandidates", []);
      __publicField(this, "settle");
      this.peer = init.peer;
      this.id = init.id;
      this.direction = init.direction;
      this.peerConnection = init.peerConnection;
      this.send = init.send;
      this.onEnd = init.onEnd;
      this.state = init.direction === "incoming" ? "ringing" : "connecting";
      this.connected = new Promise((resolve, reject) => {
        this.settle = { resolve, reject };
      });
      this.connected.catch(() => void 0);
      const pc = this.peerConnection;
      pc.onicecandidate = ({ candidate }) => {
        if (!candidate) return;
        if (this.localCandidates) this.localCandidates.push(candidate.toJSON());
        else this.sendCandidate(candidate.toJSON());
      };
      pc.ondatachannel = ({ channel }) => {
        this.dataChannels.set(channel.label, channel);
        this.emit("datachannel", channel);
      };
      pc.ontrack = ({ track, streams }) => {
        for (const stream of streams.length > 0 ? streams : [new MediaStream([track])]) {
          if (this.remoteStreams.includes(stream)) continue;
          this.remoteStreams.push(stream);
          this.emit("stream", stream);
        }
      };
      pc.onconnectionstatechange = () => {
        if (pc.connectionState === "connected" && this.state !== "ended" && this.state !== "connected") {
          this.state = "connected";
          this.settle.resolve();
          this.emit("connected", null);
        } else if (pc.connectionState === "failed") {
          this.finish({ reason: "failed", remote: true });
        }
      };
    }
    /** The first data channel, if any: the usual single one. */
    get dataChannel() {
      return this.dataChannels.values().next().value;
    }
    /** Answers an incoming call, sending `media` too; resolves once the answer is relayed. */
    async answer(options = {}) {
      if (this.state !== "ringing") {
        throw new SwitchboardError("invalid_argument", `only a ringing incoming call can be answered; this one is ${this.state}`);
      }
      this.state = "connecting";
      await this.work;
      addMedia(this.peerConnection, options.media);
      const answer = await this.peerConnection.createAnswer();
      await this.peerConnection.setLocalDescription(answer);
      await this.sendDescription("answer");
    }
    /** Ends the call (declines it while ringing) and tells the other side with `bye`. */
    async hangUp(reason) {
      if (this.state === "ended") return;
      const why = reason ?? (this.state === "ringing" ? "declined" : "hang_up");
      this.finish({ reason: why, remote: false });
      await this.send("bye", { call: this.id, reason: why }).catch(() => void 0);
    }
    /** Calls `handler` for each data channel the other side opens. */
    onDataChannel(handler) {
      return this.on("datachannel", handler);
    }
    /** Calls `handler` for each new remote stream. */
    onRemoteStream(handler) {
      return this.on("stream", handler);
    }
    /** Calls `handler` when the call ends. */
    onEnded(handler) {
      return this.on("ended", handler);
    }
    /** @internal Sets our offer and relays it. */
    async start(options) {
      const pc = this.peerConnection;
      addMedia(pc, options.media);
      if (options.dataChannel !== void 0) {
        const label = options.dataChannel === true ? "data" : options.dataChannel;
        this.dataChannels.set(label, pc.createDataChannel(label));
      }
      await pc.setLocalDescription(await pc.createOffer());
      await this.sendDescription("offer");
    }
    /** @internal A signal of this call from the other side. */
    receive(signal) {
      const data = signal.data;
      if (signal.kind === "bye") {
        this.finish({ reason: typeof data.reason === "string" ? data.reason : "hang_up", remote: true });
        return;
      }
      this.work = this.work.then(async () => {
        if (this.state === "ended") return;
        try {
          if (signal.kind === "offer" || signal.kind === "answer") {
            await this.peerConnection.setRemoteDescription(data.description);
          } else if (signal.kind === "ice" && data.candidate) {
            await this.peerConnection.addIceCandidate(data.candidate);
          }
        } catch (e) {
          void this.send("bye", { call: this.id, reason: "failed" }).catch(() => void 0);
          this.finish({ reason: `failed: ${e instanceof Error ? e.message : String(e)}`, remote: false });
        }
      });
    }
    /** @internal Ends the call without a signal (the other side is gone or said bye). */
    finish(end) {
      if (this.state === "ended") return;
      this.state = "ended";
      this.end = end;
      this.peerConnection.close();
      this.settle.reject(new SwitchboardError("call_ended", `the call with ${this.peer} ended: ${end.reason}`));
      this.onEnd(this);
      this.emit("ended", end);
    }
    async sendDescription(kind) {
      const { type, sdp } = this.peerConnection.localDescription;
      const description = { type, sdp };
      await this.send(kind, { call: this.id, description });
      const found = this.localCandidates ?? [];
      this.localCandidates = void 0;
      for (const candidate of found) this.sendCandidate(candidate);
    }
    sendCandidate(candidate) {
      if (this.state === "ended") return;
      this.send("ice", { call: this.id, candidate }).catch(() => void 0);
    }
    on(type, handler) {
      const listener = (event) => handler(event.detail);
      this.addEventListener(type, listener);
      return () => this.removeEventListener(type, listener);
    }
    emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    }
  };
  var WebRtcHelper = class extends EventTarget {
    constructor(agent, options = {}) {
      super();
      __publicField(this, "agent");
      __publicField(this, "options");
      __publicField(this, "PeerConnection");
      __publicField(this, "active", /* @__PURE__ */ new Map());
      __publicField(this, "unsubscribe");
      const PeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
      if (typeof PeerConnection !== "function") {
        throw new SwitchboardError(
          "unsupported",
          "WebRtcHelper needs RTCPeerConnection: run it in a browser, or pass an implementation as the RTCPeerConnection option"
        );
      }
      this.agent = agent;
      this.options = options;
      this.PeerConnection = PeerConnection;
      this.unsubscribe = [agent.onSignal((s) => this.onSignal(s)), agent.onPresence((p) => this.onPresence(p))];
    }
    /** The calls not ended yet. */
    get calls() {
      return [...this.active.values()];
    }
    /**
     * Calls `agentName`: resolves with the call once the offer is relayed (rejects with
     * `relay_disabled`, `agent_not_present`… otherwise). `call.connected` resolves when it is up.
     */
    async call(agentName, options = {}) {
      const call = this.newCall(agentName, randomId(), "outgoing");
      try {
        await call.start(options);
      } catch (e) {
        call.finish({ reason: "failed", remote: false });
        throw e;
      }
      return call;
    }
    /** Calls `handler` for every incoming call (before it is answered, unless `autoAnswer`). */
    onIncomingCall(handler) {
      const listener = (event) => handler(event.detail);
      this.addEventListener("incomingcall", listener);
      return () => this.removeEventListener("incomingcall", listener);
    }
    /** Hangs up every call and stops listening to the connection's signals. */
    async close() {
      for (const off of this.unsubscribe.splice(0)) off();
      await Promise.all(this.calls.map((call) => call.hangUp()));
    }
    newCall(peer, id, direction) {
      const iceServers = this.options.iceServers ?? [];
      const call = new Call({
        peer,
        id,
        direction,
        peerConnection: new this.PeerConnection({ iceServers }),
        send: (kind, data) => this.agent.signal({ to: peer, kind, data }),
        onEnd: (ended) => this.active.delete(ended.id)
      });
      this.active.set(id, call);
      return call;
    }
    onSignal(signal) {
      const data = signal.data;
      if (typeof data?.call !== "string") return;
      const existing = this.active.get(data.call);
      if (existing) {
        if (existing.peer === signal.from) existing.receive(signal);
        return;
      }
      if (signal.kind !== "offer") return;
      const call = this.newCall(signal.from, data.call, "incoming");
      call.receive(signal);
      this.dispatchEvent(new CustomEvent("incomingcall", { detail: call }));
      const auto = this.options.autoAnswer;
      if (auto && call.state === "ringing") {
        call.answer(auto === true ? {} : auto).catch(() => call.finish({ reason: "failed", remote: false }));
      }
    }
    onPresence({ left }) {
      for (const call of this.calls) {
        if (left.includes(call.peer)) call.finish({ reason: "peer_left", remote: true });
      }
    }
  };
  function addMedia(pc, media) {
    for (const track of media?.getTracks() ?? []) pc.addTrack(track, media);
  }
  return __toCommonJS(browser_exports);
})();
