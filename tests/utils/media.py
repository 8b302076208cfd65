"""Media for the media tests: the real sample clip re-published as a live encoder would,
and synthetic streams whose properties (GOP, codec, audio) are set by the test.

Synthetic frames carry their index as a row of black/white blocks, so a test can
check that every source frame survives segmenting and transcoding, in order.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import cast

import av
import numpy as np

from media.segmenter import Segmenter, SourceSegment
from models.train_superres import default_media_path

__all__ = [
    "CLIP",
    "MEDIA",
    "ChunkedReader",
    "PublishedClip",
    "clip_segments",
    "frame_index",
    "publish_clip",
    "synthetic",
]

CLIP = default_media_path()
MEDIA = CLIP.parent  # the shared media folder
CLIP_FRAMES = 132
_BITS = 10
_AUDIO_RATE = 48_000


class ChunkedReader:
    """A read-only, unseekable byte stream, like the RTMP server's FLV reader."""

    def __init__(self, data: bytes, chunk: int = 4096) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk

    def read(self, size: int = -1) -> bytes:
        n = self._chunk if size < 0 else min(size, self._chunk)
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(out)
        return out

    def readable(self) -> bool:
        return True


def _index_image(i: int, width: int, height: int) -> np.ndarray:
    img = np.full((height, width, 3), 60 + (i * 5) % 120, np.uint8)
    img[height // 2 :, (i * 7) % width] = 255  # some motion below the code row
    block = width // _BITS
    for bit in range(_BITS):
        if (i >> bit) & 1:
            img[:block, bit * block : (bit + 1) * block] = 255
        else:
            img[:block, bit * block : (bit + 1) * block] = 0
    return img


def frame_index(frame: av.VideoFrame | np.ndarray) -> int:
    """The index `synthetic` drew into a frame (at any scale; RGB arrays too)."""
    y = frame.mean(axis=2) if isinstance(frame, np.ndarray) else frame.to_ndarray(format="gray")
    h, w = y.shape
    block = w / _BITS  # blocks are square, so also `block` rows high
    row = min(int(block / 2), h - 1)
    return sum(1 << bit for bit in range(_BITS) if y[row, int((bit + 0.5) * block)] > 128)


def synthetic(
    *,
    fmt: str = "flv",
    frames: int = 100,
    gop: int = 25,
    codec: str = "libx264",
    audio: bool = True,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    preset: str = "ultrafast",
    x264_params: str = "",
) -> bytes:
    """A stream with a keyframe exactly every `gop` frames (scene cuts off)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0" + (
            f":{x264_params}" if x264_params else ""
        )
        key = "x264-params"
        if codec == "libx265":
            key, params = "x265-params", params + ":log-level=error:pools=1:frame-threads=1"
        vs = cast(
            av.VideoStream, out.add_stream(codec, rate=fps, options={key: params, "preset": preset})
        )
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        vs.codec_context.thread_count = 1
        a_s = out.add_stream("aac", rate=_AUDIO_RATE, layout="stereo") if audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_index_image(i, *size), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if a_s is not None:
            _add_tone(out, a_s, frames / fps)
    return buf.getvalue()


def _add_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    total = int(seconds * _AUDIO_RATE)
    t = 0
    while t < total:
        n = min(1024, total - t)
        wave = 0.2 * np.sin(2 * np.pi * 440 * (t + np.arange(n)) / _AUDIO_RATE)
        frame = av.AudioFrame.from_ndarray(
            np.stack([wave, wave]).astype(np.float32), format="fltp", layout="stereo"
        )
        frame.sample_rate, frame.pts = _AUDIO_RATE, t
        out.mux(stream.encode(frame))
        t += n
    out.mux(stream.encode(None))


@dataclass(frozen=True, slots=True)
class PublishedClip:
    """The sample clip as `publish_clip` wrote it, with what a caller needs of it."""

    data: bytes
    frames: int
    fps: Fraction
    width: int
    height: int

    @property
    def seconds(self) -> float:
        return float(self.frames / self.fps)


def publish_clip(
    *,
    gop_seconds: float = 2.0,
    loops: int = 1,
    fmt: str = "flv",
    height: int | None = None,
    video_bitrate: str | None = None,
    threads: int | None = 1,
) -> PublishedClip:
    """The sample clip as a live encoder publishes it: x264 superfast with B-frames, a
    keyframe every `gop_seconds`, stereo AAC 48 kHz interleaved with the video, looped
    `loops` times. `height` rescales (bicubic, even width); `video_bitrate` (e.g. "3M")
    sets an average rate instead of x264's CRF; `threads=None` lets x264 choose."""
    video, pcm, fps, (width, out_h) = _decode_clip(height)
    gop = round(gop_seconds * fps)
    options = {
        "preset": "superfast",
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=2",
    }
    if video_bitrate:
        options["b"] = video_bitrate
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        vs = out.add_stream("libx264", rate=fps, options=options)
        vs.width, vs.height, vs.pix_fmt = width, out_h, "yuv420p"
        if threads is not None:
            vs.codec_context.thread_count = threads
        a_s = out.add_stream("aac", rate=_AUDIO_RATE, layout="stereo")
        _mux_looped(out, vs, a_s, video, pcm, fps, loops)
    return PublishedClip(buf.getvalue(), len(video) * loops, fps, width, out_h)


def _decode_clip(
    height: int | None,
) -> tuple[list[np.ndarray], np.ndarray, Fraction, tuple[int, int]]:
    """The clip's frames as yuv420p arrays (scaled to `height`), its audio as stereo
    fltp samples at 48 kHz, its frame rate and the frames' size."""
    with av.open(str(CLIP)) as src:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        src_w, src_h = vin.codec_context.width, vin.codec_context.height
        out_h = height or src_h
        out_w = round(src_w * out_h / src_h / 2) * 2
        video = [
            f.reformat(out_w, out_h, "yuv420p", interpolation="BICUBIC").to_ndarray()
            for f in src.decode(vin)
        ]
        src.seek(0)
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=_AUDIO_RATE)
        pcm = np.concatenate(
            [g.to_ndarray() for f in src.decode(ain) for g in resampler.resample(f)], axis=1
        )
        fps = vin.guessed_rate
        assert fps is not None
    return video, pcm, Fraction(fps), (out_w, out_h)


def _mux_looped(
    out: av.container.OutputContainer,
    vs: av.VideoStream,
    a_s: av.AudioStream,
    video: list[np.ndarray],
    pcm: np.ndarray,
    fps: Fraction,
    loops: int,
) -> None:
    """Encode `loops` copies, interleaved as a live encoder does: audio up to each video
    frame's time, then the frame."""
    samples_per_frame = Fraction(_AUDIO_RATE) / fps
    per_loop = min(int(len(video) * samples_per_frame), pcm.shape[1])
    looped = np.tile(pcm[:, :per_loop], (1, loops))
    t = 0
    for n in range(len(video) * loops):
        while t < min(int((n + 1) * samples_per_frame), looped.shape[1]):
            chunk = np.ascontiguousarray(looped[:, t : t + 1024])
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            sound.sample_rate, sound.pts = _AUDIO_RATE, t
            out.mux(a_s.encode(sound))
            t += chunk.shape[1]
        picture = av.VideoFrame.from_ndarray(video[n % len(video)], format="yuv420p")
        picture.pts, picture.time_base = n, 1 / fps
        out.mux(vs.encode(picture))
    out.mux(vs.encode(None))
    out.mux(a_s.encode(None))


@functools.cache
def clip_segments() -> tuple[SourceSegment, ...]:
    """The published clip (2 s GOPs, B-frames) cut into 2 s segments: 50 + 50 + 32
    frames. Cached for the session; segments are immutable."""
    return tuple(Segmenter(ChunkedReader(publish_clip(gop_seconds=2.0).data), format="flv"))
