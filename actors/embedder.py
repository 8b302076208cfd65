"""The embedding model in one named Ray actor (`embedder`, namespace `lumalive`).

The model runs here, not in the API replicas: importing torch and loading the
model holds the GIL for seconds, which would stall a replica's event loop (and
its live connections), and one copy of the model serves every replica.
"""

from __future__ import annotations

from typing import Any

import ray

from models.embeddings import Embedder, Encoder

__all__ = ["EmbedderActor", "ray_encoder"]


@ray.remote(num_cpus=0, max_restarts=-1)
class EmbedderActor(Embedder):
    """Embedder as a Ray actor; named `embedder` in namespace `lumalive`."""


def ray_encoder(options: dict[str, Any] | None = None) -> Encoder:
    """Encode in the cluster's one `EmbedderActor`, created on first use with `options`
    (its placement: `actors.placement.control_options`)."""
    handle: Any = None

    async def encode(texts: list[str]) -> list[list[float]]:
        nonlocal handle
        for attempt in (1, 2):
            if handle is None:
                handle = EmbedderActor.options(
                    **(options or {}), name="embedder", namespace="lumalive", get_if_exists=True
                ).remote()
            try:
                return await handle.encode.remote(texts)
            except ray.exceptions.RayActorError:
                # Its owner (another replica) went away, and the actor with it.
                handle = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return encode
