/**
 * The SDK's one error class, and the stable codes it carries.
 *
 * Errors the server sent keep the protocol's stable code (spec/protocol.md, "Error codes"), so an
 * application branches on `err.code`, never on message text. Failures that happen on this side
 * of the socket have codes of their own, listed in {@link ClientErrorCode}; none of them is also
 * a protocol code.
 */

/** Every error code the server can send (crates/protocol/src/codes.rs). */
export const ErrorCodes = [
  "invalid_key",
  "unauthenticated",
  "auth_timeout",
  "forbidden",
  "key_revoked",
  "key_expired",
  "tenant_exists",
  "bad_password",
  "agent_name_taken",
  "invalid_agent_name",
  "invalid_channel_name",
  "invalid_topic",
  "unknown_event",
  "malformed_frame",
  "invalid_payload",
  "frame_too_large",
  "message_too_large",
  "too_many_channels",
  "too_many_connections",
  "not_joined",
  "already_joined",
  "channel_not_found",
  "channel_exists",
  "channel_deleted",
  "channel_completed",
  "not_a_member",
  "agent_not_present",
  "relay_disabled",
  "version_conflict",
  "too_many_keys",
  "inbox_full",
  "checksum_mismatch",
  "no_history",
  "slow_consumer",
  "heartbeat_timeout",
  "session_taken_over",
  "server_shutdown",
  "rate_limited",
  "storage_unavailable",
  "internal",
  "not_found",
  "method_not_allowed",
] as const;

/** A stable protocol error code. */
export type ProtocolErrorCode = (typeof ErrorCodes)[number];

/** Codes of failures on the client side of the socket. */
export const ClientErrorCodes = [
  /** The socket could not be opened (server down, refused upgrade, bad URL). */
  "connection_failed",
  /** The connection dropped with this request in flight and it cannot be re-sent safely (an
   * ephemeral publish, a signal, a storage write, an inbox reject): it may or may not have taken
   * effect. */
  "disconnected",
  /** No reply within `requestTimeoutMs`. */
  "timeout",
  /** The option or operation needs a server capability that does not exist yet. */
  "unsupported",
  /** The call's arguments are wrong (checked before anything is sent). */
  "invalid_argument",
  /** A WebRTC call ended (hung up, declined, failed, the peer left) before it connected. */
  "call_ended",
  /** A stream was cancelled (by either side, `cancelStream`) while it was being sent or
   * received. */
  "cancelled",
] as const;

/** A client-side error code. */
export type ClientErrorCode = (typeof ClientErrorCodes)[number];

/** Every code a {@link SwitchboardError} can carry. Codes a newer server adds pass through as
 * plain strings. */
export type ErrorCode = ProtocolErrorCode | ClientErrorCode | (string & {});

/** The body of an error reply: `{code, message, retry_after_ms?}`. */
export interface ErrorReply {
  code: string;
  message: string;
  retry_after_ms?: number;
}

/** Everything the SDK rejects or reports is a `SwitchboardError`. */
export class SwitchboardError extends Error {
  /** The stable code: a protocol code from the server, or a {@link ClientErrorCode}. */
  readonly code: ErrorCode;
  /** When the server set it (`rate_limited`): retry after this many milliseconds. */
  readonly retryAfterMs: number | undefined;
  /** The WebSocket close code, when the error ended the socket. */
  readonly closeCode: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retryAfterMs?: number; closeCode?: number; cause?: unknown } = {},
  ) {
    super(`${code}: ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SwitchboardError";
    this.code = code;
    this.retryAfterMs = options.retryAfterMs;
    this.closeCode = options.closeCode;
  }

  /** Whether the server sent this error (its code is a protocol code). */
  get fromServer(): boolean {
    return !(ClientErrorCodes as readonly string[]).includes(this.code);
  }

  /** An error from a server error reply. */
  static fromReply(reply: ErrorReply, closeCode?: number): SwitchboardError {
    const options: { retryAfterMs?: number; closeCode?: number } = {};
    if (typeof reply.retry_after_ms === "number") options.retryAfterMs = reply.retry_after_ms;
    if (closeCode !== undefined) options.closeCode = closeCode;
    return new SwitchboardError(reply.code, reply.message, options);
  }
}

/** Whether `value` has the shape of an error reply. */
export function isErrorReply(value: unknown): value is ErrorReply {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as ErrorReply).code === "string" &&
    typeof (value as ErrorReply).message === "string"
  );
}

/** WebSocket close codes the server sends, and the error code each stands for. */
export const CloseCodes = {
  1001: "server_shutdown",
  4000: "slow_consumer",
  4001: "heartbeat_timeout",
  4500: "invalid_key",
  4501: "auth_timeout",
  4502: "frame_too_large",
  4503: "key_revoked",
  4504: "key_expired",
} as const satisfies Record<number, ProtocolErrorCode>;

/** 4000–4499 (and every standard code): reconnect with backoff. 4500–4999: do not reconnect
 * until the cause is fixed. */
export function shouldReconnect(closeCode: number): boolean {
  return closeCode < 4500;
}
