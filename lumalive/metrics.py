"""Operator metrics, as Ray custom metrics (`ray.util.metrics`).

Every Ray worker reports its own series (Ray adds a `WorkerId` label), and each
Ray node serves them in Prometheus format on its metrics export port; the Ray
dashboard's Metrics tab charts them once Prometheus/Grafana are attached.
Ray prefixes every name with `ray_`, so `lumalive_live_streams` is scraped as
`ray_lumalive_live_streams`. Sum over workers for platform totals:

    sum(ray_lumalive_live_streams)                    live streams (one actor reports 1 each)
    sum(ray_lumalive_stream_viewers)                  viewers watching now
    sum(rate(ray_lumalive_chat_messages_total[1m]))   chat messages/s (moderated ones included)
    sum(rate(ray_lumalive_moderated_messages_total[5m]))
    histogram_quantile(0.99, sum by (le, route) (rate(ray_lumalive_api_latency_ms_bucket[5m])))
    histogram_quantile(0.99, sum by (le) (rate(ray_lumalive_fanout_lag_ms_bucket[5m])))
    sum(ray_lumalive_realtime_subscribers)            open SSE/WebSocket subscriptions

Outside a Ray worker (plain uvicorn, unit tests) every metric is a no-op, so
callers never need to ask whether Ray is there.
"""

from __future__ import annotations

from functools import cache
from typing import Any

__all__ = [
    "live_streams",
    "stream_viewers",
    "chat_messages",
    "moderated_messages",
    "api_latency_ms",
    "fanout_lag_ms",
    "realtime_subscribers",
    "fanout_dropped",
    "LATENCY_BOUNDARIES_MS",
]

LATENCY_BOUNDARIES_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]


class _Noop:
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...
    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...


def _make(
    kind: str,
    name: str,
    description: str,
    tag_keys: tuple[str, ...] = (),
    boundaries: list[float] | None = None,
) -> Any:
    import ray

    if not ray.is_initialized():
        return _Noop()
    from ray.util import metrics

    if kind == "counter":
        return metrics.Counter(name, description, tag_keys=tag_keys)
    if kind == "gauge":
        return metrics.Gauge(name, description, tag_keys=tag_keys)
    return metrics.Histogram(
        name, description, boundaries=boundaries or LATENCY_BOUNDARIES_MS, tag_keys=tag_keys
    )


@cache
def live_streams() -> Any:
    """Gauge set by each stream actor: 1 while its stream is live, else 0."""
    return _make("gauge", "lumalive_live_streams", "Live streams (1 per live stream actor).")


@cache
def stream_viewers() -> Any:
    """Gauge set by each stream actor: its current viewers."""
    return _make("gauge", "lumalive_stream_viewers", "Viewers currently watching, per actor.")


@cache
def chat_messages() -> Any:
    return _make("counter", "lumalive_chat_messages", "Chat messages committed.")


@cache
def moderated_messages() -> Any:
    return _make("counter", "lumalive_moderated_messages", "Chat messages hidden by moderation.")


@cache
def api_latency_ms() -> Any:
    """Time to the response's first byte, by route template, method and status."""
    return _make(
        "histogram",
        "lumalive_api_latency_ms",
        "API latency to response start (ms).",
        ("route", "method", "status"),
    )


@cache
def fanout_lag_ms() -> Any:
    """From an event's created_at (its transaction's start) to its hand-off to this
    replica's subscribers: commit, NOTIFY, and the replica's fetch."""
    return _make(
        "histogram",
        "lumalive_fanout_lag_ms",
        "Event created to handed to subscribers on an API replica (ms).",
    )


@cache
def realtime_subscribers() -> Any:
    return _make(
        "gauge",
        "lumalive_realtime_subscribers",
        "Open real-time subscriptions on an API replica.",
        ("transport",),
    )


@cache
def fanout_dropped() -> Any:
    return _make(
        "counter",
        "lumalive_fanout_dropped_subscribers",
        "Subscribers disconnected for falling too far behind (they reconnect and replay).",
    )
