// The player's low-latency stall watchdog (components/Player.tsx): a play that stands
// still, not paused, for LL_STALL_MS falls back once; a paused or moving one never.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { LL_STALL_MS, watchStall } from "../src/components/Player";

describe("watchStall", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("falls back once when a playing video stands still", () => {
    const video = { paused: false, currentTime: 4.2 };
    const stalled = vi.fn();
    watchStall(video, stalled);
    vi.advanceTimersByTime(LL_STALL_MS + 2000);
    expect(stalled).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(LL_STALL_MS * 3);
    expect(stalled).toHaveBeenCalledTimes(1);
  });

  it("leaves a moving, a paused or a not yet started video alone", () => {
    const video = { paused: false, currentTime: 0 };
    const stalled = vi.fn();
    const timer = watchStall(video, stalled);
    vi.advanceTimersByTime(LL_STALL_MS * 2); // not started: currentTime 0
    for (let i = 0; i < 20; i++) {
      video.currentTime += 0.5; // playing
      vi.advanceTimersByTime(1000);
    }
    video.paused = true; // the viewer paused it
    vi.advanceTimersByTime(LL_STALL_MS * 2);
    expect(stalled).not.toHaveBeenCalled();
    window.clearInterval(timer);
  });
});
