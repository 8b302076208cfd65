"""Device check for a lent GPU machine: one call, under 5 minutes, one table.

Rows (each skipped with its reason where this machine lacks what it needs; this is a
check, not a test):

- enhancement throughput per tier, 1080p source: 4K (one x2 pass) and 8K (two), the
  network in fp16/channels_last on CUDA, eager and ``torch.compile`` (compile time
  apart), host uint8 in and out through ``models.enhance.Enhancer`` (tiled);
- the network alone on device tensors (what the model could do without host trips);
- the pool end to end: ``actors.frame_batcher.EnhancerService`` (the enhancer actor's
  Ray-free core) fed by 4 concurrent "streams" of 2-frame 1080p batches, and, with
  PyAV, a short 1080p -> 4K segment through ``SegmentTranscoder`` whose frame hook
  calls that service (x264 on CPU);
- moderation frames/s: NudeNet through onnxruntime, CPU provider and CUDA provider;
- decode: a 1080p H.264 clip on CPU and through NVDEC (PyAV ``HWAccel("cuda")``), with
  ``av.open`` and with the pipeline's own ``media.demux.decode_video`` (which media
  workers holding a GPU use);
- the encoder registry's probe (which of x264/x265/SVT-AV1/NVENC open here).

The device image has torch but no PyAV, Ray or nudenet. To get the PyAV rows, carry
its wheel (see /work/.library/device/README.md, "a Python package missing there"):
``pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
manylinux_2_28_x86_64 -d .whl av==18.*`` (and ``nudenet==3.4.2`` for moderation),
name ``.whl`` in ``carry`` and run ``bench/gpu_check.sh``, which installs them first.

    python bench/gpu_check.py            # on the GPU box
    python bench/gpu_check.py --cpu      # smoke run here: tiny sizes, CPU only
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import os
import sys
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from actors.frame_batcher import EnhancerService  # noqa: E402
from models.enhance import EnhanceConfig, Enhancer  # noqa: E402

Row = tuple[str, str, str]  # check, result, note
ROWS: list[Row] = []


def row(check: str, result: str, note: str = "") -> None:
    ROWS.append((check, result, note))
    print(f"  {check}: {result} {note}", flush=True)


def skip(check: str, reason: str) -> None:
    row(check, "skipped", reason)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls (after one warm-up), device synced."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


# --- enhancement -------------------------------------------------------------------------


def enhancement(args: argparse.Namespace, device: str) -> Enhancer:
    src = args.source
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, src[1], src[0], 3), np.uint8)
    tiers = {"4K": (2 * src[0], 2 * src[1]), "8K": (4 * src[0], 4 * src[1])}
    best: Enhancer | None = None
    for compiled in (False, True):
        label = "compile" if compiled else "eager"
        t0 = time.perf_counter()
        try:
            enhancer = Enhancer(device, compile=compiled)
            enhancer.enhance(frames, EnhanceConfig(target_size=tiers["4K"]))  # compiles here
        except Exception as e:  # noqa: BLE001 - a check reports, it does not stop
            skip(f"enhance ({label})", f"{type(e).__name__}: {e}"[:160])
            continue
        setup = time.perf_counter() - t0
        for tier, size in tiers.items():
            for name, cfg in (
                ("sr", EnhanceConfig(target_size=size)),
                ("full", EnhanceConfig(target_size=size, denoise=True, sharpen=True)),
            ):
                s = timed(lambda e=enhancer, c=cfg: e.enhance(frames, c), args.repeats)
                row(
                    f"enhance {src[1]}p->{size[1]}p ({tier} tier) {name} {label}",
                    f"{len(frames) / s:.1f} frames/s",
                    f"batch {len(frames)}, {'fp16' if device == 'cuda' else 'fp32'}, tile "
                    f"{enhancer.tile}" + (f"; setup+compile {setup:.0f} s" if compiled else ""),
                )
        windows = torch.rand(
            (enhancer.max_batch, 1, enhancer.tile + 16, enhancer.tile + 16), device=device
        )
        s = timed(lambda e=enhancer, w=windows: e._forward(w), args.repeats)
        per_frame = (src[0] / enhancer.tile) * (src[1] / enhancer.tile)
        row(
            f"network alone {label}",
            f"{enhancer.max_batch / s / per_frame:.1f} frames/s",
            f"{src[1]}p-equivalent, device tensors, {enhancer.max_batch} tiles/call",
        )
        best = enhancer  # the compiled one when it compiled
    assert best is not None
    return best


# --- the pool ------------------------------------------------------------------------------


def pool(args: argparse.Namespace, enhancer: Enhancer) -> None:
    src = args.source
    target = (2 * src[0], 2 * src[1])
    cfg = EnhanceConfig(target_size=target)
    service = EnhancerService(window_s=0.005, enhancer_factory=lambda: enhancer)
    frames = np.random.default_rng(1).integers(0, 256, (2, src[1], src[0], 3), np.uint8)

    async def streams(rounds: int) -> None:
        async def one() -> None:
            for _ in range(rounds):
                await service.enhance(frames, cfg)

        await asyncio.gather(*(one() for _ in range(4)))

    asyncio.run(streams(1))  # warm-up
    t = time.perf_counter()
    asyncio.run(streams(args.rounds))
    s = time.perf_counter() - t
    stats = service.stats()
    row(
        f"pool service {src[1]}p->{target[1]}p",
        f"{4 * args.rounds * 2 / s:.1f} frames/s",
        f"4 streams x 2-frame batches; {stats['enhance_requests']} requests in "
        f"{stats['enhance_calls']} model calls",
    )
    if not has("av"):
        skip(
            f"pool segment {src[1]}p->{target[1]}p", "no PyAV (carry its wheel: see the docstring)"
        )
        return
    segment_through_pool(args, service, target)


def segment_through_pool(args: argparse.Namespace, service: EnhancerService, target: Any) -> None:
    from media.ladder import Rendition
    from media.segmenter import Segmenter
    from media.transcode import EncoderSettings, SegmentTranscoder

    src = args.source
    clip = h264_clip(src, args.segment_frames, fmt="flv")
    [segment] = list(Segmenter(io.BytesIO(clip), format="flv", target_duration=1e9))
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def hook(frames: np.ndarray, r: Rendition) -> np.ndarray:
        cfg = EnhanceConfig(target_size=(r.width, r.height))
        return asyncio.run_coroutine_threadsafe(service.enhance(frames, cfg), loop).result()

    renditions = [
        Rendition("4K", target[0], target[1], 25_000, fps=30.0, needs_upscale=True),
        Rendition("1080p", src[0], src[1], 8_000, fps=30.0),
    ]
    transcoder = SegmentTranscoder(EncoderSettings(preset="veryfast", threads=8, hook_batch=2))
    t = time.perf_counter()
    out = transcoder.transcode(segment.data, renditions, hook, expected_frames=segment.frames)
    s = time.perf_counter() - t
    loop.call_soon_threadsafe(loop.stop)
    row(
        f"pool segment {src[1]}p->{target[1]}p",
        f"{segment.frames / s:.1f} frames/s",
        f"{segment.frames} frames to {target[1]}p (AI) + {src[1]}p, x264 veryfast 8 threads;"
        f" upscaled frames out {out['4K'].frames}",
    )


# --- moderation, decode, encoders ------------------------------------------------------------


def h264_clip(size: tuple[int, int], frames: int, fmt: str = "mp4") -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        vs = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "g": "30"})
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        rng = np.random.default_rng(2)
        base = rng.integers(0, 256, (size[1], size[0], 3), np.uint8)
        for i in range(frames):
            f = av.VideoFrame.from_ndarray(np.roll(base, 8 * i, axis=1), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
    return buf.getvalue()


def moderation(args: argparse.Namespace) -> None:
    if not has("av"):
        skip("moderation", "no PyAV (the detector letterboxes with it)")
        return
    if not has("nudenet"):
        skip("moderation", "nudenet not installed (carry nudenet==3.4.2's wheel)")
        return
    import onnxruntime as ort

    from models.nsfw import NsfwDetector

    frames = list(np.random.default_rng(3).integers(0, 256, (8, 1080, 1920, 3), np.uint8))
    for provider in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        if provider not in ort.get_available_providers():
            skip(f"moderation {provider}", "not in this onnxruntime (onnxruntime-gpu has it)")
            continue
        detector = NsfwDetector(providers=[provider], threads=os.cpu_count() or 1)
        s = timed(lambda d=detector: d.score(frames), args.repeats)
        row(f"moderation {provider}", f"{len(frames) / s:.1f} frames/s", "1080p, batch 8")


def decode(args: argparse.Namespace) -> None:
    if not has("av"):
        skip("decode", "no PyAV (carry its wheel)")
        return
    import av
    from av.codec.hwaccel import HWAccel

    clip = h264_clip(args.source, args.decode_frames)

    def run(hwaccel: Any) -> int:
        with av.open(io.BytesIO(clip), hwaccel=hwaccel) as c:
            return sum(1 for _ in c.decode(video=0))

    for name, accel in (("CPU", None), ("NVDEC", "cuda")):
        if accel and not torch.cuda.is_available():
            skip(f"decode {name}", "no CUDA device")
            continue
        try:
            hw = HWAccel(device_type=accel) if accel else None
            n = run(hw)
            s = timed(lambda hw=hw: run(hw), args.repeats)
        except Exception as e:  # noqa: BLE001
            skip(f"decode {name}", f"{type(e).__name__}: {e}"[:160])
            continue
        row(f"decode {name}", f"{n / s:.0f} frames/s", f"{args.source[1]}p H.264, {n} frames")
    pipeline_decode(args)


def pipeline_decode(args: argparse.Namespace) -> None:
    """The transcoder's own decode (`media.demux.decode_video`), software and NVDEC."""
    from media.demux import decode_video, demux

    source = demux(h264_clip(args.source, args.decode_frames, fmt="mpegts"))
    for name, accel in (("CPU", None), ("NVDEC", "cuda")):
        if accel and not torch.cuda.is_available():
            skip(f"decode_video {name}", "no CUDA device")
            continue
        try:
            n = sum(1 for _ in decode_video(source, 0, accel))
            s = timed(lambda a=accel: sum(1 for _ in decode_video(source, 0, a)), args.repeats)
        except Exception as e:  # noqa: BLE001
            skip(f"decode_video {name}", f"{type(e).__name__}: {e}"[:160])
            continue
        row(f"decode_video {name}", f"{n / s:.0f} frames/s", "the pipeline's decode path")


def encoders() -> None:
    if not has("av"):
        skip("encoder probe", "no PyAV (carry its wheel)")
        return
    from media.encoders import default_registry

    available = default_registry().available()
    opened = ", ".join(n for n, ok in available.items() if ok) or "none"
    missing = ", ".join(n for n, ok in available.items() if not ok) or "none"
    row("encoder probe", opened, f"unavailable: {missing}")


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="smoke run on CPU, tiny sizes")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    if args.cpu:
        args.source, args.batch, args.rounds, args.repeats = (192, 108), 2, 1, 1
        args.segment_frames, args.decode_frames = 4, 8
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        args.source, args.batch, args.rounds = (1920, 1080), 4, 4
        args.segment_frames, args.decode_frames = 30, 120
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(
        f"device {name}; torch {torch.__version__}; PyAV {'yes' if has('av') else 'no'}; "
        f"Ray {'yes' if has('ray') else 'no'}; onnxruntime {'yes' if has('onnxruntime') else 'no'}"
    )
    if not torch.cuda.is_available() and not args.cpu:
        print("no CUDA device: run with --cpu for a smoke run", file=sys.stderr)
        return 2
    started = time.perf_counter()
    best = enhancement(args, device)
    pool(args, best)
    moderation(args)
    decode(args)
    encoders()
    width = max(len(r[0]) for r in ROWS)
    print(f"\n{'check':<{width}}  {'result':<22} note")
    print("-" * (width + 60))
    for check, result, note in ROWS:
        print(f"{check:<{width}}  {result:<22} {note}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
