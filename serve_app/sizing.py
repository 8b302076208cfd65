"""How many API replicas `lumalive up` runs on this machine (issue 12).

`LUMALIVE_API_REPLICAS` unset (0) picks one replica per two CPUs, at least one and
at most eight: a replica is one Python process that keeps about one core busy at its
capacity, and the stream actors and Postgres need the rest.
"""

from __future__ import annotations

import os

from lumalive.settings import Settings

__all__ = ["replica_count"]


def replica_count(settings: Settings, cpus: int | None = None) -> int:
    """`settings.api_replicas`, or for 0 one per two CPUs (1 to 8)."""
    if settings.api_replicas:
        return settings.api_replicas
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(8, cpus // 2))
