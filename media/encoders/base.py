"""What every video encoder is: the `Encoder` protocol, the settings it reads, its errors.

An encoder is one FFmpeg encoder (`libx264`, `h264_nvenc`, ...) for one codec. It
refuses a rendition that no level of its codec (or its hardware) admits, and turns a
rendition into FFmpeg options that give one closed GOP of `keyint` frames at the
rendition's level, so the bitstream matches what the ladder advertises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn, Protocol

from ..ladder import Rendition
from ..levels import av1_excess, h264_excess, hevc_excess

__all__ = [
    "Encoder",
    "EncoderSettings",
    "EncoderUnavailableError",
    "HardwareMode",
    "RenditionNotEncodableError",
    "VideoCodec",
    "check_levels",
    "rate_options",
    "refuse",
]

VideoCodec = Literal["h264", "hevc", "av1"]
"""Codecs an encoder may produce. AV1 has encoders but no ladder rung: HLS carries AV1
only in fragmented MP4, and our segments are MPEG-TS (`ladder.Codec` stays H.264/HEVC)."""

HardwareMode = Literal["off", "auto", "require"]
"""`off`: software only. `auto`: hardware where it opens and takes the rendition, else
software (logged once). `require`: hardware or `EncoderUnavailableError`."""


class RenditionNotEncodableError(ValueError):
    """No level of the codec (or the hardware's size limit) admits the rendition."""


class EncoderUnavailableError(RuntimeError):
    """No encoder the settings allow can be opened by this process's FFmpeg."""


@dataclass(frozen=True, slots=True)
class EncoderSettings:
    """Encoder knobs shared by all renditions. `threads=1` because parallelism comes
    from transcoding many segments at once, one per worker; 0 lets FFmpeg decide.
    `hardware` is off by default: NVENC output has not been checked against the codec
    strings the ladder advertises, so a deployment opts in."""

    preset: str = "veryfast"  # x264 names; other encoders map them to their own scale
    threads: int = 1
    x264_params: str = ""  # extra `key=value:...` appended to ours
    interpolation: str = "BICUBIC"
    hook_batch: int = 8
    # Stop x265 printing its banner and per-encode summary to stderr.
    x265_log_level: str = "error"
    hardware: HardwareMode = "off"
    # Decode on a device (e.g. "cuda": NVDEC via PyAV's hwaccel, software fallback);
    # None: on the CPU. Set by media workers that hold a GPU.
    decode_hwaccel: str | None = None


class Encoder(Protocol):
    """One FFmpeg video encoder. Implementations live one family per module
    (`software`, `nvenc`); `EncoderRegistry` chooses among them."""

    @property
    def name(self) -> str:
        """The FFmpeg encoder name, e.g. `libx264`."""
        ...

    @property
    def codec(self) -> VideoCodec: ...

    @property
    def hardware(self) -> bool: ...

    def check(self, rendition: Rendition) -> None:
        """Raise `RenditionNotEncodableError`, naming the limit, if this encoder cannot
        produce the rendition; return None if it can."""
        ...

    def options(
        self, rendition: Rendition, keyint: int, settings: EncoderSettings
    ) -> dict[str, str]:
        """FFmpeg options: preset, profile and level, VBV peak rate, and a keyframe
        every `keyint` frames with scene-cut keyframes off."""
        ...


_NAMES = {"h264": "H.264", "hevc": "HEVC", "av1": "AV1"}
_EXCESS = {"h264": h264_excess, "hevc": hevc_excess, "av1": av1_excess}


def check_levels(encoder: Encoder, rendition: Rendition) -> None:
    """Refuse a rendition above every level of the encoder's codec."""
    r = rendition
    excess = _EXCESS[encoder.codec](r.width, r.height, r.fps, r.maxrate_kbps)
    if excess is not None:
        refuse(encoder, r, excess)


def refuse(encoder: Encoder, rendition: Rendition, reason: str) -> NoReturn:
    r = rendition
    raise RenditionNotEncodableError(
        f"{encoder.name} cannot encode rendition {r.name!r} ({r.width}x{r.height}@{r.fps:g}, "
        f"peak {r.maxrate_kbps} kbit/s) as {_NAMES[encoder.codec]}: {reason}"
    )


def rate_options(rendition: Rendition) -> dict[str, str]:
    """The VBV peak rate and buffer every encoder shares (the average is the stream's
    `bit_rate`, set where the stream is added)."""
    return {
        "maxrate": f"{rendition.maxrate_kbps}k",
        "bufsize": f"{2 * rendition.video_kbps}k",
    }
