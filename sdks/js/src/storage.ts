/**
 * `ChannelStorage`: the channel's durable key-value store (spec/protocol.md, "Channel storage"),
 * reached as `agent.storage` over the agent's socket.
 *
 * Reads that are in flight when the socket drops are sent again after the rejoin. Writes are not:
 * the server may have applied one whose reply was lost, and sending it again could overwrite a
 * newer value (or turn a successful compare-and-set into a `version_conflict`), so a write in
 * flight fails with `disconnected` and the application decides (read, then write again). Writes
 * made while the connection is down wait for the rejoin like every other request.
 */

import { SwitchboardError } from "./errors.js";
import type {
  Json,
  StorageChange,
  StorageDeleteOptions,
  StorageEntry,
  StorageListOptions,
  StoragePage,
  StoragePutOptions,
} from "./types.js";

/** Sends one request on the channel's topic; `retry`: safe to send again after a reconnect. */
export type StorageRequest = (event: string, payload: Json, retry: boolean) => Promise<unknown>;

/** The entry as the server sends it. */
interface WireEntry {
  key: string;
  value?: Json;
  version: number;
  updated_at: number;
  updated_by: string;
  expires_at?: number;
}

/**
 * The channel's storage. Keys are 1–256 bytes without control characters, values any JSON up to
 * the server's `max_kv_value_bytes` (64 KiB by default).
 *
 * ```js
 * const entry = await agent.storage.put("config/theme", { dark: true });
 * await agent.storage.put("config/theme", { dark: false }, { version: entry.version }); // CAS
 * for await (const e of agent.storage.entries({ prefix: "config/" })) console.log(e.key, e.value);
 * ```
 */
export class ChannelStorage {
  /** @internal The connection creates it. */
  constructor(private readonly send: StorageRequest) {}

  /**
   * Writes `value` under `key`; resolves with the new entry once it is durable. `version` makes
   * it conditional (`0`: only if the key is absent), else `version_conflict`; `ttlSecs` lets it
   * expire. Other refusals: `too_many_keys`, `message_too_large`, `invalid_payload`, `forbidden`.
   */
  async put(key: string, value: Json, options: StoragePutOptions = {}): Promise<StorageEntry> {
    checkKey(key);
    if (value === undefined) throw new SwitchboardError("invalid_argument", "storage.put() needs a value (null is one)");
    const payload: Record<string, Json> = { key, value };
    if (options.version !== undefined) payload.version = count("version", options.version, 0);
    if (options.ttlSecs !== undefined) payload.ttl_secs = count("ttlSecs", options.ttlSecs, 1);
    return readEntry(await this.send("kv_put", payload, false));
  }

  /** The entry under `key`; rejects with `not_found` when there is none (or it expired). */
  async get(key: string): Promise<StorageEntry> {
    checkKey(key);
    return readEntry(await this.send("kv_get", { key }, true));
  }

  /** Deletes `key` (only at `version`, when given, else `version_conflict`); rejects with
   * `not_found` when there is no such key. */
  async delete(key: string, options: StorageDeleteOptions = {}): Promise<void> {
    checkKey(key);
    const payload: Record<string, Json> = { key };
    if (options.version !== undefined) payload.version = count("version", options.version, 0);
    await this.send("kv_delete", payload, false);
  }

  /** One page of entries in key order; pass `next` as `after` for the following page. */
  async list(options: StorageListOptions = {}): Promise<StoragePage> {
    const query: Record<string, Json> = {};
    if (options.prefix !== undefined) query.prefix = options.prefix;
    if (options.after !== undefined) query.after = options.after;
    if (options.limit !== undefined) query.limit = count("limit", options.limit, 1);
    const raw = (await this.send("kv_list", query, true)) as { entries?: unknown[]; next?: string };
    const page: StoragePage = { entries: (raw.entries ?? []).map(readEntry) };
    if (typeof raw.next === "string") page.next = raw.next;
    return page;
  }

  /** Every entry (with `prefix`: every such entry) in key order, reading `limit` per page:
   * `for await (const entry of agent.storage.entries({ prefix: "score/" }))`. */
  async *entries(options: StorageListOptions = {}): AsyncGenerator<StorageEntry, void, undefined> {
    let after = options.after;
    for (;;) {
      const query: StorageListOptions = { ...options };
      if (after !== undefined) query.after = after;
      const page = await this.list(query);
      yield* page.entries;
      if (page.next === undefined) return;
      after = page.next;
    }
  }
}

/** A `kv_change` payload → a {@link StorageChange}; throws on a shape it cannot read. */
export function readStorageChange(raw: unknown): StorageChange {
  const c = raw as { key?: unknown; op?: unknown; version?: unknown; value?: Json; updated_by?: unknown } | null;
  if (
    typeof c?.key !== "string" ||
    (c.op !== "put" && c.op !== "delete") ||
    typeof c.version !== "number" ||
    typeof c.updated_by !== "string"
  ) {
    throw new Error(`unreadable kv_change: ${JSON.stringify(raw)}`);
  }
  const change: StorageChange = { key: c.key, op: c.op, version: c.version, updatedBy: c.updated_by };
  if (c.op === "put") change.value = c.value ?? null;
  return change;
}

function readEntry(raw: unknown): StorageEntry {
  const e = raw as WireEntry;
  const entry: StorageEntry = {
    key: e.key,
    value: e.value ?? null,
    version: e.version,
    updatedAt: e.updated_at,
    updatedBy: e.updated_by,
  };
  if (typeof e.expires_at === "number") entry.expiresAt = e.expires_at;
  return entry;
}

function checkKey(key: unknown): void {
  if (typeof key !== "string" || key.length === 0) {
    throw new SwitchboardError("invalid_argument", "a storage key is a non-empty string (1–256 bytes, no control characters)");
  }
}

function count(name: string, value: unknown, min: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new SwitchboardError("invalid_argument", `${name} is an integer ≥ ${min}, not ${JSON.stringify(value)}`);
  }
  return value;
}
