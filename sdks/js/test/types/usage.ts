// Compiled with `tsc --noEmit` by `npm test`: the published declarations type an application's
// code as documented (event details, results, error codes), and misuse fails to compile.
import { AgentConnection, WebRtcHelper, HttpClient, watchAgents, DISCOVERY_CHANNEL, type AgentCard, type AgentUpdate, type AgentChange, type DiscoverQuery, type InboxMessage, type Receipt, type ReceiptStatus, type DeadLetter, type DeadLetterPage, type StorageEntry, type StoragePage, type StorageChange, type Call, SwitchboardError, type Message, type SendResult, type PresenceAgent, type ErrorCode, type StreamOffer, type StreamSent, type StreamReceived, type StreamProgress, type StreamFailure, type StreamCancelled, type HistoryPage, type TierRange, type Tier, type PollSource, type ChannelInfo, type StoragePolicy, type Retention } from "../../dist/index.js";

export async function usage(agent: AgentConnection): Promise<void> {
  await agent.connect({ url: "http://127.0.0.1:7400", channelName: "c", agentName: "a", apiKey: "k", apiKeyScope: "public" });
  agent.addEventListener("message", (event) => {
    const message: Message = event.detail;
    const offset: number | undefined = message.offset;
    void offset;
  });
  agent.addEventListener("disconnect", (event) => {
    const again: boolean = event.detail.willReconnect;
    void again;
  });
  const off = agent.onPresence(({ agents }) => {
    const first: PresenceAgent | undefined = agents[0];
    void first;
  });
  off();
  const result: SendResult = await agent.send({ type: "chat", data: { nested: [1, "two", null] }, attachments: [new Uint8Array(1)] });
  void result.id;
  for await (const message of agent.messages()) void message.from;
  try {
    await agent.receive({ from: "bob", limit: 10 });
  } catch (e) {
    if (e instanceof SwitchboardError) {
      const code: ErrorCode = e.code;
      void code;
    }
  }
  await agent.signal({ to: "bob", kind: "offer", data: { sdp: "v=0" } });
  agent.onSignal(({ from, kind, data }) => void [from, kind, data]);
  agent.addEventListener("signal", (event) => {
    const kind: "offer" | "answer" | "ice" | "bye" = event.detail.kind;
    void kind;
  });
  // @ts-expect-error: signal kinds are offer, answer, ice and bye
  await agent.signal({ to: "bob", kind: "hello" });
  const rtc = new WebRtcHelper(agent, { iceServers: [{ urls: "stun:stun.example.org" }], autoAnswer: true });
  rtc.onIncomingCall((incoming: Call) => void incoming.answer());
  const call = await rtc.call("bob", { dataChannel: "chat" });
  call.onRemoteStream((stream: MediaStream) => void stream.id);
  call.onEnded(({ reason, remote }) => void [reason, remote]);
  await call.connected;
  call.dataChannel?.send("hi");
  await call.hangUp();
  // @ts-expect-error: dataChannel is a label or true
  await rtc.call("bob", { dataChannel: 1 });
  const entry: StorageEntry = await agent.storage.put("config/theme", { dark: true }, { version: 0, ttlSecs: 60 });
  const version: number = entry.version;
  const expiresAt: number | undefined = entry.expiresAt;
  void [version, expiresAt, entry.updatedAt, entry.updatedBy];
  await agent.storage.delete("config/theme", { version });
  const page: StoragePage = await agent.storage.list({ prefix: "config/", limit: 10 });
  const next: string | undefined = page.next;
  void next;
  for await (const e of agent.storage.entries({ prefix: "config/" })) void e.value;
  agent.onStorageChange((change: StorageChange) => void [change.key, change.op, change.value]);
  agent.addEventListener("storage", (event) => {
    const op: "put" | "delete" = event.detail.op;
    void op;
  });
  await agent.connect({ channelName: "c", agentName: "a", apiKey: "k", storageEvents: true });
  await agent.connect({ channelName: "c", agentName: "a", apiKey: "k", inbox: true });
  agent.onInboxMessage(({ deliveryCount, message }: InboxMessage) => void [deliveryCount, agent.ack(message.id)]);
  agent.addEventListener("inbox", (event) => {
    const count: number = event.detail.deliveryCount;
    const id: string = event.detail.message.id;
    void [count, id];
  });
  for await (const { message, deliveryCount } of agent.inboxMessages()) {
    await agent.reject(message.id, { reason: "cannot handle", requeue: deliveryCount < 3 });
  }
  agent.onReceipt((receipt: Receipt) => {
    const status: ReceiptStatus = receipt.status;
    const reason: string | undefined = receipt.reason;
    void [status, reason, receipt.deliveryCount];
  });
  agent.addEventListener("receipt", (event) => {
    const status: "delivered" | "acknowledged" | "rejected" | "dead_lettered" = event.detail.status;
    void status;
  });
  await agent.send({ to: "bob", type: "task", data: { job: 1 }, receipt: true });
  // @ts-expect-error: requeue is true or false
  await agent.reject("m1", { requeue: "no" });
  // @ts-expect-error: ack takes the message id
  await agent.ack({ id: "m1" });
  const http = new HttpClient({ url: "http://127.0.0.1:7400", apiKey: "k", apiKeyScope: "public", channelPassword: "pw" });
  const leased: InboxMessage[] = await http.inboxReceive("c", "worker", { max: 10, visibilityTimeoutMs: 60_000 });
  for (const { message } of leased) await http.inboxAck("c", "worker", message.id);
  await http.inboxReject("c", "worker", "m1", { reason: "bad", requeue: false });
  const dead: DeadLetterPage = await http.deadLetters("c", { recipient: "worker", limit: 10 });
  const letter: DeadLetter | undefined = dead.entries[0];
  const deadAt: number | undefined = letter?.deadAt;
  const cursor: string | undefined = dead.next;
  void [deadAt, cursor];
  await http.deleteDeadLetter("c", "m1");
  const backend: AgentCard = await http.announceAgent("indexer", ["index"], { region: "eu" });
  void backend.updatedAt;
  await http.updateAgentMetadata("indexer", { region: "us" });
  const fetched: AgentCard = await http.agent("indexer");
  void fetched;
  const discovered: AgentCard[] = await http.discover({ capability: "index", filters: { region: "us" } });
  void discovered;
  const removed: void = await http.removeAgent("indexer");
  void removed;
  // Storage tiers: a source per read (any case), a default per connection, the tiers that served.
  await agent.connect({ channelName: "c", agentName: "a", apiKey: "k", pollSource: "cache" });
  const tiered: HistoryPage = await agent.history({ from_offset: 1, limit: 10, pollSource: "KAFKA" });
  const served: TierRange | undefined = tiered.sources[0];
  const tier: Tier | undefined = served?.tier;
  const bounds: [number, number] | undefined = served && [served.from, served.to];
  void [tier, bounds];
  const source: PollSource = "database";
  await agent.receive({ limit: 5, pollSource: source });
  const overHttp: HistoryPage = await http.history("c", { direction: "backward", limit: 10, pollSource: "AUTO" });
  void overHttp.sources;
  // @ts-expect-error: a source is a tier's name or AUTO
  await agent.history({ pollSource: "tape" });
  // @ts-expect-error: tiers are named in upper case
  const lower: Tier = "cache";
  void lower;
  const policy: StoragePolicy = "log";
  const retention: Retention = { maxMessages: 1000, cache: { maxMessages: 50, maxBytes: 1 << 20, ttlSecs: 60 }, log: { maxAgeSecs: 86_400 } };
  const created: ChannelInfo = await http.createChannel("c", { storage: policy, retention, password: "pw" });
  const kept: StoragePolicy = created.storage;
  const firstAvailable: number = created.firstAvailable;
  const cacheBound: number | undefined = created.retention.cache?.maxMessages;
  void [kept, firstAvailable, cacheBound];
  const described: ChannelInfo = await http.channel("c");
  void described.hasPassword;
  const deleted: void = await http.deleteChannel("c");
  void deleted;
  // @ts-expect-error: storage is ephemeral, cache, log or persistent
  await http.createChannel("c", { storage: "disk" });
  // @ts-expect-error: retention fields are camelCase
  await http.createChannel("c", { retention: { max_messages: 3 } });
  const card: AgentCard = await agent.announce(["translate", "summarize"], { status: "idle", stats: { reputation: 4.8 } });
  const updatedAt: number = card.updatedAt;
  const online: boolean = card.online;
  void [updatedAt, online, card.capabilities[0], card.metadata.status];
  await agent.announce(["translate"]);
  await agent.updateMetadata({ status: "busy" });
  const query: DiscoverQuery = { capability: "translate", filters: { status: "idle", price: { max: 10 }, "stats.reputation": { min: 4.5 } }, online: true, limit: 10 };
  const found: AgentCard[] = await agent.discover(query);
  void found;
  await agent.discover();
  const watcher: AgentConnection = await watchAgents({ url: "http://127.0.0.1:7400", apiKey: "k" }, ({ change, agent: who }: AgentUpdate) => void [change, who.name]);
  watcher.onAgentUpdate((update) => {
    const change: AgentChange = update.change;
    void change;
  });
  watcher.addEventListener("agent", (event) => {
    const change: "announced" | "updated" | "online" | "offline" | "removed" = event.detail.change;
    const name: string = event.detail.agent.name;
    void [change, name];
  });
  for await (const { change, agent: who } of watcher.agentUpdates()) void [change, who.online];
  const channel: string = DISCOVERY_CHANNEL;
  void channel;
  // @ts-expect-error: capabilities are an array of strings
  await agent.announce("translate");
  // @ts-expect-error: metadata is a JSON object
  await agent.updateMetadata(["busy"]);
  // @ts-expect-error: online is a boolean
  await agent.discover({ online: "yes" });
  // @ts-expect-error: watchAgents picks the channel itself
  await watchAgents({ apiKey: "k", channelName: "lobby" });
  // @ts-expect-error: watchAgents needs apiKey
  await watchAgents({ url: "http://127.0.0.1:7400" });
  const sent: StreamSent = await agent.sendStream("bob", new Blob(["hello"]), {
    name: "hello.txt",
    contentType: "text/plain",
    meta: { lang: "en" },
    onOpen: (id: string) => void id,
    onProgress: ({ streamId, offset }: StreamProgress) => void [streamId, offset],
  });
  const sentSize: number = sent.totalSize;
  const sentChecksum: string = sent.checksum;
  void [sentSize, sentChecksum];
  await agent.sendStream("bob", new Uint8Array(10));
  await agent.sendStream("bob", new ReadableStream<Uint8Array>(), { size: 10 });
  await agent.sendStream("bob", (async function* () { yield new Uint8Array(1); })());
  await agent.resumeStream(sent.streamId, new Uint8Array(10), { onProgress: (p) => void p.offset });
  agent.onStreamOffer(async (offer: StreamOffer) => {
    const from: string = offer.from;
    const acked: number = offer.acked;
    const size: number | undefined = offer.size;
    void [from, acked, size, offer.name, offer.contentType, offer.meta];
    const got: StreamReceived = await agent.receiveStream(offer);
    const bytes: Uint8Array | undefined = got.bytes;
    void bytes;
    await agent.receiveStream(offer, { sink: (chunk: Uint8Array) => void chunk, onProgress: ({ offset }) => void offset });
    await agent.receiveStream(offer.streamId, { sink: new WritableStream<Uint8Array>(), resumeFrom: new Blob([]) });
    await agent.cancelStream(offer.streamId, "not now");
  });
  agent.addEventListener("streamOffer", (event) => {
    const id: string = event.detail.streamId;
    void id;
  });
  agent.onStreamProgress(({ offset }) => void offset);
  agent.onStreamCheckpoint(({ nextSeq, offset }) => void [nextSeq, offset]);
  agent.onStreamComplete(({ streamId, totalSize }) => void [streamId, totalSize]);
  agent.onStreamCancelled(({ by, reason }: StreamCancelled) => void [by, reason]);
  agent.onStreamError((failure: StreamFailure) => {
    const code: ErrorCode = failure.code;
    void [code, failure.message];
  });
  agent.addEventListener("streamError", (event) => {
    const code: ErrorCode = event.detail.code;
    void code;
  });
  // @ts-expect-error: a stream's source is bytes, a Blob, a ReadableStream or an async iterable
  await agent.sendStream("bob", "text");
  // @ts-expect-error: meta is a JSON object
  await agent.sendStream("bob", new Uint8Array(1), { meta: "x" });
  // @ts-expect-error: a sink takes Uint8Array chunks
  await agent.receiveStream("st_1", { sink: (chunk: string) => void chunk });
  // @ts-expect-error: apiKey is required
  void new HttpClient({ url: "http://127.0.0.1:7400" });
  // @ts-expect-error: values are JSON
  await agent.storage.put("k", new Date());
  // @ts-expect-error: `type` is required
  await agent.send({ data: 1 });
  // @ts-expect-error: scopes are private or public
  await agent.connect({ channelName: "c", agentName: "a", apiKey: "k", apiKeyScope: "everyone" });
  // @ts-expect-error: data is JSON
  await agent.send({ type: "x", data: new Date() });
}
