"""The walk a newcomer takes: create, start, join, chat, react, analytics, end."""

from __future__ import annotations


async def test_stream_walkthrough(client, make_user, make_stream):
    owner, viewer = await make_user("owner"), await make_user("viewer")
    stream = await make_stream(owner, start=True, quality="4K", tags=["gen1", "ai"])
    sid = stream["id"]
    assert stream["status"] == "live" and stream["is_live"] is True

    r = await client.post(f"/api/live-streaming/{sid}/join", headers=viewer.auth)
    assert r.status_code == 200 and r.json()["viewers"] == 1
    r = await client.post(
        f"/api/live-streaming/{sid}/chat",
        json={"message": "  Hello from Gen 1!  "},
        headers=viewer.auth,
    )
    assert r.status_code == 201 and r.json()["message"] == "Hello from Gen 1!"
    r = await client.post(
        f"/api/live-streaming/{sid}/reaction", json={"reaction": "🔥"}, headers=viewer.auth
    )
    assert r.status_code == 201

    a = (await client.get(f"/api/live-streaming/{sid}/analytics", headers=owner.auth)).json()
    assert a["current_viewers"] == 1 and a["peak_viewers"] == 1 and a["unique_viewers"] == 1
    assert a["chat_messages"] == 1 and a["reactions"] == {"🔥": 1}
    assert a["engagement_rate"] == 1.0

    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    assert r.status_code == 200 and r.json()["status"] == "ended"
    types = [
        e["type"]
        for e in (await client.get(f"/api/live-streaming/{sid}/events", headers=owner.auth)).json()[
            "items"
        ]
    ]
    assert types == ["stream_started", "viewer_joined", "chat_message", "reaction", "stream_ended"]
