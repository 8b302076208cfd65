"""A streaming encoder's lowest LL-HLS rung as WHEP video, so a source WebRTC cannot
take as it is (H.264 with B-frames; HEVC, AV1 or any codec but H.264) costs no encode
of its own for WebRTC viewers.

    LiveEncoder's thread ──parts (moof+mdat)──▶ RungVideo ──MediaPacket──▶ PacketHub

The streaming encoder (`media.llhls`) already makes what WebRTC wants: H.264 without
B-frames, low delay, an IDR at every segment start. Its parts are CMAF fragments; one
demuxed after its rendition's init segment gives back the encoder's pictures (AVCC,
SPS/PPS in the init's avcC), made Annex B with SPS/PPS in front of each IDR as the
source tap does. The pictures keep the encoder's times (the stream timeline at
90 kHz), the timeline of the source tap's Opus, so the tracks stay in sync.

What it costs against the tap's own re-encode: latency of one part (a part is handed
over when complete, about `llhls_part_s`), in exchange for no second encode.

Invariants:
- Only the lowest rendition's parts are read; a part that cannot be read is counted,
  never raised into the encoder's thread.
- Nothing is done while the hub has no subscribers or the tap sends video itself;
  each time it starts publishing, it starts at an IDR (a viewer's decoder never gets a
  picture of this encoder whose references came from another).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence

import av

from media.ladder import Rendition
from media.llhls.parts import EncodedPart
from media.parameter_sets import ParameterSets
from media.webrtc.hub import MediaPacket, PacketHub
from media.webrtc.tap import annexb_picture, avcc_to_annexb

__all__ = ["RungVideo", "part_pictures"]

log = logging.getLogger(__name__)


def part_pictures(init: bytes, part: bytes) -> list[MediaPacket]:
    """The H.264 pictures of one CMAF part (its rendition's `init` first), Annex B."""
    with av.open(io.BytesIO(init + part), mode="r", format="mp4") as container:
        stream = container.streams.video[0]
        params = ParameterSets.from_avcc(stream.codec_context.extradata or b"")
        prefix = avcc_to_annexb(params.data, params.nal_length_size)
        out: list[MediaPacket] = []
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None or packet.time_base is None:
                continue  # the demuxer's end-of-stream packet
            key = bool(packet.is_keyframe)
            data = annexb_picture(bytes(packet), params.nal_length_size, prefix, key)
            out.append(MediaPacket("video", data, packet.pts, packet.time_base, key))
        return out


class RungVideo:
    """The parts' callback (`LiveEncoder.part_tap`, in the encoder's thread): the lowest
    rung's pictures into `hub` while `wanted()` (the source tap cannot send its video:
    `SourceTap.needs_rung`) and someone watches; from a keyframe each time it starts."""

    def __init__(self, hub: PacketHub, wanted: Callable[[], bool]) -> None:
        self._hub = hub
        self._wanted = wanted
        self._synced = False  # a keyframe was published since it (re)started
        self.rendition: str | None = None
        self.published = 0
        self.errors = 0

    def __call__(
        self,
        renditions: Sequence[Rendition],
        inits: Mapping[str, bytes],
        parts: Sequence[EncodedPart],
    ) -> None:
        if not (self._hub.has_subscribers and self._wanted()) or not renditions:
            self._synced = False
            return
        lowest = min(renditions, key=lambda r: r.width * r.height).name
        self.rendition, init = lowest, inits.get(lowest)
        for part in parts:
            if part.rendition == lowest and init is not None:
                self._publish(init, part)

    def _publish(self, init: bytes, part: EncodedPart) -> None:
        try:
            pictures = part_pictures(init, part.data)
        except Exception as e:  # noqa: BLE001 - never raised into the encoder's thread
            self.errors += 1
            if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                log.warning("whep rung: part not read (%d so far): %s", self.errors, e)
            return
        for picture in pictures:
            self._synced = self._synced or picture.keyframe
            if self._synced:
                self._hub.publish(picture)
                self.published += 1
