/**
 * Streams on the wire (spec/protocol.md, "Streams"): large payloads from one agent to another,
 * as ordered chunks closed by their SHA-256 and size. The sending side reads a source in chunks
 * of 256 KiB, keeps 8 of them in flight (each a retry-safe request: after a reconnect the
 * server recognises a chunk it has by its `seq`) and hashes as it goes. The receiving side,
 * {@link Incoming}, takes `stream_data` in order, skips bytes it has already, acknowledges every
 * 1 MiB (the server's flow-control window and the recipient's checkpoint), verifies the checksum
 * end to end and only then acknowledges with `done`. Mirrors crates/client/src/stream.rs;
 * `AgentConnection` wires it to the socket.
 */

import { SwitchboardError } from "./errors.js";
import { encodeStreamEnvelope } from "./frame.js";
import type { Hasher } from "./sha256.js";
import type {
  Json,
  StreamCancelled,
  StreamCheckpoint,
  StreamComplete,
  StreamFailure,
  StreamOffer,
  StreamProgress,
  StreamReceived,
  StreamSent,
  StreamSink,
  StreamSource,
} from "./types.js";

/** Bytes per chunk the SDK sends (the server takes up to its frame limit). */
export const CHUNK_BYTES = 256 * 1024;
/** Chunks in flight at once while sending. */
export const IN_FLIGHT = 8;
/** Acknowledge at least this often while receiving (the server sends 4 MiB ahead). */
export const ACK_EVERY = 1024 * 1024;

/** Sends a request on the channel and resolves with its reply (`AgentConnection.request`). */
export type Requester = (event: string, payload: Json | Uint8Array, retry: boolean) => Promise<unknown>;

/** Calls an application callback; what it throws is reported, never propagated. */
export type Report = (error: unknown) => void;

// -------------------------------------------------------------------------------------------------
// Failing a stream from outside

/** Fails a stream in progress from outside: a cancel, a `stream_error`, the connection ending. */
export class Abort {
  error: SwitchboardError | undefined;
  readonly promise: Promise<never>;
  private rejectWith: (error: SwitchboardError) => void = () => undefined;

  constructor() {
    this.promise = new Promise<never>((_, reject) => {
      this.rejectWith = reject;
    });
    this.promise.catch(() => undefined);
  }

  fail(error: SwitchboardError): void {
    if (this.error) return;
    this.error = error;
    this.rejectWith(error);
  }

  /** `promise`, unless the stream fails first. */
  race<T>(promise: Promise<T>): Promise<T> {
    return Promise.race([promise, this.promise]);
  }
}

/** The error a `stream_cancelled` event stands for. */
export function cancelledError(event: StreamCancelled): SwitchboardError {
  const why = event.reason === undefined ? "" : `: ${event.reason}`;
  return new SwitchboardError("cancelled", `stream ${event.streamId} was cancelled by ${event.by}${why}`);
}

// -------------------------------------------------------------------------------------------------
// Reading sources

/** Reads a {@link StreamSource} in pieces of a chosen size. */
export class ByteReader {
  private leftover: Uint8Array | undefined;
  private ended = false;

  private constructor(
    private readonly pull: () => Promise<Uint8Array | undefined>,
    private readonly stop: () => Promise<void>,
  ) {}

  /** A reader of `source`; throws `invalid_argument` for anything else. */
  static of(source: StreamSource): ByteReader {
    if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
      let bytes: Uint8Array | undefined = source instanceof Uint8Array ? source : new Uint8Array(source);
      return new ByteReader(
        async () => {
          const b = bytes;
          bytes = undefined;
          return b;
        },
        async () => undefined,
      );
    }
    if (isBlob(source)) {
      let pos = 0;
      return new ByteReader(
        async () => {
          if (pos >= source.size) return undefined;
          const piece = source.slice(pos, pos + CHUNK_BYTES);
          pos += CHUNK_BYTES;
          return new Uint8Array(await piece.arrayBuffer());
        },
        async () => undefined,
      );
    }
    if (isReadableStream(source)) {
      const reader = source.getReader();
      return new ByteReader(
        async () => {
          const { value, done } = await reader.read();
          return done ? undefined : chunkBytes(value);
        },
        () => reader.cancel(),
      );
    }
    if (typeof source === "object" && source !== null && typeof (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator] === "function") {
      const iterator = (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      return new ByteReader(
        async () => {
          const { value, done } = await iterator.next();
          return done ? undefined : chunkBytes(value);
        },
        async () => {
          await iterator.return?.();
        },
      );
    }
    throw new SwitchboardError(
      "invalid_argument",
      "a stream's source is a Uint8Array, an ArrayBuffer, a Blob, a ReadableStream or an async iterable of Uint8Arrays",
    );
  }

  /** The next `max` bytes (fewer only at the end; empty once everything was read). */
  async read(max: number): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    let filled = 0;
    while (filled < max && !this.ended) {
      let piece = this.leftover ?? (await this.pull());
      this.leftover = undefined;
      if (piece === undefined) {
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
  close(): void {
    if (this.ended) return;
    this.ended = true;
    void this.stop().catch(() => undefined);
  }
}

function isBlob(value: unknown): value is Blob {
  return typeof Blob !== "undefined" && value instanceof Blob;
}

function isReadableStream(value: unknown): value is ReadableStream<Uint8Array> {
  return typeof value === "object" && value !== null && typeof (value as ReadableStream).getReader === "function";
}

function chunkBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new SwitchboardError("invalid_argument", `a stream's source yielded ${typeof value}, not bytes (Uint8Array)`);
}

function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(length);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/** What `sendStream` tells the recipient about `source` unless the options say otherwise. */
export function describeSource(source: StreamSource): { name?: string; size?: number; contentType?: string } {
  if (source instanceof Uint8Array || source instanceof ArrayBuffer) return { size: source.byteLength };
  if (isBlob(source)) {
    const described: { name?: string; size?: number; contentType?: string } = { size: source.size };
    const name = (source as Partial<File>).name;
    if (typeof name === "string" && name.length > 0) described.name = name;
    if (source.type) described.contentType = source.type;
    return described;
  }
  return {};
}

// -------------------------------------------------------------------------------------------------
// Sending

/**
 * Reads `reader` to its end in chunks, sends them from chunk `seq` (the server holds `offset`
 * bytes, which `hasher` has seen) with {@link IN_FLIGHT} in flight, and closes the stream with
 * the checksum and size. `progress` hears each acknowledgement as it arrives, also while the
 * source is slow to yield more. A failure of `abort` (or of a chunk) ends it early.
 */
export async function pump(
  request: Requester,
  streamId: string,
  reader: ByteReader,
  hasher: Hasher,
  position: { seq: number; offset: number },
  abort: Abort,
  progress: (progress: StreamProgress) => void,
): Promise<StreamSent> {
  let { seq, offset: total } = position;
  let held = position.offset;
  const inFlight: Promise<void>[] = [];
  try {
    let eof = false;
    for (;;) {
      while (!eof && inFlight.length < IN_FLIGHT) {
        const chunk = await abort.race(reader.read(CHUNK_BYTES));
        if (chunk.length === 0) {
          eof = true;
          break;
        }
        hasher.update(chunk);
        total += chunk.length;
        const sent = request("stream_chunk", encodeStreamEnvelope({ stream_id: streamId, seq }, chunk), true)
          .then((reply) => {
            const { offset } = readPosition(reply);
            if (offset > held) {
              held = offset;
              progress({ streamId, offset });
            }
          })
          .catch((e: unknown) => abort.fail(e as SwitchboardError));
        inFlight.push(sent);
        seq += 1;
      }
      const next = inFlight.shift();
      if (next === undefined) break;
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

/** Reads `offset` bytes of `reader` into `hasher`: the part of a stream the server holds. */
export async function skipHeld(reader: ByteReader, hasher: Hasher, offset: number, abort: Abort): Promise<void> {
  let left = offset;
  while (left > 0) {
    const piece = await abort.race(reader.read(Math.min(CHUNK_BYTES, left)));
    if (piece.length === 0) {
      reader.close();
      throw new SwitchboardError(
        "invalid_argument",
        `the source is ${offset - left} bytes long, shorter than the ${offset} bytes the server holds of the stream`,
      );
    }
    hasher.update(piece);
    left -= piece.length;
  }
}

// -------------------------------------------------------------------------------------------------
// Receiving

interface Sink {
  write(chunk: Uint8Array): void | Promise<void>;
  close(): Promise<void>;
  abort(error: SwitchboardError): void;
}

/** A {@link StreamSink} (or, without one, a buffer of every piece) behind one interface. */
export function openSink(sink: StreamSink | undefined, parts: Uint8Array[]): Sink {
  if (sink === undefined) {
    return { write: (chunk) => void parts.push(chunk), close: async () => undefined, abort: () => undefined };
  }
  if (typeof sink === "function") {
    return { write: (chunk) => sink(chunk), close: async () => undefined, abort: () => undefined };
  }
  if (typeof sink === "object" && sink !== null && typeof (sink as WritableStream).getWriter === "function") {
    const writer = (sink as WritableStream<Uint8Array>).getWriter();
    return {
      write: (chunk) => writer.write(chunk),
      close: () => writer.close(),
      abort: (error) => void writer.abort(error).catch(() => undefined),
    };
  }
  throw new SwitchboardError("invalid_argument", "sink is a function (chunk) => void | Promise<void>, or a WritableStream");
}

/** Reads a resume prefix into `hasher` (and `parts`, when they are kept); its length. */
export async function readPrefix(source: StreamSource, hasher: Hasher, parts: Uint8Array[] | undefined): Promise<number> {
  const reader = ByteReader.of(source);
  let length = 0;
  for (;;) {
    const piece = await reader.read(CHUNK_BYTES);
    if (piece.length === 0) return length;
    hasher.update(piece);
    parts?.push(piece.slice());
    length += piece.length;
  }
}

/**
 * A stream being received: `data` and `end` come from the frame handler in order; the sink is
 * written, acknowledgements sent and the checksum verified one step at a time.
 */
export class Incoming {
  /** Bytes received and hashed (the next `stream_data` continues here). */
  offset: number;
  /** Bytes written to the sink: a re-accept after a reconnect starts here. */
  written: number;
  /** Set once `stream_end` arrived: nothing is accepted again. */
  ending = false;
  readonly abort = new Abort();
  readonly done: Promise<StreamReceived>;
  private acked: number;
  private chain: Promise<void> = Promise.resolve();
  private settle: { resolve: (r: StreamReceived) => void; reject: (e: SwitchboardError) => void } | undefined;

  constructor(
    readonly streamId: string,
    private readonly request: Requester,
    private readonly sink: Sink,
    private readonly hasher: Hasher,
    received: number,
    private readonly parts: Uint8Array[] | undefined,
    private readonly progress: (progress: StreamProgress) => void,
  ) {
    this.offset = received;
    this.written = received;
    this.acked = received;
    this.done = new Promise<StreamReceived>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.done.catch(() => undefined);
    this.abort.promise.catch((error: SwitchboardError) => this.finish(error));
  }

  /** Whether it is over (received, failed, cancelled). */
  get settled(): boolean {
    return this.settle === undefined;
  }

  /** A `stream_data` of this stream: bytes it has are skipped; a gap fails the stream. */
  data(offset: number, bytes: Uint8Array): void {
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
          // A lost ack is repeated with the next piece (and the final one covers everything).
          if (!(e instanceof SwitchboardError) || (e.code !== "timeout" && e.code !== "disconnected")) throw e;
        }
      }
    });
  }

  /** The `stream_end`: verifies size and SHA-256, closes the sink, acknowledges with `done`. A
   * mismatch cancels the stream and fails with `checksum_mismatch`. */
  end(checksum: string, totalSize: number): void {
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
          () => undefined,
        );
        return;
      }
      await this.sink.close();
      await this.request("stream_ack", { stream_id: this.streamId, offset: size, done: true }, true);
      const result: StreamReceived = { streamId: this.streamId, totalSize: size, checksum: actual };
      if (this.parts) result.bytes = concat(this.parts, size);
      this.finish(undefined, result);
    });
  }

  private step(work: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.settled) return;
      try {
        await this.abort.race(work());
      } catch (e) {
        this.finish(asStreamError(e));
      }
    });
  }

  private finish(error: SwitchboardError | undefined, result?: StreamReceived): void {
    const settle = this.settle;
    if (!settle) return;
    this.settle = undefined;
    if (error) {
      this.sink.abort(error);
      settle.reject(error);
    } else {
      settle.resolve(result!);
    }
  }
}

function asStreamError(e: unknown): SwitchboardError {
  if (e instanceof SwitchboardError) return e;
  return new SwitchboardError("internal", `the stream's sink failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

// -------------------------------------------------------------------------------------------------
// Reading the server's events

type Raw = Record<string, unknown> | null;

function num(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function unreadable(what: string, raw: unknown): Error {
  return new Error(`unreadable ${what}: ${JSON.stringify(raw)}`);
}

/** `{stream_id, next_seq, offset}` (replies to `stream_open` and `stream_chunk`). */
export function readPosition(raw: unknown): { streamId: string; nextSeq: number; offset: number } {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || !num(r.next_seq) || !num(r.offset)) {
    throw new SwitchboardError("internal", `unexpected stream position ${JSON.stringify(raw)}`);
  }
  return { streamId: r.stream_id, nextSeq: r.next_seq, offset: r.offset };
}

/** A `stream_offer` payload (and the `stream_accept` reply). */
export function readStreamOffer(raw: unknown): StreamOffer {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || typeof r.from !== "string") throw unreadable("stream_offer", raw);
  const offer: StreamOffer = {
    streamId: r.stream_id,
    from: r.from,
    meta: typeof r.meta === "object" && r.meta !== null && !Array.isArray(r.meta) ? (r.meta as Record<string, Json>) : {},
    acked: num(r.acked) ? r.acked : 0,
  };
  if (typeof r.name === "string") offer.name = r.name;
  if (num(r.size)) offer.size = r.size;
  if (typeof r.content_type === "string") offer.contentType = r.content_type;
  return offer;
}

/** A `stream_end` payload. */
export function readStreamEnd(raw: unknown): { streamId: string; checksum: string; totalSize: number } {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || typeof r.checksum !== "string" || !num(r.total_size)) throw unreadable("stream_end", raw);
  return { streamId: r.stream_id, checksum: r.checksum, totalSize: r.total_size };
}

/** A `stream_data` header `{stream_id, offset}`. */
export function readDataHeader(raw: unknown): { streamId: string; offset: number } {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || !num(r.offset)) throw unreadable("stream_data header", raw);
  return { streamId: r.stream_id, offset: r.offset };
}

/** A `stream_progress` payload. */
export function readStreamProgress(raw: unknown): StreamProgress {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || !num(r.offset)) throw unreadable("stream_progress", raw);
  return { streamId: r.stream_id, offset: r.offset };
}

/** A `stream_checkpoint` payload. */
export function readStreamCheckpoint(raw: unknown): StreamCheckpoint {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || !num(r.next_seq) || !num(r.offset)) throw unreadable("stream_checkpoint", raw);
  return { streamId: r.stream_id, nextSeq: r.next_seq, offset: r.offset };
}

/** A `stream_complete` payload. */
export function readStreamComplete(raw: unknown): StreamComplete {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || !num(r.total_size)) throw unreadable("stream_complete", raw);
  return { streamId: r.stream_id, totalSize: r.total_size };
}

/** A `stream_cancelled` payload. */
export function readStreamCancelled(raw: unknown): StreamCancelled {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || typeof r.by !== "string") throw unreadable("stream_cancelled", raw);
  const event: StreamCancelled = { streamId: r.stream_id, by: r.by };
  if (typeof r.reason === "string") event.reason = r.reason;
  return event;
}

/** A `stream_error` payload. */
export function readStreamError(raw: unknown): StreamFailure {
  const r = raw as Raw;
  if (typeof r?.stream_id !== "string" || typeof r.code !== "string" || typeof r.message !== "string") {
    throw unreadable("stream_error", raw);
  }
  return { streamId: r.stream_id, code: r.code, message: r.message };
}
