"""What WHIP (publish) and WHEP (playback) share of an offer/answer exchange: they
differ only in the direction and codecs they accept, so the checks of an offer's
shape and the one-shot negotiation live here once and both peers call them.

Invariants:
- An offer is checked before any peer connection exists: `parse_offer` and
  `check_media` raise `InvalidOfferError` with a message naming what is wrong.
- A complete offer gets a complete answer (`negotiate`): no trickle ICE, no
  renegotiation; whatever aiortc raises for a bad offer is an `InvalidOfferError`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import MediaDescription, SessionDescription

__all__ = ["InvalidOfferError", "Offer", "check_media", "ended_reason", "negotiate", "parse_offer"]


class InvalidOfferError(ValueError):
    """The SDP offer cannot be answered (malformed, or nothing we can receive)."""


@dataclass(frozen=True, slots=True)
class Offer:
    """What an acceptable offer sends (WHIP) or receives (WHEP)."""

    has_audio: bool


def parse_offer(sdp: str, verb: str) -> tuple[list[MediaDescription], list[MediaDescription]]:
    """The offer's video and audio sections: exactly one video and at most one audio,
    which `verb` ("send" for WHIP, "receive" for WHEP) names in the error."""
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidOfferError("the body is not an SDP offer (it must start with v=0)")
    try:
        desc = SessionDescription.parse(sdp)
    except (AssertionError, ValueError, IndexError, KeyError) as e:
        raise InvalidOfferError(f"the SDP offer cannot be parsed: {e!r}") from e
    videos = [m for m in desc.media if m.kind == "video"]
    audios = [m for m in desc.media if m.kind == "audio"]
    if len(videos) != 1 or len(audios) > 1:
        raise InvalidOfferError(
            f"the offer must {verb} one video track and at most one audio track "
            f"(it has {len(videos)} video, {len(audios)} audio)"
        )
    return videos, audios


def check_media(
    media: MediaDescription, directions: Collection[str], doing: str, codec_error: str | None
) -> None:
    """A section's direction is one of `directions` (else "… not `doing`"), its codecs
    suit the caller (`codec_error`, its message when they do not), and it carries ICE
    credentials and a DTLS fingerprint; checked in that order."""
    if media.direction not in directions:
        raise InvalidOfferError(f"the offer's {media.kind} is {media.direction}, not {doing}")
    if codec_error is not None:
        raise InvalidOfferError(codec_error)
    ice, dtls = media.ice, media.dtls
    if not (ice and ice.usernameFragment and ice.password and dtls and dtls.fingerprints):
        raise InvalidOfferError(f"the offer's {media.kind} has no ICE credentials or DTLS")


async def negotiate(pc: RTCPeerConnection, offer_sdp: str) -> str:
    """The complete answer to `offer_sdp` (candidates gathered); `InvalidOfferError`
    for whatever aiortc raises on an offer it cannot answer. The caller closes."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as e:  # noqa: BLE001 - aiortc raises many kinds for a bad offer
        raise InvalidOfferError(f"the offer cannot be answered: {e}") from e
    answer: str = pc.localDescription.sdp
    return answer


def ended_reason(connection_state: str) -> str | None:
    """Why a peer connection in this state is over, or None while it is not."""
    if connection_state == "failed":
        return "ice_failed"
    if connection_state == "closed":
        return "disconnected"
    return None
