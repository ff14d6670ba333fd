/**
 * `AgentConnection`: one agent in one channel over one WebSocket, with reconnect and resume.
 *
 * The connection owns the socket and every piece of channel state. When the socket drops it
 * reconnects with exponential backoff and full jitter, authenticates (asking `refreshApiKey` for
 * a fresh key when given one), rejoins with `since` = the last offset it delivered and the
 * session id that takes the agent name back, and re-sends the publishes that had no reply under
 * their original ids (the server deduplicates them). The offset tracker drops anything already
 * delivered, so the application sees neither a gap nor a duplicate. This mirrors the Rust SDK
 * (crates/client/src/connection.rs).
 */

import { backoffDelay } from "./backoff.js";
import {
  CloseCodes,
  SwitchboardError,
  isErrorReply,
  shouldReconnect,
  type ErrorCode,
  type ErrorReply,
} from "./errors.js";
import {
  decodeBinary,
  decodeStreamEnvelope,
  decodeText,
  encodeBinaryPush,
  encodeEnvelope,
  encodeText,
  isBinaryPayload,
  readBinaryMessage,
  readJsonMessage,
  type Frame,
} from "./frame.js";
import {
  AGENT_MESSAGE_TYPE,
  DISCOVERY_CHANNEL,
  DISCOVERY_SENDER,
  announcePayload,
  discoverPayload,
  readAgentCard,
  readAgentCards,
  readAgentUpdate,
  updateMetadataPayload,
} from "./discovery.js";
import { ackPayload, readInboxMessage, readReceipt, rejectPayload } from "./inbox.js";
import { historyPayload, pollSourceWire, readHistoryPage } from "./history.js";
import { PresenceTracker, presenceList } from "./presence.js";
import { ChannelStorage, readStorageChange } from "./storage.js";
import { createSha256 } from "./sha256.js";
import {
  Abort,
  ByteReader,
  Incoming,
  cancelledError,
  describeSource,
  openSink,
  pump,
  readDataHeader,
  readPosition,
  readPrefix,
  readStreamCancelled,
  readStreamCheckpoint,
  readStreamComplete,
  readStreamEnd,
  readStreamError,
  readStreamOffer,
  readStreamProgress,
  skipHeld,
} from "./stream.js";
import { OffsetTracker } from "./tracker.js";
import type {
  AgentCard,
  AgentUpdate,
  ConnectInfo,
  ConnectOptions,
  DisconnectInfo,
  DiscoverQuery,
  Gap,
  HistoryPage,
  HistoryQuery,
  InboxMessage,
  JoinReply,
  Json,
  Message,
  PresenceAgent,
  PresenceInfo,
  PresenceState,
  Receipt,
  ReceiveOptions,
  RejectOptions,
  SendOptions,
  SendResult,
  Signal,
  SignalKind,
  SignalOptions,
  StorageChange,
  StreamCancelled,
  StreamCheckpoint,
  StreamComplete,
  StreamFailure,
  StreamOffer,
  StreamProgress,
  StreamReceiveOptions,
  StreamReceived,
  StreamResumeOptions,
  StreamSendOptions,
  StreamSent,
  StreamSource,
  WatchAgentsOptions,
  WebSocketConstructor,
} from "./types.js";

const PHOENIX = "phoenix";
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_HEARTBEAT_MS = 25_000;
const SIGNAL_KINDS: readonly SignalKind[] = ["offer", "answer", "ice", "bye"];

/** The events an `AgentConnection` dispatches; each is a `CustomEvent` whose `detail` is given. */
export interface AgentConnectionEventMap {
  /** A message for this agent, live or replayed after a reconnect; never a duplicate. */
  message: CustomEvent<Message>;
  /** A (re)join succeeded. */
  connect: CustomEvent<ConnectInfo>;
  /** The socket went down (`willReconnect` tells whether the SDK brings it back). */
  disconnect: CustomEvent<DisconnectInfo>;
  /** Something failed that no pending call can report: a socket error, a refused rejoin, a
   * kick, a failed key refresh. */
  error: CustomEvent<SwitchboardError>;
  /** Presence changed. */
  presence: CustomEvent<PresenceInfo>;
  /** A resume could not replay everything after the last offset (retention or a new epoch). */
  gap: CustomEvent<Gap>;
  /** A WebRTC signal another agent sent to this one (needs `enableWebrtcRelay`). */
  signal: CustomEvent<Signal>;
  /** The channel's storage changed (needs `storageEvents`). */
  storage: CustomEvent<StorageChange>;
  /** A message from this agent's durable inbox (needs `inbox`): `ack` or `reject` it. A
   * redelivery comes again, with a higher `deliveryCount`. */
  inbox: CustomEvent<InboxMessage>;
  /** What became of a direct message this agent sent with `receipt: true`. */
  receipt: CustomEvent<Receipt>;
  /** A change of the tenant's agent directory (on the `sys.discovery` channel only, see
   * `watchAgents`). The same change is also a `message` event of type `agent`. */
  agent: CustomEvent<AgentUpdate>;
  /** A stream for this agent: `receiveStream` it or `cancelStream` it. Comes again on every
   * (re)join while the stream exists, except for streams this connection is receiving (it
   * re-accepts those itself). */
  streamOffer: CustomEvent<StreamOffer>;
  /** The recipient of a stream this agent sends acknowledged `offset` bytes. */
  streamProgress: CustomEvent<StreamProgress>;
  /** The server made a stream this agent sends durable up to `offset` (`resumeStream` after a
   * server restart continues there). */
  streamCheckpoint: CustomEvent<StreamCheckpoint>;
  /** The recipient of a stream this agent sent received and verified every byte. */
  streamComplete: CustomEvent<StreamComplete>;
  /** A stream this agent sends or receives was cancelled (by either side). */
  streamCancelled: CustomEvent<StreamCancelled>;
  /** A stream this agent sends or receives failed (`checksum_mismatch`, or `not_found` when it
   * was idle too long) and is gone. */
  streamError: CustomEvent<StreamFailure>;
}

type State = "idle" | "connecting" | "joined" | "reconnecting" | "closed";

/** A request waiting for its reply (or for the channel to be joined). */
interface Request {
  seq: number;
  event: string;
  payload: Json | Uint8Array;
  /** Safe to send again after a reconnect (reads, and publishes with an id). */
  retry: boolean;
  resolve: (response: unknown) => void;
  reject: (error: SwitchboardError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

type Pending =
  | { kind: "heartbeat" }
  | { kind: "auth"; onReply: (result: { ok: true } | { ok: false; error: SwitchboardError }) => void }
  | { kind: "join" }
  | { kind: "request"; request: Request };

interface Resolved {
  options: ConnectOptions;
  url: string;
  WebSocket: WebSocketConstructor;
  timeoutMs: number;
  heartbeatMs: number;
}

/** An iterator's buffer (`messages()`, `inboxMessages()`, `agentUpdates()`). */
interface Listener<T> {
  push(item: T): void;
  end(error?: SwitchboardError): void;
}

/**
 * One agent in one channel. Create it, register handlers, then `await connect(options)`.
 *
 * ```js
 * const agent = new AgentConnection();
 * agent.onMessage((m) => console.log(m.from, m.data));
 * await agent.connect({ url, channelName: "lobby", agentName: "web-1", apiKey });
 * const { offset } = await agent.send({ type: "chat", data: { text: "hi" } });
 * ```
 */
export class AgentConnection extends EventTarget {
  private state: State = "idle";
  private resolved: Resolved | undefined;
  private apiKey = "";
  private ws: WebSocket | undefined;
  private nextRef = 0;
  private nextSeq = 0;
  private joinRef: string | undefined;
  private pending = new Map<string, Pending>();
  private queue: Request[] = [];
  private tracker = new OffsetTracker();
  private presenceTracker = new PresenceTracker();
  private reply: JoinReply | undefined;
  private sessionId: string | undefined;
  private attempt = 0;
  private keyRetried = false;
  private socketError: ErrorReply | undefined;
  private kicked: ErrorReply | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private heartbeatRef: string | undefined;
  private heard = false;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private keyTimer: ReturnType<typeof setInterval> | undefined;
  private firstJoin: { resolve: (r: JoinReply) => void; reject: (e: SwitchboardError) => void } | undefined;
  private listeners = new Set<Listener<Message>>();
  private inboxListeners = new Set<Listener<InboxMessage>>();
  private agentListeners = new Set<Listener<AgentUpdate>>();
  private closedWith: SwitchboardError | undefined;
  /** Streams this connection is sending (by id): failed from outside by cancel and error events. */
  private outgoing = new Map<string, Set<Abort>>();
  /** Streams this connection is receiving (by id). */
  private incoming = new Map<string, Incoming>();

  /** The channel's durable key-value store: `put`, `get`, `delete`, `list`, `entries`. Reads in
   * flight when the socket drops are re-sent after the rejoin; writes fail with `disconnected`. */
  readonly storage: ChannelStorage = new ChannelStorage((event, payload, retry) => this.request(event, payload, retry));

  // ---------------------------------------------------------------------------------------------
  // Public surface

  /** Whether the channel is joined on a live socket right now. */
  get connected(): boolean {
    return this.state === "joined";
  }

  /** The reply of the latest (re)join: session id, epoch, head. */
  get joinReply(): JoinReply | undefined {
    return this.reply;
  }

  /** The last offset delivered to the application (the resume position). */
  get lastOffset(): number | undefined {
    return this.tracker.last;
  }

  /** The agents present, as the presence events last told (empty with `presence: false`). */
  get presentAgents(): PresenceAgent[] {
    return this.presenceTracker.list();
  }

  /**
   * Opens the socket, authenticates and joins the channel; resolves with the join reply.
   * Rejects with a {@link SwitchboardError}: the server's code (`invalid_key`, `bad_password`,
   * `agent_name_taken`…), `connection_failed` when the server cannot be reached, `unsupported`
   * for an option the server cannot honour yet. Only later losses are retried.
   */
  async connect(options: ConnectOptions): Promise<JoinReply> {
    if (this.state !== "idle") {
      throw new SwitchboardError("invalid_argument", "this AgentConnection was already connected; create a new one");
    }
    const resolved = await resolveOptions(options);
    this.resolved = resolved;
    this.apiKey = options.apiKey;
    this.tracker = new OffsetTracker(options.since, options.epoch);
    this.sessionId = options.sessionId;
    this.state = "connecting";
    const joined = new Promise<JoinReply>((resolve, reject) => {
      this.firstJoin = { resolve, reject };
    });
    this.openSocket();
    const reply = await joined;
    if (options.keyRefreshIntervalMs !== undefined && options.refreshApiKey) {
      this.keyTimer = setInterval(() => {
        this.refreshKey().catch((e: unknown) => this.emitError(asError(e)));
      }, options.keyRefreshIntervalMs);
    }
    return reply;
  }

  /** Calls `handler` for every message; returns a function that unregisters it. */
  onMessage(handler: (message: Message) => void): () => void {
    return this.on("message", handler);
  }

  /** Calls `handler` after every successful (re)join. */
  onConnect(handler: (info: ConnectInfo) => void): () => void {
    return this.on("connect", handler);
  }

  /** Calls `handler` whenever the socket goes down. */
  onDisconnect(handler: (info: DisconnectInfo) => void): () => void {
    return this.on("disconnect", handler);
  }

  /** Calls `handler` for errors no pending call can report. */
  onError(handler: (error: SwitchboardError) => void): () => void {
    return this.on("error", handler);
  }

  /** Calls `handler` whenever presence changes. */
  onPresence(handler: (info: PresenceInfo) => void): () => void {
    return this.on("presence", handler);
  }

  /** Calls `handler` for every WebRTC signal sent to this agent (needs `enableWebrtcRelay`). */
  onSignal(handler: (signal: Signal) => void): () => void {
    return this.on("signal", handler);
  }

  /** Calls `handler` for every change of the channel's storage (needs `storageEvents`). */
  onStorageChange(handler: (change: StorageChange) => void): () => void {
    return this.on("storage", handler);
  }

  /** Calls `handler` for every delivery from this agent's durable inbox (needs `inbox`):
   * `{deliveryCount, message}`. Settle each with `ack(message.id)` or `reject(message.id)`. */
  onInboxMessage(handler: (delivery: InboxMessage) => void): () => void {
    return this.on("inbox", handler);
  }

  /** Calls `handler` for every receipt of a direct message sent with `receipt: true`. */
  onReceipt(handler: (receipt: Receipt) => void): () => void {
    return this.on("receipt", handler);
  }

  /** Calls `handler` for every change of the tenant's agent directory: `{change, agent}`. Only a
   * connection to the `sys.discovery` channel gets them (`watchAgents` makes one). */
  onAgentUpdate(handler: (update: AgentUpdate) => void): () => void {
    return this.on("agent", handler);
  }

  /** Calls `handler` for every stream offered to this agent: `receiveStream(offer)` it (or
   * `cancelStream(offer.streamId)`). Register it before `connect()`: offers waiting for this
   * agent come right after the join. */
  onStreamOffer(handler: (offer: StreamOffer) => void): () => void {
    return this.on("streamOffer", handler);
  }

  /** Calls `handler` whenever the recipient of a stream this agent sends acknowledges bytes. */
  onStreamProgress(handler: (progress: StreamProgress) => void): () => void {
    return this.on("streamProgress", handler);
  }

  /** Calls `handler` whenever the server checkpoints a stream this agent sends. */
  onStreamCheckpoint(handler: (checkpoint: StreamCheckpoint) => void): () => void {
    return this.on("streamCheckpoint", handler);
  }

  /** Calls `handler` when the recipient of a stream this agent sent has verified all of it. */
  onStreamComplete(handler: (complete: StreamComplete) => void): () => void {
    return this.on("streamComplete", handler);
  }

  /** Calls `handler` when a stream this agent sends or receives is cancelled. */
  onStreamCancelled(handler: (cancelled: StreamCancelled) => void): () => void {
    return this.on("streamCancelled", handler);
  }

  /** Calls `handler` when a stream this agent sends or receives fails. */
  onStreamError(handler: (failure: StreamFailure) => void): () => void {
    return this.on("streamError", handler);
  }

  /**
   * Every message from now on, as an async iterator: `for await (const m of agent.messages())`.
   * Messages queue until read. The iteration ends after `disconnect()` and throws the error that
   * ended the connection otherwise; `signal` ends it early.
   */
  messages(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<Message> {
    return this.iterate(this.listeners, options);
  }

  /**
   * Every inbox delivery from now on (needs `inbox`), as an async iterator:
   * `for await (const { message, deliveryCount } of agent.inboxMessages())`, then `ack` or
   * `reject` each. Deliveries queue until read (the server sends at most its `prefetch`, 100,
   * unsettled ones). Ends like `messages()`.
   */
  inboxMessages(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<InboxMessage> {
    return this.iterate(this.inboxListeners, options);
  }

  /**
   * Every change of the tenant's agent directory from now on (on the `sys.discovery` channel), as
   * an async iterator: `for await (const { change, agent } of watcher.agentUpdates())`. Changes
   * are ephemeral: those made while the connection was down are not replayed (call `discover()`
   * after a reconnect to catch up). Ends like `messages()`.
   */
  agentUpdates(options: { signal?: AbortSignal } = {}): AsyncIterableIterator<AgentUpdate> {
    return this.iterate(this.agentListeners, options);
  }

  /** An async iterator fed by `listeners` (pushed to by the frame handlers, ended by `finish`). */
  private iterate<T>(listeners: Set<Listener<T>>, options: { signal?: AbortSignal }): AsyncIterableIterator<T> {
    const buffer: T[] = [];
    let waiting: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
    let done = false;
    let failure: SwitchboardError | undefined;
    const listener: Listener<T> = {
      push: (item) => {
        if (waiting) {
          const w = waiting;
          waiting = undefined;
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
          waiting = undefined;
          if (error) w.reject(error);
          else w.resolve({ value: undefined, done: true });
        }
      },
    };
    const abort = (): void => listener.end();
    if (this.state === "closed") {
      done = true;
      failure = this.closedWith;
    } else if (options.signal?.aborted) {
      done = true;
    } else {
      listeners.add(listener);
      options.signal?.addEventListener("abort", abort, { once: true });
    }
    const iterator: AsyncIterableIterator<T> = {
      next: () => {
        if (buffer.length > 0) return Promise.resolve({ value: buffer.shift()!, done: false });
        if (done) {
          if (failure) {
            const e = failure;
            failure = undefined;
            return Promise.reject(e);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiting = { resolve, reject };
        });
      },
      return: () => {
        listener.end();
        buffer.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
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
  async send(message: SendOptions): Promise<SendResult> {
    if (message.noReply && !message.ephemeral) {
      throw new SwitchboardError("invalid_argument", "noReply is for ephemeral messages only; persisted ones need their acknowledgement");
    }
    if (message.receipt && (message.to === undefined || message.ephemeral)) {
      throw new SwitchboardError("invalid_argument", "receipt is for persisted direct messages (with `to`): only those go to an inbox");
    }
    const id = message.id ?? randomId();
    const header: Record<string, Json> = { type: message.type, id };
    if (message.data !== undefined) header.data = message.data;
    if (message.to !== undefined) header.to = message.to;
    if (message.ephemeral) header.ephemeral = true;
    if (message.receipt) header.receipt = true;
    const attachments = (message.attachments ?? []).map(toBytes);
    const payload = attachments.length > 0 ? encodeEnvelope(header, attachments) : header;
    if (message.noReply) {
      this.fireAndForget("publish", payload);
      return { id };
    }
    const ack = (await this.request("publish", payload, !message.ephemeral)) as SendResult;
    const result: SendResult = { id: ack.id ?? id };
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
  async receive(options: ReceiveOptions = {}): Promise<Message[]> {
    if (options.to !== undefined) {
      throw new SwitchboardError(
        "unsupported",
        "receive({to}) is not available: the server's history cannot filter by recipient yet; filter the result by `message.to`",
      );
    }
    const query: HistoryQuery = {};
    if (options.pollSource !== undefined) query.pollSource = options.pollSource;
    if (options.from !== undefined) query.sender = options.from;
    if (options.type !== undefined) query.type = options.type;
    if (options.limit !== undefined) query.limit = options.limit;
    if (options.before !== undefined) query.to_offset = options.before - 1;
    if (options.after !== undefined) {
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
  async signal(signal: SignalOptions): Promise<void> {
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
  async ack(id: string): Promise<void> {
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
  async reject(id: string, options: RejectOptions = {}): Promise<void> {
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
  async announce(capabilities: string[], metadata?: Record<string, Json>): Promise<AgentCard> {
    return readCard(await this.request("announce", announcePayload(capabilities, metadata), true));
  }

  /** Replaces this agent's metadata (its capabilities stay); resolves with its card. Rejects
   * with `not_found` when the agent never announced itself. */
  async updateMetadata(metadata: Record<string, Json>): Promise<AgentCard> {
    return readCard(await this.request("update_metadata", updateMetadataPayload(metadata), true));
  }

  /**
   * Finds the tenant's announced agents, by name: those with `capability`, whose metadata meets
   * every one of `filters` (`{"field": value}` equal, `{"field": {min?, max?}}` a number within
   * the bounds; fields may be dotted paths such as `"stats.reputation"`), online or not
   * (`online`), at most `limit` (1–1000, default 100). Temporary keys need the `presence`
   * capability on the channel `sys.discovery`.
   */
  async discover(query: DiscoverQuery = {}): Promise<AgentCard[]> {
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
  async sendStream(to: string, source: StreamSource, options: StreamSendOptions = {}): Promise<StreamSent> {
    if (typeof to !== "string" || to.length === 0) {
      throw new SwitchboardError("invalid_argument", "sendStream() needs `to`, the receiving agent");
    }
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "sendStream() takes an options object {name?, size?, contentType?, meta?, onOpen?, onProgress?}");
    }
    const reader = ByteReader.of(source);
    const described = describeSource(source);
    const open: Record<string, Json> = { to };
    const name = options.name ?? described.name;
    const size = options.size ?? described.size;
    const contentType = options.contentType ?? described.contentType;
    if (name !== undefined) open.name = name;
    if (size !== undefined) open.size = size;
    if (contentType !== undefined) open.content_type = contentType;
    if (options.meta !== undefined) open.meta = options.meta;
    let position: ReturnType<typeof readPosition>;
    try {
      // Not re-sent after a dropped socket: it could open a second stream.
      position = readPosition(await this.request("stream_open", open, false));
    } catch (e) {
      reader.close();
      throw e;
    }
    const streamId = position.streamId;
    const abort = this.track(streamId);
    try {
      if (options.onOpen) this.callback(options.onOpen, streamId);
      return await pump(this.request.bind(this), streamId, reader, createSha256(), { seq: position.nextSeq, offset: position.offset }, abort, (p) =>
        this.callback(options.onProgress, p),
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
  async resumeStream(streamId: string, source: StreamSource, options: StreamResumeOptions = {}): Promise<StreamSent> {
    checkStreamId(streamId);
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "resumeStream() takes an options object {onProgress?}");
    }
    const reader = ByteReader.of(source);
    let position: ReturnType<typeof readPosition>;
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
      return await pump(this.request.bind(this), streamId, reader, hasher, { seq: position.nextSeq, offset: position.offset }, abort, (p) =>
        this.callback(options.onProgress, p),
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
  async receiveStream(offer: StreamOffer | string, options: StreamReceiveOptions = {}): Promise<StreamReceived> {
    const streamId = typeof offer === "string" ? offer : (offer as StreamOffer | null)?.streamId;
    checkStreamId(streamId);
    if (typeof options !== "object" || options === null) {
      throw new SwitchboardError("invalid_argument", "receiveStream() takes an options object {sink?, resumeFrom?, onProgress?}");
    }
    if (this.incoming.has(streamId)) {
      throw new SwitchboardError("invalid_argument", `stream ${streamId} is being received already`);
    }
    if (this.state === "closed") throw this.closedError();
    const parts = options.sink === undefined ? [] : undefined;
    const sink = openSink(options.sink, parts ?? []);
    const hasher = createSha256();
    const received = options.resumeFrom === undefined ? 0 : await readPrefix(options.resumeFrom, hasher, parts);
    if (this.incoming.has(streamId)) {
      throw new SwitchboardError("invalid_argument", `stream ${streamId} is being received already`);
    }
    const incoming = new Incoming(streamId, this.request.bind(this), sink, hasher, received, parts, (p) => this.callback(options.onProgress, p));
    this.incoming.set(streamId, incoming);
    void incoming.done.catch(() => undefined).finally(() => {
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
  async cancelStream(streamId: string, reason?: string): Promise<void> {
    checkStreamId(streamId);
    if (reason !== undefined && typeof reason !== "string") {
      throw new SwitchboardError("invalid_argument", "reason is a string");
    }
    const payload: Record<string, Json> = { stream_id: streamId };
    if (reason !== undefined) payload.reason = reason;
    await this.request("stream_cancel", payload, false);
    this.failStream(streamId, cancelledError({ streamId, by: this.resolved!.options.agentName, ...(reason === undefined ? {} : { reason }) }));
  }

  /**
   * One page of history with every bound of the protocol's query (spec/protocol.md), from the
   * storage tier `pollSource` names (default: the connection's `pollSource`, else `"AUTO"`:
   * cache, then log, then database, stitched by offset). The page's `sources` tell which tier
   * served which offsets. Rejects with `no_history` for a tier the channel's storage policy does
   * not keep, `invalid_argument` for a source that is none.
   */
  async history(query: HistoryQuery = {}): Promise<HistoryPage> {
    const raw = await this.request("history", historyPayload(query), true);
    try {
      return readHistoryPage(raw);
    } catch (e) {
      throw new SwitchboardError("internal", asError(e).message);
    }
  }

  /** The agents present now, asked of the server. */
  async presence(): Promise<PresenceAgent[]> {
    const state = (await this.request("presence", {}, true)) as PresenceState;
    return presenceList(state);
  }

  /**
   * Switches to a new API key without dropping the connection: sends the protocol's `auth` event
   * on the live socket and uses the key for every later reconnect. Without an argument, asks
   * `refreshApiKey`. Rejects with `invalid_key` if the server refuses it (the server then closes
   * the socket).
   */
  async refreshKey(apiKey?: string): Promise<void> {
    let key = apiKey;
    if (key === undefined) {
      const refresh = this.resolved?.options.refreshApiKey;
      if (!refresh) throw new SwitchboardError("invalid_argument", "refreshKey() without a key needs the refreshApiKey option");
      key = await refresh();
    }
    if (typeof key !== "string" || key.length === 0) {
      throw new SwitchboardError("invalid_argument", "the new API key must be a non-empty string");
    }
    if (this.state === "closed") throw this.closedError();
    this.apiKey = key;
    if (this.state !== "joined" || !this.ws) return; // the next (re)connect authenticates with it
    await new Promise<void>((resolve, reject) => {
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
  async disconnect(): Promise<void> {
    if (this.state === "closed") return;
    const ws = this.ws;
    this.finish(undefined, { code: 1000, reason: "disconnect() was called" });
    if (ws && ws.readyState !== 3 /* CLOSED */) {
      await new Promise<void>((resolve) => {
        // The close handshake normally takes one round trip; a dead peer must not hang the caller.
        const timer = setTimeout(resolve, 1000);
        ws.addEventListener("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  // Typed overloads of EventTarget's methods.
  override addEventListener<K extends keyof AgentConnectionEventMap>(
    type: K,
    listener: (event: AgentConnectionEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null | ((event: never) => void),
    options?: boolean | AddEventListenerOptions,
  ): void {
    super.addEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  override removeEventListener<K extends keyof AgentConnectionEventMap>(
    type: K,
    listener: (event: AgentConnectionEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null | ((event: never) => void),
    options?: boolean | EventListenerOptions,
  ): void {
    super.removeEventListener(type, listener as EventListenerOrEventListenerObject | null, options);
  }

  // ---------------------------------------------------------------------------------------------
  // Events

  private on<K extends keyof AgentConnectionEventMap>(
    type: K,
    handler: (detail: AgentConnectionEventMap[K]["detail"]) => void,
  ): () => void {
    const listener = (event: Event): void => handler((event as AgentConnectionEventMap[K]).detail);
    super.addEventListener(type, listener);
    return () => super.removeEventListener(type, listener);
  }

  private emit<K extends keyof AgentConnectionEventMap>(type: K, detail: AgentConnectionEventMap[K]["detail"]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  private emitError(error: SwitchboardError): void {
    this.emit("error", error);
  }

  // ---------------------------------------------------------------------------------------------
  // Socket

  private get timeoutMs(): number {
    return this.resolved?.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  private openSocket(): void {
    const resolved = this.resolved!;
    let ws: WebSocket;
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
    ws.onmessage = (event: MessageEvent) => {
      if (ws === this.ws) this.onData(event.data as unknown);
    };
    ws.onclose = (event: CloseEvent) => {
      if (ws === this.ws) this.lost(event.code, event.reason);
    };
    // Every error is followed by a close event, which carries what we can know.
    ws.onerror = () => undefined;
  }

  private onOpen(): void {
    this.socketError = undefined;
    this.heard = true;
    this.heartbeatRef = undefined;
    const period = this.resolved!.heartbeatMs;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), period);
    // Authenticate with the auth event rather than the URL, so the key stays out of access logs.
    this.sendAuth(this.apiKey, (result) => {
      if (!result.ok) {
        // The server closes with 4500 next; remember why.
        this.socketError = { code: result.error.code, message: messageOf(result.error) };
        if (this.firstJoin) this.fail(result.error);
        return;
      }
      this.sendJoin();
    });
  }

  private heartbeat(): void {
    if (!this.heard && this.heartbeatRef !== undefined) {
      // Give up on the silent socket without waiting for its close handshake.
      this.lost(4001, "no heartbeat reply in time");
      return;
    }
    this.heard = false;
    const ref = this.takeRef();
    this.heartbeatRef = ref;
    this.pending.set(ref, { kind: "heartbeat" });
    this.write({ joinRef: null, ref, topic: PHOENIX, event: "heartbeat", payload: {} });
  }

  private sendAuth(apiKey: string, onReply: (result: { ok: true } | { ok: false; error: SwitchboardError }) => void): string {
    const ref = this.takeRef();
    this.pending.set(ref, { kind: "auth", onReply });
    this.write({ joinRef: null, ref, topic: PHOENIX, event: "auth", payload: { api_key: apiKey } });
    return ref;
  }

  private sendJoin(): void {
    const options = this.resolved!.options;
    const ref = this.takeRef();
    this.joinRef = ref;
    this.kicked = undefined;
    const params: Record<string, Json> = {
      agent_name: options.agentName,
      scope: options.apiKeyScope ?? "private",
      echo: options.echo ?? true,
      presence: options.presence ?? true,
    };
    if (options.channelPassword !== undefined) params.password = options.channelPassword;
    if (options.meta !== undefined) params.meta = options.meta;
    const types = eventTypes(options);
    if (types !== undefined) params.event_types = types;
    const autoReceive = options.autoReceive ?? true;
    const resume = autoReceive ? this.tracker.resume() : undefined;
    if (resume) {
      params.since = resume.since;
      if (resume.epoch !== undefined) params.epoch = resume.epoch;
    }
    if (this.sessionId !== undefined) params.session_id = this.sessionId;
    if (options.enableWebrtcRelay) params.enable_webrtc_relay = true;
    if (options.storageEvents) params.kv_events = true;
    if (options.inbox) params.inbox = true;
    const source = pollSourceWire(options.pollSource);
    if (source !== undefined) params.poll_source = source;
    this.pending.set(ref, { kind: "join" });
    this.write({ joinRef: ref, ref, topic: this.topic, event: "phx_join", payload: params });
  }

  private get topic(): string {
    return `channel:${this.resolved!.options.channelName}`;
  }

  private takeRef(): string {
    this.nextRef += 1;
    return String(this.nextRef);
  }

  private write(frame: Frame): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== 1 /* OPEN */) return;
    if (frame.payload instanceof Uint8Array) {
      ws.send(encodeBinaryPush(frame.joinRef, frame.ref, frame.topic, frame.event, frame.payload));
    } else {
      ws.send(encodeText(frame));
    }
  }

  private onData(data: unknown): void {
    this.heard = true;
    let frame: Frame;
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
        // A temporary key is about to expire: swap in a fresh one without dropping the socket.
        this.refreshKey().catch((e: unknown) => this.emitError(asError(e)));
      }
      return;
    }
    if (frame.topic !== this.topic) return;
    // A frame of an earlier join of this topic is not ours.
    if (frame.joinRef !== null && frame.joinRef !== this.joinRef) return;
    switch (frame.event) {
      case "message":
        this.onMessageFrame(frame.payload);
        break;
      case "presence_state":
        this.handlePresence(this.presenceTracker.syncState(frame.payload as PresenceState));
        break;
      case "presence_diff":
        this.handlePresence(this.presenceTracker.syncDiff(frame.payload as { joins?: PresenceState; leaves?: PresenceState }));
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
        this.kicked = isErrorReply(frame.payload)
          ? frame.payload
          : { code: "internal", message: `unreadable kick: ${JSON.stringify(frame.payload)}` };
        break;
      case "phx_close": {
        // Removed by the server (taken over, channel deleted): reconnecting would fight for the name.
        const reply = this.kicked ?? { code: "not_joined", message: "the server closed the channel" };
        const error = SwitchboardError.fromReply(reply);
        this.emitError(error);
        this.finish(error, { code: 1000, reason: error.message });
        break;
      }
      case "phx_error":
        // The channel crashed on the server: join again, resuming from the last offset.
        this.sendJoin();
        break;
      default:
        break;
    }
  }

  private onMessageFrame(payload: unknown): void {
    let message: Message;
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
      let update: AgentUpdate;
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
  private get watchesDirectory(): boolean {
    const options = this.resolved!.options;
    return options.channelName === DISCOVERY_CHANNEL && (options.apiKeyScope ?? "private") === "private";
  }

  private onSignalFrame(payload: unknown): void {
    const signal = payload as Partial<Signal> | null;
    if (typeof signal?.from !== "string" || !SIGNAL_KINDS.includes(signal.kind as SignalKind)) {
      this.emitError(new SwitchboardError("malformed_frame", `unreadable signal: ${JSON.stringify(payload)}`));
      return;
    }
    this.emit("signal", { from: signal.from, kind: signal.kind as SignalKind, data: signal.data ?? null });
  }

  private onStorageFrame(payload: unknown): void {
    let change: StorageChange;
    try {
      change = readStorageChange(payload);
    } catch (e) {
      this.emitError(new SwitchboardError("malformed_frame", asError(e).message));
      return;
    }
    this.emit("storage", change);
  }

  private onInboxFrame(payload: unknown): void {
    let delivery: InboxMessage;
    try {
      delivery = readInboxMessage(payload);
    } catch (e) {
      this.emitError(new SwitchboardError("malformed_frame", `unreadable new_message: ${asError(e).message}`));
      return;
    }
    // Not through the offset tracker: a redelivery carries the same offset and must arrive.
    this.emit("inbox", delivery);
    for (const listener of this.inboxListeners) listener.push(delivery);
  }

  private onReceiptFrame(payload: unknown): void {
    let receipt: Receipt;
    try {
      receipt = readReceipt(payload);
    } catch (e) {
      this.emitError(new SwitchboardError("malformed_frame", asError(e).message));
      return;
    }
    this.emit("receipt", receipt);
  }

  private onStreamFrame(event: string, payload: unknown): void {
    try {
      switch (event) {
        case "stream_offer": {
          const offer = readStreamOffer(payload);
          const incoming = this.incoming.get(offer.streamId);
          // Offered again after a rejoin: a stream being received continues where it got to.
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
  private accept(incoming: Incoming, offset: number): void {
    this.request("stream_accept", { stream_id: incoming.streamId, offset }, false).then(
      (reply) => {
        try {
          readStreamOffer(reply);
        } catch (e) {
          incoming.abort.fail(new SwitchboardError("internal", asError(e).message));
        }
      },
      (e: unknown) => {
        const error = asError(e);
        if (error.code !== "disconnected") incoming.abort.fail(error);
      },
    );
  }

  /** Registers a stream being sent, so cancel and error events (and the end of the connection)
   * reach it. */
  private track(streamId: string): Abort {
    const abort = new Abort();
    if (this.state === "closed") abort.fail(this.closedError());
    const set = this.outgoing.get(streamId) ?? new Set<Abort>();
    set.add(abort);
    this.outgoing.set(streamId, set);
    return abort;
  }

  private untrack(streamId: string, abort: Abort): void {
    const set = this.outgoing.get(streamId);
    set?.delete(abort);
    if (set?.size === 0) this.outgoing.delete(streamId);
  }

  /** Fails whatever this connection does with stream `streamId`. */
  private failStream(streamId: string, error: SwitchboardError): void {
    for (const abort of this.outgoing.get(streamId) ?? []) abort.fail(error);
    this.incoming.get(streamId)?.abort.fail(error);
  }

  /** Calls an application callback; what it throws becomes an `error` event. */
  private callback<T>(fn: ((value: T) => void) | undefined, value: T): void {
    if (!fn) return;
    try {
      fn(value);
    } catch (e) {
      this.emitError(new SwitchboardError("internal", `a stream callback threw: ${asError(e).message}`, { cause: e }));
    }
  }

  private handlePresence(change: { joined: string[]; left: string[] }): void {
    this.emit("presence", { agents: this.presenceTracker.list(), joined: change.joined, left: change.left });
  }

  private onReply(frame: Frame): void {
    const ref = frame.ref;
    if (ref === null) return;
    const pending = this.pending.get(ref);
    if (!pending) return;
    this.pending.delete(ref);
    const body = frame.payload as { status?: unknown; response?: unknown } | null;
    const status = body?.status;
    const response = body?.response ?? {};
    const error =
      status === "ok"
        ? undefined
        : isErrorReply(response)
          ? SwitchboardError.fromReply(response)
          : new SwitchboardError("internal", `unexpected reply ${JSON.stringify(body)}`);
    switch (pending.kind) {
      case "heartbeat":
        if (this.heartbeatRef === ref) this.heartbeatRef = undefined;
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

  private onJoinReply(response: unknown, error: SwitchboardError | undefined): void {
    if (error) {
      if (this.firstJoin) {
        this.fail(error);
      } else {
        // A refused rejoin (the name is held, the password changed): the channel is lost.
        this.emitError(error);
        this.finish(error, { code: 1000, reason: error.message });
      }
      return;
    }
    const raw = response as {
      channel: string;
      scope: "private" | "public";
      agent_name: string;
      session_id: string;
      epoch: string;
      head: number;
      persistent: boolean;
      gap?: Gap;
    };
    const reply: JoinReply = {
      channel: raw.channel,
      scope: raw.scope,
      agentName: raw.agent_name,
      sessionId: raw.session_id,
      epoch: raw.epoch,
      head: raw.head,
      persistent: raw.persistent,
    };
    if (raw.gap) reply.gap = raw.gap;
    this.reply = reply;
    this.tracker.onJoin(raw);
    this.sessionId = raw.session_id;
    this.attempt = 0;
    this.keyRetried = false;
    this.state = "joined";
    const first = this.firstJoin;
    this.firstJoin = undefined;
    this.emit("connect", { reply, reconnected: first === undefined });
    first?.resolve(reply);
    if (raw.gap) this.emit("gap", raw.gap);
    const waiting = this.queue.splice(0).sort((a, b) => a.seq - b.seq);
    for (const request of waiting) this.sendOrQueue(request);
  }

  /** The socket was lost without us closing it. */
  private lost(code: number, reason: string): void {
    if (this.state === "closed") return;
    this.dropSocket();
    const error = this.closeError(code, reason);
    if (this.firstJoin) {
      this.fail(error);
      return;
    }
    const options = this.resolved!.options;
    // A refused, revoked or expired key is not retried, but a fresh one from refreshApiKey is, once.
    const keyRefused = code === 4500 || code === 4503 || code === 4504;
    const refreshable = keyRefused && options.refreshApiKey !== undefined && !this.keyRetried;
    if ((!shouldReconnect(code) && !refreshable) || options.reconnect === false) {
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

  private dropSocket(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      ws.onopen = null;
      ws.onmessage = null;
      ws.onclose = null;
      if (ws.readyState === 0 || ws.readyState === 1) {
        try {
          ws.close(1000);
        } catch {
          // Already closing.
        }
      }
    }
    this.joinRef = undefined;
    if (this.state === "joined") this.state = "reconnecting";
  }

  /** Moves requests in flight back to the queue (or fails those that cannot be re-sent). */
  private requeue(): void {
    for (const pending of this.pending.values()) {
      if (pending.kind === "request") {
        if (pending.request.retry) this.queue.push(pending.request);
        else {
          clearTimeout(pending.request.timer);
          pending.request.reject(
            new SwitchboardError("disconnected", "the connection dropped before the reply; the request may or may not have taken effect"),
          );
        }
      } else if (pending.kind === "auth") {
        pending.onReply({
          ok: false,
          error: new SwitchboardError("disconnected", "the connection dropped before the auth reply; the key is used for the reconnect"),
        });
      }
    }
    this.pending.clear();
    this.queue.sort((a, b) => a.seq - b.seq);
  }

  private scheduleReconnect(forceRefresh: boolean): void {
    const delay = backoffDelay(this.resolved!.options.backoff ?? {}, this.attempt);
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.reconnect(forceRefresh);
    }, delay);
  }

  private async reconnect(forceRefresh: boolean): Promise<void> {
    const refresh = this.resolved!.options.refreshApiKey;
    if (refresh) {
      try {
        const key = await refresh();
        if (this.state === "closed") return;
        if (forceRefresh && key === this.apiKey) {
          const error = new SwitchboardError("invalid_key", "the server refused the API key and refreshApiKey returned the same one");
          this.emitError(error);
          this.finish(error, { code: 1000, reason: error.message });
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

  private closeError(code: number, reason: string): SwitchboardError {
    if (this.socketError) return SwitchboardError.fromReply(this.socketError, code);
    const known = (CloseCodes as Record<number, ErrorCode>)[code];
    const text = reason ? `the connection closed (${code}): ${reason}` : `the connection closed (${code})`;
    return new SwitchboardError(known ?? "connection_failed", text, { closeCode: code });
  }

  /** The first connect failed: nothing is retried. */
  private fail(error: SwitchboardError): void {
    const first = this.firstJoin;
    this.firstJoin = undefined;
    this.finish(error, undefined);
    first?.reject(error);
  }

  /** Ends the connection for good. */
  private finish(error: SwitchboardError | undefined, info: { code: number; reason: string } | undefined): void {
    if (this.state === "closed") return;
    const wasUp = this.state !== "idle" && this.state !== "connecting";
    this.state = "closed";
    this.closedWith = error;
    this.dropSocket();
    this.state = "closed";
    clearTimeout(this.reconnectTimer);
    clearInterval(this.keyTimer);
    this.reconnectTimer = undefined;
    this.keyTimer = undefined;
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
      const detail: DisconnectInfo = { code: info.code, reason: info.reason, willReconnect: false };
      if (error) detail.error = error;
      this.emit("disconnect", detail);
    }
  }

  private closedError(): SwitchboardError {
    return (
      this.closedWith ??
      new SwitchboardError("not_joined", "disconnect() left the channel; connect a new AgentConnection to join again")
    );
  }

  // ---------------------------------------------------------------------------------------------
  // Requests

  private request(event: string, payload: Json | Uint8Array, retry: boolean): Promise<unknown> {
    if (this.state === "closed") return Promise.reject(this.closedError());
    if (this.state === "idle") {
      return Promise.reject(new SwitchboardError("not_joined", "call connect() before sending or reading"));
    }
    return new Promise((resolve, reject) => {
      this.nextSeq += 1;
      const request: Request = { seq: this.nextSeq, event, payload, retry, resolve, reject, timer: undefined };
      request.timer = setTimeout(() => {
        this.forget(request);
        reject(new SwitchboardError("timeout", `no reply to ${event} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.sendOrQueue(request);
    });
  }

  private sendOrQueue(request: Request): void {
    if (this.state !== "joined" || !this.ws) {
      this.queue.push(request);
      return;
    }
    const ref = this.takeRef();
    this.pending.set(ref, { kind: "request", request });
    this.write({ joinRef: this.joinRef ?? null, ref, topic: this.topic, event: request.event, payload: request.payload });
  }

  private fireAndForget(event: string, payload: Json | Uint8Array): void {
    if (this.state === "closed") throw this.closedError();
    if (this.state !== "joined" || !this.ws) {
      throw new SwitchboardError("disconnected", "not connected right now; a noReply message is not queued");
    }
    this.write({ joinRef: this.joinRef ?? null, ref: null, topic: this.topic, event, payload });
  }

  /** Removes a request that timed out from wherever it waits. */
  private forget(request: Request): void {
    const i = this.queue.indexOf(request);
    if (i >= 0) this.queue.splice(i, 1);
    for (const [ref, pending] of this.pending) {
      if (pending.kind === "request" && pending.request === request) this.pending.delete(ref);
    }
  }
}

// -------------------------------------------------------------------------------------------------
// Helpers

/**
 * Watches the tenant's agent directory: joins the `sys.discovery` channel (as `agentName`,
 * default `watcher-<random>`; a watcher does not count as an online agent) and resolves with the
 * connected `AgentConnection`, whose `agent` events (`onAgentUpdate`, `agentUpdates()`) tell
 * every change: `{change: "announced" | "updated" | "online" | "offline" | "removed", agent}`.
 * `handler`, when given, is registered before the join. It joins without presence and only for
 * `agent` messages unless `presence`/`eventTypes` say otherwise; `disconnect()` it when done.
 *
 * ```js
 * const watcher = await watchAgents({ url, apiKey }, ({ change, agent }) => console.log(change, agent.name));
 * const everyone = await watcher.discover(); // the directory now; the handler tells what changes
 * ```
 */
export async function watchAgents(options: WatchAgentsOptions, handler?: (update: AgentUpdate) => void): Promise<AgentConnection> {
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
    apiKeyScope: "private",
  });
  return watcher;
}

async function resolveOptions(options: ConnectOptions): Promise<Resolved> {
  if (typeof options !== "object" || options === null) {
    throw new SwitchboardError("invalid_argument", "connect() takes an options object");
  }
  for (const field of ["channelName", "agentName", "apiKey"] as const) {
    if (typeof options[field] !== "string" || options[field].length === 0) {
      throw new SwitchboardError("invalid_argument", `connect() needs ${field}`);
    }
  }
  if (options.useWebsocket === false) {
    throw new SwitchboardError(
      "unsupported",
      "useWebsocket: false is not available: the server has no long-polling transport yet; the HTTP API (/v1/channels/…) serves backends that cannot hold a socket",
    );
  }
  if (options.channelId !== undefined) {
    throw new SwitchboardError("unsupported", "channelId is not available: channels are addressed by channelName");
  }
  if (options.apiKeyScope !== undefined && options.apiKeyScope !== "private" && options.apiKeyScope !== "public") {
    throw new SwitchboardError("invalid_argument", "apiKeyScope is `private` or `public`");
  }
  pollSourceWire(options.pollSource); // refused here, not at every join
  const base = options.url ?? (globalThis as { location?: { origin?: string } }).location?.origin;
  if (!base) throw new SwitchboardError("invalid_argument", "connect() needs url outside a browser page");
  return {
    options: { ...options },
    url: socketUrl(base),
    WebSocket: options.WebSocket ?? (await defaultWebSocket()),
    timeoutMs: options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    heartbeatMs: Math.max(options.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_MS, 10),
  };
}

function eventTypes(options: ConnectOptions): string[] | undefined {
  if (options.autoReceive === false) return []; // the server delivers nothing; receive() reads
  const custom = options.customEventType;
  const types = [...(options.eventTypes ?? []), ...(custom === undefined ? [] : Array.isArray(custom) ? custom : [custom])];
  return options.eventTypes === undefined && custom === undefined ? undefined : types;
}

/** `http(s)://` or `ws(s)://host[:port][/socket[/websocket]]` → the WebSocket endpoint. */
export function socketUrl(base: string): string {
  let url: URL;
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

async function defaultWebSocket(): Promise<WebSocketConstructor> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  // Node 20 has no global WebSocket: use the `ws` package when it is installed.
  const name = "ws";
  try {
    const mod = (await import(/* @vite-ignore */ name)) as { default?: WebSocketConstructor; WebSocket?: WebSocketConstructor };
    const ctor = mod.default ?? mod.WebSocket;
    if (ctor) return ctor;
  } catch {
    // Reported below.
  }
  throw new SwitchboardError(
    "invalid_argument",
    "no WebSocket implementation: use Node 22+, install the `ws` package, or pass the WebSocket option",
  );
}

function toBytes(value: Uint8Array | ArrayBuffer | ArrayBufferView): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new SwitchboardError("invalid_argument", "attachments are Uint8Array, ArrayBuffer or typed arrays");
}

/** A random 128-bit id, hex-encoded. */
export function randomId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function checkStreamId(streamId: unknown): asserts streamId is string {
  if (typeof streamId !== "string" || streamId.length === 0) {
    throw new SwitchboardError("invalid_argument", "a stream is named by its id (`offer.streamId`, a non-empty string)");
  }
}

function readCard(raw: unknown): AgentCard {
  try {
    return readAgentCard(raw);
  } catch (e) {
    throw new SwitchboardError("internal", asError(e).message);
  }
}

function asError(e: unknown): SwitchboardError {
  if (e instanceof SwitchboardError) return e;
  return new SwitchboardError("internal", e instanceof Error ? e.message : String(e), { cause: e });
}

function messageOf(error: SwitchboardError): string {
  const prefix = `${error.code}: `;
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}
