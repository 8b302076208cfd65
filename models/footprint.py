"""The enhancer's memory footprint as arithmetic, without importing torch.

`models.enhance.Enhancer` takes its tiling defaults from here, and the ingest (which
must not load torch to plan a ladder) estimates a worker's memory with the same
formula (`actors.media_memory`).

Invariants:
- `enhance_working_set_bytes` is an upper bound of the peak RSS one `Enhancer.enhance`
  call adds on CPU, whatever the batch: measured 492 MB (1080p -> 4K, one frame, sr),
  607 MB (four frames), 728 MB (two frames, denoise + sr + sharpen), 1.26 GB
  (1080p -> 8K) against estimates of 752 MB, 752 MB, 752 MB and 1.65 GB.
"""

from __future__ import annotations

__all__ = [
    "FRAME_FLOATS",
    "MAX_PIXELS_CPU",
    "MAX_PIXELS_CUDA",
    "NET_FLOATS",
    "TILE_BATCH",
    "TILE_CPU",
    "TILE_CUDA",
    "TILE_OVERLAP",
    "enhance_working_set_bytes",
]

# Network tiles (low-resolution pixels a side) and their context on each side; the
# context must exceed the network's receptive radius (4 px) and bicubic's (2 px).
TILE_CPU = 256
TILE_CUDA = 512
TILE_OVERLAP = 8
TILE_BATCH = 8  # tiles per forward pass
# Output pixels of frames enhanced at once: one 4K frame on CPU, four on CUDA (fp32
# YCbCr at 8K is 400 MB a frame; batching frames buys nothing on CPU).
MAX_PIXELS_CPU = 3840 * 2160
MAX_PIXELS_CUDA = 4 * 3840 * 2160
# fp32 values per output pixel alive at the peak of a chunk (YCbCr at the output size,
# the x2 pass it came from, the chroma resize, RGB out), and per network window pixel
# (the 64- and 32-channel activations and their replicate-padded copies, the output).
FRAME_FLOATS = 8
NET_FLOATS = 200


def enhance_working_set_bytes(
    target: tuple[int, int],
    *,
    tile: int = TILE_CPU,
    tile_batch: int = TILE_BATCH,
    max_pixels: int = MAX_PIXELS_CPU,
    half: bool = False,
) -> int:
    """Peak bytes one `enhance` call adds for frames enlarged to `target` (width, height).

    Frames go `max_pixels // target` at a time (at least one): `FRAME_FLOATS` fp32
    values per output pixel plus 6 bytes of uint8 output (the result and its copy).
    The network sees `tile_batch` windows of `(tile + 2 * TILE_OVERLAP)^2` pixels,
    `NET_FLOATS` values each, fp16 (`half`) on CUDA.
    """
    out_px = max(1, target[0] * target[1])
    frames = max(1, max_pixels // out_px)
    side = tile + 2 * TILE_OVERLAP
    net = tile_batch * side * side * NET_FLOATS * (2 if half else 4)
    return frames * out_px * (FRAME_FLOATS * 4 + 6) + net
