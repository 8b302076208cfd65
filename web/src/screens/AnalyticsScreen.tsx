// The owner's analytics: viewers over time, watch time, chat per minute and
// reactions by type, as plain SVG charts. The totals come from
// `GET …/analytics`; the time series are folded from the stream's stored events.
import { useEffect, useState } from "react";

import { ApiError } from "../api/errors";
import type { StreamEvent } from "../api/events";
import type { LiveStream, StreamAnalytics } from "../api/types";
import { BarChart, LineChart, type Point } from "../components/Charts";
import { StreamCard } from "../components/StreamCard";
import { useLiveStreaming } from "../hooks/useLiveStreaming";
import { Link } from "../lib/router";
import { useSession } from "../lib/session";
import { allEvents } from "../lib/webapi";
import { LiveStreamingService } from "../services/LiveStreamingService";
import { NotFoundScreen } from "./NotFoundScreen";

export function AnalyticsScreen(props: { id: string | null }) {
  const session = useSession();
  if (!session.token) {
    return (
      <main className="screen" data-screen="analytics">
        <h1>Analytics</h1>
        <p>
          <Link to="/signin">Sign in</Link> to see your streams' analytics.
        </p>
      </main>
    );
  }
  return props.id ? <StreamAnalyticsView id={props.id} /> : <YourStreams userId={session.userId} />;
}

function YourStreams(props: { userId: string | null }) {
  const { streams, getUserStreams } = useLiveStreaming();
  useEffect(() => {
    if (props.userId) void getUserStreams(props.userId);
  }, [props.userId, getUserStreams]);
  return (
    <main className="screen" data-screen="analytics">
      <h1>Analytics</h1>
      <div className="grid">
        {streams.map((s) => (
          <StreamCard key={s.id} stream={s} to={`/analytics/${s.id}`} />
        ))}
      </div>
    </main>
  );
}

function start(stream: LiveStream, events: StreamEvent[]): number {
  const t = stream.started_at ?? events[0]?.createdAt ?? stream.created_at;
  return Date.parse(t);
}

function seconds(e: StreamEvent, t0: number): number {
  return Math.max(0, (Date.parse(e.createdAt ?? "") - t0) / 1000);
}

/** Concurrent viewers after each join and leave (a step series). */
export function viewersOverTime(events: StreamEvent[], t0: number, now: number, current: number): Point[] {
  const points: Point[] = [{ x: 0, y: 0 }];
  let n = 0;
  for (const e of events) {
    if (e.type !== "viewer_joined" && e.type !== "viewer_left") continue;
    n = Math.max(0, n + (e.type === "viewer_joined" ? 1 : -1));
    points.push({ x: seconds(e, t0), y: n });
  }
  points.push({ x: Math.max(0, (now - t0) / 1000), y: current });
  return points;
}

/** Chat messages in each minute since the stream started. */
export function chatPerMinute(events: StreamEvent[], t0: number, now: number): Point[] {
  const minutes = Math.max(1, Math.ceil((now - t0) / 60_000));
  const counts = new Array<number>(minutes).fill(0);
  for (const e of events) {
    if (e.type !== "chat_message") continue;
    const m = Math.min(minutes - 1, Math.floor(seconds(e, t0) / 60));
    counts[m] = (counts[m] ?? 0) + 1;
  }
  return counts.map((y, i) => ({ x: i * 60, y }));
}

/** Watch time that ended viewings added up to, over time (minutes). */
export function watchTimeOverTime(events: StreamEvent[], t0: number): Point[] {
  const points: Point[] = [{ x: 0, y: 0 }];
  let total = 0;
  for (const e of events) {
    const d = e.data.watchDuration;
    if (e.type !== "viewer_left" || typeof d !== "number") continue;
    total += d / 60;
    points.push({ x: seconds(e, t0), y: Math.round(total * 10) / 10 });
  }
  return points;
}

function StreamAnalyticsView(props: { id: string }) {
  const { id } = props;
  const [stream, setStream] = useState<LiveStream | null>(null);
  const [a, setA] = useState<StreamAnalytics | null>(null);
  const [events, setEvents] = useState<StreamEvent[]>([]);
  const [missing, setMissing] = useState(false);

  useEffect(() => {
    let gone = false;
    const service = LiveStreamingService.getInstance();
    const load = async () => {
      try {
        const [s, analytics, evs] = await Promise.all([
          service.getLiveStream(id),
          service.getStreamAnalytics(id),
          allEvents(id),
        ]);
        if (gone) return;
        setStream(s);
        setA(analytics);
        setEvents(evs);
      } catch (e) {
        if (!gone && e instanceof ApiError && (e.status === 404 || e.status === 403)) setMissing(true);
      }
    };
    void load();
    const t = window.setInterval(() => void load(), 10_000);
    return () => {
      gone = true;
      window.clearInterval(t);
    };
  }, [id]);

  if (missing) return <NotFoundScreen />;
  if (!stream || !a) return <main className="screen muted">Loading…</main>;
  const t0 = start(stream, events);
  const now = stream.ended_at ? Date.parse(stream.ended_at) : Date.now();
  const figures: [string, string][] = [
    ["Peak viewers", String(a.peak_viewers)],
    ["Unique viewers", String(a.unique_viewers)],
    ["Total watch time", `${(a.total_watch_time_s / 60).toFixed(1)} min`],
    ["Average watch", `${a.average_watch_time_s.toFixed(0)} s`],
    ["Chat messages", `${a.chat_messages} (${a.chat_messages_per_minute}/min)`],
    ["Moderated", String(a.moderated_messages)],
    ["Reactions", String(a.reaction_total)],
    ["Engagement", `${(a.engagement_rate * 100).toFixed(0)} %`],
  ];
  return (
    <main className="screen" data-screen="analytics">
      <div className="screen-head">
        <h1>Analytics · {stream.title}</h1>
        <Link to={`/studio/${id}`} className="button">
          Studio
        </Link>
      </div>
      <dl className="figures">
        {figures.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
      <div className="charts">
        <LineChart name="viewers" title="Viewers over time" points={viewersOverTime(events, t0, now, a.current_viewers)} />
        <LineChart name="watch-time" title="Watch time (minutes, cumulative)" points={watchTimeOverTime(events, t0)} unit=" min" />
        <BarChart
          name="watch-time-totals"
          title="Watch time"
          bars={[
            { label: "total (min)", value: Math.round(a.total_watch_time_s / 6) / 10 },
            { label: "average (s)", value: Math.round(a.average_watch_time_s) },
          ]}
        />
        <LineChart name="chat" title="Chat messages per minute" points={chatPerMinute(events, t0, now)} />
        <BarChart
          name="reactions"
          title="Reactions by type"
          bars={Object.entries(a.reactions)
            .sort((x, y) => y[1] - x[1])
            .map(([label, value]) => ({ label, value }))}
        />
      </div>
    </main>
  );
}

export default AnalyticsScreen;
