"""The HTTP side of an SDP offer/answer exchange, shared by WHIP (publish) and WHEP
(playback): both take a complete offer as `application/sdp` and answer 201 with the
SDP answer and the resource's Location, so the body handling and the OpenAPI
description live here once.

Invariants:
- A body that is not `application/sdp` is 400 `invalid_content_type`; one that is not
  UTF-8 or that the caller's check rejects is 400 `invalid_offer`, before any actor
  is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response

from lumalive.errors import BadRequest
from media.webrtc import InvalidOfferError

__all__ = ["ANSWER", "OFFER_BODY", "SDP", "answered", "read_offer"]

SDP = "application/sdp"
OFFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {SDP: {"schema": {"type": "string"}, "example": "v=0\r\no=- …"}},
    }
}
ANSWER: dict[int | str, dict[str, Any]] = {
    201: {"description": "the SDP answer", "content": {SDP: {}}}
}


async def read_offer(request: Request, check: Callable[[str], object]) -> str:
    """The body as an SDP offer `check` accepts (it raises `InvalidOfferError`
    otherwise); BadRequest if it is not one."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != SDP:
        raise BadRequest(f"the body must be an SDP offer ({SDP})", "invalid_content_type")
    try:
        offer = (await request.body()).decode("utf-8")
        check(offer)
    except (UnicodeDecodeError, InvalidOfferError) as e:
        raise BadRequest(str(e), "invalid_offer") from None
    return offer


def answered(answer_sdp: str, location: str) -> Response:
    """201 with the SDP answer and the session resource's Location."""
    return Response(answer_sdp, status_code=201, media_type=SDP, headers={"Location": location})
