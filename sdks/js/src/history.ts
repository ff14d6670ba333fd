/**
 * History reads and the storage tiers they come from (spec/protocol.md, `history` and
 * `GET /v1/channels/{name}/messages`): the `poll_source` a read or a join names, the wire query,
 * and the page with the tier ranges that served it. Shared by `AgentConnection` and `HttpClient`.
 */

import { SwitchboardError } from "./errors.js";
import { readJsonMessage } from "./frame.js";
import type { HistoryPage, HistoryQuery, Json, TierRange } from "./types.js";

/** The sources on the wire, in upper case (`KAFKA` is the server's other name for `LOG`). */
const POLL_SOURCES = ["AUTO", "CACHE", "LOG", "KAFKA", "DATABASE"] as const;
const TIERS = ["CACHE", "LOG", "DATABASE"] as const;

/**
 * A `pollSource` option → its wire name (upper case), `undefined` when it is not given. Any case
 * is accepted; anything else is `invalid_argument`, before anything is sent (the server would
 * refuse it with `invalid_payload`).
 */
export function pollSourceWire(source: unknown, option = "pollSource"): string | undefined {
  if (source === undefined) return undefined;
  const upper = typeof source === "string" ? source.toUpperCase() : undefined;
  if (upper === undefined || !(POLL_SOURCES as readonly string[]).includes(upper)) {
    throw new SwitchboardError(
      "invalid_argument",
      `${option} is one of ${POLL_SOURCES.map((s) => `"${s}"`).join(", ")} (any case), not ${JSON.stringify(source)}`,
    );
  }
  return upper;
}

/** A {@link HistoryQuery} → the wire query: its fields as they are, `pollSource` as
 * `poll_source`. */
export function historyPayload(query: HistoryQuery): Record<string, Json> {
  if (typeof query !== "object" || query === null || Array.isArray(query)) {
    throw new SwitchboardError("invalid_argument", "a history query is an object {from_offset?, to_offset?, …, pollSource?}");
  }
  const { pollSource, ...rest } = query;
  const payload: Record<string, Json> = {};
  for (const [key, value] of Object.entries(rest)) {
    if (value !== undefined) payload[key] = value as Json;
  }
  const source = pollSourceWire(pollSource);
  if (source !== undefined) payload.poll_source = source;
  return payload;
}

/** A {@link HistoryQuery} → the query string of `GET /v1/channels/{name}/messages`. */
export function historyParams(query: HistoryQuery): URLSearchParams {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(historyPayload(query))) {
    if (value === null || typeof value === "object") {
      throw new SwitchboardError("invalid_argument", `history query field ${key} is a number or a string, not ${JSON.stringify(value)}`);
    }
    params.set(key, String(value));
  }
  return params;
}

/** A history reply → a {@link HistoryPage}: messages read (attachments as bytes), `sources`
 * always an array. Throws on a shape it cannot read. */
export function readHistoryPage(raw: unknown): HistoryPage {
  const page = raw as Partial<Record<keyof HistoryPage, unknown>> | null;
  if (typeof page !== "object" || page === null || !Array.isArray(page.messages)) {
    throw new Error(`unreadable history page: ${JSON.stringify(raw)}`);
  }
  const sources = page.sources === undefined ? [] : page.sources;
  if (!Array.isArray(sources)) throw new Error(`unreadable history sources: ${JSON.stringify(sources)}`);
  return {
    ...(page as HistoryPage),
    messages: page.messages.map((m) => readJsonMessage(m)),
    sources: sources.map(readTierRange),
  };
}

function readTierRange(raw: unknown): TierRange {
  const r = raw as { tier?: unknown; from?: unknown; to?: unknown } | null;
  if (!(TIERS as readonly unknown[]).includes(r?.tier) || typeof r!.from !== "number" || typeof r!.to !== "number") {
    throw new Error(`unreadable history source: ${JSON.stringify(raw)}`);
  }
  return { tier: r!.tier as TierRange["tier"], from: r!.from, to: r!.to };
}
