/**
 * Durable inboxes on the wire (spec/protocol.md, "Durable inboxes"): the `new_message`,
 * `receipt` and dead-letter shapes the server sends, read into the SDK's camelCase types, and the
 * `ack`/`reject` payloads. Shared by `AgentConnection` (the socket) and `HttpClient`.
 */

import { SwitchboardError } from "./errors.js";
import { readJsonMessage } from "./frame.js";
import type { DeadLetter, InboxMessage, Json, Receipt, ReceiptStatus, RejectOptions } from "./types.js";

const RECEIPT_STATUSES: readonly ReceiptStatus[] = ["delivered", "acknowledged", "rejected", "dead_lettered"];

/** A `new_message` payload (or an HTTP `receive` entry) `{delivery_count, message}` → an
 * {@link InboxMessage}; throws on a shape it cannot read. */
export function readInboxMessage(raw: unknown): InboxMessage {
  const m = raw as { delivery_count?: unknown; message?: unknown } | null;
  if (typeof m?.delivery_count !== "number") throw new Error(`unreadable inbox message: ${JSON.stringify(raw)}`);
  return { deliveryCount: m.delivery_count, message: readJsonMessage(m.message) };
}

/** A `receipt` payload → a {@link Receipt}; throws on a shape it cannot read. */
export function readReceipt(raw: unknown): Receipt {
  const r = raw as { id?: unknown; to?: unknown; status?: unknown; delivery_count?: unknown; reason?: unknown } | null;
  if (
    typeof r?.id !== "string" ||
    typeof r.to !== "string" ||
    !RECEIPT_STATUSES.includes(r.status as ReceiptStatus) ||
    typeof r.delivery_count !== "number"
  ) {
    throw new Error(`unreadable receipt: ${JSON.stringify(raw)}`);
  }
  const receipt: Receipt = { id: r.id, to: r.to, status: r.status as ReceiptStatus, deliveryCount: r.delivery_count };
  if (typeof r.reason === "string") receipt.reason = r.reason;
  return receipt;
}

/** A dead letter as the HTTP API sends it → a {@link DeadLetter}. */
export function readDeadLetter(raw: unknown): DeadLetter {
  const d = raw as {
    message?: unknown;
    recipient?: unknown;
    delivery_count?: unknown;
    rejections?: unknown;
    reason?: unknown;
    dead_at?: unknown;
  } | null;
  if (typeof d?.recipient !== "string" || typeof d.delivery_count !== "number" || typeof d.dead_at !== "number") {
    throw new Error(`unreadable dead letter: ${JSON.stringify(raw)}`);
  }
  return {
    message: readJsonMessage(d.message),
    recipient: d.recipient,
    deliveryCount: d.delivery_count,
    rejections: typeof d.rejections === "number" ? d.rejections : 0,
    reason: typeof d.reason === "string" ? d.reason : "",
    deadAt: d.dead_at,
  };
}

/** The `ack` payload `{id}`. */
export function ackPayload(id: unknown): Record<string, Json> {
  return { id: checkId(id) };
}

/** The `reject` payload `{id, reason?, requeue?}`. */
export function rejectPayload(id: unknown, options: RejectOptions): Record<string, Json> {
  const payload: Record<string, Json> = { id: checkId(id) };
  if (typeof options !== "object" || options === null) {
    throw new SwitchboardError("invalid_argument", "reject() takes an options object {reason?, requeue?}");
  }
  if (options.reason !== undefined) {
    if (typeof options.reason !== "string") throw new SwitchboardError("invalid_argument", "reason is a string");
    payload.reason = options.reason;
  }
  if (options.requeue !== undefined) {
    if (typeof options.requeue !== "boolean") throw new SwitchboardError("invalid_argument", "requeue is true or false");
    payload.requeue = options.requeue;
  }
  return payload;
}

function checkId(id: unknown): string {
  if (typeof id !== "string" || id.length === 0) {
    throw new SwitchboardError("invalid_argument", "an inbox message is named by its id, `message.id` (a non-empty string)");
  }
  return id;
}
