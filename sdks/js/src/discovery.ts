/**
 * Discovery on the wire (spec/protocol.md, "Discovery"): the `announce`, `update_metadata` and
 * `discover` payloads, the agent cards and directory changes the server sends, read into the
 * SDK's camelCase types. Shared by `AgentConnection` (the socket) and `HttpClient`.
 */

import { SwitchboardError } from "./errors.js";
import type { AgentCard, AgentChange, AgentUpdate, DiscoverQuery, Json } from "./types.js";

/** The tenant's private channel on which the server announces every change of the agent
 * directory, as ephemeral messages of type {@link AGENT_MESSAGE_TYPE} from
 * {@link DISCOVERY_SENDER}. Join it to watch (`watchAgents`); only the server publishes there. */
export const DISCOVERY_CHANNEL = "sys.discovery";
/** The message type of directory changes on {@link DISCOVERY_CHANNEL}. */
export const AGENT_MESSAGE_TYPE = "agent";
/** The sender of directory changes. */
export const DISCOVERY_SENDER = "switchboard";

const AGENT_CHANGES: readonly AgentChange[] = ["announced", "updated", "online", "offline", "removed"];

/** A card as the server sends it `{name, capabilities, metadata, online, updated_at}` → an
 * {@link AgentCard}; throws on a shape it cannot read. */
export function readAgentCard(raw: unknown): AgentCard {
  const c = raw as { name?: unknown; capabilities?: unknown; metadata?: unknown; online?: unknown; updated_at?: unknown } | null;
  if (
    typeof c?.name !== "string" ||
    !Array.isArray(c.capabilities) ||
    !c.capabilities.every((x) => typeof x === "string") ||
    typeof c.online !== "boolean" ||
    typeof c.updated_at !== "number"
  ) {
    throw new Error(`unreadable agent card: ${JSON.stringify(raw)}`);
  }
  return {
    name: c.name,
    capabilities: [...(c.capabilities as string[])],
    metadata: isObject(c.metadata) ? (c.metadata as Record<string, Json>) : {},
    online: c.online,
    updatedAt: c.updated_at,
  };
}

/** The reply of `discover` `{agents: [card]}` → the cards; throws on a shape it cannot read. */
export function readAgentCards(raw: unknown): AgentCard[] {
  const agents = (raw as { agents?: unknown } | null)?.agents;
  if (!Array.isArray(agents)) throw new Error(`unreadable discover reply: ${JSON.stringify(raw)}`);
  return agents.map(readAgentCard);
}

/** The data of an `agent` message on the discovery channel `{change, agent}` → an
 * {@link AgentUpdate}; throws on a shape it cannot read. */
export function readAgentUpdate(raw: unknown): AgentUpdate {
  const u = raw as { change?: unknown; agent?: unknown } | null;
  if (!AGENT_CHANGES.includes(u?.change as AgentChange)) {
    throw new Error(`unreadable agent update: ${JSON.stringify(raw)}`);
  }
  return { change: u!.change as AgentChange, agent: readAgentCard(u!.agent) };
}

/** The `announce` payload (and `PUT /v1/agents/{name}` body) `{capabilities, metadata?}`. */
export function announcePayload(capabilities: unknown, metadata: unknown): Record<string, Json> {
  if (!Array.isArray(capabilities) || !capabilities.every((c) => typeof c === "string")) {
    throw new SwitchboardError("invalid_argument", "capabilities are an array of strings, e.g. [\"translate\"] (it may be empty)");
  }
  const payload: Record<string, Json> = { capabilities: [...(capabilities as string[])] };
  if (metadata !== undefined) payload.metadata = checkMetadata(metadata);
  return payload;
}

/** The `update_metadata` payload (and `PATCH /v1/agents/{name}` body) `{metadata}`. */
export function updateMetadataPayload(metadata: unknown): Record<string, Json> {
  return { metadata: checkMetadata(metadata) };
}

/** The `discover` payload (and `POST /v1/agents/discover` body) `{capability?, filters?,
 * online?, limit?}`. */
export function discoverPayload(query: DiscoverQuery): Record<string, Json> {
  if (typeof query !== "object" || query === null || Array.isArray(query)) {
    throw new SwitchboardError("invalid_argument", "discover() takes a query object {capability?, filters?, online?, limit?}");
  }
  const payload: Record<string, Json> = {};
  if (query.capability !== undefined) {
    if (typeof query.capability !== "string") throw new SwitchboardError("invalid_argument", "capability is a string");
    payload.capability = query.capability;
  }
  if (query.filters !== undefined) {
    if (!isObject(query.filters)) {
      throw new SwitchboardError("invalid_argument", "filters is an object of conditions: {\"field\": value} or {\"field\": {min?, max?}}");
    }
    payload.filters = query.filters as Record<string, Json>;
  }
  if (query.online !== undefined) {
    if (typeof query.online !== "boolean") throw new SwitchboardError("invalid_argument", "online is true or false");
    payload.online = query.online;
  }
  if (query.limit !== undefined) {
    if (typeof query.limit !== "number" || !Number.isSafeInteger(query.limit) || query.limit < 1) {
      throw new SwitchboardError("invalid_argument", `limit is an integer ≥ 1, not ${JSON.stringify(query.limit)}`);
    }
    payload.limit = query.limit;
  }
  return payload;
}

function checkMetadata(metadata: unknown): Record<string, Json> {
  if (!isObject(metadata)) {
    throw new SwitchboardError("invalid_argument", "metadata is a JSON object (at most 4 KiB), e.g. {status: \"idle\"}");
  }
  return metadata as Record<string, Json>;
}

function isObject(value: unknown): boolean {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
