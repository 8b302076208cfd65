"""LL-HLS playback (RFC 8216bis, Apple's low-latency extensions): the low-latency master
playlist, each LL rendition's media playlist with parts, blocking reloads and delta
updates, and its init segments, parts and segments.

    /api/live-streaming/{id}/llhls/master.m3u8          LL rungs (fMP4 + parts), then
                                                        the pool's rungs above them
                                                        (classic HLS, ../hls/...)
    /api/live-streaming/{id}/llhls/{rendition}/index.m3u8
        ?_HLS_msn=M[&_HLS_part=P]   blocks until part P of segment M (or anything
                                    later) is listed; M more than 2 segments past the
                                    newest: 400; not there within 3 target durations: 503
        &_HLS_skip=YES|v2           a delta update (EXT-X-SKIP)
    /api/live-streaming/{id}/llhls/{rendition}/init-E.mp4 | S.m4s | S.P.m4s

`/hls/master.m3u8` stays classic MPEG-TS HLS (every player); a stream in latency mode
`normal`, or one whose LL rungs are not made yet, has no LL master (404). Access is
the same as `/hls/...` (`serve_app.viewer.ViewerDep`): a playback token in `?pt=`,
else the bearer token, else anonymous, then the stream's visibility, checked once per
request; every URI in a playlist carries the caller's playback token. A blocking
request that waited across the stream's end gets the live form of the playlist; the
player's next reload gets the ended one (EXT-X-ENDLIST). Playlists are rendered from Postgres rows
(`lumalive.store.llhls`), so any replica serves them, and a replica wakes its
blocked requests on the live encoder's NOTIFY (`serve_app.part_waiter`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response

from lumalive.db import Database
from lumalive.errors import BadRequest, NotFound, Unavailable
from lumalive.store import llhls, media
from media.ladder import Rendition
from media.llhls.parts import init_name, part_name, segment_name
from media.llhls.playlist import (
    LlPart,
    LlSegment,
    RenditionReport,
    Variant,
    ll_master_playlist,
    ll_media_playlist,
)
from serve_app.deps import DbDep, MediaStorageDep, PartWaiterDep, SettingsDep
from serve_app.responses import ERRORS
from serve_app.routes.hls import PLAYLIST_TYPE, RenditionName
from serve_app.segment_response import segment_response
from serve_app.viewer import ViewerDep

router = APIRouter(
    prefix="/api/live-streaming/{stream_id}/llhls", tags=["playback"], responses=ERRORS
)

_FILE = re.compile(r"^(?:init-(\d{1,6})\.mp4|(\d{1,12})\.m4s|(\d{1,12})\.(\d{1,4})\.m4s)$")
_MAX_AHEAD = 2  # segments past the newest a blocking request may ask for (else 400)
_BLOCK_TARGETS = 3  # target durations a blocking request waits at most (then 503)

Position = tuple[int, int]  # (media sequence, part index)


def _file(file: Annotated[str, Path(max_length=24)]) -> re.Match[str]:
    """The file's name parsed; a dependency declared before the viewer's so that a name
    that cannot be one of ours is 404 before the stream is looked up."""
    match = _FILE.match(file)
    if match is None:
        raise NotFound("no such file", "segment_not_found")
    return match


@router.get(
    "/master.m3u8",
    name="llhls_master",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def ll_master(stream_id: UUID, viewer: ViewerDep, db: DbDep) -> Response:
    """The low-latency multivariant playlist: the LL rungs, highest first, then the
    pool's rungs above them (ordinary segments, higher latency)."""
    async with db.acting(viewer.user) as conn:
        rows = await llhls.renditions(conn, stream_id)
        pool = await media.renditions(conn, stream_id)
    if not rows:
        raise NotFound("the stream has no low-latency renditions (yet)", "llhls_not_ready")
    variants = [
        Variant(
            f"{r['name']}/index.m3u8",
            r["bandwidth"],
            r["average_bandwidth"],
            r["width"],
            r["height"],
            r["frame_rate"],
            r["codecs"],
        )
        for r in rows
    ]
    top = max(r["height"] * r["width"] for r in rows)
    above = [Rendition.from_row(r) for r in pool if r["width"] * r["height"] > top]
    variants[:0] = [  # highest first, as the classic master
        Variant(
            f"../../hls/{r.name}/index.m3u8",
            r.bandwidth,
            r.average_bandwidth,
            r.width,
            r.height,
            r.fps,
            next(p["codecs"] for p in pool if p["name"] == r.name),
        )
        for r in above
        if r.tile is None
    ]
    return Response(
        ll_master_playlist(variants, uri_suffix=viewer.suffix),
        media_type=PLAYLIST_TYPE,
        headers={"Cache-Control": viewer.cache()},
    )


@router.get(
    "/{rendition}/index.m3u8",
    name="llhls_media",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def ll_media(
    stream_id: UUID,
    rendition: RenditionName,
    viewer: ViewerDep,
    settings: SettingsDep,
    db: DbDep,
    waiter: PartWaiterDep,
    hls_msn: Annotated[
        int | None, Query(alias="_HLS_msn", ge=0, le=10**12, description="block until")
    ] = None,
    hls_part: Annotated[int | None, Query(alias="_HLS_part", ge=0, le=10**4)] = None,
    hls_skip: Annotated[
        str | None, Query(alias="_HLS_skip", pattern="^(YES|v2)$", description="delta update")
    ] = None,
) -> Response:
    """A LL rendition's playlist: the newest `llhls_window_segments` segments, parts near
    the live edge, a preload hint and the other LL renditions' reports."""
    if hls_part is not None and hls_msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn", "hls_part_without_msn")
    user, ended = viewer.user, viewer.ended
    async with db.acting(user) as conn:
        rows = await llhls.renditions(conn, stream_id)
    info = next((r for r in rows if r["name"] == rendition), None)
    if info is None:
        raise NotFound("no such low-latency rendition", "rendition_not_found")
    if hls_msn is not None and not ended:
        await _block(db, waiter, user, stream_id, rendition, info, (hls_msn, hls_part))
    async with db.acting(user) as conn:
        body = await _render(
            conn, stream_id, rendition, info, rows, settings.llhls_window_segments,
            ended=ended, skip=hls_skip is not None, suffix=viewer.suffix,
            segment_s=settings.segment_seconds,
        )  # fmt: skip
    return Response(body, media_type=PLAYLIST_TYPE, headers={"Cache-Control": viewer.cache()})


@router.get(
    "/{rendition}/{file}",
    name="llhls_file",
    response_class=Response,
    responses={200: {"content": {"video/mp4": {}, "video/iso.segment": {}}}},
)
async def ll_file(
    stream_id: UUID,
    rendition: RenditionName,
    match: Annotated[re.Match[str], Depends(_file)],
    viewer: ViewerDep,
    settings: SettingsDep,
    db: DbDep,
    storage: MediaStorageDep,
    waiter: PartWaiterDep,
) -> Response:
    """An init segment, a segment or a part. Immutable once published; the next part
    (the playlist's preload hint) is answered as soon as it is published."""
    user = viewer.user
    epoch, seg, part_seq, part_index = match.groups()
    async with db.acting(user) as conn:
        rows = await llhls.renditions(conn, stream_id)
        info = next((r for r in rows if r["name"] == rendition), None)
        if info is None:
            raise NotFound("no such low-latency rendition", "rendition_not_found")
        if epoch is not None:
            key: str | None = f"{stream_id}/ll/{rendition}/{init_name(int(epoch))}"
        elif seg is not None:
            row = await llhls.segment(conn, stream_id, rendition, int(seg))
            key = row["path"] if row else None
        else:
            key = None
    if part_seq is not None:
        key = await _part_key(
            db, waiter, user, stream_id, rendition, info, (int(part_seq), int(part_index))
        )
    if key is None:
        raise NotFound("no such segment", "segment_not_found")
    scope = "public" if viewer.public else "private"
    headers = {
        "Cache-Control": f"{scope}, max-age=31536000, immutable",
        "Content-Type": "video/mp4" if epoch is not None else "video/iso.segment",
    }
    try:
        return await segment_response(
            storage, key, headers, public=scope == "public", settings=settings
        )
    except KeyError:
        raise NotFound("segment file is missing", "segment_not_found") from None


# --- blocking -------------------------------------------------------------------------


async def _head(db: Database, user: UUID | None, stream_id: UUID, rendition: str) -> Position:
    async with db.acting(user) as conn:
        return (await llhls.heads(conn, stream_id)).get(rendition, (-1, -1))


async def _block(
    db: Database,
    waiter: Any,
    user: UUID | None,
    stream_id: UUID,
    rendition: str,
    info: dict[str, Any],
    want: tuple[int, int | None],
) -> None:
    """Wait until the playlist holds part `want` (or segment M whole, without a part):
    RFC 8216bis 6.2.5.2. 400 for a request more than two segments ahead; 503 when it
    is not there within three target durations."""
    msn, part = want
    head = await _head(db, user, stream_id, rendition)
    if msn > head[0] + _MAX_AHEAD:
        raise BadRequest(
            f"_HLS_msn {msn} is more than {_MAX_AHEAD} segments past the newest ({head[0]})",
            "hls_msn_too_far",
        )

    async def ready() -> bool:
        if part is not None:
            return await _head(db, user, stream_id, rendition) >= (msn, part)
        async with db.acting(user) as conn:  # segment M whole
            return await llhls.segment(conn, stream_id, rendition, msn) is not None

    timeout = _BLOCK_TARGETS * info["target_duration"]
    if not await waiter.wait_for(stream_id, ready, timeout):
        raise Unavailable(
            f"segment {msn} part {part} was not published within {timeout} s", "part_not_ready"
        )


async def _part_key(
    db: Database,
    waiter: Any,
    user: UUID | None,
    stream_id: UUID,
    rendition: str,
    info: dict[str, Any],
    want: Position,
) -> str | None:
    """A part's storage key; the next part to come (what the preload hint names) is
    waited for, for at most three part targets."""
    found: dict[str, Any] | None = None

    async def ready() -> bool:
        nonlocal found
        async with db.acting(user) as conn:
            found = await llhls.part(conn, stream_id, rendition, *want)
        return found is not None

    if await ready():
        return str(found["path"]) if found else None
    head = await _head(db, user, stream_id, rendition)
    if want not in ((head[0], head[1] + 1), (head[0] + 1, 0)):
        return None
    await waiter.wait_for(stream_id, ready, _BLOCK_TARGETS * info["part_target"])
    return str(found["path"]) if found else None


# --- rendering ------------------------------------------------------------------------


async def _render(
    conn: Any,
    stream_id: UUID,
    rendition: str,
    info: dict[str, Any],
    renditions: list[dict[str, Any]],
    window: int,
    *,
    ended: bool,
    skip: bool,
    suffix: str,
    segment_s: float,
) -> str:
    rows = await llhls.segments(conn, stream_id, rendition, None if ended else window)
    first = rows[0]["sequence"] if rows else 0
    parts = [] if ended else await llhls.parts_from(conn, stream_id, rendition, first)
    heads = await llhls.heads(conn, stream_id)
    by_segment: dict[int, list[dict[str, Any]]] = {}
    for p in parts:
        by_segment.setdefault(p["sequence"], []).append(p)
    segments = [_segment(r, by_segment.get(r["sequence"], [])) for r in rows]
    last = rows[-1]["sequence"] if rows else -1
    open_parts = [p for seq, ps in sorted(by_segment.items()) if seq > last for p in ps]
    if open_parts:
        segments.append(_open_segment(stream_id, rendition, open_parts, rows))
    head = heads.get(rendition)
    if parts:  # the newest listed: a part committed after `parts_from` must not be hinted past
        head = (parts[-1]["sequence"], parts[-1]["part"])
    return ll_media_playlist(
        segments,
        target_duration=info["target_duration"],
        part_target=info["part_target"],
        discontinuity_sequence=rows[0]["discontinuity_sequence"] if rows else 0,
        ended=ended,
        skip=skip,
        preload_hint=None if ended else _hint(head, open_parts, segment_s, info),
        reports=[
            RenditionReport(f"../{r['name']}/index.m3u8", *heads[r["name"]])
            for r in renditions
            if r["name"] != rendition and r["name"] in heads and not ended
        ],
        uri_suffix=suffix,
    )


def _segment(row: dict[str, Any], parts: list[dict[str, Any]]) -> LlSegment:
    seq = row["sequence"]
    return LlSegment(
        sequence=seq,
        duration=row["duration"],
        uri=segment_name(seq),
        map_uri=init_name(row["epoch"]),
        program_date_time=row["program_date_time"],
        parts=tuple(_part(seq, p) for p in parts),
        discontinuity=row["discontinuity"],
    )


def _open_segment(
    stream_id: UUID, rendition: str, parts: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> LlSegment:
    """The segment being filled: its parts so far (those of one segment: the newest)."""
    seq = parts[-1]["sequence"]
    mine = [p for p in parts if p["sequence"] == seq]
    epoch = mine[0]["epoch"]
    return LlSegment(
        sequence=seq,
        duration=sum(p["duration"] for p in mine),
        uri="",
        map_uri=init_name(epoch),
        program_date_time=mine[0]["program_date_time"],
        parts=tuple(_part(seq, p) for p in mine),
        discontinuity=bool(rows) and rows[-1]["epoch"] != epoch,
        complete=False,
    )


def _part(seq: int, p: dict[str, Any]) -> LlPart:
    return LlPart(p["part"], p["duration"], part_name(seq, p["part"]), p["independent"])


def _hint(
    head: Position | None, open_parts: list[dict[str, Any]], segment_s: float, info: dict[str, Any]
) -> str | None:
    """The next part: after the newest, or the next segment's first once the open one
    is as long as a segment (a half part of slack)."""
    if head is None:
        return None
    msn, part = head
    filled = sum(p["duration"] for p in open_parts if p["sequence"] == msn)
    if filled >= segment_s - info["part_target"] / 2:
        return part_name(msn + 1, 0)
    return part_name(msn, part + 1)
