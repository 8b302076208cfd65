"""Ray Serve wrapper around the FastAPI app: logic stays in `create_app` and the
replica's pieces (`serve_app.replica`), this file only adds the Serve decorator and
builds the application graph."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from lumalive.settings import Settings
from serve_app.app import create_app

__all__ = ["build_app"]


def build_app(settings: Settings) -> Application:
    """The bound Serve application for these settings (the composition root calls this)."""
    app = create_app(settings)

    @serve.deployment(
        name="LumaApi",
        num_replicas=settings.api_replicas,
        max_ongoing_requests=settings.max_ongoing_requests,
        ray_actor_options={"num_cpus": 0},
    )
    @serve.ingress(app)
    class LumaApi:
        """Serve replica; the app builds its pieces in-process on first request."""

    return LumaApi.bind()
