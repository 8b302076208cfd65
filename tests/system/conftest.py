"""One real system for the whole session: embedded Postgres, local Ray, Serve.

Everything is started by `cluster.launcher.System`, the same code `lumalive up`
runs; tests talk to it over HTTP as a client would.

After each module, the streams it left live are ended through the API
(`end_leftover_streams`): each live stream is a Ray actor process of its own, and a
fresh-clone run that kept them all had ~90 runnable processes at its end, taking
the CPU the later modules' encoders and browsers need.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from cluster.launcher import System
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from lumalive.store.users import create_named_user
from tests.utils.api import Person, free_port


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    data_dir = tmp_path_factory.mktemp("lumalive")
    settings = Settings(
        data_dir=data_dir,
        api_port=free_port(),
        dashboard_port=free_port(),
        rtmp_port=free_port(),
        database_url=None,
        ray_address=None,
        api_replicas=1,  # per-replica limits and caps are asserted; `up` picks by CPUs
        # slow refill so the rate-limit tests do not depend on timing
        reaction_rate_per_s=5.0,
        reaction_burst=20,
        # a small, fast HLS ladder (480p/360p) for the 2-core CI boxes
        media_max_height=480,
        x264_preset="ultrafast",
        # idle workers give their CPUs back sooner: tests that start their own media
        # actors (test_media_memory) wait for a free CPU
        media_pool_idle_s=15.0,
        webhook_allow_http=True,  # the tests' webhook receivers: plain http
        webhook_allow_private=True,  # ... on loopback
        webhook_retry_s=(0.2, 0.4, 0.4, 0.4),  # retried in a second, not minutes
    )
    system = System(settings)
    _start(system)
    _RUNNING.append(system)
    yield system
    _RUNNING.clear()
    system.stop(everything=True)  # as `lumalive down`: nothing of it outlives the session


_RUNNING: list[System] = []  # the session's system, once started


@pytest.fixture(scope="module", autouse=True)
def end_leftover_streams() -> Iterator[None]:
    """After the module (and its own fixtures): end every stream still live, as its
    owner would. Starts nothing: a module that never used the system leaves it alone."""
    yield
    if _RUNNING:
        _end_live_streams(_RUNNING[0].settings)


def _end_live_streams(settings: Settings) -> None:
    assert settings.database_url and settings.jwt_secret
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:  # the schema owner: every stream
        rows = conn.execute("SELECT id, user_id FROM live_streams WHERE status = 'live'")
        live = rows.fetchall()
    tokens = TokenService(settings.jwt_secret, settings.jwt_audience)

    def end(stream_id: uuid.UUID, owner: uuid.UUID) -> None:
        headers = {"Authorization": f"Bearer {tokens.issue(owner, 300)}"}
        for _ in range(10):  # best effort: an owner deleted or banned keeps theirs
            r = http.post(f"/api/live-streaming/end/{stream_id}", headers=headers)
            if r.status_code != 503:
                return
            time.sleep(1)

    with httpx.Client(base_url=settings.api_url, timeout=60) as http, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda row: end(*row), live))


def _start(system: System) -> None:
    """`System.start`'s steps, with Postgres (start and migrations) and Ray started at
    once: neither needs the other, and each takes seconds on a busy box. Serve, the
    ingest and the dispatcher then start in order, as `start` does."""
    with ThreadPoolExecutor(1) as pool:
        database = pool.submit(system.start_database)
        system.start_ray()
        database.result()
    system.deploy()
    system.start_media()
    system.start_webhooks()


@pytest.fixture(scope="session")
def settings(system: System) -> Settings:
    return system.settings


@pytest.fixture(scope="session")
def tokens(settings: Settings) -> TokenService:
    assert settings.jwt_secret
    return TokenService(settings.jwt_secret, settings.jwt_audience)


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings, pool_size=4)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
    async with httpx.AsyncClient(base_url=settings.api_url, timeout=60, limits=limits) as c:
        yield c


@pytest.fixture(scope="session")
def make_user(db: Database, tokens: TokenService) -> Callable[[str], Awaitable[Person]]:
    """Factory: a new user with a valid token."""

    async def make(prefix: str = "user") -> Person:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        async with db.acting(None) as conn:
            user_id = await create_named_user(conn, name)
        return Person(user_id, tokens.issue(user_id), name)

    return make


@pytest.fixture
def make_stream(client: httpx.AsyncClient) -> Callable[..., Awaitable[dict]]:
    """Factory: create (and optionally start) a stream owned by `owner`."""

    async def make(owner: Person, *, start: bool = False, **config: object) -> dict:
        body = {"title": "test stream", **config}
        r = await client.post("/api/live-streaming/create", json=body, headers=owner.auth)
        assert r.status_code == 201, r.text
        stream = r.json()
        if start:
            r = await client.post(f"/api/live-streaming/start/{stream['id']}", headers=owner.auth)
            assert r.status_code == 200, r.text
            stream = {**stream, **r.json()}
        return stream

    return make
