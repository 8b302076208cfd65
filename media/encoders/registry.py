"""Which encoders this process's FFmpeg can open, and which one encodes a rendition.

Invariants:
- An encoder is probed (opened on a small frame with its own options) at most once
  per registry, on first use; `default_registry()` is one per process, so FFmpeg is
  probed once per process and only for the codecs asked for.
- `encoder_for` is the one place a rendition is checked against its codec's levels:
  it raises `RenditionNotEncodableError` before anything is decoded.
- `auto` falls back from a hardware encoder that cannot open to software with one log
  line per encoder; `off` never opens hardware; `require` never falls back.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import cast

import av
from av.video.codeccontext import VideoCodecContext

from ..ladder import Rendition
from .base import (
    Encoder,
    EncoderSettings,
    EncoderUnavailableError,
    HardwareMode,
    RenditionNotEncodableError,
)
from .nvenc import NVENC_ENCODERS
from .software import LibSvtAv1, LibX264, LibX265

__all__ = ["ENCODERS", "EncoderRegistry", "Probe", "default_registry", "open_probe"]

log = logging.getLogger(__name__)

# Preference order within hardware and within software: first listed, first tried.
ENCODERS: tuple[Encoder, ...] = (*NVENC_ENCODERS, LibX264(), LibX265(), LibSvtAv1())

Probe = Callable[[Encoder], str | None]
"""`probe(encoder)`: None if the encoder opens here, else why not."""

# Small, but above NVENC's minimum frame (145x49 for H.264), so a refusal means "no
# encoder here", not "frame too small".
_PROBE = Rendition("probe", 256, 144, 300, fps=25.0)


def open_probe(encoder: Encoder) -> str | None:
    """Open `encoder` on a 256x144 frame with the options it would use; the error if not."""
    try:
        ctx = cast(VideoCodecContext, av.CodecContext.create(encoder.name, "w"))
        ctx.width, ctx.height, ctx.pix_fmt = _PROBE.width, _PROBE.height, "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25)
        ctx.bit_rate = _PROBE.video_kbps * 1000
        ctx.thread_count = 1
        ctx.options = encoder.options(_PROBE, 25, EncoderSettings())
        ctx.open()
    except (av.FFmpegError, ValueError) as e:  # UnknownCodecError is a ValueError
        # FFmpeg errors carry the whole call in str(e); the reason is enough to log.
        return f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
    return None


class EncoderRegistry:
    """Encoders by preference, probed lazily, chosen per rendition by `settings.hardware`."""

    def __init__(self, encoders: Sequence[Encoder] = ENCODERS, probe: Probe = open_probe):
        self.encoders = tuple(encoders)
        self._probe = probe
        self._probed: dict[str, str | None] = {}
        self._logged: set[str] = set()
        self._lock = threading.Lock()

    def unavailable(self, encoder: Encoder) -> str | None:
        """Why `encoder` cannot open in this process (probed once), or None if it can."""
        with self._lock:
            if encoder.name not in self._probed:
                self._probed[encoder.name] = self._probe(encoder)
            return self._probed[encoder.name]

    def available(self) -> dict[str, bool]:
        """Every registered encoder by name: whether it opens here (probes them all)."""
        return {e.name: self.unavailable(e) is None for e in self.encoders}

    def encoder_for(self, rendition: Rendition, settings: EncoderSettings) -> Encoder:
        """The first encoder the mode allows that opens here and takes the rendition.

        Raises `RenditionNotEncodableError` when every open candidate refuses the
        rendition, `EncoderUnavailableError` when none opens.
        """
        chain = self._candidates(rendition.codec, settings.hardware)
        refusal: RenditionNotEncodableError | None = None
        reasons: list[str] = []
        for encoder in chain:
            reason = self.unavailable(encoder)
            if reason is not None:
                reasons.append(f"{encoder.name}: {reason}")
                self._log_fallback(encoder, reason, settings.hardware)
                continue
            try:
                encoder.check(rendition)
            except RenditionNotEncodableError as e:
                refusal = e
                continue
            return encoder
        if refusal is not None:
            raise refusal
        raise EncoderUnavailableError(
            f"no {rendition.codec} encoder opens here with hardware={settings.hardware!r}: "
            + ("; ".join(reasons) or "none registered")
        )

    def _candidates(self, codec: str, mode: HardwareMode) -> list[Encoder]:
        hardware = [e for e in self.encoders if e.codec == codec and e.hardware]
        software = [e for e in self.encoders if e.codec == codec and not e.hardware]
        if mode == "off":
            return software
        if mode == "require":
            return hardware
        return hardware + software

    def _log_fallback(self, encoder: Encoder, reason: str, mode: HardwareMode) -> None:
        if mode != "auto" or not encoder.hardware:
            return
        with self._lock:
            if encoder.name in self._logged:
                return
            self._logged.add(encoder.name)
        log.warning(
            "%s cannot open here (%s); encoding %s in software", encoder.name, reason, encoder.codec
        )


@functools.cache
def default_registry() -> EncoderRegistry:
    """The process's registry: every known encoder, probed on first use."""
    return EncoderRegistry()
