"""The media pipeline in the running system: a real ffmpeg publishes over RTMP to the
ingest actor, the Ray worker pool moderates and encodes, Postgres holds the playlists,
and PyAV plays the HLS ladder back from the API with a playback token.

The clip (bigbuckbunny.mp4: 1280x720, 25 fps, 132 frames, H.264 + AAC) has a single
keyframe, so one publish of it is one source segment. The session's ladder is capped at
480p (conftest), so a stream has two renditions: 854x480 and 640x360.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import ray

from actors import ingest_actor
from actors.media_worker import SegmentJob, SegmentWorker
from lumalive.auth import TokenService
from lumalive.db import Database
from lumalive.settings import Settings
from tests.utils.api import Person
from tests.utils.db import rows_as
from tests.utils.media import MEDIA

pytestmark = pytest.mark.slow

CLIP = MEDIA / "bigbuckbunny.mp4"
CLIP_FRAMES = 132
LADDER = {"480p": (854, 480), "360p": (640, 360)}
TIMEOUT_S = 150.0
STAGES = {"queue", "moderate", "enhance", "encode", "store"}


# --- helpers ---------------------------------------------------------------------------


async def publish(
    settings: Settings, key: str, source: Path = CLIP, *, realtime: bool = True, loops: int = 0
) -> asyncio.subprocess.Process:
    """The ffmpeg CLI re-publishing a file's H.264/AAC as an encoder would."""
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    args += ["-re"] if realtime else []
    args += ["-stream_loop", str(loops)] if loops else []
    args += [
        "-i",
        str(source),
        "-c",
        "copy",
        "-f",
        "flv",
        f"rtmp://127.0.0.1:{settings.rtmp_port}/live/{key}",
    ]
    return await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def finished(process: asyncio.subprocess.Process) -> tuple[int, str]:
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode(errors="replace")


async def eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = TIMEOUT_S
) -> Any:
    """Poll until `check()` returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def rows(db: Database, owner: Person, sql: str, sid: str) -> list[dict[str, Any]]:
    return await rows_as(db, owner.id, sql, s=sid)


async def quality(db: Database, owner: Person, sid: str) -> list[dict[str, Any]]:
    return await rows(
        db,
        owner,
        "SELECT source_sequence, frames, dropped, retries, error,"
        " latency_ms FROM stream_quality WHERE stream_id = :s"
        " ORDER BY source_sequence",
        sid,
    )


async def segments(db: Database, owner: Person, sid: str) -> list[dict[str, Any]]:
    return await rows(
        db,
        owner,
        "SELECT rendition, sequence, source_sequence, frames,"
        " discontinuity, timings, bytes, path FROM stream_segments"
        " WHERE stream_id = :s ORDER BY rendition, sequence",
        sid,
    )


async def status_of(client: httpx.AsyncClient, owner: Person, sid: str) -> str:
    r = await client.get(f"/api/live-streaming/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


async def wait_live(client: httpx.AsyncClient, owner: Person, sid: str) -> None:
    async def live() -> bool:
        return await status_of(client, owner, sid) == "live"

    await eventually(live, "the stream to go live", 30)


async def wait_processed(db: Database, owner: Person, sid: str, n: int) -> list[dict[str, Any]]:
    """The quality rows once `n` source segments went through the pipeline."""

    async def done() -> list[dict[str, Any]] | None:
        q = await quality(db, owner, sid)
        return q if len(q) >= n else None

    return await eventually(done, f"{n} processed segments of {sid}")


def play(url: str) -> tuple[dict[tuple[int, int], int], int]:
    """Frames per video size and the number of audio streams, as FFmpeg's HLS demuxer
    (what a standard player does) plays the master playlist."""
    frames: dict[tuple[int, int], int] = defaultdict(int)
    with av.open(url, timeout=30) as hls:
        audio = len(hls.streams.audio)
        for packet in hls.demux(hls.streams.video):
            for frame in packet.decode():
                frames[(frame.width, frame.height)] += 1
    return dict(frames), audio


# --- the whole path --------------------------------------------------------------------


async def test_a_publish_goes_live_and_plays_back_as_an_hls_ladder(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tokens: TokenService,
) -> None:
    owner, viewer, stranger = (
        await make_user("caster"),
        await make_user("viewer"),
        await make_user("stranger"),
    )
    stream = await make_stream(owner, privacy="private")
    sid = stream["id"]
    r = await client.post(
        f"/api/live-streaming/{sid}/invite", json={"userId": str(viewer.id)}, headers=owner.auth
    )
    assert r.status_code == 201, r.text

    publisher = await publish(settings, stream["stream_key"])
    await wait_live(client, owner, sid)  # publishing started the created stream
    r = await client.post(f"/api/live-streaming/{sid}/join", headers=viewer.auth)
    assert r.status_code == 200, r.text
    playback_url = r.json()["playback_url"]
    master_path = f"/api/live-streaming/{sid}/hls/master.m3u8"
    assert playback_url.startswith(f"{settings.api_url}{master_path}?pt=")
    code, err = await finished(publisher)
    assert code == 0, err

    [q] = await wait_processed(db, owner, sid, 1)
    assert q["frames"] == CLIP_FRAMES and not q["dropped"] and q["retries"] == 0
    live_index = await client.get(playback_url.replace("master.m3u8", "480p/index.m3u8"))
    assert live_index.status_code == 200
    assert live_index.headers["cache-control"] == "no-cache"
    assert "#EXT-X-ENDLIST" not in live_index.text and "#EXT-X-MEDIA-SEQUENCE:0" in live_index.text

    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    assert r.status_code == 200, r.text

    master = await client.get(playback_url)
    assert master.status_code == 200, master.text
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert master.headers["cache-control"].startswith("private, max-age=")
    assert "RESOLUTION=854x480" in master.text and "RESOLUTION=640x360" in master.text
    assert 'CODECS="avc1.' in master.text and "mp4a.40.2" in master.text
    uris = [line for line in master.text.splitlines() if line and not line.startswith("#")]
    assert [u.split("?")[0] for u in uris] == ["480p/index.m3u8", "360p/index.m3u8"]
    assert all("?pt=" in u for u in uris)
    base = playback_url.split("master.m3u8")[0]
    for uri in uris:
        index = await client.get(base + uri)
        assert index.status_code == 200
        assert "#EXT-X-ENDLIST" in index.text and "#EXT-X-PLAYLIST-TYPE:VOD" in index.text
        assert "#EXT-X-PROGRAM-DATE-TIME:" in index.text
        [segment_uri] = [x for x in index.text.splitlines() if x and not x.startswith("#")]
        assert segment_uri.startswith("00000000.ts?pt=")
        seg = await client.get(base + uri.split("/")[0] + "/" + segment_uri)
        assert seg.status_code == 200
        assert seg.headers["content-type"] == "video/mp2t"
        assert seg.headers["cache-control"] == "private, max-age=31536000, immutable"

    # A standard player, given only the URL: every rendition, every frame, with audio.
    frames, audio_streams = await asyncio.to_thread(play, playback_url)
    assert frames == {size: CLIP_FRAMES for size in LADDER.values()}
    assert audio_streams >= 1

    stored = await segments(db, owner, sid)
    assert {(s["rendition"], s["sequence"], s["frames"]) for s in stored} == {
        ("480p", 0, CLIP_FRAMES),
        ("360p", 0, CLIP_FRAMES),
    }
    for s in stored:
        # Encoded once: by the pool, or (a low-latency stream's LL rung, `encode_once`)
        # by the streaming encoder and remuxed, the pool only moderating.
        assert set(s["timings"]) >= STAGES
        assert s["timings"]["encode"] > 0 or s["timings"]["llhls_rungs"] == 1

    analytics = (
        await client.get(f"/api/live-streaming/{sid}/analytics", headers=owner.auth)
    ).json()["media"]
    assert analytics["segments"] == 1 and analytics["dropped"] == 0
    assert analytics["input_fps"] == pytest.approx(25, rel=0.05)
    assert analytics["processing_latency_ms"]["p95"] > 0
    assert analytics["moderation"]["frames_scored"] >= 5
    assert 0 <= analytics["moderation"]["max_score"] < settings.nsfw_threshold

    # Who may not see the stream gets 404 on every path, signed in or not.
    seg_path = f"/api/live-streaming/{sid}/hls/480p/00000000.ts"
    for path in (
        f"/api/live-streaming/{sid}/hls/master.m3u8",
        f"/api/live-streaming/{sid}/hls/480p/index.m3u8",
        seg_path,
    ):
        assert (await client.get(path, headers=stranger.auth)).status_code == 404
        assert (await client.get(path)).status_code == 404
        assert (await client.get(path, headers=viewer.auth)).status_code == 200
    # A playback token must be genuine, current, for this stream, and a playback token.
    other = tokens.issue_playback(viewer.id, uuid.uuid4(), 600)
    expired = tokens.issue_playback(viewer.id, uuid.UUID(sid), -10)
    assert (await client.get(seg_path, params={"pt": "garbage"})).status_code == 401
    assert (await client.get(seg_path, params={"pt": expired})).status_code == 401
    assert (await client.get(seg_path, params={"pt": viewer.token})).status_code == 401
    assert (await client.get(seg_path, params={"pt": other})).status_code == 404
    # ... and cannot stand in for an access token.
    pt = playback_url.split("pt=")[1]
    r = await client.get(f"/api/live-streaming/{sid}", headers={"Authorization": f"Bearer {pt}"})
    assert r.status_code == 401


async def test_ending_right_after_the_publisher_finishes_keeps_every_frame(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tokens: TokenService,
) -> None:
    """The owner presses End the moment the publisher is done: the segments still being
    cut and encoded are published before the stream ends, so the VOD has every frame."""
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    # Three clips back to back, unpaced: three segments, all still in the pipeline (cut,
    # queued or encoding) when the publisher is done.
    publisher = await publish(settings, stream["stream_key"], realtime=False, loops=2)
    code, err = await finished(publisher)
    assert code == 0, err
    assert await status_of(client, owner, sid) == "live"

    began = time.monotonic()
    r = await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)
    took = time.monotonic() - began
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ended" and r.json()["end_reason"] == "ended_by_owner"
    assert took < settings.end_drain_s + 10  # bounded by the drain

    pt = tokens.issue_playback(owner.id, uuid.UUID(sid), 600)
    base = f"{settings.api_url}/api/live-streaming/{sid}/hls/"
    for rendition in LADDER:
        index = await client.get(f"{base}{rendition}/index.m3u8", params={"pt": pt})
        assert index.status_code == 200, index.text
        assert "#EXT-X-ENDLIST" in index.text  # the VOD: final, every segment
    frames, _ = await asyncio.to_thread(play, f"{base}master.m3u8?pt={pt}")
    assert frames == {size: 3 * CLIP_FRAMES for size in LADDER.values()}
    q = await quality(db, owner, sid)
    assert [(x["frames"], x["dropped"]) for x in q] == [(CLIP_FRAMES, False)] * 3


# --- admission -------------------------------------------------------------------------


async def test_an_unknown_key_is_refused(settings: Settings) -> None:
    code, err = await finished(await publish(settings, "live_not-a-key", realtime=False))
    assert code != 0 and "unknown stream key" in err


async def test_an_ended_streams_key_is_refused_and_recorded(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner, start=True)
    sid = stream["id"]
    assert (await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)).is_success
    code, err = await finished(await publish(settings, stream["stream_key"], realtime=False))
    assert code != 0, err
    r = await client.get(
        f"/api/live-streaming/{sid}/events", params={"type": "ingest_refused"}, headers=owner.auth
    )
    [event] = r.json()["items"]
    assert event["data"] == {"reason": "stream_ended"}
    assert await status_of(client, owner, sid) == "ended"


async def test_two_streams_publish_at_once(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    owners = [await make_user("caster"), await make_user("caster")]
    streams = [await make_stream(o) for o in owners]
    publishers = [await publish(settings, s["stream_key"]) for s in streams]
    for owner, s in zip(owners, streams, strict=True):
        await wait_live(client, owner, s["id"])
    assert [(await finished(p))[0] for p in publishers] == [0, 0]
    for owner, s in zip(owners, streams, strict=True):
        [q] = await wait_processed(db, owner, s["id"], 1)
        assert q["frames"] == CLIP_FRAMES and not q["dropped"]
        got = await segments(db, owner, s["id"])
        assert {(x["rendition"], x["sequence"]) for x in got} == {("480p", 0), ("360p", 0)}
        assert all(x["path"].startswith(f"{s['id']}/") for x in got)
        await client.post(f"/api/live-streaming/end/{s['id']}", headers=owner.auth)


# --- failures the stream survives ------------------------------------------------------


async def test_a_publisher_that_drops_may_reconnect_within_the_grace_period(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid, key = stream["id"], stream["stream_key"]
    first = await publish(settings, key)
    await wait_live(client, owner, sid)
    await asyncio.sleep(2.5)  # mid-clip
    first.send_signal(signal.SIGKILL)  # no unpublish: the connection just goes away
    await first.wait()
    again = await publish(settings, key, realtime=False)  # the same key, at once
    assert (await finished(again))[0] == 0

    q = await wait_processed(db, owner, sid, 2)
    assert [x["dropped"] for x in q] == [False, False]
    assert 0 < q[0]["frames"] < CLIP_FRAMES and q[1]["frames"] == CLIP_FRAMES
    assert await status_of(client, owner, sid) == "live"  # the drop did not end it
    index = (
        await client.get(f"/api/live-streaming/{sid}/hls/480p/index.m3u8", headers=owner.auth)
    ).text
    assert index.count("#EXT-X-DISCONTINUITY\n") == 1
    assert (
        index.index("00000000.ts")
        < index.index("#EXT-X-DISCONTINUITY\n")
        < index.index("00000001.ts")
    )
    events = (
        await client.get(
            f"/api/live-streaming/{sid}/events", headers=owner.auth, params={"limit": 100}
        )
    ).json()["items"]
    kinds = [e["type"] for e in events]
    assert kinds.count("ingest_connected") == 2 and "stream_ended" not in kinds
    await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)


def crafted_flv(tmp: Path, corrupt: int, parts: int = 3) -> Path:
    """The clip `parts` times in a row on one timeline, as one FLV; the keyframe of part
    `corrupt` has garbage in the middle of its slice data (the FLV itself is intact, so
    ffmpeg publishes it; the segment cannot be decoded without errors)."""
    out_path = tmp / "crafted.flv"
    with av.open(str(CLIP)) as src, av.open(str(out_path), "w", format="flv") as out:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vout, aout = out.add_stream_from_template(vin), out.add_stream_from_template(ain)
        packets = [p for p in src.demux(vin, ain) if p.size]
        length = max((p.pts + (p.duration or 0)) * p.time_base for p in packets)
        for part in range(parts):
            for p in packets:
                data = bytes(p)
                if part == corrupt and p.stream.type == "video" and p.is_keyframe:
                    garbage = np.random.default_rng(7).integers(0, 256, 2000, np.uint8).tobytes()
                    mid = len(data) // 3
                    data = data[:mid] + garbage + data[mid + len(garbage) :]
                q = av.Packet(data)
                shift = round(length * part / p.time_base)
                q.pts, q.dts = p.pts + shift, p.dts + shift
                q.duration, q.time_base, q.is_keyframe = p.duration, p.time_base, p.is_keyframe
                q.stream = vout if p.stream.type == "video" else aout
                out.mux(q)
    return out_path


async def test_a_corrupt_segment_is_recorded_and_the_stream_goes_on(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tmp_path: Path,
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    source = crafted_flv(tmp_path, corrupt=1)
    publisher = await publish(settings, stream["stream_key"], source, realtime=False)
    assert (await finished(publisher))[0] == 0

    q = await wait_processed(db, owner, sid, 3)
    assert [x["dropped"] for x in q] == [False, True, False]
    assert "corrupt segment" in q[1]["error"]

    async def upper_rung() -> list[dict[str, Any]] | None:  # published after the lowest
        got = [s for s in await segments(db, owner, sid) if s["rendition"] == "480p"]
        return got if len(got) >= 2 else None

    got = await eventually(upper_rung, "the 480p segments", 30)
    # Published segments are numbered without a gap; the one after the hole is a discontinuity.
    assert [(s["sequence"], s["source_sequence"], s["discontinuity"]) for s in got] == [
        (0, 0, False),
        (1, 2, True),
    ]
    r = await client.get(
        f"/api/live-streaming/{sid}/events", headers=owner.auth, params={"type": "segment_dropped"}
    )
    [event] = r.json()["items"]
    assert event["data"]["sourceSequence"] == 1
    assert await status_of(client, owner, sid) == "live"
    analytics = (
        await client.get(f"/api/live-streaming/{sid}/analytics", headers=owner.auth)
    ).json()["media"]
    assert (analytics["segments"], analytics["dropped"]) == (2, 1)
    await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)


async def test_a_worker_killed_mid_segment_costs_a_retry_not_a_gap(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings, db: Database
) -> None:
    owner = await make_user("caster")
    stream = await make_stream(owner)
    sid = stream["id"]
    # Two segments at once (not paced), so both workers are busy.
    publisher = await publish(settings, stream["stream_key"], realtime=False, loops=1)
    ingest = ingest_actor.lookup()
    assert ingest is not None

    async def busy_worker() -> Any:
        status = await ingest.status.remote()
        return status["pool"]["busy"][0] if status["pool"]["busy"] else None

    victim = await eventually(busy_worker, "a busy media worker", 60)
    ray.kill(victim, no_restart=True)
    assert (await finished(publisher))[0] == 0

    q = await wait_processed(db, owner, sid, 2)
    assert [x["dropped"] for x in q] == [False, False]
    assert sum(x["retries"] for x in q) >= 1

    async def every_rung() -> list[dict[str, Any]] | None:  # the upper rungs come after
        got = await segments(db, owner, sid)
        return got if len(got) >= 2 * len(LADDER) else None

    got = await eventually(every_rung, "every rung's segments", 30)
    for rendition in LADDER:
        assert [s["sequence"] for s in got if s["rendition"] == rendition] == [0, 1]
    pool = (await ingest.status.remote())["pool"]
    assert pool["retried"] >= 1 and pool["workers"] <= settings.media_workers
    await client.post(f"/api/live-streaming/end/{sid}", headers=owner.auth)


# --- policies, driven in process against the real database and stream actors ---------


async def test_a_segment_over_the_nsfw_threshold_ends_the_stream(
    client: httpx.AsyncClient,
    make_user: Any,
    make_stream: Any,
    settings: Settings,
    db: Database,
    tmp_path: Path,
) -> None:
    """Nothing explicit ships with the tests, so the model is replaced by one that finds
    every frame explicit; the rest (worker, pipeline, database, stream actor) is real."""
    from concurrent.futures import ThreadPoolExecutor

    from actors import stream_actor
    from actors.media_pipeline import StreamPipeline
    from actors.media_worker import SegmentOutcome
    from lumalive.store import streams

    class Explicit:
        def score(self, frames: list[np.ndarray]) -> list[float]:
            return [0.97] * len(frames)

    owner = await make_user("caster")
    sid = uuid.UUID((await make_stream(owner, start=True))["id"])
    async with db.acting(owner.id) as conn:
        row = await streams.get(conn, sid)
    worker = SegmentWorker(settings, moderator_factory=Explicit)

    async def run(job: SegmentJob, data: bytes) -> SegmentOutcome:
        return SegmentOutcome(await asyncio.to_thread(worker.process, job, data))

    async def end_stream(reason: str) -> None:
        handle = stream_actor.get_or_create(sid, owner.id, settings)
        await handle.end.remote(reason)
        stream_actor.stop(handle)

    with ThreadPoolExecutor(2) as executor:
        pipeline = StreamPipeline(row, settings, db, run, executor=executor, end_stream=end_stream)
        await pipeline.open()
        with crafted_flv(tmp_path, corrupt=-1, parts=2).open("rb") as source:
            await pipeline.ingest(source)
        await pipeline.drain()
        await pipeline.close()

    r = await client.get(f"/api/live-streaming/{sid}", headers=owner.auth)
    assert (r.json()["status"], r.json()["end_reason"]) == ("ended", "policy_violation")
    assert await segments(db, owner, str(sid)) == []  # the flagged segment was withheld
    [q] = await quality(db, owner, str(sid))  # and nothing after it was published
    assert q["dropped"] and "withheld" in q["error"]
    events = (
        await client.get(
            f"/api/live-streaming/{sid}/events",
            headers=owner.auth,
            params={"type": "moderation_action"},
        )
    ).json()["items"]
    [event] = events
    assert event["data"]["action"] == "stream_ended"
    assert event["data"]["score"] == pytest.approx(0.97)
    [m] = await rows(
        db,
        owner,
        "SELECT flagged, max_score, frames_scored FROM segment_moderation WHERE stream_id = :s",
        str(sid),
    )
    assert m["flagged"] and m["frames_scored"] >= 5


async def test_without_a_publisher_for_the_grace_period_the_stream_ends(
    client: httpx.AsyncClient, make_user: Any, make_stream: Any, settings: Settings
) -> None:
    """A second ingest (in process, on its own port, with a 1 s grace period), published
    to with audio only: the stream starts, the input is refused as unusable (no video),
    and once the publisher has gone for the grace period the stream ends."""
    from actors.ingest_actor import ClusterIngest
    from tests.utils.api import free_port

    service = ClusterIngest(
        settings.model_copy(update={"rtmp_port": free_port(), "reconnect_grace_s": 1.0})
    )
    port = await service.start()
    try:
        owner = await make_user("caster")
        stream = await make_stream(owner)
        sid = stream["id"]
        audio_only = await asyncio.create_subprocess_exec(
            "ffmpeg",
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(CLIP),
            "-vn",
            "-c:a",
            "copy",
            "-f",
            "flv",
            f"rtmp://127.0.0.1:{port}/live/{stream['stream_key']}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await finished(audio_only)

        async def ended() -> bool:
            return await status_of(client, owner, sid) == "ended"

        await eventually(ended, "the stream to end", 30)
        r = await client.get(f"/api/live-streaming/{sid}", headers=owner.auth)
        assert r.json()["end_reason"] == "publisher_timeout"
        events = (await client.get(f"/api/live-streaming/{sid}/events", headers=owner.auth)).json()[
            "items"
        ]
        kinds = [e["type"] for e in events]
        assert kinds[0] == "stream_started" and "ingest_error" in kinds
        assert kinds.index("ingest_disconnected") < kinds.index("stream_ended")
    finally:
        await service.stop()
