/** The shapes the SDK hands out and takes in. Wire names are kept where the server sends them
 * (spec/protocol.md), so a message reads the same here, in history, over HTTP and in the spec. */

import type { BackoffOptions } from "./backoff.js";

/** JSON values, as `data` carries them. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A message, live or from history. */
export interface Message {
  /** The message id (the sender's, or one the server generated). */
  id: string;
  /** The channel's offset; absent for ephemeral messages. */
  offset?: number;
  /** The channel name. */
  channel: string;
  /** The sending agent. */
  from: string;
  /** The receiving agent of a direct message; absent for broadcasts. */
  to?: string;
  /** The application's message type. */
  type: string;
  /** The JSON body. */
  data: Json;
  /** Server time of the publish, milliseconds since the epoch. */
  ts: number;
  /** Set for ephemeral messages (never stored, never replayed). */
  ephemeral?: boolean;
  /** Binary attachments, when the message has any. */
  attachments?: Uint8Array[];
}

/** Why a resume could not replay everything after the last offset. */
export interface Gap {
  reason: "retention" | "epoch_changed";
  /** The first offset the channel still has; replay started here. */
  first_available: number;
}

/** What a successful (re)join tells. */
export interface JoinReply {
  channel: string;
  scope: Scope;
  agentName: string;
  /** Present it as `sessionId` to take this agent name over from another connection. */
  sessionId: string;
  /** The channel's epoch: offsets are comparable only within one epoch. */
  epoch: string;
  /** The last persisted offset at join time (0 when empty). */
  head: number;
  /** Whether the channel stores messages. */
  persistent: boolean;
  gap?: Gap;
}

/** Channel namespaces: `private` is the key's tenant's, `public` is shared by all tenants. */
export type Scope = "private" | "public";

/** One session of a present agent, as the server sends it. */
export interface PresenceMeta {
  phx_ref: string;
  agent_name: string;
  joined_at: number;
  meta?: Record<string, Json>;
}

/** The Phoenix presence map: agent name → its sessions' metas. */
export type PresenceState = Record<string, { metas: PresenceMeta[] }>;

/** A present agent. */
export interface PresenceAgent {
  agentName: string;
  /** When its (oldest) session joined, milliseconds since the epoch. */
  joinedAt: number;
  /** The presence metadata it joined with. */
  meta: Record<string, Json>;
  /** How many sessions hold the name (more than 1 only during a takeover). */
  sessions: number;
}

/** Something that can open a WebSocket: the browser's, Node 22's global, or `ws`'s. */
export type WebSocketConstructor = new (url: string) => WebSocket;

/** How `AgentConnection.connect` joins a channel. */
export interface ConnectOptions {
  /** The server: `http(s)://host:port` or `ws(s)://host:port` (a path ending in `/socket` or
   * `/socket/websocket` is accepted). In a browser it defaults to the page's origin. */
  url?: string;
  /** The channel to join (created by the first join, with `channelPassword`). */
  channelName: string;
  /** The channel's password; sets it when this join creates the channel. */
  channelPassword?: string;
  /** This agent's name, unique in the channel at a time. */
  agentName: string;
  /** The API key (`sk_…`). */
  apiKey: string;
  /** The channel's namespace: `private` (default, the key's tenant) or `public`. */
  apiKeyScope?: Scope;
  /** Deliver live messages to `onMessage`, `message` events and `messages()` (default true).
   * When false the server sends no messages to this agent (it joins with an empty type filter)
   * and the application reads them with `receive()`. */
  autoReceive?: boolean;
  /** Must be true (the default): the server's only live transport is the WebSocket. */
  useWebsocket?: boolean;
  /** Take the agent name over from an earlier session (its `JoinReply.sessionId`). */
  sessionId?: string;
  /** Deliver only messages of these types (at most 64); the design documents' name for it. */
  customEventType?: string | string[];
  /** Deliver only messages of these types (at most 64). Same as `customEventType`. */
  eventTypes?: string[];
  /** Replay every persisted message after this offset, then go live. */
  since?: number;
  /** The epoch `since` belongs to; a different current epoch is reported as a gap. */
  epoch?: string;
  /** Receive this agent's own messages back (default true). */
  echo?: boolean;
  /** Receive presence updates (default true); the agent is visible to others either way. */
  presence?: boolean;
  /** Custom presence metadata (a JSON object, at most 4 KiB). */
  meta?: Record<string, Json>;
  /** Reconnect after a lost connection (default true). */
  reconnect?: boolean;
  /** Reconnect delays (default 100 ms doubling to 10 s, full jitter). */
  backoff?: BackoffOptions;
  /** How long a request waits for its reply, including time spent reconnecting (default
   * 10 000 ms). */
  requestTimeoutMs?: number;
  /** How often to send a heartbeat (default 25 000 ms; the server's timeout is 60 s). */
  heartbeatIntervalMs?: number;
  /**
   * Returns the API key to use from now on: called before every reconnect, by `refreshKey()`,
   * every `keyRefreshIntervalMs`, when the server announces that the connection's temporary key
   * expires soon (`key_expiring`: the fresh key goes in over the live socket), and once when the
   * server refuses the current key with `invalid_key`, `key_revoked` or `key_expired` after the
   * first connect. For short-lived keys minted by a backend.
   */
  refreshApiKey?: () => string | Promise<string>;
  /** Call `refreshApiKey` this often and re-authenticate the live socket with the `auth` event,
   * so a short-lived key is replaced before it expires (default: never). */
  keyRefreshIntervalMs?: number;
  /** The WebSocket implementation; defaults to the global one, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
  /** Not available yet: channels are addressed by `channelName`. Giving it is an error. */
  channelId?: string;
  /** Take part in the WebRTC signaling relay: send and receive `signal`s (default false). */
  enableWebrtcRelay?: boolean;
  /** Receive `storage` events (`onStorageChange`) when the channel's storage changes (default
   * false). */
  storageEvents?: boolean;
  /** Consume this agent's durable inbox (default false): persisted direct messages to it arrive
   * as `inbox` events (`onInboxMessage`, `inboxMessages()`) instead of `message` events, also
   * those sent while it was away, and come back until it `ack`s or `reject`s them. Temporary
   * keys need the `inbox` capability. */
  inbox?: boolean;
  /** The storage tier this connection's history reads (`history`, `receive`) come from when a
   * read names none (the join's `poll_source`); default `"AUTO"`. A read's own `pollSource`
   * wins. See {@link PollSource}. */
  pollSource?: PollSource;
}

/**
 * Where a history read comes from: one storage tier of the channel, or all of them.
 *
 * - `CACHE`: the in-memory ring of the channel's newest messages only;
 * - `LOG` (also `KAFKA`, its other name): the durable log only, the point of acknowledgement
 *   (kept for the log's retention);
 * - `DATABASE`: the permanent database only; written from the log asynchronously, so a read
 *   right after a publish may not show the newest messages yet;
 * - `AUTO` (the default): cache, then log, then database, stitched by offset without a gap or a
 *   duplicate.
 *
 * Any case is accepted (`"cache"`, `"Cache"`); the SDK sends upper case. A tier the channel's
 * {@link StoragePolicy} does not keep is refused with `no_history`; anything else is an
 * `invalid_argument` before anything is sent.
 */
export type PollSource =
  | "AUTO"
  | "CACHE"
  | "LOG"
  | "KAFKA"
  | "DATABASE"
  | "auto"
  | "cache"
  | "log"
  | "kafka"
  | "database";

/** A storage tier, as a history page names the one that served a range. */
export type Tier = "CACHE" | "LOG" | "DATABASE";

/** One tier's part of a history page: it served the offsets `from`..`to` (both inclusive). */
export interface TierRange {
  tier: Tier;
  from: number;
  to: number;
}

/** What `send` publishes. */
export interface SendOptions {
  /** The application's message type (1–128 bytes). */
  type: string;
  /** The JSON body (default null). */
  data?: Json;
  /** Send only to this agent (and echo to the sender); otherwise everyone in the channel. */
  to?: string;
  /** Deliver to the agents connected now; never stored, never replayed. */
  ephemeral?: boolean;
  /** Binary attachments (at most 16), sent in a binary frame. */
  attachments?: Array<Uint8Array | ArrayBuffer | ArrayBufferView>;
  /** Your own message id (≤ 128 bytes): a publish with an id the channel has seen is not
   * stored again. Without it a persisted publish gets a random id. */
  id?: string;
  /** For ephemeral messages only: do not wait for a reply (high-rate updates). Resolves once
   * the frame is handed to the socket; a failure arrives as an `error` event. */
  noReply?: boolean;
  /** For persisted direct messages (`to`): send this agent `receipt` events (`onReceipt`) as the
   * recipient's inbox delivers, acknowledges, rejects or dead-letters the message, while this
   * agent is in the channel. */
  receipt?: boolean;
}

/** The acknowledgement of a publish. */
export interface SendResult {
  /** The channel offset; absent for ephemeral messages. */
  offset?: number;
  id: string;
  /** Set when the channel had seen this id: `offset` is the original one. */
  duplicate?: boolean;
}

/** What `receive` reads from history. */
export interface ReceiveOptions {
  /** Only messages sent by this agent. */
  from?: string;
  /** Not available yet: the server cannot filter by recipient. Giving it is an error. */
  to?: string;
  /** Only messages of this type. */
  type?: string;
  /** At most this many (default 100, at most 1000). */
  limit?: number;
  /** Only messages after this offset, oldest first (otherwise the latest `limit`). */
  after?: number;
  /** Only messages before this offset. */
  before?: number;
  /** The storage tier to read (default: the connection's `pollSource`, else `"AUTO"`). */
  pollSource?: PollSource;
}

/** A raw history query (spec/protocol.md, `history`); every bound inclusive. */
export interface HistoryQuery {
  from_offset?: number;
  to_offset?: number;
  from_ts?: number;
  to_ts?: number;
  sender?: string;
  type?: string;
  limit?: number;
  direction?: "forward" | "backward";
  /** The storage tier to read, sent as `poll_source` in upper case (default: on a socket the
   * connection's `pollSource`, else `"AUTO"`). */
  pollSource?: PollSource;
}

/** A page of history. */
export interface HistoryPage {
  messages: Message[];
  epoch: string;
  head: number;
  first_available: number;
  /** Set when `limit` cut the page short: the next bound to read from. */
  next?: number;
  /** Which tier served which offsets, in ascending offset order whatever the direction (empty
   * when nothing was read). A range covers every matching message its tier had there. */
  sources: TierRange[];
}

/**
 * The storage tiers a channel keeps its messages in; each adds a tier to the one before:
 * `ephemeral` (none: live delivery only, no offsets, no history), `cache` (memory only; a
 * restart starts a new epoch), `log` (cache and the durable log, no database), `persistent`
 * (the default: cache, log and database).
 */
export type StoragePolicy = "ephemeral" | "cache" | "log" | "persistent";

/** How long a channel keeps its messages; absent or 0 means unlimited (the tier bounds: the
 * server's defaults). */
export interface Retention {
  /** Most messages kept (every tier). */
  maxMessages?: number;
  /** Oldest message age in seconds (every tier). */
  maxAgeSecs?: number;
  /** The in-memory cache's bounds. */
  cache?: CacheRetention;
  /** The durable log's retention for this channel (older messages are then read from the
   * database, when the channel keeps one). */
  log?: LogRetention;
}

/** The cache tier's bounds for one channel; absent or 0 takes the server's default. */
export interface CacheRetention {
  /** Most messages held in memory. */
  maxMessages?: number;
  /** Most bytes held in memory. */
  maxBytes?: number;
  /** Messages older than this many seconds leave the cache. */
  ttlSecs?: number;
}

/** The log tier's retention for one channel. */
export interface LogRetention {
  /** Messages older than this many seconds are no longer read from the log. */
  maxAgeSecs?: number;
}

/** How `HttpClient.createChannel` creates a channel (in the client's `apiKeyScope`). */
export interface CreateChannelOptions {
  /** The password agents must give to join (default none). */
  password?: string;
  /** The tiers it keeps messages in (default `"persistent"`). */
  storage?: StoragePolicy;
  /** How long it keeps them (default: the server's). */
  retention?: Retention;
}

/** A channel, as the HTTP API describes it. */
export interface ChannelInfo {
  name: string;
  scope: Scope;
  /** Offsets are comparable only within one epoch. */
  epoch: string;
  /** The last persisted offset (0 when none). */
  head: number;
  /** The oldest offset still stored (`head + 1` when none is). */
  firstAvailable: number;
  storage: StoragePolicy;
  /** The retention in force (0: unlimited). */
  retention: Retention;
  /** Whether joining needs a password. */
  hasPassword: boolean;
  /** Creation time, milliseconds since the epoch. */
  createdAt: number;
  /** Agents present now. */
  agents: number;
  /** A team channel's members. */
  members?: string[];
  /** When a team channel completes itself, milliseconds since the epoch. */
  expiresAt?: number;
}

/** Why the connection went down. */
export interface DisconnectInfo {
  /** The WebSocket close code (1006 when the connection broke without one). */
  code: number;
  /** The reason, for people. */
  reason: string;
  /** Whether the SDK is reconnecting. */
  willReconnect: boolean;
  /** The error behind it, when there is one. */
  error?: import("./errors.js").SwitchboardError;
}

/** A (re)join that succeeded. */
export interface ConnectInfo {
  reply: JoinReply;
  /** False for the first join of `connect()`, true after a reconnect. */
  reconnected: boolean;
}

/** A presence update. */
export interface PresenceInfo {
  agents: PresenceAgent[];
  joined: string[];
  left: string[];
}

/** The kinds of WebRTC signal the relay carries. */
export type SignalKind = "offer" | "answer" | "ice" | "bye";

/** What `signal` relays to one agent. */
export interface SignalOptions {
  /** The agent to signal; it must be present and have joined with `enableWebrtcRelay`. */
  to: string;
  kind: SignalKind;
  /** The SDP, candidate or anything else, as JSON (at most 64 KiB; default null). */
  data?: Json;
}

/** A WebRTC signal another agent sent to this one. */
export interface Signal {
  /** The sending agent. */
  from: string;
  kind: SignalKind;
  data: Json;
}

/** One entry of the channel's storage. */
export interface StorageEntry {
  key: string;
  /** Any JSON value. */
  value: Json;
  /** Starts at 1 and grows by one per write; give it as `version` to write only if unchanged. */
  version: number;
  /** Server time of the last write, milliseconds since the epoch. */
  updatedAt: number;
  /** The agent that wrote it last (`"http"` for the HTTP API). */
  updatedBy: string;
  /** When a `ttlSecs` entry expires, milliseconds since the epoch. */
  expiresAt?: number;
}

/** How `storage.put` writes. */
export interface StoragePutOptions {
  /** Write only if the key is at this version now (`0`: only if absent); else `version_conflict`. */
  version?: number;
  /** The entry reads as absent after this many seconds. */
  ttlSecs?: number;
}

/** How `storage.delete` deletes. */
export interface StorageDeleteOptions {
  /** Delete only if the key is at this version now; else `version_conflict`. */
  version?: number;
}

/** What `storage.list` reads, in key order. */
export interface StorageListOptions {
  /** Only keys that start with this. */
  prefix?: string;
  /** Only keys after this one (a page's `next`). */
  after?: string;
  /** At most this many entries (1–1000, default 100). */
  limit?: number;
}

/** One page of `storage.list`. */
export interface StoragePage {
  entries: StorageEntry[];
  /** Set when `limit` cut the page short: pass it as `after` for the next page. */
  next?: string;
}

/** A change of the channel's storage (needs `storageEvents`). */
export interface StorageChange {
  key: string;
  op: "put" | "delete";
  /** The version the write produced (for a delete: the version that was deleted). */
  version: number;
  /** The new value; absent for a delete. */
  value?: Json;
  /** The agent that wrote (`"http"` for the HTTP API). */
  updatedBy: string;
}

/** A message from this agent's durable inbox (joined with `inbox`, or leased over HTTP):
 * `ack` or `reject` it by `message.id`, else it comes back after the visibility timeout. */
export interface InboxMessage {
  /** How often it was delivered, this delivery included (1 the first time). */
  deliveryCount: number;
  message: Message;
}

/** How `reject` turns an inbox message down. */
export interface RejectOptions {
  /** Why (at most 1024 bytes); kept with a dead letter and sent in the sender's receipt. */
  reason?: string;
  /** Deliver it again at once (default true), until the server's `max_rejections`; false:
   * dead-letter it now. */
  requeue?: boolean;
}

/** What became of a message sent with `receipt: true`. */
export type ReceiptStatus = "delivered" | "acknowledged" | "rejected" | "dead_lettered";

/** A receipt for a direct message this agent sent with `receipt: true`. */
export interface Receipt {
  /** The message id (`SendResult.id`). */
  id: string;
  /** The recipient. */
  to: string;
  /** `delivered` (the first delivery), `acknowledged`, `rejected` (it comes back) or
   * `dead_lettered`. */
  status: ReceiptStatus;
  /** Deliveries so far. */
  deliveryCount: number;
  /** The recipient's rejection reason, or why it was dead-lettered (the recipient's reason,
   * `max_rejections`, `rejected` or `max_deliveries`). */
  reason?: string;
}

/** How `HttpClient.inboxReceive` leases messages. */
export interface InboxReceiveOptions {
  /** At most this many messages (1–100, default 10). */
  max?: number;
  /** How long they stay leased before they come back unless acknowledged (default: the
   * server's `visibility_timeout_ms`, 30 s; at most 12 hours). */
  visibilityTimeoutMs?: number;
}

/** A message that left an inbox without being acknowledged. */
export interface DeadLetter {
  message: Message;
  /** The agent it was addressed to. */
  recipient: string;
  /** How often it was delivered. */
  deliveryCount: number;
  /** How often it was rejected. */
  rejections: number;
  /** `max_deliveries`, `max_rejections`, `expired`, `rejected`, or the recipient's reason. */
  reason: string;
  /** When it became a dead letter, milliseconds since the epoch. */
  deadAt: number;
}

/** What `HttpClient.deadLetters` reads, oldest first. */
export interface DeadLetterQuery {
  /** Only those addressed to this agent. */
  recipient?: string;
  /** Only those after this cursor (a page's `next`). */
  after?: string;
  /** At most this many (1–1000, default 100). */
  limit?: number;
}

/** One page of dead letters. */
export interface DeadLetterPage {
  entries: DeadLetter[];
  /** Set when `limit` cut the page short: pass it as `after` for the next page. */
  next?: string;
}

/** An announced agent of the tenant's directory. */
export interface AgentCard {
  /** Its agent name. */
  name: string;
  /** What it can do, as it announced (e.g. `["translate", "summarize"]`). */
  capabilities: string[];
  /** What else it announced: status, price, reputation… (a JSON object). */
  metadata: Record<string, Json>;
  /** Whether it is present in one of the tenant's channels now. */
  online: boolean;
  /** When it last announced or updated its metadata, milliseconds since the epoch. */
  updatedAt: number;
}

/** What happened to an agent of the directory. */
export type AgentChange = "announced" | "updated" | "online" | "offline" | "removed";

/** A change of the tenant's agent directory, as the `sys.discovery` channel tells it. */
export interface AgentUpdate {
  /** `announced` (again), `updated` (its metadata), `online`, `offline`, `removed` (its card was
   * deleted). */
  change: AgentChange;
  /** The agent as it is now (for `removed`: as it was). */
  agent: AgentCard;
}

/** A numeric range condition of `discover`: the metadata value is a number within the bounds,
 * both inclusive. */
export interface NumericRange {
  min?: number;
  max?: number;
}

/** What `discover` looks for; every condition given must hold. */
export interface DiscoverQuery {
  /** Only agents that announced this capability. */
  capability?: string;
  /** Conditions on the metadata (at most 16), by field or dotted path (`"stats.reputation"`):
   * a value (equal to it) or `{min?, max?}` (a number within the inclusive bounds; an object
   * of numeric `min`/`max` is always a range). */
  filters?: Record<string, Json | NumericRange>;
  /** Only agents online (true) or offline (false). */
  online?: boolean;
  /** At most this many, by name (1–1000, default 100). */
  limit?: number;
}

/** How `watchAgents` joins the tenant's `sys.discovery` channel: the options of
 * `AgentConnection.connect` except the channel, which is that one. */
export interface WatchAgentsOptions extends Omit<ConnectOptions, "channelName" | "agentName" | "apiKeyScope"> {
  /** The watcher's name in the channel (default `watcher-<random>`); watchers are not counted
   * as online agents. */
  agentName?: string;
}

/** What a stream is sent from: bytes, a `Blob` (a `File`), a `ReadableStream` or any async
 * iterable of byte chunks (a Node `fs.ReadStream`, an async generator). Read once, in order. */
export type StreamSource = Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** Where a received stream's bytes go, in order: a function (awaited when it returns a
 * promise) or a `WritableStream` (closed once the checksum is verified, aborted on failure). */
export type StreamSink = ((chunk: Uint8Array) => void | Promise<void>) | WritableStream<Uint8Array>;

/** How far a stream got: `offset` bytes (the sender's `onProgress`: held by the server; the
 * `streamProgress` event: acknowledged by the recipient; the recipient's `onProgress`:
 * received). */
export interface StreamProgress {
  streamId: string;
  offset: number;
}

/** How `sendStream` describes a payload to its recipient. */
export interface StreamSendOptions {
  /** A name, e.g. a file name (at most 256 bytes; a `File`'s name by default). */
  name?: string;
  /** The total size, when known (a `Uint8Array`'s or `Blob`'s by default). */
  size?: number;
  /** The media type (at most 256 bytes; a `Blob`'s type by default). */
  contentType?: string;
  /** Anything else, as a JSON object (at most 4 KiB). */
  meta?: Record<string, Json>;
  /** Called once the stream is open, with its id (to `resumeStream` or `cancelStream` it). */
  onOpen?: (streamId: string) => void;
  /** Called after every chunk the server acknowledged: the bytes it holds. */
  onProgress?: (progress: StreamProgress) => void;
}

/** How `resumeStream` continues a stream. */
export interface StreamResumeOptions {
  /** Called after every chunk the server acknowledged: the bytes it holds. */
  onProgress?: (progress: StreamProgress) => void;
}

/** A stream that was sent and closed (the server verified its size and SHA-256). */
export interface StreamSent {
  streamId: string;
  /** Its size in bytes. */
  totalSize: number;
  /** Its hex SHA-256. */
  checksum: string;
}

/** A stream offered to this agent: `receiveStream` it (or `cancelStream` it). */
export interface StreamOffer {
  streamId: string;
  /** The sending agent. */
  from: string;
  name?: string;
  /** The size the sender announced. */
  size?: number;
  contentType?: string;
  /** The sender's metadata (`{}` when none). */
  meta: Record<string, Json>;
  /** Bytes this agent acknowledged already (an earlier attempt's checkpoint). */
  acked: number;
}

/** How `receiveStream` takes a stream. */
export interface StreamReceiveOptions {
  /** Where the bytes go; without one they are collected and returned as `bytes`. */
  sink?: StreamSink;
  /** To resume: the bytes an earlier attempt received (from the start; e.g. the partial file).
   * They are hashed for the end-to-end check, and the server sends only what follows. */
  resumeFrom?: StreamSource;
  /** Called after every piece written to the sink: the bytes received so far. */
  onProgress?: (progress: StreamProgress) => void;
}

/** A stream received in full, its size and SHA-256 verified and its completion acknowledged. */
export interface StreamReceived {
  streamId: string;
  totalSize: number;
  /** Its hex SHA-256. */
  checksum: string;
  /** The whole payload (`resumeFrom`'s bytes included), when `receiveStream` had no sink. */
  bytes?: Uint8Array;
}

/** The server made everything up to `offset` (chunks before `nextSeq`) durable: after a server
 * restart, the stream resumes from here. */
export interface StreamCheckpoint {
  streamId: string;
  nextSeq: number;
  offset: number;
}

/** The recipient received and verified every byte of a stream this agent sent. */
export interface StreamComplete {
  streamId: string;
  totalSize: number;
}

/** A stream was cancelled (by either side); it is gone. */
export interface StreamCancelled {
  streamId: string;
  /** The agent that cancelled it. */
  by: string;
  reason?: string;
}

/** A stream failed and is gone: `checksum_mismatch` (its bytes do not match what it was closed
 * with), `not_found` (it was idle too long)… */
export interface StreamFailure {
  streamId: string;
  code: import("./errors.js").ErrorCode;
  message: string;
}
