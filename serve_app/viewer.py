"""Who is watching a stream's playback documents (HLS, LL-HLS, tile manifests), as
one FastAPI dependency: every such route resolves the viewer the same way, so the
rule lives here once instead of in each route's parameter list.

Who is asking is the user of a playback token in the query (`?pt=`, what players use:
they cannot send headers), else the bearer token, else anonymous; then the stream's
visibility is checked as that user (`StreamAccess.visible`: 404 for a caller who may
not see it). Every URI a document carries gets `suffix`, a playback token for the
same user, so a standard player needs nothing but the URL.

Use: a route takes `viewer: ViewerDep` (its path has `{stream_id}`) in place of the
user, access, tokens and `pt` parameters; `viewer.cache()` is its Cache-Control. A
route that must check something first declares that check as a dependency before
`ViewerDep` (dependencies run in the order declared), as the HLS segment route does.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple
from urllib.parse import quote
from uuid import UUID

from fastapi import Depends, Query

from lumalive.auth import TokenService
from lumalive.settings import Settings
from lumalive.status import StreamStatus
from serve_app.deps import AccessDep, MaybeUser, SettingsDep, TokensDep
from serve_app.stream_access import StreamAccess

__all__ = ["PlaybackToken", "Viewer", "ViewerDep", "cache_control", "resolve_viewer", "viewer"]

PlaybackToken = Annotated[
    str | None,
    Query(alias="pt", max_length=2048, description="playback token (join's playback_url)"),
]


class Viewer(NamedTuple):
    """The stream as the caller sees it, the caller, and the query every URI carries
    (a tuple: a route may unpack it as `stream, user, suffix`)."""

    stream: dict[str, Any]
    user: UUID | None
    suffix: str

    @property
    def ended(self) -> bool:
        return bool(self.stream["status"] == StreamStatus.ENDED)

    @property
    def public(self) -> bool:
        return bool(self.stream["privacy"] == "public")

    def cache(self, live: str = "no-cache", ended: str = "max-age=300") -> str:
        """Cache-Control of a document about the stream (see `cache_control`)."""
        return cache_control(self.stream, live, ended)


def cache_control(stream: dict[str, Any], live: str, ended: str) -> str:
    """`live` while the stream may still change, else `ended` scoped by its privacy
    (a shared cache may keep only a public stream's documents)."""
    scope = "public" if stream["privacy"] == "public" else "private"
    return live if stream["status"] != StreamStatus.ENDED else f"{scope}, {ended}"


async def resolve_viewer(
    access: StreamAccess,
    tokens: TokenService,
    settings: Settings,
    stream_id: UUID,
    user: UUID | None,
    pt: str | None,
) -> Viewer:
    """The viewer (see module docstring); NotFound if the caller may not see the stream."""
    if pt is not None:
        user = tokens.verify_playback(pt, stream_id)
    elif user is not None:
        pt = tokens.issue_playback(user, stream_id, settings.playback_ttl_s)
    stream = await access.visible(user, stream_id)
    return Viewer(stream, user, f"?pt={quote(pt)}" if pt else "")


async def viewer(
    stream_id: UUID,
    user: MaybeUser,
    access: AccessDep,
    tokens: TokensDep,
    settings: SettingsDep,
    pt: PlaybackToken = None,
) -> Viewer:
    """`resolve_viewer` as a dependency, from the request's path, token and query."""
    return await resolve_viewer(access, tokens, settings, stream_id, user, pt)


ViewerDep = Annotated[Viewer, Depends(viewer)]
