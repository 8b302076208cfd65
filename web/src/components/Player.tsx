// The HLS player: hls.js (bundled) over the playback URL, with a rendition menu.
// Levels are matched to the stream's renditions by their playlist's path
// (`.../hls/<name>/index.m3u8` or `.../llhls/<name>/index.m3u8`), so AI-enhanced rungs
// can be marked in the menu.
// A low-latency source (`.../llhls/master.m3u8`) plays with hls.js `lowLatencyMode`
// (parts, blocking reloads). The classic `.../hls/master.m3u8` of the same stream, same
// token, which the segment pool publishes on its own, takes over when
// - the LL master cannot be loaded (no LL renditions yet: a viewer who joined before
//   the first part); the player polls it and moves back once it answers;
// - the LL play, having started, stands still for `LL_STALL_MS` without being paused
//   (parts no longer arrive: the streaming encoder fell behind or stopped); it stays
//   on classic then, rather than flap between the two.
import Hls, { type Level } from "hls.js";
import { useEffect, useRef, useState } from "react";

import type { RenditionInfo } from "../lib/webapi";

interface MenuItem {
  index: number; // hls.js level index; -1 is automatic
  label: string;
  aiEnhanced: boolean;
  height: number;
}

function renditionOf(level: Level, renditions: RenditionInfo[]): RenditionInfo | undefined {
  const url = Array.isArray(level.url) ? level.url[0] : level.url;
  const name = /\/(?:ll)?hls\/([^/]+)\/index\.m3u8/.exec(String(url))?.[1];
  return renditions.find((r) => r.name === name) ?? renditions.find((r) => r.height === level.height);
}

function menu(levels: Level[], renditions: RenditionInfo[]): MenuItem[] {
  const items = levels.map((level, index) => {
    const r = renditionOf(level, renditions);
    return {
      index,
      label: r?.name ?? `${level.height}p`,
      aiEnhanced: r?.aiEnhanced ?? false,
      height: level.height,
    };
  });
  return items.sort((a, b) => b.height - a.height);
}

const LL_MASTER = "/llhls/master.m3u8";
export const LL_STALL_MS = 6000; // two classic segments: a rebuffer longer than that is a stall
const WATCH_MS = 1000;
const LL_RETRY_MS = 5000;

/** The classic master of a low-latency source; null for a classic one. */
export function classicOf(src: string): string | null {
  return src.includes(LL_MASTER) ? src.replace(LL_MASTER, "/hls/master.m3u8") : null;
}

/** Calls `stalled` once if the video, having played, stands still (not paused) for
 * `LL_STALL_MS`; returns the interval to clear. */
export function watchStall(
  el: Pick<HTMLVideoElement, "paused" | "currentTime">,
  stalled: () => void,
): number {
  let last = el.currentTime;
  let since = Date.now();
  const timer = window.setInterval(() => {
    if (el.paused || el.currentTime !== last || last === 0) {
      last = el.currentTime;
      since = Date.now();
    } else if (Date.now() - since > LL_STALL_MS) {
      window.clearInterval(timer);
      stalled();
    }
  }, WATCH_MS);
  return timer;
}

/** Polls a low-latency master the player fell back from because it did not exist
 * yet (a viewer who joined before the first part); calls `ready` once it answers. */
function awaitLowLatency(master: string, ready: () => void): () => void {
  let stopped = false;
  const timer = window.setInterval(async () => {
    const r = await fetch(master, { cache: "no-store" }).catch(() => null);
    if (r?.ok && !stopped) {
      stopped = true;
      window.clearInterval(timer);
      ready();
    }
  }, LL_RETRY_MS);
  return () => {
    stopped = true;
    window.clearInterval(timer);
  };
}

export function Player(props: { src: string; renditions: RenditionInfo[]; poster?: string }) {
  const video = useRef<HTMLVideoElement>(null);
  const [src, setSrc] = useState(props.src);
  // Set when the low-latency master was missing: the player goes back to it once it
  // exists. Never after a stall: that would flap between the two.
  const [pendingLow, setPendingLow] = useState<string | null>(null);
  useEffect(() => {
    setSrc(props.src);
    setPendingLow(null);
  }, [props.src]);
  useEffect(() => {
    if (!pendingLow) return;
    return awaitLowLatency(pendingLow, () => {
      setPendingLow(null);
      setSrc(pendingLow);
    });
  }, [pendingLow]);
  const fallback = classicOf(src);
  // Why a low-latency source plays classic now (`data-fallback`, for the viewer's
  // support and the browser tests): "pending" (no LL master yet, polled) or "stall".
  const fellBack = src === props.src ? "" : pendingLow ? "pending" : "stall";
  const hls = useRef<Hls | null>(null);
  const [levels, setLevels] = useState<Level[]>([]);
  const [chosen, setChosen] = useState(-1);
  const [playing, setPlaying] = useState(-1);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    const el = video.current;
    if (!el) return;
    if (!Hls.isSupported()) {
      el.src = src; // Safari plays HLS natively (LL-HLS included)
      return;
    }
    const lowLatency = fallback !== null;
    const player = new Hls(
      lowLatency ? { lowLatencyMode: true } : { liveSyncDurationCount: 2, lowLatencyMode: false },
    );
    hls.current = player;
    player.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {
      setLevels(data.levels);
      el.play().catch(() => setProblem("Press play to start the video."));
    });
    player.on(Hls.Events.LEVEL_SWITCHED, (_e, data) => setPlaying(data.level));
    player.on(Hls.Events.ERROR, (_e, data) => {
      if (!data.fatal) return;
      if (lowLatency && data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR) {
        setPendingLow(src); // no low-latency renditions (yet): the classic ones
        setSrc(fallback);
        return;
      }
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
        setProblem("The stream is not reachable; retrying…");
        window.setTimeout(() => player.startLoad(), 2000);
      } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        player.recoverMediaError();
      } else {
        setProblem(`Playback failed: ${data.details}`);
      }
    });
    player.on(Hls.Events.FRAG_BUFFERED, () => setProblem(null));
    player.loadSource(src);
    player.attachMedia(el);
    const watchdog = lowLatency ? watchStall(el, () => setSrc(fallback)) : undefined;
    return () => {
      window.clearInterval(watchdog);
      player.destroy();
      hls.current = null;
    };
  }, [src, fallback]);

  const choose = (index: number) => {
    setChosen(index);
    const player = hls.current;
    if (!player) return;
    // Switching now flushes what is buffered, so the choice shows within a segment.
    player.currentLevel = index;
  };

  const items = menu(levels, props.renditions);
  const now = items.find((i) => i.index === playing);
  return (
    <div className="player">
      <video
        ref={video}
        className="video"
        data-testid="player"
        data-level={now?.label ?? ""}
        data-latency={fallback !== null ? "low" : "normal"}
        data-fallback={fellBack}
        poster={props.poster}
        controls
        muted
        playsInline
        autoPlay
      />
      <div className="player-bar">
        <label>
          Quality{" "}
          <select
            aria-label="Quality"
            data-testid="rendition-menu"
            value={chosen}
            onChange={(e) => choose(Number(e.target.value))}
          >
            <option value={-1}>Auto{chosen === -1 && now ? ` (${now.label})` : ""}</option>
            {items.map((i) => (
              <option key={i.index} value={i.index}>
                {i.label}
                {i.aiEnhanced ? " ✨ AI-enhanced" : ""}
              </option>
            ))}
          </select>
        </label>
        <span className="muted" data-testid="playing-level">
          {now ? `Playing ${now.label}${now.aiEnhanced ? " (AI-enhanced)" : ""}` : "Loading…"}
        </span>
      </div>
      {problem ? <p className="notice">{problem}</p> : null}
    </div>
  );
}
