// Browse: live streams the viewer may see (the API filters by privacy), and the
// streams recommended for them. Lists refresh on their own while the page is open.
import { useCallback, useEffect, useState } from "react";

import type { LiveStream } from "../api/types";
import { StreamCard } from "../components/StreamCard";
import { useLiveStreaming } from "../hooks/useLiveStreaming";
import { Link } from "../lib/router";
import { useSession } from "../lib/session";
import { LiveStreamingService } from "../services/LiveStreamingService";

const REFRESH_MS = 15_000;

export function HomeScreen() {
  const session = useSession();
  const { streams, getLiveStreams, error } = useLiveStreaming();
  const [recommended, setRecommended] = useState<LiveStream[]>([]);
  const [loaded, setLoaded] = useState(false);

  const refresh = useCallback(async () => {
    await getLiveStreams({ limit: 50 });
    const rec = await LiveStreamingService.getInstance()
      .getRecommendedStreams()
      .catch(() => []);
    setRecommended(rec);
    setLoaded(true);
  }, [getLiveStreams]);

  useEffect(() => {
    void refresh();
    const t = window.setInterval(() => void refresh(), REFRESH_MS);
    return () => window.clearInterval(t);
  }, [refresh, session.token]);

  return (
    <main className="screen" data-screen="browse">
      <div className="screen-head">
        <h1>Live now</h1>
        <Link to="/studio" className="button primary">
          Go live
        </Link>
      </div>
      {error ? <p className="error" role="alert">{error.message}</p> : null}
      <div className="grid" data-testid="live-streams">
        {streams.map((s) => (
          <StreamCard key={s.id} stream={s} />
        ))}
      </div>
      {loaded && streams.length === 0 ? <p className="muted">Nobody is live right now.</p> : null}
      <h2>Recommended for you</h2>
      <div className="grid" data-testid="recommended">
        {recommended.map((s) => (
          <StreamCard key={s.id} stream={s} />
        ))}
      </div>
      {loaded && recommended.length === 0 ? <p className="muted">Nothing to recommend yet.</p> : null}
    </main>
  );
}

export default HomeScreen;
