"""Batch analytics: rollups per stream and day, and per category, quality tier and day.

    lumalive analytics run [--since YYYY-MM-DD]
    ray job submit -- python -m cluster.analytics_job [--since YYYY-MM-DD]

An operator job: it reads Postgres as the database's owner (DATABASE_URL, or
the embedded Postgres), not as the RLS-bound app role, because it must see
every stream. Ray Data reads one table of activity (`ray.data.read_sql`) and
computes the daily rollups of each stream in parallel (grouped by stream); the
driver adds those up per category and tier and writes everything in a single
transaction, so readers never see half a run. Days are UTC dates; `--since`
recomputes only days from that date on.

Definitions (per stream and day; category rows add them up, except unique
viewers, which are distinct users across the category's streams):
- live days: from the day it started to the day it ended (today if still live)
- viewer_sessions, unique_viewers: viewings that joined that day, and their users
- watch_seconds: watch_duration of those viewings that have ended (a viewing
  counts on the day it joined; ending a stream ends every viewing)
- peak_viewers: most viewings open at one instant of the day
  (open at t: joined_at <= t < left_at, or not left yet)
- chat_messages (moderated ones included), moderated_messages, reactions: sent that day
- engagement_rate: unique viewers of the day who chatted or reacted that day / unique viewers

Idempotent: rows are upserted and only touched when a value changed, so a
second run over the same data leaves every row as it was.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumalive.settings import Settings
from lumalive.store import rollups

__all__ = ["run", "main", "ACTIVITY_SQL"]

_EPOCH = date(1970, 1, 1)
_DAY_S = 86_400

# Everything the rollups need, one row per stream, viewing, chat message or reaction.
# %(since)s is an epoch; rows that cannot touch a day on or after it are left out
# (viewings still count towards the concurrency of later days while open).
ACTIVITY_SQL = """
WITH s AS (
    SELECT id, user_id, category, quality, started_at, ended_at FROM live_streams
    WHERE started_at IS NOT NULL
      AND (ended_at IS NULL OR ended_at >= to_timestamp(%(since)s)))
SELECT s.id::text AS stream_id, s.user_id::text AS owner, s.category, s.quality,
       'stream' AS kind, NULL::text AS user_id,
       extract(epoch FROM s.started_at)::float8 AS t0,
       extract(epoch FROM s.ended_at)::float8 AS t1, NULL::float8 AS value
  FROM s
UNION ALL
SELECT s.id::text, s.user_id::text, s.category, s.quality, 'view', v.user_id::text,
       extract(epoch FROM v.joined_at)::float8, extract(epoch FROM v.left_at)::float8,
       v.watch_duration::float8
  FROM live_stream_viewers v JOIN s ON s.id = v.stream_id
 WHERE v.left_at IS NULL OR v.left_at >= to_timestamp(%(since)s)
UNION ALL
SELECT s.id::text, s.user_id::text, s.category, s.quality, 'chat', c.user_id::text,
       extract(epoch FROM c.created_at)::float8, NULL, c.is_moderated::int::float8
  FROM live_stream_chat c JOIN s ON s.id = c.stream_id
 WHERE c.created_at >= to_timestamp(%(since)s)
UNION ALL
SELECT s.id::text, s.user_id::text, s.category, s.quality, 'reaction', r.user_id::text,
       extract(epoch FROM r.created_at)::float8, NULL, NULL
  FROM live_stream_reactions r JOIN s ON s.id = r.stream_id
 WHERE r.created_at >= to_timestamp(%(since)s)
"""


class _Connect:
    """A picklable DB-API connection factory for Ray Data's read tasks."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __call__(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn)


def _dsn(settings: Settings) -> str:
    assert settings.database_url, "the analytics job needs a database"
    return settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def _day_numbers(t: pd.Series) -> np.ndarray:
    return np.floor(pd.to_numeric(t, errors="coerce").to_numpy(dtype=float) / _DAY_S)


def _as_date(day_number: int) -> date:
    return _EPOCH + timedelta(days=int(day_number))


def _live_days(streams: pd.DataFrame, first: int, last: int) -> list[tuple[int, int]]:
    """(first day, last day) each stream was live, clipped to [first, last]."""
    out = []
    for t0, t1 in zip(_day_numbers(streams["t0"]), _day_numbers(streams["t1"]), strict=True):
        end = last if np.isnan(t1) else min(int(t1), last)
        out.append((max(int(t0), first), end))
    return out


def _peaks(views: pd.DataFrame, days: list[int]) -> dict[int, int]:
    """Most viewings open at one instant of each day (see the module docstring)."""
    joins = np.sort(pd.to_numeric(views["t0"], errors="coerce").to_numpy(dtype=float))
    leaves = pd.to_numeric(views["t1"], errors="coerce").to_numpy(dtype=float)
    leaves = np.sort(leaves[~np.isnan(leaves)])

    def open_at(t: np.ndarray) -> np.ndarray:
        return np.searchsorted(joins, t, side="right") - np.searchsorted(leaves, t, side="right")

    peaks = {}
    for d in days:
        start, end = d * _DAY_S, (d + 1) * _DAY_S
        instants = np.concatenate(([start], joins[(joins >= start) & (joins < end)]))
        peaks[d] = int(open_at(instants).max())
    return peaks


def stream_days(group: pd.DataFrame, first_day: int, last_day: int) -> pd.DataFrame:
    """Ray Data map_groups: all activity rows of one stream -> its daily rollups."""
    meta = group[group["kind"] == "stream"]
    if meta.empty:
        return pd.DataFrame(columns=[*rollups.STREAM_DAY_COLUMNS, "viewer_ids"])
    ((lo, hi),) = _live_days(meta.iloc[:1], first_day, last_day)
    group = group.assign(day=_day_numbers(group["t0"]))
    views = group[group["kind"] == "view"]
    acts = group[
        (group["kind"] != "stream") & (group["day"] >= first_day) & (group["day"] <= last_day)
    ]
    days = sorted(set(range(lo, hi + 1)) | {int(d) for d in acts["day"]})
    peaks = _peaks(views, days)
    head = meta.iloc[0]
    out = []
    for d in days:
        vd = views[views["day"] == d]
        chat = group[(group["kind"] == "chat") & (group["day"] == d)]
        reacts = group[(group["kind"] == "reaction") & (group["day"] == d)]
        viewers = set(vd["user_id"])
        engaged = viewers & (set(chat["user_id"]) | set(reacts["user_id"]))
        out.append(
            {
                "stream_id": head["stream_id"],
                "day": _as_date(d),
                "user_id": head["owner"],
                "category": head["category"],
                "quality": head["quality"],
                "watch_seconds": int(pd.to_numeric(vd["value"], errors="coerce").fillna(0).sum()),
                "viewer_sessions": len(vd),
                "unique_viewers": len(viewers),
                "peak_viewers": peaks[d],
                "engaged_viewers": len(engaged),
                "engagement_rate": len(engaged) / len(viewers) if viewers else 0.0,
                "chat_messages": len(chat),
                "moderated_messages": int(
                    pd.to_numeric(chat["value"], errors="coerce").fillna(0).sum()
                ),
                "reactions": len(reacts),
                "viewer_ids": ",".join(sorted(viewers)),  # for the category rollup; not stored
            }
        )
    return pd.DataFrame(out, columns=[*rollups.STREAM_DAY_COLUMNS, "viewer_ids"])


def category_days(stream_rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Per day, category and tier, from the streams' daily rows (a small reduce on the
    driver). A stream has a row for every day it was live, so counting rows counts
    live streams; unique viewers are the union of the streams' viewer sets."""
    out = []
    for (day, category, quality), g in stream_rows.groupby(
        ["day", "category", "quality"], sort=True
    ):
        viewers = {u for ids in g["viewer_ids"] for u in ids.split(",") if u}
        out.append(
            {
                "day": day,
                "category": category,
                "quality": quality,
                "streams": len(g),
                "viewer_sessions": int(g["viewer_sessions"].sum()),
                "unique_viewers": len(viewers),
                "watch_seconds": int(g["watch_seconds"].sum()),
                "chat_messages": int(g["chat_messages"].sum()),
                "reactions": int(g["reactions"].sum()),
            }
        )
    return out


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ray Data rows -> plain Python values for psycopg."""
    out = []
    for r in rows:
        rec = {}
        for k, v in r.items():
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, pd.Timestamp | datetime):
                v = v.date()
            rec[k] = v
        out.append(rec)
    return out


def run(settings: Settings, since: date | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Compute and store the rollups for days from `since` (default: all) to today.
    Needs a connected Ray (the callers below connect it)."""
    import psycopg
    import ray

    assert ray.is_initialized(), "connect Ray first (ray.init)"
    started = time.monotonic()
    today = datetime.now(UTC).date()
    first_day = (since - _EPOCH).days if since else 0
    last_day = (today - _EPOCH).days
    since_epoch = float(first_day * _DAY_S)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # one bar of our own below, not one per operator
    days_args = {"first_day": first_day, "last_day": last_day}
    # Ray Data's default of 200 shuffle partitions is for big clusters; rollups are
    # small, so one partition per CPU is plenty (and far quicker on a small node).
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)))

    steps = tqdm(total=3, desc="analytics", unit="step", disable=not progress)
    steps.set_postfix_str("reading and rolling up per stream and day")
    activity = ray.data.read_sql(
        ACTIVITY_SQL, _Connect(_dsn(settings)), sql_params={"since": since_epoch}
    )
    per_stream = activity.groupby("stream_id", num_partitions=partitions)
    stream_rows = _records(
        per_stream.map_groups(stream_days, batch_format="pandas", fn_kwargs=days_args).take_all()
    )  # type: ignore[arg-type]
    steps.update()
    steps.set_postfix_str("per category, tier and day")
    category_rows = category_days(pd.DataFrame(stream_rows)) if stream_rows else []
    steps.update()
    steps.set_postfix_str("writing")
    with psycopg.connect(_dsn(settings)) as conn, conn.cursor() as cur:
        for table, rows in (
            ("stream_daily_rollups", stream_rows),
            ("category_daily_rollups", category_rows),
        ):
            for i in range(0, len(rows), 500):
                rollups.upsert(cur, table, rows[i : i + 500])
        conn.commit()
    steps.update()
    steps.close()
    return {
        "since": since,
        "until": today,
        "stream_days": len(stream_rows),
        "category_days": len(category_rows),
        "seconds": round(time.monotonic() - started, 2),
    }


def connect_ray(settings: Settings) -> bool:
    """Join RAY_ADDRESS (set for Ray Jobs too), else start a local Ray; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if settings.ray_address:
        ray.init(address=settings.ray_address, namespace="lumalive")
        return False
    ray.init(namespace="lumalive", include_dashboard=False)
    return True


def main(argv: list[str] | None = None, settings: Settings | None = None) -> int:
    """`python -m cluster.analytics_job [--since DATE]`; `lumalive analytics run` runs it too."""
    parser = argparse.ArgumentParser(
        prog="lumalive analytics run", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--since",
        type=date.fromisoformat,
        default=None,
        help="recompute days from this UTC date on (YYYY-MM-DD); default all",
    )
    args = parser.parse_args(argv)
    import ray

    from cluster.launcher import System

    system = System(settings or Settings())
    settings = system.start_database()  # DATABASE_URL, or the embedded Postgres; migrated
    connect_ray(settings)
    try:
        result = run(settings, args.since)
    finally:
        # Disconnect (or stop the Ray we started) before System.stop(), which
        # would otherwise take a connected Ray for its own and delete the API.
        ray.shutdown()
        system.stop()
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
