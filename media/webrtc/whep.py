"""One WHEP playback (IETF WHEP, the playback twin of RFC 9725's WHIP): a viewer's
SDP offer answered by an aiortc peer connection that sends a stream's `PacketHub`
packets as they are, never re-encoded per viewer.

    offer ─▶ check_play_offer ─▶ RTCPeerConnection (sendonly; H.264 / Opus) ─▶ answer
    PacketHub ─▶ Subscription ─▶ PacketTrack (av.Packet) ─▶ aiortc pack() ─▶ RTP ══▶ viewer

The viewer sends a complete offer (ICE gathered, no trickle) and gets a complete
answer; there is no renegotiation. aiortc's senders accept `av.Packet`s from a track
and only packetize them (`H264Encoder.pack`, `OpusEncoder.pack`): the per-viewer
cost is RTP, SRTP and the network, not a codec.

Invariants:
- An offer is answered only if it receives video in H.264 (packetization mode 1) and,
  if it has audio, receives Opus; else `InvalidOfferError` before any peer
  connection exists.
- A viewer's video starts at the next keyframe (`media.webrtc.hub`): a picture loss
  indication cannot reach an RTMP publisher, so it is not asked for; the wait is at
  most one GOP (the publisher's keyframe interval).
- The playback ends exactly once (`close`): ICE failed or closed, no connection within
  `connect_timeout_s`, the hub closed (the stream is over), or its owner asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from av.packet import Packet
from av.stream import Stream

from media.webrtc.hub import Kind, PacketHub, Subscription
from media.webrtc.ice import IceServer
from media.webrtc.whip import InvalidOfferError

__all__ = ["PacketTrack", "PlayOffer", "WhepConfig", "WhepPlayback", "check_play_offer"]

log = logging.getLogger(__name__)

_RECEIVING = frozenset({"recvonly", "sendrecv"})
_WATCH_S = 0.5
_CODECS: dict[str, tuple[str, ...]] = {
    "video": ("video/h264", "video/rtx"),
    "audio": ("audio/opus",),
}


@dataclass(frozen=True, slots=True)
class WhepConfig:
    connect_timeout_s: float = 15.0  # answer → ICE/DTLS connected
    ice_servers: tuple[IceServer, ...] = ()


@dataclass(frozen=True, slots=True)
class PlayOffer:
    """What an acceptable offer receives."""

    has_audio: bool


def check_play_offer(sdp: str) -> PlayOffer:
    """What a WHEP offer receives; `InvalidOfferError` if it cannot be answered."""
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
            f"the offer must receive one video track and at most one audio track "
            f"(it has {len(videos)} video, {len(audios)} audio)"
        )
    for media in (*videos, *audios):
        if media.direction not in _RECEIVING:
            raise InvalidOfferError(f"the offer's {media.kind} is {media.direction}, not receiving")
        wanted = _CODECS[media.kind][0]
        names = {c.mimeType.lower() for c in media.rtp.codecs}
        if wanted not in names:
            raise InvalidOfferError(
                f"the offer's {media.kind} does not receive {wanted} (offered {sorted(names)})"
            )
        ice, dtls = media.ice, media.dtls
        if not (ice and ice.usernameFragment and ice.password and dtls and dtls.fingerprints):
            raise InvalidOfferError(f"the offer's {media.kind} has no ICE credentials or DTLS")
    return PlayOffer(has_audio=bool(audios))


class PacketTrack(MediaStreamTrack):
    """A track whose `recv` returns a subscription's encoded packets (`av.Packet`)."""

    def __init__(self, kind: Kind, subscription: Subscription) -> None:
        super().__init__()
        self.kind = kind
        self._subscription = subscription
        self.sent = 0

    async def recv(self) -> Packet[Stream]:  # aiortc sends Packets as they are
        packet = await self._subscription.get(self.kind)  # type: ignore[arg-type]
        if packet is None:
            self.stop()
            raise MediaStreamError
        self.sent += 1
        return packet.to_av()


def _preferred(kind: str) -> list[Any]:
    capabilities = RTCRtpSender.getCapabilities(kind)
    assert capabilities is not None
    return [c for c in capabilities.codecs if c.mimeType.lower() in _CODECS[kind]]


class WhepPlayback:
    """A viewer playing a hub over WebRTC (see module docstring)."""

    def __init__(self, hub: PacketHub, config: WhepConfig) -> None:
        self.id = secrets.token_urlsafe(18)  # names the WHEP resource (its Location)
        self._hub = hub
        self._config = config
        self._subscription = hub.subscribe()
        self._tracks: list[PacketTrack] = []
        self._pc: RTCPeerConnection | None = None
        self._origin = time.monotonic()
        self._watcher: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()
        self.reason: str | None = None

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self._pc.connectionState if self._pc else "new",
            "sent": {t.kind: t.sent for t in self._tracks},
            "dropped": self._subscription.dropped,
        }

    async def answer(self, offer_sdp: str) -> str:
        """Answer the offer (candidates gathered, so complete) and start sending.
        `InvalidOfferError` if it cannot be answered; nothing is left running then."""
        try:
            offer = check_play_offer(offer_sdp)
        except InvalidOfferError:
            await self.close("rejected")
            raise
        ice = [s.to_aiortc() for s in self._config.ice_servers]
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        for kind in ("video", "audio") if offer.has_audio else ("video",):
            track = PacketTrack(kind, self._subscription)
            self._tracks.append(track)
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(_preferred(kind))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # noqa: BLE001 - aiortc raises many kinds for a bad offer
            await self.close("rejected")
            raise InvalidOfferError(f"the offer cannot be answered: {e}") from e
        pc.on("connectionstatechange", self._state_changed)
        self._watcher = asyncio.create_task(self._watch(), name=f"whep-watch-{self.id}")
        answer: str = pc.localDescription.sdp
        return answer

    async def wait_closed(self) -> None:
        await self._ended.wait()

    def close(self, reason: str) -> asyncio.Task[None]:
        """End the playback (idempotent; the first reason counts)."""
        if self._closing is None:
            self.reason = reason
            self._closing = asyncio.create_task(self._close(), name=f"whep-close-{self.id}")
        return self._closing

    async def _state_changed(self) -> None:
        assert self._pc is not None
        state = self._pc.connectionState
        if state in ("failed", "closed"):
            self.close("ice_failed" if state == "failed" else "disconnected")

    async def _watch(self) -> None:
        """Close a playback that never connects, or whose stream is over."""
        assert self._pc is not None
        deadline = self._origin + self._config.connect_timeout_s
        while not self._subscription.closed:
            if self._pc.connectionState != "connected" and time.monotonic() > deadline:
                self.close("connect_timeout")
                return
            await asyncio.sleep(_WATCH_S)
        self.close("stream_ended")

    async def _close(self) -> None:
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        self._hub.unsubscribe(self._subscription)  # the tracks end: the senders stop
        if self._pc is not None:
            with contextlib.suppress(Exception):  # a broken transport must not keep it open
                await self._pc.close()
        self._ended.set()
        log.info("whep %s: ended (%s)", self.id, self.reason)
