"""Stream management over HTTP: validation, lifecycle, lists, keys, auth and error shape."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from tests.utils.api import BASE, assert_error


async def test_create_uses_spec_config_and_returns_key(client, make_user, settings):
    owner = await make_user()
    cfg = {
        "title": "My Gen 1 Stream",
        "description": "AI-powered live content",
        "quality": "4K",
        "bitrate": 25000,
        "enableAI": True,
        "enableHDR": False,
        "enableRayTracing": False,
        "privacy": "public",
        "category": "general",
        "tags": ["gen1", "ai"],
        "isNSFW": False,
    }
    r = await client.post(f"{BASE}/create", json=cfg, headers=owner.auth)
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["user_id"] == str(owner.id) and s["status"] == "created" and not s["is_live"]
    assert s["quality"] == "4K" and s["bitrate"] == 25000 and s["tags"] == ["gen1", "ai"]
    assert s["ai_features"]["enhancement"] is True and s["ai_features"]["hdr"] is False
    assert s["stream_key"].startswith("live_") and len(s["stream_key"]) > 30
    assert s["ingest"]["url"] == f"{settings.rtmp_url}/{s['stream_key']}"


@pytest.mark.parametrize(
    ("quality", "default"), [("1080p", 8000), ("4K", 25000), ("8K", 50000), ("20K", 100000)]
)
async def test_bitrate_defaults_to_tier(client, make_user, quality, default):
    owner = await make_user()
    r = await client.post(
        f"{BASE}/create", json={"title": "t", "quality": quality}, headers=owner.auth
    )
    assert r.status_code == 201 and r.json()["bitrate"] == default


async def test_bitrate_may_be_lowered_never_raised(client, make_user):
    owner = await make_user()
    r = await client.post(
        f"{BASE}/create",
        json={"title": "t", "quality": "1080p", "bitrate": 4500},
        headers=owner.auth,
    )
    assert r.status_code == 201 and r.json()["bitrate"] == 4500
    r = await client.post(
        f"{BASE}/create",
        json={"title": "t", "quality": "1080p", "bitrate": 8001},
        headers=owner.auth,
    )
    assert_error(r, 422, "bitrate_above_tier")


@pytest.mark.parametrize(
    "bad",
    [
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 256},
        {"title": "t", "quality": "720p"},
        {"title": "t", "privacy": "secret"},
        {"title": "t", "bitrate": 0},
        {"title": "t", "bitrate": -5},
        {"title": "t", "tags": [f"t{i}" for i in range(21)]},
        {"title": "t", "tags": ["x" * 51]},
        {"title": "t", "category": "c" * 51},
        {"title": "t", "unknown": 1},
        {"description": "no title"},
        {"title": 5},
        {"title": "t", "tags": "notalist"},
    ],
)
async def test_create_rejects_bad_config(client, make_user, bad):
    owner = await make_user()
    before = (await client.get(f"{BASE}/user/{owner.id}", headers=owner.auth)).json()["items"]
    err = assert_error(
        await client.post(f"{BASE}/create", json=bad, headers=owner.auth), 422, "validation_error"
    )
    assert err["details"]
    after = (await client.get(f"{BASE}/user/{owner.id}", headers=owner.auth)).json()["items"]
    assert after == before  # a bad request changes nothing


async def test_malformed_bodies_are_4xx_json(client, make_user):
    owner = await make_user()
    h = {**owner.auth, "content-type": "application/json"}
    assert_error(await client.post(f"{BASE}/create", content=b"{not json", headers=h), 422)
    assert_error(await client.post(f"{BASE}/create", content=b"[1,2]", headers=h), 422)
    assert_error(await client.post(f"{BASE}/create", content=b"\xff\xfe", headers=h), 422)
    assert_error(
        await client.post(f"{BASE}/create", content=b"x" * 70_000, headers=h),
        413,
        "payload_too_large",
    )
    assert_error(await client.get(f"{BASE}/not-a-uuid"), 422)
    assert_error(await client.get("/api/nothing-here"), 404)
    assert_error(await client.get(f"{BASE}/live?limit=0"), 422)
    assert_error(await client.get(f"{BASE}/live?limit=101"), 422)
    assert_error(await client.get(f"{BASE}/live?cursor=%%%"), 400, "invalid_cursor")


async def test_auth_missing_forged_expired(client, make_user, settings):
    user = await make_user()
    assert_error(await client.post(f"{BASE}/create", json={"title": "t"}), 401, "missing_token")
    forged = jwt.encode(
        {"sub": str(user.id), "aud": "authenticated", "exp": time.time() + 60},
        "a-different-secret-of-sufficient-length-xyz",
        algorithm="HS256",
    )
    assert_error(
        await client.post(
            f"{BASE}/create", json={"title": "t"}, headers={"Authorization": f"Bearer {forged}"}
        ),
        401,
        "invalid_token",
    )
    expired = jwt.encode(
        {"sub": str(user.id), "aud": "authenticated", "exp": time.time() - 10},
        settings.jwt_secret,
        algorithm="HS256",
    )
    assert_error(
        await client.post(
            f"{BASE}/create", json={"title": "t"}, headers={"Authorization": f"Bearer {expired}"}
        ),
        401,
        "token_expired",
    )
    no_exp = jwt.encode(
        {"sub": str(user.id), "aud": "authenticated"}, settings.jwt_secret, algorithm="HS256"
    )
    assert_error(
        await client.post(
            f"{BASE}/create", json={"title": "t"}, headers={"Authorization": f"Bearer {no_exp}"}
        ),
        401,
        "invalid_token",
    )
    assert_error(
        await client.post(
            f"{BASE}/create", json={"title": "t"}, headers={"Authorization": "Basic abc"}
        ),
        401,
        "invalid_token",
    )
    assert_error(
        await client.post(
            f"{BASE}/create", json={"title": "t"}, headers={"Authorization": "Bearer not.a.jwt"}
        ),
        401,
        "invalid_token",
    )


async def test_supabase_style_token_for_unknown_user_is_provisioned(client, settings):
    sub = uuid.uuid4()  # never created through the CLI
    token = jwt.encode(
        {"sub": str(sub), "aud": "authenticated", "role": "authenticated", "exp": time.time() + 60},
        settings.jwt_secret,
        algorithm="HS256",
    )
    r = await client.post(
        f"{BASE}/create", json={"title": "t"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 201 and r.json()["user_id"] == str(sub)


async def test_lifecycle_created_live_ended(client, make_user, make_stream):
    owner, other = await make_user(), await make_user()
    s = await make_stream(owner)
    sid = s["id"]
    assert_error(await client.post(f"{BASE}/end/{sid}", headers=owner.auth), 409, "stream_not_live")
    assert_error(
        await client.post(f"{BASE}/start/{sid}", headers=other.auth), 403, "not_stream_owner"
    )
    assert_error(await client.post(f"{BASE}/start/{sid}"), 401)
    r = await client.post(f"{BASE}/start/{sid}", headers=owner.auth)
    assert r.status_code == 200 and r.json()["status"] == "live" and r.json()["started_at"]
    assert_error(
        await client.post(f"{BASE}/start/{sid}", headers=owner.auth), 409, "invalid_transition"
    )
    assert_error(
        await client.post(f"{BASE}/end/{sid}", headers=other.auth), 403, "not_stream_owner"
    )
    r = await client.post(f"{BASE}/join", headers=other.auth)  # wrong path shape
    assert r.status_code in (404, 405, 422)
    await client.post(f"{BASE}/{sid}/join", headers=other.auth)
    r = await client.post(f"{BASE}/end/{sid}", headers=owner.auth)
    ended = r.json()
    assert r.status_code == 200 and ended["status"] == "ended" and ended["ended_at"]
    assert ended["duration"] >= 0 and ended["viewers"] == 0 and ended["peak_viewers"] == 1
    assert_error(
        await client.post(f"{BASE}/start/{sid}", headers=owner.auth), 409, "invalid_transition"
    )
    assert_error(await client.post(f"{BASE}/end/{sid}", headers=owner.auth), 409, "stream_not_live")
    assert_error(
        await client.post(f"{BASE}/{sid}/join", headers=other.auth), 409, "stream_not_live"
    )
    events = (await client.get(f"{BASE}/{sid}/events", headers=owner.auth)).json()["items"]
    left = [e for e in events if e["type"] == "viewer_left"]
    assert [e["type"] for e in events][-1] == "stream_ended"
    assert left == []  # ending closes viewings in the database, not as leave events
    a = (await client.get(f"{BASE}/{sid}/analytics", headers=owner.auth)).json()
    assert a["current_viewers"] == 0 and a["status"] == "ended"


async def test_stream_key_only_for_owner(client, make_user, make_stream):
    owner, other = await make_user(), await make_user()
    s = await make_stream(owner, start=True, title="keyed")
    key = s["stream_key"]
    mine = (await client.get(f"{BASE}/{s['id']}", headers=owner.auth)).json()
    assert mine["stream_key"] == key
    texts = [
        (await client.get(f"{BASE}/{s['id']}", headers=other.auth)).text,
        (await client.get(f"{BASE}/{s['id']}")).text,
        (await client.get(f"{BASE}/live?limit=100")).text,
        (await client.get(f"{BASE}/live?limit=100", headers=owner.auth)).text,
        (await client.get(f"{BASE}/user/{owner.id}", headers=owner.auth)).text,
        (await client.get(f"{BASE}/user/{owner.id}", headers=other.auth)).text,
        (await client.get(f"{BASE}/{s['id']}/events", headers=other.auth)).text,
        (await client.post(f"{BASE}/{s['id']}/join", headers=other.auth)).text,
        (await client.post(f"{BASE}/end/{s['id']}", headers=owner.auth)).text,
    ]
    for text in texts:
        assert key not in text and "stream_key" not in text


async def test_live_list_filters_and_pages(client, make_user, make_stream):
    owner = await make_user()
    cat = f"cat-{uuid.uuid4().hex[:6]}"
    made = [
        await make_stream(owner, start=True, category=cat, quality=q, tags=[t])
        for q, t in [("1080p", "a"), ("4K", "b"), ("4K", "a"), ("8K", "c"), ("1080p", "b")]
    ]
    not_live = await make_stream(owner, category=cat)
    seen, cursor = [], None
    while True:
        url = f"{BASE}/live?limit=2&category={cat}" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url)).json()
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(s["id"] for s in made) and len(seen) == len(set(seen))
    assert not_live["id"] not in seen
    assert seen == [s["id"] for s in reversed(made)]  # newest first
    q4k = (await client.get(f"{BASE}/live?category={cat}&quality=4K")).json()["items"]
    assert {s["id"] for s in q4k} == {made[1]["id"], made[2]["id"]}
    tag_a = (await client.get(f"{BASE}/live?category={cat}&tag=a")).json()["items"]
    assert {s["id"] for s in tag_a} == {made[0]["id"], made[2]["id"]}


async def test_user_streams_pages(client, make_user, make_stream):
    owner = await make_user()
    made = [await make_stream(owner, title=f"s{i}") for i in range(5)]
    page1 = (await client.get(f"{BASE}/user/{owner.id}?limit=3")).json()
    page2 = (
        await client.get(f"{BASE}/user/{owner.id}?limit=3&cursor={page1['next_cursor']}")
    ).json()
    assert page2["next_cursor"] is None
    ids = [s["id"] for s in page1["items"] + page2["items"]]
    assert ids == [s["id"] for s in reversed(made)]


async def test_get_unknown_stream_is_404(client, make_user):
    user = await make_user()
    assert_error(
        await client.get(f"{BASE}/{uuid.uuid4()}", headers=user.auth), 404, "stream_not_found"
    )
    assert_error(await client.post(f"{BASE}/start/{uuid.uuid4()}", headers=user.auth), 404)


async def test_openapi_and_docs(client):
    spec = (await client.get("/openapi.json")).json()
    for path in [
        "/api/live-streaming/create",
        "/api/live-streaming/start/{stream_id}",
        "/api/live-streaming/end/{stream_id}",
        "/api/live-streaming/live",
        "/api/live-streaming/{stream_id}",
        "/api/live-streaming/{stream_id}/join",
        "/api/live-streaming/{stream_id}/leave",
        "/api/live-streaming/{stream_id}/chat",
        "/api/live-streaming/{stream_id}/reaction",
        "/api/live-streaming/{stream_id}/events",
        "/api/live-streaming/{stream_id}/analytics",
        "/api/live-streaming/user/{user_id}",
        "/api/friends/{user_id}",
        "/api/friends/{user_id}/accept",
        "/healthz",
    ]:
        assert path in spec["paths"], path
    assert (await client.get("/docs")).status_code == 200
    assert (await client.get("/healthz")).json() == {"status": "ok"}
