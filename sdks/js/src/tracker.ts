/**
 * Which offsets the channel has already delivered, so a resume shows no gap and no duplicate.
 *
 * The server replays everything after `since` on a rejoin; messages that were in the socket when
 * it dropped may arrive twice (once before, once in the replay). The tracker remembers the last
 * offset handed to the application and drops anything at or below it. Ephemeral messages have no
 * offset and always pass. The same rules as crates/client/src/tracker.rs.
 */

import type { Gap, JoinReply } from "./types.js";

/** The resume position of one channel. */
export class OffsetTracker {
  /** The last offset delivered to the application (or known to precede the subscription). */
  last: number | undefined;
  /** The epoch `last` belongs to. */
  epoch: string | undefined;
  /** Whether the channel has offsets at all. */
  persistent = true;

  constructor(since?: number, epoch?: string) {
    this.last = since;
    this.epoch = epoch;
  }

  /** Takes a join reply into account: the replay after it starts at `last + 1`. */
  onJoin(reply: Pick<JoinReply, "epoch" | "head" | "persistent"> & { gap?: Gap | undefined }): void {
    this.epoch = reply.epoch;
    this.persistent = reply.persistent;
    if (!reply.persistent) {
      this.last = undefined;
      return;
    }
    if (reply.gap) {
      // Replay starts at `first_available`; after an epoch change offsets restart, so an old
      // high-water mark would swallow the new epoch's messages.
      this.last = Math.max(reply.gap.first_available - 1, 0);
    } else if (this.last === undefined) {
      // Live delivery starts after `head`.
      this.last = reply.head;
    } else {
      // `last > head` can only mean offsets were reset without us naming the epoch: trust the
      // server rather than drop new messages as duplicates.
      this.last = Math.min(this.last, reply.head);
    }
  }

  /** Whether a message with this offset is new; records it when it is. */
  accept(offset: number | undefined): boolean {
    if (offset === undefined) return true;
    if (this.last !== undefined && offset <= this.last) return false;
    this.last = offset;
    return true;
  }

  /** The `since` and `epoch` of a resume, when there is a position to resume from. */
  resume(): { since: number; epoch: string | undefined } | undefined {
    if (!this.persistent || this.last === undefined) return undefined;
    return { since: this.last, epoch: this.epoch };
  }
}
