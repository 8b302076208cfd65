// A stream in a list: its poster (refreshed from the newest segment), title, viewers.
import { useEffect, useState } from "react";

import type { LiveStream } from "../api/types";
import { Link } from "../lib/router";
import { posterUrl } from "../lib/webapi";

const POSTER_REFRESH_MS = 10_000;

export function StreamCard(props: { stream: LiveStream; to?: string }) {
  const s = props.stream;
  const [tick, setTick] = useState(() => Date.now());
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    const t = window.setInterval(() => {
      setFailed(false);
      setTick(Date.now());
    }, POSTER_REFRESH_MS);
    return () => window.clearInterval(t);
  }, []);
  return (
    <Link to={props.to ?? `/watch/${s.id}`} className="card">
      <div className="thumb">
        {failed ? (
          <div className="thumb-empty">{s.status === "live" ? "starting…" : s.status}</div>
        ) : (
          <img src={posterUrl(s.id, Math.floor(tick / POSTER_REFRESH_MS))} alt="" onError={() => setFailed(true)} />
        )}
        {s.status === "live" ? <span className="badge live">LIVE</span> : null}
        <span className="badge quality">{s.quality}</span>
      </div>
      <div className="card-body" data-stream-id={s.id}>
        <b className="card-title">{s.title}</b>
        <span className="muted">
          {s.category} · {s.viewers} watching
          {s.privacy !== "public" ? ` · ${s.privacy}` : ""}
        </span>
      </div>
    </Link>
  );
}
