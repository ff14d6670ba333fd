/**
 * The channel's presence as this agent last heard it, kept from `presence_state` and
 * `presence_diff` with Phoenix Presence's rules: metas are merged and removed by `phx_ref`, and an
 * agent is present while it has at least one meta.
 */

import type { PresenceAgent, PresenceMeta, PresenceState } from "./types.js";

/** What changed in one update: agent names that appeared and disappeared. */
export interface PresenceChange {
  joined: string[];
  left: string[];
}

/** The presence map of one channel. */
export class PresenceTracker {
  private state = new Map<string, PresenceMeta[]>();

  /** Replaces the whole state (the first frame after a join). */
  syncState(next: PresenceState): PresenceChange {
    const before = new Set(this.state.keys());
    this.state = new Map();
    for (const [name, entry] of Object.entries(next)) {
      if (entry && Array.isArray(entry.metas) && entry.metas.length > 0) this.state.set(name, [...entry.metas]);
    }
    const after = new Set(this.state.keys());
    return {
      joined: [...after].filter((n) => !before.has(n)).sort(),
      left: [...before].filter((n) => !after.has(n)).sort(),
    };
  }

  /** Applies joins, then leaves. */
  syncDiff(diff: { joins?: PresenceState; leaves?: PresenceState }): PresenceChange {
    const before = new Set(this.state.keys());
    for (const [name, entry] of Object.entries(diff.joins ?? {})) {
      const metas = this.state.get(name) ?? [];
      for (const meta of entry?.metas ?? []) {
        if (!metas.some((m) => m.phx_ref === meta.phx_ref)) metas.push(meta);
      }
      if (metas.length > 0) this.state.set(name, metas);
    }
    for (const [name, entry] of Object.entries(diff.leaves ?? {})) {
      const metas = this.state.get(name);
      if (!metas) continue;
      const gone = new Set((entry?.metas ?? []).map((m) => m.phx_ref));
      const left = metas.filter((m) => !gone.has(m.phx_ref));
      if (left.length > 0) this.state.set(name, left);
      else this.state.delete(name);
    }
    const after = new Set(this.state.keys());
    return {
      joined: [...after].filter((n) => !before.has(n)).sort(),
      left: [...before].filter((n) => !after.has(n)).sort(),
    };
  }

  /** Forgets everything (the channel ended). */
  clear(): void {
    this.state.clear();
  }

  /** The agents present, sorted by name. */
  list(): PresenceAgent[] {
    return toAgents(this.state);
  }
}

/** A presence map as a sorted list of agents; an agent's oldest session stands for it. */
export function presenceList(state: PresenceState): PresenceAgent[] {
  const map = new Map<string, PresenceMeta[]>();
  for (const [name, entry] of Object.entries(state)) {
    if (entry && Array.isArray(entry.metas) && entry.metas.length > 0) map.set(name, entry.metas);
  }
  return toAgents(map);
}

function toAgents(map: Map<string, PresenceMeta[]>): PresenceAgent[] {
  return [...map.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([agentName, metas]) => {
      const first = metas.reduce((a, b) => (b.joined_at < a.joined_at ? b : a));
      return { agentName, joinedAt: first.joined_at, meta: first.meta ?? {}, sessions: metas.length };
    });
}
