"""The same FastAPI app under plain uvicorn, without Ray Serve: the load benchmark's
baseline (`bench/api_load.py`), so the difference between the two is what Serve costs.

It joins an existing Ray cluster (`RAY_ADDRESS`, e.g. the GCS address of a running
`lumalive up`) because the stream actors still live there, and uses the same
`DATABASE_URL` and JWT secret; host and port are `LUMALIVE_API_HOST` / `_PORT`.

    RAY_ADDRESS=127.0.0.1:6379 DATABASE_URL=... LUMALIVE_API_PORT=8001 \\
        python -m serve_app.standalone
"""

from __future__ import annotations

import ray
import uvicorn

from lumalive.settings import Settings
from serve_app.app import create_app

__all__ = ["main"]


def main() -> None:
    settings = Settings().with_secret()
    if not settings.database_url:
        raise SystemExit("DATABASE_URL must point at the system's Postgres")
    # The actors' namespace is given explicitly by actors.stream_actor; this one only
    # names the driver. log_to_driver=False: actor logs stay in Ray's log files.
    ray.init(address=settings.ray_address or "auto", namespace="lumalive", log_to_driver=False)
    # No access log: Serve's per-request logging is part of what the benchmark measures
    # on the Serve side, plain uvicorn is the minimal server.
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
