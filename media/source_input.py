"""A segmenter's input: opened, its streams chosen, its packets read despite bad bytes.

Invariants:
- Only an input that cannot be opened, or has no H.264/HEVC video, raises
  `InvalidSourceError`; the first such video stream is copied, with the first audio
  stream in a codec MPEG-TS carries, if any.
- Once open, reading never raises: demuxer errors are reported to `on_error` and
  skipped (FFmpeg resynchronises on the next read), until `_MAX_CONSECUTIVE_ERRORS`
  in a row end the input. Flush packets (size 0) are never yielded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import av
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

__all__ = ["AUDIO_CODECS", "VIDEO_CODECS", "InvalidSourceError", "SourceInput"]

log = logging.getLogger(__name__)

VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "opus"})
# After this many demuxer errors in a row without a packet the input is taken as dead.
_MAX_CONSECUTIVE_ERRORS = 64


class InvalidSourceError(ValueError):
    """The input cannot be opened, or carries no H.264/HEVC video."""


class SourceInput:
    """An opened input, the streams chosen from it and their video format.

    `source` is anything `av.open` reads: a path or URL, or a binary file-like object.
    """

    def __init__(self, source: Any, *, format: str | None, options: dict[str, str] | None) -> None:
        try:
            self._container: InputContainer = av.open(source, "r", format=format, options=options)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise InvalidSourceError(f"cannot open the input: {e}") from e
        self.video: VideoStream = self._choose_video()
        audios = [s for s in self._container.streams.audio if s.codec_context.name in AUDIO_CODECS]
        self.audio: Stream | None = audios[0] if audios else None
        ctx = self.video.codec_context
        self.video_codec: str = ctx.name
        self.width: int = ctx.width
        self.height: int = ctx.height
        rate = self.video.guessed_rate or self.video.average_rate
        self.fps: float = float(rate) if rate else 0.0
        self.frame_s = 1 / self.fps if self.fps > 0 else 1 / 30  # one frame, in seconds

    def _choose_video(self) -> VideoStream:
        streams = self._container.streams.video
        videos = [s for s in streams if s.codec_context.name in VIDEO_CODECS]
        if not videos:
            found = [s.codec_context.name for s in streams]
            self._container.close()
            raise InvalidSourceError(f"no H.264/HEVC video stream in the input (found {found})")
        return videos[0]

    def packets(self, on_error: Callable[[str], None]) -> Iterator[Packet[Stream]]:
        """Demuxed packets of the chosen streams, surviving demuxer errors."""
        wanted = [self.video] + ([self.audio] if self.audio else [])
        errors_in_row = 0
        while True:
            try:
                for packet in self._container.demux(wanted):
                    errors_in_row = 0
                    # Flush packets (size 0) only tell a decoder to drain; there is no
                    # decoder here.
                    if packet.size:
                        yield packet
                return
            except av.FFmpegError as e:
                on_error(f"demux: {e}")
                errors_in_row += 1
                if errors_in_row >= _MAX_CONSECUTIVE_ERRORS:
                    log.warning("giving up on the input after %d demuxer errors", errors_in_row)
                    return
                # av_read_frame resynchronises on the next call; a fresh demux() resumes.
            except IndexError:
                # PyAV 18 flushes every stream at EOF, including streams the demuxer
                # created mid-stream (FLV does when garbage looks like a new tag), and
                # fails on those it never wrapped. Only flush packets are lost.
                return

    def close(self) -> None:
        self._container.close()
