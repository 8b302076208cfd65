/**
 * The event contract as clients read it: every real-time message (SSE, WebSocket)
 * and every item of `GET /api/live-streaming/{id}/events` is
 *
 *     {id, type, streamId, createdAt, data}   with camelCase `data` keys
 *
 * `id` is the event's sequence number in its stream (the resume point); it is null
 * only for state messages (`viewer_count`). Under load the server coalesces
 * reactions into `reaction_batch` events (`counts` by reaction); `expandReactions`
 * presents each as `reaction` events carrying a `count`, so a client has one kind
 * of reaction event to handle.
 */
import type { components } from "./schema";

/** Keys the spec's client reads, plus whatever else an event type carries. */
export interface StreamEventData {
  userId?: string;
  username?: string | null;
  message?: string;
  messageId?: string;
  reaction?: string;
  /** On reactions expanded from a batch: how many of this reaction it held. */
  count?: number;
  viewerCount?: number;
  [key: string]: unknown;
}

export type KnownEventType =
  | "stream_started"
  | "stream_ended"
  | "viewer_joined"
  | "viewer_left"
  | "viewer_count"
  | "chat_message"
  | "reaction"
  | "reaction_batch"
  | "moderation_action";

/** The OpenAPI document's `Event` (REST list items; SSE and WebSocket send the same). */
type WireEvent = components["schemas"]["Event"];

/** `Event`, with `id`/`createdAt` null for state messages (`viewer_count`), which
 * only the real-time transports send, and `data` keyed as above. */
export type StreamEvent = Pick<WireEvent, "streamId"> & {
  id: WireEvent["id"] | null;
  type: KnownEventType | (string & {});
  createdAt: WireEvent["createdAt"] | null;
  data: StreamEventData;
};

/** A parsed message in the contract's shape, or null if it is not one. */
export function parseEvent(body: unknown): StreamEvent | null {
  if (typeof body !== "object" || body === null) return null;
  const raw = body as Record<string, unknown>;
  if (typeof raw.type !== "string" || typeof raw.streamId !== "string") return null;
  const data = typeof raw.data === "object" && raw.data !== null ? raw.data : {};
  return {
    id: typeof raw.id === "number" ? raw.id : null,
    type: raw.type,
    streamId: raw.streamId,
    createdAt: typeof raw.createdAt === "string" ? raw.createdAt : null,
    data: data as StreamEventData,
  };
}

/** A `reaction_batch` as one `reaction` event per distinct reaction (with its
 * `count`); any other event unchanged. The expanded events share the batch's id. */
export function expandReactions(event: StreamEvent): StreamEvent[] {
  if (event.type !== "reaction_batch") return [event];
  const counts = event.data.counts;
  if (typeof counts !== "object" || counts === null) return [];
  return Object.entries(counts as Record<string, unknown>)
    .filter((entry): entry is [string, number] => typeof entry[1] === "number" && entry[1] > 0)
    .map(([reaction, count]) => ({
      ...event,
      type: "reaction",
      data: { reaction, count, batched: true },
    }));
}

/** How many reactions an event stands for (1 for a single one, `count` for an expanded batch). */
export function reactionCount(event: StreamEvent): number {
  return event.type === "reaction" ? (event.data.count ?? 1) : 0;
}
