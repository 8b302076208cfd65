// The broadcaster's real-time status: what the pipeline measured of the input
// (fps, bitrate, keyframe interval), what it dropped, who is watching, and
// moderation alerts. Figures come from the owner's analytics (`media` section,
// polled) and the stream's events (pushed).
import type { StreamAnalytics } from "../api/types";
import type { LiveEvent } from "../lib/events";

function fmt(v: number | null | undefined, unit: string, digits = 1): string {
  return v === null || v === undefined ? "–" : `${v.toFixed(digits)} ${unit}`;
}

/** Segments are cut at the publisher's keyframes, so their mean length is the
 * keyframe interval (for GOPs at least the target segment length). */
export function keyframeInterval(a: StreamAnalytics | null): number | null {
  const m = a?.media;
  if (!m || !m.segments || m.published_seconds === null) return null;
  return m.published_seconds / m.segments;
}

export function moderationAlerts(events: LiveEvent[]): LiveEvent[] {
  return events.filter((e) => e.type === "moderation_action" || e.type === "segment_dropped");
}

export function StatusPanel(props: {
  status: string;
  connection: string;
  viewers: number;
  analytics: StreamAnalytics | null;
  events: LiveEvent[];
  publishing: string | null;
}) {
  const m = props.analytics?.media;
  const alerts = moderationAlerts(props.events);
  const flagged = m?.moderation.flagged ?? 0;
  const items: [string, string, string][] = [
    ["status", "Status", props.status],
    ["publishing", "Input", props.publishing ?? "waiting for a publisher"],
    ["viewers", "Viewers", String(props.viewers)],
    ["fps", "Input fps", fmt(m?.input_fps, "fps")],
    ["bitrate", "Input bitrate", fmt(m?.input_bitrate_kbps, "kbps", 0)],
    ["keyframe", "Keyframe interval", fmt(keyframeInterval(props.analytics), "s")],
    ["segments", "Segments published", String(m?.segments ?? 0)],
    ["dropped", "Dropped segments", String(m?.dropped ?? 0)],
    ["latency", "Processing p95", fmt(m?.processing_latency_ms.p95, "ms", 0)],
    ["events", "Real-time", props.connection],
  ];
  return (
    <section className="status" aria-label="Stream status">
      <h3>Status</h3>
      <dl className="status-grid">
        {items.map(([key, label, value]) => (
          <div key={key} data-status={key}>
            <dt>{label}</dt>
            <dd>{value}</dd>
          </div>
        ))}
      </dl>
      <h4>Moderation alerts</h4>
      <ul className="alerts" data-testid="moderation-alerts">
        {flagged > 0 ? <li className="error">{flagged} segment(s) flagged by video moderation</li> : null}
        {alerts.map((a) => (
          <li key={`${a.id}-${a.type}`}>
            {a.type === "segment_dropped" ? "Segment dropped" : "Moderation"}:{" "}
            {String(a.data.reason ?? a.data.action ?? a.data.error ?? "")}
          </li>
        ))}
        {flagged === 0 && alerts.length === 0 ? <li className="muted">None.</li> : null}
      </ul>
    </section>
  );
}
