"""Fast tests of the hardening pieces: database faults mapped to 503/422/409, forged
cursors, unstorable text, rate limits, quotas' refusals and realtime connection caps."""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pydantic
import pytest
from fastapi import FastAPI
from sqlalchemy import exc as sa

from actors.rate_limit import RateLimiter
from lumalive.db import RETRY_AFTER_S, as_unavailable
from lumalive.errors import BadRequest, RateLimited, Unavailable
from lumalive.settings import Settings
from lumalive.store import cursor
from serve_app import errors
from serve_app.limits import ConnectionLimits, RequestLimits
from serve_app.schemas import ChatIn, ReportIn, StreamConfig, storable


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def wrapped(driver_error: Exception, kind: type[sa.DBAPIError] = sa.OperationalError) -> Any:
    """A driver error as SQLAlchemy raises it."""
    return kind("SELECT 1", {"key": "live_secret"}, driver_error, hide_parameters=True)


# -- database faults ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (wrapped(psycopg.OperationalError("connection refused")), "database_unavailable"),
        (psycopg.OperationalError("server closed the connection"), "database_unavailable"),
        (wrapped(psycopg.InterfaceError("connection is closed"), sa.InterfaceError), None),
        (wrapped(psycopg.errors.QueryCanceled("statement timeout")), "database_timeout"),
        (sa.TimeoutError("QueuePool limit reached"), "database_busy"),
    ],
)
def test_database_faults_are_503_with_retry_after(error, code):
    fault = as_unavailable(error)
    assert fault is not None and fault.status_code == 503
    assert fault.code == (code or "database_unavailable")
    assert fault.retry_after == RETRY_AFTER_S


@pytest.mark.parametrize(
    "error",
    [
        wrapped(psycopg.errors.UniqueViolation("duplicate"), sa.IntegrityError),
        wrapped(psycopg.DataError("NUL"), sa.DataError),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_unavailability(error):
    assert as_unavailable(error) is None


def test_hidden_parameters_stay_out_of_the_message():
    assert "live_secret" not in str(wrapped(psycopg.OperationalError("down")))


class ActorError(Exception):
    """Like Ray's RayTaskError: the actor's own exception rides along as `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("actor failed")
        self.cause = cause


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (wrapped(psycopg.OperationalError("down")), 503, "database_unavailable"),
        (ActorError(wrapped(psycopg.OperationalError("down"))), 503, "database_unavailable"),
        (wrapped(psycopg.DataError("NUL byte"), sa.DataError), 422, "invalid_value"),
        (wrapped(psycopg.errors.ForeignKeyViolation("gone"), sa.IntegrityError), 409, "conflict"),
        (RuntimeError("a bug"), 500, "internal_error"),
    ],
)
async def test_the_app_maps_database_errors_in_one_place(error, status, code):
    app = FastAPI()
    errors.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/boom")
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert ("retry-after" in r.headers) == (status == 503)
    if status == 503:
        assert int(r.headers["retry-after"]) == RETRY_AFTER_S


def test_unavailable_survives_pickling_with_its_retry_after():
    e = pickle.loads(pickle.dumps(Unavailable("down", "database_unavailable", 5.0)))
    assert (e.status_code, e.code, e.retry_after) == (503, "database_unavailable", 5.0)
    assert Unavailable("full", "too_many_subscribers").retry_after is None


# -- cursors and text -----------------------------------------------------------


def test_time_id_cursor_round_trip():
    at, sid = datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4()
    assert cursor.decode_time_id(cursor.encode(at.isoformat(), sid)) == (at, sid)


@pytest.mark.parametrize(
    "key",
    [
        ("yesterday", str(uuid.uuid4())),
        ("2026-01-01T00:00:00+00:00", "not-a-uuid"),
        ("2026-01-01T00:00:00", str(uuid.uuid4())),  # no time zone
        ("2026-13-45T00:00:00+00:00", str(uuid.uuid4())),
        ("2026-01-01T00:00:00+00:00\x00", str(uuid.uuid4())),
        ("2026-01-01T00:00:00+00:00", str(uuid.uuid4()) + "\x00"),
    ],
)
def test_forged_but_well_formed_cursors_are_bad_requests(key):
    with pytest.raises(BadRequest) as caught:
        cursor.decode_time_id(cursor.encode(*key))
    assert caught.value.code == "invalid_cursor"


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (StreamConfig, {"title": "a\x00b"}),
        (StreamConfig, {"title": "t", "description": "\x00"}),
        (StreamConfig, {"title": "t", "category": "c\x00"}),
        (StreamConfig, {"title": "t", "tags": ["ok", "t\x00"]}),
        (StreamConfig, {"title": "t", "aiFeatures": {"de\x00noise": True}}),
        (ChatIn, {"message": "hi\x00"}),
        (ReportIn, {"reason": "spam", "details": "\x00"}),
    ],
)
def test_nul_characters_are_validation_errors(model, fields):
    with pytest.raises(pydantic.ValidationError):
        model(**fields)


def test_storable_text_passes_and_surrogates_do_not():
    assert storable(["ok", {"k": "v"}, "ünïcödé 🔥"]) == ["ok", {"k": "v"}, "ünïcödé 🔥"]
    with pytest.raises(ValueError):
        storable("\ud800")


# -- rate limits and caps -------------------------------------------------------


def test_rate_limiter_keeps_at_most_max_keys():
    clock = Clock()
    rl = RateLimiter(rate=1.0, burst=2, clock=clock, max_keys=3)
    for key in "abc":
        rl.take(key)
    clock.t = 0.5  # none has refilled yet: all three still matter
    rl.take("d")
    assert len(rl) == 1  # so all were dropped, and d is the only one left
    clock.t = 2.0  # d has refilled
    rl.take("a")
    rl.take("b")
    rl.take("b")
    rl.take("c")  # over the cap: the full bucket (d) goes, those in use stay
    assert len(rl) == 3
    assert rl.take("b") > 0  # b's spent bucket survived the pruning


def limits(clock: Clock, **overrides: Any) -> RequestLimits:
    return RequestLimits(Settings(_env_file=None, **overrides), clock)  # type: ignore[call-arg]


def test_request_limits_refuse_with_retry_after_per_action_and_user():
    clock = Clock()
    rl = limits(clock, join_rate_per_s=0.5, join_burst=2)
    me, other = uuid.uuid4(), uuid.uuid4()
    rl.take("join", me)
    rl.take("join", me)
    with pytest.raises(RateLimited) as caught:
        rl.take("join", me)
    assert caught.value.code == "rate_limited" and caught.value.retry_after == pytest.approx(2.0)
    rl.take("join", other)  # per user
    rl.take("report", me)  # per action
    clock.t += 2
    rl.take("join", me)


def test_create_and_start_have_buckets_of_their_own():
    clock = Clock()
    rl = limits(clock, stream_burst=1)
    me = uuid.uuid4()
    rl.take("create", me)
    rl.take("start", me)
    with pytest.raises(RateLimited):
        rl.take("create", me)


def test_connection_caps_per_user_and_per_anonymous_ip():
    caps = ConnectionLimits(per_user=2, per_ip=1)
    me = uuid.uuid4()
    close = [caps.open(me, "10.0.0.1"), caps.open(me, "10.0.0.2")]
    with pytest.raises(RateLimited) as caught:
        caps.open(me, "10.0.0.3")
    assert caught.value.code == "too_many_connections" and caught.value.status_code == 429
    caps.open(None, "10.0.0.1")  # anonymous callers count by address, apart from users
    with pytest.raises(RateLimited):
        caps.open(None, "10.0.0.1")
    caps.open(None, "10.0.0.9")
    close[0]()
    close[0]()  # closing twice counts once
    assert caps.held(me) == 1
    caps.open(me, None)
    with pytest.raises(RateLimited):
        caps.open(me, None)


def test_a_cap_of_zero_is_no_cap():
    caps = ConnectionLimits(per_user=0, per_ip=0)
    user = uuid.uuid4()
    for _ in range(500):
        caps.open(user, "10.0.0.1")
        caps.open(None, "10.0.0.1")
    assert caps.held(user) == 500 and caps.held(None, "10.0.0.1") == 500


def test_rate_limit_dependencies_survive_pickling_to_a_replica():
    """Serve pickles the app; the dependency must still name the user and the replica."""
    from typing import get_args

    import cloudpickle
    from fastapi.dependencies.utils import get_typed_signature
    from fastapi.params import Depends

    from serve_app.deps import rate_limited

    copy = pickle.loads(cloudpickle.dumps(rate_limited("join")))
    params = get_typed_signature(copy.dependency).parameters.values()
    assert [p.name for p in params] == ["user", "replica"]
    assert all(isinstance(get_args(p.annotation)[1], Depends) for p in params)


def test_the_openapi_document_builds():
    from serve_app.app import create_app

    settings = Settings(_env_file=None, database_url="postgresql://x@db/x", jwt_secret="s" * 40)  # type: ignore[call-arg]
    paths = create_app(settings).openapi()["paths"]
    assert {"/healthz", "/api/live-streaming/{stream_id}/events/stream"} <= set(paths)
