"""Response bodies: what each route answers, so the OpenAPI document has real shapes.

Clients generate their types from `/openapi.json` (openapi-typescript), so these
must be exact: a field that may be absent is not required, one that may be null
is nullable, and statuses, tiers and privacy are enums. REST resources keep the
database's snake_case names; events follow the event contract (camelCase,
`serve_app.events`). Every model allows extra keys, so a column added later
reaches clients before it is documented here rather than being dropped.

`ERRORS` documents the one error shape (`serve_app.errors`) for every route.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from serve_app.schemas import Privacy, Quality

__all__ = [
    "ERRORS",
    "ErrorBody",
    "Stream",
    "OwnedStream",
    "StreamPage",
    "RecommendedPage",
    "Joined",
    "Left",
    "ChatMessage",
    "SentChat",
    "ChatPage",
    "Reaction",
    "Event",
    "EventPage",
    "StreamAnalytics",
    "Invited",
    "Report",
    "Friendship",
    "Overview",
]

Status = Literal["created", "live", "ended"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Out):
    code: str = Field(description="stable machine-readable code, e.g. `stream_not_live`")
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("bad request, e.g. a forged cursor (`invalid_cursor`)"),
    401: _error("missing, forged or expired token, or a deleted user"),
    403: _error("not the owner of a stream you can see"),
    404: _error("not found, or not visible to you"),
    409: _error("wrong lifecycle state, or a duplicate"),
    413: _error("body over `LUMALIVE_MAX_BODY_BYTES`"),
    422: _error("validation failed"),
    429: _error("rate limited or over a quota; see `Retry-After`"),
    503: _error("database or stream actor unavailable; see `Retry-After`"),
}


# -- streams --------------------------------------------------------------------
class _StreamColumns(_Out):
    id: UUID
    user_id: UUID
    title: str
    description: str
    quality: Quality
    bitrate: int = Field(description="kbps")
    status: Status
    is_live: bool
    viewers: int
    peak_viewers: int
    duration: int = Field(description="seconds live (set when the stream ends)")
    privacy: Privacy
    category: str
    tags: list[str]
    is_nsfw: bool
    ai_features: dict[str, Any]
    end_reason: str | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    updated_at: datetime
    latency_mode: Literal["low", "normal"] = Field(
        default="low", description="low: LL-HLS at /llhls/master.m3u8 too; normal: HLS only"
    )


class RenditionTile(_Out):
    """Where a 20K tile sits in the whole tiled frame (pixels of that frame)."""

    row: int
    col: int
    x: int
    y: int
    frame_width: int
    frame_height: int


class StreamRendition(_Out):
    name: str = Field(description="the HLS path part, e.g. `1080p`, or a tile's `20K_r0c4`")
    width: int
    height: int
    video_kbps: int
    audio_kbps: int
    codec: Literal["h264", "hevc"]
    codecs: str = Field(description="RFC 6381; once encoded, read back from the bitstream")
    frame_rate: float | None = Field(description="the source's; null in a plan")
    needs_upscale: bool = Field(description="above the source: made by AI super-resolution")
    upscale_passes: int = Field(description="learned x2 passes (the rest, if any, bicubic)")
    tile: RenditionTile | None = Field(description="set on the tiles of a 20K stream")


class StreamRenditions(_Out):
    basis: Literal["plan", "encoded"] = Field(
        description="`plan`: before the first segment, what the tier, bitrate and enableAI"
        " give a source at the tier's size (the largest ingestible, 8K, for 20K) at 30 fps;"
        " a smaller source gets fewer rungs. `encoded`: the ladder the first segment fixed"
    )
    reason: str | None = Field(description="why there is less than the tier, e.g. 20K tiling")
    items: list[StreamRendition] = Field(description="the ladder, highest first, then tiles")


class Stream(_StreamColumns):
    analytics: dict[str, Any] | None = Field(
        description="the stream's counters; null except for its owner"
    )
    renditions: StreamRenditions | None = Field(
        default=None, description="what the stream is (or will be) encoded to"
    )


class Ingest(_Out):
    server: str = Field(description="RTMP server URL for OBS")
    stream_key: str | None
    url: str = Field(description="server and key in one URL, for ffmpeg")


class OwnedStream(Stream):
    """A stream as its owner gets it (create, and GET by the owner): with the key."""

    stream_key: str | None = Field(default=None, description="owner only")
    ingest: Ingest | None = Field(default=None, description="owner only")


class StreamPage(_Out):
    items: list[Stream]
    next_cursor: str | None


class RecommendedStream(_StreamColumns):
    score: float
    popularity: float = Field(ge=0, le=1)
    relevance: float | None = Field(description="null without watch history")


class RecommendedPage(_Out):
    items: list[RecommendedStream]
    personalised: bool


# -- inside a stream ----------------------------------------------------------------
class Joined(_Out):
    joined: bool
    viewers: int
    playback_url: str = Field(description="HLS master playlist with a playback token")
    ll_playback_url: str | None = Field(
        description="LL-HLS master playlist with the same token (play it with a low-latency"
        " player, e.g. hls.js lowLatencyMode); null when the stream's latencyMode is normal"
    )


class Left(_Out):
    left: bool
    watch_duration: int | None = Field(description="seconds; null if you were not watching")
    viewers: int


class ChatMessage(_Out):
    id: UUID
    seq: int
    stream_id: UUID
    user_id: UUID
    message: str
    is_deleted: bool
    is_moderated: bool
    created_at: datetime


class SentChat(ChatMessage):
    moderation_score: float = Field(ge=0, le=1)


class ChatPage(_Out):
    items: list[ChatMessage]
    next_cursor: int | None = Field(description="pass as `before` for older messages")


class Reaction(_Out):
    id: UUID
    stream_id: UUID
    user_id: UUID
    reaction: str
    created_at: datetime


class Event(_Out):
    """The event contract (SSE, WebSocket and this list alike)."""

    id: int = Field(description="the event's seq: a cursor and SSE resume point")
    type: str = Field(
        description="stream_started, stream_ended, viewer_joined, viewer_left, chat_message,"
        " reaction, moderation_action, report, ingest_*, segment_dropped, ..."
    )
    streamId: UUID
    createdAt: datetime
    data: dict[str, Any] = Field(
        description="camelCase keys as the reader may see them, e.g. userId and username,"
        " message, messageId, reaction, watchDuration, reason"
    )


class EventPage(_Out):
    items: list[Event]
    next_cursor: int = Field(description="pass as `since` to go on")


class LatencyMs(_Out):
    p50: float | None
    p95: float | None
    max: float | None


class MediaModeration(_Out):
    segments: int
    frames_scored: int
    max_score: float | None
    flagged: int
    unavailable: int


class MediaStats(_Out):
    segments: int
    source_segments: int
    published_seconds: float | None
    dropped: int
    retried: int
    input_fps: float | None
    input_bitrate_kbps: float | None
    processing_latency_ms: LatencyMs
    moderation: MediaModeration


class StreamAnalytics(_Out):
    stream_id: UUID
    status: Status
    current_viewers: int
    peak_viewers: int
    unique_viewers: int
    total_watch_time_s: float
    average_watch_time_s: float
    chat_messages: int
    moderated_messages: int
    chat_messages_per_minute: float
    reactions: dict[str, int] = Field(description="count by reaction")
    reaction_total: int
    engagement_rate: float = Field(ge=0, le=1)
    duration_s: int
    media: MediaStats


class Invited(_Out):
    stream_id: UUID
    user_id: UUID
    invited: bool
    new: bool = Field(description="false if the user was already invited")


class Report(_Out):
    id: UUID
    stream_id: UUID
    reporter_id: UUID
    reason: str
    details: str
    created_at: datetime


class Friendship(_Out):
    user_id: UUID
    status: Literal["pending", "accepted"]


# -- analytics overview -------------------------------------------------------------
class _Volume(_Out):
    watch_seconds: int
    viewer_sessions: int
    chat_messages: int
    reactions: int


class OverviewTotals(_Volume):
    streams: int
    viewer_days: int
    peak_viewers: int
    engaged_viewer_days: int
    moderated_messages: int
    engagement_rate: float


class OverviewDay(_Volume):
    day: date
    streams: int
    unique_viewers: int
    peak_viewers: int


class OverviewStream(_Volume):
    stream_id: UUID
    title: str
    category: str
    quality: Quality
    days: int
    viewer_days: int
    peak_viewers: int
    engaged_viewer_days: int
    moderated_messages: int
    engagement_rate: float


class OverviewCategory(_Volume):
    category: str
    quality: Quality
    streams: int


class Overview(_Out):
    since: date
    until: date
    computed_at: datetime | None = Field(description="last analytics run; null before the first")
    totals: OverviewTotals
    daily: list[OverviewDay]
    streams: list[OverviewStream]
    by_category: list[OverviewCategory]
