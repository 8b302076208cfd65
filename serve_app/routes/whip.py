"""WHIP ingest (RFC 9725): a stream's owner goes live from a browser.

    POST   /api/live-streaming/{id}/whip             SDP offer → 201, SDP answer, Location
    DELETE /api/live-streaming/{id}/whip/{resource}  end the publish → 200
    PATCH  /api/live-streaming/{id}/whip/{resource}  405: no trickle ICE or ICE restart;
                                                      the offer carries every candidate

The route checks who may publish (the owner, by bearer token: 404 for a stream the
caller cannot see, 403 for someone else's) and that the body is an offer it can
answer, then hands the offer to the ingest actor (`actors.whip_gateway`), where the
peer connection lives; the API replica keeps no state of the publish.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from actors import whip_gateway
from media.webrtc import check_offer
from serve_app.deps import AccessDep, CurrentUser, rate_limited
from serve_app.responses import ERRORS
from serve_app.sdp_exchange import ANSWER, OFFER_BODY, answered, read_offer

router = APIRouter(prefix="/api/live-streaming", tags=["whip"], responses=ERRORS)


@router.post(
    "/{stream_id}/whip",
    status_code=201,
    response_class=Response,
    responses=ANSWER,
    openapi_extra=OFFER_BODY,
    dependencies=[rate_limited("start")],
)
async def whip_publish(
    stream_id: UUID, request: Request, user: CurrentUser, access: AccessDep
) -> Response:
    """Publish the stream from a browser: the body is a complete SDP offer (ICE
    gathered), the answer is complete too. Publishing starts a created stream, under
    the live-stream quota (429); a stream already published, over RTMP or WHIP, is
    409 `already_publishing`; an offer that cannot be answered is 400 `invalid_offer`."""
    await access.owned(user, stream_id)
    offer = await read_offer(request, check_offer)
    peer = request.client.host if request.client else "unknown"
    answer = await whip_gateway.publish(stream_id, user, offer, peer)
    access.invalidate(stream_id)  # publishing may have started it
    return answered(answer.sdp, f"/api/live-streaming/{stream_id}/whip/{answer.resource}")


@router.delete("/{stream_id}/whip/{resource}", response_class=Response)
async def whip_stop(
    stream_id: UUID, resource: str, user: CurrentUser, access: AccessDep
) -> Response:
    """End the browser's publish; the stream then waits for a publisher to come back
    (`reconnect_grace_s`) and ends, as when an RTMP publisher leaves."""
    await access.owned(user, stream_id)
    await whip_gateway.stop(stream_id, resource)
    return Response(status_code=200)


@router.patch("/{stream_id}/whip/{resource}", include_in_schema=False)
async def whip_patch(stream_id: UUID, resource: str) -> Response:
    raise HTTPException(405, "trickle ICE and ICE restarts are not supported", {"Allow": "DELETE"})
