"""A live publisher for what Debian's ffmpeg CLI cannot put in FLV: HEVC over Enhanced
RTMP (FourCC 'hvc1') needs FFmpeg >= 6.1, the CLI is 5.1. PyAV's bundled FFmpeg makes
the FLV (`tests.utils.media.synthetic`: frame index drawn in, AAC tone) and sends it
to an RTMP URL in real time, paced by the packets' times.

The sender runs in its own process (`python -m tests.utils.pyav_live URL < FLV`): PyAV
holds the GIL while its RTMP client blocks, which would stall a test's event loop. It
imports PyAV only (the test helpers pull in torch: seconds on a loaded box).
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path

import av

__all__ = ["FPS", "SIZE", "pyav_live"]

SIZE = (320, 180)
FPS = 10
_ROOT = Path(__file__).resolve().parents[2]


async def pyav_live(url: str, seconds: int, codec: str = "libx265") -> asyncio.subprocess.Process:
    """Publish `seconds` of a `SIZE` `FPS` source in `codec` (a keyframe every second)
    with stereo AAC to `url`, in real time, from a child process."""
    from tests.utils.media import synthetic  # torch, through its imports: not in the child

    flv = synthetic(frames=seconds * FPS, gop=FPS, size=SIZE, fps=FPS, codec=codec)
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tests.utils.pyav_live", url),
        cwd=_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write(flv)
    await process.stdin.drain()
    process.stdin.close()
    return process


def _publish(url: str, flv: bytes) -> None:
    with av.open(io.BytesIO(flv), format="flv") as src, av.open(url, "w", format="flv") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
        start: float | None = None
        for packet in src.demux():
            if not packet.size or packet.dts is None or packet.time_base is None:
                continue
            at = float(packet.dts * packet.time_base)
            start = time.monotonic() - at if start is None else start
            time.sleep(max(0.0, start + at - time.monotonic()))
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


if __name__ == "__main__":
    _publish(sys.argv[1], sys.stdin.buffer.read())
