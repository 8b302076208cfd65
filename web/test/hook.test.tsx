/**
 * `useLiveStreaming` as UI code uses it: failures never throw out of the hook's
 * methods; they resolve null and set `error` (the server's ApiError), and
 * `isLoading` is true exactly while a call is in flight.
 */
import { act, renderHook, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";

import { ApiError } from "../src/api/errors";
import { useLiveStreaming } from "../src/hooks/useLiveStreaming";
import { serviceFor, user } from "./backend";

const someone = user(7);

describe("useLiveStreaming", () => {
  it("turns a failed call into null and an `error`, then clears it", async () => {
    const service = serviceFor(someone);
    const { result } = renderHook(() => useLiveStreaming(service));
    let joined: unknown = "unset";
    await act(async () => {
      joined = await result.current.joinLiveStream(crypto.randomUUID());
    });
    expect(joined).toBeNull();
    expect(result.current.error).toBeInstanceOf(ApiError);
    expect(result.current.error?.status).toBe(404);
    expect(result.current.isLoading).toBe(false);
    act(() => result.current.clearError());
    expect(result.current.error).toBeNull();
  });

  it("is loading while a call is in flight, and lists what it fetched", async () => {
    const service = serviceFor(someone);
    const created = await service.createLiveStream({ title: "listed by the hook" });
    await service.startLiveStream(created.id);
    service.unwatchStream();
    const { result } = renderHook(() => useLiveStreaming(service));
    let call: Promise<unknown> = Promise.resolve();
    act(() => {
      call = result.current.getUserStreams(someone.id);
    });
    expect(result.current.isLoading).toBe(true);
    await act(() => call);
    await waitFor(() => expect(result.current.isLoading).toBe(false));
    expect(result.current.error).toBeNull();
    expect(result.current.streams.map((s) => s.id)).toContain(created.id);
  });
});
