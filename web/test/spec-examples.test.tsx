/**
 * The spec's three usage examples, verbatim (inside `renderHook`), against the
 * running backend: a broadcaster goes live (1), a viewer joins, chats and reacts
 * (2), and the viewer's real-time handler logs what the spec says it logs (3);
 * the broadcaster's own subscription sees the viewer's chat and reaction.
 */
import { act, renderHook, waitFor } from "@testing-library/react";
import { useEffect } from "react";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";

import type { StreamEvent } from "../src/api/events";
import { useLiveStreaming } from "../src/hooks/useLiveStreaming";
import { LiveStreamingService } from "../src/services/LiveStreamingService";
import { serviceFor, signIn, user } from "./backend";

const broadcaster = user(0);
const viewer = user(1);
let streamId = ""; // the stream example 1 creates, which example 2 joins

afterEach(() => {
  vi.restoreAllMocks();
});

afterAll(() => {
  LiveStreamingService.getInstance().unwatchStream();
});

describe("the spec's usage examples", () => {
  it("Creating a Live Stream", async () => {
    signIn(broadcaster);
    const { result } = renderHook(() => {
      // --- spec: "Creating a Live Stream" ---
      const { createLiveStream, startLiveStream } = useLiveStreaming();

      const handleGoLive = async () => {
        const streamConfig = {
          title: "My Gen 1 Stream",
          description: "AI-powered live content",
          quality: "4K" as const,
          bitrate: 25000,
          enableAI: true,
          enableHDR: false,
          enableRayTracing: false,
          privacy: "public" as const,
          category: "general",
          tags: ["gen1", "ai"],
          isNSFW: false
        };

        const stream = await createLiveStream(streamConfig);
        if (stream) {
          await startLiveStream(stream.id);
        }
      };
      // --- end of the spec's example ---
      return { handleGoLive, state: useLiveStreaming() };
    });

    await act(() => result.current.handleGoLive());

    const { state } = result.current;
    expect(state.error).toBeNull();
    expect(state.currentStream?.title).toBe("My Gen 1 Stream");
    expect(state.currentStream?.status).toBe("live");
    streamId = state.currentStream?.id ?? "";
    // Seen from outside: anyone lists it as live, with the spec's config applied.
    const listed = (await serviceFor(null).getLiveStreams()).find((s) => s.id === streamId);
    expect(listed).toMatchObject({
      title: "My Gen 1 Stream",
      quality: "4K",
      bitrate: 25000,
      category: "general",
      tags: ["gen1", "ai"],
      status: "live",
    });
  });

  it("Joining a Live Stream, with Real-time Event Handling", async () => {
    expect(streamId).not.toBe("");
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    // The broadcaster watches the stream through a service of their own.
    const seenByOwner: StreamEvent[] = [];
    const owner = serviceFor(broadcaster).subscribeToStream(streamId, {
      onEvent: (event) => seenByOwner.push(event),
    });
    await waitFor(() => expect(owner.status).toBe("open"));

    signIn(viewer);
    const joining = renderHook(() => {
      // --- spec: "Joining a Live Stream" ---
      const { joinLiveStream, sendChatMessage, sendReaction } = useLiveStreaming();
      return async (streamId: string) => {
        // Join stream
        await joinLiveStream(streamId);

        // Send chat message
        await sendChatMessage(streamId, "Hello from Gen 1!");

        // Send reaction
        await sendReaction(streamId, "🔥");
      };
      // --- end of the spec's example ---
    });
    const handling = renderHook(() => {
      // --- spec: "Real-time Event Handling" ---
      const { streamEvents, clearEvents } = useLiveStreaming();

      // Listen to real-time events
      useEffect(() => {
        streamEvents.forEach(event => {
          switch (event.type) {
            case 'viewer_joined':
              console.log('New viewer joined:', event.data.userId);
              break;
            case 'chat_message':
              console.log('New chat message:', event.data.message);
              break;
            case 'reaction':
              console.log('New reaction:', event.data.reaction);
              break;
          }
        });
      }, [streamEvents]);
      // --- end of the spec's example ---
      return { streamEvents, clearEvents, error: useLiveStreaming().error };
    });

    await act(() => joining.result.current(streamId));

    await waitFor(() => {
      expect(log).toHaveBeenCalledWith("New viewer joined:", viewer.id);
      expect(log).toHaveBeenCalledWith("New chat message:", "Hello from Gen 1!");
      expect(log).toHaveBeenCalledWith("New reaction:", "🔥");
    });
    await waitFor(() => {
      const chat = seenByOwner.find((e) => e.type === "chat_message");
      expect(chat?.data).toMatchObject({
        message: "Hello from Gen 1!",
        userId: viewer.id,
        username: viewer.name,
      });
      const reaction = seenByOwner.find((e) => e.type === "reaction");
      expect(reaction?.data.reaction).toBe("🔥");
    });
    owner.close();

    // clearEvents empties the shared list for every component.
    expect(handling.result.current.streamEvents.length).toBeGreaterThan(0);
    act(() => handling.result.current.clearEvents());
    expect(handling.result.current.streamEvents).toEqual([]);
  });
});
