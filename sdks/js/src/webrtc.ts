/**
 * `WebRtcHelper`: calls between two agents of a channel over the server's signaling relay.
 *
 * The relay only carries `offer`, `answer`, `ice` and `bye` signals between named agents; the
 * media and data then flow peer to peer. Every signal's `data` carries the call's id, so ICE
 * candidates of an ended call never leak into the next one. Candidates trickle: each side sends
 * its own as they are found (after its description), and queues the other side's until the
 * remote description is set. Runs wherever `RTCPeerConnection` exists (browsers; in Node, pass
 * an implementation as the `RTCPeerConnection` option).
 */

import type { AgentConnection } from "./connection.js";
import { SwitchboardError } from "./errors.js";
import { randomId } from "./connection.js";
import type { Json, PresenceInfo, Signal } from "./types.js";

/** How a `WebRtcHelper` makes peer connections and answers calls. */
export interface WebRtcHelperOptions {
  /** STUN/TURN servers (default none: host candidates, enough on one machine or a LAN). */
  iceServers?: RTCIceServer[];
  /** Answer every incoming call at once, with these options (`true`: no media of our own). */
  autoAnswer?: boolean | AnswerOptions;
  /** The `RTCPeerConnection` class (default: the global one). */
  RTCPeerConnection?: typeof RTCPeerConnection;
}

/** What `call()` opens. */
export interface CallOptions {
  /** Open a data channel: `true` names it "data". */
  dataChannel?: string | true;
  /** Send these tracks (e.g. from `getUserMedia`). */
  media?: MediaStream;
}

/** What `answer()` sends back. */
export interface AnswerOptions {
  /** Send these tracks too. */
  media?: MediaStream;
}

/** Why a call ended. */
export interface CallEnd {
  /** `hang_up`, `declined`, `peer_left`, `failed`, or what the other side's `bye` said. */
  reason: string;
  /** Whether the other side (or the network) ended it. */
  remote: boolean;
}

/** The events a `Call` dispatches; each is a `CustomEvent` whose `detail` is given. */
export interface CallEventMap {
  /** A data channel opened by the other side (ours are in `dataChannels` from the start). */
  datachannel: CustomEvent<RTCDataChannel>;
  /** A new remote stream (its tracks may keep arriving). */
  stream: CustomEvent<MediaStream>;
  /** The peer connection is up (`connectionState` "connected"). */
  connected: CustomEvent<null>;
  /** The call is over. */
  ended: CustomEvent<CallEnd>;
}

type Sender = (kind: Signal["kind"], data: Record<string, Json>) => Promise<void>;

/** One call with one agent: its peer connection, data channels and remote streams. */
export class Call extends EventTarget {
  /** The other agent. */
  readonly peer: string;
  /** The call's id (in every signal). */
  readonly id: string;
  /** Whether we placed the call or received it. */
  readonly direction: "outgoing" | "incoming";
  /** The underlying connection, for anything this class does not wrap. */
  readonly peerConnection: RTCPeerConnection;
  /** Data channels by label: ours from the start, the other side's as they arrive. */
  readonly dataChannels = new Map<string, RTCDataChannel>();
  /** The other side's streams. */
  readonly remoteStreams: MediaStream[] = [];
  /** `ringing` (incoming, not answered yet), `connecting`, `connected`, or `ended`. */
  state: "ringing" | "connecting" | "connected" | "ended";
  /** How it ended, once it has. */
  end: CallEnd | undefined;
  /** Resolves when the peer connection is up; rejects with `call_ended` if it ends first. */
  readonly connected: Promise<void>;

  private readonly send: Sender;
  private readonly onEnd: (call: Call) => void;
  /** Incoming signals, handled one at a time so candidates wait for the description. */
  private work: Promise<void> = Promise.resolve();
  /** Our candidates found before our description was sent. */
  private localCandidates: RTCIceCandidateInit[] | undefined = [];
  private settle!: { resolve: () => void; reject: (e: SwitchboardError) => void };

  /** @internal Made by `WebRtcHelper`. */
  constructor(init: {
    peer: string;
    id: string;
    direction: "outgoing" | "incoming";
    peerConnection: RTCPeerConnection;
    send: Sender;
    onEnd: (call: Call) => void;
  }) {
    super();
    this.peer = init.peer;
    this.id = init.id;
    this.direction = init.direction;
    this.peerConnection = init.peerConnection;
    this.send = init.send;
    this.onEnd = init.onEnd;
    this.state = init.direction === "incoming" ? "ringing" : "connecting";
    this.connected = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.connected.catch(() => undefined); // nobody has to await it
    const pc = this.peerConnection;
    pc.onicecandidate = ({ candidate }) => {
      if (!candidate) return; // end of candidates: nothing to tell
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
  get dataChannel(): RTCDataChannel | undefined {
    return this.dataChannels.values().next().value;
  }

  /** Answers an incoming call, sending `media` too; resolves once the answer is relayed. */
  async answer(options: AnswerOptions = {}): Promise<void> {
    if (this.state !== "ringing") {
      throw new SwitchboardError("invalid_argument", `only a ringing incoming call can be answered; this one is ${this.state}`);
    }
    this.state = "connecting";
    await this.work; // the offer is set
    addMedia(this.peerConnection, options.media);
    const answer = await this.peerConnection.createAnswer();
    await this.peerConnection.setLocalDescription(answer);
    await this.sendDescription("answer");
  }

  /** Ends the call (declines it while ringing) and tells the other side with `bye`. */
  async hangUp(reason?: string): Promise<void> {
    if (this.state === "ended") return;
    const why = reason ?? (this.state === "ringing" ? "declined" : "hang_up");
    this.finish({ reason: why, remote: false });
    // The other side may be gone already; the call is over either way.
    await this.send("bye", { call: this.id, reason: why }).catch(() => undefined);
  }

  /** Calls `handler` for each data channel the other side opens. */
  onDataChannel(handler: (channel: RTCDataChannel) => void): () => void {
    return this.on("datachannel", handler);
  }

  /** Calls `handler` for each new remote stream. */
  onRemoteStream(handler: (stream: MediaStream) => void): () => void {
    return this.on("stream", handler);
  }

  /** Calls `handler` when the call ends. */
  onEnded(handler: (end: CallEnd) => void): () => void {
    return this.on("ended", handler);
  }

  /** @internal Sets our offer and relays it. */
  async start(options: CallOptions): Promise<void> {
    const pc = this.peerConnection;
    addMedia(pc, options.media);
    if (options.dataChannel !== undefined) {
      const label = options.dataChannel === true ? "data" : options.dataChannel;
      this.dataChannels.set(label, pc.createDataChannel(label));
    }
    await pc.setLocalDescription(await pc.createOffer());
    await this.sendDescription("offer");
  }

  /** @internal A signal of this call from the other side. */
  receive(signal: Signal): void {
    const data = signal.data as { description?: RTCSessionDescriptionInit; candidate?: RTCIceCandidateInit; reason?: string };
    if (signal.kind === "bye") {
      this.finish({ reason: typeof data.reason === "string" ? data.reason : "hang_up", remote: true });
      return;
    }
    this.work = this.work.then(async () => {
      if (this.state === "ended") return;
      try {
        if (signal.kind === "offer" || signal.kind === "answer") {
          await this.peerConnection.setRemoteDescription(data.description!);
        } else if (signal.kind === "ice" && data.candidate) {
          await this.peerConnection.addIceCandidate(data.candidate);
        }
      } catch (e) {
        // A description or candidate the browser refuses: the call cannot go on.
        void this.send("bye", { call: this.id, reason: "failed" }).catch(() => undefined);
        this.finish({ reason: `failed: ${e instanceof Error ? e.message : String(e)}`, remote: false });
      }
    });
  }

  /** @internal Ends the call without a signal (the other side is gone or said bye). */
  finish(end: CallEnd): void {
    if (this.state === "ended") return;
    this.state = "ended";
    this.end = end;
    this.peerConnection.close();
    this.settle.reject(new SwitchboardError("call_ended", `the call with ${this.peer} ended: ${end.reason}`));
    this.onEnd(this);
    this.emit("ended", end);
  }

  private async sendDescription(kind: "offer" | "answer"): Promise<void> {
    const { type, sdp } = this.peerConnection.localDescription!;
    const description = { type, sdp };
    await this.send(kind, { call: this.id, description });
    const found = this.localCandidates ?? [];
    this.localCandidates = undefined;
    for (const candidate of found) this.sendCandidate(candidate);
  }

  private sendCandidate(candidate: RTCIceCandidateInit): void {
    if (this.state === "ended") return;
    // A lost candidate only narrows the paths tried; a broken call ends by connectionState.
    this.send("ice", { call: this.id, candidate: candidate as Json }).catch(() => undefined);
  }

  private on<K extends keyof CallEventMap>(type: K, handler: (detail: CallEventMap[K]["detail"]) => void): () => void {
    const listener = (event: Event): void => handler((event as CallEventMap[K]).detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  private emit<K extends keyof CallEventMap>(type: K, detail: CallEventMap[K]["detail"]): void {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Calls over an `AgentConnection` joined with `enableWebrtcRelay: true`.
 *
 * ```js
 * const rtc = new WebRtcHelper(agent);
 * rtc.onIncomingCall((call) => call.answer({ media: camera }));
 * const call = await rtc.call("bob", { dataChannel: "chat", media: camera });
 * call.onRemoteStream((stream) => (video.srcObject = stream));
 * ```
 */
export class WebRtcHelper extends EventTarget {
  private readonly agent: AgentConnection;
  private readonly options: WebRtcHelperOptions;
  private readonly PeerConnection: typeof RTCPeerConnection;
  private readonly active = new Map<string, Call>();
  private readonly unsubscribe: Array<() => void>;

  constructor(agent: AgentConnection, options: WebRtcHelperOptions = {}) {
    super();
    const PeerConnection =
      options.RTCPeerConnection ?? (globalThis as { RTCPeerConnection?: typeof RTCPeerConnection }).RTCPeerConnection;
    if (typeof PeerConnection !== "function") {
      throw new SwitchboardError(
        "unsupported",
        "WebRtcHelper needs RTCPeerConnection: run it in a browser, or pass an implementation as the RTCPeerConnection option",
      );
    }
    this.agent = agent;
    this.options = options;
    this.PeerConnection = PeerConnection;
    this.unsubscribe = [agent.onSignal((s) => this.onSignal(s)), agent.onPresence((p) => this.onPresence(p))];
  }

  /** The calls not ended yet. */
  get calls(): Call[] {
    return [...this.active.values()];
  }

  /**
   * Calls `agentName`: resolves with the call once the offer is relayed (rejects with
   * `relay_disabled`, `agent_not_present`… otherwise). `call.connected` resolves when it is up.
   */
  async call(agentName: string, options: CallOptions = {}): Promise<Call> {
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
  onIncomingCall(handler: (call: Call) => void): () => void {
    const listener = (event: Event): void => handler((event as CustomEvent<Call>).detail);
    this.addEventListener("incomingcall", listener);
    return () => this.removeEventListener("incomingcall", listener);
  }

  /** Hangs up every call and stops listening to the connection's signals. */
  async close(): Promise<void> {
    for (const off of this.unsubscribe.splice(0)) off();
    await Promise.all(this.calls.map((call) => call.hangUp()));
  }

  private newCall(peer: string, id: string, direction: "outgoing" | "incoming"): Call {
    const iceServers = this.options.iceServers ?? [];
    const call = new Call({
      peer,
      id,
      direction,
      peerConnection: new this.PeerConnection({ iceServers }),
      send: (kind, data) => this.agent.signal({ to: peer, kind, data }),
      onEnd: (ended) => this.active.delete(ended.id),
    });
    this.active.set(id, call);
    return call;
  }

  private onSignal(signal: Signal): void {
    const data = signal.data as { call?: unknown } | null;
    if (typeof data?.call !== "string") return; // not one of ours
    const existing = this.active.get(data.call);
    if (existing) {
      if (existing.peer === signal.from) existing.receive(signal);
      return;
    }
    if (signal.kind !== "offer") return; // a late candidate or bye of an ended call
    const call = this.newCall(signal.from, data.call, "incoming");
    call.receive(signal);
    this.dispatchEvent(new CustomEvent("incomingcall", { detail: call }));
    const auto = this.options.autoAnswer;
    if (auto && call.state === "ringing") {
      call.answer(auto === true ? {} : auto).catch(() => call.finish({ reason: "failed", remote: false }));
    }
  }

  private onPresence({ left }: PresenceInfo): void {
    for (const call of this.calls) {
      if (left.includes(call.peer)) call.finish({ reason: "peer_left", remote: true });
    }
  }
}

function addMedia(pc: RTCPeerConnection, media: MediaStream | undefined): void {
  for (const track of media?.getTracks() ?? []) pc.addTrack(track, media!);
}
