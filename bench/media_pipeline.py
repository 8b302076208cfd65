"""Throughput of the media pipeline against a straight transcode, in one process.

The source is the sample clip as a live encoder publishes it: H.264 with B-frames and
a keyframe every 2 s, stereo AAC, in FLV (what the RTMP server hands the segmenter),
looped to about 20 s. Preparing it is not timed.

    baseline   one PyAV pass over the whole source: decode once, scale, encode every
               rendition, mux MPEG-TS. Same encoder, preset, threads, rate control and
               keyframe interval as the pipeline (`media.mux.add_video_stream`).
    pipeline   Segmenter -> SegmentTranscoder per segment, one after another, in this
               process: what each pool worker does, without the pool.

    ray N      (`--ray-workers 1 2`) the deployed path: segments as they are cut go to a
               `MediaPool` of N Ray workers (`SegmentWorker`: moderation at
               `--moderation-fps`, then the same transcode, then storage) and come back
               in order. Run twice: unpaced for throughput, and paced at real time (each
               segment released when its last byte would arrive live) for the latency
               from a segment's last byte in to its in-order publication.

Both print source frames per second, the real-time factor (source seconds per wall
second) and pipeline/baseline wall time. `run_pipeline` takes the function that
transcodes the segments, so the Ray pool plugs in there: it takes the segments as
they are cut and yields each one's renditions in order.

    .venv/bin/python -m bench.media_pipeline                  # 720p source, 720p/480p/360p
    .venv/bin/python -m bench.media_pipeline --loops 2 --repeat 3 --preset superfast
    .venv/bin/python -m bench.media_pipeline --upscale 1080   # 1080p source, 4-rung ladder
    .venv/bin/python -m bench.media_pipeline --ray-workers 1 2  # + the Ray pool, 1 and 2 workers
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.resampler import AudioResampler
from av.video.reformatter import Interpolation, VideoReformatter

from media.ladder import Rendition, build_ladder
from media.mux import add_video_stream
from media.segmenter import Segmenter, SourceSegment
from media.transcode import EncoderSettings, RenditionSegment, SegmentTranscoder

if not __package__:
    # Run as `python bench/media_pipeline.py`, only this folder is on the path; the
    # clip writer lives in the repository's `tests.utils`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.utils.media import publish_clip  # noqa: E402

AUDIO_RATE = 48_000

# Transcodes segments as they are cut, yielding each segment's renditions in order.
SegmentMapper = Callable[
    [Iterable[SourceSegment], Sequence[Rendition], EncoderSettings],
    Iterator[dict[str, RenditionSegment]],
]


@dataclass
class Source:
    data: bytes
    frames: int
    seconds: float
    width: int
    height: int
    fps: Fraction


@dataclass
class Result:
    mode: str
    wall_s: float
    frames: int
    cpu_s: float = 0.0  # this process's CPU time: steadier than wall time on a shared box
    bytes_by_rendition: dict[str, int] = field(default_factory=dict)
    peak_kbps_by_rendition: dict[str, float] = field(default_factory=dict)
    segments: int = 0


# --- source ----------------------------------------------------------------------------


def make_source(loops: int, gop_s: float, height: int | None) -> Source:
    """The clip re-encoded as a publisher would send it (x264 superfast with B-frames,
    fixed GOP, stereo AAC 48 kHz, FLV), looped `loops` times, optionally rescaled.
    The tests' clip writer, with the bench's average rate and x264's own threading."""
    clip = publish_clip(
        gop_seconds=gop_s,
        loops=loops,
        height=height,
        video_bitrate="6M" if (height or 0) > 720 else "3M",  # the clip itself is 720p
        threads=None,
    )
    return Source(clip.data, clip.frames, clip.seconds, clip.width, clip.height, clip.fps)


# --- (a) baseline ----------------------------------------------------------------------


class _BaselineOutput:
    """One rendition of the baseline: scaler, encoder and MPEG-TS muxer, set up as the
    pipeline's (`add_video_stream`), with the shared audio muxed in as it comes."""

    def __init__(self, r: Rendition, source: Source, settings: EncoderSettings, gop: int) -> None:
        self.rendition = r
        self.buffer = io.BytesIO()
        self.container = av.open(self.buffer, "w", format="mpegts")
        self.video = add_video_stream(self.container, r, source.fps, gop, settings)
        self.audio = self.container.add_stream(
            "aac", rate=AUDIO_RATE, layout="stereo", bit_rate=r.audio_kbps * 1000
        )
        self.scaler = VideoReformatter()
        self.interpolation = Interpolation[settings.interpolation.upper()]
        self.threads = settings.threads

    def encode(self, frame: av.VideoFrame, pts: int) -> None:
        r = self.rendition
        scaled = self.scaler.reformat(
            frame, r.width, r.height, "yuv420p",
            interpolation=self.interpolation, threads=self.threads,
        )  # fmt: skip
        scaled.pts, scaled.time_base = pts, Fraction(1, 90_000)
        self.container.mux(self.video.encode(scaled))

    def mux_audio(self, p: av.Packet[Any]) -> None:
        copy = av.Packet(bytes(p))
        copy.pts, copy.dts, copy.duration = p.pts, p.dts, p.duration
        copy.time_base = p.time_base
        copy.stream = self.audio
        self.container.mux(copy)

    def close(self) -> int:
        """Flush and close; the bytes written."""
        self.container.mux(self.video.encode(None))
        self.container.close()
        return len(self.buffer.getvalue())


def _aac_encoder(kbps: int) -> AudioCodecContext:
    encoder = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = AUDIO_RATE, "stereo", "fltp"
    encoder.bit_rate = kbps * 1000
    encoder.time_base = Fraction(1, AUDIO_RATE)
    return encoder


def run_baseline(
    source: Source, renditions: Sequence[Rendition], settings: EncoderSettings, gop: int
) -> Result:
    """Decode once, scale per rendition, encode, mux one MPEG-TS per rendition."""
    started, cpu = time.perf_counter(), time.process_time()
    with av.open(io.BytesIO(source.data), "r", format="flv") as src:
        vin, ain = src.streams.video[0], src.streams.audio[0]
        vin.codec_context.thread_count = settings.threads
        outs = [_BaselineOutput(r, source, settings, gop) for r in renditions]
        # One audio encode, muxed into every output, as the pipeline does.
        encoder = _aac_encoder(renditions[0].audio_kbps)
        resampler = AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024)
        frames = 0

        def mux_audio(packets: list[av.Packet[Any]]) -> None:
            for p in packets:
                for o in outs:
                    o.mux_audio(p)

        for packet in src.demux(vin, ain):
            if packet.stream is ain:
                for sound in ain.decode(packet):
                    for g in resampler.resample(sound):
                        mux_audio(encoder.encode(g))
                continue
            for frame in vin.decode(packet):
                frames += 1
                assert frame.pts is not None and frame.time_base is not None
                pts = round(frame.pts * frame.time_base * 90_000)
                for o in outs:
                    o.encode(frame, pts)
        for g in resampler.resample(None):
            mux_audio(encoder.encode(g))
        mux_audio(encoder.encode(None))
        sizes = {o.rendition.name: o.close() for o in outs}
    return Result(
        "baseline", time.perf_counter() - started, frames, time.process_time() - cpu, sizes
    )


# --- (b) pipeline ----------------------------------------------------------------------


def transcode_sequentially(
    segments: Iterable[SourceSegment], renditions: Sequence[Rendition], settings: EncoderSettings
) -> Iterator[dict[str, RenditionSegment]]:
    """One `SegmentTranscoder` in this process, one segment at a time."""
    transcoder = SegmentTranscoder(settings)
    for segment in segments:
        yield transcoder.transcode(segment.data, renditions, expected_frames=segment.frames)


def run_pipeline(
    source: Source,
    renditions: Sequence[Rendition],
    settings: EncoderSettings,
    transcode_segments: SegmentMapper = transcode_sequentially,
    mode: str = "pipeline",
) -> Result:
    """Segment the live FLV and transcode every segment with `transcode_segments`.
    `cpu_s` only counts this process: a pool's workers report their own."""
    started, cpu = time.perf_counter(), time.process_time()
    segmenter = Segmenter(io.BytesIO(source.data), format="flv", target_duration=2.0)
    result = Result(mode, 0.0, 0)
    for out in transcode_segments(segmenter, renditions, settings):
        result.segments += 1
        result.frames += next(iter(out.values())).frames
        for name, seg in out.items():
            result.bytes_by_rendition[name] = result.bytes_by_rendition.get(name, 0) + seg.size
            kbps = seg.size * 8 / seg.duration / 1000
            peak = result.peak_kbps_by_rendition.get(name, 0.0)
            result.peak_kbps_by_rendition[name] = max(peak, kbps)
    result.wall_s = time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu
    return result


# --- (c) the Ray pool ------------------------------------------------------------------


class RayPool:
    """A `MediaPool` of `workers` Ray actors, driven from this synchronous process through
    an event loop in a thread (the ingest actor drives it from its own loop)."""

    def __init__(self, workers: int, preset: str, moderation_fps: float, media_dir: str) -> None:
        from actors.media_pool import MediaPool
        from lumalive.settings import Settings

        self.workers = workers
        self.moderation_fps = moderation_fps
        self.settings = Settings(
            data_dir=Path(media_dir), media_dir=Path(media_dir), x264_preset=preset
        )
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.pool = MediaPool(self.settings, size=workers, idle_s=3600)
        self.cpu_s = 0.0  # the workers' CPU for the segments delivered so far

    def submit(
        self, segment: SourceSegment, renditions: Sequence[Rendition]
    ) -> Future[tuple[Any, float]]:
        """A future of (outcome, perf_counter when the pool delivered it)."""
        from actors.media_worker import SegmentJob

        job = SegmentJob(
            "bench",
            segment.sequence,
            tuple(renditions),
            segment.frames,
            moderation_fps=self.moderation_fps,
            submitted_at=time.time(),
        )

        async def run() -> tuple[Any, float]:
            outcome = await self.pool.run(job, segment.data)
            return outcome, time.perf_counter()

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def warm(self, segment: SourceSegment, renditions: Sequence[Rendition]) -> None:
        """Start every worker and load its models (not timed)."""
        for future in [self.submit(segment, renditions) for _ in range(self.workers)]:
            future.result()

    def mapper(self, pace: bool, latencies: list[float]) -> SegmentMapper:
        """Segments to the pool as they are cut; renditions back in cut order. With `pace`,
        segment i is released when its last byte would arrive from a live publisher, and
        `latencies` gets, per segment, release -> in-order publication (a segment is
        published when it is done and every earlier one is)."""

        def transcode(
            segments: Iterable[SourceSegment],
            renditions: Sequence[Rendition],
            settings: EncoderSettings,
        ) -> Iterator[dict[str, RenditionSegment]]:
            pending: deque[tuple[int, float, Future[tuple[Any, float]]]] = deque()
            published = 0.0
            t0 = time.perf_counter()
            origin: float | None = None

            def publish() -> dict[str, RenditionSegment]:
                nonlocal published
                seq, released, future = pending.popleft()
                outcome, finished = future.result()
                if outcome.result.error:
                    raise SystemExit(f"segment {seq}: {outcome.result.error}")
                published = max(published, finished)
                latencies.append(published - released)
                self.cpu_s += outcome.result.timings.get("cpu", 0.0) / 1000
                # EncodedRendition has what run_pipeline reads: frames, size, duration.
                return {e.name: cast(RenditionSegment, e) for e in outcome.result.renditions}

            for segment in segments:
                if pace:
                    origin = segment.start_pts_seconds if origin is None else origin
                    due = t0 + segment.end_pts_seconds - origin
                    time.sleep(max(0.0, due - time.perf_counter()))
                pending.append(
                    (segment.sequence, time.perf_counter(), self.submit(segment, renditions))
                )
                while pending and pending[0][2].done():
                    yield publish()
            while pending:
                yield publish()

        return transcode

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.pool.shutdown)
        self.loop.call_soon_threadsafe(self.loop.stop)


def run_ray(
    source: Source,
    renditions: Sequence[Rendition],
    settings: EncoderSettings,
    workers: int,
    moderation_fps: float,
    repeat: int,
) -> tuple[Result, list[float]]:
    """Best-of-`repeat` unpaced throughput, and the latencies of one paced run."""
    with tempfile.TemporaryDirectory(prefix="bench-media-") as media_dir:
        pool = RayPool(workers, settings.preset, moderation_fps, media_dir)
        try:
            first = next(iter(Segmenter(io.BytesIO(source.data), format="flv")))
            pool.warm(first, renditions)
            best: Result | None = None
            for _ in range(repeat):
                pool.cpu_s = 0.0
                result = run_pipeline(
                    source, renditions, settings, pool.mapper(False, []), mode=f"ray {workers}w"
                )
                result.cpu_s = pool.cpu_s  # the workers', not this process's
                best = result if best is None or result.wall_s < best.wall_s else best
            latencies: list[float] = []
            run_pipeline(
                source,
                renditions,
                settings,
                pool.mapper(True, latencies),
                mode=f"ray {workers}w paced",
            )
        finally:
            pool.close()
    assert best is not None
    return best, latencies


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- main ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=4, help="clip loops (5.28 s each)")
    parser.add_argument("--upscale", type=int, default=None, help="source height, e.g. 1080")
    parser.add_argument("--tier", default="1080p")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--threads", type=int, default=1, help="encoder/scaler threads; 0 = auto")
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the best counts")
    parser.add_argument(
        "--ray-workers",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also run the Ray pool with N workers (e.g. 1 2)",
    )
    parser.add_argument(
        "--moderation-fps",
        type=float,
        default=1.0,
        help="frames per second the Ray workers score (0: no moderation)",
    )
    parser.add_argument(
        "--ray-niceness",
        type=int,
        default=0,
        help="Ray worker niceness (Ray's default is 15; 0 = the baseline's)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    source = make_source(args.loops, 2.0, args.upscale)
    renditions, reason = build_ladder(
        source.width, source.height, args.tier, ai_enhance=False, fps=float(source.fps)
    )
    settings = EncoderSettings(preset=args.preset, threads=args.threads)
    gop = round(2.0 * source.fps)
    print(
        f"source: {source.width}x{source.height} {float(source.fps):g} fps, {source.frames} "
        f"frames, {source.seconds:.1f} s, {len(source.data) / 1e6:.1f} MB FLV; ladder: "
        + ", ".join(f"{r.name} {r.width}x{r.height} {r.video_kbps}k" for r in renditions)
        + (f" ({reason})" if reason else "")
        + f"; x264 {settings.preset}, threads={settings.threads}"
    )
    best: dict[str, Result] = {}
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both
        for result in (
            run_baseline(source, renditions, settings, gop),
            run_pipeline(source, renditions, settings),
        ):
            if result.mode not in best or result.wall_s < best[result.mode].wall_s:
                best[result.mode] = result
    report(source, renditions, best)
    if args.ray_workers:
        run_ray_modes(args, source, renditions, settings, best["baseline"])


def report(source: Source, renditions: Sequence[Rendition], best: dict[str, Result]) -> None:
    """Throughput of each mode, pipeline over baseline, and bitrates per rendition."""
    for result in best.values():
        if result.frames != source.frames:
            raise SystemExit(f"{result.mode}: {result.frames} frames out of {source.frames}")
        print(
            f"{result.mode:9s} wall {result.wall_s:7.2f} s  {result.frames / result.wall_s:6.1f} "
            f"source frames/s  {source.seconds / result.wall_s:5.2f}x real time | "
            f"CPU {result.cpu_s:7.2f} s  {result.frames / result.cpu_s:6.1f} frames/CPU-s  "
            f"{source.seconds / result.cpu_s:5.2f}x real time per core"
            + (f"  ({result.segments} segments)" if result.segments else "")
        )
    pipe, base = best["pipeline"], best["baseline"]
    print(
        f"pipeline/baseline: wall {pipe.wall_s / base.wall_s:.2f}, "
        f"CPU {pipe.cpu_s / base.cpu_s:.2f}"
    )
    for r in renditions:
        avg = pipe.bytes_by_rendition[r.name] * 8 / source.seconds / 1000
        print(
            f"  {r.name}: {avg:7.0f} kbit/s average (target {r.video_kbps + r.audio_kbps}), "
            f"peak segment {pipe.peak_kbps_by_rendition[r.name]:7.0f} kbit/s "
            f"(BANDWIDTH {r.bandwidth / 1000:.0f}); baseline "
            f"{base.bytes_by_rendition[r.name] * 8 / source.seconds / 1000:.0f}"
        )


def run_ray_modes(
    args: argparse.Namespace,
    source: Source,
    renditions: Sequence[Rendition],
    settings: EncoderSettings,
    base: Result,
) -> None:
    import ray

    # Ray starts its workers at niceness 15 (so the raylet and drivers win the CPU); the
    # baseline runs in this process at 0, so on a shared machine the comparison would
    # mostly measure the niceness. `--ray-niceness 15` measures what a deployment gets.
    ray.init(
        num_cpus=max([os.cpu_count() or 1, *args.ray_workers]),
        include_dashboard=False,
        namespace="bench",
        log_to_driver=False,
        _system_config={"worker_niceness": args.ray_niceness},
    )
    print(
        f"ray pool: SegmentWorker per segment (moderation {args.moderation_fps:g} fps, "
        f"x264 {settings.preset}, 1 thread), {ray.cluster_resources().get('CPU', 0):g} CPUs, "
        f"worker niceness {args.ray_niceness}"
    )
    results: dict[int, Result] = {}
    for workers in args.ray_workers:
        result, latencies = run_ray(
            source, renditions, settings, workers, args.moderation_fps, args.repeat
        )
        if result.frames != source.frames:
            raise SystemExit(f"{result.mode}: {result.frames} frames out of {source.frames}")
        results[workers] = result
        print(
            f"{result.mode:9s} wall {result.wall_s:7.2f} s  {result.frames / result.wall_s:6.1f} "
            f"source frames/s  {source.seconds / result.wall_s:5.2f}x real time  "
            f"({result.segments} segments) | ray/baseline wall {result.wall_s / base.wall_s:.2f}"
            f" | worker CPU {result.cpu_s:6.2f} s  {result.frames / result.cpu_s:5.1f} frames/CPU-s"
            f" (ray/baseline CPU {result.cpu_s / base.cpu_s:.2f})\n"
            f"{'':9s} paced at real time: last byte in -> published p50 "
            f"{percentile(latencies, 0.5):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
            f"mean {statistics.fmean(latencies):.2f} s"
        )
    if 1 in results and 2 in results:
        print(f"2 workers / 1 worker: {results[1].wall_s / results[2].wall_s:.2f}x the throughput")
    ray.shutdown()


if __name__ == "__main__":
    main()
