"""Webhooks end to end: the API, the triggers that enqueue in Postgres, the dispatcher
actor, and a real HTTP receiver that this module runs on loopback (the session allows
http and private addresses, and retries within a second: see conftest)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import ray
from sqlalchemy import exc, text

from actors import webhook_dispatcher
from lumalive.db import set_actor
from lumalive.store import webhooks as webhook_store
from tests.utils.api import BASE, Person, assert_error
from tests.utils.cli import run_cli

STARTED, ENDED = "stream.started", "stream.ended"


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers each path by its plan: the
    statuses of its first requests in order, then 200."""

    port: int = 0
    plans: dict[str, list[int]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str, *, fail_first: int = 0) -> str:
        self.plans[path] = [500] * fail_first
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            plan = self.plans.get(path, [])
            status = plan.pop(0) if plan else 200
            self.hits.append(Hit(path, headers, body, status, time.time()))
        return status

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = rec.answer(self.path, headers, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


def _path() -> str:
    return f"/hook/{uuid.uuid4().hex}"


async def _register(client, owner: Person, url: str, events: list[str]) -> dict[str, Any]:
    r = await client.post("/api/webhooks", json={"url": url, "events": events}, headers=owner.auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _eventually(check, timeout_s: float = 30.0):
    """`check()`'s first truthy answer, polled; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _signed_correctly(secret: str, hit: Hit) -> bool:
    """The Standard Webhooks check, by hand: base64 HMAC-SHA256 of id.timestamp.body."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{hit.headers['webhook-id']}.{hit.headers['webhook-timestamp']}.".encode() + hit.body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, hit.headers["webhook-signature"])


async def _deliveries(client, owner: Person, hook_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"/api/webhooks/{hook_id}/deliveries", headers=owner.auth)
    assert r.status_code == 200, r.text
    return list(r.json()["deliveries"])


async def test_a_receiver_down_for_two_attempts_gets_exactly_one_accepted_delivery(
    client, make_user, make_stream, receiver
):
    owner = await make_user("hook-owner")
    path = _path()
    hook = await _register(client, owner, receiver.url(path, fail_first=2), [STARTED])
    stream = await make_stream(owner, start=True)

    async def delivered():
        rows = await _deliveries(client, owner, hook["id"])
        return rows if rows and rows[0]["status"] == "delivered" else None

    [row] = await _eventually(delivered)
    hits = receiver.at(path)
    assert [h.answered for h in hits] == [500, 500, 200]  # exactly one accepted
    assert row["attempts"] == 3 and row["last_status_code"] == 200 and row["last_error"] is None
    assert row["event_type"] == STARTED and row["delivered_at"] is not None
    # Every attempt is the same message (one webhook-id), signed anew, and verifies.
    assert {h.headers["webhook-id"] for h in hits} == {row["event_id"]}
    for h in hits:
        assert _signed_correctly(hook["secret"], h)
        assert abs(int(h.headers["webhook-timestamp"]) - h.at) < 5
        assert h.headers["content-type"] == "application/json"
    assert not _signed_correctly("whsec_" + base64.b64encode(b"x" * 24).decode(), hits[-1])
    body = hits[-1].json
    assert body["type"] == STARTED and body["timestamp"]
    assert body["data"]["streamId"] == stream["id"]
    assert body["data"]["ownerId"] == body["data"]["userId"] == str(owner.id)
    assert hits[1].at - hits[0].at >= 0.15  # it waited (the schedule's 0.2 s, jittered)


async def test_started_and_ended_of_own_streams_only(client, make_user, make_stream, receiver):
    owner, other = await make_user("hook-owner"), await make_user("hook-other")
    path = _path()
    await _register(client, owner, receiver.url(path), [STARTED, ENDED])
    await make_stream(other, start=True)  # someone else's: not for this endpoint
    stream = await make_stream(owner, start=True)
    r = await client.post(f"{BASE}/end/{stream['id']}", headers=owner.auth)
    assert r.status_code == 200, r.text

    async def both():
        hits = receiver.at(path)
        return hits if len(hits) >= 2 else None

    hits = await _eventually(both)
    by_type = {h.json["type"]: h.json for h in hits}
    assert set(by_type) == {STARTED, ENDED}
    assert len(hits) == 2
    assert all(h.json["data"]["streamId"] == stream["id"] for h in hits)
    ended = by_type[ENDED]["data"]
    assert ended["reason"] == "ended_by_owner" and ended["duration"] >= 0
    assert all(k[0].islower() and "_" not in k for k in ended)  # camelCase keys


async def test_moderation_flags_arrive_in_camel_case(client, db, make_user, make_stream, receiver):
    """A flagged segment's event (as the media pipeline writes it) is a moderation.flagged."""
    owner = await make_user("hook-owner")
    path = _path()
    hook = await _register(client, owner, receiver.url(path), ["moderation.flagged"])
    stream = await make_stream(owner, start=True)
    flag = {"action": "segment_flagged", "source_sequence": 7, "score": 0.93, "threshold": 0.8}
    async with db.acting(owner.id) as conn:
        await conn.execute(
            text(
                "INSERT INTO live_stream_events (stream_id, event_type, event_data)"
                " VALUES (:s, 'moderation_action', CAST(:d AS jsonb))"
            ),
            {"s": stream["id"], "d": json.dumps(flag)},
        )
    [hit] = await _eventually(lambda: _async(receiver.at(path)))
    data = hit.json["data"]
    assert hit.json["type"] == "moderation.flagged" and _signed_correctly(hook["secret"], hit)
    assert data["sourceSequence"] == 7 and data["score"] == 0.93
    assert data["action"] == flag["action"] and data["streamId"] == stream["id"]


async def _async(value):
    return value


async def test_others_cannot_see_delete_or_read_deliveries_of_your_webhook(
    client, make_user, receiver
):
    owner, stranger = await make_user("hook-owner"), await make_user("hook-stranger")
    hook = await _register(client, owner, receiver.url(_path()), [STARTED])
    r = await client.get("/api/webhooks", headers=stranger.auth)
    assert r.status_code == 200 and r.json()["webhooks"] == []
    assert_error(
        await client.delete(f"/api/webhooks/{hook['id']}", headers=stranger.auth),
        404,
        "webhook_not_found",
    )
    assert_error(
        await client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=stranger.auth),
        404,
        "webhook_not_found",
    )
    assert_error(await client.get("/api/webhooks"), 401)
    assert_error(await client.delete(f"/api/webhooks/{hook['id']}"), 401)
    # Still there for its owner, who may delete it (once).
    r = await client.get("/api/webhooks", headers=owner.auth)
    assert [w["id"] for w in r.json()["webhooks"]] == [hook["id"]]
    r = await client.delete(f"/api/webhooks/{hook['id']}", headers=owner.auth)
    assert r.status_code == 204
    assert_error(await client.delete(f"/api/webhooks/{hook['id']}", headers=owner.auth), 404)
    r = await client.get("/api/webhooks", headers=owner.auth)
    assert r.json()["webhooks"] == []


async def test_the_secret_is_shown_once_and_not_readable_by_the_app_role(
    client, db, make_user, receiver
):
    owner = await make_user("hook-owner")
    hook = await _register(client, owner, receiver.url(_path()), [STARTED, ENDED])
    assert hook["secret"].startswith("whsec_")
    assert len(base64.b64decode(hook["secret"][6:])) == 24
    assert hook["events"] == sorted([STARTED, ENDED])
    r = await client.get("/api/webhooks", headers=owner.auth)
    [listed] = r.json()["webhooks"]
    assert listed["id"] == hook["id"] and "secret" not in listed
    assert hook["secret"] not in r.text
    with pytest.raises(exc.ProgrammingError, match="permission denied"):
        async with db.acting(owner.id) as conn:
            await conn.execute(text("SELECT secret FROM webhook_endpoints"))


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://127.0.0.1/x", "events": [STARTED]}, "webhook_insecure_url"),
        ({"url": "http://127.0.0.1/x", "events": ["report.created"]}, "webhook_event_not_allowed"),
        ({"url": "http://127.0.0.1/x", "events": ["stream.exploded"]}, "validation_error"),
        ({"url": "http://127.0.0.1/x", "events": []}, "validation_error"),
        ({"url": "https://no-such-host.invalid/x", "events": [STARTED]}, "webhook_unresolvable"),
    ],
)
async def test_bad_registrations_are_422(client, make_user, body, code):
    owner = await make_user("hook-owner")
    assert_error(await client.post("/api/webhooks", json=body, headers=owner.auth), 422, code)


async def test_a_pending_delivery_is_sent_after_the_dispatcher_restarts(
    client, settings, make_user, make_stream, receiver
):
    handle = webhook_dispatcher.lookup()
    assert handle is not None
    ray.kill(handle, no_restart=True)
    try:
        await _eventually(lambda: _async(webhook_dispatcher.lookup() is None))
        owner = await make_user("hook-owner")
        path = _path()
        hook = await _register(client, owner, receiver.url(path), [STARTED])
        await make_stream(owner, start=True)
        await asyncio.sleep(1.5)
        [row] = await _deliveries(client, owner, hook["id"])
        assert row["status"] == "pending" and row["attempts"] == 0  # queued, durable
        assert receiver.at(path) == []
    finally:
        await asyncio.to_thread(webhook_dispatcher.start, settings)
    [hit] = await _eventually(lambda: _async(receiver.at(path)))
    assert _signed_correctly(hook["secret"], hit) and hit.headers["webhook-id"] == row["event_id"]

    async def delivered():
        rows = await _deliveries(client, owner, hook["id"])
        return rows[0]["status"] == "delivered"

    await _eventually(delivered)


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    allow = {"LUMALIVE_WEBHOOK_ALLOW_HTTP": "true", "LUMALIVE_WEBHOOK_ALLOW_PRIVATE": "true"}
    return run_cli(settings, "webhook", *args, **allow)


async def test_platform_endpoints_from_the_cli_hear_reports_which_owners_do_not(
    client, make_user, make_stream, receiver, settings
):
    owner, reporter = await make_user("hook-owner"), await make_user("hook-reporter")
    platform_path, owner_path = _path(), _path()
    out = await asyncio.to_thread(
        _cli, settings, "add", receiver.url(platform_path), "--events", "report.created"
    )
    assert out.returncode == 0, out.stderr[-2000:]
    platform_id, _, secret = out.stdout.strip().splitlines()[-1].partition("  secret ")
    try:
        # `list` (a process of its own, seconds) runs while the report goes through.
        listing = asyncio.ensure_future(asyncio.to_thread(_cli, settings, "list"))
        await _register(client, owner, receiver.url(owner_path), [STARTED])
        stream = await make_stream(owner, start=True)
        r = await client.post(
            f"{BASE}/{stream['id']}/report",
            json={"reason": "spam", "details": "buy now"},
            headers=reporter.auth,
        )
        assert r.status_code == 201, r.text
        [hit] = await _eventually(lambda: _async(receiver.at(platform_path)))
        assert _signed_correctly(secret, hit)
        data = hit.json["data"]
        assert hit.json["type"] == "report.created" and data["streamId"] == stream["id"]
        assert data["reporterId"] == str(reporter.id) and data["reason"] == "spam"
        await _eventually(lambda: _async(receiver.at(owner_path)))  # its stream.started
        await asyncio.sleep(0.5)
        assert [h.json["type"] for h in receiver.at(owner_path)] == [STARTED]  # no report
        listed = await listing
        assert platform_id in listed.stdout and platform_path in listed.stdout
    finally:
        out = await asyncio.to_thread(_cli, settings, "remove", platform_id)
        assert out.returncode == 0, out.stderr[-2000:]
    listed = await asyncio.to_thread(_cli, settings, "list")
    assert platform_id not in listed.stdout


async def test_a_user_has_at_most_the_configured_number_of_webhooks(
    client, settings, make_user, receiver
):
    owner = await make_user("hook-owner")
    for _ in range(settings.webhook_max_per_user):
        await _register(client, owner, receiver.url(_path()), [STARTED])
    body = {"url": receiver.url(_path()), "events": [STARTED]}
    r = await client.post("/api/webhooks", json=body, headers=owner.auth)
    assert_error(r, 429, "webhook_quota")
    r = await client.get("/api/webhooks", headers=owner.auth)
    assert len(r.json()["webhooks"]) == settings.webhook_max_per_user


async def test_the_queue_answers_no_transaction_that_names_a_user(db, make_user, make_stream):
    """The dispatcher's claim (which carries secrets) is not for request transactions:
    in one that names the owner, a delivery it has just queued is there but not claimable."""
    owner = await make_user("hook-owner")
    stream = await make_stream(owner)
    flag = json.dumps({"action": "segment_flagged", "source_sequence": 1})
    async with db.engine.connect() as conn, conn.begin() as tx:
        await set_actor(conn, owner.id)
        await webhook_store.insert(
            conn, owner.id, "http://127.0.0.1:9/x", ["moderation.flagged"], "whsec_AAAA"
        )
        await conn.execute(
            text(
                "INSERT INTO live_stream_events (stream_id, event_type, event_data)"
                " VALUES (:s, 'moderation_action', CAST(:d AS jsonb))"
            ),
            {"s": stream["id"], "d": flag},
        )
        queued = (await conn.execute(text("SELECT status FROM webhook_deliveries"))).all()
        claimed = (await conn.execute(text("SELECT * FROM webhook_claim(100, 60)"))).all()
        await tx.rollback()
    assert [tuple(r) for r in queued] == [("pending",)] and claimed == []
