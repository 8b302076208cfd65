"""What LumaLive's work asks Ray for, so the scheduler places it and an autoscaler
(Ray's own, or KubeRay's) sees the demand and adds the right nodes.

No Ray import: the functions take the cluster's resources as plain dicts
(`ray.cluster_resources()`, `ray.nodes()`), so the rules are testable without a
cluster, and the KubeRay manifest is checked against the names defined here.

What is declared, per unit of work:

    media worker (one segment at a time)   CPU: `SEGMENT_CPUS` of the tier it encodes
                                             (x264 gets as many threads), 1 by default
                                           `media_encode_resource`: 1, when set (only
                                             nodes started with it encode)
                                           GPU: `media_gpu_share`, on clusters with GPUs
                                             and no dedicated encode nodes (with them,
                                             enhancement is the enhancer pool's)
                                           `nvenc`: 1, only with encoder_hardware=require
    enhancer actor                         a GPU share (`actors.enhancer_pool`)
    API replica / RTMP ingest              0 CPU; `edge_resource`: 0.001 when set (pinned
                                             to the nodes started with it)
    stream actors, embedder, webhook       0 CPU; `edge_resource` as the API: the control
      dispatcher                             plane stays off the media nodes, whose CPUs
                                             are the workers' (`bench/scale_out.py` found
                                             them there taking 0.1-0.5 of a 0.5-core node)

Invariants:
- A custom resource is asked for only if the operator named it (`media_encode_resource`,
  `edge_resource`) or asked for hardware encoding (`encoder_hardware=require`): a plain
  `lumalive up` on one machine places everything as before (workers: 1 CPU up to 1080p).
- The `nvenc` resource is asked for only when the encoder registry can only pick
  NVENC (`require`); with `auto` a worker runs anywhere and the registry uses NVENC
  where the node's FFmpeg opens it, so CPU-only nodes keep encoding.
- `pool_capacity` counts only alive nodes: a node that died stops counting as soon
  as the GCS declares it dead, and one that joins counts at once, so the pool never
  binds a segment to a worker no node can hold, and uses a new node without a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from lumalive.settings import Settings

__all__ = [
    "NVENC_RESOURCE",
    "SEGMENT_CPUS",
    "TIER_BY_HEIGHT",
    "api_options",
    "demand",
    "ingest_options",
    "pool_capacity",
    "proxy_location",
    "resource_names",
    "tier_cpus",
    "worker_cpus",
    "worker_options",
]

# The custom resource of nodes whose GPU has NVENC (L4, L40S; H100/H200 have none):
# start them with `--resources='{"nvenc": N}'` (N: concurrent encode sessions).
NVENC_RESOURCE = "nvenc"

# CPUs one segment of a tier's ladder is given (x264 threads of its worker). Throughput
# comes from more workers; more cores per segment cut its latency (x264's frame threads
# encode several frames at once). Above 1080p one core needs many segment durations
# per segment (8K: ~0.6-0.9 frames/s per core), so the latency sets these figures.
SEGMENT_CPUS: dict[str, int] = {"1080p": 1, "4K": 2, "8K": 4, "20K": 4}

# Tiers by the short side of their top rung (20K is a grid of 4K-class tiles).
TIER_BY_HEIGHT: tuple[tuple[int, str], ...] = ((1080, "1080p"), (2160, "4K"), (4320, "8K"))

# Pinning asks for a sliver of the node's custom resource: any number of API replicas
# and the ingest fit on a node that advertises 1 of it.
_PIN = 0.001


def tier_cpus(tier: str) -> int:
    """CPUs per segment of `tier` ("1080p", "4K", "8K", "20K"; lower ladders: 1)."""
    return SEGMENT_CPUS.get(tier, 1)


def worker_cpus(settings: Settings) -> int:
    """CPUs (and x264 threads) of one media worker: `media_worker_cpus`, else the table's
    figure for the tallest rung the deployment encodes (`media_max_height`), else 1."""
    if settings.media_worker_cpus:
        return settings.media_worker_cpus
    cap = settings.media_max_height
    if cap is None:
        return 1
    for height, tier in TIER_BY_HEIGHT:
        if cap <= height:
            return tier_cpus(tier)
    return tier_cpus("20K")


def worker_options(settings: Settings, cluster: Mapping[str, float]) -> dict[str, Any]:
    """Ray options of one media worker, given `ray.cluster_resources()` (see the table in
    the module docstring)."""
    options: dict[str, Any] = {"num_cpus": worker_cpus(settings)}
    resources: dict[str, float] = {}
    if settings.media_encode_resource:
        resources[settings.media_encode_resource] = 1
    if settings.encoder_hardware == "require":
        resources[NVENC_RESOURCE] = 1
    if resources:
        options["resources"] = resources
    # Dedicated encode nodes are CPU nodes (KubeRay's cpu-encode group): a GPU share
    # would keep workers off them. Enhancement then runs in the enhancer pool.
    if cluster.get("GPU", 0) > 0 and not settings.media_encode_resource:
        options["num_gpus"] = settings.media_gpu_share
    return options


def _pinned(settings: Settings) -> dict[str, Any]:
    name = settings.edge_resource
    return {"resources": {name: _PIN}} if name else {}


def api_options(settings: Settings) -> dict[str, Any]:
    """`ray_actor_options` of an API replica: no CPU (it waits on I/O), pinned if asked."""
    return {"num_cpus": 0, **_pinned(settings)}


def control_options(settings: Settings) -> dict[str, Any]:
    """Placement of the control plane's actors (each stream's actor, the embedder, the
    webhook dispatcher): declared 0 CPU, so without a pin Ray puts them on any node,
    media nodes included, where they take CPU the workers were sized for. With
    `edge_resource` set they go where the API runs; unset: anywhere, as before."""
    return _pinned(settings)


def proxy_location(settings: Settings) -> str:
    """Where Serve runs its HTTP proxies: on the head only when the API is pinned to the
    edge (the head, in our manifests: the node whose API port the outside reaches),
    else on every node (Serve's default)."""
    return "HeadOnly" if settings.edge_resource else "EveryNode"


def ingest_options(settings: Settings) -> dict[str, Any]:
    """Placement of the RTMP ingest actor: on the edge nodes if `edge_resource` is set
    (their RTMP port is what broadcasters reach). Empty: the caller's own node."""
    return _pinned(settings)


def pool_capacity(options: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]]) -> int:
    """How many workers with `options` the alive nodes of `ray.nodes()` hold at once,
    counting each node's totals (what the workers hold is theirs to count)."""
    need = demand(options)
    total = 0
    for node in nodes:
        if not node.get("Alive", node.get("alive", False)):
            continue
        have: Mapping[str, float] = node.get("Resources") or {}
        total += min((math.floor(have.get(r, 0) / n + 1e-9) for r, n in need.items()), default=0)
    return total


def demand(options: Mapping[str, Any]) -> dict[str, float]:
    """`options` as Ray resource names and amounts (zero amounts left out)."""
    need = {
        "CPU": float(options.get("num_cpus", 1)),
        "GPU": float(options.get("num_gpus", 0)),
        **{k: float(v) for k, v in (options.get("resources") or {}).items()},
    }
    return {r: n for r, n in need.items() if n > 0}


def resource_names(settings: Settings) -> set[str]:
    """The custom resources these settings make work ask for (for the KubeRay manifest)."""
    names = {NVENC_RESOURCE}
    names.update(n for n in (settings.media_encode_resource, settings.edge_resource) if n)
    return names
