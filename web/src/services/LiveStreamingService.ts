/**
 * The spec's `LiveStreamingService`: one object for a stream's lifecycle (create,
 * start, end), viewing (join, leave, chat, reactions), analytics, and its
 * real-time events.
 *
 * A singleton (`getInstance()`), configured once with the API's base URL and a
 * token provider (`configure`); further instances are for other identities
 * (tests, an admin view). It also holds the state the `useLiveStreaming` hook
 * shows — the current stream, the listed streams, the watched stream's events
 * and viewer count — so every component using the hook sees the same stream.
 *
 * Every method resolves with the API's data or rejects with an `ApiError`
 * carrying the server's `{error: {code, message}}` and HTTP status.
 */
import { call, createApiClient, type ApiClient, type ClientOptions } from "../api/client";
import type { ApiError } from "../api/errors";
import type { StreamEvent } from "../api/events";
import {
  EventSubscription,
  type ConnectionStatus,
  type SubscriptionOptions,
} from "../api/subscription";
import type {
  ChatMessage,
  CreatedStream,
  EventPage,
  JoinResult,
  LeaveResult,
  LiveStream,
  ReactionResult,
  StreamAnalytics,
  StreamConfig,
} from "../api/types";

export interface LiveStreamingState {
  /** The stream being broadcast or watched (after create, start or join). */
  currentStream: LiveStream | null;
  /** The last list fetched (`getLiveStreams`, `getUserStreams`). */
  streams: LiveStream[];
  /** Events of the watched stream, oldest first (at most `maxEvents`). */
  streamEvents: StreamEvent[];
  viewerCount: number;
  connection: ConnectionStatus | "idle";
  /** The watched stream's last subscription error (e.g. it became invisible). */
  connectionError: ApiError | null;
}

export interface ServiceOptions extends ClientOptions {
  /** Events kept in `streamEvents` (older ones drop off). Default 500. */
  maxEvents?: number;
}

export type EventHandlers = Omit<SubscriptionOptions, "baseUrl" | "getToken" | "fetch">;

const INITIAL: LiveStreamingState = {
  currentStream: null,
  streams: [],
  streamEvents: [],
  viewerCount: 0,
  connection: "idle",
  connectionError: null,
};

type Listener = () => void;

const READY_TIMEOUT_MS = 5000;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class LiveStreamingService {
  private static instance: LiveStreamingService | null = null;

  private options: ServiceOptions = {};
  private api: ApiClient = createApiClient();
  private state: LiveStreamingState = INITIAL;
  private readonly listeners = new Set<Listener>();
  private watched: EventSubscription | null = null;

  constructor(options: ServiceOptions = {}) {
    this.configure(options);
  }

  /** The app's one service. */
  static getInstance(): LiveStreamingService {
    LiveStreamingService.instance ??= new LiveStreamingService();
    return LiveStreamingService.instance;
  }

  /** Configure the singleton (base URL, token provider); see `configure`. */
  static configure(options: ServiceOptions): LiveStreamingService {
    const service = LiveStreamingService.getInstance();
    service.configure(options);
    return service;
  }

  /** New base URL or identity: drops the watched stream and the state of the old one. */
  configure(options: ServiceOptions): void {
    this.unwatchStream();
    this.options = { ...options };
    this.api = createApiClient(options);
    this.setState(INITIAL);
  }

  // Lifecycle ------------------------------------------------------------------

  /** Create a stream (the response carries its RTMP key) and watch its events. */
  async createLiveStream(config: StreamConfig): Promise<CreatedStream> {
    const stream = (await call(
      this.api.POST("/api/live-streaming/create", { body: config }),
    )) as CreatedStream;
    this.setState({ currentStream: stream });
    void this.watchStream(stream.id);
    return stream;
  }

  /** created → live. */
  async startLiveStream(streamId: string): Promise<LiveStream> {
    const started = (await call(
      this.api.POST("/api/live-streaming/start/{stream_id}", {
        params: { path: { stream_id: streamId } },
      }),
    )) as LiveStream;
    this.updateCurrent(streamId, started);
    return started;
  }

  /** live → ended (waits until what was sent is published). */
  async endLiveStream(streamId: string): Promise<LiveStream> {
    const ended = (await call(
      this.api.POST("/api/live-streaming/end/{stream_id}", {
        params: { path: { stream_id: streamId } },
      }),
    )) as LiveStream;
    this.updateCurrent(streamId, ended);
    return ended;
  }

  async getLiveStream(streamId: string): Promise<LiveStream> {
    return (await call(
      this.api.GET("/api/live-streaming/{stream_id}", {
        params: { path: { stream_id: streamId } },
      }),
    )) as LiveStream;
  }

  /** Live streams the caller may see, newest first (the first page). */
  async getLiveStreams(
    filters: { category?: string; quality?: string; tag?: string; limit?: number } = {},
  ): Promise<LiveStream[]> {
    const page = await call(this.api.GET("/api/live-streaming/live", { params: { query: filters } }));
    const streams = items<LiveStream>(page);
    this.setState({ streams });
    return streams;
  }

  /** Streams recommended for the caller. */
  async getRecommendedStreams(): Promise<LiveStream[]> {
    return items<LiveStream>(await call(this.api.GET("/api/live-streaming/recommended")));
  }

  /** A user's streams the caller may see. */
  async getUserStreams(userId: string): Promise<LiveStream[]> {
    const page = await call(
      this.api.GET("/api/live-streaming/user/{user_id}", {
        params: { path: { user_id: userId } },
      }),
    );
    const streams = items<LiveStream>(page);
    this.setState({ streams });
    return streams;
  }

  // Viewing ---------------------------------------------------------------------

  /** Join a live stream (the answer has the HLS `playback_url`) and watch its events.
   * The subscription is live before the join, so the viewer sees their own
   * `viewer_joined` and everything after it. */
  async joinLiveStream(streamId: string): Promise<JoinResult> {
    // Not forever: with the event stream unreachable, the join still goes ahead.
    await Promise.race([this.watchStream(streamId), delay(READY_TIMEOUT_MS)]);
    let joined: JoinResult;
    try {
      joined = await call(
        this.api.POST("/api/live-streaming/{stream_id}/join", {
          params: { path: { stream_id: streamId } },
        }),
      );
    } catch (error) {
      if (this.watched?.streamId === streamId) this.unwatchStream();
      throw error;
    }
    const stream = await this.getLiveStream(streamId);
    this.setState({ currentStream: stream });
    return joined;
  }

  /** Leave; stops watching the stream's events. */
  async leaveLiveStream(streamId: string): Promise<LeaveResult> {
    const left = await call(
      this.api.POST("/api/live-streaming/{stream_id}/leave", {
        params: { path: { stream_id: streamId } },
      }),
    );
    if (this.watched?.streamId === streamId) {
      this.unwatchStream();
      this.setState({ currentStream: null });
    }
    return left;
  }

  /** Send a chat message; the answer carries its moderation outcome. */
  async sendChatMessage(streamId: string, message: string): Promise<ChatMessage> {
    return call(
      this.api.POST("/api/live-streaming/{stream_id}/chat", {
        params: { path: { stream_id: streamId } },
        body: { message },
      }),
    );
  }

  /** Send a reaction: an emoji or a custom `:name:`. */
  async sendReaction(streamId: string, reaction: string): Promise<ReactionResult> {
    return call(
      this.api.POST("/api/live-streaming/{stream_id}/reaction", {
        params: { path: { stream_id: streamId } },
        body: { reaction },
      }),
    );
  }

  // Analytics and history -----------------------------------------------------------

  /** The owner's analytics of a stream. */
  async getStreamAnalytics(streamId: string): Promise<StreamAnalytics> {
    return call(
      this.api.GET("/api/live-streaming/{stream_id}/analytics", {
        params: { path: { stream_id: streamId } },
      }),
    );
  }

  /** Stored events after `since` (a page; `next_cursor` continues it). */
  async getStreamEvents(streamId: string, since = 0, limit = 100): Promise<EventPage> {
    return call(
      this.api.GET("/api/live-streaming/{stream_id}/events", {
        params: { path: { stream_id: streamId }, query: { since, limit } },
      }),
    );
  }

  // Real-time events ------------------------------------------------------------

  /** A subscription of its own to a stream's events (the caller closes it). */
  subscribeToStream(streamId: string, handlers: EventHandlers): EventSubscription {
    const { baseUrl, getToken, fetch } = this.options;
    return new EventSubscription(streamId, { baseUrl, getToken, fetch, ...handlers });
  }

  /** Watch a stream: its events fill `streamEvents`, `viewer_count` sets `viewerCount`.
   * Resolves once the subscription is live (or has failed: see `connectionError`). */
  watchStream(streamId: string): Promise<void> {
    if (this.watched?.streamId === streamId && this.watched.status !== "failed") {
      return this.watched.ready;
    }
    this.unwatchStream();
    this.setState({ streamEvents: [], viewerCount: 0, connectionError: null });
    const sub = this.subscribeToStream(streamId, {
      onEvent: (event) => {
        if (this.watched === sub) this.record(event);
      },
      onError: (error, final) => {
        if (this.watched === sub && final) this.setState({ connectionError: error });
      },
      onStatus: (connection) => {
        if (this.watched === sub) this.setState({ connection });
      },
    });
    this.watched = sub;
    return sub.ready;
  }

  unwatchStream(): void {
    this.watched?.close();
    this.watched = null;
    if (this.state.connection !== "idle") this.setState({ connection: "idle" });
  }

  /** The watched stream's subscription, if any (its `lastEventId`, `reconnect()`). */
  get watchedSubscription(): EventSubscription | null {
    return this.watched;
  }

  clearEvents(): void {
    this.setState({ streamEvents: [] });
  }

  // The hook's store (for useSyncExternalStore) -----------------------------------------

  getState = (): LiveStreamingState => this.state;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private record(event: StreamEvent): void {
    if (event.type === "viewer_count") {
      const count = event.data.viewerCount;
      if (typeof count === "number") this.setState({ viewerCount: count });
      return;
    }
    const max = this.options.maxEvents ?? 500;
    const events = [...this.state.streamEvents, event];
    this.setState({ streamEvents: events.length > max ? events.slice(-max) : events });
  }

  private updateCurrent(streamId: string, fresh: LiveStream): void {
    const current = this.state.currentStream;
    if (current === null || current.id === streamId) {
      this.setState({ currentStream: { ...current, ...fresh } });
    }
  }

  private setState(patch: Partial<LiveStreamingState>): void {
    this.state = { ...this.state, ...patch };
    for (const listener of this.listeners) listener();
  }
}

/** `items` of a paged list answer. */
function items<T>(page: unknown): T[] {
  const list = (page as { items?: unknown }).items;
  return Array.isArray(list) ? (list as T[]) : [];
}

export default LiveStreamingService;
