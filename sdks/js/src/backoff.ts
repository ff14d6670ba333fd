/**
 * Reconnect delays: exponential backoff with full jitter, as in the Rust SDK.
 *
 * Full jitter (a uniform delay between zero and the exponential bound) spreads the reconnects of
 * many clients that lost the same server at the same instant, so a restarted server is not hit
 * by all of them at once.
 */

/** Exponential backoff: attempt `n` waits a uniform random time in
 * `[0, min(maxMs, initialMs × multiplier^n)]`. */
export interface BackoffOptions {
  /** The bound of the first retry (default 100 ms). */
  initialMs?: number;
  /** The largest bound (default 10 000 ms). */
  maxMs?: number;
  /** How much the bound grows per attempt (default 2). */
  multiplier?: number;
}

/** The upper bound of the delay before retry number `attempt` (0-based). */
export function backoffBound(options: BackoffOptions, attempt: number): number {
  const initial = options.initialMs ?? 100;
  const max = options.maxMs ?? 10_000;
  const factor = Math.max(options.multiplier ?? 2, 1) ** Math.min(Math.max(attempt, 0), 64);
  const bound = initial * factor;
  return Number.isFinite(bound) && bound < max ? bound : max;
}

/** The delay before retry number `attempt`, with `unit` a uniform sample from `[0, 1)`. */
export function backoffDelay(options: BackoffOptions, attempt: number, unit: number = Math.random()): number {
  return backoffBound(options, attempt) * Math.min(Math.max(unit, 0), 1);
}
