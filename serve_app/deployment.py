"""Ray Serve wrapper around the FastAPI app: logic stays in `create_app` and the
replica's pieces (`serve_app.replica`), this file only adds the Serve decorator and
builds the application graph.

Sizing (issue 12): `LUMALIVE_API_REPLICAS` unset (0) picks one replica per two CPUs
of the machine `lumalive up` runs on (at least one, at most eight): a replica is one
Python process and keeps about one core busy at its capacity, and the stream actors
and Postgres need the rest. Past `max_ongoing_requests` per replica Serve queues at
most `max_queued_requests` more and answers the rest 503 with Retry-After itself;
in front of that the app sheds plain requests past `LUMALIVE_API_MAX_INFLIGHT`
(`serve_app.admission`) with the JSON error shape.
"""

from __future__ import annotations

from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from actors import placement
from lumalive.settings import Settings
from serve_app.app import create_app
from serve_app.sizing import replica_count

__all__ = ["build_app", "MAX_QUEUED_REQUESTS"]

# Requests Serve's router holds for a deployment whose replicas are all full.
MAX_QUEUED_REQUESTS = 256


def build_app(settings: Settings) -> Application:
    """The bound Serve application for these settings (the composition root calls this)."""
    app = create_app(settings)

    @serve.deployment(
        name="LumaApi",
        num_replicas=replica_count(settings),
        max_ongoing_requests=settings.max_ongoing_requests,
        max_queued_requests=MAX_QUEUED_REQUESTS,
        backpressure_config=BackpressureConfig(status_code=503, retry_after_s=1),
        ray_actor_options=placement.api_options(settings),  # pinned to the edge if set
    )
    @serve.ingress(app)
    class LumaApi:
        """Serve replica; the app builds its pieces in-process on first request."""

    return LumaApi.bind()
