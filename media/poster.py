"""A stream's poster: the first picture of a published segment, as a small JPEG.

Browse pages show one per live stream and refresh it every few seconds, so it is made
from the newest segment of the smallest rendition (one keyframe of 360p decodes in
milliseconds) and scaled to a thumbnail. Segments start at a keyframe (the segmenter
cuts only there), so the first decoded frame is a whole picture.
"""

from __future__ import annotations

import io
from fractions import Fraction

import av

__all__ = ["PosterError", "poster_jpeg"]

POSTER_WIDTH = 320


class PosterError(ValueError):
    """The segment held no decodable video frame."""


def poster_jpeg(segment: bytes, width: int = POSTER_WIDTH) -> bytes:
    """The first video frame of an MPEG-TS segment as a JPEG `width` pixels wide."""
    try:
        with av.open(io.BytesIO(segment), mode="r", format="mpegts") as container:
            if not container.streams.video:
                raise PosterError("the segment has no video")
            for frame in container.decode(video=0):
                return _encode(frame, width)
    except av.FFmpegError as exc:  # a truncated or corrupt file
        raise PosterError(f"the segment could not be decoded: {exc}") from exc
    raise PosterError("no frame could be decoded from the segment")


def _encode(frame: av.VideoFrame, width: int) -> bytes:
    """One frame through FFmpeg's MJPEG encoder (full-range YUV, even dimensions)."""
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)  # one still picture: any time base will do
    codec.options = {"qscale": "4"}
    scaled = frame.reformat(width=width, height=height, format="yuvj420p")
    scaled.pts = 0
    packets = [*codec.encode(scaled), *codec.encode(None)]
    if not packets:
        raise PosterError("the JPEG encoder returned nothing")
    return b"".join(bytes(p) for p in packets)
