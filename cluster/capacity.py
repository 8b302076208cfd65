"""`lumalive capacity`: how many CPU cores and GPUs one stream of a tier needs in real
time, and how many such streams a cluster carries, from measured rates.

Rates are source frames per second through a tier's whole ladder (x264 veryfast, one
thread per worker) per CPU core, and of the enhancement network (one x2 pass into the
tier's top rung) per core and per GPU. They come from the JSON that `bench/tiers.py`
writes (`RATES_PATH`; schema below), else from `DEFAULT_RATES`, each printed with its
source so a reader knows which figures are measurements and which are derived.

    {"8K": {"encode_fps_per_core": 0.625, "enhance_fps_per_core": 0.11,
            "enhance_fps_per_gpu": 8.4, "measured_on": "...", "date": "2026-11-27"}, ...}

(or the same mapping under a top-level "tiers" key). A field that is missing or null
in the file falls back to the default for that field alone.

Invariants:
- Needs are real-time needs: frames/s of the stream over frames/s per unit, never
  rounded down; a stream is carried only if the whole of its need fits.
- With `--ai` and no GPU in the cluster, enhancement is counted on CPU cores.
- Work is per segment, spread over every node (`actors.placement`), so a cluster's
  capacity is its total cores and GPUs; a node must still hold one segment's
  `SEGMENT_CPUS`, which `carried` checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.placement import SEGMENT_CPUS

__all__ = [
    "DEFAULT_RATES",
    "RATES_PATH",
    "Cluster",
    "Need",
    "Rate",
    "carried",
    "load_rates",
    "need",
    "parse_nodes",
    "report",
]

RATES_PATH = Path(__file__).resolve().parents[1] / "bench" / "results" / "tiers.json"

_HERE = "2-core dev box (shared, loaded), x264 veryfast 1 thread, synthetic frames, CPU time"
_H100 = "issue 9/8 figures, 16-core H100 host (2026-11)"
_MODELS = "docs/models.md, ESPCN x2 on one loaded CPU thread (frames per CPU-second)"


@dataclass(frozen=True, slots=True)
class Rate:
    """One figure and where it comes from."""

    value: float
    source: str


# Per tier: encode (whole ladder) per core, enhancement (x2 into the top rung) per core
# and per GPU. Derived figures say from what.
DEFAULT_RATES: dict[str, dict[str, Rate]] = {
    "1080p": {
        "encode_fps_per_core": Rate(17.4, f"measured 2026-11-27, {_HERE}"),
        "enhance_fps_per_core": Rate(2.05, f"540p->1080p, {_MODELS}"),
        "enhance_fps_per_gpu": Rate(312.0, f"derived: 4x the 1080p->4K rate, {_H100}"),
    },
    "4K": {
        "encode_fps_per_core": Rate(3.9, f"measured 2026-11-27, {_HERE}"),
        "enhance_fps_per_core": Rate(0.44, f"derived from 720p->1440p by pixels, {_MODELS}"),
        "enhance_fps_per_gpu": Rate(78.0, f"1080p->4K sr through the Enhancer, {_H100}"),
    },
    "8K": {
        # Real content on the H100 host (10 frames/s on 16 cores); here 0.93 on synthetic
        # frames, which x264 finds easier.
        "encode_fps_per_core": Rate(0.625, f"8K alone, 10 frames/s on 16 cores, {_H100}"),
        "enhance_fps_per_core": Rate(0.11, f"derived from 720p->1440p by pixels, {_MODELS}"),
        "enhance_fps_per_gpu": Rate(8.4, f"4K->8K through the Enhancer, {_H100}"),
    },
    "20K": {
        "encode_fps_per_core": Rate(0.093, "derived: the 8K rate / 6.7 (issue 9: 20K tiles)"),
        "enhance_fps_per_core": Rate(0.016, "derived: the 8K rate / 6.7 (tile pixels)"),
        "enhance_fps_per_gpu": Rate(1.25, "derived: the 8K rate / 6.7 (tile pixels)"),
    },
}
_FIELDS = ("encode_fps_per_core", "enhance_fps_per_core", "enhance_fps_per_gpu")


@dataclass(frozen=True, slots=True)
class Need:
    """One stream's real-time need."""

    tier: str
    fps: float
    ai: bool
    cpus: float  # encode (+ enhancement when it runs on CPU)
    gpus: float
    lines: tuple[str, ...]  # how each figure was reached, with its source


@dataclass(frozen=True, slots=True)
class Cluster:
    cpus: float
    gpus: float
    largest_node_cpus: float  # one segment must fit on a node


def load_rates(path: Path | None = RATES_PATH) -> dict[str, dict[str, Rate]]:
    """The defaults, overridden field by field by the benchmark's JSON if it exists."""
    rates = {tier: dict(fields) for tier, fields in DEFAULT_RATES.items()}
    if path is None or not path.exists():
        return rates
    data: dict[str, Any] = json.loads(path.read_text())
    data = data.get("tiers", data)
    for tier, record in data.items():
        if tier not in rates or not isinstance(record, dict):
            continue
        where = f"{path.name}: {record.get('measured_on') or '?'}, {record.get('date') or '?'}"
        for name in _FIELDS:
            value = record.get(name)
            if isinstance(value, int | float) and value > 0:
                rates[tier][name] = Rate(float(value), where)
    return rates


def need(
    tier: str, fps: float, ai: bool, rates: dict[str, dict[str, Rate]], *, gpu: bool = True
) -> Need:
    """One stream of `tier` at `fps`: cores to encode its ladder in real time, and with
    `ai` the enhancement on GPUs (or on cores when `gpu` is False)."""
    r = rates[tier]
    enc = r["encode_fps_per_core"]
    cpus = fps / enc.value
    lines = [f"encode   {enc.value:g} frames/s per core -> {cpus:.2f} cores   [{enc.source}]"]
    gpus = 0.0
    if ai and gpu:
        g = r["enhance_fps_per_gpu"]
        gpus = fps / g.value
        lines.append(f"enhance  {g.value:g} frames/s per GPU -> {gpus:.2f} GPUs   [{g.source}]")
    elif ai:
        c = r["enhance_fps_per_core"]
        extra = fps / c.value
        cpus += extra
        lines.append(
            f"enhance  {c.value:g} frames/s per core -> {extra:.2f} cores (no GPU)   [{c.source}]"
        )
    return Need(tier, fps, ai, cpus, gpus, tuple(lines))


def carried(one: Need, cluster: Cluster) -> tuple[int, str]:
    """How many streams like `one` the cluster carries at once, and what limits it."""
    if cluster.largest_node_cpus < SEGMENT_CPUS.get(one.tier, 1):
        return 0, f"no node has the {SEGMENT_CPUS.get(one.tier, 1)} CPUs one segment takes"
    limits = {"CPU": cluster.cpus / one.cpus if one.cpus else math.inf}
    if one.gpus:
        limits["GPU"] = cluster.gpus / one.gpus
    what = min(limits, key=lambda k: limits[k])
    return math.floor(limits[what] + 1e-9), f"limited by {what}"


def parse_nodes(spec: str) -> Cluster:
    """`COUNTxCPUS[:GPUS]`, comma-separated: `3x16:1,2x8` is three 16-core nodes with a
    GPU each and two 8-core nodes."""
    cpus = gpus = largest = 0.0
    for part in filter(None, (p.strip() for p in spec.split(","))):
        count, _, size = part.partition("x")
        node_cpus, _, node_gpus = size.partition(":")
        n, c, g = int(count), float(node_cpus), float(node_gpus or 0)
        if n < 0 or c < 0 or g < 0:
            raise ValueError(f"negative figure in {part!r}")
        cpus, gpus, largest = cpus + n * c, gpus + n * g, max(largest, c if n else 0)
    return Cluster(cpus, gpus, largest)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def report(tier: str, fps: float, ai: bool, cluster: Cluster | None, rates_path: Path) -> str:
    """What `lumalive capacity` prints."""
    rates = load_rates(rates_path)
    gpu = cluster is None or cluster.gpus > 0
    one = need(tier, fps, ai, rates, gpu=gpu)
    out = [f"one {tier} stream at {fps:g} fps{' with AI enhancement' if ai else ''}:"]
    out += [f"  {line}" for line in one.lines]
    out.append(
        f"  needs {math.ceil(one.cpus - 1e-9)} CPU cores"
        + (f" and {_count(math.ceil(one.gpus - 1e-9), 'GPU')}" if one.gpus else "")
        + f" in real time ({one.cpus:.2f} cores, {one.gpus:.2f} GPUs exactly;"
        f" {SEGMENT_CPUS.get(tier, 1)} CPUs per segment)"
    )
    if cluster is not None:
        n, why = carried(one, cluster)
        out.append(
            f"a cluster of {cluster.cpus:g} CPUs and {cluster.gpus:g} GPUs carries"
            f" {_count(n, 'such stream')} ({why})"
        )
    return "\n".join(out)
