"""HLS playback: the master playlist, each rendition's media playlist, its segments.

Playlists are rendered from Postgres rows (`lumalive.store.media`), so any replica
serves them: live, a sliding window of the newest `live_window_segments` segments;
ended, every segment and EXT-X-ENDLIST (VOD).

Access: who is asking is the user of a playback token in the query (`?pt=`, what
players use: they cannot send headers), else the bearer token, else anonymous; then
the stream's visibility is checked as that user, like every other read. Callers who
may not see the stream get 404 on every path. Every URI inside a playlist carries a
playback token for the same user, so a standard player needs nothing but the URL.

This is the classic ladder (whole segments, every player). A stream in latency mode `low` is
also served as LL-HLS (CMAF parts, blocking reload) by `serve_app.routes.llhls`, under
`/llhls/`, with the same access rules (it reuses `_viewer` and `_cache`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Path, Query, Response

from lumalive.auth import TokenService
from lumalive.errors import NotFound
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from lumalive.store import media
from media.ladder import Rendition
from media.playlist import SegmentRecord, master_playlist, media_playlist, segment_name
from serve_app.deps import (
    AccessDep,
    DbDep,
    MaybeUser,
    MediaStorageDep,
    SettingsDep,
    TokensDep,
)
from serve_app.responses import ERRORS
from serve_app.segment_response import segment_response
from serve_app.stream_access import StreamAccess

router = APIRouter(
    prefix="/api/live-streaming/{stream_id}/hls", tags=["playback"], responses=ERRORS
)

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
# MPEG-TS, or an fMP4 (HDR) rendition's .m4s media segments and its init.mp4 (sql/0011).
_SEGMENT = re.compile(r"^(?:(\d{1,12})\.(ts|m4s)|init\.mp4)$")

RenditionName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,20}$")]
PlaybackToken = Annotated[
    str | None,
    Query(alias="pt", max_length=2048, description="playback token (join's playback_url)"),
]


async def _viewer(
    access: StreamAccess,
    tokens: TokenService,
    settings: Settings,
    stream_id: UUID,
    user: UUID | None,
    pt: str | None,
) -> tuple[dict[str, Any], UUID | None, str]:
    """The stream as the caller sees it, the caller, and the query every URI in a
    playlist carries. NotFound if the caller may not see the stream."""
    if pt is not None:
        user = tokens.verify_playback(pt, stream_id)
    elif user is not None:
        pt = tokens.issue_playback(user, stream_id, settings.playback_ttl_s)
    stream = await access.visible(user, stream_id)
    return stream, user, f"?pt={quote(pt)}" if pt else ""


def _cache(stream: dict[str, Any], live: str, ended: str) -> str:
    scope = "public" if stream["privacy"] == "public" else "private"
    return live if stream["status"] != StreamStatus.ENDED else f"{scope}, {ended}"


@router.get(
    "/master.m3u8",
    name="hls_master",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def master(
    stream_id: UUID,
    user: MaybeUser,
    access: AccessDep,
    tokens: TokensDep,
    settings: SettingsDep,
    db: DbDep,
    pt: PlaybackToken = None,
) -> Response:
    """The multivariant playlist: one entry per rendition, highest first."""
    stream, user, suffix = await _viewer(access, tokens, settings, stream_id, user, pt)
    async with db.acting(user) as conn:
        rows = await media.renditions(conn, stream_id)
    if not rows:
        raise NotFound("the stream has no media yet", "media_not_ready")
    renditions = [Rendition.from_row(r) for r in rows]
    body = master_playlist(
        renditions, codecs={r["name"]: r["codecs"] for r in rows}, uri_suffix=suffix
    )
    return Response(
        body,
        media_type=PLAYLIST_TYPE,
        headers={"Cache-Control": _cache(stream, "no-cache", "max-age=300")},
    )


@router.get(
    "/{rendition}/index.m3u8",
    response_class=Response,
    responses={200: {"content": {PLAYLIST_TYPE: {}}}},
)
async def media_index(
    stream_id: UUID,
    rendition: RenditionName,
    user: MaybeUser,
    access: AccessDep,
    tokens: TokensDep,
    settings: SettingsDep,
    db: DbDep,
    pt: PlaybackToken = None,
) -> Response:
    """A rendition's playlist: the live window, or every segment once the stream ended."""
    stream, user, suffix = await _viewer(access, tokens, settings, stream_id, user, pt)
    ended = stream["status"] == StreamStatus.ENDED
    window = None if ended else settings.live_window_segments
    async with db.acting(user) as conn:
        rows = await media.playlist(conn, stream_id, rendition, window)
        if not rows and rendition not in {
            r["name"] for r in await media.renditions(conn, stream_id)
        }:
            raise NotFound("no such rendition", "rendition_not_found")
    records = [
        SegmentRecord(
            sequence=r["sequence"],
            uri=segment_name(r["sequence"], r["path"].rsplit(".", 1)[-1]),  # ts | m4s
            duration=r["duration"],
            size=r["bytes"],
            program_date_time=r["program_date_time"],
            discontinuity=r["discontinuity"],
            gap=r["gap"],
        )
        for r in rows
    ]
    body = media_playlist(
        records,
        ended=ended,
        target_duration=rows[-1]["target_duration"]
        if rows
        else max(1, round(settings.segment_seconds)),
        discontinuity_sequence=rows[0]["discontinuity_sequence"] if rows else 0,
        playlist_type="VOD" if ended else None,
        uri_suffix=suffix,
        # fMP4 (HDR) renditions: their init segment (media.cmaf, sql/0011).
        map_uri="init.mp4" if rows and rows[0]["path"].endswith(".m4s") else None,
    )
    return Response(
        body,
        media_type=PLAYLIST_TYPE,
        headers={"Cache-Control": _cache(stream, "no-cache", "max-age=300")},
    )


@router.get(
    "/{rendition}/{segment}",
    response_class=Response,
    responses={200: {"content": {SEGMENT_TYPE: {}}}},
)
async def media_segment(
    stream_id: UUID,
    rendition: RenditionName,
    segment: Annotated[str, Path(max_length=20)],
    user: MaybeUser,
    access: AccessDep,
    tokens: TokensDep,
    settings: SettingsDep,
    db: DbDep,
    storage: MediaStorageDep,
    pt: PlaybackToken = None,
) -> Response:
    """One segment (MPEG-TS). Immutable once published."""
    match = _SEGMENT.match(segment)
    if match is None:
        raise NotFound("no such segment", "segment_not_found")
    stream, user, _ = await _viewer(access, tokens, settings, stream_id, user, pt)
    async with db.acting(user) as conn:
        if match.group(1) is None:
            row = await media.init_segment(conn, stream_id, rendition)
        else:
            row = await media.segment(conn, stream_id, rendition, int(match.group(1)))
    if row is None or (match.group(2) and not row["path"].endswith("." + match.group(2))):
        raise NotFound("no such segment", "segment_not_found")
    scope = "public" if stream["privacy"] == "public" else "private"
    headers = {"Cache-Control": f"{scope}, max-age=31536000, immutable"}
    if not segment.endswith(".ts"):  # RFC 8216 3.3 / 3.5; Starlette keeps a given type
        headers["Content-Type"] = "video/mp4" if match.group(1) is None else "video/iso.segment"
    try:  # a file, proxied from a bucket (Range too), or a presigned redirect
        return await segment_response(
            storage, row["path"], headers, public=scope == "public", settings=settings
        )
    except KeyError:
        raise NotFound("segment file is missing", "segment_not_found") from None
