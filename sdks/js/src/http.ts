/**
 * `HttpClient`: the parts of the HTTP API (spec/protocol.md, "HTTP API") that a backend without
 * a socket needs for channels (create one with a storage policy and retention, describe or
 * delete it, read its history from any storage tier), for durable inboxes (lease an agent's
 * inbox messages, acknowledge or reject them, and read or delete the dead letters) and for the
 * agent directory (announce agents, update their metadata, read, discover and remove them).
 * Authenticates with a bearer key; uses `fetch` (Node 18+, browsers). The same calls as the Rust
 * SDK's `HttpClient` (crates/client/src/http.rs).
 */

import { SwitchboardError, isErrorReply } from "./errors.js";
import { announcePayload, discoverPayload, readAgentCard, readAgentCards, updateMetadataPayload } from "./discovery.js";
import { ackPayload, readDeadLetter, readInboxMessage, rejectPayload } from "./inbox.js";
import { historyParams, readHistoryPage } from "./history.js";
import { createChannelPayload, readChannelInfo } from "./channels.js";
import type {
  AgentCard,
  ChannelInfo,
  CreateChannelOptions,
  DeadLetterPage,
  DeadLetterQuery,
  DiscoverQuery,
  HistoryPage,
  HistoryQuery,
  InboxMessage,
  InboxReceiveOptions,
  Json,
  RejectOptions,
  Scope,
} from "./types.js";

const DEFAULT_TIMEOUT_MS = 10_000;
/** Most characters of an unreadable error body kept in the error's message. */
const MAX_ERROR_BODY = 512;

/** How an `HttpClient` reaches the server. */
export interface HttpClientOptions {
  /** The server: `http(s)://host:port` (a `ws(s)://` URL, also one ending in `/socket` or
   * `/socket/websocket`, is accepted). In a browser it defaults to the page's origin. */
  url?: string;
  /** The API key (`sk_…`), sent as `Authorization: Bearer`. Temporary keys need the `inbox`
   * capability for inboxes, `publish` (to write) or `presence` (to read) on `sys.discovery` for
   * the agent directory, and may be limited to agent names. */
  apiKey: string;
  /** The channels' namespace: `private` (default, the key's tenant) or `public`. */
  apiKeyScope?: Scope;
  /** The password of a public channel that has one (`x-channel-password`). */
  channelPassword?: string;
  /** How long a request waits for its response (default 10 000 ms), else `timeout`. */
  requestTimeoutMs?: number;
  /** The `fetch` to use; defaults to the global one. */
  fetch?: typeof fetch;
}

/**
 * A client of the HTTP API for backends: create and describe channels, read their history
 * from any storage tier, poll inboxes, and manage the agent directory.
 *
 * ```js
 * const http = new HttpClient({ url: "http://127.0.0.1:7400", apiKey });
 * for (const { message, deliveryCount } of await http.inboxReceive("tasks", "worker", { max: 10 })) {
 *   try {
 *     await handle(message);
 *     await http.inboxAck("tasks", "worker", message.id);
 *   } catch (e) {
 *     await http.inboxReject("tasks", "worker", message.id, { reason: String(e), requeue: deliveryCount < 3 });
 *   }
 * }
 * ```
 */
export class HttpClient {
  /** The HTTP base URL every path is appended to. */
  readonly baseUrl: string;
  private readonly apiKey: string;
  private readonly scope: Scope;
  private readonly channelPassword: string | undefined;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;

  constructor(options: HttpClientOptions) {
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "new HttpClient() takes an options object");
    }
    if (typeof options.apiKey !== "string" || options.apiKey.length === 0) {
      throw new SwitchboardError("invalid_argument", "new HttpClient() needs apiKey");
    }
    if (options.apiKeyScope !== undefined && options.apiKeyScope !== "private" && options.apiKeyScope !== "public") {
      throw new SwitchboardError("invalid_argument", "apiKeyScope is `private` or `public`");
    }
    const base = options.url ?? (globalThis as { location?: { origin?: string } }).location?.origin;
    if (!base) throw new SwitchboardError("invalid_argument", "new HttpClient() needs url outside a browser page");
    const fetchImpl = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (typeof fetchImpl !== "function") {
      throw new SwitchboardError("invalid_argument", "no fetch: use Node 18+ or a browser, or pass the fetch option");
    }
    this.baseUrl = httpBaseUrl(base);
    this.apiKey = options.apiKey;
    this.scope = options.apiKeyScope ?? "private";
    this.channelPassword = options.channelPassword;
    this.timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.fetchImpl = fetchImpl;
  }

  /**
   * Creates channel `channelName` in the client's scope with a storage policy (`"persistent"`,
   * the default, keeps cache, log and database; `"log"` cache and log; `"cache"` memory only;
   * `"ephemeral"` nothing) and retention; resolves with its info. Rejects with `channel_exists`
   * when it exists already.
   */
  async createChannel(channelName: string, options: CreateChannelOptions = {}): Promise<ChannelInfo> {
    const body = createChannelPayload(channelName, this.scope, options);
    return channelInfo(await this.call("POST", "/v1/channels", body, undefined, false));
  }

  /** Describes channel `channelName`: epoch, head, storage policy, retention in force…; rejects
   * with `channel_not_found` when there is none. */
  async channel(channelName: string): Promise<ChannelInfo> {
    return channelInfo(await this.call("GET", channelPath(channelName)));
  }

  /** Deletes channel `channelName`, its messages and its storage; agents present are kicked
   * with `channel_deleted`. Rejects with `channel_not_found` when there is none. */
  async deleteChannel(channelName: string): Promise<void> {
    await this.call("DELETE", channelPath(channelName));
  }

  /**
   * One page of the channel's history (every message, direct ones too), with the bounds of
   * `AgentConnection.history` and `pollSource`, the storage tier to read (default `"AUTO"`:
   * cache, then log, then database). The page's `sources` tell which tier served which offsets.
   * Rejects with `no_history` for a tier the channel's storage policy does not keep.
   */
  async history(channelName: string, query: HistoryQuery = {}): Promise<HistoryPage> {
    const raw = await this.call("GET", channelPath(channelName, "messages"), undefined, historyParams(query));
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
  async inboxReceive(channelName: string, agentName: string, options: InboxReceiveOptions = {}): Promise<InboxMessage[]> {
    const body: Record<string, Json> = {};
    if (options.max !== undefined) body.max = count("max", options.max, 1);
    if (options.visibilityTimeoutMs !== undefined) {
      body.visibility_timeout_ms = count("visibilityTimeoutMs", options.visibilityTimeoutMs, 1);
    }
    const raw = (await this.call("POST", inboxPath(channelName, agentName, "receive"), body)) as { messages?: unknown[] };
    return (raw.messages ?? []).map(readInboxMessage);
  }

  /** Acknowledges a message of `agentName`'s inbox: it leaves the inbox. Rejects with
   * `not_found` when it is not pending there. */
  async inboxAck(channelName: string, agentName: string, id: string): Promise<void> {
    await this.call("POST", inboxPath(channelName, agentName, "ack"), ackPayload(id));
  }

  /** Rejects a message of `agentName`'s inbox: it comes back (`requeue`, the default) until
   * `max_rejections`, or becomes a dead letter now (`requeue: false`). `not_found` like
   * `inboxAck`. */
  async inboxReject(channelName: string, agentName: string, id: string, options: RejectOptions = {}): Promise<void> {
    await this.call("POST", inboxPath(channelName, agentName, "reject"), rejectPayload(id, options));
  }

  /** One page of the channel's dead letters sent by this key's tenant, oldest first; pass
   * `next` as `after` for the following page. */
  async deadLetters(channelName: string, query: DeadLetterQuery = {}): Promise<DeadLetterPage> {
    const params = new URLSearchParams();
    if (query.recipient !== undefined) params.set("recipient", query.recipient);
    if (query.after !== undefined) params.set("after", query.after);
    if (query.limit !== undefined) params.set("limit", String(count("limit", query.limit, 1)));
    const raw = (await this.call("GET", channelPath(channelName, "dead_letters"), undefined, params)) as {
      entries?: unknown[];
      next?: unknown;
    };
    const page: DeadLetterPage = { entries: (raw.entries ?? []).map(readDeadLetter) };
    if (typeof raw.next === "string") page.next = raw.next;
    return page;
  }

  /** Deletes one of this tenant's dead letters by its message id; `not_found` when there is none. */
  async deleteDeadLetter(channelName: string, id: string): Promise<void> {
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
  async announceAgent(agentName: string, capabilities: string[], metadata?: Record<string, Json>): Promise<AgentCard> {
    return card(await this.call("PUT", agentPath(agentName), announcePayload(capabilities, metadata), undefined, false));
  }

  /** Replaces announced agent `agentName`'s metadata; resolves with its card, rejects with
   * `not_found` when it never announced itself. */
  async updateAgentMetadata(agentName: string, metadata: Record<string, Json>): Promise<AgentCard> {
    return card(await this.call("PATCH", agentPath(agentName), updateMetadataPayload(metadata), undefined, false));
  }

  /** Agent `agentName`'s card; rejects with `not_found` when it never announced itself (or was
   * removed). */
  async agent(agentName: string): Promise<AgentCard> {
    return card(await this.call("GET", agentPath(agentName), undefined, undefined, false));
  }

  /** Removes agent `agentName`'s card from the directory (watchers see `removed`); rejects with
   * `not_found` when there is none. */
  async removeAgent(agentName: string): Promise<void> {
    await this.call("DELETE", agentPath(agentName), undefined, undefined, false);
  }

  /** Finds the tenant's announced agents, by name, as `AgentConnection.discover` does. Needs
   * `presence` on `sys.discovery`. */
  async discover(query: DiscoverQuery = {}): Promise<AgentCard[]> {
    const raw = await this.call("POST", "/v1/agents/discover", discoverPayload(query), undefined, false);
    try {
      return readAgentCards(raw);
    } catch (e) {
      throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
    }
  }

  /** Sends one request; resolves with the JSON body (`{}` for 204), rejects with the server's
   * `{code, message}` as a `SwitchboardError`. `scoped`: the path names a channel, which is in
   * the client's scope (the agent directory is always the tenant's). */
  private async call(method: string, path: string, body?: Json, params = new URLSearchParams(), scoped = true): Promise<unknown> {
    if (scoped && this.scope === "public") params.set("scope", "public");
    const query = params.toString();
    const url = `${this.baseUrl}${path}${query ? `?${query}` : ""}`;
    const headers: Record<string, string> = { authorization: `Bearer ${this.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.channelPassword !== undefined) headers["x-channel-password"] = this.channelPassword;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    try {
      const init: RequestInit = { method, headers, signal: controller.signal };
      if (body !== undefined) init.body = JSON.stringify(body);
      const response = await this.fetchImpl(url, init);
      const text = await response.text();
      if (!response.ok) throw errorFromBody(response.status, text);
      if (text.length === 0) return {};
      try {
        return JSON.parse(text) as unknown;
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
}

/** `http(s)://` or `ws(s)://host[:port][/prefix][/socket[/websocket]]` → the HTTP base URL
 * (`http(s)://host[:port][/prefix]`, without a trailing slash). */
export function httpBaseUrl(base: string): string {
  let url: URL;
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

function channelPath(channelName: string, ...rest: string[]): string {
  if (typeof channelName !== "string" || channelName.length === 0) {
    throw new SwitchboardError("invalid_argument", "the channel name is a non-empty string");
  }
  return ["", "v1", "channels", channelName, ...rest].map(encodeURIComponent).join("/");
}

function inboxPath(channelName: string, agentName: string, action: string): string {
  if (typeof agentName !== "string" || agentName.length === 0) {
    throw new SwitchboardError("invalid_argument", "the agent name is a non-empty string");
  }
  return channelPath(channelName, "inbox", agentName, action);
}

function agentPath(agentName: string): string {
  if (typeof agentName !== "string" || agentName.length === 0) {
    throw new SwitchboardError("invalid_argument", "the agent name is a non-empty string");
  }
  return ["", "v1", "agents", agentName].map(encodeURIComponent).join("/");
}

function channelInfo(raw: unknown): ChannelInfo {
  try {
    return readChannelInfo(raw);
  } catch (e) {
    throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
  }
}

function card(raw: unknown): AgentCard {
  try {
    return readAgentCard(raw);
  } catch (e) {
    throw new SwitchboardError("internal", e instanceof Error ? e.message : String(e));
  }
}

function errorFromBody(status: number, text: string): SwitchboardError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    // Not the server's error shape (a proxy's page, say): reported below.
  }
  if (isErrorReply(body)) return SwitchboardError.fromReply(body);
  const shown = text.length > MAX_ERROR_BODY ? `${text.slice(0, MAX_ERROR_BODY)}…` : text;
  return new SwitchboardError("internal", `HTTP ${status}${shown ? `: ${shown}` : ""}`);
}

function count(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new SwitchboardError("invalid_argument", `${name} is an integer ≥ ${min}, not ${JSON.stringify(value)}`);
  }
  return value;
}
