"""Recommendations on a small catalogue of live streams: the ranking follows the
caller's watch history (sentence embeddings of the real shipped model), falls
back to popularity for anonymous callers, and never shows what the caller may
not see or owns."""

from __future__ import annotations

from typing import Any

import psycopg

BASE = "/api/live-streaming"

CATALOGUE = {
    "pasta": dict(
        title="Italian pasta cooking class",
        category="food",
        description="Making fresh tagliatelle and a slow tomato sauce from scratch",
        tags=["cooking", "pasta", "italian"],
    ),
    "bread": dict(
        title="Baking sourdough bread at home",
        category="food",
        description="Kneading dough, proofing and baking a crusty loaf in the kitchen",
        tags=["baking", "bread", "recipes"],
    ),
    "speedrun": dict(
        title="Speedrunning retro platformer games",
        category="gaming",
        description="Any% runs of classic console games with frame-perfect tricks",
        tags=["gaming", "speedrun", "retro"],
    ),
    "shooter": dict(
        title="Competitive shooter ranked matches",
        category="gaming",
        description="Climbing the ranked ladder in a first-person shooter",
        tags=["gaming", "fps", "esports"],
    ),
    "jazz": dict(
        title="Live jazz piano session",
        category="music",
        description="Improvising jazz standards on a grand piano",
        tags=["music", "jazz", "piano"],
    ),
}


async def _ranked(
    client: Any, ids: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[list[str], dict[str, Any]]:
    r = await client.get(f"{BASE}/recommended", params={"limit": 100}, headers=headers or {})
    assert r.status_code == 200, r.text
    names = {v: k for k, v in ids.items()}
    body = r.json()
    return [names[i["id"]] for i in body["items"] if i["id"] in names], body


async def test_recommendations_follow_watch_history(client, settings, make_user, make_stream):
    owner = await make_user("owner")
    ids = {
        name: (await make_stream(owner, start=True, **cfg))["id"] for name, cfg in CATALOGUE.items()
    }
    hidden = (
        await make_stream(
            await make_user("owner"),  # a sixth live stream would pass the owner's quota
            start=True,
            privacy="private",
            title="Secret pasta masterclass",
            category="food",
            tags=["cooking", "pasta"],
        )
    )["id"]

    # Popularity: the shooter has 3 viewers, jazz 2, the rest none.
    for name, n in (("shooter", 3), ("jazz", 2)):
        for _ in range(n):
            fan = await make_user("fan")
            r = await client.post(f"{BASE}/{ids[name]}/join", headers=fan.auth)
            assert r.status_code == 200

    # Histories: a cook watched the pasta class, a gamer the shooter (both left again).
    cook, gamer = await make_user("cook"), await make_user("gamer")
    for who, name in ((cook, "pasta"), (gamer, "shooter")):
        await client.post(f"{BASE}/{ids[name]}/join", headers=who.auth)
        await client.post(f"{BASE}/{ids[name]}/leave", headers=who.auth)

    anon, body = await _ranked(client, ids)
    assert body["personalised"] is False
    assert anon[:2] == ["shooter", "jazz"]  # popularity alone
    assert hidden not in {i["id"] for i in body["items"]}

    ranked, body = await _ranked(client, ids, cook.auth)
    assert body["personalised"] is True
    assert ranked[:2] == ["pasta", "bread"], ranked  # food first, despite no viewers
    item = {i["id"]: i for i in body["items"]}[ids["bread"]]
    assert item["relevance"] > {i["id"]: i for i in body["items"]}[ids["shooter"]]["relevance"]
    assert set(item) >= {"score", "relevance", "popularity", "title", "viewers"}

    ranked, _ = await _ranked(client, ids, gamer.auth)
    assert ranked[:2] == ["shooter", "speedrun"], ranked  # the unwatched speedrun beats jazz
    assert ranked.index("speedrun") < ranked.index("jazz")

    mine, _ = await _ranked(client, ids, owner.auth)
    assert mine == []  # your own streams are not recommended to you

    # Embeddings were computed once per stream and stored (384 floats).
    dsn = settings.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        rows = await (
            await conn.execute(
                "SELECT stream_id::text, array_length(embedding, 1), model FROM stream_embeddings"
                " WHERE stream_id = ANY(%s::uuid[])",
                (list(ids.values()),),
            )
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids.values())
    assert {(r[1], r[2]) for r in rows} == {(384, "all-MiniLM-L6-v2")}
