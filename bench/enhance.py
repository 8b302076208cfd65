"""Enhancement benchmark: frames/s per resolution and batch size, and quality gain over bicubic.

Sources are real Big Buck Bunny frames, shrunk (antialiased bicubic) to each source
size; every case is a x2 upscale. Three pipelines are timed:
``bicubic`` (resize only, the baseline), ``sr`` (learned x2) and ``full`` (denoise,
learned x2, sharpen). Each case is warmed up once, then the fastest of ``--repeats`` calls is
reported; frames/s counts output frames, host-to-host (uint8 in, uint8 out).

Quality is measured on the held-out frames (the last 32, never trained on): PSNR and
SSIM on Y of the ``sr`` pipeline against the original 720p frames, next to bicubic.

    .venv/bin/python -m bench.enhance                    # CPU, 1 thread
    .venv/bin/python -m bench.enhance --device cuda      # GPU: fp16 + channels_last network
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models.enhance import EnhanceConfig, Enhancer, Size
from models.quality import psnr, ssim
from models.superres import load_pretrained
from models.train_superres import (
    decode_frames,
    default_media_path,
    evaluate,
    frames_to_luma,
    split_holdout,
)

SOURCES = {"360p": Size(640, 360), "540p": Size(960, 540), "720p": Size(1280, 720)}
PIPELINES = {
    "bicubic": EnhanceConfig(upscale=False),
    "sr": EnhanceConfig(upscale=True),
    "full": EnhanceConfig(upscale=True, denoise=True, sharpen=True),
}


def _resize(frames: np.ndarray, size: Size) -> np.ndarray:
    if frames.shape[1:3] == (size.height, size.width):
        return frames
    t = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    t = F.interpolate(
        t, size=(size.height, size.width), mode="bicubic", antialias=True, align_corners=False
    )
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _fps(
    enhancer: Enhancer, batch: np.ndarray, cfg: EnhanceConfig, repeats: int
) -> tuple[float, float]:
    """(wall, CPU) output frames/s of the fastest of ``repeats`` calls, after a warm-up.

    The fastest call, not the mean: on a shared machine other tenants only ever add
    time, so the minimum is the figure that reproduces (as ``timeit`` argues). CPU
    time (all threads of this process) is the steadier figure on a busy CPU box; on
    CUDA it only counts the host side, so read the wall column there.
    """
    enhancer.enhance(batch, cfg)  # warm-up: allocator, oneDNN/cuDNN kernel choice
    wall = cpu = float("inf")
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        enhancer.enhance(batch, cfg)  # returns host numpy, so CUDA work is finished here
        wall = min(wall, time.perf_counter() - w0)
        cpu = min(cpu, time.process_time() - c0)
    return len(batch) / wall, len(batch) / max(cpu, 1e-9)


def _speed(enhancer: Enhancer, frames: np.ndarray, args: argparse.Namespace) -> None:
    print(
        f"\nframes/s (fastest of {args.repeats} calls), x2 upscale, device={args.device}, "
        f"torch threads={torch.get_num_threads()}"
    )
    print("each cell: wall frames/s | frames per CPU-second")
    header = f"{'source -> target':<22}{'batch':>6}" + "".join(f"{p:>18}" for p in args.pipelines)
    print(header)
    print("-" * len(header))
    for name in args.sources:
        src = SOURCES[name]
        dst = Size(2 * src.width, 2 * src.height)
        pool = _resize(frames, src)
        for bs in args.batch_sizes:
            batch = pool[:bs]
            cells = []
            for pipe in args.pipelines:
                cfg = replace(PIPELINES[pipe], target_size=dst)
                wall, cpu = _fps(enhancer, batch, cfg, args.repeats)
                cells.append(f"{wall:>10.2f} |{cpu:>6.2f}")
            label = f"{name} -> {dst.height}p"
            print(f"{label:<22}{bs:>6}" + "".join(cells), flush=True)
    print("load average (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


def _quality(enhancer: Enhancer, held: np.ndarray) -> None:
    print(f"\nquality on {len(held)} held-out frames, PSNR/SSIM on Y vs the original 720p")
    net = evaluate(load_pretrained("cpu"), frames_to_luma(held))
    print("network alone (Y in, Y out; 8-bit):")
    for line in net.summary().splitlines()[1:]:
        print("  " + line)
    # End to end through Enhancer: RGB 360p in, RGB 720p out, chroma bicubic.
    small = _resize(held, SOURCES["360p"])
    truth = torch.from_numpy(held).permute(0, 3, 1, 2).float() / 255.0
    rows = []
    for pipe in ("bicubic", "sr"):
        cfg = replace(PIPELINES[pipe], target_size=Size(1280, 720))
        outs = [enhancer.enhance(small[i : i + 4], cfg) for i in range(0, len(small), 4)]
        pred = torch.from_numpy(np.concatenate(outs)).permute(0, 3, 1, 2).float() / 255.0
        rows.append((pipe, psnr(pred, truth).mean().item(), ssim(pred, truth).mean().item()))
    print("Enhancer 360p -> 720p (RGB in, RGB out):")
    for pipe, p, s in rows:
        print(f"  {pipe:<8} PSNR-Y {p:.3f} dB   SSIM-Y {s:.4f}")
    (_, pb, sb), (_, pm, sm) = rows
    print(f"  gain     PSNR-Y {pm - pb:+.3f} dB   SSIM-Y {sm - sb:+.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.enhance", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--sources", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    ap.add_argument("--pipelines", nargs="+", choices=list(PIPELINES), default=list(PIPELINES))
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per case after warm-up")
    ap.add_argument("--media", type=Path, default=default_media_path())
    ap.add_argument("--holdout", type=int, default=32)
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda asked for, but torch sees no CUDA device", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    frames = decode_frames(args.media)
    train, held = split_holdout(frames, args.holdout)
    enhancer = Enhancer(args.device, max_batch=max(args.batch_sizes))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.media.name}: {len(frames)} frames; device {name}; torch {torch.__version__}")
    # Timings on a shared box mean little without the load they were taken under.
    print("load average (1/5/15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    # Speed runs on training frames; quality only on held-out ones.
    _speed(enhancer, train[: max(args.batch_sizes)], args)
    if not args.skip_quality:
        _quality(enhancer, held)
    return 0


if __name__ == "__main__":
    sys.exit(main())
