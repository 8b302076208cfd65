"""The `lumalive` command: up, down, token, grant-moderator, migrate, analytics, capacity."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

from cluster.processes import Port, PortInUseError, check_free
from lumalive.settings import Settings

__all__ = ["main"]


def _pid_file(settings: Settings) -> Path:
    return settings.data_dir / "lumalive.pid"


def _ready_file(settings: Settings) -> Path:
    """Written by `up` once everything (the ingest included) has started."""
    return settings.data_dir / "lumalive.ready"


def _print_urls(settings: Settings) -> None:
    print(f"LumaLive API      {settings.api_url}  (docs: {settings.api_url}/docs)")
    if not settings.ray_address:
        print(f"Ray dashboard     http://{settings.dashboard_host}:{settings.dashboard_port}")
    print(f"RTMP ingest       {settings.rtmp_url}")
    print(f"Data directory    {settings.data_dir}")


def _ports(settings: Settings) -> list[Port]:
    """What `up` will listen on (the dashboard only when it starts Ray itself)."""
    ports = [
        Port("API", settings.api_host, settings.api_port, "LUMALIVE_API_PORT"),
        Port("RTMP ingest", settings.rtmp_host, settings.rtmp_port, "LUMALIVE_RTMP_PORT"),
    ]
    if not settings.ray_address:
        ports.append(
            Port(
                "Ray dashboard",
                settings.dashboard_host,
                settings.dashboard_port,
                "LUMALIVE_DASHBOARD_PORT",
            )
        )
    return ports


def cmd_up(settings: Settings, detach: bool) -> int:
    try:
        check_free(_ports(settings))
    except PortInUseError as e:
        print(f"lumalive up: {e}", file=sys.stderr)
        return 2
    if detach:
        return _up_detached(settings)
    from cluster.launcher import System  # imports Ray; keep `lumalive --help` fast

    system = System(settings)
    stop = threading.Event()

    def on_signal() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())

    on_signal()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    _pid_file(settings).write_text(str(os.getpid()))
    _ready_file(settings).unlink(missing_ok=True)
    try:
        system.start_database()
        system.start_ray()
        # Again: `ray.init` installs a crash handler for SIGTERM that aborts the process,
        # which would skip the orderly stop below (and leave Ray's agents and Postgres).
        on_signal()
        system.deploy()
        system.start_media()
        system.start_webhooks()
        _ready_file(settings).write_text(str(os.getpid()))
        _print_urls(system.settings)
        print("Ready. Ctrl-C to stop.", flush=True)
        stop.wait()
        print("Stopping…", flush=True)
    finally:
        system.stop(everything=True)
        _ready_file(settings).unlink(missing_ok=True)
        _pid_file(settings).unlink(missing_ok=True)
    return 0


def _up_detached(settings: Settings) -> int:
    """Run `lumalive up` in its own session; return once the API answers."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = settings.data_dir / "lumalive.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.cli", "up"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"lumalive up exited with {proc.returncode}; see {log}", file=sys.stderr)
            return 1
        try:
            # Ours, and all of it: the child writes this file once the API and the
            # ingest are up (not some other server that took the port meanwhile).
            ready = _ready_file(settings)
            ours = ready.exists() and ready.read_text() == str(proc.pid)
            healthy = ours and httpx.get(f"{settings.api_url}/healthz", timeout=2).is_success
            if ours and healthy:
                _print_urls(settings)
                print(
                    f"Running in the background (pid {proc.pid}, log {log});"
                    " `lumalive down` stops it."
                )
                return 0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    print(f"API did not answer in time; see {log}", file=sys.stderr)
    return 1


def cmd_down(settings: Settings) -> int:
    path = _pid_file(settings)
    if not path.exists():
        print("lumalive is not running (no pid file)")
        return 0
    pid = int(path.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        print("lumalive was not running; removed a stale pid file")
        return 0
    for _ in range(240):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("stopped")
            return 0
        time.sleep(0.5)
    print(f"pid {pid} did not stop within 120 s", file=sys.stderr)
    return 1


def _with_database(settings: Settings):
    """Settings with a database: DATABASE_URL, else the embedded one (started if needed)."""
    from cluster.launcher import System

    system = System(settings)
    return system, system.start_database()


def cmd_token(settings: Settings, username: str, ttl: int) -> int:
    from lumalive.auth import TokenService
    from lumalive.db import Database
    from lumalive.store.users import create_named_user

    system, settings = _with_database(settings)

    async def make() -> str:
        db = Database(settings, pool_size=1)
        try:
            async with db.acting(None) as conn:
                user_id = await create_named_user(conn, username)
        finally:
            await db.dispose()
        assert settings.jwt_secret
        return TokenService(settings.jwt_secret, settings.jwt_audience).issue(user_id, ttl)

    try:
        print(asyncio.run(make()))
    finally:
        system.stop()
    return 0


def cmd_grant_moderator(settings: Settings, username: str, revoke: bool) -> int:
    """Make a user a platform moderator (or no longer), as the schema owner."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from lumalive.store import moderation

    system, settings = _with_database(settings)

    async def grant() -> str:
        engine = create_async_engine(settings.database_url or "")
        try:
            async with engine.begin() as conn:  # no acting user: an operator session
                return await moderation.grant_platform_moderator(conn, username, revoke)
        finally:
            await engine.dispose()

    try:
        outcome = asyncio.run(grant())
    finally:
        system.stop()
    if outcome == "no_such_user":
        print(f"no user named {username!r}", file=sys.stderr)
        return 1
    print(f"{username}: platform moderator {outcome}")
    return 0


def cmd_migrate(settings: Settings) -> int:
    system, _ = _with_database(settings)
    system.stop()
    print("migrations applied")
    return 0


def cmd_ingest(settings: Settings) -> int:
    """Start the RTMP ingest actor on an existing cluster, pinned to this node.

    For KubeRay, where `lumalive up` does not run: submit it as a Ray Job so it runs
    on the head, whose RTMP port the Service exposes. Idempotent.
    """
    import ray

    from actors import ingest_actor

    settings = settings.with_secret()
    if not settings.database_url:
        print("set DATABASE_URL: the ingest writes segments to Postgres", file=sys.stderr)
        return 2
    ray.init(address=settings.ray_address or "auto", namespace="lumalive", log_to_driver=False)
    ingest_actor.start(settings)
    print(f"ingest listening on {settings.rtmp_url}")
    return 0


def cmd_webhook(settings: Settings, args: argparse.Namespace) -> int:
    """Platform-wide webhook endpoints (every stream's events, and report.created), as
    the schema owner; or `dispatch`: start the dispatcher on an existing cluster."""
    if args.webhook_command == "dispatch":
        import ray

        from actors import webhook_dispatcher

        if not settings.app_url:
            print("set DATABASE_URL: the webhook queue is in Postgres", file=sys.stderr)
            return 2
        ray.init(address=settings.ray_address or "auto", namespace="lumalive", log_to_driver=False)
        webhook_dispatcher.start(settings)
        print("webhook dispatcher running")
        return 0
    import psycopg

    from lumalive import webhooks
    from lumalive.errors import Unprocessable
    from lumalive.store import webhooks as store

    system, settings = _with_database(settings)
    dsn = (settings.database_url or "").replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            if args.webhook_command == "add":
                events = sorted({e.strip() for e in args.events.split(",") if e.strip()})
                if not events or not webhooks.EVENT_TYPES.issuperset(events):
                    print(f"--events: some of {sorted(webhooks.EVENT_TYPES)}", file=sys.stderr)
                    return 2
                allow = settings.webhook_allow_http, settings.webhook_allow_private
                try:
                    asyncio.run(webhooks.check_url(args.url, webhooks.UrlPolicy(*allow)))
                except Unprocessable as e:
                    print(f"lumalive webhook add: {e.message}", file=sys.stderr)
                    return 2
                secret = webhooks.new_secret()
                print(f"{store.add_platform(cur, args.url, events, secret)}  secret {secret}")
            elif args.webhook_command == "list":
                for endpoint_id, url, events, created in store.list_platform(cur):
                    print(f"{endpoint_id}  {url}  {','.join(events)}  {created:%Y-%m-%d %H:%M}")
            elif not store.remove_platform(cur, args.id):
                print(f"no platform webhook {args.id}", file=sys.stderr)
                return 1
    finally:
        system.stop()
    return 0


def _add_capacity(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from cluster.capacity import DEFAULT_RATES, RATES_PATH

    cap = sub.add_parser(
        "capacity", help="cores and GPUs one stream of a tier needs; streams a cluster carries"
    )
    cap.add_argument("--tier", required=True, choices=list(DEFAULT_RATES))
    cap.add_argument("--ai", action="store_true", help="with AI enhancement (x2 into the top)")
    cap.add_argument("--fps", type=float, default=30.0, help="the stream's frame rate")
    cap.add_argument("--nodes", help="the cluster as COUNTxCPUS[:GPUS],... e.g. 3x16:1,2x8")
    cap.add_argument("--cpus", type=float, help="the cluster's CPU cores (instead of --nodes)")
    cap.add_argument("--gpus", type=float, default=0.0, help="... and GPUs")
    cap.add_argument("--rates", type=Path, default=RATES_PATH, help="bench/tiers.py's JSON")


def cmd_capacity(args: argparse.Namespace) -> int:
    """`lumalive capacity` (cluster.capacity): no database, no Ray."""
    from cluster import capacity

    try:
        if args.nodes:
            cluster: capacity.Cluster | None = capacity.parse_nodes(args.nodes)
        elif args.cpus is not None:
            cluster = capacity.Cluster(args.cpus, args.gpus, args.cpus)
        else:
            cluster = None
        if args.fps <= 0:
            raise ValueError("--fps must be positive")
    except ValueError as e:
        print(f"lumalive capacity: {e}", file=sys.stderr)
        return 2
    print(capacity.report(args.tier, args.fps, args.ai, cluster, args.rates))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lumalive", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start Postgres (embedded unless DATABASE_URL), Ray and the API")
    up.add_argument("--detach", action="store_true", help="return once the API answers")
    sub.add_parser("down", help="stop what `lumalive up --detach` started")
    tok = sub.add_parser("token", help="create the user if new and print an access token")
    tok.add_argument("username")
    tok.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    sub.add_parser("migrate", help="apply migrations to DATABASE_URL (or the embedded Postgres)")
    mod = sub.add_parser("grant-moderator", help="make a user a platform moderator")
    mod.add_argument("username")
    mod.add_argument("--revoke", action="store_true", help="no longer a platform moderator")
    sub.add_parser("ingest", help="start the RTMP ingest on an existing Ray cluster (RAY_ADDRESS)")
    hook = sub.add_parser("webhook", help="platform-wide webhook endpoints, and the dispatcher")
    hook_sub = hook.add_subparsers(dest="webhook_command", required=True)
    hook_add = hook_sub.add_parser("add", help="register an endpoint; prints its id and secret")
    hook_add.add_argument("url")
    hook_add.add_argument("--events", required=True, help="comma-separated, e.g. report.created")
    hook_sub.add_parser("list", help="the platform-wide endpoints")
    hook_sub.add_parser("remove", help="remove a platform-wide endpoint").add_argument(
        "id", type=uuid.UUID
    )
    hook_sub.add_parser("dispatch", help="start the dispatcher on an existing Ray cluster")
    ana = sub.add_parser("analytics", help="batch analytics (Ray Data) into rollup tables")
    ana_sub = ana.add_subparsers(dest="analytics_command", required=True)
    ana_run = ana_sub.add_parser("run", help="compute the daily rollups (idempotent)")
    ana_run.add_argument(
        "--since",
        default=None,
        metavar="DATE",
        help="recompute UTC days from this date on (YYYY-MM-DD); default all",
    )
    _add_capacity(sub)
    args = parser.parse_args(argv)
    if args.command == "capacity":
        return cmd_capacity(args)
    settings = Settings()
    if args.command == "up":
        return cmd_up(settings, args.detach)
    if args.command == "down":
        return cmd_down(settings)
    if args.command == "webhook":
        return cmd_webhook(settings, args)
    if args.command == "ingest":
        return cmd_ingest(settings)
    if args.command == "token":
        return cmd_token(settings, args.username, args.ttl)
    if args.command == "grant-moderator":
        return cmd_grant_moderator(settings, args.username, args.revoke)
    if args.command == "analytics":
        from cluster import analytics_job  # imports Ray Data; keep `lumalive --help` fast

        return analytics_job.main(["--since", args.since] if args.since else [], settings)
    return cmd_migrate(settings)


if __name__ == "__main__":
    sys.exit(main())
