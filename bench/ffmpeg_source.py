"""The RTMP sources the cluster benchmarks publish (`bench.overload`,
`bench.scale_out`): both need the same untimed test pattern and the same ffmpeg
publish, so they share this module rather than each keeping a copy.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.utils.ray_nodes import Deployed

__all__ = ["make_source", "publish"]


def make_source(path: Path, seconds: int, size: str, fps: int) -> Path:
    """An H.264 FLV of a test pattern with a keyframe every second (not timed)."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        + ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds)]
        + ["-c:v", "libx264", "-preset", "veryfast", "-g", str(fps), "-keyint_min", str(fps)]
        + ["-sc_threshold", "0", "-pix_fmt", "yuv420p", "-f", "flv", str(path)],
        check=True,
    )
    return path


def publish(deployed: Deployed, key: str, source: Path, *, paced: bool) -> None:
    """Send `source` to the deployment's RTMP ingest as is (`paced`: at real time)."""
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error"]
    args += ["-re"] if paced else []
    url = f"rtmp://127.0.0.1:{deployed.rtmp_port}/live/{key}"
    subprocess.run([*args, "-i", str(source), "-c", "copy", "-f", "flv", url], check=True)
