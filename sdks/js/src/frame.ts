/**
 * The Phoenix Channels V2 serializer and Switchboard's binary envelope (spec/protocol.md,
 * "Frames" and "publish"). Pure functions: no socket, no state.
 */

import type { Message } from "./types.js";

/** One frame: `[join_ref, ref, topic, event, payload]`. A binary payload is raw bytes. */
export interface Frame {
  joinRef: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: unknown;
}

/** A frame whose payload is bytes (a binary push or broadcast). */
export interface BinaryPayload {
  binary: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encodes a frame with a JSON payload as a text frame. */
export function encodeText(frame: Frame): string {
  return JSON.stringify([frame.joinRef, frame.ref, frame.topic, frame.event, frame.payload]);
}

/** Encodes a client → server binary push: `0, len(join_ref), len(ref), len(topic), len(event),
 * join_ref, ref, topic, event, payload`; each length is one byte. */
export function encodeBinaryPush(
  joinRef: string | null,
  ref: string | null,
  topic: string,
  event: string,
  payload: Uint8Array,
): Uint8Array {
  const parts = [joinRef ?? "", ref ?? "", topic, event].map((s) => encoder.encode(s));
  for (const [i, part] of parts.entries()) {
    if (part.length > 255) {
      throw new RangeError(`${["join_ref", "ref", "topic", "event"][i]} is over 255 bytes`);
    }
  }
  const header = 5 + parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(header + payload.length);
  out[0] = 0;
  parts.forEach((p, i) => (out[1 + i] = p.length));
  let pos = 5;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  out.set(payload, pos);
  return out;
}

/** Decodes a server → client text frame. */
export function decodeText(text: string): Frame {
  const value: unknown = JSON.parse(text);
  if (!Array.isArray(value) || value.length !== 5) {
    throw new Error("a frame is a JSON array of 5 elements");
  }
  const [joinRef, ref, topic, event, payload] = value as unknown[];
  if (typeof topic !== "string" || typeof event !== "string") {
    throw new Error("topic and event must be strings");
  }
  return { joinRef: refOf(joinRef), ref: refOf(ref), topic, event, payload };
}

function refOf(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return String(value);
}

/**
 * Decodes a server → client binary frame. A push or broadcast carries its payload as
 * {@link BinaryPayload}; a reply (kind 1) becomes a `phx_reply` with `{status, response}`, the
 * response parsed as JSON.
 */
export function decodeBinary(bytes: Uint8Array): Frame {
  const text = (start: number, length: number): string => {
    if (start + length > bytes.length) throw new Error("binary frame shorter than its header");
    return decoder.decode(bytes.subarray(start, start + length));
  };
  switch (bytes[0]) {
    case 0: {
      // push: kind, len(join_ref), len(topic), len(event), join_ref, topic, event, payload
      if (bytes.length < 4) throw new Error("binary push shorter than its header");
      const [jr, tp, ev] = [bytes[1]!, bytes[2]!, bytes[3]!];
      let pos = 4;
      const joinRef = text(pos, jr);
      const topic = text((pos += jr), tp);
      const event = text((pos += tp), ev);
      pos += ev;
      return { joinRef: joinRef || null, ref: null, topic, event, payload: { binary: bytes.slice(pos) } };
    }
    case 1: {
      // reply: kind, len(join_ref), len(ref), len(topic), len(status), join_ref, ref, topic, status, payload
      if (bytes.length < 5) throw new Error("binary reply shorter than its header");
      const [jr, rf, tp, st] = [bytes[1]!, bytes[2]!, bytes[3]!, bytes[4]!];
      let pos = 5;
      const joinRef = text(pos, jr);
      const ref = text((pos += jr), rf);
      const topic = text((pos += rf), tp);
      const status = text((pos += tp), st);
      pos += st;
      const body = bytes.subarray(pos);
      const response: unknown = body.length === 0 ? {} : JSON.parse(decoder.decode(body));
      return { joinRef: joinRef || null, ref: ref || null, topic, event: "phx_reply", payload: { status, response } };
    }
    case 2: {
      // broadcast: kind, len(topic), len(event), topic, event, payload
      if (bytes.length < 3) throw new Error("binary broadcast shorter than its header");
      const [tp, ev] = [bytes[1]!, bytes[2]!];
      let pos = 3;
      const topic = text(pos, tp);
      const event = text((pos += tp), ev);
      pos += ev;
      return { joinRef: null, ref: null, topic, event, payload: { binary: bytes.slice(pos) } };
    }
    default:
      throw new Error(`unknown binary frame kind ${bytes[0]}`);
  }
}

/** Whether a decoded payload is bytes. */
export function isBinaryPayload(payload: unknown): payload is BinaryPayload {
  return typeof payload === "object" && payload !== null && (payload as BinaryPayload).binary instanceof Uint8Array;
}

/** The binary envelope: `u32 big-endian header length | header JSON | attachment bytes…`, the
 * header carrying `attachment_sizes`. */
export function encodeEnvelope(header: Record<string, unknown>, attachments: readonly Uint8Array[]): Uint8Array {
  const json = encoder.encode(JSON.stringify({ ...header, attachment_sizes: attachments.map((a) => a.length) }));
  const total = 4 + json.length + attachments.reduce((n, a) => n + a.length, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, json.length, false);
  out.set(json, 4);
  let pos = 4 + json.length;
  for (const a of attachments) {
    out.set(a, pos);
    pos += a.length;
  }
  return out;
}

/** Reads a binary envelope back into its header (without `attachment_sizes`) and attachments. */
export function decodeEnvelope(bytes: Uint8Array): { header: Record<string, unknown>; attachments: Uint8Array[] } {
  if (bytes.length < 4) throw new Error("envelope shorter than its length prefix");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(0, false);
  if (4 + headerLength > bytes.length) throw new Error("envelope header runs past the frame");
  const header = JSON.parse(decoder.decode(bytes.subarray(4, 4 + headerLength))) as Record<string, unknown>;
  const sizes = header.attachment_sizes;
  if (!Array.isArray(sizes) || !sizes.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new Error("envelope header lacks attachment_sizes");
  }
  let pos = 4 + headerLength;
  const attachments = (sizes as number[]).map((size) => {
    if (pos + size > bytes.length) throw new Error("attachment runs past the frame");
    const a = bytes.slice(pos, pos + size);
    pos += size;
    return a;
  });
  if (pos !== bytes.length) throw new Error("bytes after the last attachment");
  delete header.attachment_sizes;
  return { header, attachments };
}

/** Standard base64 (with padding) to bytes; the JSON form of attachments. */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** A message in JSON (an event, history, HTTP) → a {@link Message}: base64 attachments become
 * bytes; throws without `id` and `type`. */
export function readJsonMessage(raw: unknown): Message {
  const m = raw as Omit<Message, "attachments"> & { attachments?: unknown };
  if (typeof m !== "object" || m === null || typeof m.id !== "string" || typeof m.type !== "string") {
    throw new Error("a message needs id and type");
  }
  const { attachments, ...rest } = m;
  const message: Message = { ...rest, data: m.data ?? null };
  if (Array.isArray(attachments)) message.attachments = (attachments as string[]).map((a) => fromBase64(a));
  return message;
}

/** A message sent as a binary envelope → a {@link Message} with its attachments. */
export function readBinaryMessage(bytes: Uint8Array): Message {
  const { header, attachments } = decodeEnvelope(bytes);
  const message = readJsonMessage(header);
  message.attachments = attachments;
  return message;
}

/** The stream envelope (`stream_chunk` and `stream_data`): `u32 big-endian header length |
 * header JSON | bytes`, without `attachment_sizes`. */
export function encodeStreamEnvelope(header: Record<string, unknown>, bytes: Uint8Array): Uint8Array {
  const json = encoder.encode(JSON.stringify(header));
  const out = new Uint8Array(4 + json.length + bytes.length);
  new DataView(out.buffer).setUint32(0, json.length, false);
  out.set(json, 4);
  out.set(bytes, 4 + json.length);
  return out;
}

/** Splits a stream envelope into its header and bytes (a view into `envelope`). */
export function decodeStreamEnvelope(envelope: Uint8Array): { header: Record<string, unknown>; bytes: Uint8Array } {
  if (envelope.length < 4) throw new Error("envelope shorter than its length prefix");
  const view = new DataView(envelope.buffer, envelope.byteOffset, envelope.byteLength);
  const headerLength = view.getUint32(0, false);
  if (4 + headerLength > envelope.length) throw new Error("envelope header runs past the frame");
  const header: unknown = JSON.parse(decoder.decode(envelope.subarray(4, 4 + headerLength)));
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw new Error("envelope header is not an object");
  return { header: header as Record<string, unknown>, bytes: envelope.subarray(4 + headerLength) };
}
