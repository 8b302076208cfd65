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
- A viewer's video starts at a keyframe (`media.webrtc.hub`): the hub's cached GOP
  when it has one (the picture comes at once), else the next one. A picture loss
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

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet
from av.stream import Stream

from media.webrtc.hub import Kind, PacketHub, Subscription
from media.webrtc.ice import IceServer
from media.webrtc.sdp import (
    InvalidOfferError,
    Offer,
    check_media,
    ended_reason,
    negotiate,
    parse_offer,
)

__all__ = ["PacketTrack", "WhepConfig", "WhepPlayback", "check_play_offer"]

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


def check_play_offer(sdp: str) -> Offer:
    """What a WHEP offer receives; `InvalidOfferError` if it cannot be answered."""
    videos, audios = parse_offer(sdp, "receive")
    for media in (*videos, *audios):
        wanted = _CODECS[media.kind][0]
        names = {c.mimeType.lower() for c in media.rtp.codecs}
        missing = f"the offer's {media.kind} does not receive {wanted} (offered {sorted(names)})"
        check_media(media, _RECEIVING, "receiving", None if wanted in names else missing)
    return Offer(has_audio=bool(audios))


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
            answer = await negotiate(pc, offer_sdp)
        except InvalidOfferError:
            await self.close("rejected")
            raise
        pc.on("connectionstatechange", self._state_changed)
        self._watcher = asyncio.create_task(self._watch(), name=f"whep-watch-{self.id}")
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
        if (reason := ended_reason(self._pc.connectionState)) is not None:
            self.close(reason)

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
