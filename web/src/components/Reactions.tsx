// Reaction buttons and the live counter. Counts come from `reaction` events and,
// under load, from `reaction_batch` events that carry how many of each.
import { useState, type FormEvent } from "react";

import { reactionCounts, type LiveEvent } from "../lib/events";

export const QUICK_REACTIONS = ["🔥", "❤️", "👍", "😂", "😮", "👏", "🎉", "🚀"];

export function ReactionCounter(props: { events: LiveEvent[] }) {
  const counts = reactionCounts(props.events);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return (
    <div className="reaction-counter" data-testid="reaction-counter" data-total={total}>
      <span className="total">{total} reactions</span>
      {Object.entries(counts)
        .sort((a, b) => b[1] - a[1])
        .map(([r, n]) => (
          <span key={r} className="pill" data-reaction={r}>
            {r} {n}
          </span>
        ))}
    </div>
  );
}

export function ReactionBar(props: { onReact: (reaction: string) => Promise<unknown> }) {
  const [custom, setCustom] = useState("");
  const send = (e: FormEvent) => {
    e.preventDefault();
    const r = custom.trim();
    if (r) void props.onReact(r).then((ok) => ok && setCustom(""));
  };
  return (
    <div className="reaction-bar">
      {QUICK_REACTIONS.map((r) => (
        <button key={r} type="button" className="emoji" aria-label={`React ${r}`} onClick={() => void props.onReact(r)}>
          {r}
        </button>
      ))}
      <form onSubmit={send} className="inline">
        <input
          aria-label="Custom reaction"
          placeholder=":party_parrot:"
          value={custom}
          onChange={(e) => setCustom(e.target.value)}
          size={12}
        />
      </form>
    </div>
  );
}
