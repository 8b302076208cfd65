"""WHEP playback (IETF WHEP): a viewer watches a live stream over WebRTC, about a
second behind its publisher instead of HLS's several.

    OPTIONS /api/live-streaming/{id}/whep             204: what the endpoint accepts
    POST    /api/live-streaming/{id}/whep             SDP offer → 201, SDP answer, Location
    DELETE  /api/live-streaming/{id}/whep/{resource}  end the playback → 200
    PATCH   /api/live-streaming/{id}/whep/{resource}  405: no trickle ICE or ICE restart;
                                                       the offer carries every candidate

Access is HLS's (`serve_app.routes.hls`): the user of a playback token (`?pt=`), else
the bearer token's, else anonymous; the stream must be visible to them
(`StreamAccess.visible`: 404 for a private or friends-only stream they may not see,
403 for a user banned from it) and live (409 `stream_not_live`). The session's
resource id is an unguessable capability: DELETE needs it, not a token (a WHEP
player sends no credentials on DELETE). The peer connection lives in the ingest
actor (`actors.whep_egress`); this replica keeps no state of it.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from actors import whip_gateway
from lumalive.errors import Conflict
from lumalive.status import StreamStatus
from media.webrtc import check_play_offer
from serve_app.callers import client_address
from serve_app.deps import AccessDep, MaybeUser, SettingsDep, TokensDep
from serve_app.responses import ERRORS
from serve_app.sdp_exchange import ANSWER, OFFER_BODY, SDP, answered, read_offer
from serve_app.viewer import PlaybackToken

router = APIRouter(prefix="/api/live-streaming", tags=["playback"], responses=ERRORS)


@router.options("/{stream_id}/whep", status_code=204, include_in_schema=False)
async def whep_options(stream_id: UUID) -> Response:
    return Response(status_code=204, headers={"Allow": "OPTIONS, POST", "Accept-Post": SDP})


@router.post(
    "/{stream_id}/whep",
    status_code=201,
    response_class=Response,
    responses=ANSWER,
    openapi_extra=OFFER_BODY,
)
async def whep_play(
    stream_id: UUID,
    request: Request,
    user: MaybeUser,
    access: AccessDep,
    tokens: TokensDep,
    settings: SettingsDep,
    pt: PlaybackToken = None,
) -> Response:
    """Watch the live stream over WebRTC: the body is a complete SDP offer (ICE
    gathered) that receives H.264 video and, optionally, Opus audio; the answer is
    complete too. Who may watch is who may play its HLS. Too many sessions on the
    stream or from the caller is 429; an offer that cannot be answered is 400
    `invalid_offer`; a stream not being published is 409 `stream_not_live`, and one whose
    video WebRTC cannot carry (HEVC/AV1 with no low-latency H.264 rung: latencyMode normal)
    is 409 `whep_unavailable` (its HLS plays it)."""
    if pt is not None:
        user = tokens.verify_playback(pt, stream_id)
    stream = await access.visible(user, stream_id)
    if stream["status"] != StreamStatus.LIVE:
        raise Conflict(f"stream is {stream['status']}, not live", "stream_not_live")
    offer = await read_offer(request, check_play_offer)
    caller = str(user) if user else f"ip:{client_address(request, settings.trusted_proxies)}"
    answer = await whip_gateway.play(stream_id, caller, offer)
    return answered(answer.sdp, f"/api/live-streaming/{stream_id}/whep/{answer.resource}")


@router.delete("/{stream_id}/whep/{resource}", response_class=Response)
async def whep_stop(stream_id: UUID, resource: str) -> Response:
    """End the playback (its Location is the capability; no token needed)."""
    await whip_gateway.end_play(stream_id, resource)
    return Response(status_code=200)


@router.patch("/{stream_id}/whep/{resource}", include_in_schema=False)
async def whep_patch(stream_id: UUID, resource: str) -> Response:
    raise HTTPException(405, "trickle ICE and ICE restarts are not supported", {"Allow": "DELETE"})
