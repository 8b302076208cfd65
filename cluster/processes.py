"""What `lumalive up` started must be gone after `lumalive down`: ports and processes.

Why this exists: `ray.shutdown()` stops the raylet and GCS it started, but some of
their helpers (the dashboard agent, the runtime-env agent) notice only later or not at
all, and `pg_ctl`-started Postgres is not our child. So `up` checks its ports are free
before it starts anything, notes its descendants before shutting Ray down, and reaps
whatever of them is still alive afterwards.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

__all__ = ["PortInUseError", "Port", "check_free", "descendants", "reap"]


class PortInUseError(RuntimeError):
    """A port `up` needs is taken (another LumaLive, or anything else)."""


@dataclass(frozen=True)
class Port:
    what: str  # "API", "RTMP ingest", ...
    host: str
    port: int
    setting: str  # the variable that moves it


def check_free(ports: Iterable[Port]) -> None:
    """Raise `PortInUseError` naming the first port that cannot be bound."""
    for p in ports:
        if p.port == 0:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((p.host, p.port))
            except OSError as e:
                raise PortInUseError(
                    f"the {p.what} port {p.host}:{p.port} is in use ({e.strerror}): another"
                    f" LumaLive (`lumalive down` stops it) or another program; or set {p.setting}"
                ) from None


def descendants() -> list[psutil.Process]:
    """This process's children, grandchildren, ... as they are now."""
    return psutil.Process().children(recursive=True)


def reap(processes: Iterable[psutil.Process], timeout_s: float = 10.0) -> list[int]:
    """Terminate those still alive, wait `timeout_s`, kill the rest; the pids it had to
    stop. A pid reused by an unrelated process is left alone (psutil checks the
    creation time)."""
    alive = [p for p in processes if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, stubborn = psutil.wait_procs(alive, timeout=timeout_s)
    for p in stubborn:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(stubborn, timeout=timeout_s)
    return [p.pid for p in alive]
