// What the web app needs beyond LiveStreamingService: the player's rendition list,
// poster and playlist URLs, and a stream's whole event history for the charts.
// Failures are the library's `ApiError`, like every other call.
import { ApiError, isErrorBody } from "../api/errors";
import type { StreamEvent } from "../api/events";
import { LiveStreamingService } from "../services/LiveStreamingService";
import { getToken } from "./session";

export interface RenditionInfo {
  name: string;
  width: number;
  height: number;
  bandwidth: number;
  aiEnhanced: boolean;
}

function base(id: string): string {
  return `/api/live-streaming/${encodeURIComponent(id)}`;
}

function withToken(path: string, query: Record<string, string> = {}): string {
  const token = getToken();
  const params = new URLSearchParams(query);
  if (token) params.set("access_token", token); // <img>, players: no headers
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** The stream's ladder, highest first, with AI-enhanced rungs marked
 * (`GET …/renditions`, served beside the app: see serve_app/webapp.py). */
export async function renditions(id: string): Promise<RenditionInfo[]> {
  const token = getToken();
  let response: Response;
  try {
    response = await fetch(`${base(id)}/renditions`, {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
  } catch (cause) {
    throw ApiError.network(cause);
  }
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) throw ApiError.fromResponse(response, isErrorBody(body) ? body : null);
  return body as RenditionInfo[];
}

/** A thumbnail of the newest segment; `bust` makes the browser fetch a fresh one. */
export function posterUrl(id: string, bust: number): string {
  return withToken(`${base(id)}/poster.jpg`, { t: String(bust) });
}

/** HLS without joining: the owner's own preview, or an ended stream's recording. */
export function masterUrl(id: string): string {
  return withToken(`${base(id)}/hls/master.m3u8`);
}

/** LL-HLS without joining (the Player falls back to `masterUrl` if it has none). */
export function llMasterUrl(id: string): string {
  return withToken(`${base(id)}/llhls/master.m3u8`);
}

/** Whether a viewer should get LL-HLS: the stream is live and its latency mode is low. */
export function wantsLowLatency(stream: { status: string; latency_mode?: string | null }): boolean {
  return stream.status === "live" && stream.latency_mode === "low";
}

/** The master a viewer of `stream` plays without joining: LL-HLS when it is live in
 * low-latency mode, else the classic HLS (the recording of an ended stream). */
export function viewerUrl(id: string, stream: { status: string; latency_mode?: string | null }): string {
  return wantsLowLatency(stream) ? llMasterUrl(id) : masterUrl(id);
}

/** The join answer's master: `ll_playback_url` when the server gives one (the
 * stream's latency mode is low), else `playback_url`. */
export function joinedUrl(joined: { playback_url: string; ll_playback_url?: string | null }): string {
  return joined.ll_playback_url ?? joined.playback_url;
}

/** Every stored event of a stream the caller may see, oldest first (at most `max`). */
export async function allEvents(id: string, max = 5000): Promise<StreamEvent[]> {
  const service = LiveStreamingService.getInstance();
  const out: StreamEvent[] = [];
  let since = 0;
  while (out.length < max) {
    const page = await service.getStreamEvents(id, since, 100);
    out.push(...(page.items as StreamEvent[]));
    if (page.items.length < 100 || page.next_cursor === since) break;
    since = page.next_cursor;
  }
  return out;
}
