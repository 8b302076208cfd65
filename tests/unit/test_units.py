"""Fast tests of plain classes: no Ray, no database."""

from __future__ import annotations

import pytest

from actors.rate_limit import RateLimiter
from lumalive.errors import BadRequest, RateLimited
from lumalive.settings import Settings
from lumalive.store import cursor


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_burst_then_refill():
    clock = Clock()
    rl = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [rl.take("u") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.take("u")
    assert wait == pytest.approx(0.5)
    assert rl.take("other") == 0.0  # buckets are per key
    clock.t += 0.5
    assert rl.take("u") == 0.0
    clock.t += 100
    assert [rl.take("u") for _ in range(4)][-1] > 0  # never more than the burst


def test_cursor_round_trip_and_garbage():
    c = cursor.encode("2026-01-01T00:00:00+00:00", "abc")
    assert cursor.decode(c, 2) == ["2026-01-01T00:00:00+00:00", "abc"]
    for bad in ["", "!!!", cursor.encode("only-one"), "eyJ4Ijox"]:
        with pytest.raises(BadRequest):
            cursor.decode(bad, 2)


def test_errors_survive_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(RateLimited("slow down", 2.5)))
    assert (e.status_code, e.code, e.retry_after, e.message) == (
        429,
        "rate_limited",
        2.5,
        "slow down",
    )


def test_settings_normalise_dsn_and_make_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db:5432/x")
    s = Settings(data_dir=tmp_path)
    assert s.database_url == "postgresql+psycopg://u:p@db:5432/x"
    a = s.with_secret()
    b = Settings(data_dir=tmp_path).with_secret()
    assert a.jwt_secret == b.jwt_secret and len(a.jwt_secret) >= 32
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError):
        Settings(jwt_secret="short")


def test_chat_moderator_matches_the_shipped_model_and_flags_abuse():
    from profanity_check import predict_prob

    from models.moderation import ChatModerator

    mod = ChatModerator(threshold=0.8)
    messages = [
        "hello there, lovely stream",
        "you are a fucking idiot",
        "gg wp",
        "shit happens",
        "the quick brown fox",
        "🔥🔥🔥",
        "a" * 500,
    ]
    for m in messages:
        score, _ = mod.score(m)
        assert score == pytest.approx(float(predict_prob([m])[0]), abs=1e-12)
    assert mod.score("you are a fucking idiot")[1] is True
    assert mod.score("hello there, lovely stream")[1] is False


@pytest.mark.parametrize("scope_type", ["http", "websocket"])
def test_one_token_parser_for_requests_and_websockets(scope_type):
    from starlette.requests import HTTPConnection

    from lumalive.errors import Unauthorized
    from serve_app.deps import bearer_token

    def conn(headers=(), query=b""):
        raw = [(k.encode(), v.encode()) for k, v in headers]
        return HTTPConnection({"type": scope_type, "headers": raw, "query_string": query})

    assert bearer_token(conn([("authorization", "Bearer abc ")])) == "abc"
    assert bearer_token(conn(query=b"access_token=xyz")) == "xyz"
    assert bearer_token(conn([("authorization", "Bearer h")], b"access_token=q")) == "h"
    assert bearer_token(conn()) is None
    with pytest.raises(Unauthorized):
        bearer_token(conn([("authorization", "Basic abc")]))
