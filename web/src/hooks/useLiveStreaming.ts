/**
 * The spec's `useLiveStreaming` hook: the live-streaming state for a component,
 * and the service's methods wrapped for UI code.
 *
 * State that belongs to the stream (current stream, lists, events, viewer count)
 * lives in the `LiveStreamingService` and is shared by every component using the
 * same service; `isLoading` and `error` are this component's own.
 *
 * The wrapped methods never throw: on failure they resolve with null (or false)
 * and set `error` to the `ApiError` (server code and message), as the spec's
 * `if (stream)` expects. `clearError` dismisses it.
 */
import { useCallback, useMemo, useState, useSyncExternalStore } from "react";

import { asApiError, type ApiError } from "../api/errors";
import type { StreamConfig } from "../api/types";
import {
  LiveStreamingService,
  type LiveStreamingState,
} from "../services/LiveStreamingService";

export interface UseLiveStreaming extends LiveStreamingState {
  isLoading: boolean;
  error: ApiError | null;
  clearError: () => void;
  clearEvents: () => void;
  createLiveStream: Nullable<LiveStreamingService["createLiveStream"]>;
  startLiveStream: Nullable<LiveStreamingService["startLiveStream"]>;
  endLiveStream: Nullable<LiveStreamingService["endLiveStream"]>;
  getLiveStreams: Nullable<LiveStreamingService["getLiveStreams"]>;
  getUserStreams: Nullable<LiveStreamingService["getUserStreams"]>;
  joinLiveStream: Nullable<LiveStreamingService["joinLiveStream"]>;
  leaveLiveStream: Nullable<LiveStreamingService["leaveLiveStream"]>;
  sendChatMessage: Nullable<LiveStreamingService["sendChatMessage"]>;
  sendReaction: Nullable<LiveStreamingService["sendReaction"]>;
  getStreamAnalytics: Nullable<LiveStreamingService["getStreamAnalytics"]>;
  /** Watch a stream's events without joining it (e.g. the broadcaster's studio). */
  watchStream: (streamId: string) => Promise<void>;
  unwatchStream: () => void;
}

/** A service method as the hook offers it: same arguments, null instead of a throw. */
type Nullable<F> = F extends (...args: infer A) => Promise<infer R>
  ? (...args: A) => Promise<R | null>
  : never;

export function useLiveStreaming(
  service: LiveStreamingService = LiveStreamingService.getInstance(),
): UseLiveStreaming {
  const state = useSyncExternalStore(service.subscribe, service.getState, service.getState);
  const [pending, setPending] = useState(0);
  const [error, setError] = useState<ApiError | null>(null);

  const run = useCallback(async <T>(task: () => Promise<T>): Promise<T | null> => {
    setPending((n) => n + 1);
    setError(null);
    try {
      return await task();
    } catch (cause) {
      setError(asApiError(cause));
      return null;
    } finally {
      setPending((n) => n - 1);
    }
  }, []);

  const methods = useMemo(
    () => ({
      createLiveStream: (config: StreamConfig) => run(() => service.createLiveStream(config)),
      startLiveStream: (id: string) => run(() => service.startLiveStream(id)),
      endLiveStream: (id: string) => run(() => service.endLiveStream(id)),
      getLiveStreams: (filters?: Parameters<LiveStreamingService["getLiveStreams"]>[0]) =>
        run(() => service.getLiveStreams(filters)),
      getUserStreams: (userId: string) => run(() => service.getUserStreams(userId)),
      joinLiveStream: (id: string) => run(() => service.joinLiveStream(id)),
      leaveLiveStream: (id: string) => run(() => service.leaveLiveStream(id)),
      sendChatMessage: (id: string, message: string) =>
        run(() => service.sendChatMessage(id, message)),
      sendReaction: (id: string, reaction: string) => run(() => service.sendReaction(id, reaction)),
      getStreamAnalytics: (id: string) => run(() => service.getStreamAnalytics(id)),
      watchStream: (id: string) => service.watchStream(id),
      unwatchStream: () => service.unwatchStream(),
      clearEvents: () => service.clearEvents(),
      clearError: () => setError(null),
    }),
    [run, service],
  );

  return { ...state, ...methods, isLoading: pending > 0, error };
}

export default useLiveStreaming;
