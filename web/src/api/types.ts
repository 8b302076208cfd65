/**
 * The client's names for the API's bodies, all derived from the generated
 * `schema.d.ts` (never copied by hand), so they follow the OpenAPI document on
 * every `make openapi`.
 *
 * `Ok<path, method>` is what a call answers on success. Where the document does
 * not (yet) describe a response, it is a loose object; `& { id: string }`-style
 * intersections name only what this library itself relies on.
 */
import type { components, paths } from "./schema";

type Method = "get" | "post" | "delete";

type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : never;

type SuccessOf<Responses> = {
  [S in keyof Responses]: S extends 200 | 201 ? JsonOf<Responses[S]> : never;
}[keyof Responses];

/** The JSON body of the operation's 200/201 answer. */
export type Ok<P extends keyof paths, M extends Method> = paths[P][M] extends {
  responses: infer R;
}
  ? SuccessOf<R>
  : never;

/** The spec's `streamConfig` (title, quality, bitrate, enableAI, isNSFW, …). */
export type StreamConfig = components["schemas"]["StreamConfig"];
export type StreamQuality = NonNullable<StreamConfig["quality"]>;
export type StreamPrivacy = NonNullable<StreamConfig["privacy"]>;

/** A stream as `GET /api/live-streaming/{id}` gives it. */
export type LiveStream = Ok<"/api/live-streaming/{stream_id}", "get"> & { id: string };
/** What `create` answers: the stream with its key and RTMP ingest URL (owner only). */
export type CreatedStream = Ok<"/api/live-streaming/create", "post"> & { id: string };
export type StreamPage = Ok<"/api/live-streaming/live", "get">;
export type JoinResult = Ok<"/api/live-streaming/{stream_id}/join", "post">;
export type LeaveResult = Ok<"/api/live-streaming/{stream_id}/leave", "post">;
export type ChatMessage = Ok<"/api/live-streaming/{stream_id}/chat", "post">;
export type ReactionResult = Ok<"/api/live-streaming/{stream_id}/reaction", "post">;
export type StreamAnalytics = Ok<"/api/live-streaming/{stream_id}/analytics", "get">;
export type EventPage = Ok<"/api/live-streaming/{stream_id}/events", "get">;
