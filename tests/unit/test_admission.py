"""The API's door (serve_app/admission.py): the adaptive limit fed latencies by hand,
so every step is deterministic, and the middleware shedding at whatever it says."""

from __future__ import annotations

import asyncio

import httpx

from serve_app.admission import AdaptiveLimit, Admission


def feed(limit: AdaptiveLimit, latency_s: float, inflight: int, windows: int = 1) -> None:
    for _ in range(limit.window * windows):
        limit.sample(latency_s, inflight)


def test_min_zero_is_the_old_fixed_cap() -> None:
    limit = AdaptiveLimit(128, 0)
    feed(limit, 5.0, 128, windows=20)
    assert limit.limit == 128 and limit.min_limit == 128


def test_it_starts_at_the_ceiling_and_moves_once_per_window() -> None:
    limit = AdaptiveLimit(100, 10)
    assert limit.limit == 100 and limit.allows(99) and not limit.allows(100)
    for _ in range(limit.window - 1):
        limit.sample(1.0, 100)
    assert limit.limit == 100  # a window is not complete yet
    limit.sample(1.0, 100)
    assert limit.limit == 90  # slow while reached: x0.9


def test_slow_while_the_limit_was_reached_cuts_down_to_the_floor_only() -> None:
    limit = AdaptiveLimit(128, 16)
    feed(limit, 0.005, 10)  # the floor: 5 ms
    feed(limit, 0.5, 128, windows=100)
    assert limit.limit == 16 and limit.allows(15) and not limit.allows(16)


def test_slow_while_not_reached_changes_nothing() -> None:
    """A burst under the limit, or a CPU taken by someone else: the bound was not
    what made it slow, and cutting it would only shed the next burst."""
    limit = AdaptiveLimit(128, 16)
    feed(limit, 0.5, 60, windows=10)
    assert limit.limit == 128


def test_fast_while_not_reached_goes_back_to_the_ceiling() -> None:
    limit = AdaptiveLimit(128, 16)
    feed(limit, 0.5, 128, windows=30)
    low = limit.limit
    feed(limit, 0.004, 3, windows=6)
    assert low < 30 and limit.limit == 128


def test_fast_while_reached_probes_up_by_the_square_root() -> None:
    limit = AdaptiveLimit(128, 16)
    feed(limit, 0.5, 128, windows=25)
    before = limit.limit
    feed(limit, 0.01, int(before))
    assert limit.limit == before + before**0.5


def test_a_latency_under_target_is_never_overload_however_far_above_the_floor() -> None:
    limit = AdaptiveLimit(128, 16, target_s=0.1)
    feed(limit, 0.001, 128)  # floor 1 ms
    feed(limit, 0.09, 128, windows=10)  # 90x the floor, under target: fine
    assert limit.limit == 128


def test_a_slow_floor_raises_the_bar_by_tolerance() -> None:
    """A deployment whose fastest answer is 200 ms is judged against 2x that."""
    limit = AdaptiveLimit(128, 16, target_s=0.1, tolerance=2.0)
    feed(limit, 0.2, 10, windows=3)  # slow, but the door was not crowded: the floor
    feed(limit, 0.35, 128, windows=3)
    assert limit.limit == 128
    feed(limit, 0.45, 128)
    assert limit.limit < 128


def test_sustained_overload_settles_where_latency_meets_the_target() -> None:
    """A server doing one request at a time in 10 ms, offered more than it can carry:
    each admitted request waits for the ones ahead of it, so latency = in-flight x
    10 ms. The limit settles around 10 (100 ms) and stays there; the fastest answers
    of these crowded windows never become the floor that would excuse them."""
    limit = AdaptiveLimit(128, 4, target_s=0.1)
    seen = []
    for _ in range(200):
        inflight = int(limit.limit)  # offered load always fills the door
        feed(limit, inflight * 0.010, inflight)
        seen.append(limit.limit)
    assert all(4 <= x <= 128 for x in seen)
    assert min(seen[-50:]) >= 8 and max(seen[-50:]) <= 16, seen[-50:]


async def test_the_door_sheds_at_the_adapted_limit_with_retry_after() -> None:
    gate = asyncio.Event()

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    door = Admission(app, max_inflight=64, min_inflight=2)
    feed(door.limit, 0.5, 64, windows=40)  # as after a long overload
    assert int(door.limit.limit) == 2
    transport = httpx.ASGITransport(app=door)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = [asyncio.create_task(client.post("/api/x")) for _ in range(2)]
        await asyncio.sleep(0.01)
        shed = await client.post("/api/x")
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert shed.json()["error"]["code"] == "overloaded" and door.shed == 1
    assert door.inflight == 0


async def test_the_door_measures_what_it_admits_but_not_blocking_playlist_reloads() -> None:
    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    door = Admission(app, max_inflight=64, min_inflight=2)
    door.limit.window = 1000  # keep the samples in the window to count them
    transport = httpx.ASGITransport(app=door)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/api/live-streaming/x/llhls/480p.m3u8?_HLS_msn=3&_HLS_part=1")
        await client.get("/api/live-streaming/x")
    assert len(door.limit._samples) == 1
