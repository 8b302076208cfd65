"""One WHIP publish (RFC 9725): a browser's SDP offer answered by an aiortc peer
connection whose received media is re-encoded into an `IngestSession`'s FLV, the
same live byte stream an RTMP publish produces.

    offer ─▶ check_offer ─▶ RTCPeerConnection (recvonly; H.264 preferred) ─▶ answer
    browser ══ICE/DTLS/SRTP══▶ aiortc decodes ─▶ PendingFrames ─▶ MediaEncoder ─▶ session
                                                (per track)       (a thread per track)

The browser sends a complete offer (ICE gathered, no trickle) and gets a complete
answer; there is no renegotiation.

Invariants:
- An offer is answered only if it sends exactly one video track in a codec aiortc
  decodes (H.264 or VP8), and at most one audio track; else `InvalidOfferError`,
  before any peer connection exists.
- The answer puts H.264 first: a browser that can send H.264 does.
- Each track's frames are encoded in a thread of its own, in arrival order; the event
  loop only moves frames and tags. A frame's time is read when aiortc hands it over,
  never after waiting for the encoder.
- An encoder that falls behind builds no backlog (`media.webrtc.pending`): at most
  `_VIDEO_WAITING` pictures wait (older ones are dropped: the video's frame rate
  follows the CPU) and `_AUDIO_WAITING` sound frames.
- The publish ends exactly once (`close`): ICE failed or closed, no connection within
  `connect_timeout_s`, no media for `idle_timeout_s`, or its owner asked. Then what
  the encoders hold is flushed into the session and the session ends with the reason
  (its readers read EOF after the last tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from media.rtmp import IngestSession, amf0
from media.webrtc.frames import FlvTag, MediaEncoder
from media.webrtc.ice import IceServer
from media.webrtc.pending import PendingFrames
from media.webrtc.sdp import (
    InvalidOfferError,
    Offer,
    check_media,
    ended_reason,
    negotiate,
    parse_offer,
)

__all__ = ["InvalidOfferError", "Offer", "WhipConfig", "WhipPublish", "check_offer"]

log = logging.getLogger(__name__)

Encode = Callable[[Any, float], list[FlvTag]]  # a frame and its arrival time → tags

_VIDEO_CODECS = frozenset({"h264", "vp8"})  # what aiortc decodes
_AUDIO_CODECS = frozenset({"opus", "pcmu", "pcma", "g722"})
_SENDING = frozenset({"sendonly", "sendrecv"})
_WATCH_S = 0.5
_STOP_S = 2.0  # how long a receive loop may take to return once the connection closed
_FLV_AVC, _FLV_AAC = 7.0, 10.0  # onMetaData codec ids
# The frame rate onMetaData announces: a browser camera's (getUserMedia's default) and
# the most it sends. Without one the FLV demuxer guesses 1000 (its time base), and
# the ladder and playlists would say FRAME-RATE=1000.
_NOMINAL_FPS = 30.0
_VIDEO_WAITING = 1  # pictures waiting for the encoder thread: the newest only
_AUDIO_WAITING = 250  # 5 s of 20 ms frames: sound is cheap to encode, gaps are not


@dataclass(frozen=True, slots=True)
class WhipConfig:
    """How publishes are received and encoded."""

    keyframe_interval_s: float = 2.0  # the segment length: the segmenter cuts at keyframes
    x264_preset: str = "veryfast"
    connect_timeout_s: float = 15.0  # answer → ICE/DTLS connected
    idle_timeout_s: float = 30.0  # connected, yet no frame for this long
    ice_servers: tuple[IceServer, ...] = ()


def check_offer(sdp: str) -> Offer:
    """What a WHIP offer publishes; `InvalidOfferError` if it cannot be answered."""
    videos, audios = parse_offer(sdp, "send")
    for media, codecs in ((videos[0], _VIDEO_CODECS), *((a, _AUDIO_CODECS) for a in audios)):
        names = {c.mimeType.split("/")[-1].lower() for c in media.rtp.codecs}
        unsupported = (
            f"no {media.kind} codec the server decodes in the offer "
            f"(offered {sorted(names)}, supported {sorted(codecs)})"
        )
        check_media(media, _SENDING, "sending", None if names & codecs else unsupported)
    return Offer(has_audio=bool(audios))


def _h264_first(kind: str) -> list[Any]:
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    assert capabilities is not None  # audio and video always have some
    return sorted(capabilities.codecs, key=lambda c: c.mimeType.lower() != "video/h264")


class WhipPublish:
    """A browser publishing to `session` over WebRTC (see module docstring)."""

    def __init__(self, session: IngestSession, config: WhipConfig) -> None:
        self.session = session
        self.id = secrets.token_urlsafe(18)  # names the WHIP resource (its Location)
        self.video_codec: str | None = None  # as negotiated in the answer
        self._config = config
        self._pc: RTCPeerConnection | None = None
        self._origin = time.monotonic()
        self._encoder = MediaEncoder(
            self._origin,
            keyframe_interval_s=config.keyframe_interval_s,
            preset=config.x264_preset,
        )
        # A thread per track: each encoder is used by one thread, frames keep their
        # order, and a slow video encode does not hold the sound back.
        self._threads = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"whip-{kind}")
            for kind in ("video", "audio")
        ]
        self._video_waiting: PendingFrames[tuple[Any, float]] = PendingFrames(_VIDEO_WAITING)
        self._receivers: list[asyncio.Task[None]] = []
        self._encoding: list[asyncio.Task[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._last_media: float | None = None
        self._closing: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closing is not None

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self._pc.connectionState if self._pc else "new",
            "video_codec": self.video_codec,
            "size": self._encoder.video_encoder.size,
            "frames": self._encoder.video_encoder.frames,
            "dropped_frames": self._video_waiting.dropped,  # the encoder was behind
        }

    async def answer(self, offer_sdp: str) -> str:
        """Answer the offer (candidates gathered, so complete) and start receiving.
        `InvalidOfferError` if it cannot be answered; nothing is left running then."""
        offer = check_offer(offer_sdp)
        ice = [s.to_aiortc() for s in self._config.ice_servers]
        self._pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        video = pc.addTransceiver("video", direction="recvonly")
        video.setCodecPreferences(_h264_first("video"))
        audio = pc.addTransceiver("audio", direction="recvonly") if offer.has_audio else None
        try:
            answer = await negotiate(pc, offer_sdp)
        except InvalidOfferError:
            await self.close("rejected")
            raise
        self.video_codec = _first_codec(answer, "video")
        self._metadata(offer.has_audio)
        pc.on("connectionstatechange", self._state_changed)
        self._receive(video, self._encoder.video, self._video_waiting, self._threads[0])
        if audio is not None:
            waiting: PendingFrames[tuple[Any, float]] = PendingFrames(_AUDIO_WAITING)
            self._receive(audio, self._encoder.audio, waiting, self._threads[1])
        self._watcher = asyncio.create_task(self._watch(), name=f"whip-watch-{self.id}")
        return answer

    def close(self, reason: str) -> asyncio.Task[None]:
        """End the publish (idempotent; the first reason counts); await the task for it
        to be over."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(reason), name=f"whip-close-{self.id}")
        return self._closing

    async def wait_closed(self) -> None:
        await self.session.wait_closed()

    # --- receiving ------------------------------------------------------------------

    def _metadata(self, has_audio: bool) -> None:
        """onMetaData first, as an encoder sends it: the FLV header then names the
        tracks that will come, so the demuxer does not wait for audio that will not."""
        info: dict[str, Any] = {
            "videocodecid": _FLV_AVC,
            "framerate": _NOMINAL_FPS,
            "encoder": "LumaLive WHIP",
        }
        if has_audio:
            info["audiocodecid"] = _FLV_AAC
        self.session.feed_script(0, amf0.encode("onMetaData", info))

    def _receive(
        self,
        transceiver: RTCRtpTransceiver,
        encode: Encode,
        waiting: PendingFrames[tuple[Any, float]],
        thread: ThreadPoolExecutor,
    ) -> None:
        track = transceiver.receiver.track
        if track is not None:
            self._receivers.append(asyncio.create_task(self._frames(track, waiting)))
            self._encoding.append(
                asyncio.create_task(self._encode(track.kind, waiting, encode, thread))
            )

    async def _frames(
        self, track: MediaStreamTrack, waiting: PendingFrames[tuple[Any, float]]
    ) -> None:
        """Take each frame as aiortc decodes it, timed on arrival."""
        try:
            while True:
                frame = await track.recv()
                self._last_media = arrived = time.monotonic()
                waiting.put((frame, arrived))
        except MediaStreamError:
            return
        finally:
            waiting.close()

    async def _encode(
        self,
        kind: str,
        waiting: PendingFrames[tuple[Any, float]],
        encode: Encode,
        thread: ThreadPoolExecutor,
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await waiting.get()) is not None:
            try:
                tags = await loop.run_in_executor(thread, encode, *item)
            except (av.FFmpegError, ValueError) as e:
                log.warning("whip %s: cannot encode the %s: %s", self.id, kind, e)
                self.close("encoder_error")
                return
            self._feed(tags)

    def _feed(self, tags: list[FlvTag]) -> None:
        for tag in tags:
            self.session.feed_media(tag.kind, tag.timestamp, tag.body)

    async def _state_changed(self) -> None:
        assert self._pc is not None
        if (reason := ended_reason(self._pc.connectionState)) is not None:
            self.close(reason)

    async def _watch(self) -> None:
        """Close a publish that never connects, or stops sending."""
        assert self._pc is not None
        deadline = self._origin + self._config.connect_timeout_s
        while self._pc.connectionState != "connected":
            if time.monotonic() > deadline:
                self.close("connect_timeout")
                return
            await asyncio.sleep(_WATCH_S)
        connected = time.monotonic()
        while True:
            await asyncio.sleep(_WATCH_S)
            last = self._last_media or connected
            if time.monotonic() - last > self._config.idle_timeout_s:
                self.close("idle_timeout")
                return

    async def _close(self, reason: str) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        if self._pc is not None:
            with contextlib.suppress(Exception):  # a broken transport must not keep it open
                await self._pc.close()  # ends the tracks: the receive loops return
        if self._receivers:
            _, stuck = await asyncio.wait(self._receivers, timeout=_STOP_S)
            for task in stuck:  # never connected: its track never ends on its own
                task.cancel()
        if self._encoding:  # the frames still waiting, then the encoders' own
            _, stuck = await asyncio.wait(self._encoding, timeout=_STOP_S)
            for task in stuck:
                task.cancel()
        loop = asyncio.get_running_loop()
        flushes = (self._encoder.video_encoder.flush, self._encoder.audio_encoder.flush)
        for thread, flush in zip(self._threads, flushes, strict=True):  # each in its thread
            with contextlib.suppress(av.FFmpegError, ValueError):
                self._feed(await loop.run_in_executor(thread, flush))
        for thread in self._threads:
            thread.shutdown(wait=False)
        self.session.end(reason)
        log.info("whip %s: stream %s ended (%s)", self.id, self.session.stream_id, reason)


def _first_codec(sdp: str, kind: str) -> str | None:
    for media in SessionDescription.parse(sdp).media:
        if media.kind == kind and media.rtp.codecs:
            return str(media.rtp.codecs[0].mimeType)
    return None
