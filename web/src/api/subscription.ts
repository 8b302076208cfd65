/**
 * One stream's events over Server-Sent Events, with automatic reconnect.
 *
 * Built on `fetch` (not the browser's EventSource) so that it can send the
 * `Authorization` header and `Last-Event-ID` itself, and on `eventsource-parser`
 * for the wire format.
 *
 * Invariants:
 * - After a drop (network error, server restart, a `reconnect()`), it reconnects
 *   with `Last-Event-ID` = the id of the last event it delivered; the server
 *   replays exactly the events after it, so nothing is lost. An event whose id is
 *   not above that id is dropped, so nothing is delivered twice.
 * - It waits the server's `retry:` between attempts, doubling on each failure in
 *   a row (at most `MAX_BACKOFF_MS`), or `Retry-After` when the server sends one.
 * - 204 (the stream has ended and nothing is left) and `stream_ended` end it.
 *   A 4xx other than 408/429 (no such stream, not yours to see, a bad token) is
 *   final: it is reported once as an `ApiError` and nothing is retried.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";

import { trimSlash, type TokenProvider } from "./client";
import { ApiError, asApiError } from "./errors";
import { expandReactions, parseEvent, type StreamEvent } from "./events";

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "ended" | "closed" | "failed";

const DEFAULT_RETRY_MS = 2000;
const MAX_BACKOFF_MS = 30_000;

export interface SubscriptionOptions {
  baseUrl?: string;
  getToken?: TokenProvider;
  fetch?: typeof fetch;
  /** Resume after this event id (e.g. the last one a previous page showed). */
  lastEventId?: number | null;
  /** `reaction_batch` events as `reaction` events (default true). */
  expandBatches?: boolean;
  onEvent: (event: StreamEvent) => void;
  /** Every failure; `final` when the subscription gave up (status "failed"). */
  onError?: (error: ApiError, final: boolean) => void;
  onStatus?: (status: ConnectionStatus) => void;
}

type Outcome = "ended" | "dropped";

export class EventSubscription {
  readonly streamId: string;
  private readonly options: SubscriptionOptions;
  private readonly url: string;
  private lastId: number | null;
  private current: ConnectionStatus = "connecting";
  private retryMs = DEFAULT_RETRY_MS;
  private failures = 0;
  private controller: AbortController | null = null;
  private wake: (() => void) | null = null;
  private stopped = false;
  private sawEnd = false;
  private markReady: () => void = () => undefined;
  /** Settles once the subscription is live (its first message, a `viewer_count`,
   * has arrived: nothing committed after this is missed) or has stopped. */
  readonly ready: Promise<void>;

  constructor(streamId: string, options: SubscriptionOptions) {
    this.streamId = streamId;
    this.options = options;
    this.lastId = options.lastEventId ?? null;
    const base = trimSlash(options.baseUrl ?? "");
    this.url = `${base}/api/live-streaming/${encodeURIComponent(streamId)}/events/stream`;
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    void this.run();
  }

  /** The id of the last event delivered: where a reconnect resumes. */
  get lastEventId(): number | null {
    return this.lastId;
  }

  get status(): ConnectionStatus {
    return this.current;
  }

  /** Drop the connection and connect again now (e.g. after the network came back). */
  reconnect(): void {
    if (this.stopped) return;
    this.failures = 0;
    this.controller?.abort();
    this.wake?.();
  }

  /** Stop for good. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.controller?.abort();
    this.wake?.();
    this.setStatus("closed");
    this.markReady();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const controller = new AbortController();
      this.controller = controller;
      let delay = this.retryMs;
      try {
        if ((await this.connectOnce(controller.signal)) === "ended") {
          this.finish("ended");
          return;
        }
      } catch (cause) {
        if (this.stopped) return;
        if (!controller.signal.aborted) {
          const error = asApiError(cause);
          if (isFinal(error)) {
            this.options.onError?.(error, true);
            this.finish("failed");
            return;
          }
          this.options.onError?.(error, false);
          delay = this.backoff(error);
        } else {
          delay = 0; // reconnect() asked for it
        }
      }
      if (this.stopped) return;
      this.setStatus("reconnecting");
      await this.sleep(delay);
    }
  }

  private async connectOnce(signal: AbortSignal): Promise<Outcome> {
    this.setStatus(this.lastId === null && this.failures === 0 ? "connecting" : "reconnecting");
    const response = await this.open(signal);
    if (response.status === 204) return "ended";
    if (!response.ok || response.body === null) {
      throw ApiError.fromResponse(response, await response.json().catch(() => null));
    }
    this.failures = 0;
    this.setStatus("open");
    const parser = createParser({
      onEvent: (message) => this.handle(message),
      onRetry: (ms) => {
        this.retryMs = ms;
      },
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    return this.sawEnd ? "ended" : "dropped";
  }

  private async open(signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { Accept: "text/event-stream" };
    const token = this.options.getToken ? await this.options.getToken() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
    const fetchImpl = this.options.fetch ?? globalThis.fetch;
    return fetchImpl(this.url, { headers, signal, cache: "no-store" });
  }

  private handle(message: EventSourceMessage): void {
    if (this.stopped) return;
    this.markReady();
    const id = message.id ? Number(message.id) : null;
    if (id !== null && this.lastId !== null && id <= this.lastId) return; // seen already
    let body: unknown;
    try {
      body = JSON.parse(message.data);
    } catch {
      return; // not ours: skip it, the id still marks our place
    }
    const event = parseEvent(body);
    if (id !== null) this.lastId = id;
    if (event === null) return;
    if (event.type === "stream_ended") this.sawEnd = true;
    const out = this.options.expandBatches === false ? [event] : expandReactions(event);
    for (const e of out) this.options.onEvent(e);
  }

  private backoff(error: ApiError): number {
    if (error.retryAfter !== null) return error.retryAfter * 1000;
    this.failures += 1;
    return Math.min(MAX_BACKOFF_MS, this.retryMs * 2 ** (this.failures - 1));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(timer);
        self.wake = null;
        resolve();
      }
      this.wake = done;
    });
  }

  private finish(status: ConnectionStatus): void {
    this.stopped = true;
    this.setStatus(status);
    this.markReady();
  }

  private setStatus(status: ConnectionStatus): void {
    if (status === this.current) return;
    this.current = status;
    this.options.onStatus?.(status);
  }
}

function isFinal(error: ApiError): boolean {
  return error.status >= 400 && error.status < 500 && error.status !== 408 && error.status !== 429;
}
