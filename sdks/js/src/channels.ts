/**
 * Channel management over HTTP (spec/protocol.md, `POST /v1/channels`, `GET /v1/channels/{name}`):
 * the storage policy and retention a channel is created with, and the channel info the server
 * describes it by, between the SDK's camelCase and the wire's snake_case.
 */

import { SwitchboardError } from "./errors.js";
import type { CacheRetention, ChannelInfo, CreateChannelOptions, Json, LogRetention, Retention, Scope, StoragePolicy } from "./types.js";

const STORAGE_POLICIES: readonly StoragePolicy[] = ["ephemeral", "cache", "log", "persistent"];

/** The fields of each retention object: SDK name → wire name. */
const RETENTION_FIELDS = { maxMessages: "max_messages", maxAgeSecs: "max_age_secs" } as const;
const CACHE_FIELDS = { maxMessages: "max_messages", maxBytes: "max_bytes", ttlSecs: "ttl_secs" } as const;
const LOG_FIELDS = { maxAgeSecs: "max_age_secs" } as const;

/** The body of `POST /v1/channels`. */
export function createChannelPayload(name: string, scope: Scope, options: CreateChannelOptions): Record<string, Json> {
  if (typeof name !== "string" || name.length === 0) {
    throw new SwitchboardError("invalid_argument", "the channel name is a non-empty string");
  }
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new SwitchboardError("invalid_argument", "createChannel() takes an options object {password?, storage?, retention?}");
  }
  checkKeys("createChannel() options", options, ["password", "storage", "retention"]);
  const body: Record<string, Json> = { name, scope };
  if (options.password !== undefined) {
    if (typeof options.password !== "string") throw new SwitchboardError("invalid_argument", "password is a string");
    body.password = options.password;
  }
  if (options.storage !== undefined) {
    if (!STORAGE_POLICIES.includes(options.storage)) {
      throw new SwitchboardError(
        "invalid_argument",
        `storage is one of ${STORAGE_POLICIES.map((p) => `"${p}"`).join(", ")}, not ${JSON.stringify(options.storage)}`,
      );
    }
    body.storage = options.storage;
  }
  if (options.retention !== undefined) body.retention = retentionWire(options.retention);
  return body;
}

function retentionWire(retention: Retention): Record<string, Json> {
  const wire = countsWire("retention", retention, RETENTION_FIELDS, ["cache", "log"]);
  if (retention.cache !== undefined) wire.cache = countsWire("retention.cache", retention.cache, CACHE_FIELDS);
  if (retention.log !== undefined) wire.log = countsWire("retention.log", retention.log, LOG_FIELDS);
  return wire;
}

/** An object of non-negative integers, renamed to the wire's names; other keys are refused (a
 * typo must not be dropped silently). */
function countsWire(what: string, value: unknown, fields: Record<string, string>, nested: string[] = []): Record<string, Json> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SwitchboardError("invalid_argument", `${what} is an object`);
  }
  checkKeys(what, value, [...Object.keys(fields), ...nested]);
  const wire: Record<string, Json> = {};
  for (const [name, wireName] of Object.entries(fields)) {
    const count = (value as Record<string, unknown>)[name];
    if (count === undefined) continue;
    if (typeof count !== "number" || !Number.isSafeInteger(count) || count < 0) {
      throw new SwitchboardError("invalid_argument", `${what}.${name} is an integer ≥ 0, not ${JSON.stringify(count)}`);
    }
    wire[wireName] = count;
  }
  return wire;
}

function checkKeys(what: string, value: object, allowed: string[]): void {
  for (const key of Object.keys(value)) {
    if ((value as Record<string, unknown>)[key] !== undefined && !allowed.includes(key)) {
      throw new SwitchboardError("invalid_argument", `${what} takes ${allowed.join(", ")}; not ${key}`);
    }
  }
}

/** The server's channel info → a {@link ChannelInfo}; throws on a shape it cannot read. */
export function readChannelInfo(raw: unknown): ChannelInfo {
  const c = raw as Record<string, unknown> | null;
  if (
    typeof c?.name !== "string" ||
    typeof c.epoch !== "string" ||
    typeof c.head !== "number" ||
    typeof c.first_available !== "number" ||
    typeof c.storage !== "string"
  ) {
    throw new Error(`unreadable channel info: ${JSON.stringify(raw)}`);
  }
  const info: ChannelInfo = {
    name: c.name,
    scope: c.scope as Scope,
    epoch: c.epoch,
    head: c.head,
    firstAvailable: c.first_available,
    storage: c.storage as StoragePolicy,
    retention: readRetention(c.retention),
    hasPassword: c.has_password === true,
    createdAt: typeof c.created_at === "number" ? c.created_at : 0,
    agents: typeof c.agents === "number" ? c.agents : 0,
  };
  if (Array.isArray(c.members)) info.members = c.members.filter((m): m is string => typeof m === "string");
  if (typeof c.expires_at === "number") info.expiresAt = c.expires_at;
  return info;
}

function readRetention(raw: unknown): Retention {
  const retention = readCounts(raw, RETENTION_FIELDS) as Retention;
  const r = raw as { cache?: unknown; log?: unknown } | null;
  if (isObject(r?.cache)) retention.cache = readCounts(r!.cache, CACHE_FIELDS) as CacheRetention;
  if (isObject(r?.log)) retention.log = readCounts(r!.log, LOG_FIELDS) as LogRetention;
  return retention;
}

function readCounts(raw: unknown, fields: Record<string, string>): Record<string, number> {
  const out: Record<string, number> = {};
  if (!isObject(raw)) return out;
  for (const [name, wireName] of Object.entries(fields)) {
    const value = (raw as Record<string, unknown>)[wireName];
    if (typeof value === "number") out[name] = value;
  }
  return out;
}

function isObject(value: unknown): value is object {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
