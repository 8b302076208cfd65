// Watch a stream: the player (rendition menu, AI-enhanced rungs marked), join and
// leave, chat with moderation feedback, reactions with a live counter, viewers.
// A stream the caller may not see is the same plain "not found" as a missing one.
import { useEffect, useState } from "react";

import { ApiError } from "../api/errors";
import type { LiveStream } from "../api/types";
import { Chat } from "../components/Chat";
import { Player } from "../components/Player";
import { ReactionBar, ReactionCounter } from "../components/Reactions";
import { useLiveStreaming } from "../hooks/useLiveStreaming";
import { latestViewers } from "../lib/events";
import { useSession } from "../lib/session";
import { joinedUrl, masterUrl, posterUrl, renditions, viewerUrl, type RenditionInfo } from "../lib/webapi";
import { LiveStreamingService } from "../services/LiveStreamingService";
import { NotFoundScreen } from "./NotFoundScreen";

type Load = { state: "loading" } | { state: "missing" } | { state: "ok"; stream: LiveStream };

export function WatchScreen(props: { id: string }) {
  const session = useSession();
  const live = useLiveStreaming();
  const [load, setLoad] = useState<Load>({ state: "loading" });
  const [src, setSrc] = useState<string | null>(null);
  const [ladder, setLadder] = useState<RenditionInfo[]>([]);
  const { id } = props;

  useEffect(() => {
    let gone = false;
    setLoad({ state: "loading" });
    setSrc(null);
    const service = LiveStreamingService.getInstance();
    service
      .getLiveStream(id)
      .then((stream) => {
        if (gone) return;
        setLoad({ state: "ok", stream });
        service.watchStream(id); // events before joining too: chat, viewers
        if (stream.status === "ended") setSrc(masterUrl(id)); // the recording
      })
      .catch((e: unknown) => {
        if (!gone) setLoad(e instanceof ApiError && e.status === 404 ? { state: "missing" } : { state: "loading" });
      });
    return () => {
      gone = true;
      service.unwatchStream();
    };
  }, [id, session.token]);

  useEffect(() => {
    if (!src) return;
    const poll = () => void renditions(id).then(setLadder, () => undefined);
    poll();
    const t = window.setInterval(poll, 10_000);
    return () => window.clearInterval(t);
  }, [id, src]);

  if (load.state === "missing") return <NotFoundScreen />;
  if (load.state === "loading") return <main className="screen muted">Loading…</main>;
  const stream = load.stream;
  const joined = src !== null && stream.status === "live";

  const join = async () => {
    if (!session.token) {
      setSrc(viewerUrl(id, stream)); // anonymous viewers of public streams watch without joining
      return;
    }
    const result = await live.joinLiveStream(id);
    if (result) setSrc(joinedUrl(result));
  };
  const leave = async () => {
    setSrc(null);
    if (session.token) await live.leaveLiveStream(id);
    LiveStreamingService.getInstance().watchStream(id);
  };
  const viewers = live.viewerCount || latestViewers(live.streamEvents) || stream.viewers;

  return (
    <main className="screen watch" data-screen="watch">
      <div className="watch-main">
        {src ? (
          <Player src={src} renditions={ladder} poster={posterUrl(id, 0)} />
        ) : (
          <div className="player placeholder">
            <img className="video" src={posterUrl(id, 0)} alt="" onError={(e) => (e.currentTarget.style.visibility = "hidden")} />
          </div>
        )}
        <div className="watch-head">
          <div>
            <h1 data-testid="stream-title">{stream.title}</h1>
            <p className="muted">
              {stream.category} · {stream.quality} · {stream.status}
              {stream.tags.length ? ` · #${stream.tags.join(" #")}` : ""}
            </p>
            {stream.description ? <p>{stream.description}</p> : null}
          </div>
          <div className="watch-actions">
            <span className="viewers" data-testid="viewer-count">
              👁 {viewers} watching
            </span>
            {stream.status === "live" ? (
              joined ? (
                <button type="button" onClick={() => void leave()}>
                  Leave
                </button>
              ) : (
                <button type="button" className="primary" onClick={() => void join()}>
                  Join stream
                </button>
              )
            ) : null}
          </div>
        </div>
        {live.error ? <p className="error" role="alert">{live.error.message}</p> : null}
        <ReactionCounter events={live.streamEvents} />
        {joined && session.token ? <ReactionBar onReact={(r) => live.sendReaction(id, r)} /> : null}
      </div>
      <Chat
        events={live.streamEvents}
        canSend={joined && Boolean(session.token)}
        onSend={(m) => live.sendChatMessage(id, m)}
      />
    </main>
  );
}

export default WatchScreen;
