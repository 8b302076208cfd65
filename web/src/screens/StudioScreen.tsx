// The broadcaster's studio: the configuration modal, the RTMP URL and key for OBS,
// going live from the browser camera over WHIP, the camera preview, real-time
// status, chat and reactions as they arrive, and ending the stream.
import { useCallback, useEffect, useRef, useState } from "react";

import { ApiError } from "../api/errors";
import type { CreatedStream, LiveStream, StreamAnalytics } from "../api/types";
import { Chat } from "../components/Chat";
import { ConfigModal } from "../components/ConfigModal";
import { ReactionCounter } from "../components/Reactions";
import { CopyField } from "../components/SecretField";
import { StatusPanel } from "../components/StatusPanel";
import { StreamCard } from "../components/StreamCard";
import { useLiveStreaming } from "../hooks/useLiveStreaming";
import { navigate, Link } from "../lib/router";
import { useSession } from "../lib/session";
import { LiveStreamingService } from "../services/LiveStreamingService";
import { publishWhip } from "../services/whip";
import { NotFoundScreen } from "./NotFoundScreen";

const STATUS_POLL_MS = 2000;

type Owned = LiveStream & Partial<Pick<CreatedStream, "stream_key" | "ingest">>;

export function StudioScreen(props: { id: string | null }) {
  const session = useSession();
  if (!session.token) {
    return (
      <main className="screen" data-screen="studio">
        <h1>Studio</h1>
        <p>
          <Link to="/signin">Sign in</Link> to go live.
        </p>
      </main>
    );
  }
  return props.id ? <StreamStudio id={props.id} /> : <StudioHome userId={session.userId} />;
}

/** The broadcaster's streams, and the modal that creates a new one. */
function StudioHome(props: { userId: string | null }) {
  const { streams, getUserStreams, createLiveStream, isLoading, error } = useLiveStreaming();
  const [open, setOpen] = useState(true);
  useEffect(() => {
    if (props.userId) void getUserStreams(props.userId);
  }, [props.userId, getUserStreams]);

  const create = async (config: Parameters<typeof createLiveStream>[0]) => {
    const stream = await createLiveStream(config);
    if (stream) navigate(`/studio/${stream.id}`);
  };

  return (
    <main className="screen" data-screen="studio">
      <div className="screen-head">
        <h1>Studio</h1>
        <button type="button" className="primary" onClick={() => setOpen(true)}>
          New stream
        </button>
      </div>
      <h2>Your streams</h2>
      <div className="grid">
        {streams.map((s) => (
          <StreamCard key={s.id} stream={s} to={`/studio/${s.id}`} />
        ))}
      </div>
      {open ? (
        <ConfigModal onSubmit={create} onClose={() => setOpen(false)} busy={isLoading} error={error?.message ?? null} />
      ) : null}
    </main>
  );
}

interface Publisher {
  stop(): Promise<void>;
}

/** One stream's control room. */
function StreamStudio(props: { id: string }) {
  const { id } = props;
  const session = useSession();
  const live = useLiveStreaming();
  const [stream, setStream] = useState<Owned | null>(null);
  const [missing, setMissing] = useState(false);
  const [analytics, setAnalytics] = useState<StreamAnalytics | null>(null);
  const [camera, setCamera] = useState<MediaStream | null>(null);
  const [publisher, setPublisher] = useState<Publisher | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const preview = useRef<HTMLVideoElement>(null);

  const refresh = useCallback(async () => {
    const service = LiveStreamingService.getInstance();
    try {
      setStream((await service.getLiveStream(id)) as Owned);
      setAnalytics(await service.getStreamAnalytics(id));
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) setMissing(true);
    }
  }, [id]);

  useEffect(() => {
    const service = LiveStreamingService.getInstance();
    service.watchStream(id);
    void refresh();
    const t = window.setInterval(() => void refresh(), STATUS_POLL_MS);
    return () => {
      window.clearInterval(t);
      service.unwatchStream();
    };
  }, [id, refresh]);

  useEffect(() => {
    if (preview.current) preview.current.srcObject = camera;
  }, [camera]);

  useEffect(
    () => () => {
      camera?.getTracks().forEach((t) => t.stop());
    },
    [camera],
  );

  useEffect(
    () => () => {
      void publisher?.stop();
    },
    [publisher],
  );

  if (missing) return <NotFoundScreen />;
  if (!stream) return <main className="screen muted">Loading…</main>;

  const startCamera = async () => {
    setProblem(null);
    try {
      setCamera(await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true }));
    } catch (e) {
      setProblem(`The camera could not be opened: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  const goLive = async () => {
    if (!camera || !session.token) return;
    setProblem(null);
    try {
      const pub = await publishWhip(`/api/live-streaming/${id}/whip`, camera, session.token);
      setPublisher(pub);
      await refresh();
    } catch (e) {
      setProblem(`Going live failed: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  const end = async () => {
    const pub = publisher;
    setPublisher(null);
    await pub?.stop();
    await live.endLiveStream(id);
    await refresh();
  };

  const ingest = stream.ingest;
  const viewers = live.viewerCount || stream.viewers;
  return (
    <main className="screen studio" data-screen="studio" data-stream-status={stream.status}>
      <div className="screen-head">
        <div>
          <h1>{stream.title}</h1>
          <p className="muted">
            {stream.quality} · {stream.bitrate} kbps · {stream.privacy} · {stream.category}
            {stream.is_nsfw ? " · NSFW" : ""}
          </p>
        </div>
        <div className="actions">
          <Link to={`/watch/${id}`} className="button">
            Viewer page
          </Link>
          <Link to={`/analytics/${id}`} className="button">
            Analytics
          </Link>
          {stream.status === "created" ? (
            <button type="button" onClick={() => void live.startLiveStream(id).then(refresh)}>
              Start (OBS)
            </button>
          ) : null}
          {stream.status !== "ended" ? (
            <button type="button" className="danger" onClick={() => void end()}>
              End stream
            </button>
          ) : null}
        </div>
      </div>
      {live.error ? <p className="error" role="alert">{live.error.message}</p> : null}
      {problem ? <p className="error" role="alert">{problem}</p> : null}
      <div className="studio-grid">
        <section className="camera" aria-label="Camera">
          <video ref={preview} className="video" data-testid="camera-preview" muted playsInline autoPlay />
          <div className="actions">
            {!camera ? (
              <button type="button" onClick={() => void startCamera()} disabled={stream.status === "ended"}>
                Start camera
              </button>
            ) : null}
            {camera && !publisher && stream.status !== "ended" ? (
              <button type="button" className="primary" onClick={() => void goLive()}>
                Go live from camera
              </button>
            ) : null}
            {publisher ? <span className="badge live">Publishing from this browser</span> : null}
          </div>
          {ingest ? (
            <div className="ingest">
              <h3>Or stream from OBS</h3>
              <CopyField label="RTMP server" name="rtmp-server" value={ingest.server} />
              <CopyField label="Stream key" name="stream-key" value={ingest.stream_key ?? ""} secret />
            </div>
          ) : null}
        </section>
        <StatusPanel
          status={stream.status}
          connection={live.connection}
          viewers={viewers}
          analytics={analytics}
          events={live.streamEvents}
          publishing={publisher ? "browser camera (WHIP)" : (analytics?.media.segments ?? 0) > 0 ? "receiving" : null}
        />
        <div className="studio-side">
          <ReactionCounter events={live.streamEvents} />
          <Chat
            events={live.streamEvents}
            canSend={stream.status === "live"}
            onSend={(m) => live.sendChatMessage(id, m)}
          />
        </div>
      </div>
    </main>
  );
}

export default StudioScreen;
