"""The latency bench's publisher: frames that carry their index, sent over RTMP in real
time by this process, so the wall time each frame was sent is known.

The index is a barcode across the top of the picture: `BLOCKS` square-ish blocks, the
first white and the second black (a guard a reader checks), then `BITS` bits of the
index, most significant first, white for 1. Blocks are 1/18 of the width, so they
stay tens of pixels wide at 360p and survive scaling and any sane compression.
A reader samples the middle of each block on the middle row of the band.

The encoder is what a low-latency broadcaster runs: x264 `zerolatency` (no B-frames,
no lookahead), a keyframe every `gop_s`, AAC sound; muxed as FLV straight to the RTMP
URL by FFmpeg's own RTMP client (PyAV), one packet at a time.
"""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from typing import cast

import av
import numpy as np

__all__ = ["BITS", "BLOCKS", "Publisher", "read_index"]

BITS = 16
BLOCKS = BITS + 2
_RATE = 48_000


def barcode_image(index: int, width: int, height: int) -> np.ndarray:
    """An RGB picture: a moving bar on grey, and the index's barcode in the top band."""
    img = np.full((height, width, 3), 96, np.uint8)
    img[:, (index * 8) % width] = 230
    block, band = width // BLOCKS, max(8, height // 10)
    bits = [1, 0] + [(index >> (BITS - 1 - b)) & 1 for b in range(BITS)]
    for i, bit in enumerate(bits):
        img[:band, i * block : (i + 1) * block] = 235 if bit else 16
    return img


def read_index(gray: np.ndarray) -> int | None:
    """The index in a luma picture (any size), None where the guard does not read."""
    h, w = gray.shape
    block = w / BLOCKS
    row = gray[max(0, int(h / 20))]
    values = [row[int((i + 0.5) * block)] > 128 for i in range(BLOCKS)]
    if not values[0] or values[1]:
        return None
    return sum(1 << (BITS - 1 - b) for b in range(BITS) if values[2 + b])


class Publisher:
    """Publishes `seconds` of barcoded video (and a tone) to `url` in real time, in a
    thread; `sent[i]` is the wall time (time.time()) frame i was handed to the muxer."""

    def __init__(
        self, url: str, *, size: tuple[int, int], fps: int, gop_s: float, seconds: float
    ) -> None:
        self.url, self.size, self.fps, self.gop_s, self.seconds = url, size, fps, gop_s, seconds
        self.sent: dict[int, float] = {}
        self.error: str | None = None
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._publish()
        except Exception as e:  # noqa: BLE001 - reported by the bench
            self.error = f"{type(e).__name__}: {e}"

    def _publish(self) -> None:
        width, height = self.size
        with av.open(self.url, "w", format="flv") as out:
            video = cast(av.VideoStream, out.add_stream("libx264", rate=self.fps))
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            gop = max(1, round(self.gop_s * self.fps))
            video.options = {
                "preset": "ultrafast",
                "tune": "zerolatency",
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
            }
            video.codec_context.thread_count = 1
            audio = cast(av.AudioStream, out.add_stream("aac", rate=_RATE, layout="stereo"))
            self._loop(out, video, audio)

    def _loop(
        self, out: av.container.OutputContainer, video: av.VideoStream, audio: av.AudioStream
    ) -> None:
        start = time.monotonic()
        frames, samples = round(self.seconds * self.fps), 0
        for i in range(frames):
            if self.stop.is_set():
                break
            due = start + i / self.fps
            time.sleep(max(0.0, due - time.monotonic()))
            while samples < (i + 1) * _RATE // self.fps:  # audio up to this frame's end
                out.mux(audio.encode(_tone(samples)))
                samples += 1024
            picture = av.VideoFrame.from_ndarray(barcode_image(i, *self.size), format="rgb24")
            picture.pts, picture.time_base = i, Fraction(1, self.fps)
            self.sent[i] = time.time()
            out.mux(video.encode(picture))
        out.mux(video.encode(None))


def _tone(start: int) -> av.AudioFrame:
    t = (start + np.arange(1024)) / _RATE
    wave = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
    frame.sample_rate, frame.pts = _RATE, start
    return frame
