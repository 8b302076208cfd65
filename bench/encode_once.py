"""CPU saved by encoding the LL rungs once (`llhls_encode_once`, `actors.encode_once`).

One publish of a test pattern with audio (default 20 s of 720p30, a keyframe every
second) goes through the media work of a low-latency stream twice, in this process,
the setting off then on, and the CPU-seconds of each side are printed side by side:

    ingest   the segmenter cutting the FLV, with the streaming encoder on its tap
             (decode once, x264 zerolatency per LL rung, fMP4 parts; with the
             setting on, also the TS remux of each classic segment)
    pool     the workers' segment transcodes (every ladder rung off; on: only the
             rungs the streaming encoder does not carry; none for a 720p source
             whose ladder is all at or under `llhls_max_height`)

What is left out is the same both ways (Ray, Postgres, the API, moderation: it reads
the source segment, not the rungs). The code paths are the production ones
(`Segmenter`, `LiveTranscoder`, `SegmentTranscoder`), run one after another in one
thread, so `time.process_time()` is their CPU whatever the machine's load; wall
times from a loaded machine are noise.

    .venv/bin/python -m bench.encode_once --quick     # smoke: 4 s of 640x360
    .venv/bin/python -m bench.encode_once             # 20 s of 1280x720 at 30 fps
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from av.packet import Packet
from av.stream import Stream

from lumalive.settings import Settings
from media.ladder import Rendition
from media.llhls.live import LiveTranscoder, SourcePacket
from media.segmenter import Segmenter
from media.tier_plan import plan
from media.transcode import EncoderSettings, SegmentTranscoder

SEGMENT_S = 2.0


def make_source(path: Path, seconds: int, size: str, fps: int) -> Path:
    """An H.264 + AAC FLV of a test pattern, a keyframe every second."""
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
        + ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
        + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
        + ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast"]
        + ["-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0", "-pix_fmt", "yuv420p"]
        + ["-c:a", "aac", "-b:a", "128k", "-f", "flv", str(path)],
        check=True,
    )
    return path


@dataclass
class Run:
    ingest_s: float = 0.0
    pool_s: float = 0.0
    wall_s: float = 0.0
    segments: int = 0
    pool_rungs: int = 0  # rung-segments the pool encoded
    classic: int = 0  # rung-segments remuxed from the streaming encoder

    @property
    def total_s(self) -> float:
        return self.ingest_s + self.pool_s


def _ladder(w: int, h: int, fps: float, settings: Settings) -> tuple[Rendition, ...]:
    ladder, _ = plan(w, h, "1080p", False, fps=fps, max_height=settings.media_max_height)
    return tuple(r for r in ladder if r.tile is None)


def _ll(ladder: tuple[Rendition, ...], settings: Settings) -> tuple[Rendition, ...]:
    """`actors.ll_rungs.ll_renditions` for this ladder (no Ray import here)."""
    cap = settings.llhls_max_height
    return tuple(
        r
        for r in ladder
        if min(r.width, r.height) <= cap and r.codec == "h264" and not r.needs_upscale
    )


def run(source: Path, once: bool, settings: Settings) -> Run:
    out = Run()
    transcoder = LiveTranscoder(
        lambda w, h, fps: _ll(_ladder(w, h, fps, settings), settings),
        segment_s=SEGMENT_S,
        part_s=settings.llhls_part_s,
        epoch=0,
        tune=settings.llhls_tune,
        preset=settings.x264_preset,
        classic=once,
    )
    pool = SegmentTranscoder(EncoderSettings(preset=settings.x264_preset, threads=1))
    mark: list[int | None] = [0 if once else None]

    def tap(packet: Packet[Stream]) -> None:
        p = SourcePacket.of(packet)
        if p is None:
            return
        if mark[0] is not None and not p.audio:
            p, mark[0] = dataclasses.replace(p, classic=mark[0]), None
        transcoder.push(p)
        out.classic += len(transcoder.take_classic())

    wall, cpu = time.perf_counter(), time.process_time()
    segmenter = Segmenter(str(source), format="flv", target_duration=SEGMENT_S, on_packet=tap)
    for segment in segmenter:
        out.ingest_s += time.process_time() - cpu
        if once:
            mark[0] = segment.sequence + 1
        ladder = _ladder(segment.width, segment.height, segment.fps, settings)
        carried = {r.name for r in _ll(ladder, settings)} if once else set()
        rungs = tuple(r for r in ladder if r.name not in carried)
        cpu = time.process_time()
        if rungs:
            pool.transcode(segment.data, rungs, expected_frames=segment.frames)
        out.pool_s += time.process_time() - cpu
        out.segments += 1
        out.pool_rungs += len(rungs)
        cpu = time.process_time()
    transcoder.close()
    out.classic += len(transcoder.take_classic())
    out.ingest_s += time.process_time() - cpu
    out.wall_s = time.perf_counter() - wall
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s of 640x360: a smoke run")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.size, args.fps = 4, "640x360", 15
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        source = make_source(Path(tmp) / "source.flv", args.seconds, args.size, args.fps)
        off, on = run(source, False, settings), run(source, True, settings)
    print(
        f"encode once: {args.seconds} s of {args.size}@{args.fps}, preset "
        f"{settings.x264_preset}, llhls_max_height {settings.llhls_max_height}"
    )
    print(f"{'':22}{'off':>10}{'on':>10}{'on/off':>10}")
    for label, a, b in (
        ("ingest CPU s", off.ingest_s, on.ingest_s),
        ("pool CPU s", off.pool_s, on.pool_s),
        ("ingest+pool CPU s", off.total_s, on.total_s),
        ("wall s (noisy)", off.wall_s, on.wall_s),
    ):
        print(f"{label:22}{a:10.2f}{b:10.2f}{b / a if a else 0:10.2f}")
    print(f"{'pool rung-segments':22}{off.pool_rungs:10}{on.pool_rungs:10}")
    print(f"{'remuxed rung-segments':22}{off.classic:10}{on.classic:10}")
    print(f"{'CPU saved per second':22}{(off.total_s - on.total_s) / args.seconds:10.2f} cores")
    # The remux must cover what the pool no longer encodes, or the comparison is void.
    ok = on.classic == off.pool_rungs - on.pool_rungs and off.classic == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
