// Reading the event contract `{id, type, streamId, createdAt, data}` (the client
// library's `StreamEvent`) for the screens: counts are folded from the events.

import type { StreamEvent } from "../api/events";

export type LiveEvent = StreamEvent;

/** How many of each reaction the events carry (single `reaction`s and batches). */
export function reactionCounts(events: LiveEvent[]): Record<string, number> {
  const counts: Record<string, number> = {};
  const add = (r: unknown, n: number) => {
    if (typeof r === "string" && n > 0) counts[r] = (counts[r] ?? 0) + n;
  };
  for (const e of events) {
    if (e.type === "reaction") add(e.data.reaction, e.data.count ?? 1); // a batch, expanded
    if (e.type === "reaction_batch") {
      const batch = e.data.counts;
      if (batch && typeof batch === "object") {
        for (const [r, n] of Object.entries(batch as Record<string, unknown>)) add(r, Number(n));
      }
    }
  }
  return counts;
}

/** The newest viewer count any event states, else null. */
export function latestViewers(events: LiveEvent[]): number | null {
  for (let i = events.length - 1; i >= 0; i--) {
    const d = events[i]!.data;
    const v = d.viewerCount ?? d.viewers;
    if (typeof v === "number") return v;
  }
  return null;
}
