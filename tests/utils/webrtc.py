"""A browser camera stand-in for WHIP tests: an aiortc track of synthetic pictures."""

from __future__ import annotations

import av
import numpy as np
from aiortc import VideoStreamTrack


class Camera(VideoStreamTrack):
    """30 fps pictures of `size` with a moving bar, as a browser's camera track delivers
    them; `sent` counts the frames handed to the peer connection."""

    def __init__(self, size: tuple[int, int], grey: int = 90, step: int = 4) -> None:
        super().__init__()
        self.size, self.grey, self.step = size, grey, step
        self.sent = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        width, height = self.size
        img = np.full((height, width, 3), self.grey, np.uint8)
        img[:, (self.sent * self.step) % width] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.sent += 1
        return frame
