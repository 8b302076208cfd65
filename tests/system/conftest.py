"""One real system for the whole session: embedded Postgres, local Ray, Serve.

Everything is started by `cluster.launcher.System`, the same code `lumalive up`
runs; tests talk to it over HTTP as a client would.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import httpx
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
    system.start()
    yield system
    system.stop(everything=True)  # as `lumalive down`: nothing of it outlives the session


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
